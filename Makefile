# The two set-up commands of the README. Both work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test install install-test lint bench

run: install            ## install everything and start the demo classroom
	$(PY) -m airclass demo

test: install-test      ## install everything and run the tests
	PY=$(PY) scripts/test.sh

install:
	scripts/install.sh run

install-test:
	scripts/install.sh test

lint:
	$(VENV)/bin/ruff check airclass tests benchmarks
	$(VENV)/bin/mypy

bench:                  ## micro-benchmarks (pytest-benchmark); baselines need `scripts/install.sh bench`
	scripts/install.sh bench
	$(PY) -m pytest benchmarks -o python_files='bench_*.py' --benchmark-only -p no:cacheprovider
