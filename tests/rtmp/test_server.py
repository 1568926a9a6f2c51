"""The asyncio server against in-memory scripted clients over loopback, and against ffmpeg."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from airclass.media.frames import AudioConfig, Frame, MediaEvent, VideoConfig
from airclass.media.hub import StreamHub
from airclass.rtmp import messages as m
from airclass.rtmp.server import PublishDenied, RtmpLimits, RtmpServer
from tests.rtmp.publisher import ASC, AVCC, HANDSHAKE, Publisher, Replies, avc_header

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.got_frame = asyncio.Event()

    def on_publish_start(self) -> None:
        self.events.append("start")

    def on_event(self, event: MediaEvent) -> None:
        self.events.append(event)
        if isinstance(event, Frame):
            self.got_frame.set()

    def on_publish_stop(self) -> None:
        self.events.append("stop")


class Harness:
    def __init__(self, limits: RtmpLimits | None = None) -> None:
        self.sinks: dict[str, RecordingSink] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.hub = StreamHub(self._sink)
        self.server = RtmpServer(self.hub, self.authorize, limits)

    def _sink(self, path: str) -> RecordingSink:
        sink = self.sinks[path] = RecordingSink()
        return sink

    def authorize(
        self, app: str, name: str, query: Mapping[str, str], client: str
    ) -> tuple[str, str]:
        self.calls.append((app, name, dict(query)))
        key = query.get("key", "")
        if key == "bad":
            raise PublishDenied("NetStream.Publish.Unauthorized", "Invalid stream key.")
        return f"{app}/{name}", f"owner-{key}"


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(RtmpLimits(handshake_timeout=0.5, idle_timeout=0.5))
    await h.server.start("127.0.0.1", 0)
    yield h
    await h.server.close()


async def read_until_status(
    reader: asyncio.StreamReader, replies: Replies
) -> tuple[int, int, int, Any]:
    while True:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "connection closed before onStatus"
        for reply in replies.feed(data):
            if reply[2] == m.COMMAND_AMF0 and reply[3][0] == "onStatus":
                return reply


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pub = Publisher()
        self.replies = Replies()


async def raw_publish(
    port: int, name: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Publisher, Any]:
    client = await raw_client(port, name)
    reply = await read_until_status(client.reader, client.replies)
    return client.reader, client.writer, client.pub, reply[3][3]


async def raw_client(port: int, name: str) -> Client:
    client = Client(*await asyncio.open_connection("127.0.0.1", port))
    client.writer.write(client.pub.up_to_publish(name))
    return client


async def until_closed(reader: asyncio.StreamReader) -> None:
    while await asyncio.wait_for(reader.read(65536), 5):
        pass


async def test_scripted_publish_reaches_the_hub(harness: Harness) -> None:
    reader, writer, pub, info = await raw_publish(harness.server.port, "s?key=k")
    assert info["code"] == "NetStream.Publish.Start"
    assert harness.server.connections == 1
    writer.write(
        pub.video(0, avc_header(1, 0, 0) + AVCC)
        + pub.audio(0, bytes([0xAF, 0]) + ASC)
        + pub.video(0, avc_header(1, 1, 40) + b"\x00\x00\x00\x01\x65")
        + pub.command("FCUnpublish", 6.0, None, "s?key=k")
    )
    sink = harness.sinks["live/s"]
    await asyncio.wait_for(sink.got_frame.wait(), 5)
    writer.close()
    await until_closed(reader)
    for _ in range(100):
        if sink.events[-1] == "stop":
            break
        await asyncio.sleep(0.01)
    assert sink.events == [
        "start",
        VideoConfig("h264", AVCC),
        AudioConfig("aac", ASC),
        Frame("video", 0, 40, True, b"\x00\x00\x00\x01\x65"),
        "stop",
    ]
    assert harness.hub.live_paths() == []
    assert harness.calls == [("live", "s", {"key": "k"})]


async def test_rejected_publish_gets_status_and_close(harness: Harness) -> None:
    reader, writer, _, info = await raw_publish(harness.server.port, "s?key=bad")
    assert info["level"] == "error"
    assert info["code"] == "NetStream.Publish.Unauthorized"
    await until_closed(reader)
    writer.close()
    assert harness.server.stats.publishes_rejected == 1
    assert harness.hub.live_paths() == []


async def test_same_owner_takes_over_and_old_connection_is_closed(harness: Harness) -> None:
    first = await raw_client(harness.server.port, "s?key=k")
    status = await read_until_status(first.reader, first.replies)
    assert status[3][3]["code"] == "NetStream.Publish.Start"
    _reader2, writer2, _, info2 = await raw_publish(harness.server.port, "s?key=k")
    assert info2["code"] == "NetStream.Publish.Start"
    status = await read_until_status(first.reader, first.replies)
    assert status[3][3]["code"] == "NetStream.Publish.BadName"
    await until_closed(first.reader)
    assert harness.hub.live_paths() == ["live/s"]
    assert harness.sinks["live/s"].events == ["start", "stop", "start"]
    for w in (first.writer, writer2):
        w.close()


async def test_other_owner_is_refused(harness: Harness) -> None:
    _, writer1, _, info1 = await raw_publish(harness.server.port, "s?key=a")
    reader2, writer2, _, info2 = await raw_publish(harness.server.port, "s?key=b")
    assert info1["code"] == "NetStream.Publish.Start"
    assert (info2["code"], info2["description"]) == (
        "NetStream.Publish.BadName",
        "live/s is already being published.",
    )
    await until_closed(reader2)
    assert harness.hub.publisher("live/s").owner == "owner-a"  # type: ignore[union-attr]
    for w in (writer1, writer2):
        w.close()


async def test_handshake_timeout(harness: Harness) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.server.port)
    writer.write(HANDSHAKE[:100])  # a slowloris that never finishes
    await until_closed(reader)
    writer.close()
    assert harness.server.stats.timeouts == 1


async def test_idle_timeout_closes_publication(harness: Harness) -> None:
    reader, writer, _, _ = await raw_publish(harness.server.port, "s?key=k")
    assert harness.hub.live_paths() == ["live/s"]
    await until_closed(reader)  # we send nothing more
    writer.close()
    assert harness.hub.live_paths() == []
    assert harness.sinks["live/s"].events == ["start", "stop"]
    assert harness.server.stats.timeouts == 1


async def test_garbage_closes_only_that_connection(harness: Harness) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.server.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    await until_closed(reader)
    writer.close()
    assert harness.server.stats.protocol_errors == 1
    _, writer2, _, info = await raw_publish(harness.server.port, "s?key=k")
    assert info["code"] == "NetStream.Publish.Start"
    writer2.close()


async def test_close_drops_connections_and_publications() -> None:
    h = Harness()
    await h.server.start("127.0.0.1", 0)
    reader, writer, _, _ = await raw_publish(h.server.port, "s?key=k")
    assert h.server.publishing == 1
    await h.server.close()
    assert h.server.connections == 0
    assert h.hub.live_paths() == []
    assert h.sinks["live/s"].events == ["start", "stop"]
    await until_closed(reader)
    writer.close()


async def run_ffmpeg(port: int, query: str, seconds: float) -> asyncio.subprocess.Process:
    assert FFMPEG is not None
    return await asyncio.create_subprocess_exec(
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-c:v",
        "libx264",
        "-g",
        "50",
        "-bf",
        "2",
        "-c:a",
        "aac",
        "-t",
        str(seconds),
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{port}/live/test?{query}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.fixture
async def ffmpeg_harness() -> AsyncIterator[Harness]:
    h = Harness()
    await h.server.start("127.0.0.1", 0)
    yield h
    await h.server.close()


@pytest.mark.e2e
@needs_ffmpeg
async def test_real_ffmpeg_publish(ffmpeg_harness: Harness) -> None:
    h = ffmpeg_harness
    proc = await run_ffmpeg(h.server.port, "key=k", 4)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert h.calls == [("live", "test", {"key": "k"})]
    sink = h.sinks["live/test"]
    for _ in range(100):
        if sink.events[-1] == "stop":
            break
        await asyncio.sleep(0.02)
    assert sink.events[0] == "start"
    assert sink.events[-1] == "stop"
    media = sink.events[1:-1]
    assert isinstance(media[0], VideoConfig) and media[0].codec == "h264"
    assert isinstance(media[1], AudioConfig) and media[1].codec == "aac"
    frames = [e for e in media if isinstance(e, Frame)]
    video = [f for f in frames if f.kind == "video"]
    audio = [f for f in frames if f.kind == "audio"]
    assert len(video) >= 95 and len(audio) >= 160
    assert sum(f.keyframe for f in video) >= 2
    assert video[0].keyframe
    for kind in (video, audio):
        dts = [f.dts for f in kind]
        assert all(b > a for a, b in itertools.pairwise(dts))
    assert all(f.pts >= f.dts for f in video)
    assert any(f.pts > f.dts for f in video)  # B-frames
    assert all(f.pts == f.dts and f.keyframe for f in audio)


@pytest.mark.e2e
@needs_ffmpeg
async def test_real_ffmpeg_rejected_exits_quickly(ffmpeg_harness: Harness) -> None:
    h = ffmpeg_harness
    loop = asyncio.get_running_loop()
    start = loop.time()
    proc = await run_ffmpeg(h.server.port, "key=bad", 10)
    assert await asyncio.wait_for(proc.wait(), 10) != 0
    assert loop.time() - start < 5
    assert h.server.stats.publishes_rejected == 1
    assert h.hub.live_paths() == []


@pytest.mark.e2e
@needs_ffmpeg
async def test_real_ffmpeg_second_publisher_other_owner_refused(ffmpeg_harness: Harness) -> None:
    h = ffmpeg_harness
    first = await run_ffmpeg(h.server.port, "key=a", 20)
    try:
        for _ in range(500):
            if "live/test" in h.sinks:
                break
            await asyncio.sleep(0.02)
        await asyncio.wait_for(h.sinks["live/test"].got_frame.wait(), 10)
        second = await run_ffmpeg(h.server.port, "key=b", 10)
        assert await asyncio.wait_for(second.wait(), 10) != 0
        assert h.server.stats.publishes_rejected == 1
        assert h.hub.publisher("live/test").owner == "owner-a"  # type: ignore[union-attr]
        assert first.returncode is None
    finally:
        if first.returncode is None:
            first.terminate()
        await first.wait()


async def test_publish_deadline_and_connection_caps() -> None:
    h = Harness(
        RtmpLimits(publish_timeout=0.5, max_connections=3, max_connections_per_address=2)
    )
    await h.server.start("127.0.0.1", 0)
    port = h.server.port
    try:
        _, publisher, _, info = await raw_publish(port, "s?key=k")
        assert info["code"] == "NetStream.Publish.Start"
        idler = Client(*await asyncio.open_connection("127.0.0.1", port))
        idler.writer.write(HANDSHAKE + idler.pub.connect())
        # A third connection from 127.0.0.1 is refused at accept: closed before any byte.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        # Another address gets the last slot; a fourth address finds the node full.
        silent = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.3", 0)
        )
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert h.server.stats.connections_refused == 2
        assert h.server.connections == 3
        # The two that never published are closed at the deadline; the publisher stays.
        loop = asyncio.get_running_loop()
        started = loop.time()
        await until_closed(idler.reader)
        await until_closed(silent[0])
        assert loop.time() - started < 1.0
        assert h.server.stats.timeouts == 2
        assert h.server.connections == 1 and h.hub.live_paths() == ["live/s"]
        for w in (publisher, idler.writer, silent[1]):
            w.close()
    finally:
        await h.server.close()


async def test_live_path_cap() -> None:
    h = Harness(RtmpLimits(max_live_paths=1))
    await h.server.start("127.0.0.1", 0)
    try:
        _, first, _, info = await raw_publish(h.server.port, "a?key=k")
        assert info["code"] == "NetStream.Publish.Start"
        reader, second, _, info = await raw_publish(h.server.port, "b?key=k")
        assert (info["level"], info["code"], info["description"]) == (
            "error",
            "NetStream.Publish.Rejected",
            "This node already carries 1 live streams, its most.",
        )
        await until_closed(reader)
        # The owner of the live path reconnecting is not one more.
        _, third, _, info = await raw_publish(h.server.port, "a?key=k")
        assert info["code"] == "NetStream.Publish.Start"
        assert h.hub.live_paths() == ["live/a"]
        for w in (first, second, third):
            w.close()
    finally:
        await h.server.close()
