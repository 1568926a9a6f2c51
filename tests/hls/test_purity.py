"""The pure modules stay pure: no event loop, no sockets, no FFmpeg."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import airclass

ROOT = Path(airclass.__file__).parent
PURE = [
    "media/bitstream.py",
    "hls/mpegts.py",
    "hls/segmenter.py",
    "hls/ring.py",
    "hls/playlist.py",
    "hls/reader.py",
    "hls/ahead.py",
    "auth/operator.py",
    "media/names.py",
    "cluster/wire.py",
    "cluster/relay_wire.py",
    "cluster/registry.py",
    "cluster/balancer.py",
    "web/head.py",
    "web/ratelimit.py",
    "clients.py",
    "measure.py",
]
FORBIDDEN = {"asyncio", "socket", "av", "time", "aiohttp"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports(module: str) -> None:
    assert imported_roots(ROOT / module) & FORBIDDEN == set()


def test_only_the_muxer_imports_av() -> None:
    users = sorted(p.name for p in (ROOT / "hls").glob("*.py") if "av" in imported_roots(p))
    assert users == ["muxer.py"]
