"""Replication lag for real: a delayed standby under a write load is not failed below the pool's
max_lag, is failed above it, and a stopped SQL thread still fails it (real MariaDB, real Redis,
a real mpp-poller).

Topology (tests/servers.py): node1 <-> node2 master-master, node3 a replica of node1. The pool
is node1 PRIMARY, node2 and node3 SECONDARY, interval 1 s, M = 4.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from mpp_agent.config import apply_config, config_of, parse_failoverpool
from mpp_agent.model import PoolState, State
from mpp_agent.state import AdminResult
from mpp_agent.store import Store
from tests.daemons import PollerProcess, describe, watch_ticks
from tests.servers import APP_PASSWORD, APP_USER, MariaDBCluster, MariaDBNode, wait_until

pytestmark = pytest.mark.integration

INTERVAL = 1.0
M = 4
DELAY = 6


@contextlib.contextmanager
def write_load(node: MariaDBNode) -> Iterator[list[int]]:
    """Inserts into app.t on ``node`` every 20 ms until the block ends; yields the count."""
    done = [0]
    stop = threading.Event()

    def write() -> None:
        conn = node.connect_tcp(APP_USER, APP_PASSWORD)
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute("INSERT INTO app.t (origin, v) VALUES (1, 'load')")
                    done[0] += 1
                    time.sleep(0.02)
        finally:
            conn.close()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(10)


@contextlib.contextmanager
def delayed(cluster: MariaDBCluster, *nodes: MariaDBNode) -> Iterator[None]:
    for node in nodes:
        node.sql(f"STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={DELAY}; START SLAVE")
    try:
        yield
    finally:
        for node in nodes:
            node.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE")
        # Caught up everywhere before the next test: node1 also lags while it skips the delayed
        # echo of its own writes coming back from node2 (master-master).
        wait_until(
            lambda: all(
                (n.slave_status() or {}).get("Seconds_Behind_Master") == 0 for n in cluster.nodes
            ),
            60,
            "replication caught up",
        )


def lag_of(store: Store, node: MariaDBNode) -> int | None:
    raw = store.client.hget(store.keys.metrics("p1"), node.node_id)
    return json.loads(raw)["lag"] if raw else None


def set_max_lag(store: Store, max_lag: float) -> None:
    def change(pool: PoolState) -> AdminResult:
        return AdminResult(apply_config(pool, replace(config_of(pool), max_lag=max_lag)), "", ())

    store.admin("p1", change)


def test_lag_is_an_error_only_above_max_lag(redis_url, mariadb_cluster: MariaDBCluster):
    store = Store.from_url(redis_url, "mpp")
    node1, node2, node3 = mariadb_cluster.nodes
    text = f"name:p1;primary:{node1.node_id};secondary:{node2.node_id};secondary:{node3.node_id}"
    store.create_pool(parse_failoverpool(text, interval=INTERVAL, max_requests=M))
    poller = PollerProcess(redis_url, "p-a").start()
    try:
        watch_ticks(store, "p1", lambda s: s[-1].nodes[0].state is State.ACTIVE, 15)
        with delayed(mariadb_cluster, node2, node3), write_load(node1) as writes:
            # 20 s of a steady write load with both standbys 6 s behind: never failed.
            lags: list[int | None] = []
            started = time.monotonic()

            def twenty_seconds(seen: list[PoolState]) -> bool:
                lags.append(lag_of(store, node2))
                return time.monotonic() - started >= 20

            ticks = watch_ticks(store, "p1", twenty_seconds, 30)
            assert writes[0] > 200
            assert max(x for x in lags if x is not None) >= 3, lags  # really behind
            for tick in ticks:
                assert [n.state for n in tick.nodes] == [State.ACTIVE, State.STANDBY, State.STANDBY]
                assert [n.requests for n in tick.nodes[1:]] == [0, 0], describe(ticks)
            # A stopped SQL thread is still an error: node2 fails on the M-th tick.
            node2.sql("STOP SLAVE SQL_THREAD")
            ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[1].state.is_failed, 15)
            assert [t.nodes[1].requests for t in ticks if t.nodes[1].requests] == [1, 2, 3, 4]
            assert ticks[-1].nodes[1].state is State.FAILED_ONLINE
            assert ticks[-1].nodes[1].message == (
                "Slave Error: Slave SQL is not running, Slave_SQL_Running=No."
            )
            # Lag above the pool's max_lag is MPP's request error: node3 fails on the M-th tick.
            set_max_lag(store, 2)
            ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[2].state.is_failed, 15)
            assert [t.nodes[2].requests for t in ticks if t.nodes[2].requests] == [1, 2, 3, 4]
            assert ticks[-1].nodes[2].state is State.FAILED_ONLINE
            assert (ticks[-1].nodes[2].message or "").startswith(
                "Slave Error: Seconds Behind Master: "
            ), describe(ticks)
            assert int((ticks[-1].nodes[2].message or "").rsplit(" ", 1)[1]) > 2
            assert ticks[-1].nodes[0].state is State.ACTIVE
        assert poller.is_running
    finally:
        poller.cleanup()
