"""End to end: planned switchovers and a paused pool, with a client writing through HAProxy.

A writer inserts a row through HAProxy's write port every 20 ms (a new connection each, as a
pooled client reconnects) and records every acknowledged insert: its id, the node that took
it and when. After the switchovers every acknowledged row must be on both nodes, no write may
land on the old ACTIVE after the first one on the new ACTIVE, and the longest pause between
acknowledged writes stays within 2 x interval + agent-inter + 1 s. Under ``--fence read_only``
the old ACTIVE ends read_only (a direct write to it fails with 1290) and the target writable.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mpp_agent.model import Fence, State
from scripts.ack_writer import AckWriter
from tests.e2e.conftest import (
    AGENT_INTER,
    BUDGET,
    INTERVAL,
    NAMESPACE,
    POOL,
    System,
    fresh_system,
    write_through,
)
from tests.e2e.test_fencing import (
    ER_OPTION_PREVENTS_STATEMENT,
    direct_write_error,
    fence_options,
    is_read_only,
)
from tests.servers import APP_PASSWORD, APP_USER, HAProxy, MariaDBCluster, MariaDBNode, wait_until

pytestmark = pytest.mark.e2e

PAUSE_BUDGET = 2 * INTERVAL + AGENT_INTER + 1.0  # the bound on the write pause


def writer_for(system: System, tag: str) -> AckWriter:
    return AckWriter(system.rw_port, APP_USER, APP_PASSWORD, tag, column="origin")


def admin(system: System, *args: str) -> list[str]:
    return ["mpp-admin", "--redis-url", system.redis.url, "--namespace", NAMESPACE, *args]


def run_admin(system: System, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        admin(system, *args), capture_output=True, text=True, timeout=timeout, check=False
    )


def manual_failback(system: System) -> None:
    done = run_admin(system, "pool", "apply", POOL, "--failback", "manual")
    assert done.returncode == 0, done.stderr


def lost_rows(system: System, writer: AckWriter) -> list[str]:
    """Acknowledged rows missing on a node, or recorded there with another origin."""
    system.cluster.wait_replicated(system.node1)
    system.cluster.wait_replicated(system.node2)
    problems = []
    for node in (system.node1, system.node2):
        rows = dict(node.sql(f"SELECT id, origin FROM app.t WHERE v = '{writer.tag}'"))
        problems += [f"row {a.row} from {a.port} on {node!r}" for a in writer.lost(rows)]
    return problems


def switch(system: System, writer: AckWriter, source: MariaDBNode, target: MariaDBNode) -> float:
    """One switchover from ``source`` to ``target``; returns when it was started."""
    started = time.monotonic()
    done = run_admin(system, "switchover", POOL, "--to", target.node_id, "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith(f"OK: {target.node_id} takes writes in pool {POOL}.")
    wait_until(lambda: bool(writer.since(time.monotonic() - 0.3)), 10, "writes again")
    assert writer.acks[-1].port == target.port
    assert writer.late_on(source.port, target.port, started) == []
    return started


def start_switchover(system: System, target: MariaDBNode) -> subprocess.Popen[str]:
    """``mpp-admin switchover --to target`` left running, once the switchover is stored."""
    command = subprocess.Popen(
        admin(system, "switchover", POOL, "--to", target.node_id, "--timeout", "20"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_until(lambda: system.pool().switchover is not None, 10, "the switchover stored")
    return command


def test_five_switchovers_each_way_lose_nothing_and_never_write_twice(system: System) -> None:
    manual_failback(system)
    node1, node2 = system.node1, system.node2
    with writer_for(system, "switchover") as writer:
        began = time.monotonic()
        for _ in range(5):
            switch(system, writer, node1, node2)
            switch(system, writer, node2, node1)
        ended = time.monotonic()
        time.sleep(0.5)
    pause = writer.longest_pause(began, ended)
    print(f"10 switchovers: {len(writer.acks)} writes acknowledged, longest pause {pause:.2f}s")
    assert pause <= PAUSE_BUDGET, pause
    assert lost_rows(system, writer) == []
    pool = system.pool()
    assert [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY]
    history = run_admin(system, "history", "--pool", POOL, "--limit", "500").stdout
    assert history.count("drained at position") >= 10


def test_a_poller_killed_during_the_switchover(system: System) -> None:
    manual_failback(system)
    node1, node2 = system.node1, system.node2
    with writer_for(system, "switchover-poller") as writer:
        started = time.monotonic()
        command = start_switchover(system, node2)
        system.pollers[0].kill9()
        drained = f"down #switchover to {node2.node_id}"
        wait_until(lambda: system.ask_agent(node1).startswith(drained), 5, "the drain answer")
        assert system.ask_agent(node1, "ro").startswith("up ready")
        out, _ = command.communicate(timeout=60)
        assert command.returncode == 0, out
        wait_until(lambda: bool(writer.since(time.monotonic() - 0.3)), 10, "writes again")
        time.sleep(0.5)
    pause = writer.longest_pause(started, time.monotonic())
    print(f"switchover with a poller killed: longest pause {pause:.2f}s")
    # the dead poller's heartbeat holds each round to its deadline until it expires
    assert pause <= PAUSE_BUDGET + INTERVAL, pause
    assert writer.late_on(node1.port, node2.port, started) == []
    assert lost_rows(system, writer) == []
    assert [n.state for n in system.pool().nodes] == [State.STANDBY, State.ACTIVE]


def test_the_target_killed_abandons_the_switchover(system: System) -> None:
    manual_failback(system)
    node1, node2 = system.node1, system.node2
    with writer_for(system, "switchover-target") as writer:
        started = time.monotonic()
        command = start_switchover(system, node2)
        node2.kill9()
        out, _ = command.communicate(timeout=60)
        assert command.returncode == 9, out
        assert "abandoned: the target" in out
        wait_until(
            lambda: any(a.port == node1.port for a in writer.since(time.monotonic() - 0.3)),
            10,
            "writes back on node1",
        )
        time.sleep(0.5)
    assert [a for a in writer.since(started) if a.port != node1.port] == []
    pool = system.pool()
    assert pool.switchover is None and pool.nodes[0].state is State.ACTIVE
    pause = writer.longest_pause(started, time.monotonic())
    print(f"abandoned switchover: longest pause {pause:.2f}s")
    assert pause <= PAUSE_BUDGET, pause


def test_a_paused_pool_does_not_fail_over_until_resumed(system: System) -> None:
    node1, node2 = system.node1, system.node2
    done = run_admin(system, "pause", POOL, "--reason", "rack move")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: "#paused: rack move" in system.ask_agent(node1), 10, "the paused answer")
    node1.kill9()
    killed_at = time.monotonic()
    rounds = system.pool().last_round
    wait_until(lambda: system.pool().last_round >= rounds + 8, 8 * INTERVAL + 10, "8 rounds")
    assert time.monotonic() - killed_at >= 8 * INTERVAL - 1
    pool = system.pool()
    assert [(n.state, n.r) for n in pool.nodes] == [(State.ACTIVE, 0), (State.STANDBY, 0)]
    listing = run_admin(system, "list").stdout
    assert f"would fail {node1.node_id} over" in listing, listing
    assert system.ask_agent(node1).startswith("up ready #paused: rack move")
    resumed_at = time.monotonic()
    assert run_admin(system, "resume", POOL).returncode == 0
    wait_until(lambda: write_through(system.rw_port)[0] == node2.port, BUDGET + 10, "node2")
    failover = time.monotonic() - resumed_at
    print(f"first write on node2 {failover:.2f}s after resume (budget {BUDGET:.0f}s)")
    assert failover <= BUDGET
    assert system.pool().nodes[0].state is State.FAILED_OFFLINE


def test_a_switchover_under_fencing_sets_the_old_active_read_only(
    mariadb_cluster: MariaDBCluster, haproxy_factory: Callable[[str], HAProxy], tmp_path: Path
) -> None:
    """With ``--fence read_only`` the pollers set the old ACTIVE read_only as soon as its writes
    stop, and open the target when it takes them: a client writing to the old ACTIVE directly
    after the switchover is refused (1290), and nothing acknowledged is lost."""
    options = fence_options(tmp_path)
    with fresh_system(
        mariadb_cluster, haproxy_factory, tmp_path, fence=Fence.READ_ONLY, poller_extra=options
    ) as system:
        manual_failback(system)
        node1, node2 = system.node1, system.node2
        wait_until(lambda: is_read_only(node2) and not is_read_only(node1), 5, "node2 fenced")
        with writer_for(system, "switchover-fenced") as writer:
            started = switch(system, writer, node1, node2)
            time.sleep(0.5)
        assert is_read_only(node1) and not is_read_only(node2)
        assert direct_write_error(node1) == ER_OPTION_PREVENTS_STATEMENT
        assert direct_write_error(node2) is None
        pause = writer.longest_pause(started, time.monotonic())
        print(f"switchover under fencing: longest pause {pause:.2f}s")
        assert pause <= PAUSE_BUDGET, pause
        assert lost_rows(system, writer) == []
        kinds = [(e["kind"], e["node"]) for _, e in system.store.last_events(POOL, 200)]
        assert ("fenced", node1.node_id) in kinds and ("unfenced", node2.node_id) in kinds
