"""Who takes writes, who takes reads and with what weight: the one routing decision.

This module is pure (no I/O, no clock, no logging). ``route(pool, now, stale)`` is the only
place that turns a pool's stored state and its operators' overrides into a routing decision;
the agent's replies to HAProxy (agent_protocol.py), ``mpp-admin is-active``, ``report``,
``list``, ``pools`` and the override refusal of ``state.set_override`` all read it, so no two
views can disagree.

The rules, in the order they apply:

1. **Overrides.** An unexpired override replaces the node's state (and its status, when it
   gives one). An expired override is ignored, exactly as if it had been released.
2. **One writer.** At most one node of a pool takes writes. A node overridden to ACTIVE *pins*
   the writer: every other node that would be ACTIVE (by the state machine, or by a second
   ACTIVE override that a race let through) answers as a STANDBY with the reason
   ``ACTIVE, writes pinned to <node> by override``. With several ACTIVE overrides the oldest one
   (earliest ``set_at``, then priority order) wins; with several ACTIVE nodes and no override the
   first in priority order wins (the state machine never makes two; this only guards bad data).
3. **Writes.** The one node whose answered state is ACTIVE takes writes, whatever its status
   (OK_WARN is MPP's "last node standing").
4. **Reads.** A *healthy STANDBY* (answered state STANDBY, status OK or OK_WARN) takes reads.
   The writer takes reads too, but only when the pool has no healthy STANDBY. STANDBY with
   status FAIL takes neither (``up drain``); UNKNOWN and FAILED_* are down.
5. **Weight** of a reader: by its request level R (``request_level(R, M)``): OK 100%,
   OK INFO 75%, OK WARN 50%, OK CRITICAL 25%, FAIL CRITICAL 25% (never 0%: HAProxy shows 0%
   as DRAIN, which would contradict taking reads).
6. **Catch-up gate.** A writer that became ACTIVE before applying what it had received
   (``NodeState.catchup_until`` set by the tick, not yet passed) takes no writes: it answers
   as ACTIVE with ``catching up (<n> behind)`` and takes reads as a STANDBY would. Past the
   time, writes open even if the tick has not said so yet. An ACTIVE override is not gated:
   the operator pinned the writer.
7. **Degraded.** When no other node could take over if the ACTIVE failed now
   (``candidates.degraded``), the writer's reason says ``degraded: no failover candidate``
   and the decision carries the full reason (``PoolRoute.degraded``).
8. **Staleness** (the caller knows it: the agent's snapshot is old, or the pollers stopped
   committing) changes no decision: the last known decision stands, marked stale. Except:
9. **Stale writer.** With the pool setting ``stale_writer`` = ``drain``, a stale view stops
   writes from the earliest moment the pollers could have failed the writer over without it
   (``earliest_failover``: the writer's remaining failing rounds to M after the last committed
   round, at most M x interval after that commit), less a ``lead`` (the agent's HAProxy
   agent-inter, so that HAProxy acts on it in time): the writer then takes none (``up drain``),
   with the reason ``stale: writes stopped to avoid two writers``. Reads are unchanged. A fresh
   view gives the writer back at once. With ``keep`` (the default) rule 8 stands.

10. **Switchover.** While a switchover is in progress (``PoolState.switchover``) its source
    takes no writes: it answers ``rw`` with ``down #switchover to <target>`` (``writes_closed``:
    HAProxy marks it down and closes its sessions) and takes reads as a STANDBY would. The
    target stays a STANDBY until the tick moves the writer. Past the switchover's deadline the
    source takes writes again, whether or not a poller has abandoned it yet.
11. **Pause.** While the pool is paused (``PoolState.pause``, not expired) the decision is
    the held state's, every reason starting with ``paused: <reason>``.
12. **Fence.** With the pool setting ``fence`` = ``read_only``, the pollers keep MySQL's
   ``read_only`` in line with this decision (``fencing.py``): every node that would take no
   writes by rules 1 to 11 is set ``read_only=ON``, and the one that would take them is set
   ``read_only=OFF``. That node takes writes only once its last stored observation (or the
   poller that opened it) says ``read_only=OFF``; until then it answers as ACTIVE with
   ``fenced: read_only until the pollers open writes`` and takes reads as a STANDBY would
   (``NodeRoute.awaits_fence``; ``PoolRoute.write_target`` is that node in either case). So
   "takes no writes by rules 1 to 11" always means "kept read_only by the pollers": a rule that
   stops a node's writes gets it fenced too.

The pool status FAIL changes nothing here (the state machine leaves no ACTIVE node then); the
reason says ``pool FAIL``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mpp_agent.candidates import degraded
from mpp_agent.model import (
    Fence,
    NodeId,
    NodeState,
    PoolState,
    PoolStatus,
    StaleWriter,
    State,
    Status,
    request_level,
)
from mpp_agent.rounds import round_start

WRITES_STOPPED = "stale: writes stopped to avoid two writers"
AWAITS_FENCE = "fenced: read_only until the pollers open writes"

# Weight (percent of the server's configured weight) of each request level on the read backend.
LEVEL_WEIGHTS = {
    "OK": 100,
    "OK INFO": 75,
    "OK WARN": 50,
    "OK CRITICAL": 25,
    "FAIL CRITICAL": 25,
}


@dataclass(frozen=True)
class NodeRoute:
    """The decision for one node: what it answers as, whether it is up, takes writes, takes
    reads (and with what weight), and why, as short reason parts."""

    node: NodeId
    state: State  # the state it answers as (override and writer pinning applied)
    status: Status
    level: str  # the request level label, e.g. "OK INFO"
    is_up: bool  # not UNKNOWN or FAILED_*: HAProxy keeps it up (ready or drained)
    takes_writes: bool
    takes_reads: bool
    weight: int  # percent; meaningful when it takes reads
    why: tuple[str, ...]
    # rule 10: the writer of a switchover in progress, whose write sessions must close
    writes_closed: bool = False
    # Rule 12: the node would take writes but has not reported read_only=OFF yet.
    awaits_fence: bool = False

    @property
    def is_write_target(self) -> bool:
        """Whether the pollers' fencing keeps this node writable (rule 12): it takes writes,
        or would once it reports read_only=OFF."""
        return self.takes_writes or self.awaits_fence

    @property
    def reason(self) -> str:
        return "; ".join(self.why)


@dataclass(frozen=True)
class PoolRoute:
    """The decision for a whole pool, nodes in priority order."""

    pool: str
    nodes: tuple[NodeRoute, ...]
    stale: bool = False
    # the earliest future override expiry: when this decision must be taken again
    next_expiry: float | None = None
    writes_stopped: bool = False  # rule 9
    degraded: str | None = None  # why no node could take over if the ACTIVE failed now

    @property
    def writer(self) -> NodeRoute | None:
        return next((n for n in self.nodes if n.takes_writes), None)

    @property
    def readers(self) -> tuple[NodeRoute, ...]:
        return tuple(n for n in self.nodes if n.takes_reads)

    @property
    def write_target(self) -> NodeId | None:
        """The one node the fencing leaves writable (rule 12); every other is kept read_only."""
        return next((n.node for n in self.nodes if n.is_write_target), None)

    def find(self, node: NodeId) -> NodeRoute | None:
        return next((n for n in self.nodes if n.node == node), None)


@dataclass(frozen=True)
class _Answered:
    """A node after rule 1 (overrides), before the writer is chosen."""

    node: NodeState
    state: State
    status: Status
    override_note: str
    pinned: bool  # ACTIVE by an unexpired override

    @property
    def is_healthy_standby(self) -> bool:
        return self.state is State.STANDBY and self.status.is_ok


def _apply_override(node: NodeState, now: float) -> _Answered:
    """Rule 1."""
    override = node.override
    if override is None or override.is_expired(now):
        return _Answered(node, node.state, node.status, "", False)
    status = override.status if override.status is not None else node.status
    note = f"override: {override.reason or 'no reason'} by {override.set_by or 'unknown'}"
    return _Answered(node, override.state, status, note, override.state is State.ACTIVE)


def _choose_writer(answered: list[_Answered]) -> int | None:
    """Rule 2: the index of the oldest ACTIVE override, else of the first ACTIVE node."""
    pinned = [i for i, a in enumerate(answered) if a.pinned]
    if pinned:
        return min(pinned, key=lambda i: (_set_at(answered[i].node), i))
    return next((i for i, a in enumerate(answered) if a.state is State.ACTIVE), None)


def _set_at(node: NodeState) -> float:
    set_at = node.override.set_at if node.override is not None else 0.0
    return set_at if math.isfinite(set_at) else 0.0


def _demote(answered: list[_Answered], writer: int | None) -> list[_Answered]:
    """Rule 2: every other would-be ACTIVE node answers as a STANDBY."""
    if writer is None:
        return answered
    chosen = answered[writer]
    if chosen.pinned:
        note = f"ACTIVE, writes pinned to {chosen.node.node} by override"
    else:
        note = f"ACTIVE, writes stay with {chosen.node.node} (first in priority order)"
    return [
        _Answered(a.node, State.STANDBY, a.status, note, False)
        if i != writer and a.state is State.ACTIVE
        else a
        for i, a in enumerate(answered)
    ]


def earliest_failover(pool: PoolState) -> float | None:
    """The earliest Redis time at which the pollers could commit the failover of the pool's
    writer without anyone seeing it: the writer at R failing every round from the next one on
    reaches M in round ``last_round + 1 + (M - 1 - R)``, committed no earlier than that round
    starts. At most M x interval after the commit of ``last_round``; None without a writer."""
    writer = next((n for n in pool.nodes if n.state is State.ACTIVE), None)
    if writer is None:
        return None
    rounds_left = max(0, pool.max_requests - 1 - writer.r)
    return round_start(pool.last_round + 1 + rounds_left, pool.interval)


def stops_writes(pool: PoolState, now: float, stale: bool, lead: float = 0.0) -> bool:
    """Rule 7: a stale view of a ``drain`` pool stops writes ``lead`` seconds before the
    earliest failover (the time its readers need to act on the answer) and from then on."""
    if not stale or pool.stale_writer is not StaleWriter.DRAIN:
        return False
    deadline = earliest_failover(pool)
    return deadline is not None and now >= deadline - lead


def route(pool: PoolState, now: float, stale: bool = False, lead: float = 0.0) -> PoolRoute:
    """The routing decision for every node of ``pool`` at ``now`` (Redis server time, which
    expires overrides and dates rounds); ``stale`` is the caller's knowledge that its view of
    the pool may be old (not refreshed, or no commit for rounds); ``lead``: how long before the
    earliest failover a stale view stops writes (rule 9; the agent's HAProxy agent-inter)."""
    answered = [_apply_override(n, now) for n in pool.nodes]
    writer = _choose_writer(answered)
    answered = _demote(answered, writer)
    gated = writer is not None and is_catching_up(answered[writer], now)
    closing = writer is not None and is_switching_away(pool, answered[writer], now)
    stopped = stops_writes(pool, now, stale, lead)
    # rule 12: a writer the fencing has not opened reads as a STANDBY, as a gated one does
    fenced = (
        writer is not None
        and not (gated or stopped or closing)
        and awaits_fence(pool, answered[writer].node)
    )
    has_replica = any(a.is_healthy_standby for a in answered) or gated or closing or fenced
    lost = degraded(pool, now)
    nodes = tuple(
        _node_route(
            pool,
            a,
            i == writer,
            has_replica,
            gated and i == writer,
            lost is not None,
            stopped,
            closing and i == writer,
        )
        for i, a in enumerate(answered)
    )
    if closing and writer is not None:
        nodes = switching_away(pool, nodes, writer)
    if pool.is_paused(now):
        nodes = tuple(paused(pool, n) for n in nodes)
    return PoolRoute(pool.name, nodes, stale, next_expiry(pool, now), stopped, lost)


def is_switching_away(pool: PoolState, a: _Answered, now: float) -> bool:
    """Rule 10: the writer is the source of the switchover in progress (not an override).
    Past its deadline the source writes again even if no poller has ticked to abandon it."""
    record = pool.switchover
    return (
        record is not None
        and record.source == a.node.node
        and not a.pinned
        and now < record.deadline
    )


def switching_away(
    pool: PoolState, nodes: tuple[NodeRoute, ...], writer: int
) -> tuple[NodeRoute, ...]:
    """Rule 10: the source takes no writes, its write sessions close, it reads as a STANDBY."""
    assert pool.switchover is not None
    source = nodes[writer]
    closed = replace(
        source,
        takes_writes=False,
        takes_reads=source.status.is_ok,
        writes_closed=True,
        why=(f"switchover to {pool.switchover.target}", *source.why),
    )
    return (*nodes[:writer], closed, *nodes[writer + 1 :])


def paused(pool: PoolState, node: NodeRoute) -> NodeRoute:
    """Rule 11: the held decision, said to be paused."""
    assert pool.pause is not None
    return replace(node, why=(f"paused: {pool.pause.reason}", *node.why))


def awaits_fence(pool: PoolState, node: NodeState) -> bool:
    """Rule 12: under ``fence`` = ``read_only`` a writer takes writes only once it has been
    seen (or set) with read_only=OFF."""
    details = node.replication
    return pool.fence is Fence.READ_ONLY and (details is None or details.read_only is not False)


def is_catching_up(a: _Answered, now: float) -> bool:
    """Rule 6: the writer's catch-up gate holds (not for an ACTIVE override)."""
    until = a.node.catchup_until
    return not a.pinned and until is not None and math.isfinite(until) and now < until


def catching_up_text(node: NodeState) -> str:
    unapplied = node.replication.unapplied if node.replication else None
    return f"catching up ({unapplied if unapplied is not None else '?'} behind)"


def _node_route(
    pool: PoolState,
    a: _Answered,
    is_writer: bool,
    has_replica: bool,
    gated: bool = False,
    lost: bool = False,
    stopped: bool = False,
    closing: bool = False,
) -> NodeRoute:
    level = request_level(a.node.requests, pool.max_requests)
    # rule 4: the writer reads only when no replica can; a gated writer reads as a STANDBY
    reads = not has_replica if is_writer else a.is_healthy_standby
    writable = is_writer and not (gated or stopped or closing)
    fenced = writable and awaits_fence(pool, a.node)
    if gated or fenced:
        reads = a.status.is_ok
    why = [f"{a.state} {a.status} level={level.replace(' ', '_')}"]
    if fenced:
        why.insert(0, AWAITS_FENCE)
    if stopped and is_writer:
        why.insert(0, WRITES_STOPPED)
    if gated:
        why.insert(0, catching_up_text(a.node))
    if pool.status is PoolStatus.FAIL:
        why.append("pool FAIL")
    if a.override_note:
        why.append(a.override_note)
    if lost and is_writer:
        why.append("degraded: no failover candidate")
    return NodeRoute(
        node=a.node.node,
        state=a.state,
        status=a.status,
        level=level,
        is_up=a.state in (State.ACTIVE, State.STANDBY),
        takes_writes=writable and not fenced,
        takes_reads=reads,
        weight=LEVEL_WEIGHTS[level],
        why=tuple(why),
        awaits_fence=fenced,
    )


def next_expiry(pool: PoolState, now: float) -> float | None:
    """The earliest future override expiry in a pool (when its decision must be re-taken)."""
    times = [
        n.override.expires_at
        for n in pool.nodes
        if n.override is not None and n.override.expires_at is not None
        if n.override.expires_at > now and math.isfinite(n.override.expires_at)
    ]
    # A catch-up gate that times out changes the decision too.
    times += [
        n.catchup_until
        for n in pool.nodes
        if n.catchup_until is not None and n.catchup_until > now and math.isfinite(n.catchup_until)
    ]
    # So do the end of a switchover and of a pause.
    ends = [pool.switchover.deadline if pool.switchover else None]
    ends.append(pool.pause.until if pool.pause else None)
    times += [t for t in ends if t is not None and t > now and math.isfinite(t)]
    return min(times, default=None)
