"""The planned switchover as a pure multi-round rule: when it may start, and what each tick does.

A switchover moves writes from the ACTIVE (the *source*) to a healthy STANDBY (the *target*)
with no acknowledged write lost and never two writers (docs/rules.md, "Planned switchover"):

1. ``start`` (mpp-admin switchover) stores a ``Switchover`` in the pool. From that commit on
   routing takes the source's writes away (``rw`` answers ``down``, so HAProxy closes its
   sessions) and, under fencing, the pollers make it read_only.
2. Every tick then asks ``progress``: the first round whose probes all started after that
   commit reads the source's binlog position; a later round that reads the same position
   shows that no write reached the source for a whole round while it was drained. Once the
   target has applied that position, the tick moves the writer (``FLIP``, one atomic change).
3. The target failing, the source's position not being readable, the source no longer being
   ACTIVE, or the deadline passing abandons it (``ABANDON``): the source takes writes again.

Nothing here does I/O or reads a clock; ``state.tick`` applies the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from mpp_agent.model import (
    Failback,
    NodeId,
    Observation,
    Outcome,
    PoolState,
    PoolStatus,
    State,
    Switchover,
)
from mpp_agent.positions import missing
from mpp_agent.routing import route


class SwitchoverRefused(Exception):
    """A switchover that cannot start; the message says why and what to do."""


class Step(StrEnum):
    WAIT = "wait"  # keep draining (the record may carry a newly read position)
    FLIP = "flip"  # move the writer now
    ABANDON = "abandon"  # give the source its writes back


@dataclass(frozen=True)
class Progress:
    """What one tick does with the switchover in progress, and the event text (or "")."""

    step: Step
    switchover: Switchover | None
    text: str = ""


def first_round_after(now: float, interval: float) -> int:
    """The first round that starts strictly after ``now``: all its probes follow ``now``."""
    return int(now // interval) + 1


def choose_target(pool: PoolState, to: NodeId | None) -> NodeId:
    """The node writes move to: ``to``, or the first healthy STANDBY in priority order."""
    if to is not None:
        return to
    for n in pool.nodes:
        if n.state is State.STANDBY and n.status.is_ok:
            return n.node
    raise SwitchoverRefused(f"Pool {pool.name} has no healthy STANDBY to switch over to.")


def start(
    pool: PoolState, to: NodeId | None, now: float, timeout: float, by: str = ""
) -> Switchover:
    """The switchover to store, or SwitchoverRefused saying why it cannot start now."""
    if pool.switchover is not None:
        current = pool.switchover
        raise SwitchoverRefused(
            f"A switchover of pool {pool.name} from {current.source} to {current.target} "
            "is already in progress."
        )
    if pool.is_paused(now):
        raise SwitchoverRefused(f"Pool {pool.name} is paused: resume it first.")
    if pool.status is not PoolStatus.OK:
        raise SwitchoverRefused(
            f"Pool {pool.name} status is {pool.status}: recover the pool first."
        )
    if any(n.override is not None and not n.override.is_expired(now) for n in pool.nodes):
        raise SwitchoverRefused(
            f"Pool {pool.name} has overrides in place: release them first (the override "
            "decides what the agent answers, not the switchover)."
        )
    source = next((n for n in pool.nodes if n.state is State.ACTIVE), None)
    writer = route(pool, now).writer
    if source is None or writer is None or writer.node != source.node:
        raise SwitchoverRefused(
            f"Pool {pool.name} has no ACTIVE node taking writes to switch over from."
        )
    target = pool.find(choose_target(pool, to))
    if target is None:
        raise SwitchoverRefused(f"Server {to} is not a member of pool {pool.name}.")
    if target.node == source.node:
        raise SwitchoverRefused(f"Server {target.node} is already ACTIVE in pool {pool.name}.")
    if target.state is not State.STANDBY or not target.status.is_ok or target.r > 0:
        raise SwitchoverRefused(
            f"Server {target.node} is {target.state}/{target.status} (R={target.r}): only a "
            "healthy STANDBY can take over (mpp-admin failover --to promotes any node)."
        )
    primary = pool.primary
    if pool.failback is Failback.AUTO and primary is not None and target.node != primary.node:
        raise SwitchoverRefused(
            f"Pool {pool.name} has --failback auto: the PRIMARY {primary.node} would take "
            f"writes back from {target.node} within two rounds. Set --failback manual first "
            f"(mpp-admin pool apply {pool.name} ... --failback manual)."
        )
    if not 0 < timeout <= 86400:
        raise SwitchoverRefused(f"timeout must be more than 0 and at most 86400 s, not {timeout}.")
    return Switchover(
        source=source.node,
        target=target.node,
        started_at=now,
        deadline=now + timeout,
        first_round=first_round_after(now, pool.interval),
        requested_by=by,
    )


def progress(
    before: PoolState,
    after: PoolState,
    observations: Mapping[NodeId, Observation],
    now: float,
) -> Progress:
    """What this tick does with ``before.switchover``: ``before`` is the pool as the tick
    found it, ``after`` as the rules left it, ``observations`` this round's verdicts."""
    record = before.switchover
    assert record is not None
    source, target = after.find(record.source), after.find(record.target)
    if now >= record.deadline:
        waited = "the source's position to hold" if record.position is None else (
            f"{record.target} to apply {record.position or 'the position'}"
        )  # fmt: skip
        timeout = record.deadline - record.started_at
        return abandon(f"timeout ({timeout:g}s) passed waiting for {waited}")
    if source is None or source.state is not State.ACTIVE:
        state = "removed" if source is None else source.state
        return abandon(f"the source {record.source} is no longer ACTIVE ({state})")
    if target is None or target.state is not State.STANDBY or not target.status.is_ok:
        state = "removed" if target is None else f"{target.state}/{target.status}"
        return abandon(f"the target {record.target} is not a healthy STANDBY ({state})")
    seen_target = observations.get(record.target)
    if seen_target is not None and seen_target.outcome in (Outcome.CONNECT, Outcome.REQUEST):
        return abandon(f"the target {record.target} failed: {seen_target.message}")
    seen_source = observations.get(record.source)
    if seen_source is None or seen_source.is_abstained or seen_target is None:
        return Progress(Step.WAIT, record)  # nobody could judge: no information this round
    if not seen_source.is_healthy or seen_source.replication is None:
        why = seen_source.message or "no replication values"
        return abandon(f"the position of {record.source} cannot be read: {why}")
    if before.last_round + 1 < record.first_round:
        return Progress(Step.WAIT, record)  # this round may have been probed before the drain
    position = seen_source.replication.binlog
    if record.position is None:
        return Progress(
            Step.WAIT,
            replace(record, position=position),
            f"{record.source} drained at position {position or '(empty)'}",
        )
    if position != record.position:
        return Progress(
            Step.WAIT,
            replace(record, position=position),
            f"{record.source} was still written ({record.position or '(empty)'} -> "
            f"{position or '(empty)'}); waiting for a round without writes",
        )
    details = seen_target.replication
    if details is None:
        return abandon(f"the position of {record.target} cannot be read")
    lacking = missing(position, details.applied, details.binlog)
    if lacking is None:
        return abandon(
            f"positions of {record.source} ({position}) and {record.target} are not comparable"
        )
    if lacking or details.caught_up is False:
        return Progress(Step.WAIT, record)
    return Progress(
        Step.FLIP,
        None,
        f"{record.target} has applied {position or 'everything'}: it takes writes, "
        f"{record.source} is STANDBY",
    )


def abandon(why: str) -> Progress:
    return Progress(Step.ABANDON, None, f"abandoned: {why}; the source takes writes again")
