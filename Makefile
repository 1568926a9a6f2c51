# The two set-up commands of the README. Both work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test install install-test lint bench

run: install            ## install everything and start the demo classroom
	$(PY) -m airclass demo

test: install-test      ## install everything and run the tests
	$(PY) -m pytest

install:
	scripts/install.sh run

install-test:
	scripts/install.sh test

lint:
	$(VENV)/bin/ruff check airclass tests benchmarks
	$(VENV)/bin/mypy

bench:
	$(PY) -m pytest benchmarks --benchmark-only -p no:cacheprovider
