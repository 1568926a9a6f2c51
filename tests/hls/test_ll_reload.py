"""Blocking playlist reload, preload-hint parts and delta updates on a real slave app (in
process, pytest-aiohttp). Frames are pushed by the test while requests wait: a request's
completion is driven by the packager's events, never by sleeping."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import pytest

from airclass.hls.packager import GZIP_MIN_BYTES
from airclass.media.frames import Frame
from airclass.media.hub import Publication
from airclass.web.hls_views import HLS_CONTEXT
from tests.hls.conftest import make_test_frames
from tests.web.conftest import PATH, Slave, SlaveFactory, make_slave  # noqa: F401

pytestmark = pytest.mark.timeout(60)


class Feed:
    """A publication whose frames the test releases a few at a time."""

    def __init__(self, slave: Slave, seconds: float = 12.0) -> None:
        video, audio, frames = make_test_frames(seconds, gop=25)
        self.pub: Publication = slave.app[HLS_CONTEXT].streams.hub.publish(PATH, "test")
        self.pub.send_video_config(video)
        self.pub.send_audio_config(audio)
        self.frames: list[Frame] = frames
        self.sent = 0

    def until(self, predicate: Any) -> None:
        """Send frames until `predicate()` holds."""
        while not predicate():
            assert self.sent < len(self.frames), "ran out of frames"
            self.pub.send(self.frames[self.sent])
            self.sent += 1


async def pending(task: asyncio.Task[Any]) -> bool:
    """Let the request run as far as it can; True if it is still waiting."""
    for _ in range(20):
        await asyncio.sleep(0)
    return not task.done()


@pytest.fixture
async def ll(make_slave: SlaveFactory) -> tuple[Slave, Feed]:  # noqa: F811
    slave = await make_slave(segment_duration=1.0, low_latency=True)
    feed = Feed(slave)
    feed.until(lambda: slave.packager().newest_sequence == 1)
    return slave, feed


async def get(slave: Slave, url: str) -> tuple[int, str]:
    resp = await slave.client.get(url)
    return resp.status, await resp.text()


async def test_blocking_reload_waits_for_the_part(ll: tuple[Slave, Feed]) -> None:
    slave, feed = ll
    sid = await slave.enter()
    packager = slave.packager()
    seq, have = packager.next_sequence, packager.open_parts
    url = f"/{PATH}/{sid}/media.m3u8?_HLS_msn={seq}&_HLS_part={have}"
    task = asyncio.create_task(get(slave, url))
    assert await pending(task), "a part that does not exist yet holds the reload"
    feed.until(lambda: packager.open_parts > have)
    status, text = await task
    assert status == 200
    assert f'URI="{seq}.{have}.ts"' in text
    assert text.encode() == packager.playlist_bytes, "the same bytes as without directives"

    # Existing parts and segments answer at once.
    assert await get(slave, f"/{PATH}/{sid}/media.m3u8?_HLS_msn={seq}&_HLS_part=0") == (
        200, packager.playlist_bytes.decode()
    )
    assert (await get(slave, f"/{PATH}/{sid}/media.m3u8?_HLS_msn=0"))[0] == 200


async def test_blocking_reload_for_a_whole_segment_waits_for_its_end(
    ll: tuple[Slave, Feed],
) -> None:
    slave, feed = ll
    sid = await slave.enter()
    packager = slave.packager()
    seq = packager.next_sequence
    task = asyncio.create_task(get(slave, f"/{PATH}/{sid}/media.m3u8?_HLS_msn={seq}"))
    feed.until(lambda: packager.open_parts == 3)
    assert await pending(task), "parts of the segment are not the segment"
    feed.until(lambda: packager.newest_sequence == seq)
    status, text = await task
    assert status == 200 and f"\n{seq}.ts\n" in text


async def test_far_future_and_malformed_directives_are_400(ll: tuple[Slave, Feed]) -> None:
    slave, _feed = ll
    sid = await slave.enter()
    packager = slave.packager()
    base = f"/{PATH}/{sid}/media.m3u8"
    far = packager.next_sequence + 2
    for query in (f"_HLS_msn={far}", f"_HLS_msn={packager.next_sequence}&_HLS_part=50",
                  "_HLS_part=1", "_HLS_msn=-1", "_HLS_msn=x", "_HLS_msn=1&_HLS_part=1.5"):
        resp = await slave.client.get(f"{base}?{query}")
        assert resp.status == 400, query
        body = await resp.json()
        assert set(body) == {"error"}


async def test_the_wait_is_bounded(ll: tuple[Slave, Feed]) -> None:
    slave, _feed = ll
    slave.app[HLS_CONTEXT].max_block = 0.0
    sid = await slave.enter()
    packager = slave.packager()
    status, text = await get(
        slave, f"/{PATH}/{sid}/media.m3u8?_HLS_msn={packager.next_sequence + 1}"
    )
    assert status == 200 and text.encode() == packager.playlist_bytes


async def test_an_ended_stream_answers_at_once(ll: tuple[Slave, Feed]) -> None:
    slave, _feed = ll
    sid = await slave.enter()
    packager = slave.packager()
    url = f"/{PATH}/{sid}/media.m3u8?_HLS_msn={packager.next_sequence + 1}"
    task = asyncio.create_task(get(slave, url))
    assert await pending(task)
    packager.on_publish_stop()
    status, text = await task
    assert status == 200 and text.endswith("#EXT-X-ENDLIST\n")


async def test_hinted_part_request_waits_then_serves_the_part(ll: tuple[Slave, Feed]) -> None:
    slave, feed = ll
    sid = await slave.enter()
    packager = slave.packager()
    seq, index = packager.next_sequence, packager.open_parts
    assert packager.playlist_bytes.decode().endswith(
        f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{seq}.{index}.ts"\n'
    )
    task = asyncio.create_task(slave.client.get(f"/{PATH}/{sid}/{seq}.{index}.ts"))
    assert await pending(task)
    feed.until(lambda: packager.open_parts > index)
    resp = await task
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "video/mp2t"
    part = packager.part(seq, index)
    assert part is not None and await resp.read() == part.data
    # A part that is neither made nor hinted is a 404 at once.
    resp = await slave.client.get(f"/{PATH}/{sid}/{seq}.{index + 5}.ts")
    assert resp.status == 404
    # Finished segments keep their parts servable.
    resp = await slave.client.get(f"/{PATH}/{sid}/0.1.ts")
    old = packager.part(0, 1)
    assert resp.status == 200 and old is not None and await resp.read() == old.data


async def test_delta_update_and_gzip(ll: tuple[Slave, Feed]) -> None:
    slave, feed = ll
    packager = slave.packager()
    feed.until(lambda: packager.newest_sequence == 9)
    sid = await slave.enter()
    status, delta = await get(slave, f"/{PATH}/{sid}/media.m3u8?_HLS_skip=YES")
    assert status == 200 and "#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n" in delta
    assert delta.encode() == packager.delta_bytes
    resp = await slave.client.get(
        f"/{PATH}/{sid}/media.m3u8?_HLS_skip=YES&_HLS_msn=1",
        headers={"Accept-Encoding": "gzip"},
    )
    assert await resp.text() == delta
    # gzipped when long enough to gain from it
    assert resp.headers.get("Content-Encoding") == ("gzip" if packager.delta_gzip else None)
    assert resp.headers["Vary"] == "Accept-Encoding"
    resp = await slave.client.get(
        f"/{PATH}/{sid}/media.m3u8?_HLS_msn=1", headers={"Accept-Encoding": "gzip"},
        auto_decompress=False,
    )
    raw = await resp.read()
    if len(packager.playlist_bytes) >= GZIP_MIN_BYTES:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(raw) == packager.playlist_bytes
    else:
        assert "Content-Encoding" not in resp.headers and raw == packager.playlist_bytes


async def test_plain_mode_ignores_the_directives(make_slave: SlaveFactory) -> None:  # noqa: F811
    slave = await make_slave(segment_duration=1.0, low_latency=False)
    slave.publish()
    sid = await slave.enter()
    packager = slave.packager()
    assert b"#EXT-X-VERSION:3\n" in packager.playlist_bytes
    assert b"EXT-X-PART" not in packager.playlist_bytes
    for query in ("_HLS_msn=99", "_HLS_skip=YES", "_HLS_part=1"):
        assert await get(slave, f"/{PATH}/{sid}/media.m3u8?{query}") == (
            200, packager.playlist_bytes.decode()
        )
    assert (await slave.client.get(f"/{PATH}/{sid}/0.0.ts")).status == 404
