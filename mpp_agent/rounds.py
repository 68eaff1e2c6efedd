"""Round and liveness arithmetic, and which pollers observe a pool: pure, no I/O, no clock.

Every time here is Redis server time in seconds, passed in by the caller.

* **Rounds.** Round ``k`` of a pool starts at ``k x interval``; its tick is forced at its
  deadline, ``DEADLINE_FRACTION`` of an interval after it starts. A pool whose last committed
  round is more than ``STALE_ROUNDS`` behind the current one has stale state (no poller ticks it).
* **Liveness.** A poller heartbeats once per *cadence* (the shortest interval of the pools it
  sees, at most ``HEARTBEAT_IDLE``), each heartbeat valid for ``heartbeat_ttl``. A heartbeat is
  *fresh* while it is at most ``FRESH_BEATS`` cadences (plus a grace) old: a poller that missed
  more than that is about to expire, and the others cover its pools before it does.
* **Assignment.** Each pool is observed by ``K`` of the fresh pollers (``K = 0``: all of them),
  chosen by rendezvous hashing of (pool, poller id): every poller computes it for itself from
  the same heartbeats, with no coordinator, and when a poller joins or leaves only about K/N of
  the pools change observers. A poller keeps observing a pool for one round after it lost the
  assignment, so a change briefly gives a pool K+1 observers and never 0 while a poller lives.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Mapping

DEADLINE_FRACTION = 0.5  # a round's tick is forced half an interval after the round starts
STALE_ROUNDS = 3  # a pool this many rounds behind has stale state

# Observations (and probe metrics) of a round outlive its commit by a few intervals, so a late
# poller still finds the round's reports; a poller's membership of a pool (its pool heartbeat)
# lasts two intervals.
OBSERVATION_ROUNDS = 4
OBSERVATION_GRACE = 5.0
POOL_HEARTBEAT_ROUNDS = 2
POOL_HEARTBEAT_GRACE = 1.0

HEARTBEAT_IDLE = 5.0  # a poller heartbeats at least this often, pools or not
LIVE_BEATS = 3  # a heartbeat is valid for this many cadences (plus a grace)...
FRESH_BEATS = 1.5  # ...and fresh for this many (plus half the grace)
HEARTBEAT_GRACE = 1.0
FORGET_POLLER_AFTER = 3600.0  # an expired poller is listed (EXPIRED) this long, then dropped
# A poller's heartbeat document (shown by mpp-admin pollers) outlives its liveness.
INFO_ROUNDS = 3
INFO_GRACE = 5.0


# --------------------------------------------------------------------------- rounds


def round_of(now: float, interval: float) -> int:
    """The round running at ``now``."""
    return math.floor(now / interval)


def round_start(round_: int, interval: float) -> float:
    return round_ * interval


def next_round_start(now: float, interval: float) -> float:
    return round_start(round_of(now, interval) + 1, interval)


def next_probe_in(now: float, interval: float, handled: int | None) -> float:
    """Seconds until a poller that last probed round ``handled`` probes the pool again: at
    once when a later round has started and its deadline has not passed (a cycle that ran
    over into it must not skip it), else at the next round's start."""
    current = round_of(now, interval)
    if current != handled and late_by(current, interval, now) is None:
        return 0.0
    return next_round_start(now, interval) - now


def deadline(interval: float) -> float:
    """Seconds after a round's start at which its tick is forced."""
    return interval * DEADLINE_FRACTION


def deadline_at(round_: int, interval: float) -> float:
    """When round ``round_``'s tick is forced."""
    return round_start(round_, interval) + deadline(interval)


def late_by(round_: int, interval: float, now: float) -> float | None:
    """How long after its start a round probed at ``now`` was probed, if past its deadline."""
    late = now - round_start(round_, interval)
    return late if late > deadline(interval) else None


def observation_ttl(interval: float) -> float:
    """How long a round's observations and the probe metrics are kept."""
    return OBSERVATION_ROUNDS * interval + OBSERVATION_GRACE


def pool_heartbeat_ttl(interval: float) -> float:
    """How long a poller counts as a pool's member after recording a round of it."""
    return POOL_HEARTBEAT_ROUNDS * interval + POOL_HEARTBEAT_GRACE


def rounds_behind(last_round: int, interval: float, now: float) -> int:
    return round_of(now, interval) - last_round


def is_stale(last_round: int, interval: float, now: float) -> bool:
    """Whether no poller is ticking a pool: its last committed round is too far behind, or
    ahead of the clock (numbered under another interval, or Redis time went back after a Redis
    failover): no commit is landing either way."""
    behind = rounds_behind(last_round, interval, now)
    return behind > STALE_ROUNDS or behind < -1


# --------------------------------------------------------------------------- liveness


def heartbeat_cadence(intervals: Iterable[float]) -> float:
    """How often a poller heartbeats: at every round start of any pool, at most HEARTBEAT_IDLE."""
    return min([HEARTBEAT_IDLE, *intervals])


def heartbeat_ttl(cadence: float) -> float:
    """How long a heartbeat keeps its poller live."""
    return LIVE_BEATS * cadence + HEARTBEAT_GRACE


def info_ttl(intervals: Iterable[float]) -> float:
    """How long a poller's heartbeat document is kept (for mpp-admin pollers)."""
    return INFO_ROUNDS * max([*intervals, 0.0]) + INFO_GRACE


def is_live(expiry: float, now: float) -> bool:
    return expiry > now


def is_fresh(expiry: float, now: float, cadence: float) -> bool:
    """Whether a heartbeat valid until ``expiry`` was written recently enough that its poller
    is not about to expire (it missed at most FRESH_BEATS heartbeats)."""
    age = now - (expiry - heartbeat_ttl(cadence))
    return age <= FRESH_BEATS * cadence + HEARTBEAT_GRACE / 2


# --------------------------------------------------------------------------- assignment


def score(pool: str, poller: str) -> int:
    """The rendezvous weight of a poller for a pool (the same on every machine)."""
    digest = hashlib.blake2b(f"{pool}\0{poller}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(pool: str, pollers: Iterable[str], k: int) -> tuple[str, ...]:
    """The K pollers (all for K = 0, or when there are fewer) with the highest weight."""
    return _assign(pool, frozenset(pollers), k)


# Pure, so memoised: a poller assigns every pool at every round start, over pollers that seldom
# change (a hash per pool and poller each time was some 4 % of a poller's CPU at 1,000 pools).
@functools.lru_cache(maxsize=1 << 16)
def _assign(pool: str, pollers: frozenset[str], k: int) -> tuple[str, ...]:
    ranked = sorted(pollers, key=lambda p: (-score(pool, p), p))
    return tuple(ranked if k <= 0 else ranked[:k])


def candidates(beats: Mapping[str, float], now: float, cadence: float, me: str = "") -> list[str]:
    """The pollers a pool is assigned over: the fresh ones (``me`` always, being alive), or
    when none is fresh the live ones, so a pool has an observer while any poller lives."""
    fresh = [p for p, expiry in beats.items() if is_fresh(expiry, now, cadence)]
    if me:
        fresh.append(me)
    return fresh or [p for p, expiry in beats.items() if is_live(expiry, now)]


def observes(assigned_now: bool, assigned_before: bool) -> bool:
    """A poller observes a pool while assigned, and for one round after it lost the assignment
    (a poller whose view is behind may still count on it)."""
    return assigned_now or assigned_before


def under_observed(
    pools: Mapping[str, int], observed: Mapping[str, int], live: int
) -> dict[str, tuple[int, int]]:
    """Pools (name -> K) observed by fewer pollers than they want: name -> (observers, wanted).
    K = 0 wants every live poller; K above the live pollers wants them all."""
    out = {}
    for name, k in sorted(pools.items()):
        wanted = live if k <= 0 else min(k, live)
        seen = observed.get(name, 0)
        if seen < max(wanted, 1):
            out[name] = (seen, max(wanted, 1))
    return out
