"""Ingest → playlist latency and ingest CPU: an AIRClass slave against nginx with the RTMP module.

    python benchmarks/ingest.py [--seconds 30] [--rounds 1]

AIRClass runs in plain HLS (`--no-low-latency`), which is what nginx-rtmp makes: in its default
LL-HLS mode a segment's last part waits for the audio up to the closing keyframe's presentation
time (~100 ms; see `airclass/hls/segmenter.py`), and students get the parts long before the
segment anyway (`compare_nginx.py` measures both modes). Both servers get the same pre-encoded
file (720p30 H.264 at ~2.5 Mbit/s CBR with a 2 s GOP, AAC 128 kbit/s; made once with ffmpeg and
cached in the temp directory), published with `ffmpeg -re -i file -c copy -f flv`, one server
after the other (both running, each on free loopback ports; with `--rounds`, A B, B A, … so
that a machine getting busier or quieter weighs on both).
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
printed: the same from the keyframe that closes the segment (the server's own time), and
both paired per segment (`_common.Paired`), which leaves the servers' difference with a 95 %
interval for its median. From the last frame, that cancels the publisher's gap before each
closing keyframe only when it falls alike in both publishes of the file, and as ffmpeg `-re`
waits 10 ms at a time it can differ by 10 ms; so the goal "≤ nginx" is decided on the
server's own part, paired, as a non-inferiority test (`Paired.not_later`: the interval ends
at most 0.5 ms later than nginx).

CPU: a second publish with no proxy and no viewer; the server process's CPU time over the
middle of the run, as % of one core (psutil).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    Latencies,
    Target,
    airclass_slave,
    measure_cpu,
    measure_latency,
    nginx_rtmp,
    paired,
    source_file,
    summary,
)

KINDS = ("airclass", "nginx")

# -- the measurements --------------------------------------------------------------------------


@dataclass
class Measured:
    latencies: Latencies = field(default_factory=Latencies)
    keys: list[tuple[int, int]] = field(default_factory=list)
    """(round, closing keyframe dts) of each segment in `latencies`."""
    cpu: float = 0.0

    def add(self, round_: int, lat: Latencies) -> None:
        self.latencies.from_last_frame += lat.from_last_frame
        self.latencies.from_cut += lat.from_cut
        self.latencies.durations += lat.durations
        self.keys += [(round_, dts) for dts in lat.closing_dts]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of each publish")
    parser.add_argument("--rounds", type=int, default=1,
                        help="latency publishes per server, in the order A B, B A, A B …")
    parser.add_argument("--slave-arg", action="append", default=[],
                        help="extra flag for the slave, e.g. --slave-arg=--event-loop=asyncio")
    args = parser.parse_args()
    source = source_file(args.seconds)
    results = {name: Measured() for name in KINDS}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="airclass-ingest-")))
        targets: dict[str, Target] = {}
        for name in KINDS:
            (tmp / name).mkdir()
            targets[name] = stack.enter_context(
                airclass_slave(tmp / name, *args.slave_arg, "--no-low-latency")
                if name == "airclass" else nginx_rtmp(tmp / name)
            )
        for round_ in range(args.rounds):
            for name in KINDS if round_ % 2 == 0 else KINDS[::-1]:
                print(f"{name}: measuring latency ({args.seconds} s publish, round "
                      f"{round_ + 1} of {args.rounds}) ...", flush=True)
                lat = asyncio.run(measure_latency(targets[name], source, args.seconds))
                if not lat.durations:
                    raise RuntimeError(f"{name}: no segment was listed")
                results[name].add(round_, lat)
                # Let the stream end (AIRClass keeps it open for its reconnect grace).
                time.sleep(1.0)
        for name in KINDS:
            print(f"{name}: measuring ingest CPU ({args.seconds} s publish, no viewer) ...",
                  flush=True)
            results[name].cpu = measure_cpu(targets[name], source, args.seconds)
            time.sleep(1.0)
    a, n = results["airclass"], results["nginx"]
    print()
    print(f"source: {source.name}, {source.stat().st_size * 8 / args.seconds / 1e6:.2f} Mbit/s; "
          f"{args.rounds} round(s); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    for name, r in results.items():
        print(f"{name:>8} segments: {', '.join(f'{d:.3f}' for d in r.latencies.durations)} s")
    print("ingest → playlist latency (publisher sends a segment's last frame → listed):")
    for name, r in results.items():
        print(f"  {name:>8}: {summary(r.latencies.from_last_frame)}")
    ratio = statistics.median(a.latencies.from_last_frame) / statistics.median(
        n.latencies.from_last_frame
    )
    print(f"  ratio airclass/nginx (medians): {ratio:.2f}")
    last = paired(a.latencies.from_last_frame, a.keys, n.latencies.from_last_frame, n.keys)
    if last is not None:
        print(f"  {last.describe('airclass', 'nginx')}")
    print("the server's own part (the keyframe that closes the segment has arrived → listed):")
    for name, r in results.items():
        print(f"  {name:>8}: {summary(r.latencies.from_cut)}")
    cut = paired(a.latencies.from_cut, a.keys, n.latencies.from_cut, n.keys)
    if cut is not None:
        print(f"  {cut.describe('airclass', 'nginx')}")
        print(f"  goal airclass ≤ nginx: {cut.not_later()}")
    print("ingest CPU of the server process, % of one core, no viewers:")
    for name, r in results.items():
        print(f"  {name:>8}: {r.cpu:5.2f} %")
    print(f"  ratio airclass/nginx: {a.cpu / n.cpu if n.cpu else float('inf'):.2f}  "
          f"(goal: airclass ≤ 1 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
