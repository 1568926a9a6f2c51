"""Waiting on a live stream (airclass.streams.LiveStream.wait_change)."""

from __future__ import annotations

import asyncio

from airclass.hls.packager import HlsPackager, PackagerConfig
from airclass.streams import PRUNE_WAITERS, LiveStream


def live() -> tuple[HlsPackager, LiveStream]:
    packager = HlsPackager(PackagerConfig(low_latency=True))
    return packager, LiveStream("live/class", packager)


def test_every_waiter_wakes_on_the_next_change_and_only_that_one() -> None:
    async def main() -> None:
        packager, stream = live()
        waits = [asyncio.ensure_future(stream.wait_change(5.0)) for _ in range(3)]
        await asyncio.sleep(0)
        packager.on_publish_start()  # a change: the packager notifies its listeners
        assert await asyncio.gather(*waits) == [True, True, True]
        late = asyncio.ensure_future(stream.wait_change(0.05))
        assert await late is False  # no change since it began waiting

    asyncio.run(main())


def test_waits_that_time_out_or_are_cancelled_do_not_pile_up_without_changes() -> None:
    async def main() -> None:
        _packager, stream = live()
        for _ in range(5):
            batch = [asyncio.ensure_future(stream.wait_change(0.001)) for _ in range(200)]
            await asyncio.gather(*batch)
            gone = asyncio.ensure_future(stream.wait_change(10.0))
            await asyncio.sleep(0)
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
        assert len(stream._waiters) <= 2 * PRUNE_WAITERS
        assert not asyncio.all_tasks() - {asyncio.current_task()}

    asyncio.run(main())
