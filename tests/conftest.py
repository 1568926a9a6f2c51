"""Stops a run early, with what to do, when pytest runs outside the project's environment."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _missing() -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    missing = []
    for requirement in wanted:
        if ";" in requirement and sys.platform == "win32":
            continue  # the one marker used: "sys_platform != 'win32'"
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        try:
            distribution(name)
        except PackageNotFoundError:
            missing.append(name)
    return missing


def pytest_configure(config: pytest.Config) -> None:
    missing = _missing()
    if missing:
        raise pytest.UsageError(
            f"{sys.executable} lacks {', '.join(missing)}: run the tests with `make test` "
            "(installs everything, then runs the suite as CI does), or `scripts/install.sh "
            "test` once and then `.venv/bin/python -m pytest`"
        )
