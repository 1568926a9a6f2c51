#!/usr/bin/env bash
# The test suite (what `make test` and CI run): everything but the playback-timing tests on two
# pytest-xdist workers, then the playback-timing tests with nothing beside them, because they
# measure what a viewer sees in a real browser and a neighbour test's load would be measured
# too. Exits non-zero when either run fails; both always run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
status=0
"$PY" -m pytest -n 2 --dist loadgroup -m "not timing" "$@" || status=$?
"$PY" -m pytest -m timing "$@" || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
exit "$status"
