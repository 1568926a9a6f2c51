"""One stream path's HLS output: frames in (as the hub's MediaSink), playlist and segments out.

Everything a viewer request needs is prepared when a segment is made: the playlist text, its
gzip, the segment bytes. Serving is then a lookup of shared bytes, whatever the viewer count.
Synchronous: the web layer turns `add_listener` callbacks into asyncio wake-ups.

Plain mode muxes the open segment as its frames arrive (`airclass.hls.ahead`), so that the
keyframe that closes it leaves only a few frames, the container's end and the last packets to
finish. The segment is listed first (`SegmentRing.announce`): its playlist line needs only its
number, duration and date, which the cut gives, while no viewer can ask for its bytes before
reading that line. Its bytes are made when the next frame arrives, or when a reader asks for
a segment's bytes, whichever comes first; so the playlist that lists a segment goes out
without waiting for them. Figures (`state`, `bandwidth`, `total_bytes`, sequence numbers) do
no work: they read what is made.

Low-latency mode (`PackagerConfig.low_latency`): each partial segment is muxed as its own small
MPEG-TS (PAT and PMT first, continuity counters carried on) as soon as the segmenter closes it,
and the full segment is its parts' bytes joined, so a legacy player reading full segments and an
LL-HLS player reading parts get the same packets. The playlist (and its delta update) is
re-rendered after every part.

One file, past the size of the others: every method moves the same state (the ring, the open
segment, the target duration, the playlist bytes and their listeners) in an order that the
latency and the byte-identical playlists of every node depend on. What stands apart is apart:
cutting (segmenter), muxing (muxer, ahead), rendering (playlist), keeping (ring).
"""

from __future__ import annotations

import gzip
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from airclass.hls.ahead import MuxAhead, finish
from airclass.hls.mpegts import TsContinuity, TsError
from airclass.hls.muxer import MuxError, SegmentMuxer, mux_segment
from airclass.hls.playlist import (
    OpenSegment,
    PlaylistDraft,
    TargetDuration,
    draft_media_playlist,
    render_ll_media_playlist,
    render_media_playlist,
)
from airclass.hls.ring import Part, RingError, Segment, SegmentRing
from airclass.hls.segmenter import PendingPart, PendingSegment, Segmenter, SegmenterEvent
from airclass.media.bitstream import AacInfo, AvcInfo, BitstreamError, parse_asc, parse_avcc
from airclass.media.frames import AudioConfig, Frame, KeyframeComing, MediaEvent, VideoConfig

log = logging.getLogger(__name__)

GZIP_MIN_BYTES = 1200
"""Playlists shorter than this are not gzipped: the reply fits one TCP segment either way, and
compressing it would delay the playlist that lists a new segment. A plain-HLS
playlist of six segments is ~500 bytes; a low-latency one, with its parts, several KB."""

PackagerState = Literal["waiting", "live", "ended"]
Listener = Callable[[], None]


@dataclass(frozen=True, slots=True)
class PackagerConfig:
    """Limits and timing of one stream's packaging."""

    target_duration: float = 2.0
    """Seconds; segments are cut at the first keyframe after this."""
    ring_segments: int = 8
    """Segments kept in memory and servable."""
    playlist_segments: int = 6
    """Segments listed in the playlist. The rest of the ring stays servable for players that
    still hold an older playlist (RFC 8216 §6.2.2)."""
    ring_bytes: int = 64 << 20
    max_segment_bytes: int = 16 << 20
    """Cap on one segment's media bytes; reaching it forces a cut."""
    max_segment_duration: float = 15.0
    """Cap on one segment's duration when no keyframe comes; reaching it forces a cut."""
    max_timestamp_jump: float = 5.0
    """Seconds of dts jump taken as a timestamp discontinuity."""
    segment_uri: str = "{sequence}.ts"
    low_latency: bool = False
    """LL-HLS: partial segments, blocking reload, preload hints, delta updates."""
    part_target: float = 0.3
    """Seconds; the longest a partial segment lasts (PART-TARGET)."""
    part_uri: str = "{sequence}.{part}.ts"

    def __post_init__(self) -> None:
        if not 1 <= self.playlist_segments <= self.ring_segments:
            raise ValueError("need 1 <= playlist_segments <= ring_segments")
        if self.low_latency and not 0.1 <= self.part_target <= self.target_duration:
            raise ValueError("need 0.1 <= part_target <= target_duration")


class HlsPackager:
    """Segmenter + muxer + ring + cached playlist for one stream path."""

    def __init__(
        self,
        config: PackagerConfig | None = None,
        now: Callable[[], float] = time.time,
        *,
        path: str = "",
    ) -> None:
        self.config = config = config or PackagerConfig()
        self.path = path
        self._now = now
        self._segmenter = Segmenter(
            config.target_duration,
            max_bytes=config.max_segment_bytes,
            max_duration=config.max_segment_duration,
            max_jump=config.max_timestamp_jump,
            name=path,
            part_target=config.part_target if config.low_latency else None,
        )
        self._ring = SegmentRing(config.ring_segments, config.ring_bytes)
        self._continuity = TsContinuity()
        self._target = TargetDuration(config.target_duration)
        self._listeners: list[Listener] = []
        self._video: AvcInfo | None = None
        self._audio: AacInfo | None = None
        self._video_record: bytes | None = None
        self._audio_record: bytes | None = None
        self._force_discontinuity = False
        self.publishing = False
        self.ended_at: float | None = None
        """Wall clock when the publisher stopped; None while live or before any publisher."""
        self.video_codec: str | None = None
        """RFC 6381 codec string of the latest video config, e.g. "avc1.64001f"."""
        self.audio_codec: str | None = None
        self.resolution: tuple[int, int] | None = None
        self._bandwidth = 0
        self._average_bandwidth = 0
        self.segments_made = 0
        self.segments_muxed_ahead = 0
        """Plain-mode segments whose frames were muxed as they arrived."""
        self.mux_errors = 0
        self._ahead = MuxAhead()
        self._draft: PlaylistDraft | None = None
        """Plain mode: the playlist that will list the open segment, but for its duration."""
        self.playlists_drafted = 0
        """Plain-mode segments listed by completing a draft instead of a whole render."""
        self._unconfigured_frames = 0
        self.low_latency = config.low_latency
        self.part_target = config.part_target
        """PART-TARGET; an edge adopts its origin's."""
        self._open_parts: list[Part] = []
        self._open_pdt = 0.0
        self._open_discontinuity = False
        self.parts_made = 0
        self.playlist_bytes = b""
        self.playlist_gzip = b""
        """The playlist gzipped; empty when it is shorter than `GZIP_MIN_BYTES`."""
        self.delta_bytes = b""
        """The delta update (`_HLS_skip=YES`) in low-latency mode."""
        self.delta_gzip = b""
        self._render()

    # -- what the web layer reads ------------------------------------------------------------

    @property
    def bandwidth(self) -> int:
        """Peak bits/s over the listed segments whose bytes are made (for BANDWIDTH=)."""
        return self._bandwidth

    @property
    def average_bandwidth(self) -> int:
        return self._average_bandwidth

    @property
    def state(self) -> PackagerState:
        if self.ended_at is not None:
            return "ended"
        return "live" if len(self._ring) else "waiting"

    @property
    def codecs(self) -> str:
        """CODECS= value: the known codec strings joined by commas."""
        return ",".join(c for c in (self.video_codec, self.audio_codec) if c)

    @property
    def dropped_frames(self) -> int:
        """Frames not packaged: no usable config for their kind, before a first keyframe,
        or larger than a segment may be."""
        return self._unconfigured_frames + self._segmenter.dropped_frames

    @property
    def segments_announced(self) -> int:
        """Plain-mode segments closed by a keyframe announced from its first chunk."""
        return self._segmenter.announced_cuts

    @property
    def keyframe_interval(self) -> float | None:
        """Seconds between the publisher's keyframes, once two were seen."""
        return self._segmenter.keyframe_interval

    @property
    def target_duration(self) -> int:
        return self._target.value

    @property
    def total_bytes(self) -> int:
        """Bytes held in the segment ring (a listed segment's once they are made)."""
        return self._ring.total_bytes

    @property
    def newest_sequence(self) -> int | None:
        """The newest listed segment's sequence number."""
        newest = self._ring.newest
        return newest.sequence if newest is not None else None

    def segment(self, sequence: int) -> Segment | None:
        """Segment `sequence` with its bytes (made now if it was listed ahead of them)."""
        self._finish_listed()
        return self._ring.get(sequence)

    @property
    def next_sequence(self) -> int:
        """Media sequence of the open segment (the one being made)."""
        return self._ring.next_sequence

    @property
    def open_parts(self) -> int:
        """Parts the open segment has so far."""
        return len(self._open_parts)

    def open_segment(self) -> OpenSegment:
        disc = self._open_discontinuity
        return OpenSegment(
            sequence=self._ring.next_sequence,
            parts=tuple(self._open_parts),
            program_date_time=self._open_pdt,
            discontinuity=disc,
            discontinuity_sequence=self._ring.next_discontinuity_sequence + int(disc),
        )

    def part(self, sequence: int, index: int) -> Part | None:
        """Part `index` of segment `sequence`, open or finished."""
        self._finish_listed()
        if sequence == self._ring.next_sequence:
            return self._open_parts[index] if 0 <= index < len(self._open_parts) else None
        segment = self._ring.get(sequence)
        return segment.part(index) if segment is not None else None

    def segments(self) -> list[Segment]:
        """Every servable segment, oldest first."""
        self._finish_listed()
        return list(self._ring)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener()` after each new segment or state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- MediaSink ---------------------------------------------------------------------------

    def on_publish_start(self) -> None:
        self._finish_listed()
        log.info("stream %s: publisher started", self.path)
        self.publishing = True
        if len(self._ring) or self._segmenter.pending_frames:
            self._flush()
            self._segmenter.mark_discontinuity()
            self._force_discontinuity = True
        # A reconnecting publisher sends its configs again, maybe different ones.
        self._video = self._audio = None
        self._video_record = self._audio_record = None
        self._segmenter.has_video = False
        self.ended_at = None
        self._render()
        self._notify()

    def on_event(self, event: MediaEvent) -> None:
        if isinstance(event, Frame):
            # The keyframe whose announcement listed the open segment closes it as a keyframe
            # closes a segment by itself: the listed segment's last frames wait for the frame
            # after it (the playlist is out before that work).
            closing = self._ring.pending is not None and self._segmenter.is_announced(event)
            if not closing:
                self._finish_listed()
            self._on_frame(event, closing)
            return
        self._finish_listed()
        if isinstance(event, VideoConfig):
            self._on_video_config(event)
        elif isinstance(event, AudioConfig):
            self._on_audio_config(event)
        elif isinstance(event, KeyframeComing):
            self._on_keyframe_coming(event)

    def on_publish_stop(self) -> None:
        self.pause()
        self.end()

    def pause(self) -> None:
        """The publisher left: package what it sent, but keep the playlist open (no ENDLIST)
        so that a reconnect continues it with a discontinuity."""
        self._finish_listed()
        log.info("stream %s: publisher stopped", self.path)
        self.publishing = False
        if not self._flush():
            self._render()
            self._notify()

    def end(self) -> None:
        """No publisher is coming back: close the playlist with #EXT-X-ENDLIST."""
        self._finish_listed()
        if self.ended_at is not None:
            return
        self.ended_at = self._now()
        self._render()
        self._notify()

    # -- relay -------------------------------------------------------------------------------

    def append_segment(
        self, segment: Segment, *, target_duration: int | None = None, ended: bool = False
    ) -> None:
        """Serve a segment made elsewhere (an edge relaying its origin), bytes and numbers
        unchanged. `target_duration` adopts the origin's value; `ended` its ENDLIST.
        Raises RingError if the segment cannot follow the newest one."""
        self._finish_listed()
        self._draft = None
        self._ring.append(segment)
        self._clear_open()
        self._target.observe(segment.duration)
        if target_duration is not None:
            self._target.value = max(self._target.value, target_duration)
        self.ended_at = (self.ended_at or self._now()) if ended else None
        self.segments_made += 1
        self._measure_bandwidth()
        self._render()
        self._notify()

    def append_part(
        self,
        sequence: int,
        index: int,
        part: Part,
        *,
        program_date_time: float,
        discontinuity: bool,
        target_duration: int | None = None,
        part_target: float | None = None,
    ) -> None:
        """Serve a part made elsewhere (an edge relaying its origin's open segment).
        Raises RingError unless it is the next part of this node's open segment."""
        self._finish_listed()
        if sequence != self._ring.next_sequence or index != len(self._open_parts):
            raise RingError(
                f"part {sequence}.{index} does not follow "
                f"{self._ring.next_sequence}.{len(self._open_parts)}"
            )
        if index == 0:
            self._open_pdt = program_date_time
            self._open_discontinuity = discontinuity and self._ring.newest is not None
        if target_duration is not None:
            self._target.value = max(self._target.value, target_duration)
        if part_target is not None:
            self.part_target = part_target
        self._open_parts.append(part)
        self.parts_made += 1
        self._render()
        self._notify()

    def discard_open_parts(self) -> None:
        """Forget the open segment's parts (an edge whose parts no longer match its
        origin's fetches them again)."""
        self._finish_listed()
        self._clear_open()
        self._render()
        self._notify()

    def adopt_media_info(
        self,
        *,
        video_codec: str | None,
        audio_codec: str | None,
        resolution: tuple[int, int] | None,
    ) -> None:
        """Take the origin's codec strings and resolution, so that an edge's multivariant
        playlist says what the origin's says (redundant variants must match exactly)."""
        self.video_codec = video_codec
        self.audio_codec = audio_codec
        self.resolution = resolution

    def reset(self) -> None:
        """Forget every segment: an edge whose origin restarted its numbering starts over
        (a media sequence must never go back within one playlist's life)."""
        self._finish_listed()
        self._draft = None
        self._ring.clear()
        self._clear_open()
        self._target = TargetDuration(self.config.target_duration)
        self.ended_at = None
        self._bandwidth = self._average_bandwidth = 0
        self._render()
        self._notify()

    # -- internals ---------------------------------------------------------------------------

    def _on_video_config(self, config: VideoConfig) -> None:
        if config.record == self._video_record:
            return
        if config.codec != "h264":
            log.warning("stream %s: video codec %s is not packaged", self.path, config.codec)
            return
        try:
            info = parse_avcc(config.record)
        except BitstreamError as exc:
            log.warning("stream %s: bad avcC record (%s); video ignored", self.path, exc)
            return
        self._config_changed(self._video_record is not None)
        self._video, self._video_record = info, config.record
        self._segmenter.has_video = True
        self.video_codec = info.codec_string
        self.resolution = (info.width, info.height)
        log.info(
            "stream %s: video %s %dx%d", self.path, info.codec_string, info.width, info.height
        )

    def _on_audio_config(self, config: AudioConfig) -> None:
        if config.record == self._audio_record:
            return
        if config.codec != "aac":
            log.warning("stream %s: audio codec %s is not packaged", self.path, config.codec)
            return
        try:
            info = parse_asc(config.record)
        except BitstreamError as exc:
            log.warning("stream %s: bad AudioSpecificConfig (%s); audio ignored", self.path, exc)
            return
        self._config_changed(self._audio_record is not None)
        self._audio, self._audio_record = info, config.record
        self.audio_codec = info.codec_string
        log.info(
            "stream %s: audio %s %d Hz, %d channels",
            self.path, info.codec_string, info.sample_rate, info.channels,
        )

    def _config_changed(self, replacing: bool) -> None:
        """A new track or new codec parameters: frames muxed so far keep the old ones."""
        if replacing or self._segmenter.pending_frames:
            self._flush()
            if len(self._ring):
                self._segmenter.mark_discontinuity()
                self._force_discontinuity = True

    def _on_frame(self, frame: Frame, closing: bool = False) -> None:
        if (self._video if frame.kind == "video" else self._audio) is None:
            self._unconfigured_frames += 1
            return
        if self.low_latency:
            self._handle(self._segmenter.feed(frame, self._now()))
            return
        closed = self._segmenter.push(frame, self._now())
        for pending in closed:
            self._emit(pending)
        if not (closed or closing):
            segmenter = self._segmenter
            self._ahead.advance(
                segmenter.open_frames, segmenter.settled_frames, self._video, self._audio,
                self._continuity,
            )
            self._prepare_draft()

    def _on_keyframe_coming(self, coming: KeyframeComing) -> None:
        """Plain mode: the keyframe that closes the open segment is still arriving; list the
        segment now (its frames are all in). The segmenter ignores it in low-latency mode."""
        for pending in self._segmenter.announce_keyframe(coming.dts, coming.pts):
            self._emit(pending)

    def _flush(self) -> bool:
        """Close the pending segment; False if none was added."""
        if self.low_latency:
            return self._handle(self._segmenter.flush_events())
        added = False
        for pending in self._segmenter.flush():
            added = self._emit(pending) or added
        return added

    def _handle(self, events: list[SegmenterEvent]) -> bool:
        added = False
        for event in events:
            if isinstance(event, PendingPart):
                self._emit_part(event)
            else:
                added = self._emit_from_parts(event) or added
        return added

    def _clear_open(self) -> None:
        self._open_parts = []
        self._open_pdt = 0.0
        self._open_discontinuity = False

    def _emit_part(self, pending: PendingPart) -> None:
        """Mux, store and announce a part of the open segment."""
        try:
            data = mux_segment(pending.frames, self._video, self._audio, self._continuity)
        except (MuxError, TsError) as exc:
            self.mux_errors += 1
            log.error("stream %s: dropping a part that failed to mux: %s", self.path, exc)
            return
        if not self._open_parts:
            self._open_pdt = pending.program_date_time
            self._open_discontinuity = self._ring.newest is not None and (
                pending.discontinuity or self._force_discontinuity
            )
            self._force_discontinuity = False
        self._open_parts.append(Part(pending.duration, data, pending.independent))
        self.parts_made += 1
        self._render()
        self._notify()

    def _emit_from_parts(self, pending: PendingSegment) -> bool:
        """Close the open segment: its bytes are its parts' bytes joined."""
        parts = tuple(self._open_parts)
        if not parts:
            self._force_discontinuity = True
            return False
        discontinuity = self._open_discontinuity
        segment = Segment(
            sequence=self._ring.next_sequence,
            duration=pending.duration,
            data=b"".join(part.data for part in parts),
            program_date_time=self._open_pdt,
            discontinuity=discontinuity,
            discontinuity_sequence=self._ring.next_discontinuity_sequence + int(discontinuity),
            parts=parts,
        )
        self._clear_open()
        self._store(segment)
        return True

    def _emit(self, pending: PendingSegment | None) -> bool:
        """Mux, store and announce a closed segment; False if there was none to add. A segment
        muxed ahead is listed at once and finished later (`_finish_listed`)."""
        if pending is None:
            return False
        self._finish_listed()  # one segment listed ahead of its bytes at a time
        muxer = self._ahead.take(pending.frames, self._video, self._audio)
        if muxer is not None:
            self._list(pending, muxer)
            return True
        try:
            data = mux_segment(pending.frames, self._video, self._audio, self._continuity)
        except (MuxError, TsError) as exc:
            self.mux_errors += 1
            self._force_discontinuity = True
            log.error("stream %s: dropping a segment that failed to mux: %s", self.path, exc)
            return False
        self._store(self._new_segment(pending, data))
        return True

    def _new_segment(self, pending: PendingSegment, data: bytes) -> Segment:
        segment = self._next_segment(
            pending.duration, data, pending.program_date_time, pending.discontinuity
        )
        self._force_discontinuity = False
        return segment

    def _next_segment(
        self, duration: float, data: bytes, program_date_time: float, discontinuity: bool
    ) -> Segment:
        """The segment that follows the ring's newest (a discontinuity after a failure too)."""
        discontinuity = self._ring.newest is not None and (
            discontinuity or self._force_discontinuity
        )
        return Segment(
            sequence=self._ring.next_sequence,
            duration=duration,
            data=data,
            program_date_time=program_date_time,
            discontinuity=discontinuity,
            discontinuity_sequence=self._ring.next_discontinuity_sequence + int(discontinuity),
        )

    def _list(self, pending: PendingSegment, muxer: SegmentMuxer) -> None:
        """Announce a closed segment whose last frames are still to mux: the playlist needs
        none of its bytes, and was drafted while the segment was open. (A listing evicts by
        count only, segments older than the playlist's window: the draft holds.)"""
        segment = self._new_segment(pending, b"")
        frames = pending.frames
        self._ring.announce(segment, lambda: self._finish(muxer, frames))
        self._target.observe(pending.duration)
        self.segments_made += 1
        self.segments_muxed_ahead += 1
        draft, self._draft = self._draft, None
        if draft is not None and self.ended_at is None and draft.fits(segment, self._target.value):
            self._set_playlist(draft.complete(segment.duration).encode())
            self.playlists_drafted += 1
        else:
            self._render()
        self._notify()

    def _finish(self, muxer: SegmentMuxer, frames: tuple[Frame, ...]) -> bytes:
        """The listed segment's bytes. Should its last frames fail to mux, it keeps the packets
        muxed before (a shorter segment, then a discontinuity): it is listed already, and a
        playlist cannot take a segment back."""
        try:
            data, self._continuity = finish(muxer, frames, self._continuity)
        except (MuxError, TsError) as exc:
            self.mux_errors += 1
            self._force_discontinuity = True
            self._continuity = muxer.continuity
            data = muxer.finished_bytes()
            log.error("stream %s: segment %d failed to mux its last frames, kept %d bytes: %s",
                      self.path, self._ring.next_sequence - 1, len(data), exc)
        return data

    def _prepare_draft(self) -> None:
        """Draft the playlist that will list the open segment, once per segment, at a frame
        that closes nothing: off the path from the closing keyframe to the playlist."""
        segmenter = self._segmenter
        if self._ring.pending is not None or not segmenter.open_frames:
            return
        sequence = self._ring.next_sequence
        pdt = segmenter.open_program_date_time
        draft = self._draft
        if (
            draft is not None
            and draft.upcoming.sequence == sequence
            and draft.upcoming.program_date_time == pdt
        ):
            return
        count = self.config.playlist_segments
        self._draft = draft_media_playlist(
            self._ring.newest_segments(count - 1) if count > 1 else [],
            self._next_segment(0.0, b"", pdt, segmenter.open_discontinuity),
            target_duration=self._target.value,
            segment_uri=self.config.segment_uri,
        )

    def _finish_listed(self) -> None:
        """Make the listed segment's bytes now, if one waits for them. Should the byte cap then
        evict a segment the playlist lists, the playlist is rendered again."""
        pending = self._ring.pending
        if pending is None:
            return
        count = self.config.playlist_segments
        listed_window = self._window(count)
        self._ring.complete()
        segment = self._ring.get(pending.sequence)
        if segment is not None:
            self._admitted(segment)
        if self._window(count) != listed_window:
            self._render()
            self._notify()

    def _window(self, count: int) -> list[int]:
        if count < 1:
            return []
        return [s.sequence for s in self._ring.newest_segments(count)]

    def _store(self, segment: Segment) -> None:
        self._finish_listed()
        self._target.observe(segment.duration)
        self.segments_made += 1
        self._admit(segment)
        self._render()
        self._notify()

    def _admit(self, segment: Segment) -> None:
        self._ring.append(segment)
        self._admitted(segment)

    def _admitted(self, segment: Segment) -> None:
        self._draft = None
        self._measure_bandwidth()
        log.debug(
            "stream %s: segment %d, %.3f s, %d bytes, %d parts%s", self.path, segment.sequence,
            segment.duration, len(segment.data), len(segment.parts),
            ", discontinuity" if segment.discontinuity else "",
        )

    def _measure_bandwidth(self) -> None:
        timed = [
            s for s in self._ring.newest_segments(self.config.playlist_segments) if s.duration > 0
        ]
        if not timed:
            return
        # Short segments (a flush at a config change) give noisy rates: prefer full ones.
        full = [s for s in timed if s.duration >= self.config.target_duration / 2] or timed
        self._bandwidth = max(math.ceil(len(s.data) * 8 / s.duration) for s in full)
        total_seconds = sum(s.duration for s in timed)
        self._average_bandwidth = math.ceil(sum(len(s.data) for s in timed) * 8 / total_seconds)

    def _set_playlist(self, body: bytes) -> None:
        self.playlist_bytes = body
        self.playlist_gzip = _gzip(body)

    def _render(self) -> None:
        segments = self._ring.newest_segments(self.config.playlist_segments)
        ended = self.ended_at is not None
        if not self.low_latency:
            text = render_media_playlist(
                segments,
                target_duration=self._target.value,
                ended=ended,
                segment_uri=self.config.segment_uri,
            )
            self._set_playlist(text.encode())
            return
        for skip in (False, True):
            text = render_ll_media_playlist(
                segments,
                open_segment=None if ended else self.open_segment(),
                target_duration=self._target.value,
                part_target=self.part_target,
                ended=ended,
                skip=skip,
                segment_uri=self.config.segment_uri,
                part_uri=self.config.part_uri,
            )
            body = text.encode()
            if skip:
                self.delta_bytes, self.delta_gzip = body, _gzip(body)
            else:
                self.playlist_bytes, self.playlist_gzip = body, _gzip(body)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("stream %s: playlist listener failed", self.path)


def _gzip(body: bytes) -> bytes:
    if len(body) < GZIP_MIN_BYTES:
        return b""
    return gzip.compress(body, compresslevel=6, mtime=0)
