# Developer and CI commands. `make test` is exactly what CI runs (.ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint

# Install what is missing: OS packages (apt), the virtualenv, the package with [test] extras.
setup:
	VENV=$(VENV) scripts/setup.sh

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest
