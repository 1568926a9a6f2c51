"""The test-pattern publisher's pure parts: picture, clock, tone, settings, log redaction."""

from __future__ import annotations

import time

import numpy as np
import pytest

from airclass.testsrc import PatternPainter, PatternSettings, redact, tone

W, H, FPS = 640, 360, 25
WALL = time.mktime((2024, 3, 4, 9, 41, 27, 0, 0, -1)) + 0.56


def test_frame_is_packed_yuv420p_and_moves() -> None:
    painter = PatternPainter(W, H, FPS)
    first = painter.paint(0, WALL).copy()
    assert first.shape == (H * 3 // 2, W) and first.dtype == np.uint8
    later = painter.paint(10, WALL).copy()
    assert not np.array_equal(first, later), "bars scroll and the box moves"
    assert np.array_equal(painter.paint(0, WALL), first), "same n and time, same picture"


def test_clock_shows_local_wall_time_to_a_tenth() -> None:
    painter = PatternPainter(W, H, FPS)
    assert painter.clock_text(WALL) == "09:41:27.5"
    a = painter.paint(0, WALL).copy()
    b = painter.paint(0, WALL + 1.0).copy()
    changed = np.argwhere(a[:H] != b[:H])
    # Only the clock's digits change between two frames with the same n.
    assert changed.size
    assert changed[:, 0].min() >= H // 3 - 10 and changed[:, 0].max() <= H // 3 + H // 5 + 10


def test_chroma_is_drawn_in_the_right_planes() -> None:
    painter = PatternPainter(W, H, FPS)
    frame = painter.paint(0, WALL)
    u = frame[H : H + H // 4].reshape(H // 2, W // 2)
    v = frame[H + H // 4 :].reshape(H // 2, W // 2)
    # The clock box is neutral grey in chroma; the bars at the top are coloured.
    assert u[H // 3 // 2 + 5, W // 4] == 128 and v[H // 3 // 2 + 5, W // 4] == 128
    assert len(set(u[2].tolist())) >= 5


def test_tone_is_continuous_across_calls_and_beeps_each_second() -> None:
    rate = 48_000
    whole = tone(0, 4096, rate, 440.0)
    parts = np.concatenate([tone(0, 1024, rate, 440.0), tone(1024, 3072, rate, 440.0)])
    assert np.array_equal(whole, parts)
    assert whole.dtype == np.float32
    beep = np.abs(tone(0, rate // 10, rate, 440.0)).max()
    quiet = np.abs(tone(rate // 5, rate // 10, rate, 440.0)).max()
    assert beep > 2 * quiet > 0
    assert np.abs(tone(0, rate * 2, rate, 440.0)).max() <= 0.25


def test_settings_defaults_are_cheap_and_keyframes_every_second() -> None:
    s = PatternSettings()
    assert (s.width, s.height, s.fps) == (640, 360, 25)
    assert s.gop == 25
    assert PatternSettings(fps=30, keyint=2).gop == 60
    for bad in ({"width": 650}, {"fps": 0}, {"keyint": 30}, {"height": 20}):
        with pytest.raises(ValueError):
            PatternSettings(**bad)  # type: ignore[arg-type]


def test_redact_hides_tokens_and_keys() -> None:
    assert redact("rtmp://h:1935/live/stream?jwt=abc.def") == "rtmp://h:1935/live/stream?…"
    assert redact("rtmp://h:1935/live/stream") == "rtmp://h:1935/live/stream"
