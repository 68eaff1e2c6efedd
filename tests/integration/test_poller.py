"""mpp-poller against real MariaDB nodes and a real Redis: the rules happen for real.

Topology (tests/servers.py): node1 <-> node2 master-master, node3 a replica of node1. The pool
is node1 PRIMARY, node2 SECONDARY, node3 SECONDARY, interval 1 s, M = 4.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pymysql
import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import NodeId, Override, PoolState, State, Status
from mpp_agent.state import AdminRefused, activate_primary, recover_node, set_override
from mpp_agent.store import Store
from tests.daemons import PollerProcess, describe, row, watch_ticks
from tests.servers import APP_PASSWORD, APP_USER, MariaDBCluster, RedisServer

pytestmark = pytest.mark.integration

INTERVAL = 1.0
M = 4


def make_pool(store: Store, cluster: MariaDBCluster, interval: float = INTERVAL) -> PoolState:
    text = (
        f"name:p1;primary:{cluster.node1.node_id};secondary:{cluster.node2.node_id};"
        f"secondary:{cluster.node3.node_id}"
    )
    return store.create_pool(parse_failoverpool(text, interval=interval, max_requests=M))


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url, "mpp")


@pytest.fixture
def pollers(redis_url: str) -> Iterator[list[PollerProcess]]:
    started: list[PollerProcess] = []
    yield started
    for p in started:
        p.cleanup()


def start_poller(pollers: list[PollerProcess], url: str, name: str, **kw: object) -> PollerProcess:
    proc = PollerProcess(url, name, **kw)  # type: ignore[arg-type]
    pollers.append(proc)
    return proc.start()


def is_steady(pool: PoolState) -> bool:
    return [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY, State.STANDBY] and all(
        n.requests == 0 for n in pool.nodes
    )


def wait_steady(store: Store, timeout: float = 15) -> list[PoolState]:
    return watch_ticks(store, "p1", lambda seen: is_steady(seen[-1]), timeout)


def test_bootstrap_to_active_standby_in_two_ticks(store, mariadb_cluster, pollers, redis_url):
    make_pool(store, mariadb_cluster)
    ticks = watch_ticks(
        store,
        "p1",
        lambda seen: len(seen) >= 4,
        15,
        then=lambda: start_poller(pollers, redis_url, "p-a"),
    )[1:]  # [0]: as created, read before the poller started
    first, second = ticks[0], ticks[1]
    assert [row(first, i) for i in range(3)] == [(0, "OK", "STANDBY", None)] * 3, describe(ticks)
    assert row(second, 0) == (1, "OK_WARN", "ACTIVE", "PRIMARY instatement to ACTIVE complete.")
    assert [row(second, i) for i in (1, 2)] == [(0, "OK", "STANDBY", None)] * 2
    assert row(ticks[2], 0) == (
        0,
        "OK",
        "ACTIVE",
        "(recovering) PRIMARY instatement to ACTIVE complete.",
    )
    assert second.last_round == first.last_round + 1


def assert_failover_on_mth_tick(ticks: list[PoolState], error_part: str) -> None:
    """Ticks 1..M-1 count the primary up as OK_WARN; tick M fails it and node2 takes over."""
    failing = [t for t in ticks if t.nodes[0].requests]  # from the first failing tick on
    for r, tick in enumerate(failing[: M - 1], start=1):
        assert tick.nodes[0].requests == r, describe(ticks)
        assert (tick.nodes[0].status.value, tick.nodes[0].state.value) == ("OK_WARN", "ACTIVE")
        assert error_part in (tick.nodes[0].message or "")
        assert tick.nodes[1].state is State.STANDBY
    fail = failing[M - 1]
    assert (fail.nodes[0].requests, fail.nodes[0].status.value, fail.nodes[0].state.value) == (
        M,
        "FAIL",
        "FAILED_OFFLINE",
    ), describe(ticks)
    assert row(fail, 1) == (1, "OK_WARN", "ACTIVE", "FAILOVER: Taking over ACTIVE state.")
    assert fail.nodes[2].state is State.STANDBY
    rounds = [t.last_round for t in failing[:M]]
    assert rounds == list(range(rounds[0], rounds[0] + M)), "a round was skipped or repeated"


def test_kill9_of_active_primary_fails_over_on_mth_tick(store, mariadb_cluster, pollers, redis_url):
    make_pool(store, mariadb_cluster)
    start_poller(pollers, redis_url, "p-a")
    wait_steady(store)
    mariadb_cluster.node1.kill9()
    killed = time.monotonic()
    ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[1].state is State.ACTIVE, 15)
    elapsed = time.monotonic() - killed
    assert_failover_on_mth_tick(ticks, "Could not connect to mysql host")
    assert elapsed <= M * INTERVAL + 0.5, f"failover took {elapsed:.2f}s"


def test_sigstopped_primary_fails_over_and_cycles_stay_bounded(
    store, mariadb_cluster, pollers, redis_url
):
    make_pool(store, mariadb_cluster)
    start_poller(pollers, redis_url, "p-a")
    wait_steady(store)
    mariadb_cluster.node1.sigstop()
    ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[1].state is State.ACTIVE, 15)
    assert_failover_on_mth_tick(ticks, "Could not connect to mysql host")
    # Every round was still ticked on time: the hung node cost at most the probe timeout.
    more = watch_ticks(store, "p1", lambda s: len(s) >= 4, 10)
    rounds = [t.last_round for t in more]
    assert rounds == list(range(rounds[0], rounds[0] + len(rounds))), describe(more)


def test_too_many_connections_fails_the_standby_offline(store, mariadb_cluster, pollers, redis_url):
    make_pool(store, mariadb_cluster)
    start_poller(pollers, redis_url, "p-a")
    wait_steady(store)
    node2 = mariadb_cluster.node2
    node2.sql("SET GLOBAL max_connections=2")  # MariaDB clamps it to 10
    with hold_connections(node2.port, 11):
        ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[1].state.is_failed, 15)
    failed = ticks[-1].nodes[1]
    assert (failed.requests, failed.status.value, failed.state.value) == (
        M,
        "FAIL",
        "FAILED_OFFLINE",
    )
    assert "Too many connections" in (failed.message or "")
    assert failed.message.startswith(f"Could not connect to mysql host {node2.node_id}: ")
    assert ticks[-1].nodes[0].state is State.ACTIVE


@contextlib.contextmanager
def hold_connections(port: int, count: int) -> Iterator[None]:
    held = []
    for _ in range(count):
        with contextlib.suppress(pymysql.MySQLError):
            held.append(
                pymysql.connect(host="127.0.0.1", port=port, user=APP_USER, password=APP_PASSWORD)
            )
    try:
        yield
    finally:
        for conn in held:
            with contextlib.suppress(Exception):
                conn.close()


def test_stop_slave_on_the_standby_fails_it_online(store, mariadb_cluster, pollers, redis_url):
    make_pool(store, mariadb_cluster)
    start_poller(pollers, redis_url, "p-a")
    wait_steady(store)
    mariadb_cluster.node2.sql("STOP SLAVE")
    ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[1].state.is_failed, 15)
    text = "Slave Error: Slave SQL is not running, Slave_SQL_Running=No."
    warn = [t.nodes[1] for t in ticks if t.nodes[1].requests]
    assert [(n.requests, n.status.value, n.state.value) for n in warn] == [
        (1, "OK_WARN", "STANDBY"),
        (2, "OK_WARN", "STANDBY"),
        (3, "OK_WARN", "STANDBY"),
        (4, "FAIL", "FAILED_ONLINE"),
    ], describe(ticks)
    assert all(n.message == text for n in warn)
    assert ticks[-1].nodes[0].state is State.ACTIVE


def test_three_pollers_tick_once_per_interval_and_fail_over_in_time(
    store, mariadb_cluster, pollers, redis_url
):
    make_pool(store, mariadb_cluster)
    start_poller(pollers, redis_url, "p-a")
    wait_steady(store)
    time.sleep(0.37)
    start_poller(pollers, redis_url, "p-b")
    time.sleep(0.61)
    start_poller(pollers, redis_url, "p-c")
    time.sleep(2 * INTERVAL)
    # A healthy pool's version advances once per interval, not once per poller.
    before, t0 = store.load_pool("p1"), time.monotonic()
    time.sleep(5 * INTERVAL)
    after, t1 = store.load_pool("p1"), time.monotonic()
    assert abs((after.version - before.version) - (t1 - t0) / INTERVAL) <= 1.5
    assert after.last_round - before.last_round == after.version - before.version
    # A failing node's R advances exactly once per round.
    mariadb_cluster.node3.sql("STOP SLAVE")
    ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[2].state.is_failed, 15)
    counted = [(t.last_round, t.nodes[2].requests) for t in ticks if t.nodes[2].requests]
    assert [r for _, r in counted] == [1, 2, 3, 4], describe(ticks)
    assert [k for k, _ in counted] == list(range(counted[0][0], counted[0][0] + 4))
    # Failover with three pollers still within M intervals of the kill.
    mariadb_cluster.node1.kill9()
    killed = time.monotonic()
    watch_ticks(store, "p1", lambda s: s[-1].nodes[1].state is State.ACTIVE, 15)
    assert time.monotonic() - killed <= M * INTERVAL + 0.5
    assert all(p.is_running for p in pollers)


def test_poller_killed_mid_cycle_loses_nothing(store, mariadb_cluster, pollers, redis_url):
    make_pool(store, mariadb_cluster)
    a = start_poller(pollers, redis_url, "p-a")
    start_poller(pollers, redis_url, "p-b")
    start_poller(pollers, redis_url, "p-c")
    wait_steady(store)
    # Kill one poller at a moment inside a round (probing or recording), then the primary.
    now = store.server_time()
    time.sleep((int(now) + 1.05) - now)
    a.kill9()
    mariadb_cluster.node1.kill9()
    killed = time.monotonic()
    ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[1].state is State.ACTIVE, 20)
    assert time.monotonic() - killed <= (M + 1) * INTERVAL + 0.5, describe(ticks)
    final = ticks[-1]
    assert row(final, 0)[1:3] == ("FAIL", "FAILED_OFFLINE")
    versions = [t.version for t in ticks]
    assert versions == sorted(set(versions))
    # The pool document is whole and both survivors keep ticking.
    assert store.load_pool("p1").nodes[1].state is State.ACTIVE
    watch_ticks(store, "p1", lambda s: len(s) >= 3, 6)


def test_corroboration_one_blind_poller_causes_no_failover_two_do(
    store, mariadb_cluster, pollers, redis_url
):
    node1 = mariadb_cluster.node1
    # A monitoring database that is empty on node1 only: a poller using it sees node1 fail
    # ("No tables found", a failing observation, not an abstention) while node1 is perfectly
    # healthy for everyone else.
    for node in mariadb_cluster.nodes:
        table = "" if node is node1 else "CREATE TABLE blinddb.t (i INT);"
        node.sql(
            f"SET sql_log_bin=0; CREATE DATABASE blinddb; {table}"
            "GRANT SELECT ON blinddb.* TO 'monitor'@'127.0.0.1'"
        )
    blind_options = {"extra": ["--database", "blinddb"]}
    try:
        make_pool(store, mariadb_cluster)
        start_poller(pollers, redis_url, "p-a")
        start_poller(pollers, redis_url, "p-b")
        wait_steady(store)
        blind = start_poller(pollers, redis_url, "p-blind1", **blind_options)
        ticks = watch_ticks(store, "p1", lambda s: len(s) >= 2 * M, 20)
        assert all(t.nodes[0].state is State.ACTIVE and t.nodes[0].requests == 0 for t in ticks)
        assert "No tables found" in blind_observation(store, "p1", node1.node_id)
        pollers[0].stop()  # now one sighted poller against two blind ones
        start_poller(pollers, redis_url, "p-blind2", **blind_options)
        ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[1].state is State.ACTIVE, 20)
        assert "No tables found" in (ticks[-1].nodes[0].message or "")
        assert ticks[-1].nodes[0].state is State.FAILED_OFFLINE
        assert blind.is_running
    finally:
        for node in mariadb_cluster.nodes:
            node.sql(
                "SET sql_log_bin=0; REVOKE SELECT ON blinddb.* FROM 'monitor'@'127.0.0.1';"
                " DROP DATABASE IF EXISTS blinddb"
            )


def blind_observation(store: Store, pool: str, node: str) -> str:
    last = store.load_pool(pool).last_round
    for round_ in (last, last - 1):
        for poller, seen in store.round_observations(pool, round_).items():
            if poller.startswith("p-blind"):
                return next(o.message for n, o in seen.items() if str(n) == node)
    return ""


def test_ticks_and_admin_changes_racing_lose_nothing(store, mariadb_cluster, pollers, redis_url):
    """recover, activate-primary and override through the store's CAS while three real pollers
    tick the same pool every 0.2 s: no update lost, never two ACTIVE, versions increasing."""
    make_pool(store, mariadb_cluster, interval=0.2)
    fast = ["--connect-timeout", "0.05", "--read-timeout", "0.05", "--probe-timeout", "0.09"]
    for name in ("p-a", "p-b", "p-c"):
        start_poller(pollers, redis_url, name, extra=fast)
    watch_ticks(store, "p1", lambda s: is_steady(s[-1]), 15)
    primary = NodeId.parse(mariadb_cluster.node1.node_id)
    node3 = NodeId.parse(mariadb_cluster.node3.node_id)
    reasons = [f"race {i}" for i in range(40)]
    errors: list[BaseException] = []
    seen: list[PoolState] = []
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set():
            seen.append(store.load_pool("p1"))

    def overrides() -> None:
        try:
            for reason in reasons:
                override = Override(State.STANDBY, Status.OK, reason, set_by="admin:test")
                store.admin("p1", lambda p, o=override: set_override(p, node3, o))
                time.sleep(0.03)  # spread the changes over several rounds
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=observe), threading.Thread(target=overrides)]
    start = store.load_pool("p1")
    for t in threads:
        t.start()
    activations, refused = 0, ""
    for _ in range(3):
        # recover the ACTIVE primary: it re-enters UNKNOWN -> STANDBY, and activate-primary
        # is tried until it lands in the round where the primary is STANDBY (and has caught
        # up: with 50 ms probe timeouts on a loaded machine that can take some rounds).
        store.admin("p1", lambda p: recover_node(p, primary))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                store.admin("p1", lambda p: activate_primary(p, store.server_time()))
                activations += 1
                break
            except AdminRefused as exc:
                refused = str(exc)
                time.sleep(0.01)
    threads[1].join(60)
    stop.set()
    threads[0].join(10)
    assert not errors
    assert activations == 3, f"activate-primary refused for 15 s: {refused}"
    end = store.load_pool("p1")
    events = [e for _, e in store.events("p1", count=100_000)]
    assert [e["message"] for e in events if e["kind"] == "override"] == reasons
    assert end.nodes[2].override is not None and end.nodes[2].override.reason == reasons[-1]
    assert sum(1 for e in events if e["kind"] == "recover") == 3
    assert sum(1 for e in events if e["kind"] == "activate-primary") >= 3
    assert end.last_round > start.last_round + 5  # the pollers kept ticking meanwhile
    versions = [p.version for p in seen]
    assert versions == sorted(versions)
    assert all(len(p.active_nodes) <= 1 for p in seen), "two ACTIVE nodes seen"
    watch_ticks(store, "p1", lambda s: is_steady(s[-1]), 10)


def test_scripts_survive_script_flush_and_redis_restart(
    mariadb_cluster, pollers, fresh_redis: RedisServer
):
    store = Store.from_url(fresh_redis.url, "mpp")
    make_pool(store, mariadb_cluster)
    p = start_poller(pollers, fresh_redis.url, "p-a")
    wait_steady(store)
    store.client.script_flush()
    v = store.load_pool("p1").version
    watch_ticks(store, "p1", lambda s: s[-1].version >= v + 2, 5)
    fresh_redis.stop()
    time.sleep(2.5)  # the poller sees Redis gone for a few cycles and keeps going
    assert p.is_running
    fresh_redis.start()  # an empty Redis: scripts and data are gone
    make_pool(store, mariadb_cluster)
    ticks = watch_ticks(store, "p1", lambda s: is_steady(s[-1]), 15)
    assert is_steady(ticks[-1])
    assert p.is_running
    assert "Redis unreachable" in p.output()


def test_changing_the_interval_renumbers_rounds_and_ticks_go_on(
    store, mariadb_cluster, pollers, redis_url
):
    from mpp_agent.config import apply_config, config_of
    from mpp_agent.state import AdminResult

    make_pool(store, mariadb_cluster)
    start_poller(pollers, redis_url, "p-a")
    wait_steady(store)
    for interval in (3.0, 1.0):  # longer rounds give smaller round numbers, then larger

        def change(p: PoolState, i: float = interval) -> AdminResult:
            config = config_of(p)
            new = type(config)(config.name, config.members, config.max_requests, i)
            return AdminResult(apply_config(p, new), "", ())

        store.admin("p1", change)
        assert store.load_pool("p1").last_round == -1
        ticks = watch_ticks(store, "p1", lambda s: len(s) >= 3, 4 * interval + 2)
        assert ticks[-1].last_round == round(store.server_time() // interval)
        assert is_steady(ticks[-1])
