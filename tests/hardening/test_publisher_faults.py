"""Publisher faults against a real slave: reconnects, takeovers, timestamp jumps.

What a viewer must see in each case: the same media playlist URL keeps working, its media
sequence continues, a discontinuity marks the break, and no segment is longer than the target
duration allows. Scripted publishers (tests/rtmp/publisher.py) send real H.264+AAC frames as fast
as the socket takes them, so crafting timestamps costs no wall-clock time; real ffmpeg plays the
teacher where the client's own behaviour matters (being taken over).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airclass.hls.segmenter import PendingSegment, Segmenter
from airclass.media.frames import Frame
from tests.e2e.conftest import Cluster, Node, http_get, http_json, publish, wait_for
from tests.e2e.test_slave_media import media_playlist_url, student_hls_url
from tests.hardening.conftest import RawPeer
from tests.hls.conftest import make_test_frames, shifted
from tests.rtmp.publisher import Publisher, avc_header

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TARGET = 2.0


@dataclass
class Entry:
    sequence: int
    duration: float
    discontinuity: bool


@dataclass
class Watcher:
    """One viewer's media playlist, polled; remembers every segment it has seen listed."""

    url: str
    seen: dict[int, Entry] = field(default_factory=dict)
    targets: set[int] = field(default_factory=set)
    ended: bool = False

    def poll(self) -> str:
        status, body, _ = http_get(self.url)
        assert status == 200, body
        text = body.decode()
        sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
        self.targets.add(int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1)))  # type: ignore[union-attr]
        self.ended = "#EXT-X-ENDLIST" in text
        duration, disc = 0.0, False
        for line in text.splitlines():
            if line.startswith("#EXTINF:"):
                duration = float(line[8:].split(",")[0])
            elif line == "#EXT-X-DISCONTINUITY":
                disc = True
            elif line and not line.startswith("#"):
                self.seen[sequence] = Entry(sequence, duration, disc)
                sequence += 1
                disc = False
        return text

    def wait_for_sequence(self, sequence: int, timeout: float = 15) -> None:
        wait_for(
            lambda: self.poll() and max(self.seen, default=-1) >= sequence,
            timeout,
            what=f"segment {sequence}",
        )

    @property
    def newest(self) -> int:
        return max(self.seen, default=-1)

    def discontinuities(self) -> list[int]:
        return sorted(s for s, e in self.seen.items() if e.discontinuity)


class ScriptedTeacher:
    """A scripted RTMP publisher on a socket: real frames, any timestamps."""

    def __init__(self, node: Node, key: str, name: str = "stream") -> None:
        self.peer = RawPeer(node.ports["rtmp"])
        self.pub = Publisher()
        self.peer.send(self.pub.up_to_publish(f"{name}?key={key}"))
        self.peer.read_until(b"NetStream.Publish.Start", 5)
        self.peer.send(self.pub.set_chunk_size(65536))
        video, audio, _ = make_test_frames(6.0)
        self.peer.send(self.pub.video(0, avc_header(1, 0, 0) + video.record))
        self.peer.send(self.pub.audio(0, b"\xaf\x00" + audio.record))

    def send(self, frames: list[Frame]) -> None:
        data = bytearray()
        for f in frames:
            if f.kind == "video":
                header = avc_header(1 if f.keyframe else 2, 1, f.pts - f.dts)
                data += self.pub.video(f.dts, header + f.data)
            else:
                data += self.pub.audio(f.dts, b"\xaf\x01" + f.data)
        assert self.peer.send(bytes(data)), "the slave dropped the publisher"

    def close(self) -> None:
        self.peer.close()


@pytest.fixture
def slave(cluster: Cluster) -> Iterator[Node]:
    yield cluster.slave()


def frames(offset_ms: int, seconds: float = 6.0) -> list[Frame]:
    return shifted(make_test_frames(seconds)[2], offset_ms)


def assert_bounded(watcher: Watcher, after: int) -> None:
    limit = TARGET + 0.5
    long = {s: e.duration for s, e in watcher.seen.items() if s >= after and e.duration > limit}
    assert not long, f"segments longer than {TARGET + 0.5} s: {long}"
    assert watcher.targets == {int(TARGET)}, watcher.targets


@pytest.mark.parametrize(
    "jump_ms",
    [40_000, -20_000, 1_500, -200, 4_000],
    ids=["forward-40s", "backward-20s", "forward-1.5s", "backward-0.2s", "forward-4s"],
)
def test_timestamp_jump_starts_a_discontinuity(cluster: Cluster, slave: Node, jump_ms: int) -> None:
    teacher = ScriptedTeacher(slave, cluster.stream_key)
    try:
        teacher.send(frames(0))
        watcher = viewer_when_live(slave)
        watcher.wait_for_sequence(1)
        before = watcher.newest
        # The next frames continue 6 s later, plus the jump.
        teacher.send(frames(6000 + jump_ms))
        teacher.send(frames(12000 + jump_ms))
        watcher.wait_for_sequence(before + 4)
        assert len(watcher.discontinuities()) == 1, watcher.seen
        jump_at = watcher.discontinuities()[0]
        assert jump_at > before
        assert sorted(watcher.seen) == list(range(min(watcher.seen), watcher.newest + 1))
        assert_bounded(watcher, 0)
        assert not watcher.ended
        assert http_json("GET", f"{slave.api}/health")[0] == 200
    finally:
        teacher.close()


def test_publisher_reconnect_keeps_the_same_playlist(cluster: Cluster, slave: Node) -> None:
    """OBS reconnects with timestamps from zero: same media playlist URL, sequence continues,
    one discontinuity, no ENDLIST, same target duration."""
    first = ScriptedTeacher(slave, cluster.stream_key)
    second: ScriptedTeacher | None = None
    try:
        first.send(frames(0))
        media_url = media_playlist_url(student_hls_url(slave.api))
        watcher = Watcher(media_url)
        watcher.wait_for_sequence(1)
        first.close()
        wait_for(
            lambda: (
                not http_json("GET", f"{slave.api}/api/stats")[1]["streams"]["live/stream"][
                    "publishing"
                ]
            ),
            10,
            what="the publisher gone",
        )
        watcher.poll()
        assert not watcher.ended, "a publisher gap must not end the playlist"
        last = watcher.newest
        second = ScriptedTeacher(slave, cluster.stream_key)
        second.send(frames(0))
        second.send(frames(6000))
        watcher.wait_for_sequence(last + 3)
        assert watcher.discontinuities() == [last + 1]
        assert sorted(watcher.seen) == list(range(min(watcher.seen), watcher.newest + 1))
        assert_bounded(watcher, 0)
        # The viewer never needed a new playlist: its first media playlist URL went on working.
        assert watcher.url == media_url
    finally:
        first.close()
        if second is not None:
            second.close()


def teacher_url(node: Node, password: str, user_id: str) -> str:
    status, reply = http_json(
        "POST",
        f"{node.api}/api/token",
        {"user_type": "teacher", "user_id": user_id, "password": password, "stream": "live/stream"},
    )
    assert status == 200, reply
    return f"{reply['rtmp_url']}/{reply['stream_key']}"


def test_same_teacher_takes_over_and_another_teacher_is_refused(
    cluster: Cluster, slave: Node, tmp_path: Path
) -> None:
    first = publish(
        teacher_url(slave, cluster.teacher_password, "ms-kim"), 60, log_path=tmp_path / "first.log"
    )
    others: list[subprocess.Popen[bytes]] = []
    try:
        watcher = viewer_when_live(slave)
        watcher.wait_for_sequence(1, 20)

        # Another teacher, with a valid publish token of their own, cannot take the stream.
        intruder = publish(
            teacher_url(slave, cluster.teacher_password, "mr-lee"),
            20,
            log_path=tmp_path / "intruder.log",
        )
        others.append(intruder)
        assert intruder.wait(20) != 0
        assert first.poll() is None, "the intruder disturbed the lecture"

        # The same teacher with a fresh token (OBS restarted elsewhere) takes over at once.
        before = watcher.newest
        second = publish(
            teacher_url(slave, cluster.teacher_password, "ms-kim"),
            60,
            log_path=tmp_path / "second.log",
        )
        others.append(second)
        started = time.monotonic()
        first.wait(15)
        assert time.monotonic() - started < 10, "the old connection was not closed promptly"
        assert second.poll() is None
        watcher.wait_for_sequence(before + 3, 20)
        assert watcher.discontinuities(), watcher.seen
        assert min(watcher.discontinuities()) > before - 1
        assert sorted(watcher.seen) == list(range(min(watcher.seen), watcher.newest + 1))
        assert_bounded(watcher, 0)
        log = slave.log()
        assert "takes over its own stream" in log
        assert "publish refused" in log
    finally:
        for proc in [first, *others]:
            proc.kill()
            proc.wait()


def viewer_when_live(node: Node) -> Watcher:
    hls_url = student_hls_url(node.api)
    wait_for(lambda: http_get(hls_url)[0] == 200, 20, what="the first segment")
    return Watcher(media_playlist_url(hls_url))


# -- the segmenter's jump rule, without processes ----------------------------------------------

T0 = 1_800_000_000.0


def _av(start: int, end: int, *, audio_offset: int = 0) -> list[Frame]:
    """25 fps video with a keyframe every 2 s, and AAC-like audio every 21 ms, by dts."""
    video = [Frame("video", t, t, (t - start) % 2000 == 0, b"v") for t in range(start, end, 40)]
    audio = [
        Frame("audio", t + audio_offset, t + audio_offset, True, b"a")
        for t in range(start, end, 21)
    ]
    return sorted(video + audio, key=lambda f: f.dts)


def _feed(frames: list[Frame], wall: Callable[[Frame], float]) -> list[PendingSegment]:
    seg = Segmenter(TARGET, has_video=True)
    out: list[PendingSegment] = []
    for f in frames:
        out += seg.push(f, wall(f))
    return out


def test_small_forward_jump_is_a_discontinuity_not_a_long_segment() -> None:
    frames = _av(0, 5000) + _av(6500, 12000)  # 1.5 s of timestamps skipped, none of wall clock
    out = _feed(frames, lambda f: T0 + min(f.dts, 5000) / 1000 + (f.dts >= 6500) * 0.04)
    assert [s.discontinuity for s in out].count(True) == 1
    assert max(s.duration for s in out) <= TARGET + 0.5


def test_a_pause_that_keeps_pace_with_the_clock_is_not_a_jump() -> None:
    """A variable-frame-rate video that sends nothing for 1.5 s, then resumes on time."""
    frames = _av(0, 5000) + _av(6500, 12000)
    out = _feed(frames, lambda f: T0 + f.dts / 1000)
    assert not any(s.discontinuity for s in out)


def test_a_constant_audio_offset_is_not_a_jump() -> None:
    out = _feed(_av(0, 12000, audio_offset=3000), lambda f: T0 + f.dts / 1000)
    assert len(out) >= 4 and not any(s.discontinuity for s in out)
