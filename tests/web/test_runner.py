"""Process set-up shared by the nodes (airclass.web.runner)."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys

import pytest

from airclass.web.runner import OPEN_FILES_WANTED

PROBE = (
    "import resource\n"
    "from airclass.web.runner import raise_open_file_limit\n"
    "got = raise_open_file_limit()\n"
    "print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
)


def probe(soft: int) -> tuple[int, int]:
    """Run the probe in a child whose soft limit starts at `soft`."""

    def lower() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run(
        [sys.executable, "-c", PROBE], preexec_fn=lower, capture_output=True, text=True,
        check=True, timeout=30,
    ).stdout.split()
    return int(out[0]), int(out[1])


def test_a_node_raises_its_open_file_limit_as_far_as_the_hard_limit_allows() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    assert probe(256) == (expected, expected)


def test_a_higher_limit_is_left_alone() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= OPEN_FILES_WANTED:
        assert probe(hard) == (hard, hard)
    else:
        assert probe(OPEN_FILES_WANTED + 1) == (OPEN_FILES_WANTED + 1, OPEN_FILES_WANTED + 1)


REUSE_PROBE = (
    "import resource, sys\n"
    "from airclass.web.runner import keep_freed_memory\n"
    "kept = keep_freed_memory() if sys.argv[1] == 'kept' else False\n"
    "chunks = [bytes(65536) for _ in range(11)]\n"
    "window = []\n"
    "faults = []\n"
    "for i in range(20):  # a ring of 8 segments of ~0.7 MB, as a slave keeps\n"
    "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "    window.append(b''.join(chunks[: 9 + i % 3]))  # 0.6-0.7 MB\n"
    "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    "    if len(window) > 8:\n"
    "        del window[0]\n"
    "print(kept, sum(faults[10:]))\n"
)


def reuse_probe(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", REUSE_PROBE, mode], capture_output=True, text=True, check=True,
        timeout=30,
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's allocator",
)
def test_a_node_reuses_the_memory_of_the_segments_it_dropped() -> None:
    """Without `keep_freed_memory` glibc maps each ~0.7 MB block afresh: ~175 page faults per
    segment joined, which the slave pays between a keyframe and the playlist."""
    kept, faults = reuse_probe("kept")
    assert kept
    assert faults < 50  # 10 segments
    kept, faults = reuse_probe("default")
    assert not kept
    assert faults > 500
