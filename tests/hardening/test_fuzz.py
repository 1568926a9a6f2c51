"""Fuzzing every parser a peer can reach, with random and mutated real input.

The contract checked for each layer: bad input raises that layer's own error and nothing else,
each example finishes in bounded time (hypothesis `deadline`), and what the layer keeps between
calls stays under its configured limits. Mutations start from a real ffmpeg publish
(`tests/rtmp/data/ffmpeg_publish.bin`). The HTTP fuzzers talk to a real master and slave process.

Already covered elsewhere and not repeated here: random bytes into `ChunkReader`, AMF0 round
trips and random bytes (tests/rtmp), mutated whole sessions into `ServerConnection` without the
buffer bounds (tests/rtmp/test_connection.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airclass.cluster import signing
from airclass.media.bitstream import (
    BitstreamError,
    avcc_to_annexb,
    parse_asc,
    parse_avcc,
    parse_sps_dimensions,
    split_avcc,
)
from airclass.media.frames import AudioConfig, Frame, VideoConfig
from airclass.rtmp import amf0, flv
from airclass.rtmp import messages as m
from airclass.rtmp.chunk import ChunkReader, RtmpMessage
from airclass.rtmp.connection import PublishRequested, ServerConnection
from airclass.rtmp.errors import AmfError, ChunkError, FlvError, HandshakeError, RtmpProtocolError
from airclass.rtmp.handshake import PACKET_SIZE, ServerHandshake
from airclass.rtmp.limits import RtmpLimits
from tests.e2e.conftest import Cluster, Node, http_get, http_json, publish, wait_for
from tests.rtmp.publisher import FFMPEG_CAPTURE, HANDSHAKE, ZERO_RANDOM

pytestmark = pytest.mark.timeout(120)

CAPTURE = FFMPEG_CAPTURE.read_bytes()
CHUNKS = CAPTURE[3073:]
"""The capture after ffmpeg's C0+C1+C2: its chunk stream."""
MESSAGES: list[RtmpMessage] = ChunkReader().feed(CHUNKS)
COMMANDS = [msg.payload for msg in MESSAGES if msg.type_id in (m.COMMAND_AMF0, m.DATA_AMF0)]
VIDEO = [msg.payload for msg in MESSAGES if msg.type_id == m.VIDEO]
AUDIO = [msg.payload for msg in MESSAGES if msg.type_id == m.AUDIO]
AVCC_RECORD = VIDEO[0][5:]
ASC_RECORD = AUDIO[0][2:]

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""A modest number of examples; the deadline is the 'never loops' check (generous: the machine
is shared)."""


def test_the_capture_is_what_the_fuzzers_assume() -> None:
    assert [msg.type_id for msg in MESSAGES[:6]] == [20, 1, 20, 20, 20, 20]
    assert VIDEO[0][:2] == b"\x17\x00" and AUDIO[0][:2] == b"\xaf\x00"
    assert parse_avcc(AVCC_RECORD).nal_length_size == 4
    assert parse_asc(ASC_RECORD).sample_rate == 44100


def mutate(data: bytes, edits: list[tuple[int, int, str]]) -> bytes:
    """Set, insert or delete bytes at positions taken modulo the length."""
    out = bytearray(data)
    for pos, byte, how in edits:
        if not out:
            out.append(byte)
            continue
        pos %= len(out)
        if how == "set":
            out[pos] = byte
        elif how == "insert":
            out.insert(pos, byte)
        elif how == "delete":
            del out[pos]
        else:  # a 32-bit field set to its maximum: declared lengths and counts of 4 GiB
            out[pos : pos + 4] = b"\xff\xff\xff\xff"
    return bytes(out)


EDITS = st.lists(
    st.tuples(
        st.integers(0, 2**20),
        st.integers(0, 255),
        st.sampled_from(["set", "insert", "delete", "max32"]),
    ),
    min_size=1,
    max_size=8,
)
SPLITS = st.lists(st.integers(1, 3000), max_size=8)


def pieces(data: bytes, splits: list[int]) -> Iterator[bytes]:
    pos = 0
    for n in splits:
        yield data[pos : pos + n]
        pos += n
    yield data[pos:]


# -- handshake ----------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=5000), SPLITS)
def test_handshake_random_input(data: bytes, splits: list[int]) -> None:
    hs = ServerHandshake(ZERO_RANDOM)
    with contextlib.suppress(HandshakeError):
        for piece in pieces(data, splits):
            hs.receive_data(piece)
            assert hs.buffered <= 1 + 2 * PACKET_SIZE
            out = hs.data_to_send()
            assert len(out) in (0, 1 + 2 * PACKET_SIZE)
        if len(data) >= 1 + 2 * PACKET_SIZE:
            assert hs.done
        return
    assert data[0] != 3, "only a wrong version byte is refused"


@FUZZ
@given(EDITS, SPLITS)
def test_handshake_mutated_real_input(edits: list[tuple[int, int, str]], splits: list[int]) -> None:
    data = mutate(CAPTURE[:3073], edits) + CHUNKS[:200]
    hs = ServerHandshake(ZERO_RANDOM)
    rest = b""
    try:
        for piece in pieces(data, splits):
            rest += hs.receive_data(piece)
            assert hs.buffered <= 1 + 2 * PACKET_SIZE
    except HandshakeError:
        assert data[0] != 3
        return
    assert hs.done
    # Whatever follows C2 is handed on untouched.
    assert rest == data[1 + 2 * PACKET_SIZE :]


# -- chunk reader -------------------------------------------------------------------------------

SMALL = RtmpLimits(
    max_message_size=4096,
    max_pending_bytes=6000,
    max_chunk_streams=4,
    max_chunk_size=8192,
    max_queued_bytes=8192,
)
"""Limits small enough that mutated real input runs into each of them."""


def _reader_bound(reader: ChunkReader) -> int:
    # Unparsed input is at most one incomplete chunk: an 18-byte header and one chunk of payload.
    return SMALL.max_pending_bytes + 18 + min(reader.chunk_size, SMALL.max_message_size)


@FUZZ
@given(EDITS, SPLITS)
def test_chunk_reader_mutated_capture_stays_bounded(
    edits: list[tuple[int, int, str]], splits: list[int]
) -> None:
    reader = ChunkReader(
        max_chunk_size=SMALL.max_chunk_size,
        max_message_size=SMALL.max_message_size,
        max_chunk_streams=SMALL.max_chunk_streams,
        max_pending_bytes=SMALL.max_pending_bytes,
    )
    data = mutate(CHUNKS, edits)
    try:
        for piece in pieces(data, splits):
            for msg in reader.feed(piece):
                assert len(msg.payload) <= SMALL.max_message_size
            assert reader.buffered <= _reader_bound(reader)
            assert reader.chunk_size <= SMALL.max_chunk_size
    except ChunkError:
        pass


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(2, 65599), st.integers(0, 2**24 - 1)),
        min_size=1,
        max_size=40,
    )
)
def test_chunk_headers_with_extreme_fields(headers: list[tuple[int, int, int]]) -> None:
    """Every header type on any chunk stream id, with lengths and timestamps up to 2^24-1."""
    reader = ChunkReader(max_message_size=4096, max_chunk_streams=4, max_pending_bytes=6000)
    try:
        for fmt, csid, value in headers:
            basic = m_basic(fmt, csid)
            field3 = value.to_bytes(3, "big")
            header = basic + field3 + field3 + b"\x09" + b"\x01\x00\x00\x00"
            header = header[: len(basic) + (11, 7, 3, 0)[fmt]]
            reader.feed(header + b"\xff\xff\xff\xff" + bytes(64))
            assert reader.buffered <= 6000 + 18 + 4096
    except ChunkError:
        pass


def m_basic(fmt: int, csid: int) -> bytes:
    from airclass.rtmp.chunk import basic_header

    return basic_header(fmt, csid)


# -- AMF0 and messages --------------------------------------------------------------------------


@FUZZ
@given(st.sampled_from(COMMANDS), EDITS)
def test_amf0_mutated_real_commands(payload: bytes, edits: list[tuple[int, int, str]]) -> None:
    data = mutate(payload, edits)
    try:
        values = amf0.decode(data, max_depth=4, max_elements=50)
    except AmfError:
        return
    assert _count(values) <= 50


def _count(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count(v) for v in value) + 1
    return 1


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0c\xff\xff\xff\xff" + b"x" * 100,  # long string declaring 4 GiB - 1
        b"\x0a\xff\xff\xff\xff" + b"\x05" * 100,  # strict array of 2^32 - 1 elements
        b"\x08\xff\xff\xff\xff" + b"\x00\x01a\x05" * 100000,  # ECMA array, advisory count
        b"\x03" * 100000,  # nesting bomb
    ],
    ids=["long-string", "strict-array", "ecma-array", "nesting"],
)
def test_amf0_declared_sizes_are_not_trusted(payload: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(AmfError):
        amf0.decode(payload, max_depth=16, max_elements=10_000)
    assert time.monotonic() - started < 1.0


MESSAGE_TYPES = st.sampled_from(
    [
        m.SET_CHUNK_SIZE,
        m.ABORT,
        m.ACKNOWLEDGEMENT,
        m.USER_CONTROL,
        m.WINDOW_ACK_SIZE,
        m.SET_PEER_BANDWIDTH,
        m.COMMAND_AMF0,
        m.COMMAND_AMF3,
        m.DATA_AMF0,
        m.DATA_AMF3,
    ]
)


def parse_message(type_id: int, payload: bytes) -> object:
    """What the connection does with each message type, minus the state machine."""
    if type_id == m.SET_CHUNK_SIZE:
        return m.parse_set_chunk_size(payload)
    if type_id == m.ABORT:
        return m.parse_abort(payload)
    if type_id == m.ACKNOWLEDGEMENT:
        return m.parse_acknowledgement(payload)
    if type_id == m.WINDOW_ACK_SIZE:
        return m.parse_window_ack_size(payload)
    if type_id == m.SET_PEER_BANDWIDTH:
        return m.parse_set_peer_bandwidth(payload)
    if type_id == m.USER_CONTROL:
        return m.parse_user_control(payload)
    if type_id in (m.COMMAND_AMF0, m.COMMAND_AMF3):
        return m.parse_command(type_id, payload, max_depth=8, max_elements=100)
    return m.parse_data(type_id, payload, max_depth=8, max_elements=100)


@FUZZ
@given(MESSAGE_TYPES, st.one_of(st.binary(max_size=300), st.sampled_from(COMMANDS)), EDITS)
def test_message_layer_only_raises_protocol_errors(
    type_id: int, payload: bytes, edits: list[tuple[int, int, str]]
) -> None:
    if type_id in (m.COMMAND_AMF3, m.DATA_AMF3):
        payload = b"\x00" + payload
    with contextlib.suppress(RtmpProtocolError):
        parse_message(type_id, mutate(payload, edits))


# -- FLV, AVC and AAC headers -------------------------------------------------------------------


def _use(event: VideoConfig | AudioConfig | Frame | None) -> None:
    """What the packager does with a parsed payload: parse the records, convert the frames."""
    if isinstance(event, VideoConfig):
        info = parse_avcc(event.record)
        for sps in info.sps:
            parse_sps_dimensions(sps)
    elif isinstance(event, AudioConfig):
        parse_asc(event.record)
    elif isinstance(event, Frame) and event.kind == "video":
        avcc_to_annexb(event.data, 4, ())


@FUZZ
@given(st.sampled_from(["video", "audio"]), st.binary(max_size=200), st.integers(0, 2**32 - 1))
def test_flv_random_payloads(kind: str, payload: bytes, timestamp: int) -> None:
    parse = flv.parse_video if kind == "video" else flv.parse_audio
    with contextlib.suppress(FlvError, BitstreamError):
        _use(parse(timestamp, payload))


@FUZZ
@given(st.integers(0, 10**6), EDITS, st.integers(0, 2**32 - 1))
def test_flv_mutated_real_payloads(index: int, edits: list[tuple[int, int, str]], ts: int) -> None:
    payloads = VIDEO + AUDIO
    payload = payloads[index % len(payloads)]
    parse = flv.parse_video if index % len(payloads) < len(VIDEO) else flv.parse_audio
    try:
        event = parse(ts, mutate(payload, edits))
        _use(event)
    except (FlvError, BitstreamError):
        return
    if isinstance(event, Frame):
        assert len(event.data) <= len(payload) + len(edits)


@FUZZ
@given(EDITS)
def test_avcc_record_mutations(edits: list[tuple[int, int, str]]) -> None:
    try:
        info = parse_avcc(mutate(AVCC_RECORD, edits))
        for sps in info.sps:
            width, height = parse_sps_dimensions(sps)
            assert width > 0 and height > 0
    except BitstreamError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=12), st.builds(mutate, st.just(ASC_RECORD), EDITS)))
def test_asc_record_random_and_mutated(record: bytes) -> None:
    try:
        info = parse_asc(record)
    except BitstreamError:
        return
    assert info.sample_rate > 0


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([1, 2, 4]))
def test_split_avcc_random(data: bytes, size: int) -> None:
    try:
        units = split_avcc(data, size)
    except BitstreamError:
        return
    assert sum(len(u) + size for u in units) <= len(data)


# -- the whole connection, with its bounds ------------------------------------------------------


def drive(conn: ServerConnection, data: bytes, splits: list[int]) -> None:
    """Feed `data` as the server does (pausing at announcements, accepting any publish) and
    check the held bytes after every call."""
    limits = conn.limits
    bound = (
        1
        + 2 * PACKET_SIZE
        + limits.max_pending_bytes
        + 18
        + limits.max_message_size
        + limits.max_queued_bytes
    )
    try:
        for piece in pieces(data, splits):
            events = conn.receive_data(piece, pause=True)
            while True:
                assert conn.buffered <= bound
                decided = False
                for event in events:
                    if isinstance(event, PublishRequested):
                        conn.accept_publish(event.stream_id)
                        decided = True
                if not (decided or conn.input_pending):
                    break
                events = conn.receive_data(b"", pause=True)
            conn.data_to_send()
            if conn.should_close:
                return
    except RtmpProtocolError:
        pass


@FUZZ
@given(EDITS, SPLITS)
def test_connection_mutated_session_is_bounded(
    edits: list[tuple[int, int, str]], splits: list[int]
) -> None:
    edits = [(3073 + pos % len(CHUNKS), byte, how) for pos, byte, how in edits]
    drive(ServerConnection(SMALL, handshake_random=ZERO_RANDOM), mutate(CAPTURE, edits), splits)


@FUZZ
@given(st.binary(max_size=3000), SPLITS)
def test_connection_random_session_is_bounded(data: bytes, splits: list[int]) -> None:
    drive(ServerConnection(SMALL, handshake_random=ZERO_RANDOM), HANDSHAKE + data, splits)


# -- HTTP APIs of real processes ----------------------------------------------------------------

HTTP = settings(
    max_examples=60,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def nodes(module_cluster: Cluster) -> tuple[Node, Node]:
    """A standalone master (control-plane fuzzing cannot disturb a slave) and a standalone
    slave (token API and HLS URLs)."""
    return module_cluster.master(), module_cluster.slave()


def request(
    base: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    finally:
        conn.close()


def assert_clean(status: int, body: bytes, content_type: str, allowed: set[int]) -> None:
    """A known status, and every error a JSON object with an "error" string."""
    assert status in allowed, (status, body[:300])
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type, body[:200])
        error = json.loads(body)["error"]
        assert isinstance(error, str) and "Traceback" not in error


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
TOKEN_KEYS = st.sampled_from(["user_type", "user_id", "stream", "password", "class_code", "ttl"])
TOKEN_BODIES = st.dictionaries(
    TOKEN_KEYS,
    st.one_of(
        JSON_VALUES,
        st.sampled_from(["student", "teacher", "live/stream", "a" * 5000, "../../etc", "live/"]),
    ),
    max_size=6,
)
RAW_BODIES = st.one_of(
    st.binary(max_size=400),
    st.just(b"[" * 20000),
    st.just(b"{" + b'"a":' * 5000 + b"1}"),
    st.builds(lambda n: b'{"user_id":"' + b"x" * n + b'"}', st.integers(16000, 70000)),
)
NONFINITE = json.JSONEncoder(allow_nan=True)


def json_body(value: Any) -> bytes:
    return NONFINITE.encode(value).encode()


@HTTP
@given(st.one_of(TOKEN_BODIES.map(json_body), RAW_BODIES), st.sampled_from(["master", "slave"]))
def test_token_api_bodies(nodes: tuple[Node, Node], body: bytes, which: str) -> None:
    node = nodes[0] if which == "master" else nodes[1]
    status, reply, ctype = request(
        node.api, "POST", "/api/token", body, {"Content-Type": "application/json"}
    )
    # 503: the master has no slave to route to; 429: password attempts rate-limited.
    assert_clean(status, reply, ctype, {200, 400, 401, 403, 404, 413, 415, 422, 429, 503})


REGISTER_KEYS = st.sampled_from(
    ["node_id", "node_name", "api_url", "hls_url", "rtmp_url", "max_connections", "stats"]
)
STATS_KEYS = st.sampled_from(
    [
        "connections",
        "cpu",
        "memory",
        "max_connections",
        "streams",
        "serving",
        "bandwidth",
        "sessions_opened",
        "extra",
    ]
)
CONTROL_BODIES = st.fixed_dictionaries(
    {"node_id": st.one_of(st.just("fuzz-node"), JSON_VALUES)},
    optional={
        "api_url": st.one_of(st.just("http://127.0.0.1:9"), JSON_VALUES),
        "hls_url": st.one_of(st.just("http://127.0.0.1:9"), JSON_VALUES),
        "rtmp_url": st.one_of(st.just("rtmp://127.0.0.1:9"), JSON_VALUES),
        "max_connections": JSON_VALUES,
        "stats": st.one_of(st.dictionaries(STATS_KEYS, JSON_VALUES, max_size=9), JSON_VALUES),
    },
).flatmap(
    lambda d: st.dictionaries(REGISTER_KEYS, JSON_VALUES, max_size=3).map(lambda e: {**e, **d})
)


@HTTP
@given(
    st.sampled_from(["/cluster/register", "/cluster/stats", "/cluster/unregister"]),
    st.one_of(CONTROL_BODIES.map(json_body), RAW_BODIES),
)
def test_signed_control_bodies(
    nodes: tuple[Node, Node], module_cluster: Cluster, path: str, body: bytes
) -> None:
    """Correctly signed, so that body parsing is what gets fuzzed."""
    master = nodes[0]
    headers = signing.sign(module_cluster.cluster_key, "POST", path, body, time.time())
    headers["Content-Type"] = "application/json"
    status, reply, ctype = request(master.api, "POST", path, body, headers)
    assert_clean(status, reply, ctype, {200, 400, 404, 409, 413, 503})
    if len(body) > 64 * 1024:
        assert status == 413


@pytest.fixture(scope="module")
def hls_urls(nodes: tuple[Node, Node], module_cluster: Cluster) -> Iterator[dict[str, str]]:
    """A live stream on the slave; a real entry URL with its token, the session's media
    playlist and a segment (mutating valid URLs reaches deeper than random ones)."""
    slave = nodes[1]
    publisher = publish(
        f"{slave.rtmp}/live/stream?key={module_cluster.stream_key}", 120, size="160x120", gop=25
    )
    try:
        status, reply = http_json(
            "POST", f"{slave.api}/api/token", {"user_type": "student", "user_id": "fuzz"}
        )
        assert status == 200, reply
        entry = str(reply["hls_url"])
        wait_for(lambda: http_get(entry)[0] == 200, 20, what="the first segment")
        text = http_get(entry)[1].decode()
        variant = next(line for line in text.splitlines() if line and not line.startswith("#"))
        media = entry.split("index.m3u8")[0] + variant
        playlist = http_get(media)[1].decode()
        segment = next(line for line in playlist.splitlines() if line and not line.startswith("#"))
        yield {
            "entry": entry,
            "token": str(reply["token"]),
            "media": media,
            "segment": media.rsplit("/", 1)[0] + "/" + segment,
        }
    finally:
        publisher.kill()
        publisher.wait()


PATH_PARTS = st.one_of(
    st.sampled_from(
        [
            "live",
            "stream",
            "index.m3u8",
            "media.m3u8",
            "0.ts",
            "..",
            ".",
            "%2e%2e",
            "%00",
            "a" * 300,
            "",
            "init.mp4",
            "live/stream",
        ]
    ),
    st.text(max_size=20).map(lambda s: quote(s, safe="")),
)


@HTTP
@given(
    st.lists(PATH_PARTS, min_size=1, max_size=6),
    st.one_of(
        st.none(),
        st.text(max_size=60).map(lambda s: quote(s, safe="=&")),
        st.sampled_from(["jwt=", "jwt=a.b.c", "jwt=" + "x" * 5000, "_HLS_msn=-1&_HLS_part=9"]),
    ),
    st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "DELETE"]),
)
def test_hls_urls(
    nodes: tuple[Node, Node],
    hls_urls: dict[str, str],
    parts: list[str],
    query: str | None,
    method: str,
) -> None:
    slave = nodes[1]
    path = "/" + "/".join(parts) + (f"?{query}" if query is not None else "")
    status, reply, ctype = request(slave.hls, method, path)
    allowed = {200, 204, 400, 401, 403, 404, 405, 409, 410, 413, 414, 429, 431, 503}
    if method == "HEAD" or (status in (204, 400) and not reply):
        assert status in allowed
        return
    assert_clean(status, reply, ctype, allowed)


@HTTP
@given(EDITS, st.sampled_from(["entry", "media", "segment", "token"]))
def test_mutated_real_hls_url(
    nodes: tuple[Node, Node],
    hls_urls: dict[str, str],
    edits: list[tuple[int, int, str]],
    where: str,
) -> None:
    slave = nodes[1]
    entry = hls_urls["entry"].removeprefix(slave.hls)
    base, _, _query = entry.partition("?")
    printable = [(p, 33 + b % 94, h) for p, b, h in edits if h != "max32"]
    if where != "token":
        url = hls_urls[where].removeprefix(slave.hls)
        mutated = mutate(url.encode(), printable)
        target = quote(mutated.decode("latin-1"), safe="/%?=&")
    else:
        mutated = mutate(hls_urls["token"].encode(), printable)
        target = base + "?jwt=" + quote(mutated.decode("latin-1"), safe="")
    if not target.startswith("/"):
        target = "/" + target
    status, reply, ctype = request(slave.hls, "GET", target)
    # 429: a mutation that leaves the real entry URL valid spends its token's entry allowance.
    assert_clean(status, reply, ctype, {200, 400, 401, 403, 404, 429, 503})
