"""mpp-admin switchover, pause, resume and --failback against a real Redis (the pollers' ticks
are driven here through the pure core and the store, as a poller commits them)."""

from __future__ import annotations

import json
import threading
import time

from mpp_agent import state
from mpp_agent.model import NodeId, Observation, Outcome, PoolState, Replication, State
from mpp_agent.routing import route
from mpp_agent.store import Store
from tests.integration.admin_support import (
    S1,
    P,
    bootstrap,
    dump,
    failover,
    mpp_admin,
    store_for,
    tick,
)


def positions(pool: PoolState, binlog: str = "0-1-7") -> dict[NodeId, Observation]:
    details = Replication(binlog=binlog, applied=binlog, unapplied=0)
    return {n.node: Observation(Outcome.HEALTHY, replication=details) for n in pool.nodes}


def manual_pool(redis_url: str, interval: float = 10.0) -> Store:
    store = store_for(redis_url)
    bootstrap(store)
    applied = mpp_admin(
        redis_url, "pool", "apply", "pool1", "--failback", "manual", "--interval", str(interval)
    )
    assert applied.exit_code == 0, applied.stderr
    return store


def test_failback_is_a_pool_setting(redis_url: str) -> None:
    store = manual_pool(redis_url)
    assert "failback      manual" in mpp_admin(redis_url, "pool", "show", "pool1").stdout
    assert "failback=manual" in mpp_admin(redis_url, "list").stdout
    failover(store)
    assert mpp_admin(redis_url, "recover", str(P)).exit_code == 0
    pool = tick(store, "pool1", times=5)
    assert [n.state for n in pool.nodes[:2]] == [State.STANDBY, State.ACTIVE]
    assert "Fail-back is manual" in (pool.nodes[0].message or "")


def test_pause_holds_the_state_and_resume_goes_on(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    paused = mpp_admin(redis_url, "pause", "pool1", "--reason", "switch upgrade", "--for", "1h")
    assert paused.exit_code == 0, paused.stderr
    again = mpp_admin(redis_url, "pause", "pool1")
    assert again.exit_code == 4 and "already paused" in again.stderr
    pool = tick(store, "pool1", {P: Outcome.CONNECT}, times=8)
    assert pool.nodes[0].state is State.ACTIVE and pool.nodes[0].r == 0
    listing = mpp_admin(redis_url, "list").stdout
    assert "P PAUSED by admin:" in listing and "would fail 10.0.0.1:3306 over" in listing
    decided = route(pool, store.server_time()).find(P)
    assert decided is not None and decided.reason.startswith("paused: switch upgrade")
    assert mpp_admin(redis_url, "resume", "pool1").exit_code == 0
    pool = tick(store, "pool1", {P: Outcome.CONNECT}, times=4)
    assert pool.nodes[0].state is State.FAILED_OFFLINE and pool.nodes[1].state is State.ACTIVE
    not_paused = mpp_admin(redis_url, "resume", "pool1")
    assert not_paused.exit_code == 4 and "not paused" in not_paused.stderr


def test_switchover_refusals_exit_4_and_change_nothing(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)  # failback auto: the PRIMARY would take writes straight back
    client = store.client
    before = dump(client)
    refused = mpp_admin(redis_url, "switchover", "pool1", "--to", str(S1))
    assert refused.exit_code == 4 and "--failback manual" in refused.stderr
    unknown = mpp_admin(redis_url, "switchover", "pool1", "--to", "10.9.9.9")
    assert unknown.exit_code == 4 and "not a member" in unknown.stderr
    assert mpp_admin(redis_url, "switchover", "nope").exit_code == 3
    assert dump(client) == before


def test_switchover_with_no_poller_is_abandoned_after_its_timeout(redis_url: str) -> None:
    store = manual_pool(redis_url, interval=0.5)
    started = time.monotonic()
    result = mpp_admin(redis_url, "switchover", "pool1", "--timeout", "1")
    assert result.exit_code == 9, result.stdout + result.stderr
    assert "abandoned" in result.stderr and time.monotonic() - started < 15
    pool = store.load_pool("pool1")
    assert pool.switchover is None
    writer = route(pool, store.server_time()).writer
    assert writer is not None and writer.node == P


def test_switchover_waits_prints_the_steps_and_exits_0(redis_url: str) -> None:
    store = manual_pool(redis_url, interval=0.5)
    stop = threading.Event()

    def poller() -> None:  # commits one tick per round with every node at the same position
        while not stop.wait(0.1):
            pool = store.load_pool("pool1")
            now = store.server_time()
            round_ = int(now // pool.interval)
            if round_ <= pool.last_round:
                continue
            result = state.tick(pool, positions(pool), now)
            store.commit(pool, result.pool, result.events, "poller-test", round_)

    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    try:
        result = mpp_admin(redis_url, "switchover", "pool1", "--to", str(S1), "--timeout", "20")
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].endswith(
        f"{P}: started: writes stop on {P}; {S1} takes them once it has "
        f"applied everything {P} wrote (at the latest in 20s)"
    )
    assert lines[2].endswith(f"{P}: {P} drained at position 0-1-7")
    assert lines[3].endswith(f"{P}: SWITCHOVER: writes moved to {S1}.")
    assert lines[4].endswith(f"{S1}: SWITCHOVER: Taking over ACTIVE state.")
    assert lines[5].endswith(f"{S1}: {S1} has applied 0-1-7: it takes writes, {P} is STANDBY")
    assert result.stdout.rstrip().endswith(f"OK: {S1} takes writes in pool pool1.")
    pool = store.load_pool("pool1")
    assert [n.state for n in pool.nodes[:2]] == [State.STANDBY, State.ACTIVE]
    history = mpp_admin(redis_url, "history", "--pool", "pool1").stdout
    assert "switchover" in history


def test_a_switchover_in_progress_is_listed_and_answered(redis_url: str) -> None:
    store = manual_pool(redis_url)
    now = store.server_time()
    store.admin("pool1", lambda p: state.start_switchover(p, S1, now, 30.0, "alice"))
    listing = mpp_admin(redis_url, "list").stdout
    assert f"  W SWITCHOVER from {P} to {S1}" in listing
    assert f"  R no writes: switchover to {S1}" in listing
    doc = json.loads(mpp_admin(redis_url, "list", "--json").stdout)["pools"][0]
    assert doc["active"] is None
    assert doc["switchover"]["source"] == str(P) and doc["switchover"]["target"] == str(S1)
    refused = mpp_admin(redis_url, "pause", "pool1")
    assert refused.exit_code == 4 and "in progress" in refused.stderr
