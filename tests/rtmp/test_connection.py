from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airclass.media.frames import AudioConfig, Frame, KeyframeComing, VideoConfig
from airclass.rtmp import messages as m
from airclass.rtmp.amf0 import EcmaArray
from airclass.rtmp.connection import (
    ConnectRequested,
    ConnState,
    Event,
    MediaReceived,
    MetadataReceived,
    PublishRequested,
    PublishStopped,
    ServerConnection,
)
from airclass.rtmp.errors import ChunkError, MessageError, RtmpProtocolError, UnsupportedCodec
from airclass.rtmp.limits import RtmpLimits
from tests.rtmp.publisher import (
    ASC,
    AVCC,
    C1,
    FFMPEG_CAPTURE,
    HANDSHAKE,
    ZERO_RANDOM,
    Publisher,
    Replies,
    avc_header,
)

NALU = bytes.fromhex("0000000565888400")
CONNECT_REPLIES = [
    (2, 0, m.WINDOW_ACK_SIZE, bytes.fromhex("002625a0")),
    (2, 0, m.SET_PEER_BANDWIDTH, bytes.fromhex("002625a002")),
    (2, 0, m.SET_CHUNK_SIZE, bytes.fromhex("00001000")),
    (
        3,
        0,
        m.COMMAND_AMF0,
        [
            "_result",
            1.0,
            {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,
            },
        ],
    ),
]


FC_PUBLISH_INFO = {"level": "status", "code": "NetStream.Publish.Start", "description": "stream"}
CALL_FAILED = {
    "level": "error",
    "code": "NetConnection.Call.Failed",
    "description": "Method not found (doOther).",
}


def status(stream_id: int, level: str, code: str, description: str, name: str) -> tuple[Any, ...]:
    info = {
        "level": level,
        "code": code,
        "description": description,
        "details": name,
        "clientid": "airclass",
    }
    return (5, stream_id, m.COMMAND_AMF0, ["onStatus", 0.0, None, info])


def new_conn(**limits: Any) -> tuple[ServerConnection, Replies]:
    return ServerConnection(RtmpLimits(**limits), handshake_random=ZERO_RANDOM), Replies()


def publishing(name: str = "stream?jwt=X") -> tuple[ServerConnection, Replies, Publisher]:
    conn, replies = new_conn()
    pub = Publisher()
    events = conn.receive_data(pub.up_to_publish(name))
    assert isinstance(events[-1], PublishRequested)
    conn.accept_publish(1)
    replies.feed(conn.data_to_send())
    return conn, replies, pub


def test_obs_like_session_exact_events_and_replies() -> None:
    conn, replies = new_conn()
    pub = Publisher()
    assert conn.receive_data(HANDSHAKE[:1000]) == []
    assert conn.data_to_send() == b""
    assert conn.receive_data(HANDSHAKE[1000:]) == []
    assert conn.data_to_send() == b"\x03" + bytes(8) + ZERO_RANDOM + C1
    assert conn.state is ConnState.WAIT_CONNECT
    replies.skipped = 3073

    events = conn.receive_data(pub.set_chunk_size(4096) + pub.connect())
    assert events == [
        ConnectRequested("live", "rtmp://h:1935/live", "FMLE/3.0 (compatible; FMSc/1.0)")
    ]
    assert replies.feed(conn.data_to_send()) == CONNECT_REPLIES

    events = conn.receive_data(
        pub.command("releaseStream", 2.0, None, "stream?jwt=X")
        + pub.command("FCPublish", 3.0, None, "stream?jwt=X")
        + pub.command("createStream", 4.0, None)
    )
    assert events == []
    assert replies.feed(conn.data_to_send()) == [
        (3, 0, 20, ["_result", 2.0, None, None]),
        (3, 0, 20, ["onFCPublish", 0.0, None, FC_PUBLISH_INFO]),
        (3, 0, 20, ["_result", 3.0, None, None]),
        (3, 0, 20, ["_result", 4.0, None, 1.0]),
    ]

    # publish, immediately followed by metadata and media: held until the decision.
    metadata = EcmaArray(
        width=1280.0, height=720.0, encoder="obs-output module (libobs version 29.1.3)"
    )
    tail = (
        pub.data("@setDataFrame", "onMetaData", metadata)
        + pub.video(0, avc_header(1, 0, 0) + AVCC)
        + pub.audio(0, bytes([0xAF, 0]) + ASC)
        + pub.video(0, avc_header(1, 1, 66) + NALU)
        + pub.audio(21, bytes([0xAF, 1]) + b"\x21\x10")
        + pub.video(33, avc_header(2, 1, 33) + NALU)
        + pub.video(66, avc_header(2, 1, -33) + NALU)
    )
    events = conn.receive_data(pub.publish("stream?jwt=X") + tail)
    assert events == [PublishRequested(1, "live", "stream", {"jwt": "X"})]
    assert conn.data_to_send() == b""
    conn.accept_publish(1)
    assert replies.feed(conn.data_to_send()) == [
        (2, 0, m.USER_CONTROL, bytes.fromhex("000000000001")),
        status(1, "status", "NetStream.Publish.Start", "stream is now published.", "stream"),
    ]
    assert conn.publishing == [1]
    assert conn.receive_data(b"") == [
        MetadataReceived(1, dict(metadata)),
        MediaReceived(1, VideoConfig("h264", AVCC)),
        MediaReceived(1, AudioConfig("aac", ASC)),
        MediaReceived(1, Frame("video", 0, 66, True, NALU)),
        MediaReceived(1, Frame("audio", 21, 21, True, b"\x21\x10")),
        MediaReceived(1, Frame("video", 33, 66, False, NALU)),
        MediaReceived(1, Frame("video", 66, 33, False, NALU)),
    ]

    events = conn.receive_data(
        pub.command("FCUnpublish", 6.0, None, "stream?jwt=X")
        + pub.command("deleteStream", 7.0, None, 1.0)
    )
    assert events == [PublishStopped(1)]
    assert replies.feed(conn.data_to_send()) == [
        status(1, "status", "NetStream.Unpublish.Success", "stream is now unpublished.", "stream"),
        (3, 0, 20, ["_result", 6.0, None, None]),
    ]
    assert conn.publishing == []
    assert not conn.should_close
    # Media still in flight after deleteStream is dropped, not an error.
    assert conn.receive_data(pub.video(99, avc_header(2, 1, 0) + NALU)) == []


def test_gstreamer_like_session() -> None:
    """rtmp2sink: chunk size sent only after publish, @setDataFrame repeated."""
    conn, _replies = new_conn()
    pub = Publisher(compress=False)
    data = (
        HANDSHAKE
        + pub.connect(app="live", tc_url="rtmp://h/live")
        + pub.command("releaseStream", 2.0, None, "cam")
        + pub.command("FCPublish", 3.0, None, "cam")
        + pub.command("createStream", 4.0, None)
        + pub.publish("cam", csid=5)
    )
    events = conn.receive_data(data)
    assert events[-1] == PublishRequested(1, "live", "cam", {})
    conn.accept_publish(1)
    meta = EcmaArray(width=640.0)
    rest = pub.set_chunk_size(128) + pub.data("@setDataFrame", "onMetaData", meta) * 3
    rest += pub.video(0, avc_header(1, 0, 0) + AVCC, csid=6)
    assert conn.receive_data(rest) == [MetadataReceived(1, {"width": 640.0})] * 3 + [
        MediaReceived(1, VideoConfig("h264", AVCC))
    ]


def ffmpeg_events(
    conn: ServerConnection, data: bytes, step: int, *, pause: bool = False
) -> list[Event]:
    """Feed `data` `step` bytes at a time, accepting the publish; with `pause`, resume after
    every announcement the way the server does, checking that each pause follows one."""
    events: list[Event] = []
    for i in range(0, len(data), step):
        new = conn.receive_data(data[i : i + step], pause=pause)
        while True:
            events += new
            decided = bool(new) and isinstance(new[-1], PublishRequested)
            if decided:
                conn.accept_publish(new[-1].stream_id)  # type: ignore[union-attr]
            elif conn.input_pending:
                assert isinstance(new[-1], MediaReceived)
                assert isinstance(new[-1].event, KeyframeComing)
            else:
                break
            new = conn.receive_data(b"", pause=pause)
    return events


def test_ffmpeg_capture_whole_and_byte_by_byte() -> None:
    data = FFMPEG_CAPTURE.read_bytes()
    whole = ffmpeg_events(ServerConnection(handshake_random=ZERO_RANDOM), data, len(data))
    one_by_one = ffmpeg_events(ServerConnection(handshake_random=ZERO_RANDOM), data, 1)
    paused = ffmpeg_events(ServerConnection(handshake_random=ZERO_RANDOM), data, 997, pause=True)
    # Each keyframe is announced from its first chunk, then comes whole, whatever the split;
    # but for the first, which came in the same read as the publish request when fed whole
    # and was queued until the publish was accepted (an announcement is a hint, dropped then).
    coming = MediaReceived(1, KeyframeComing(0, 80))
    assert paused == one_by_one
    assert coming in one_by_one and coming not in whole
    one_by_one.remove(coming)
    assert one_by_one == whole
    announced = [e for e in paused
                 if isinstance(e, MediaReceived) and isinstance(e.event, KeyframeComing)]
    for event in announced:
        after = paused[paused.index(event) + 1 :]
        assert isinstance(after[0], MediaReceived) and isinstance(after[0].event, Frame)
        assert after[0].event.keyframe and (after[0].event.dts, after[0].event.pts) == (
            event.event.dts, event.event.pts,
        )
    keyframes = [e for e in whole if isinstance(e, MediaReceived)
                 and isinstance(e.event, Frame) and e.event.kind == "video" and e.event.keyframe]
    assert len(announced) == len(keyframes) > 0
    assert whole[0] == ConnectRequested(
        "live", "rtmp://127.0.0.1:34307/live", "FMLE/3.0 (compatible; Lavf59.27.100)"
    )
    assert whole[1] == PublishRequested(1, "live", "test", {"key": "k"})
    assert isinstance(whole[2], MetadataReceived)
    assert whole[2].metadata["width"] == 160.0
    media = [e.event for e in whole if isinstance(e, MediaReceived)]
    assert isinstance(media[0], VideoConfig)
    assert (media[0].codec, media[0].record[:6], len(media[0].record)) == (
        "h264",
        bytes.fromhex("01f4000bffe1"),  # avcC v1, High 4:4:4, level 1.1, one SPS
        46,
    )
    assert media[1] == AudioConfig("aac", bytes.fromhex("120856e500"))  # AAC-LC 44.1 kHz mono
    frames = [f for f in media if isinstance(f, Frame)]
    video = [f for f in frames if f.kind == "video"]
    audio = [f for f in frames if f.kind == "audio"]
    assert (len(video), len(audio)) == (25, 45)
    assert [(f.dts, f.pts, f.keyframe) for f in video[:4]] == [
        (0, 80, True),
        (40, 200, False),
        (80, 120, False),
        (120, 160, False),
    ]
    assert whole[-1] == PublishStopped(1)


@pytest.mark.parametrize(
    ("app", "tc_url", "name", "expected_app", "expected_name", "query"),
    [
        ("live", "rtmp://h/live", "test?key=k", "live", "test", {"key": "k"}),
        ("live?jwt=A", "rtmp://h/live?jwt=A", "s", "live", "s", {"jwt": "A"}),
        ("live", "rtmp://h/live?a=1&b=2", "s?b=3", "live", "s", {"a": "1", "b": "3"}),
        ("live/", "rtmp://h:1935/live/", "/s?k=a%2Fb", "live", "s", {"k": "a/b"}),
    ],
)
def test_publish_name_and_query(
    app: str, tc_url: str, name: str, expected_app: str, expected_name: str, query: dict[str, str]
) -> None:
    conn, _ = new_conn()
    pub = Publisher()
    data = HANDSHAKE + pub.connect(app=app, tc_url=tc_url) + pub.command("createStream", 2.0, None)
    events = conn.receive_data(data + pub.publish(name))
    assert events[-1] == PublishRequested(1, expected_app, expected_name, query)


def test_reject_publish_sends_status_then_wants_close() -> None:
    conn, replies = new_conn()
    pub = Publisher()
    conn.receive_data(pub.up_to_publish() + pub.video(0, avc_header(1, 0, 0) + AVCC))
    replies.feed(conn.data_to_send())
    conn.reject_publish(1, "NetStream.Publish.Unauthorized", "Bad token.")
    assert replies.feed(conn.data_to_send()) == [
        status(1, "error", "NetStream.Publish.Unauthorized", "Bad token.", "stream")
    ]
    assert conn.should_close
    assert conn.receive_data(b"") == []
    assert conn.receive_data(pub.audio(0, b"\xaf\x01x")) == []
    assert conn.data_to_send() == b""


def test_empty_publish_name_is_rejected_by_itself() -> None:
    conn, replies = new_conn()
    pub = Publisher()
    assert [type(e) for e in conn.receive_data(pub.up_to_publish(name=""))] == [ConnectRequested]
    assert replies.feed(conn.data_to_send())[-1] == status(
        1, "error", "NetStream.Publish.BadName", "Empty stream name.", ""
    )
    assert conn.should_close


def test_deciding_twice_is_a_programming_error() -> None:
    conn, _, _ = publishing()
    with pytest.raises(RuntimeError):
        conn.accept_publish(1)


def test_media_before_publish_is_an_error() -> None:
    conn, _ = new_conn()
    pub = Publisher()
    data = HANDSHAKE + pub.connect() + pub.command("createStream", 2.0, None)
    with pytest.raises(MessageError, match="media on stream 1 before an accepted publish"):
        conn.receive_data(data + pub.video(0, avc_header(1, 0, 0) + AVCC))
    assert conn.state is ConnState.ERROR
    with pytest.raises(RtmpProtocolError, match="already failed"):
        conn.receive_data(b"")


def test_commands_before_connect_are_errors() -> None:
    conn, _ = new_conn()
    with pytest.raises(MessageError, match="'createStream' before connect"):
        conn.receive_data(HANDSHAKE + Publisher().command("createStream", 2.0, None))


def test_publish_on_unknown_stream() -> None:
    conn, _ = new_conn()
    pub = Publisher()
    with pytest.raises(MessageError, match="publish on stream 1 that was not created"):
        conn.receive_data(HANDSHAKE + pub.connect() + pub.publish("s"))


def test_play_is_refused_and_closed() -> None:
    conn, replies = new_conn()
    pub = Publisher()
    data = HANDSHAKE + pub.connect() + pub.command("createStream", 2.0, None)
    data += pub.command("play", 3.0, None, "stream", stream_id=1, csid=8)
    assert [type(e) for e in conn.receive_data(data)] == [ConnectRequested]
    assert replies.feed(conn.data_to_send())[-1] == status(
        1,
        "error",
        "NetStream.Play.StreamNotFound",
        "Playback is not available over RTMP; use HLS.",
        "stream",
    )
    assert conn.should_close


def test_unknown_commands() -> None:
    conn, replies = new_conn()
    pub = Publisher()
    conn.receive_data(HANDSHAKE + pub.connect())
    replies.feed(conn.data_to_send())
    conn.receive_data(pub.command("doSomething", 0.0, None) + pub.command("doOther", 9.0, None))
    assert replies.feed(conn.data_to_send()) == [(3, 0, 20, ["_error", 9.0, None, CALL_FAILED])]
    assert not conn.should_close


def test_amf3_command_message() -> None:
    conn, replies = new_conn()
    pub = Publisher()
    payload = b"\x00" + m.command("connect", 1.0, {"app": "live", "objectEncoding": 3.0})
    conn.receive_data(HANDSHAKE + pub.writer.write(3, 0, m.COMMAND_AMF3, 0, payload))
    result = replies.feed(conn.data_to_send())[-1]
    assert result[3][3]["objectEncoding"] == 3.0
    assert conn.app == "live"


def test_ping_is_answered() -> None:
    conn, replies = new_conn()
    pub = Publisher()
    conn.receive_data(HANDSHAKE + pub.connect())
    replies.feed(conn.data_to_send())
    conn.receive_data(pub.writer.write(2, 0, m.USER_CONTROL, 0, bytes.fromhex("00060000abcd")))
    assert replies.feed(conn.data_to_send()) == [
        (2, 0, m.USER_CONTROL, bytes.fromhex("00070000abcd"))
    ]


def test_acknowledgement_after_peer_window() -> None:
    conn, replies = new_conn()
    pub = Publisher()
    conn.receive_data(HANDSHAKE + pub.connect())
    replies.feed(conn.data_to_send())
    was = pub.writer.write(2, 0, m.WINDOW_ACK_SIZE, 0, m.window_ack_size(4000))
    conn.receive_data(was)
    assert conn.data_to_send() == b""  # 3072 + connect + 16 bytes < 4000 since the last ack
    total = conn.bytes_received
    conn.receive_data(pub.command("releaseStream", 0.0, None, "x" * (4000 - total)))
    assert replies.feed(conn.data_to_send()) == [
        (2, 0, m.ACKNOWLEDGEMENT, conn.bytes_received.to_bytes(4, "big"))
    ]
    assert conn.bytes_received >= 4000


def test_unsupported_codec_tells_the_publisher() -> None:
    conn, replies, pub = publishing()
    with pytest.raises(UnsupportedCodec, match="HEVC"):
        conn.receive_data(pub.video(0, bytes([0x90]) + b"hvc1" + bytes(8)))
    description = "unsupported video codec HEVC ('hvc1'): publish H.264"
    assert replies.feed(conn.data_to_send()) == [
        status(1, "error", "NetStream.Failed", description, "stream")
    ]
    assert conn.should_close


def test_fail_from_the_owner() -> None:
    conn, replies, _ = publishing()
    conn.fail("Stream taken over.", "NetStream.Publish.BadName")
    assert replies.feed(conn.data_to_send()) == [
        status(1, "error", "NetStream.Publish.BadName", "Stream taken over.", "stream")
    ]
    assert conn.should_close


def test_queue_limit_while_publish_pending() -> None:
    conn, _ = new_conn(max_queued_bytes=10_000)
    pub = Publisher()
    conn.receive_data(pub.up_to_publish())
    conn.receive_data(pub.video(0, avc_header(1, 1, 0) + bytes(9_000)))
    with pytest.raises(RtmpProtocolError, match="while publish was pending"):
        conn.receive_data(pub.video(40, avc_header(2, 1, 0) + bytes(2_000)))


# -- before a publish: small messages only --------------------------------------------------


TOO_LARGE_BEFORE_PUBLISH = r"^message of 1001 bytes before a publish \(at most 1000\)$"


def test_large_message_before_publish_in_one_read() -> None:
    conn, _ = new_conn(pre_publish_bytes=1000)
    pub = Publisher()
    conn.receive_data(HANDSHAKE + pub.connect())
    with pytest.raises(MessageError, match=TOO_LARGE_BEFORE_PUBLISH):
        conn.receive_data(pub.writer.write(3, 0, m.COMMAND_AMF0, 0, bytes(1001)))
    assert conn.state is ConnState.ERROR


def test_large_message_before_publish_held_in_part() -> None:
    """Declared 1001 bytes, only its first chunk sent: refused from what is held."""
    conn, _ = new_conn(pre_publish_bytes=1000)
    pub = Publisher()
    conn.receive_data(HANDSHAKE + pub.connect())
    first_chunk = pub.writer.write(20, 0, m.COMMAND_AMF0, 0, bytes(1001))[: 12 + 128]
    with pytest.raises(ChunkError, match=TOO_LARGE_BEFORE_PUBLISH):
        conn.receive_data(first_chunk)


def test_partial_messages_together_before_publish() -> None:
    """Eight messages of 1000 bytes each begun on eight chunk streams: each is allowed, the
    1024 bytes they hold together are not."""
    conn, _ = new_conn(pre_publish_bytes=1000)
    pub = Publisher()
    conn.receive_data(HANDSHAKE + pub.connect())
    for csid in range(20, 27):
        conn.receive_data(pub.writer.write(csid, 0, m.COMMAND_AMF0, 0, bytes(1000))[: 12 + 128])
    assert conn.buffered == 7 * 128
    with pytest.raises(ChunkError, match=r"^more than 1000 bytes held before a publish$"):
        conn.receive_data(pub.writer.write(27, 0, m.COMMAND_AMF0, 0, bytes(1000))[: 12 + 128])


def test_unparsed_input_counts_before_publish() -> None:
    """One chunk of 4000 bytes (after Set Chunk Size 4096) still arriving holds its bytes as
    unparsed input: refused too."""
    conn, _ = new_conn(pre_publish_bytes=1000)
    pub = Publisher()
    conn.receive_data(HANDSHAKE + pub.set_chunk_size(4096) + pub.connect())
    data = pub.writer.write(20, 0, m.COMMAND_AMF0, 0, bytes(4000))
    conn.receive_data(data[:1000])
    with pytest.raises(ChunkError, match=r"^more than 1000 bytes held before a publish$"):
        conn.receive_data(data[1000:1001])


def test_publish_then_large_keyframe_in_the_same_read() -> None:
    """An encoder may send its first keyframe right behind publish: the cap ends with the
    publish, in stream order, whatever the split."""
    pub = Publisher()
    keyframe = avc_header(1, 1, 0) + (50_000).to_bytes(4, "big") + b"\x65" + bytes(49_999)
    data = (
        pub.up_to_publish("stream?key=k")
        + pub.set_chunk_size(4096)
        + pub.video(0, avc_header(1, 0, 0) + AVCC)
        + pub.video(40, keyframe)
    )
    for step in (len(data), 1000, 4096):
        conn, _ = new_conn(pre_publish_bytes=1000)
        frames = []
        for i in range(0, len(data), step):
            events = conn.receive_data(data[i : i + step])
            while any(isinstance(e, PublishRequested) for e in events):
                conn.accept_publish(1)
                frames += events
                events = conn.receive_data(b"")
            frames += events
        assert conn.has_published
        got = [e.event for e in frames if isinstance(e, MediaReceived)]
        assert isinstance(got[-1], Frame) and len(got[-1].data) == 50_000 + 4, step


def test_large_messages_after_publish() -> None:
    conn, _, pub = publishing()
    assert conn.has_published
    keyframe = avc_header(1, 1, 0) + (300_000).to_bytes(4, "big") + b"\x65" + bytes(299_999)
    conn.receive_data(pub.video(0, avc_header(1, 0, 0) + AVCC))
    data = pub.video(40, keyframe)
    conn.receive_data(data[:200_000])
    assert conn.buffered > conn.limits.pre_publish_bytes
    events = conn.receive_data(data[200_000:])
    assert any(isinstance(e, MediaReceived) and isinstance(e.event, Frame) for e in events)


def test_create_stream_limit() -> None:
    conn, _ = new_conn(max_streams=2)
    pub = Publisher()
    data = HANDSHAKE + pub.connect() + pub.command("createStream", 2.0, None) * 2
    conn.receive_data(data)
    with pytest.raises(MessageError, match="more than 2 createStream"):
        conn.receive_data(pub.command("createStream", 3.0, None))


def test_aggregate_messages_refused() -> None:
    conn, _, pub = publishing()
    with pytest.raises(MessageError, match="aggregate"):
        conn.receive_data(pub.writer.write(4, 1, m.AGGREGATE, 0, bytes(11)))


def _run(data: bytes, splits: list[int]) -> None:
    conn = ServerConnection(RtmpLimits(max_message_size=64 * 1024), handshake_random=ZERO_RANDOM)
    pos = 0
    try:
        for n in [*splits, len(data)]:
            events = conn.receive_data(data[pos : pos + n])
            pos += n
            while events:
                decided = False
                for event in events:
                    if isinstance(event, PublishRequested):
                        conn.accept_publish(event.stream_id)
                        decided = True
                events = conn.receive_data(b"") if decided else []
            conn.data_to_send()
            if conn.should_close:
                return
    except RtmpProtocolError:
        return


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 500), max_size=10))
def test_random_bytes_after_handshake(data: bytes, splits: list[int]) -> None:
    _run(HANDSHAKE + data, splits)


_CAPTURE = FFMPEG_CAPTURE.read_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(3073, len(_CAPTURE) - 1),
            st.integers(0, 255),
            st.sampled_from(["set", "insert", "delete"]),
        ),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.integers(1, 4000), max_size=5),
)
def test_mutated_ffmpeg_session(mutations: list[tuple[int, int, str]], splits: list[int]) -> None:
    data = bytearray(_CAPTURE)
    for pos, byte, how in mutations:
        pos = min(pos, len(data) - 1)
        if how == "set":
            data[pos] = byte
        elif how == "insert":
            data.insert(pos, byte)
        else:
            del data[pos]
    _run(bytes(data), splits)
