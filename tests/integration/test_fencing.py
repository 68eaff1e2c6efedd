"""read_only fencing against real MariaDB nodes and a real Redis.

* ``probe.set_read_only`` with the fencing account (``READ_ONLY ADMIN``), with the monitoring
  account (no privilege: error 1227), with a wrong password (1045) and at a closed port;
* the poller's fencing step (``Fencer``): the nodes' read_only set, the new values and one
  event per change recorded in one commit, counted, and nothing done when nothing differs;
* ``mpp-poller`` with ``--fence-user`` from the environment (``MPP_FENCE_USER``,
  ``MPP_FENCE_PASSWORD``): a new pool's nodes fenced in its first round, the new ACTIVE opened
  in the round it takes over;
* a missing or refused fencing account fails no node and is reported (a WARNING, the
  ``fencing`` entry of ``mpp-admin pollers``); its password appears nowhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.fencer import NO_ACCOUNT, NO_PASSWORD, Fencer
from mpp_agent.fencing import FenceAction
from mpp_agent.model import Fence, NodeId, Observation, Outcome, PoolState, Replication, State
from mpp_agent.probe import FenceAccount, set_read_only
from mpp_agent.routing import route
from mpp_agent.store import Store
from mpp_agent.timeouts import Timeouts
from tests.daemons import FAST_PROBE, PollerProcess, watch_ticks
from tests.servers import (
    FENCE_PASSWORD,
    FENCE_USER,
    MONITOR_PASSWORD,
    MONITOR_USER,
    MariaDBCluster,
    MariaDBNode,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.integration

FENCE = FenceAccount(FENCE_USER, FENCE_PASSWORD)


def is_read_only(node: MariaDBNode) -> bool:
    return bool(node.sql("SELECT @@global.read_only")[0][0])


def fence_pool(store: Store, cluster: MariaDBCluster) -> PoolState:
    text = f"name:p1;primary:{cluster.node1.node_id};secondary:{cluster.node2.node_id}"
    return store.create_pool(replace(parse_failoverpool(text, interval=1.0), fence=Fence.READ_ONLY))


def node_id(node: MariaDBNode) -> NodeId:
    return NodeId.parse(node.node_id)


def history(store: Store) -> list[dict[str, object]]:
    return [e for _, e in store.last_events("p1", 100)]


def fencing_events(store: Store) -> list[tuple[object, object]]:
    return [(e["kind"], e["node"]) for e in history(store) if e["kind"] in ("fenced", "unfenced")]


def test_set_read_only(mariadb_cluster: MariaDBCluster) -> None:
    node = mariadb_cluster.node2
    target = node_id(node)
    on = set_read_only(target, FENCE, True, 1.0, 1.0)
    assert on.done, on
    assert is_read_only(node)
    assert set_read_only(target, FENCE, True, 1.0, 1.0).done  # idempotent
    off = set_read_only(target, FENCE, False, 1.0, 1.0)
    assert off.done and not is_read_only(node)

    monitor = set_read_only(target, FenceAccount(MONITOR_USER, MONITOR_PASSWORD), True, 1, 1)
    assert (monitor.done, monitor.blames_account) == (False, True)
    assert "READ_ONLY ADMIN" in monitor.text, monitor.text
    wrong = set_read_only(target, FenceAccount(FENCE_USER, "wrong"), True, 1.0, 1.0)
    assert (wrong.done, wrong.blames_account) == (False, True)
    assert "Access denied" in wrong.text and "wrong" not in wrong.text.replace("'", " ")
    gone = set_read_only(NodeId("127.0.0.1", free_port()), FENCE, True, 0.5, 0.5)
    assert (gone.done, gone.blames_account) == (False, False)
    assert gone.text.startswith("cannot connect")
    assert not is_read_only(node)


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url, "mpp")


def test_the_fencer_sets_records_and_counts(store: Store, mariadb_cluster: MariaDBCluster) -> None:
    node1, node2 = mariadb_cluster.node1, mariadb_cluster.node2
    created = fence_pool(store, mariadb_cluster)
    # node1 the writer (opened), node2 a standby that is still writable
    states = (State.ACTIVE, State.STANDBY)
    nodes = tuple(
        replace(n, state=s, replication=Replication(read_only=False))
        for n, s in zip(created.nodes, states, strict=True)
    )
    assert store.commit(created, replace(created, nodes=nodes), [], "test", None).committed
    pool = store.load_pool("p1")
    fencer = Fencer(store, FENCE, "poller-x", Timeouts(1.0, 1.0, 2.0))
    seen = {n.node: Observation(Outcome.HEALTHY, replication=n.replication) for n in pool.nodes}
    now = store.server_time()
    done = fencer.reconcile(pool, seen, now)
    assert [(s.node, s.read_only) for s in done] == [(node_id(node2), True)]
    assert is_read_only(node2) and not is_read_only(node1)
    after = store.load_pool("p1")
    assert after.version == pool.version + 1
    assert after.nodes[1].replication is not None and after.nodes[1].replication.read_only
    (event,) = [e for e in history(store) if e["kind"] == "fenced"]
    assert (event["node"], event["actor"]) == (node2.node_id, "poller-x")
    assert "read_only=ON (was OFF)" in str(event["message"])
    assert fencer.counter.samples() == {("p1", node2.node_id, FenceAction.FENCE.value): 1}
    assert fencer.heartbeat() == {}
    # The next round observes it: nothing left to do, nothing written.
    seen[node_id(node2)] = Observation(Outcome.HEALTHY, replication=Replication(read_only=True))
    assert fencer.reconcile(after, seen, now + 1) == []
    assert store.load_pool("p1").version == after.version
    assert fencer.counter.total() == 1


def run_once(url: str, tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    secret = tmp / "pw"
    secret.write_text(MONITOR_PASSWORD + "\n")
    argv = ["mpp-poller", "--redis-url", url, "--mysql-password-file", str(secret), "--once"]
    return subprocess.run(
        [*argv, *FAST_PROBE], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


def next_round() -> None:
    time.sleep(1.05 - time.time() % 1.0)


def test_a_new_pool_is_fenced_in_its_first_round_and_the_writer_opened_when_it_takes_over(
    store: Store, mariadb_cluster: MariaDBCluster, tmp_path: Path, redis_url: str
) -> None:
    node1, node2 = mariadb_cluster.node1, mariadb_cluster.node2
    fence_pool(store, mariadb_cluster)
    env = {"MPP_FENCE_USER": FENCE_USER, "MPP_FENCE_PASSWORD": FENCE_PASSWORD}
    first = run_once(redis_url, tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert [n.state for n in store.load_pool("p1").nodes] == [State.STANDBY, State.STANDBY]
    assert is_read_only(node1) and is_read_only(node2)  # nobody takes writes yet
    assert set(fencing_events(store)) == {("fenced", node1.node_id), ("fenced", node2.node_id)}
    assert FENCE_PASSWORD not in first.stderr
    next_round()
    second = run_once(redis_url, tmp_path, env)
    assert second.returncode == 0, second.stderr
    pool = store.load_pool("p1")
    assert [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY]
    assert not is_read_only(node1) and is_read_only(node2)
    # Opened in the very round it took over: the stored state already routes writes to it.
    writer = route(pool, store.server_time()).writer
    assert writer is not None and writer.node == node_id(node1)
    assert fencing_events(store)[-1] == ("unfenced", node1.node_id)
    count = len(fencing_events(store))
    next_round()
    assert run_once(redis_url, tmp_path, env).returncode == 0
    assert len(fencing_events(store)) == count  # nothing differed, nothing done


def test_no_fencing_account_fails_no_node_and_says_so(
    store: Store, mariadb_cluster: MariaDBCluster, tmp_path: Path, redis_url: str
) -> None:
    fence_pool(store, mariadb_cluster)
    first = run_once(redis_url, tmp_path, {})
    assert first.returncode == 0, first.stderr
    assert f"WARNING mpp.poller: fencing p1: {NO_ACCOUNT}" in first.stderr
    assert not is_read_only(mariadb_cluster.node2)
    next_round()
    # a user without a password: said as such, nothing tried
    second = run_once(redis_url, tmp_path, {"MPP_FENCE_USER": FENCE_USER})
    assert second.returncode == 0, second.stderr
    assert f"WARNING mpp.poller: fencing p1: {NO_PASSWORD}" in second.stderr
    assert [n.state for n in store.load_pool("p1").nodes] == [State.ACTIVE, State.STANDBY]
    assert not is_read_only(mariadb_cluster.node2)


@pytest.fixture
def unprivileged_poller(redis_url: str) -> Iterator[PollerProcess]:
    """A poller whose fencing account is the monitoring one: it may not set read_only."""
    proc = PollerProcess(redis_url, "p-nopriv")
    secret = proc.workdir / "fence.pw"
    secret.write_text(MONITOR_PASSWORD + "\n")
    proc.extra = ["--fence-user", MONITOR_USER, "--fence-password-file", str(secret)]
    try:
        yield proc
    finally:
        proc.cleanup()


def test_an_account_without_the_privilege_is_reported_and_fails_no_node(
    store: Store,
    mariadb_cluster: MariaDBCluster,
    redis_url: str,
    unprivileged_poller: PollerProcess,
) -> None:
    fence_pool(store, mariadb_cluster)
    proc = unprivileged_poller.start()
    watch_ticks(store, "p1", lambda seen: seen[-1].nodes[0].state is State.ACTIVE, 15)

    def problems() -> dict[str, str]:
        out = subprocess.run(
            ["mpp-admin", "--redis-url", redis_url, "pollers", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        (found,) = json.loads(out)["pollers"]
        return dict(found["fencing"])

    wait_until(lambda: bool(problems()), 5, "the fencing problem in mpp-admin pollers")
    key = f"p1/{mariadb_cluster.node2.node_id}"
    assert "lacks a privilege" in problems()[key] and "READ_ONLY ADMIN" in problems()[key]
    text = subprocess.run(
        ["mpp-admin", "--redis-url", redis_url, "pollers"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert f"    {key}  cannot set read_only" in text, text
    time.sleep(2.0)
    pool = store.load_pool("p1")
    assert [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY]
    assert all(n.r == 0 for n in pool.nodes)
    assert not is_read_only(mariadb_cluster.node2)
    said = [line for line in proc.output().splitlines() if "lacks a privilege" in line]
    assert len(said) == 1, said


def test_a_fence_password_file_without_a_user_is_a_usage_error(
    tmp_path: Path, redis_url: str
) -> None:
    secret = tmp_path / "fence.pw"
    secret.write_text("x\n")
    result = subprocess.run(
        ["mpp-poller", "--redis-url", redis_url, "--once", "--fence-password-file", str(secret)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--fence-password-file needs --fence-user" in result.stderr
