"""Plain HLS's mux-ahead: the open segment is muxed as its frames arrive, as far as they are
sure to stay in it, so that closing it, when its successor's keyframe comes, muxes only the
last few frames rather than the whole segment, and the playlist that lists it waits for none
of them (the packager lists a closed segment first and finishes its bytes after).

`MuxAhead` follows one stream's open segment; `finish` completes a segment it began. Both are
synchronous and hold no I/O but the muxer's in-memory container.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airclass.hls.mpegts import TsContinuity
from airclass.hls.muxer import MuxError, SegmentMuxer
from airclass.media.bitstream import AacInfo, AvcInfo
from airclass.media.frames import Frame


@dataclass(slots=True)
class _Open:
    """The open segment, muxed as far as it is settled."""

    source: Sequence[Frame]
    """The segmenter's list of the open segment's frames (a new segment has a new list)."""
    muxer: SegmentMuxer
    failed: bool = False


class MuxAhead:
    """The open segment's muxer, kept level with its settled frames."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: _Open | None = None

    @property
    def muxer(self) -> SegmentMuxer | None:
        """The muxer of the open segment, while muxing it goes well."""
        current = self._open
        return None if current is None or current.failed else current.muxer

    def advance(
        self,
        frames: Sequence[Frame],
        settled: Callable[[int], int],
        video: AvcInfo | None,
        audio: AacInfo | None,
        continuity: TsContinuity,
    ) -> None:
        """Mux the open segment's frames up to `settled(already_muxed)`: those that no later
        frame can move to the next segment. A new `frames` list is a new segment."""
        if not frames:
            return
        current = self._open
        if current is None or current.source is not frames:
            self.abandon()
            try:
                current = self._open = _Open(frames, SegmentMuxer(video, audio, continuity))
            except MuxError:
                return
        if current.failed:
            return
        muxer = current.muxer
        try:
            for i in range(len(muxer.frames), settled(len(muxer.frames))):
                muxer.add(frames[i])
        except MuxError:
            muxer.abandon()
            current.failed = True  # the segment is muxed whole when it closes, and fails there

    def take(
        self, frames: tuple[Frame, ...], video: AvcInfo | None, audio: AacInfo | None
    ) -> SegmentMuxer | None:
        """The muxer begun for the segment just closed with `frames`, when it holds the same
        frames in the same order with the current codec parameters; else None (abandoned)."""
        current, self._open = self._open, None
        if current is None or current.failed:
            return None
        muxer = current.muxer
        muxed = muxer.frames
        done = len(muxed)
        # A closed segment's frames are its open list's, in order, less the audio moved to
        # the next segment: a subsequence. So its first `done` frames are the ones muxed iff
        # its first and its done-th frame are (a frame is in one segment only).
        if (
            muxer.video is video
            and muxer.audio is audio
            and len(frames) >= done
            and (done == 0 or (frames[0] is muxed[0] and frames[done - 1] is muxed[-1]))
        ):
            return muxer
        muxer.abandon()
        return None

    def abandon(self) -> None:
        """Forget the open segment's muxer (its frames will be muxed whole, if at all)."""
        current, self._open = self._open, None
        if current is not None and not current.failed:
            current.muxer.abandon()


def finish(
    muxer: SegmentMuxer, frames: tuple[Frame, ...], continuity: TsContinuity
) -> tuple[bytes, TsContinuity]:
    """The rest of a segment `MuxAhead` began: its last frames and the container's end. Counters
    carry on from `continuity` (the segment is renumbered should the state have moved since the
    muxer began); returns the bytes and the state after them. Raises MuxError (the muxer is
    then abandoned; `muxer.finished_bytes()` still holds what was muxed before)."""
    try:
        for frame in frames[len(muxer.frames) :]:
            muxer.add(frame)
        data = muxer.finish()
    except MuxError:
        muxer.abandon()
        raise
    if muxer.started_from == continuity:
        return data, muxer.continuity
    return continuity.rewrite(data), continuity
