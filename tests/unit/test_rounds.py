"""Round, liveness and assignment arithmetic (mpp_agent/rounds.py): one row per case."""

from __future__ import annotations

from collections import Counter

import pytest

from mpp_agent import rounds
from mpp_agent.rounds import (
    assign,
    candidates,
    deadline_at,
    heartbeat_ttl,
    is_fresh,
    is_stale,
    late_by,
    next_probe_in,
    next_round_start,
    observes,
    round_of,
    under_observed,
)

POLLERS = [f"poller-{i}" for i in range(10)]
POOLS = [f"pool{i}" for i in range(1000)]


@pytest.mark.parametrize(
    ("now", "interval", "expected"),
    [
        (0.0, 2.0, 0),
        (1.999, 2.0, 0),
        (2.0, 2.0, 1),
        (1_700_000_001.5, 0.5, 3_400_000_003),
        (-0.1, 1.0, -1),  # floor, not truncation
    ],
)
def test_round_of(now: float, interval: float, expected: int) -> None:
    assert round_of(now, interval) == expected


@pytest.mark.parametrize(
    ("round_", "interval", "now", "late"),
    [
        (10, 2.0, 20.5, None),
        (10, 2.0, 21.0, None),  # exactly at the deadline: in time
        (10, 2.0, 21.5, 1.5),
        (4, 0.5, 2.3, 0.3),
    ],
)
def test_deadline_and_lateness(
    round_: int, interval: float, now: float, late: float | None
) -> None:
    assert deadline_at(round_, interval) == round_ * interval + interval / 2
    found = late_by(round_, interval, now)
    assert found == (None if late is None else pytest.approx(late))


def test_next_round_start() -> None:
    assert next_round_start(20.0, 2.0) == 22.0
    assert next_round_start(21.9, 2.0) == 22.0


@pytest.mark.parametrize(
    ("now", "handled", "wait"),
    [
        (20.2, 10, 1.8),  # this round probed: the next one's start
        (22.3, 10, 0.0),  # a cycle ran over into round 11, before its deadline: at once
        (23.0, 10, 0.0),  # exactly at round 11's deadline: still in time
        (23.5, 10, 0.5),  # past round 11's deadline: its tick is forced; wait for round 12
        (20.2, None, 0.0),  # never probed
        (20.2, 4, 0.0),  # numbered under another interval
    ],
)
def test_next_probe_in(now: float, handled: int | None, wait: float) -> None:
    assert next_probe_in(now, 2.0, handled) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("last_round", "now", "stale"),
    [
        (100, 200.0, False),  # current round
        (97, 200.0, False),  # 3 behind
        (96, 200.0, True),  # 4 behind
        (-1, 200.0, True),  # never ticked
        (101, 200.0, False),  # one ahead: a clock a hair apart
        (102, 200.0, True),  # far ahead: numbered under another interval
    ],
)
def test_staleness(last_round: int, now: float, stale: bool) -> None:
    assert is_stale(last_round, 2.0, now) is stale


@pytest.mark.parametrize(
    ("age", "cadence", "fresh"),
    [
        (0.0, 1.0, True),
        (1.9, 1.0, True),  # one heartbeat late
        (2.1, 1.0, False),  # missed more than 1.5 heartbeats: about to expire
        (8.0, 5.0, True),
        (9.0, 5.0, False),
    ],
)
def test_freshness(age: float, cadence: float, fresh: bool) -> None:
    now = 1000.0
    expiry = now - age + heartbeat_ttl(cadence)
    assert is_fresh(expiry, now, cadence) is fresh
    assert expiry > now  # fading, not yet expired


def test_assign_is_k_distinct_pollers_the_same_everywhere() -> None:
    for pool in POOLS[:50]:
        chosen = assign(pool, POLLERS, 3)
        assert len(set(chosen)) == 3
        assert chosen == assign(pool, list(reversed(POLLERS)), 3)  # order does not matter


@pytest.mark.parametrize(("k", "n", "expected"), [(3, 2, 2), (3, 1, 1), (0, 4, 4), (5, 5, 5)])
def test_k_larger_than_the_pollers_or_zero_means_all(k: int, n: int, expected: int) -> None:
    assert sorted(assign("pool1", POLLERS[:n], k)) == sorted(POLLERS[:n])[:expected]


def test_balance() -> None:
    load = Counter(p for pool in POOLS for p in assign(pool, POLLERS, 2))
    mean = len(POOLS) * 2 / len(POLLERS)
    assert set(load) == set(POLLERS)
    assert max(load.values()) < 1.25 * mean and min(load.values()) > 0.75 * mean


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_poller_joining_moves_about_k_over_n_of_the_pools(k: int) -> None:
    before = {pool: set(assign(pool, POLLERS[:9], k)) for pool in POOLS}
    after = {pool: set(assign(pool, POLLERS, k)) for pool in POOLS}
    moved = sum(1 for pool in POOLS if before[pool] != after[pool])
    # Each changed pool gained the new poller and lost exactly one other.
    assert all(
        after[p] - before[p] == {"poller-9"} and len(before[p] - after[p]) == 1
        for p in POOLS
        if before[p] != after[p]
    )
    assert abs(moved / len(POOLS) - k / 10) < 0.05


def test_a_poller_leaving_moves_only_its_pools() -> None:
    before = {pool: set(assign(pool, POLLERS, 2)) for pool in POOLS}
    after = {pool: set(assign(pool, POLLERS[1:], 2)) for pool in POOLS}
    for pool in POOLS:
        if "poller-0" in before[pool]:
            assert before[pool] - {"poller-0"} < after[pool] and len(after[pool]) == 2
        else:
            assert after[pool] == before[pool]


def observers(
    pool: str, k: int, beats: dict[str, float], now: float, cadence: float, me: str = ""
) -> tuple[str, ...]:
    """A pool's observers by one poller's view of the heartbeats, as the poller assigns them."""
    return assign(pool, candidates(beats, now, cadence, me), k)


def beats(now: float, cadence: float, **ages: float) -> dict[str, float]:
    return {p: now - age + heartbeat_ttl(cadence) for p, age in ages.items()}


def test_a_fading_poller_is_replaced_before_it_expires() -> None:
    now, cadence = 1000.0, 1.0
    fresh = beats(now, cadence, a=0.2, b=0.4, c=0.3, d=0.1)
    pool = next(p for p in POOLS if "a" in assign(p, "abcd", 2))
    assigned = observers(pool, 2, fresh, now, cadence)
    fading = {**fresh, "a": now - 2.5 + heartbeat_ttl(cadence)}
    replaced = observers(pool, 2, fading, now, cadence)
    assert "a" in assigned and "a" not in replaced and len(replaced) == 2
    assert set(assigned) - {"a"} < set(replaced)  # the other observer stays
    # The fading poller itself still counts on itself: briefly K+1 observers, never fewer.
    assert "a" in observers(pool, 2, fading, now, cadence, me="a")


def test_never_zero_observers_while_a_poller_lives() -> None:
    now, cadence = 1000.0, 1.0
    only_fading = beats(now, cadence, a=2.5, b=2.8)
    assert len(observers("pool1", 2, only_fading, now, cadence)) == 2
    dead = beats(now, cadence, a=10.0)
    assert observers("pool1", 2, dead, now, cadence) == ()
    assert observers("pool1", 2, dead, now, cadence, me="b") == ("b",)


@pytest.mark.parametrize(
    ("now_", "before", "watch"),
    [(True, False, True), (True, True, True), (False, True, True), (False, False, False)],
)
def test_one_extra_round_after_losing_the_assignment(now_: bool, before: bool, watch: bool) -> None:
    assert observes(now_, before) is watch


def test_under_observed() -> None:
    wanted = {"p1": 2, "p2": 2, "p3": 0, "p4": 5}
    seen = {"p1": 2, "p2": 1, "p3": 3, "p4": 3}
    assert under_observed(wanted, seen, live=3) == {"p2": (1, 2)}
    assert under_observed(wanted, seen, live=4) == {"p2": (1, 2), "p3": (3, 4), "p4": (3, 4)}
    assert under_observed({"p1": 2}, {}, live=0) == {"p1": (0, 1)}


def test_constants_are_consistent() -> None:
    # A heartbeat turns not-fresh well before it expires: others cover a fading poller's pools.
    for cadence in (0.5, 1.0, 5.0):
        fresh_for = rounds.FRESH_BEATS * cadence + rounds.HEARTBEAT_GRACE / 2
        assert fresh_for < heartbeat_ttl(cadence) - cadence
