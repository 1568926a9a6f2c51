"""AIRClass slave against nginx with Debian's RTMP module, side by side in one run.

    python benchmarks/compare_nginx.py [--seconds 30] [--duration 5] [--connections 16]
                                       [--viewers 150] [--json out.json] [--slave-arg=--flag]
                                       [--http-only]

Both servers run at once on free loopback ports: a real `python -m airclass.slave` and nginx
with `libnginx-mod-rtmp` (one process, `master_process off`, one worker, HLS on tmpfs, sendfile
on). Both get the same pre-encoded 720p30 2.5 Mbit/s file (see `_common.source_file`),
published with `ffmpeg -re -c copy`. Measured, in this order:

1. ingest → playlist latency per segment (timing proxy; playlist polled every 2 ms, and back
   to back from each keyframe's first chunk for 50 ms), one server
   after the other, and for AIRClass both in its default LL-HLS mode and, from a second slave
   with `--no-low-latency`, in plain HLS (what nginx-rtmp makes): from the publisher sending
   the segment's last frame, and from the keyframe that closes the segment (the server's own
   time); then the same in plain HLS for both with the publisher's bytes paced at
   `--link-mbit` (100 Mbit/s: a teacher's PC on the school LAN), where a keyframe takes its
   size's transmission time to arrive (AIRClass lists the segment it closes from its first
   chunk; nginx-rtmp once all of it is in). Each plain-HLS pair is also compared per segment
   (`_common.Paired`: the publisher's gap before a closing keyframe cancels);
2. ingest CPU of the server process during a publish with no viewer;
3. with a looping publish to both: segment throughput with wrk (the newest full segment of each
   server's playlist, so the sizes are those of the same 2 s of the same stream), and playlist
   requests/s. AIRClass is read through its real viewer path: every URL carries a session id
   that is checked on each request, rotating among `--viewers` sessions (a wrk Lua script);
   nginx serves files with no check at all. Runs go A-B-B-A to cancel drift on a shared machine;
4. memory: each server's RSS with the stream live, after the HTTP runs.

Prints each figure for both servers and the ratio AIRClass/nginx with the project's targets.
"Latency ≤ nginx's" is decided on the server's own part, from the keyframe that closes each
segment: what comes before it (the publisher's gap between the segment's last frame and that
keyframe, 2, 12 or 22 ms as ffmpeg `-re` waits 10 ms at a time) is the publisher's, and it
can differ from one publish to the next, so pairing from the last frame does not always cancel
it. The decision is a non-inferiority test on the paired differences (`Paired.not_later`):
met when their median's 95 % interval ends at most 0.5 ms later than nginx
(`_common.NOT_LATER_MARGIN`), since two servers that list at the same instant can only ever
come out level, never reliably "≤". The figures are reports, not assertions: the exit status
is 0 whether targets are met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    Paired,
    Target,
    WrkResult,
    airclass_slave,
    listed_segments,
    lua_rotation,
    mean_wrk,
    measure_cpu,
    measure_latency,
    nginx_rtmp,
    paired,
    publish,
    resolve,
    rss_mb,
    run_wrk,
    source_file,
    stop_process,
    summary,
    url_path,
)
from tests.e2e.conftest import wait_for

KINDS = ("airclass", "nginx")


@dataclass
class Figures:
    """Everything measured for one server."""

    latencies_ms: list[float] = field(default_factory=list)
    cut_latencies_ms: list[float] = field(default_factory=list)
    """From the keyframe that closes each segment (`Latencies.from_cut`)."""
    plain_latencies_ms: list[float] = field(default_factory=list)
    plain_cut_latencies_ms: list[float] = field(default_factory=list)
    """AIRClass only: the same two, from a slave in plain HLS mode."""
    link_latencies_ms: list[float] = field(default_factory=list)
    link_cut_latencies_ms: list[float] = field(default_factory=list)
    """Plain HLS (AIRClass: the plain slave) with the publisher behind a `--link-mbit` link."""
    closing_dts: list[int] = field(default_factory=list)
    plain_closing_dts: list[int] = field(default_factory=list)
    link_closing_dts: list[int] = field(default_factory=list)
    """Each latency list's segments by their closing keyframe (for `_common.paired`)."""
    segment_durations: list[float] = field(default_factory=list)
    ingest_cpu: float = 0.0
    segment_bytes: int = 0
    segment: WrkResult | None = None
    playlist_bytes: int = 0
    playlist: WrkResult | None = None
    rss_mb: float = 0.0


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body


def newest_segment(target: Target) -> tuple[str, int]:
    """URI (relative to the playlist) and size of the newest full segment listed."""
    listed = listed_segments(get(target.playlist_url).decode())
    if not listed:
        raise RuntimeError(f"{target.name}: no segment listed")
    uri = listed[-1][0]
    return uri, len(get(resolve(target.playlist_url, uri)))


def wrk_paths(target: Target, uri: str | None) -> list[str]:
    """One request path per viewer: each session's playlist, or a segment under it."""
    return [url_path(resolve(base, uri) if uri else base) for base in target.viewer_playlists]


def http_round(targets: dict[str, Target], figures: dict[str, Figures], *, what: str,
               duration: int, connections: int, tmp: Path) -> None:
    """wrk A-B-B-A on segments or playlists; fills `figures[kind].segment/.playlist`."""
    runs: dict[str, list[WrkResult]] = {k: [] for k in KINDS}
    for i, kind in enumerate(("airclass", "nginx", "nginx", "airclass")):
        target = targets[kind]
        if what == "segment":
            uri, size = newest_segment(target)
            figures[kind].segment_bytes = size
        else:
            uri, size = None, len(get(target.playlist_url))
            figures[kind].playlist_bytes = size
        paths = wrk_paths(target, uri)
        script = lua_rotation(paths, tmp / f"{kind}-{what}-{i}.lua") if len(paths) > 1 else None
        url = resolve(target.playlist_url, paths[0])
        runs[kind].append(run_wrk(url, target.pid, size, duration=duration,
                                  connections=connections, script=script))
    for kind in KINDS:
        setattr(figures[kind], what, mean_wrk(runs[kind]))


def wait_segments(target: Target, count: int, timeout: float) -> None:
    def listed() -> bool:
        try:
            return len(listed_segments(get(target.playlist_url).decode())) >= count
        except OSError:
            return False

    wait_for(listed, timeout, 0.2, f"{target.name} to list {count} segments")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def verdict(value: float, goal: float, higher_is_better: bool) -> str:
    met = value >= goal if higher_is_better else value <= goal
    return "met" if met else "MISSED"


def paired_ms(a_ms: list[float], a_dts: list[int],
              b_ms: list[float], b_dts: list[int]) -> Paired | None:
    return paired([v / 1000 for v in a_ms], a_dts, [v / 1000 for v in b_ms], b_dts)


def paired_line(a_ms: list[float], a_dts: list[int],
                b_ms: list[float], b_dts: list[int]) -> list[str]:
    """The two servers paired per segment (`_common.Paired`), as one line (none if they have
    no segment in common)."""
    both = paired_ms(a_ms, a_dts, b_ms, b_dts)
    return [] if both is None else [f"  paired: {both.describe('airclass', 'nginx')}"]


def not_later(a_ms: list[float], a_dts: list[int],
              b_ms: list[float], b_dts: list[int]) -> str:
    """The "≤ nginx" target, decided on the paired differences (`Paired.not_later`)."""
    both = paired_ms(a_ms, a_dts, b_ms, b_dts)
    return "no segment in common" if both is None else both.not_later()


def report(figures: dict[str, Figures], args: argparse.Namespace, source: Path) -> list[str]:
    a, n = figures["airclass"], figures["nginx"]
    assert a.segment and n.segment and a.playlist and n.playlist
    lines = [
        f"machine: {os.cpu_count()} cores (shared), load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end",
        f"source: {source.name}, {source.stat().st_size * 8 / args.seconds / 1e6:.2f} Mbit/s; "
        f"wrk -t1 -c{args.connections} -d{args.duration}s, A-B-B-A; "
        f"AIRClass rotating {args.viewers} sessions",
    ]
    header = f"{'':34} {'airclass':>12} {'nginx':>12} {'ratio':>7}  target"
    rows: list[tuple[str, float, float, str]] = []
    if not args.http_only:
        lines += [
            "",
            "ingest → playlist latency (publisher sends a segment's last frame → listed):",
            f"  airclass LL-HLS (default): {summary([v / 1000 for v in a.latencies_ms])}",
            f"  airclass plain HLS:        {summary([v / 1000 for v in a.plain_latencies_ms])}",
            f"  nginx-rtmp (plain HLS):    {summary([v / 1000 for v in n.latencies_ms])}",
            *paired_line(a.plain_latencies_ms, a.plain_closing_dts,
                         n.latencies_ms, n.closing_dts),
            "the server's own part (the keyframe that closes the segment has arrived → listed):",
            f"  airclass plain HLS:        {summary([v / 1000 for v in a.plain_cut_latencies_ms])}",
            f"  nginx-rtmp (plain HLS):    {summary([v / 1000 for v in n.cut_latencies_ms])}",
            *paired_line(a.plain_cut_latencies_ms, a.plain_closing_dts,
                         n.cut_latencies_ms, n.closing_dts),
        ]
        if a.link_latencies_ms and n.link_latencies_ms:
            lines += [
                f"over a {args.link_mbit:g} Mbit/s publisher link, plain HLS (from the last frame; "
                "from the closing keyframe's last byte):",
                f"  airclass: {summary([v / 1000 for v in a.link_latencies_ms])}",
                f"  nginx:    {summary([v / 1000 for v in n.link_latencies_ms])}",
                *paired_line(a.link_latencies_ms, a.link_closing_dts,
                             n.link_latencies_ms, n.link_closing_dts),
                f"  airclass: {summary([v / 1000 for v in a.link_cut_latencies_ms])}",
                f"  nginx:    {summary([v / 1000 for v in n.link_cut_latencies_ms])}",
                *paired_line(a.link_cut_latencies_ms, a.link_closing_dts,
                             n.link_cut_latencies_ms, n.link_closing_dts),
            ]
        plain, nginx = statistics.median(a.plain_latencies_ms), statistics.median(n.latencies_ms)
        rows += [
            ("ingest→playlist latency, median ms", plain, nginx, "≤ nginx: the row below"),
            ("  from the closing keyframe", statistics.median(a.plain_cut_latencies_ms),
             statistics.median(n.cut_latencies_ms),
             not_later(a.plain_cut_latencies_ms, a.plain_closing_dts,
                       n.cut_latencies_ms, n.closing_dts)),
            ("  same, LL-HLS full segment", statistics.median(a.latencies_ms), nginx,
             "(last part waits for its audio)"),
        ]
        if a.link_latencies_ms and n.link_latencies_ms:
            linked = (statistics.median(a.link_latencies_ms),
                      statistics.median(n.link_latencies_ms))
            rows += [
                (f"  over a {args.link_mbit:g} Mbit/s link", *linked, "≤ nginx: the row below"),
                ("    from the closing keyframe", statistics.median(a.link_cut_latencies_ms),
                 statistics.median(n.link_cut_latencies_ms),
                 not_later(a.link_cut_latencies_ms, a.link_closing_dts,
                           n.link_cut_latencies_ms, n.link_closing_dts)
                 + " (< 0: listed before it is in)"),
            ]
        rows += [
            ("ingest CPU, % of one core", a.ingest_cpu, n.ingest_cpu,
             f"airclass ≤ 1 %: {verdict(a.ingest_cpu, 1.0, False)}"),
        ]
    seg_ratio = ratio(a.segment.body_bytes_per_s, n.segment.body_bytes_per_s)
    pl_ratio = ratio(a.playlist.requests_per_s, n.playlist.requests_per_s)
    rows += [
        ("segment size, KB", a.segment_bytes / 1e3, n.segment_bytes / 1e3, ""),
        ("segment throughput, MB/s", a.segment.body_bytes_per_s / 1e6,
         n.segment.body_bytes_per_s / 1e6, "≥ 0.80 " + verdict(seg_ratio, 0.8, True)),
        ("segment requests/s", a.segment.requests_per_s, n.segment.requests_per_s, ""),
        ("segment server CPU, µs/request", a.segment.cpu_us_per_request,
         n.segment.cpu_us_per_request, ""),
        ("segment wrk CPU, µs/request", a.segment.client_cpu_us_per_request,
         n.segment.client_cpu_us_per_request, "(the load generator, same cores)"),
        ("playlist requests/s", a.playlist.requests_per_s, n.playlist.requests_per_s,
         "≥ 0.50 " + verdict(pl_ratio, 0.5, True)),
        ("playlist server CPU, µs/request", a.playlist.cpu_us_per_request,
         n.playlist.cpu_us_per_request, ""),
        ("playlist wrk CPU, µs/request", a.playlist.client_cpu_us_per_request,
         n.playlist.client_cpu_us_per_request, ""),
        ("memory RSS, MB (stream live)", a.rss_mb, n.rss_mb, ""),
    ]
    lines += ["", header, "-" * len(header)]
    for label, av, nv, target in rows:
        lines.append(f"{label:34} {av:>12,.1f} {nv:>12,.1f} {ratio(av, nv):>7.2f}  {target}")
    errors = a.segment.errors + n.segment.errors + a.playlist.errors + n.playlist.errors
    if errors:
        lines.append(f"wrk errors (non-2xx or timeouts): {errors}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of each ingest publish")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--viewers", type=int, default=150, help="AIRClass sessions rotated")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--http-only", action="store_true",
                        help="only the segment and playlist throughput (no ingest figures)")
    parser.add_argument("--link-mbit", type=float, default=100.0,
                        help="publisher link rate for the paced latency runs (0: skip them)")
    parser.add_argument("--slave-arg", action="append", default=[],
                        help="extra flag for the slave, e.g. --slave-arg=--no-low-latency")
    args = parser.parse_args()
    source = source_file(args.seconds)
    figures = {kind: Figures() for kind in KINDS}
    makers: dict[str, Callable[..., contextlib.AbstractContextManager[Target]]] = {
        "airclass": airclass_slave, "nginx": nginx_rtmp,
    }
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="airclass-cmp-")))
        targets: dict[str, Target] = {}
        for kind in KINDS:
            (tmp / kind).mkdir()
            targets[kind] = stack.enter_context(
                makers[kind](tmp / kind, *args.slave_arg, viewers=args.viewers)
            )

        for kind in () if args.http_only else KINDS:
            target = targets[kind]
            print(f"{kind}: ingest latency ({args.seconds} s publish) ...", flush=True)
            lat = asyncio.run(measure_latency(target, source, args.seconds))
            if not lat.durations:
                raise RuntimeError(f"{kind}: no segment was listed")
            figures[kind].latencies_ms = [v * 1000 for v in lat.from_last_frame]
            figures[kind].cut_latencies_ms = [v * 1000 for v in lat.from_cut]
            figures[kind].closing_dts = lat.closing_dts
            figures[kind].segment_durations = lat.durations
            time.sleep(1.0)
            print(f"{kind}: ingest CPU ({args.seconds} s publish, no viewer) ...", flush=True)
            figures[kind].ingest_cpu = measure_cpu(target, source, args.seconds)
        if not args.http_only:
            print(f"airclass --no-low-latency: ingest latency ({args.seconds} s publish) ...",
                  flush=True)
            (tmp / "plain").mkdir()
            with airclass_slave(tmp / "plain", *args.slave_arg, "--no-low-latency") as plain:
                lat = asyncio.run(measure_latency(plain, source, args.seconds))
                if not lat.durations:
                    raise RuntimeError("airclass --no-low-latency: no segment was listed")
                figures["airclass"].plain_latencies_ms = [v * 1000 for v in lat.from_last_frame]
                figures["airclass"].plain_cut_latencies_ms = [v * 1000 for v in lat.from_cut]
                figures["airclass"].plain_closing_dts = lat.closing_dts
                paced_runs = (("airclass", plain), ("nginx", targets["nginx"]))
                for kind, target in paced_runs if args.link_mbit else ():
                    print(f"{kind} (plain HLS): ingest latency over a {args.link_mbit:g} Mbit/s "
                          f"link ({args.seconds} s publish) ...", flush=True)
                    time.sleep(1.0)
                    paced = asyncio.run(
                        measure_latency(target, source, args.seconds, args.link_mbit)
                    )
                    if not paced.durations:
                        raise RuntimeError(f"{kind} over the paced link: no segment was listed")
                    figures[kind].link_latencies_ms = [v * 1000 for v in paced.from_last_frame]
                    figures[kind].link_cut_latencies_ms = [v * 1000 for v in paced.from_cut]
                    figures[kind].link_closing_dts = paced.closing_dts

        print("HTTP: looping publish to both servers ...", flush=True)
        publishers = [
            publish(source, f"rtmp://127.0.0.1:{t.rtmp_port}/{t.publish_path}", loop=True)
            for t in targets.values()
        ]
        try:
            # Past the previous stream's end: wait for fresh segments of the new one.
            time.sleep(2.0)
            for target in targets.values():
                wait_segments(target, 3, 60)
            for kind in KINDS:  # warm-up: imports, first allocations, page cache
                run_wrk(targets[kind].playlist_url, targets[kind].pid, 1, duration=1,
                        connections=args.connections)
            for what in ("segment", "playlist"):
                print(f"HTTP: {what} throughput, A-B-B-A ...", flush=True)
                http_round(targets, figures, what=what, duration=args.duration,
                           connections=args.connections, tmp=tmp)
            for kind in KINDS:
                figures[kind].rss_mb = rss_mb(targets[kind].pid)
        finally:
            for proc in publishers:
                stop_process(proc)

    lines = report(figures, args, source)
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()},
             "figures": {k: asdict(v) for k, v in figures.items()}, "report": lines},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
