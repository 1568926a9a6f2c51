"""Stream names: one pattern for every place that takes an app or stream name from outside
(RTMP publish, HLS routes, the token API, the relay, the control plane).

Letters, digits, `-` and `_`, 1 to 64 of them: nothing that needs escaping in a URL path, a
playlist, a log line or a file name.
"""

from __future__ import annotations

import re
from typing import Final

NAME: Final = r"[A-Za-z0-9_-]{1,64}"
"""An app or stream name (a regular expression, for routes and larger patterns)."""
NAME_RE: Final = re.compile(NAME)
PATH_RE: Final = re.compile(rf"{NAME}/{NAME}")
"""A stream path, `app/stream`."""
