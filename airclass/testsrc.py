"""A built-in test-pattern publisher: moving colour bars with a wall clock, and a tone.

`python -m airclass.testsrc rtmp://host:1935/live/stream?key=…` (or `--api URL` to ask a master
or standalone slave for a teacher publish URL) stands in for OBS, so a classroom can be tried
with no camera and no ffmpeg binary.

Transport: PyAV's own FLV-over-RTMP output (`av.open("rtmp://…", "w", format="flv")`), i.e.
FFmpeg's RTMP client. It is the client our end-to-end tests already prove our server against
(the ffmpeg binary uses the same code), so it tests our server against an independent peer; a
publisher built on our own chunk writer and AMF0 encoder would share our assumptions on both
ends of the wire and add code to maintain.

Cost: 640x360 at 25 fps, x264 `ultrafast`/`zerolatency` at 600 kbit/s, so that it runs beside
a master and two slaves on one PC; keyframes every `keyint` seconds (1 s), no B-frames, so
segments can be cut at 1 s.

The picture is drawn straight into a YUV 4:2:0 buffer with numpy (no colour conversion): colour
bars scrolling sideways, a bouncing box, and the sender's wall clock `HH:MM:SS.t` in large
seven-segment digits, so the glass-to-glass delay can be read off a screen next to a clock.
The sound is a quiet 440 Hz tone with a short 880 Hz beep at the start of every second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

# Seven segments: a (top), b (top right), c (bottom right), d (bottom), e (bottom left),
# f (top left), g (middle).
_SEGMENTS: Final[dict[str, str]] = {
    "0": "abcdef",
    "1": "bc",
    "2": "abged",
    "3": "abgcd",
    "4": "fgbc",
    "5": "afgcd",
    "6": "afgedc",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
    "-": "g",
}

# (Y, U, V) of the classic 75 % bars: white, yellow, cyan, green, magenta, red, blue.
_BARS: Final = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
]


@dataclass(frozen=True, slots=True)
class PatternSettings:
    """What the test pattern costs: keep it small enough to run beside a cluster on 2 cores."""

    width: int = 640
    height: int = 360
    fps: int = 25
    video_bitrate: int = 600_000
    audio_bitrate: int = 96_000
    sample_rate: int = 48_000
    keyint: float = 1.0
    """Seconds between keyframes (HLS segments are cut at keyframes)."""
    tone_hz: float = 440.0
    preset: str = "ultrafast"

    def __post_init__(self) -> None:
        if self.width % 16 or self.height % 8 or not 64 <= self.width <= 3840:
            raise ValueError("size must be a multiple of 16x8, from 64 to 3840 wide")
        if not 64 <= self.height <= 2160:
            raise ValueError("height must be from 64 to 2160")
        if not 1 <= self.fps <= 60:
            raise ValueError("fps must be from 1 to 60")
        if not 0.2 <= self.keyint <= 10:
            raise ValueError("keyint must be from 0.2 to 10 seconds")

    @property
    def gop(self) -> int:
        return max(1, round(self.keyint * self.fps))


class PatternPainter:
    """Draws frame `n` of the test pattern into one reused yuv420p buffer (pure numpy)."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._y, self._u, self._v = self._make_bars(width, height)
        self._buffer = np.empty((height * 3 // 2, width), np.uint8)
        # yuv420p packed as PyAV wants it: Y rows, then U, then V, each plane contiguous.
        quarter = height // 4
        self._out_y = self._buffer[:height]
        self._out_u = self._buffer[height : height + quarter].reshape(height // 2, width // 2)
        self._out_v = self._buffer[height + quarter :].reshape(height // 2, width // 2)
        self._digit_h = max(16, height // 5)
        self._digit_w = self._digit_h // 2
        self._stroke = max(2, self._digit_h // 8)

    @staticmethod
    def _make_bars(width: int, height: int) -> tuple[U8, U8, U8]:
        """Bars repeated twice across double-width planes, so a horizontal scroll is a slice."""
        columns = np.arange(width * 2) * len(_BARS) // width % len(_BARS)
        chroma_columns = columns[::2]
        y = np.array([b[0] for b in _BARS], np.uint8)[columns]
        u = np.array([b[1] for b in _BARS], np.uint8)[chroma_columns]
        v = np.array([b[2] for b in _BARS], np.uint8)[chroma_columns]
        return (
            np.tile(y, (height, 1)),
            np.tile(u, (height // 2, 1)),
            np.tile(v, (height // 2, 1)),
        )

    def paint(self, n: int, wall: float) -> U8:
        """Frame `n` (0-based) showing wall-clock time `wall` (Unix seconds, local time)."""
        w, h = self.width, self.height
        shift = (n * 4) % w & ~1
        half = shift // 2
        self._out_y[:] = self._y[:, shift : shift + w]
        self._out_u[:] = self._u[:, half : half + w // 2]
        self._out_v[:] = self._v[:, half : half + w // 2]
        luma = self._out_y
        # A bouncing box, one crossing every 4 seconds.
        box = max(8, h // 8)
        period = 4 * self.fps
        phase = n % (2 * period)
        x = (phase if phase < period else 2 * period - phase) * (w - box) // period
        y = h - box - h // 20
        luma[y : y + box, x : x + box] = 235
        self._out_u[y // 2 : (y + box) // 2, x // 2 : (x + box) // 2] = 128
        self._out_v[y // 2 : (y + box) // 2, x // 2 : (x + box) // 2] = 128
        self._draw_clock(wall)
        return self._buffer

    def clock_text(self, wall: float) -> str:
        tm = time.localtime(wall)
        tenths = int((wall % 1) * 10)
        return f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{tenths}"

    def _draw_clock(self, wall: float) -> None:
        luma = self._out_y
        text = self.clock_text(wall)
        dw, dh, s = self._digit_w, self._digit_h, self._stroke
        gap = s * 2
        widths = [dw if ch.isdigit() else s * 2 for ch in text]
        total = sum(widths) + gap * (len(text) - 1)
        x0 = max(0, (self.width - total) // 2)
        y0 = self.height // 3
        pad = s * 2
        top, left = max(0, y0 - pad), max(0, x0 - pad)
        luma[top : y0 + dh + pad, left : x0 + total + pad] = 16
        self._out_u[top // 2 : (y0 + dh + pad) // 2, left // 2 : (x0 + total + pad) // 2] = 128
        self._out_v[top // 2 : (y0 + dh + pad) // 2, left // 2 : (x0 + total + pad) // 2] = 128
        x = x0
        for ch, cw in zip(text, widths, strict=True):
            if ch in _SEGMENTS:
                self._draw_digit(luma, x, y0, ch)
            elif ch == ":":
                luma[y0 + dh // 4 : y0 + dh // 4 + s, x : x + s] = 235
                luma[y0 + 3 * dh // 4 - s : y0 + 3 * dh // 4, x : x + s] = 235
            elif ch == ".":
                luma[y0 + dh - s : y0 + dh, x : x + s] = 235
            x += cw + gap

    def _draw_digit(self, luma: U8, x: int, y: int, ch: str) -> None:
        dw, dh, s = self._digit_w, self._digit_h, self._stroke
        mid = y + (dh - s) // 2
        rects = {
            "a": (y, y + s, x, x + dw),
            "d": (y + dh - s, y + dh, x, x + dw),
            "g": (mid, mid + s, x, x + dw),
            "f": (y, mid + s, x, x + s),
            "e": (mid, y + dh, x, x + s),
            "b": (y, mid + s, x + dw - s, x + dw),
            "c": (mid, y + dh, x + dw - s, x + dw),
        }
        for seg in _SEGMENTS[ch]:
            top, bottom, left, right = rects[seg]
            luma[top:bottom, left:right] = 235


def tone(start: int, count: int, sample_rate: int, hz: float) -> F32:
    """Samples `start`…`start+count` of a quiet tone with a beep in each second's first 0.1 s."""
    index = np.arange(start, start + count, dtype=np.int64)
    t = index / sample_rate
    beep = (index % sample_rate) < sample_rate // 10
    freq = np.where(beep, hz * 2, hz)
    # Phase from the sample index keeps the wave continuous across calls.
    wave = np.where(beep, 0.25, 0.1) * np.sin(2 * np.pi * freq * t)
    return wave.astype(np.float32)


def redact(url: str) -> str:
    """A publish URL without its query (which holds the token or stream key): safe to log."""
    return url.split("?", 1)[0] + ("?…" if "?" in url else "")


class PatternSource:
    """Encodes the pattern with PyAV and publishes it in real time until stopped."""

    def __init__(self, settings: PatternSettings = PatternSettings()) -> None:
        self.settings = settings
        self.painter = PatternPainter(settings.width, settings.height, settings.fps)
        self.frames_sent = 0

    def publish(
        self,
        url: str,
        stop: threading.Event,
        duration: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Publish to `url` until `stop` is set, `duration` passes, or the connection fails."""
        import av  # the only module here that needs FFmpeg

        cfg = self.settings
        log.info(
            "test pattern %dx%d@%d, keyframe every %.1f s, to %s",
            cfg.width, cfg.height, cfg.fps, cfg.keyint, redact(url),
        )
        with av.open(url, "w", format="flv", timeout=10.0) as out:
            video = out.add_stream(
                "libx264",
                rate=cfg.fps,
                options={
                    "preset": cfg.preset,
                    "tune": "zerolatency",
                    "g": str(cfg.gop),
                    "keyint_min": str(cfg.gop),
                    "sc_threshold": "0",
                    "bf": "0",
                },
            )
            video.width, video.height, video.pix_fmt = cfg.width, cfg.height, "yuv420p"
            video.bit_rate = cfg.video_bitrate
            audio = out.add_stream("aac", rate=cfg.sample_rate, layout="stereo")
            audio.bit_rate = cfg.audio_bitrate
            vtb = Fraction(1, cfg.fps)
            atb = Fraction(1, cfg.sample_rate)
            frame_size = 1024
            start = clock()
            n = samples = 0
            while not stop.is_set():
                if duration is not None and n >= duration * cfg.fps:
                    break
                image = self.painter.paint(n, time.time())
                vframe = av.VideoFrame.from_ndarray(image, format="yuv420p")
                vframe.pts, vframe.time_base = n, vtb
                for packet in video.encode(vframe):
                    out.mux(packet)
                while samples < (n + 1) * cfg.sample_rate // cfg.fps:
                    mono = tone(samples, frame_size, cfg.sample_rate, cfg.tone_hz)
                    aframe = av.AudioFrame.from_ndarray(
                        np.stack([mono, mono]), format="fltp", layout="stereo"
                    )
                    aframe.sample_rate = cfg.sample_rate
                    aframe.pts, aframe.time_base = samples, atb
                    for packet in audio.encode(aframe):
                        out.mux(packet)
                    samples += frame_size
                n += 1
                self.frames_sent += 1
                delay = start + n / cfg.fps - clock()
                if delay > 0:
                    stop.wait(delay)
            for packet in video.encode(None):
                out.mux(packet)
            for packet in audio.encode(None):
                out.mux(packet)
        log.info("test pattern stopped after %d frames", n)

    def run(
        self,
        url_source: Callable[[], str],
        stop: threading.Event,
        duration: float | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        """Publish, and after a failure ask `url_source` again and reconnect, until stopped."""
        backoff = 0.5
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            try:
                url = url_source()
                self.publish(url, stop, remaining)
                if remaining is not None or stop.is_set():
                    return
                backoff = 0.5
            except Exception as exc:  # any failure: log, wait, reconnect
                log.warning("test pattern: %s; retrying in %.1f s", _describe(exc), backoff)
                stop.wait(backoff)
                backoff = min(max_backoff, backoff * 2)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if "?" in text:
        text = redact(text)
    return f"{type(exc).__name__}: {text}"


def publish_url_from_api(
    api: str, password: str, stream: str = "live/stream", user_id: str = "test-pattern"
) -> str:
    """Ask a master (or a standalone slave) for a teacher token and return its publish URL."""
    body = json.dumps(
        {"user_type": "teacher", "user_id": user_id, "password": password, "stream": stream}
    ).encode()
    request = urllib.request.Request(
        f"{api.rstrip('/')}/api/token",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            reply: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise RuntimeError(f"{api} refused the teacher token: {message}") from None
    return str(reply["publish_url"])


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("size looks like 640x360") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airclass.testsrc",
        description="Publish a test pattern (clock + tone) over RTMP, encoded with PyAV.",
    )
    parser.add_argument("url", nargs="?", help="rtmp://host:port/app/stream?key=… (or use --api)")
    parser.add_argument("--api", help="master or slave API URL to get a teacher publish URL from")
    parser.add_argument("--stream", default="live/stream", help="stream path with --api")
    parser.add_argument(
        "--password-env",
        default="TEACHER_PASSWORD",
        help="environment variable holding the teacher password for --api",
    )
    parser.add_argument("--size", type=_size, default=(640, 360), help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--bitrate", type=int, default=600_000, help="video bits per second")
    parser.add_argument("--keyint", type=float, default=1.0, help="seconds between keyframes")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if bool(args.url) == bool(args.api):
        print("airclass testsrc: give either an RTMP URL or --api", file=sys.stderr)
        return 2
    try:
        settings = PatternSettings(
            width=args.size[0],
            height=args.size[1],
            fps=args.fps,
            video_bitrate=args.bitrate,
            keyint=args.keyint,
        )
    except ValueError as exc:
        print(f"airclass testsrc: {exc}", file=sys.stderr)
        return 2
    if args.api:
        password = os.environ.get(args.password_env, "")
        if not password:
            print(f"airclass testsrc: set {args.password_env} for --api", file=sys.stderr)
            return 2
        api: str = args.api
        stream: str = args.stream

        def url_source() -> str:
            return publish_url_from_api(api, password, stream)
    else:
        fixed: str = args.url

        def url_source() -> str:
            return fixed

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    PatternSource(settings).run(url_source, stop, args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
