"""Process set-up shared by the nodes (airclass.web.runner)."""

from __future__ import annotations

import resource
import subprocess
import sys

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
