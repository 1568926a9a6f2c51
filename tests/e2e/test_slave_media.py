"""A real ffmpeg publishes to a real slave process; real ffmpeg readers play it back."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import av
import pytest

from tests.e2e.conftest import (
    Cluster,
    LinkPacer,
    http_get,
    http_json,
    need,
    pipe,
    publish,
    wait_for,
)

pytestmark = pytest.mark.e2e


def teacher_publish_url(node_api: str, password: str, stream: str = "live/stream") -> str:
    status, reply = http_json(
        "POST",
        f"{node_api}/api/token",
        {"user_type": "teacher", "user_id": "ms-kim", "password": password, "stream": stream},
    )
    assert status == 200, reply
    assert reply["rtmp_url"].endswith("/live")
    return f"{reply['rtmp_url']}/{reply['stream_key']}"


def student_hls_url(node_api: str, user_id: str = "student-1", stream: str = "live/stream") -> str:
    status, reply = http_json(
        "POST",
        f"{node_api}/api/token",
        {"user_type": "student", "user_id": user_id, "stream": stream},
    )
    assert status == 200, reply
    assert set(reply) >= {"token", "hls_url", "node_id", "expires_in", "expires_at"}
    return str(reply["hls_url"])


def media_playlist_url(hls_url: str) -> str:
    status, body, _ = http_get(hls_url)
    assert status == 200, body
    text = body.decode()
    assert text.startswith("#EXTM3U\n")
    variant = next(line for line in text.splitlines() if line and not line.startswith("#"))
    return hls_url.split("index.m3u8")[0] + variant


def playlist_entries(text: str) -> list[tuple[float, str, bool]]:
    entries, duration, disc = [], 0.0, False
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0])
        elif line == "#EXT-X-DISCONTINUITY":
            disc = True
        elif line and not line.startswith("#"):
            entries.append((duration, line, disc))
            disc = False
    return entries


def check_listed_segments(media_url: str, text: str) -> None:
    """Every segment the playlist `text` lists lasts the target (±0.5 s), is served as
    immutable MPEG-TS and starts with a keyframe."""
    base = media_url.rsplit("/", 1)[0]
    for duration, uri, _ in playlist_entries(text):
        assert abs(duration - 2.0) <= 0.5, text
        status, data, headers = http_get(f"{base}/{uri}")
        assert status == 200 and headers["Content-Type"] == "video/mp2t"
        assert "immutable" in headers["Cache-Control"]
        with av.open(io.BytesIO(data), format="mpegts") as container:
            first_video = next(p for p in container.demux(video=0) if p.size)
            assert first_video.is_keyframe


def test_publish_play_decode_audio_and_video(cluster: Cluster, tmp_path: Path) -> None:
    slave = cluster.slave()
    publisher = publish(
        teacher_publish_url(slave.api, cluster.teacher_password), 40, log_path=tmp_path / "pub.log"
    )
    try:
        hls_url = student_hls_url(slave.api)
        wait_for(lambda: http_get(hls_url)[0] == 200, 15, what="the first segment")

        # A real HLS reader decodes 20 s of both tracks with no error at all.
        reader = subprocess.run(
            [
                need("ffmpeg"),
                "-hide_banner",
                "-v",
                "error",
                "-i",
                hls_url,
                "-t",
                "20",
                "-map",
                "0:v",
                "-map",
                "0:a",
                "-f",
                "framecrc",
                "-",
            ],
            capture_output=True,
            timeout=60,
        )
        assert reader.returncode == 0, reader.stderr.decode()
        assert reader.stderr.decode().strip() == ""
        frames: dict[int, list[int]] = {0: [], 1: []}
        for line in reader.stdout.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            stream, _dts, pts, *_ = (f.strip() for f in line.split(","))
            frames[int(stream)].append(int(pts))
        assert len(frames[0]) >= 20 * 25 * 0.95, "video frames decoded"
        assert len(frames[1]) >= 20 * 46 * 0.95, "audio frames decoded (48 kHz AAC)"
        for pts in frames.values():
            assert all(b > a for a, b in itertools.pairwise(pts)), "PTS strictly increase"

        # Every listed segment starts with a keyframe and lasts the target (±0.5 s).
        media_url = media_playlist_url(hls_url)
        status, body, headers = http_get(media_url)
        assert status == 200
        assert headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        assert headers["Access-Control-Allow-Origin"] == "*"
        text = body.decode()
        assert "#EXT-X-TARGETDURATION:2\n" in text
        assert re.search(r"#EXT-X-PROGRAM-DATE-TIME:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
        assert len(playlist_entries(text)) >= 3
        check_listed_segments(media_url, text)
    finally:
        publisher.kill()
        publisher.wait()


def test_publisher_reconnect_continues_with_discontinuity(cluster: Cluster, tmp_path: Path) -> None:
    slave = cluster.slave()
    url = teacher_publish_url(slave.api, cluster.teacher_password)
    first = publish(url, 7, log_path=tmp_path / "pub1.log")
    hls_url = student_hls_url(slave.api)
    wait_for(lambda: http_get(hls_url)[0] == 200, 15, what="the first segment")
    media_url = media_playlist_url(hls_url)
    assert first.wait(30) == 0
    before = http_get(media_url)[1].decode()
    assert "#EXT-X-ENDLIST" not in before, "a short publisher gap must not end the stream"
    second = publish(url, 8, log_path=tmp_path / "pub2.log")
    try:

        def has_discontinuity() -> str | None:
            text = http_get(media_url)[1].decode()
            return text if "#EXT-X-DISCONTINUITY\n" in text else None

        text = wait_for(has_discontinuity, 20, what="a discontinuity after the reconnect")
        seqs = [int(uri.split(".")[0]) for _, uri, _ in playlist_entries(text)]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "sequence numbers continue"
        # The same player keeps going: ffmpeg reads across the discontinuity without error.
    finally:
        second.kill()
        second.wait()


def test_wrong_credentials_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    slave = cluster.slave()
    # Publishing with a wrong key is rejected before any media is accepted.
    bad = publish(f"{slave.rtmp}/live/stream?key=wrong", 5, log_path=tmp_path / "bad.log")
    assert bad.wait(20) != 0
    status, reply = http_json("GET", f"{slave.api}/api/stats")
    assert reply["streams"] == {}

    good = publish(f"{slave.rtmp}/live/stream?key={cluster.stream_key}", 20)
    try:
        hls_url = student_hls_url(slave.api)
        wait_for(lambda: http_get(hls_url)[0] == 200, 15, what="the first segment")
        entry = hls_url.split("?")[0]
        status, body, _ = http_get(entry)
        assert status == 401 and b"missing token" in body
        status, body, _ = http_get(entry + "?jwt=not-a-token")
        assert status == 401
        other = student_hls_url(slave.api, stream="live/other").split("?")[1]
        status, body, _ = http_get(f"{entry}?{other}")
        assert status == 403 and b"another stream" in body
        # A session id must be genuine.
        media_url = media_playlist_url(hls_url)
        forged = re.sub(
            r"/([A-Za-z0-9_-]+)/media.m3u8",
            "/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/media.m3u8",
            media_url,
        )
        assert http_get(forged)[0] == 403
        # A second publisher without the stream's owner credentials is refused.
        intruder = publish(f"{slave.rtmp}/live/stream?key=nope", 5)
        assert intruder.wait(20) != 0
        assert http_get(media_url)[0] == 200
    finally:
        good.kill()
        good.wait()


def test_viewer_count_follows_readers(cluster: Cluster, tmp_path: Path) -> None:
    slave = cluster.slave("--viewer-window", "4")
    publisher = publish(f"{slave.rtmp}/live/stream?key={cluster.stream_key}", 40)
    readers: list[subprocess.Popen[bytes]] = []
    try:
        url = student_hls_url(slave.api, "a")
        wait_for(lambda: http_get(url)[0] == 200, 15, what="the first segment")
        for name in ("r1", "r2", "r3"):
            readers.append(
                subprocess.Popen(
                    [
                        need("ffmpeg"),
                        "-v",
                        "error",
                        "-i",
                        student_hls_url(slave.api, name),
                        "-f",
                        "null",
                        "-",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        def connections() -> int:
            return int(http_json("GET", f"{slave.api}/api/stats")[1]["connections"])

        wait_for(lambda: connections() >= 3, 15, what="three viewers counted")
        time.sleep(1)
        stats = http_json("GET", f"{slave.api}/health")[1]
        assert stats["streams"]["live/stream"]["viewers"] == stats["connections"] == 3
        for r in readers:
            r.kill()
            r.wait()
        wait_for(lambda: connections() == 0, 12, what="viewers leaving the count")
    finally:
        for r in readers:
            r.kill()
        publisher.kill()
        publisher.wait()


class PacedLink:
    """A TCP forwarder on a free loopback port whose client-to-server direction carries
    `mbit` Mbit/s (`LinkPacer`: a publisher's uplink), in a thread."""

    def __init__(self, upstream_port: int, mbit: float) -> None:
        self.upstream_port = upstream_port
        self.mbit = mbit
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PacedLink:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        link = LinkPacer(self.mbit)

        async def paced() -> None:
            while data := await reader.read(1 << 16):
                await link.send(data, up_writer.write)
                await up_writer.drain()
            up_writer.close()

        with contextlib.suppress(ConnectionError):
            await asyncio.gather(paced(), pipe(up_reader, writer))


def metric(node_api: str, name: str) -> float:
    status, body, _ = http_get(f"{node_api}/metrics")
    assert status == 200
    found = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_over_a_slow_uplink_segments_are_listed_from_the_keyframes_first_chunk(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Plain HLS with the teacher behind a 4 Mbit/s link: a keyframe takes tens of ms to
    arrive, and the segment it closes is listed from its first chunk. The stream plays back
    cleanly all the same, every segment starting with its keyframe."""
    slave = cluster.slave("--no-low-latency")
    url = teacher_publish_url(slave.api, cluster.teacher_password)
    with PacedLink(slave.ports["rtmp"], 4.0) as link:
        paced_url = url.replace(f":{slave.ports['rtmp']}/", f":{link.port}/")
        assert paced_url != url
        publisher = publish(paced_url, 30, log_path=tmp_path / "pub.log")
        try:
            hls_url = student_hls_url(slave.api)
            wait_for(
                lambda: metric(slave.api, "airclass_stream_segments_announced_total") >= 4,
                30, what="four segments listed from announced keyframes",
            )
            made = metric(slave.api, "airclass_stream_segments_total")
            announced = metric(slave.api, "airclass_stream_segments_announced_total")
            assert made - 1 <= announced <= made  # the first segment may predate the reader
            reader = subprocess.run(
                [need("ffmpeg"), "-hide_banner", "-v", "error", "-live_start_index", "0",
                 "-i", hls_url, "-t", "6", "-f", "framecrc", "-"],
                capture_output=True, timeout=60,
            )
            assert reader.returncode == 0 and reader.stderr.decode().strip() == ""
            media_url = media_playlist_url(hls_url)
            check_listed_segments(media_url, http_get(media_url)[1].decode())
        finally:
            publisher.kill()
            publisher.wait()


def test_a_publisher_that_stands_still_is_reported_behind_real_time(
    cluster: Cluster, tmp_path: Path
) -> None:
    """ffmpeg stopped for 1.5 s (as an encoder starved on a busy PC stands still) delivers what
    follows late, then catches up: the slave counts the fall, says so in its log, and the
    publisher is back on time afterwards."""
    slave = cluster.slave()
    publisher = publish(teacher_publish_url(slave.api, cluster.teacher_password), 40,
                        log_path=tmp_path / "pub.log")
    try:
        wait_for(lambda: metric(slave.api, "airclass_stream_segments_total") >= 2, 30,
                 what="two segments")
        assert metric(slave.api, "airclass_ingest_falls_behind_total") == 0
        publisher.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        publisher.send_signal(signal.SIGCONT)
        wait_for(lambda: "the publisher caught up" in slave.log(), 15, what="the catch-up")
        assert metric(slave.api, "airclass_ingest_falls_behind_total") >= 1
        behind = re.findall(r"the publisher is ([0-9.]+) s behind real time", slave.log())
        assert behind and float(behind[0]) >= 0.5, behind
        caught = re.findall(r"the publisher caught up \(it fell ([0-9.]+) s behind\)", slave.log())
        assert caught and 1.2 <= float(caught[0]) <= 3.0, caught
        wait_for(lambda: metric(slave.api, "airclass_ingest_lag_seconds") < 0.25, 10,
                 what="the publisher back on time")
    finally:
        publisher.send_signal(signal.SIGCONT)
        publisher.kill()
        publisher.wait()
