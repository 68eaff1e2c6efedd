"""Admin commands racing three pollers that tick the same pool in a loop.

Three threads play redundant pollers: each loops load_pool -> state.tick -> store.commit(round =
last + 1), so every round is contended by all three, while mpp-admin recover, activate-primary
and override run through the CLI. Whatever the interleaving: no update is lost (the version
grows by exactly one per successful commit, and every admin action is in the event stream once
and in the state), there are never two ACTIVE nodes, and versions and rounds only increase.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from mpp_agent import state
from mpp_agent.model import NodeId, Outcome, PoolState, State
from tests.integration.admin_support import S1, S2, P, bootstrap, mpp_admin, observe, store_for

pytestmark = pytest.mark.integration

POLLERS = ("poller-a", "poller-b", "poller-c")
ITERATIONS = 5
TICK_PAUSE = 0.003


class Pollers:
    """Three ticking threads plus an observer; ``mode`` says what the probes see."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.mode = "healthy"  # "primary-down" | "s1-silent" | "healthy"
        self.stop = threading.Event()
        self.commits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.violations: list[str] = []
        self.versions: list[int] = []
        self.threads = [threading.Thread(target=self.tick_loop, args=(p,)) for p in POLLERS]
        self.threads.append(threading.Thread(target=self.observe_loop))

    def observations(self, pool: PoolState) -> dict[NodeId, object]:
        if self.mode == "primary-down":
            return dict(observe(pool, {P: Outcome.CONNECT}))
        seen = dict(observe(pool))
        if self.mode == "s1-silent":
            del seen[S1]  # S1 not evaluated: it stays ACTIVE while the primary waits
        return seen

    def tick_loop(self, poller: str) -> None:
        store = store_for(self.redis_url)
        while not self.stop.is_set():
            pool = store.load_pool("pool1")
            now = store.server_time()
            result = state.tick(pool, self.observations(pool), now)  # type: ignore[arg-type]
            if len(result.pool.active_nodes) > 1:
                self.violations.append(f"{poller} computed two ACTIVE nodes")
            ok, _ = store.commit(pool, result.pool, result.events, poller, pool.last_round + 1)
            if ok:
                with self.lock:
                    self.commits[poller] += 1
            time.sleep(TICK_PAUSE)

    def observe_loop(self) -> None:
        store = store_for(self.redis_url)
        while not self.stop.is_set():
            pool = store.load_pool("pool1")
            if len(pool.active_nodes) > 1:
                self.violations.append(f"two ACTIVE nodes at version {pool.version}")
            if self.versions and pool.version < self.versions[-1]:
                self.violations.append(f"version went back to {pool.version}")
            self.versions.append(pool.version)

    def __enter__(self) -> Pollers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def wait_for(redis_url: str, what: str, check: Callable[[PoolState], bool]) -> PoolState:
    store = store_for(redis_url)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pool = store.load_pool("pool1")
        if check(pool):
            return pool
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}: {store.load_pool('pool1')}")


def state_of(pool: PoolState, node: NodeId) -> State:
    found = pool.find(node)
    assert found is not None
    return found.state


def test_recover_activate_and_override_race_three_pollers(redis_url: str) -> None:
    store = store_for(redis_url)
    start = bootstrap(store)
    admin_commits = 0
    with Pollers(redis_url) as pollers:
        for i in range(ITERATIONS):
            pollers.mode = "primary-down"
            wait_for(redis_url, "failover", lambda p: state_of(p, S1) is State.ACTIVE
                     and state_of(p, P) is State.FAILED_OFFLINE)  # fmt: skip
            pollers.mode = "s1-silent"
            recovered = mpp_admin(redis_url, "recover", "10.0.0.1")
            assert recovered.exit_code == 0, recovered.output
            assert re.fullmatch(
                r"OK: Cached level reset from (FAIL|OK_WARN)/\d+ \(FAILED_OFFLINE\) to OK_WARN/0 "
                r"\(UNKNOWN\) for 10\.0\.0\.1:3306\n",
                recovered.stdout,
            )
            admin_commits += 1
            wait_for(redis_url, "primary STANDBY", lambda p: state_of(p, P) is State.STANDBY)
            activated = mpp_admin(redis_url, "activate-primary", "pool1")
            assert (activated.exit_code, activated.stdout) == (
                0, "PRIMARY SERVER 10.0.0.1:3306 STATE is now ACTIVE.\n",
            ), activated.output  # fmt: skip
            admin_commits += 1
            pollers.mode = "healthy"
            pinned = mpp_admin(
                redis_url, "override", "10.0.0.3:3307", "--state", "STANDBY", "--reason",
                f"race-{i}",
            )  # fmt: skip
            assert pinned.exit_code == 0, pinned.output
            admin_commits += 1
            node = store.load_pool("pool1").find(S2)
            assert node is not None and node.override is not None
            assert node.override.reason == f"race-{i}"  # not lost to a concurrent tick
        # A burst of overrides against the ticking pollers: each must land, in order.
        for j in range(20):
            result = mpp_admin(
                redis_url, "override", "10.0.0.2", "--state", "STANDBY", "--reason", f"burst-{j}"
            )
            assert result.exit_code == 0, result.output
            admin_commits += 1
        time.sleep(0.05)
    assert not pollers.violations, pollers.violations[:5]
    assert pollers.versions == sorted(pollers.versions)
    final = store.load_pool("pool1")
    # No update lost: one version step per successful commit, whoever made it.
    assert final.version - start.version == sum(pollers.commits.values()) + admin_commits
    assert all(pollers.commits[p] > 0 for p in POLLERS)
    s1, s2 = final.find(S1), final.find(S2)
    assert s1 is not None and s1.override is not None and s1.override.reason == "burst-19"
    assert (
        s2 is not None
        and s2.override is not None
        and s2.override.reason == f"race-{ITERATIONS - 1}"
    )
    assert len(final.active_nodes) == 1
    events = [e for _, e in store.events("pool1", 100_000)]
    kinds = Counter(e["kind"] for e in events)
    assert kinds["recover"] == ITERATIONS
    assert kinds["activate-primary"] == 2 * ITERATIONS  # the primary up, the secondary down
    assert kinds["override"] == ITERATIONS + 20
    assert [e["message"] for e in events if e["kind"] == "override"][-20:] == [
        f"burst-{j}" for j in range(20)
    ]
    rounds = [e["round"] for e in events if "round" in e]
    assert all(a <= b for a, b in itertools.pairwise(rounds))
    # Rounds of different commits never repeat: each round was committed by one poller only.
    by_round: dict[int, set[str]] = {}
    for e in events:
        if "round" in e:
            by_round.setdefault(e["round"], set()).add(e["actor"])
    assert all(len(actors) == 1 for actors in by_round.values())
