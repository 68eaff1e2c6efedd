"""``make demo``'s script, run non-interactively the way CI would, then ``demo.py down``: it
passes every step, records what it started, and ``down`` stops exactly that, by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.demo import is_alive
from tests.servers import require_binary, wait_until

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def run_demo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_demo_runs_non_interactively_and_demo_down_stops_what_it_started(tmp_path: Path) -> None:
    for tool in ("mariadbd", "redis-server", "haproxy"):
        require_binary(tool)  # a missing server fails under CI=true instead of skipping
    state_dir = tmp_path / "demo"
    pids: dict[str, int] = {}
    workdir = None
    try:
        up = run_demo("up", "--ci", "--state-dir", str(state_dir))
        output = up.stdout + up.stderr
        assert up.returncode == 0, output
        assert "Demo passed: failover" in up.stdout, output
        assert "make demo-down" in up.stdout
        state = json.loads((state_dir / "state.json").read_text())
        pids, workdir = state["pids"], Path(state["workdir"])
        assert set(pids) == {"node1", "node2", "redis", "poller1", "poller2", "agent", "haproxy"}
        assert all(is_alive(pid) for pid in pids.values()), pids
        again = run_demo("up", "--ci", "--state-dir", str(state_dir), timeout=60)
        assert again.returncode == 1 and "already running" in again.stdout
        # the node an operator kills by hand and restarts through the demo is tracked too
        os.kill(pids["node1"], signal.SIGKILL)
        wait_until(lambda: not is_alive(pids["node1"]), 10, "node1 to die")
        restarted = run_demo("restart", "node1", "--state-dir", str(state_dir), timeout=60)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        pids = json.loads((state_dir / "state.json").read_text())["pids"]
        assert is_alive(pids["node1"]) and f"pid {pids['node1']}" in restarted.stdout
        busy = run_demo("restart", "node1", "--state-dir", str(state_dir), timeout=60)
        assert busy.returncode == 1 and "is running" in busy.stdout
    finally:
        down = run_demo("down", "--state-dir", str(state_dir), timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Stopped: haproxy, agent, poller1, poller2, redis, node1, node2" in down.stdout
    assert not any(is_alive(pid) for pid in pids.values()), pids
    assert not (state_dir / "state.json").exists()
    assert workdir is not None and not workdir.exists()


def test_demo_down_without_a_demo_is_a_no_op(tmp_path: Path) -> None:
    down = run_demo("down", "--state-dir", str(tmp_path), timeout=60)
    assert down.returncode == 0 and "No demo running" in down.stdout
