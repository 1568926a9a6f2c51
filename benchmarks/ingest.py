"""Ingest → playlist latency and ingest CPU: an AIRClass slave against nginx with the RTMP module.

    python benchmarks/ingest.py [--seconds 30]

AIRClass runs in plain HLS (`--no-low-latency`), which is what nginx-rtmp makes: in its default
LL-HLS mode a segment's last part waits for the audio up to the closing keyframe's presentation
time (~100 ms; see `airclass/hls/segmenter.py`), and students get the parts long before the
segment anyway (`compare_nginx.py` measures both modes). Both servers get the same pre-encoded
file (720p30 H.264 at ~2.5 Mbit/s CBR with a 2 s GOP, AAC 128 kbit/s; made once with ffmpeg and
cached in the temp directory), published with `ffmpeg -re -i file -c copy -f flv`, one server
after the other, each on free loopback ports.
nginx runs in the foreground as one process (`daemon off; master_process off`), with its
HLS directory on tmpfs (/dev/shm) when there is one, which is nginx's best case.

Latency, per segment: the time from the publisher sending the segment's last frame to the
segment first appearing in the playlist, polled over HTTP every 2 ms, and back to back (one
request's round trip, ~0.2 ms) for 50 ms from each keyframe's first chunk. Send times are not
estimated from `-re`: the publisher goes through a small TCP proxy in this process that
forwards every byte at once and parses the client's chunk stream (our sans-IO ChunkReader) to
stamp each audio/video message with the wall time it passed. A segment's end is the keyframe
that starts the next one (cumulated EXTINF snapped to the publisher's keyframes); its last
frame is the message sent just before that keyframe. The final segment, closed when the
publisher leaves, is left out. Polling adds a round trip or so to both servers. Also
printed: the same from the keyframe that closes the segment (the server's own time).

CPU: a second publish with no proxy and no viewer; the server process's CPU time over the
middle of the run, as % of one core (psutil).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    Latencies,
    Target,
    airclass_slave,
    measure_cpu,
    measure_latency,
    nginx_rtmp,
    source_file,
    summary,
)

# -- the measurements --------------------------------------------------------------------------


@dataclass
class Measured:
    latencies: Latencies
    cpu: float


def run_one(
    make: Callable[[Path], contextlib.AbstractContextManager[Target]],
    source: Path, seconds: int,
) -> Measured:
    with tempfile.TemporaryDirectory(prefix="airclass-bench-ingest-") as tmp, make(
        Path(tmp)
    ) as target:
        print(f"{target.name}: measuring latency ({seconds} s publish) ...", flush=True)
        lat = asyncio.run(measure_latency(target, source, seconds))
        if not lat.durations:
            raise RuntimeError(f"{target.name}: no segment was listed")
        # Let the first stream end (AIRClass keeps it open for its reconnect grace).
        time.sleep(1.0)
        print(f"{target.name}: measuring ingest CPU ({seconds} s publish, no viewer) ...",
              flush=True)
        cpu = measure_cpu(target, source, seconds)
    return Measured(lat, cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of each publish")
    parser.add_argument("--slave-arg", action="append", default=[],
                        help="extra flag for the slave, e.g. --slave-arg=--event-loop=asyncio")
    args = parser.parse_args()
    source = source_file(args.seconds)

    def plain_slave(tmp: Path) -> contextlib.AbstractContextManager[Target]:
        return airclass_slave(tmp, *args.slave_arg, "--no-low-latency")

    runs: list[tuple[str, Callable[[Path], contextlib.AbstractContextManager[Target]]]] = [
        ("airclass", plain_slave), ("nginx", nginx_rtmp),
    ]
    results = {name: run_one(make, source, args.seconds) for name, make in runs}
    a, n = results["airclass"], results["nginx"]
    print()
    print(f"source: {source.name}, {source.stat().st_size * 8 / args.seconds / 1e6:.2f} Mbit/s")
    for name, r in results.items():
        print(f"{name:>8} segments: {', '.join(f'{d:.3f}' for d in r.latencies.durations)} s")
    print("ingest → playlist latency (publisher sends a segment's last frame → listed):")
    for name, r in results.items():
        print(f"  {name:>8}: {summary(r.latencies.from_last_frame)}")
    ratio = statistics.median(a.latencies.from_last_frame) / statistics.median(
        n.latencies.from_last_frame
    )
    print(f"  ratio airclass/nginx (medians): {ratio:.2f}  (goal ≤ 1.00)")
    print("the server's own part (the keyframe that closes the segment has arrived → listed):")
    for name, r in results.items():
        print(f"  {name:>8}: {summary(r.latencies.from_cut)}")
    print("ingest CPU of the server process, % of one core, no viewers:")
    for name, r in results.items():
        print(f"  {name:>8}: {r.cpu:5.2f} %")
    print(f"  ratio airclass/nginx: {a.cpu / n.cpu if n.cpu else float('inf'):.2f}  "
          f"(goal: airclass ≤ 1 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
