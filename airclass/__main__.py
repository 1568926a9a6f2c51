"""`python -m airclass`: the role comes from MODE (master or slave), as in the Docker image.

`python -m airclass demo` runs a whole classroom on one machine (`airclass.demo`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence

ROLES = ("master", "slave")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if args and args[0] == "demo":
        return _run("airclass.demo", args[1:], missing="the demo is not available in this build")
    mode = environ.get("MODE", "").strip().lower()
    if mode not in ROLES:
        shown = f"MODE={mode!r}" if mode else "MODE is not set"
        print(
            f"airclass: {shown}; set MODE=master or MODE=slave "
            "(or run python -m airclass.master, python -m airclass.slave, "
            "python -m airclass demo)",
            file=sys.stderr,
        )
        return 2
    return _run(f"airclass.{mode}", args, missing=f"the {mode} module is missing")


def _run(module_name: str, args: list[str], *, missing: str) -> int:
    if importlib.util.find_spec(module_name) is None:
        print(f"airclass: {missing} ({module_name})", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    entry: Callable[[Sequence[str]], int | None] = module.main
    return int(entry(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
