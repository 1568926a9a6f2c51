"""The sans-IO layers must not pull in I/O or media libraries."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "airclass.logtext",
    "airclass.rtmp.admission",
    "airclass.rtmp.amf0",
    "airclass.rtmp.chunk",
    "airclass.rtmp.connection",
    "airclass.rtmp.errors",
    "airclass.rtmp.flv",
    "airclass.rtmp.handshake",
    "airclass.rtmp.limits",
    "airclass.rtmp.messages",
]


def test_pure_modules_import_no_io() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in PURE)
        + "print(sorted(m for m in ('asyncio', 'socket', 'av', 'selectors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
