# Developer and CI commands. `make test` is exactly what CI runs (.ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint demo demo-down demo-restart

# Install what is missing: OS packages (apt), the virtualenv, the package with [test] extras.
setup:
	VENV=$(VENV) scripts/setup.sh

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m mypy --strict --explicit-package-bases scripts/demo.py bench/failover.py bench/push.py bench/monitor_faults.py bench/switchover.py bench/scale.py bench/poller.py bench/login.py bench/agent.py scripts/ack_writer.py

# Tests run in parallel, one worker per core (pytest-xdist); each worker starts its own servers
# on free ports, and a module's tests stay on one worker so module fixtures are shared. Tests
# marked "alone" take a CPU away from everything else: they run afterwards, by themselves.
test: lint
	$(PY) -m pytest -n auto --dist loadscope -m "not alone"
	$(PY) -m pytest -m alone

# The whole system on loopback ports (MariaDB x2, Redis, 2 pollers, the agent, HAProxy), then a
# kill -9 failover through HAProxy and the hand-back (scripts/demo.py). It keeps running:
# `make demo-down` stops exactly what it started, by pid. DEMO_ARGS=--ci: no pauses, exit 1 on
# any failed step; add --teardown to stop everything at the end.
demo: setup
	$(PY) scripts/demo.py up $(DEMO_ARGS)

demo-down:
	$(PY) scripts/demo.py down

# Start a demo node again after a kill -9 (NODE=node1 or node2); demo-down stops it too.
demo-restart:
	$(PY) scripts/demo.py restart $(NODE)
