"""The poller: probe every node, record what was seen, and tick each pool once per round.

Rounds are cut by Redis server time (on a Redis Cluster the clock of the pool's shard): round
``k`` of a pool starts at ``k x interval`` (``rounds.py`` holds that arithmetic). Each pool is
observed by K live pollers, its ``observers`` setting, chosen by rendezvous hashing over the
pollers' heartbeats (``rounds.assign`` over ``rounds.candidates``; a poller pinned by ``--pool``
observes its pools regardless). At the start of a round each observer probes the
pool's nodes (all its pools' nodes at once, concurrently, each node once however many pools it
is in) and records its observations for that round. The tick of round ``k`` is committed by
whichever poller first sees that every assigned observer has recorded it, or that the round's
deadline has passed; the commit script refuses a round that is not newer than the last
committed one, so the request counter advances once per interval whether 1 or 5 pollers run.
The tick itself merges the observers' observations by majority (``merge_observations``) and runs
the pure state machine.

Each pool's probe timeouts are fitted to its interval (``timeouts.py``), so one poller serves a
0.5 s and a 30 s pool at once; a pool it cannot serve is reported (a WARNING, the heartbeat's
``unserved``), never skipped silently. A probe that blames the poller, or a round in which none
of its checkpoints answers, is an abstention (the node is not judged): said once in a WARNING
when it starts and once when it ends, and listed in the heartbeat's ``abstentions``.

The log is quiet in steady state: the cycle's sentence is INFO only when something changed (a
transition, an abstention starting or ending, a late or skipped round, a pool no longer or again
served), DEBUG otherwise, with an INFO summary once a minute.

Redis round trips per cycle grow with the number of pools due, never with nodes.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import gevent
import gevent.lock
import gevent.pool

from mpp_agent.adoption import Adoption, Seen, adoption, backwards_text, went_backwards
from mpp_agent.candidates import degraded
from mpp_agent.codec import flat_dict
from mpp_agent.daemon import OnChange
from mpp_agent.fencer import Fencer
from mpp_agent.model import (
    NodeId,
    Observation,
    Outcome,
    PoolHead,
    PoolState,
    PoolStatus,
    State,
    connect_prefix,
    evolve,
)
from mpp_agent.pacing import paced
from mpp_agent.poller_metrics import PollerMetrics
from mpp_agent.probe import (
    Checkpoint,
    FenceAccount,
    KeptConnections,
    LoginSlots,
    NodeMetrics,
    ProbeResult,
    ProbeSettings,
    checkpoints_down,
    failure_text,
    log_unexpected,
    probe_checkpoint,
    with_max_lag,
)
from mpp_agent.rounds import (
    HEARTBEAT_IDLE,
    assign,
    candidates,
    deadline,
    deadline_at,
    heartbeat_cadence,
    heartbeat_ttl,
    info_ttl,
    late_by,
    next_probe_in,
    observation_ttl,
    observes,
    pool_heartbeat_ttl,
    round_of,
    round_start,
)
from mpp_agent.state import expire_overrides, tick
from mpp_agent.store import (
    REDIS_DOWN_ERRORS,
    BadKey,
    Commit,
    CommitRefusal,
    RoundRecord,
    Store,
    UnknownPool,
)
from mpp_agent.timeouts import (
    DEFAULT_PROBE_TIMEOUT,
    Timeouts,
    fit,
    min_interval,
    unserved_reason,
)

log = logging.getLogger("mpp.poller")

COMMIT_RETRIES = 3
MAX_SLEEP = 1.0  # re-read pool settings at least this often
REDIS_RETRY_DELAY = 1.0
ALREADY_COMMITTED = "already committed"  # a skipped commit that is the normal case
SUMMARY_EVERY = 60.0  # seconds between the steady state's INFO summaries


DEFAULT_LOGINS = 50  # logins under way at once (mpp-poller --max-logins)


@dataclass(frozen=True)
class PollerSettings:
    poller_id: str
    probe: ProbeSettings  # its connect and read timeouts are upper bounds
    pools: tuple[str, ...] = ()  # empty: every pool
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT  # upper bound on one whole probe
    concurrency: int = 500
    logins: int = DEFAULT_LOGINS  # at most this many logins under way at once (LoginSlots)
    kept_connections: int = 1000  # at most this many kept between rounds (file descriptors)
    checkpoints: tuple[Checkpoint, ...] = ()
    fence: FenceAccount | None = None  # --fence-user: for pools with fence = read_only

    @property
    def limits(self) -> Timeouts:
        """The operator's upper bounds; each pool's timeouts are fitted below them."""
        return Timeouts(self.probe.connect_timeout, self.probe.read_timeout, self.probe_timeout)

    @property
    def is_pinned(self) -> bool:
        """A poller given ``--pools`` probes exactly those, every round: it takes no part in
        the assignment of pools to observers."""
        return bool(self.pools)


# --------------------------------------------------------------------------- pure parts


def merge_observations(
    reports: Mapping[str, Mapping[NodeId, Observation]],
) -> dict[NodeId, Observation]:
    """Corroborate the pollers' views of a round.

    Abstentions are not votes: among the pollers that judged a node, it counts as failing only
    when more than half of them report an error (a tie is healthy), and the error reported is
    the majority's among the failing reports. A node every poller abstained on merges into an
    abstention (not evaluated); any abstention is carried as the verdict's ``monitor_note``.
    Nodes nobody observed are left out, so they are not evaluated either. The merged verdict
    carries the replication values read by a poller that gave it (the first such report), and
    is ``unreachable`` when every failing poller could not reach the node at all."""
    by_node: dict[NodeId, list[Observation]] = {}
    for observations in reports.values():
        for node, obs in observations.items():
            by_node.setdefault(node, []).append(obs)
    return {node: merge_node(seen) for node, seen in by_node.items()}


def merge_node(seen: Sequence[Observation]) -> Observation:
    """One node's verdict from every poller's observation of it in a round."""
    abstained = [o for o in seen if o.is_abstained]
    judged = [o for o in seen if not o.is_abstained]
    note = abstention_note(abstained, len(seen))
    if not judged:
        return Observation(Outcome.ABSTAIN, note, monitor_note=note)
    failing = [o for o in judged if not o.is_healthy]
    if 2 * len(failing) <= len(judged):
        details = next((o.replication for o in judged if o.is_healthy and o.replication), None)
        return Observation(Outcome.HEALTHY, monitor_note=note, replication=details)
    counts = Counter((o.outcome, o.message) for o in failing)
    (outcome, message), _ = min(
        counts.items(), key=lambda item: (-item[1], item[0][0] != Outcome.CONNECT, item[0])
    )
    # The replication values are those of a poller that gave the verdict: one consistent read.
    details = next(
        (o.replication for o in failing if (o.outcome, o.message) == (outcome, message)), None
    )
    unreachable = is_unreachable_by_all(failing)
    return Observation(
        outcome, message, monitor_note=note, replication=details, unreachable=unreachable
    )


def is_unreachable_by_all(failing: Sequence[Observation]) -> bool:
    """A failing verdict is ``unreachable`` only when every failing poller could not reach the
    node at all: one that got an answer (1040, a query error) saw what clients see."""
    return all(o.outcome is Outcome.CONNECT and o.unreachable for o in failing)


def abstention_note(abstained: Sequence[Observation], pollers: int) -> str:
    """``monitor cannot check: <the most common reason>``, with how many pollers if not all."""
    if not abstained:
        return ""
    reason, _ = min(Counter(o.message for o in abstained).items(), key=lambda i: (-i[1], i[0]))
    share = "" if len(abstained) == pollers else f" ({len(abstained)} of {pollers} pollers)"
    return f"monitor cannot check{share}: {reason}"


T = TypeVar("T")


def per_node(
    pools: Iterable[PoolState], value_of: Callable[[PoolState], T], tightest: Callable[[T, T], T]
) -> dict[NodeId, T]:
    """Each node's value from its pools (``value_of``), the ``tightest`` where it is in
    several."""
    out: dict[NodeId, T] = {}
    for pool in pools:
        value = value_of(pool)
        for n in pool.nodes:
            out[n.node] = tightest(out[n.node], value) if n.node in out else value
    return out


def node_timeouts(pools: Iterable[PoolState], bounds: Timeouts) -> dict[NodeId, Timeouts]:
    """Each node's probe timeouts: its pools' fitted timeouts, the tightest where it is in
    several (one probe per cycle must end inside every one of their deadlines)."""
    return per_node(pools, lambda pool: fit(pool.interval, bounds), Timeouts.tightest)


def node_keep(pools: Iterable[PoolState]) -> dict[NodeId, float]:
    """How long each node's connection may be kept for its next probes: the shortest
    ``keep_connections`` of its pools (0, a login per probe, where any pool wants that)."""
    return per_node(pools, lambda pool: pool.keep_connections, min)


def pool_observations(
    pool: PoolState, results: Mapping[NodeId, ProbeResult], checkpoints: str | None
) -> dict[NodeId, Observation]:
    """What this poller records for one pool's round: the probe verdicts with the pool's
    ``max_lag`` applied, or an abstention on every node when all its checkpoints failed."""
    if checkpoints is not None:
        return {n.node: Observation.abstain(checkpoints) for n in pool.nodes}
    return {
        n.node: with_max_lag(results[n.node].observation, results[n.node].metrics.lag, pool.max_lag)
        for n in pool.nodes
    }


AbstentionKey = tuple[str, str]  # (pool, node)


def abstention_changes(
    before: Mapping[AbstentionKey, str], after: Mapping[AbstentionKey, str]
) -> tuple[dict[AbstentionKey, str], dict[AbstentionKey, str]]:
    """(started, ended): abstentions new in ``after`` (or with a new reason), and those of
    ``before`` that are over (with the reason they had)."""
    started = {key: why for key, why in after.items() if before.get(key) != why}
    ended = {key: why for key, why in before.items() if key not in after}
    return started, ended


def reason_groups(named: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """``(name, why)`` pairs grouped by reason (reasons sorted, names in the order given)."""
    groups: dict[str, list[str]] = {}
    for name, why in named:
        groups.setdefault(why, []).append(name)
    return sorted(groups.items())


def by_reason(abstentions: Mapping[AbstentionKey, str]) -> list[tuple[str, list[str]]]:
    """Abstentions grouped by reason, each with its ``pool/node`` names: one log line each."""
    ordered = sorted(abstentions.items())
    return reason_groups((f"{pool}/{node}", why) for (pool, node), why in ordered)


def name_list(names: Sequence[str], shown: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``: a log line stays one readable line."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def has_changed(before: PoolState, after: PoolState) -> bool:
    """Whether a tick changed anything an event records: a node's state or status, or the
    pool's status (the same rule that makes a TRANSITION event)."""
    if before.status != after.status:
        return True
    old = {n.node: (n.state, n.status) for n in before.nodes}
    return any(old.get(n.node) != (n.state, n.status) for n in after.nodes)


def replicas_view_news(before: PoolState, after: PoolState) -> list[str]:
    """The WARNING lines of a committed tick about the replicas' view (``state.replicas_view``):
    one when it starts holding a node's failover (or names other replicas), one when it ends.
    Told from the committed change, so the poller that commits it says it, once."""
    was = {n.node: n.replicas_view for n in before.nodes}
    lines = []
    for n in after.nodes:
        old = was.get(n.node)
        if n.replicas_view and n.replicas_view != old:
            lines.append(
                f"pool {after.name}: {n.node} {n.replicas_view}; not failing it over "
                f"(R stays {n.r})"
            )
        elif old and not n.replicas_view:
            lines.append(
                f"pool {after.name}: {n.node}: the replicas' view no longer holds its failover "
                f"(was: {old}); now {n.state}/{n.status} R={n.r}"
            )
    return lines


def lateness(pool: PoolState, round_: int, now: float) -> str | None:
    """Why a round probed at ``now`` is late (its deadline has passed), or None."""
    late = late_by(round_, pool.interval, now)
    if late is None:
        return None
    limit = deadline(pool.interval)
    return f"round {round_} probed {late:.3g}s after it started (deadline {limit:g}s)"


def passed_text(first: int, last: int) -> str:
    """Why rounds ``first`` to ``last`` of a pool were not probed by this poller."""
    which, whose = (
        (f"round {first}", "its") if first == last else (f"rounds {first}-{last}", "their")
    )
    return (
        f"{which} not probed: this poller's previous cycle ran past {whose} deadline "
        "(short of CPU, or held up)"
    )


def describe_pool(pool: PoolState) -> str:
    """One clause of the cycle's log sentence, in MPP's POLL CYCLE terms."""
    active = ", ".join(f"{n.node} ({n.type})" for n in pool.nodes if n.state is State.ACTIVE)
    troubled = [f"{n.node} {n.state}/{n.status} R={n.r}" for n in pool.nodes if n.r > 0]
    text = f"{pool.name} status {pool.status}, ACTIVE: {active or 'NONE'}"
    return text + (f" ({'; '.join(troubled)})" if troubled else "")


STALL_PERIOD = 0.02  # s: how often the loop watch wakes
STALL_SHARE = 0.5  # of a probe's socket timeout: time lost that long voids its timeouts
STALL_SAMPLES = 512  # stalls remembered (the slowest of the last few seconds matters)
QUEUED_SAMPLES = 512  # run-queue readings remembered: one per wake, about 10 s of them


@dataclass(frozen=True)
class Lost:
    """Where the time a poller lost during a probe went (seconds): its login's wait for a
    slot, its event loop's longest stall, its thread's waits for a CPU (in all), and how long
    the probe ran."""

    slot: float = 0.0
    stall: float = 0.0
    starved: float = 0.0
    elapsed: float = 0.0

    def explains(self, limit: float) -> bool:
        """Whether this lost time explains a timeout: the slot's wait and the loop's stall
        reach ``limit`` (half a socket timeout), or the slot's wait and the CPU waits reach
        it and half of the probe's time too (waits of a few milliseconds each add up on any
        busy host: only a poller kept from its CPU half the time cannot tell a slow node)."""
        if self.slot + self.stall >= limit:
            return True
        return self.slot + self.starved >= max(limit, STALL_SHARE * self.elapsed)


class LoopWatch:
    """How late this poller's event loop has run, and how long its thread waited for a CPU.

    A watcher wakes every ``STALL_PERIOD`` and notes how much later than asked it woke
    (``woke``) and, where the system says it, how long the loop's thread has waited in the
    run queue so far (runnable, not running: the host's CPUs were busy with others). A timeout
    measured while the loop stalled, or while its thread waited for a CPU, says how busy the
    poller or its host was, not how slow the node was (``lost``). Pure: the caller passes the
    monotonic times and the readings."""

    def __init__(self) -> None:
        self.last: float | None = None  # when the watcher last woke (None: not watching)
        self.stalls: deque[tuple[float, float]] = deque(maxlen=STALL_SAMPLES)  # (woke at, late)
        # (woke at, seconds the loop's thread had waited for a CPU by then, in all)
        self.queued: deque[tuple[float, float]] = deque(maxlen=QUEUED_SAMPLES)

    def woke(self, now: float, slept: float, queued: float | None = None) -> None:
        if self.last is not None:
            late = now - self.last - slept
            if late > STALL_PERIOD:
                self.stalls.append((now, late))
        self.last = now
        if queued is not None:
            self.queued.append((now, queued))

    def stalled(self, since: float, now: float) -> float:
        """The longest stall of the loop between ``since`` and ``now``; a stall under way (the
        watcher has not woken for longer than it sleeps) counts for what it is so far. 0 when
        nothing watches (a poller driven cycle by cycle, as ``--once`` is)."""
        if self.last is None:
            return 0.0
        ongoing = now - self.last - STALL_PERIOD
        # A stall noted at ``at`` lasted ``late`` before it: it overlaps the span if it ended
        # after ``since``.
        past = (late for at, late in self.stalls if at > since)
        return max(ongoing, *past, 0.0)

    def starved(self, since: float) -> float:
        """How long the loop's thread waited for a CPU from the first reading at or after
        ``since`` to the last one (what came before that reading is not counted: a reading may
        follow ``since`` late); 0 without readings."""
        at = bisect.bisect_left(self.queued, since, key=lambda sample: sample[0])
        if at >= len(self.queued):
            return 0.0
        return self.queued[-1][1] - self.queued[at][1]

    def lost(
        self, since: float, now: float, slot: float = 0.0, started: float | None = None
    ) -> Lost:
        """The time this poller lost itself between ``since`` and ``now`` (its loop's longest
        stall, its thread's waits for a CPU), with what a login waited for a ``slot`` before,
        of a probe that began at ``started`` (``since`` by default)."""
        begun = since if started is None else started
        return Lost(slot, self.stalled(since, now), self.starved(since), now - begun)


class RunQueue:
    """How long the thread that opened it has waited for a CPU in all, in seconds (Linux's
    ``/proc/thread-self/schedstat``, its second field); ``cpu_wait`` says None where the
    system does not say it."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self.fd = None

    def cpu_wait(self) -> float | None:
        if self.fd is None:
            return None
        try:
            return int(os.pread(self.fd, 128, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def is_timeout(observation: Observation) -> bool:
    """A connect-class failure that is a timeout (the hard bound, a connect or a query)."""
    return observation.outcome is Outcome.CONNECT and "timed out" in (observation.message or "")


def voids_timeout(observation: Observation, lost: Lost, bounds: Timeouts) -> bool:
    """Whether a failing observation is a timeout the time the poller lost itself explains
    (its event loop's stall or its wait for a CPU, its login's wait for a slot): then the
    poller abstains rather than fail the node for its own slowness."""
    limit = STALL_SHARE * min(bounds.connect, bounds.read)
    return is_timeout(observation) and lost.explains(limit)


def overload_text(failure: str, lost: Lost, slots: int) -> str:
    """The abstention of a timeout the poller's own lost time explains (``voids_timeout``);
    without the node's name, so the nodes it happened to share one log line."""
    parts = []
    if lost.slot >= STALL_PERIOD:
        parts.append(
            f"the login waited {lost.slot:.2g}s for a free login slot (--max-logins {slots})"
        )
    if lost.stall >= STALL_PERIOD or (not parts and lost.starved < STALL_PERIOD):
        parts.append(f"its event loop stalled {lost.stall:.2g}s")
    if lost.starved >= STALL_PERIOD:
        parts.append(f"it waited {lost.starved:.2g}s for a CPU (its host's CPUs were busy)")
    when = "before" if lost.slot >= STALL_PERIOD else "while"
    why = " and ".join(parts)
    return f"this poller is overloaded: {why} {when} the probe timed out ({failure})"


PROBE_SETTINGS_KEPT = 1024  # distinct (bounds, keep) pairs; a handful in practice

POOLS_SHOWN = 5  # pools described, or named, in one log line; the others are counted


def pools_text(pools: Sequence[PoolState], shown: int = POOLS_SHOWN) -> str:
    """The first ``shown`` of ``pools`` described (``describe_pool``), then how many more:
    a line about a thousand pools stays a line."""
    text = "; ".join(describe_pool(p) for p in pools[:shown])
    more = len(pools) - shown
    return text + (f"; and {more} more pool{'s' if more > 1 else ''}" if more > 0 else "")


def grouped(reasons: Mapping[str, str]) -> list[str]:
    """``pool -> why`` as one clause per reason, naming at most ``POOLS_SHOWN`` pools each."""
    groups = reason_groups(sorted(reasons.items()))
    return [f"{name_list(names, POOLS_SHOWN)} {why}" for why, names in groups]


def is_steady(pool: PoolState) -> bool:
    """Status OK, an ACTIVE node, and no node failing (every R at 0)."""
    healthy = pool.status is PoolStatus.OK and all(n.r == 0 for n in pool.nodes)
    return healthy and any(n.state is State.ACTIVE for n in pool.nodes)


def deadline_sentence(committed: Mapping[str, PoolState], rounds: Mapping[str, int]) -> str:
    """The one log line of the rounds committed at one deadline: each pool described, up to
    ``POOLS_SHOWN`` of them, then how many more."""
    names = sorted(committed)
    numbers = sorted({rounds[n] for n in names})
    which = ", ".join(str(r) for r in numbers)
    shown = pools_text([committed[n] for n in names])
    return f"round{'s' if len(numbers) > 1 else ''} {which} deadline: committed {shown}"


# --------------------------------------------------------------------------- the poller


@dataclass(frozen=True)
class RoundTick:
    """A round of a pool ticked and ready to commit: the pool as read, the round's merged
    observations, and the compare-and-set that writes the tick's outcome over it."""

    name: str
    round: int
    pool: PoolState
    observations: Mapping[NodeId, Observation]
    commit: Commit


@dataclass
class CycleReport:
    """What one cycle did, for its log line and for tests."""

    rounds: dict[str, int] = field(default_factory=dict)
    committed: dict[str, PoolState] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    probe_seconds: float = 0.0
    pools: list[PoolHead] = field(default_factory=list)  # every pool this poller polls
    read: list[PoolState] = field(default_factory=list)  # those read in full (observed)
    unserved: dict[str, str] = field(default_factory=dict)  # pool -> why it is not polled
    late: dict[str, str] = field(default_factory=dict)  # pool -> why its round is late
    passed: dict[str, tuple[int, int]] = field(default_factory=dict)  # pool -> the first and
    # last of the rounds that passed since this poller's previous cycle, none probed by it
    changed: list[str] = field(default_factory=list)  # pools whose tick made a transition
    abstaining: int = 0  # nodes (per pool) this poller abstains on after this cycle
    due: list[str] = field(default_factory=list)  # pools whose new round started (observed or not)
    news: bool = False  # an abstention started or ended, or the unserved pools changed

    @property
    def is_notable(self) -> bool:
        """Whether the cycle's sentence is worth an INFO line (else DEBUG: quiet steady state)."""
        quiet_skip = all(why.endswith(ALREADY_COMMITTED) for why in self.skipped.values())
        return bool(self.changed or self.late or self.passed or self.news or not quiet_skip)

    def sentence(self) -> str:
        """The cycle in one line, whatever the number of pools: the pools committed (those
        whose tick made a transition first) described up to ``POOLS_SHOWN``, the others
        named up to that many per reason, and counted."""
        changed = set(self.changed)
        committed = sorted(self.committed.values(), key=lambda p: (p.name not in changed, p.name))
        parts = [f"committed {pools_text(committed)}"] if committed else []
        waiting = {name: "waiting for the other pollers" for name in self.deferred}
        parts += grouped(waiting) + grouped(self.skipped)
        parts += grouped({name: f"late: {why}" for name, why in self.late.items()})
        parts += grouped({name: passed_text(*rounds) for name, rounds in self.passed.items()})
        parts += grouped({name: f"not served: {why}" for name, why in self.unserved.items()})
        if self.abstaining:
            parts.append(f"abstaining on {self.abstaining} node(s)")
        return f"probed in {self.probe_seconds:.3f}s; " + "; ".join(parts)


@dataclass
class CycleSummary:
    """The quiet cycles since the last summary line, counted for that line."""

    since: float  # monotonic
    cycles: int = 0
    committed: int = 0

    def add(self, report: CycleReport, now: float) -> str | None:
        """Count a cycle; the summary line when it is due (then start counting afresh)."""
        self.cycles += 1
        self.committed += len(report.committed)
        if now - self.since < SUMMARY_EVERY:
            return None
        # The pools that need a look first; the steady ones are counted past POOLS_SHOWN.
        ranked = sorted((is_steady(p), p.name, p) for p in report.read)
        pools = [p for _, _, p in ranked]
        steady = sum(flag for flag, _, _ in ranked)
        observed = "" if len(pools) >= len(report.pools) else f"{len(pools)} observed here, "
        fleet = (
            f"{len(report.pools)} pools, {observed}{steady} steady "
            "(status OK, an ACTIVE, no node failing)"
        )
        pools_said = f"{fleet}: {pools_text(pools)}" if pools else fleet
        if not report.pools:
            pools_said = "no pools"
        line = (
            f"last {now - self.since:.0f}s: {self.cycles} cycles, {self.committed} rounds "
            f"committed by this poller; {pools_said}"
        )
        if report.abstaining:
            line += f"; abstaining on {report.abstaining} node(s)"
        if report.unserved:
            line += f"; not served: {', '.join(sorted(report.unserved))}"
        self.since, self.cycles, self.committed = now, 0, 0
        return line


ProbeFn = Callable[[NodeId, ProbeSettings], ProbeResult]


class Poller:
    def __init__(
        self, store: Store, settings: PollerSettings, probe: ProbeFn | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        # The connections kept between rounds for pools with keep_connections; closed on leave.
        self.logins = LoginSlots(settings.logins, gevent.lock.BoundedSemaphore(settings.logins))
        self.connections = KeptConnections(settings.kept_connections, logins=self.logins)
        self.probe = probe or self.connections.probe
        # The real probe can send the kept connections' probes all at once; one given (tests)
        # is called node by node.
        self.at_once = probe is None
        self.probe_settings: dict[tuple[Timeouts, float], ProbeSettings] = {}
        self.handled: dict[str, int] = {}  # pool -> last round this poller probed
        self.last_cycle_at: float | None = None  # local wall time of the last cycle's start
        self.offset = 0.0  # Redis time minus local wall clock
        self.offsets: dict[str, float] = {}  # pool -> its shard's Redis time minus local clock
        self.started_at = time.time()
        self.last_cycle: dict[str, object] = {}
        self.workers = gevent.pool.Pool(settings.concurrency)
        # Deadline commits: a timer per moment (local wall time), and per pool its round due.
        self.pending: dict[float, gevent.Greenlet] = {}
        self.due_at: dict[str, tuple[float, int]] = {}
        self.committing = gevent.lock.Semaphore()
        self.abstentions: dict[AbstentionKey, str] = {}  # (pool, node) -> reason, as of now
        self.unserved: dict[str, str] = {}  # pool -> why this poller cannot serve it
        self.last_heartbeat = float("-inf")  # monotonic
        self.summary = CycleSummary(time.monotonic())
        # A problem that repeats every cycle is logged once, then on change (not every cycle).
        self.cycle_trouble = OnChange(log, "poll cycles succeed again")
        self.deadline_trouble = OnChange(log, "deadline commits succeed again")
        self.seen: dict[str, PoolState] = {}  # pool -> its newest state this poller read
        self.versions: dict[str, Seen] = {}  # pool -> its newest version seen (heads too)
        self.degraded: dict[str, str] = {}  # pool -> why no node could take over now
        self.fencer = Fencer(store, settings.fence, settings.poller_id, settings.limits)
        # served by --http-listen
        self.metrics = PollerMetrics(settings.poller_id, fencing=self.fencer.counter)
        self.assigned: dict[str, bool] = {}  # pool -> assigned to this poller in its last round
        self.observing: set[str] = set()  # pools this poller probed in their last round
        self.cadence = HEARTBEAT_IDLE  # seconds between this poller's heartbeats
        self.keeper: gevent.Greenlet | None = None  # keep_alive, while run() runs
        self.watcher: gevent.Greenlet | None = None  # watch_loop, while run() runs
        self.loop = LoopWatch()

    # ---------------------------------------------------------------- clock

    def sync_clock(self) -> float:
        now = self.store.server_time()
        self.offset = now - time.time()
        return now

    def sync_clocks(self, pools: Sequence[PoolHead]) -> float:
        """Read each pool's clock (on a Redis Cluster, its shard's: ``Store.server_times``)
        and the default one (the shard of the poller heartbeats, which judges liveness); the
        latter is returned."""
        if not self.store.is_cluster:
            now = self.sync_clock()
            self.offsets = {}
            return now
        local = time.time()
        times = self.store.server_times(p.name for p in pools)
        self.offsets = {name: t - local for name, t in times.items()}
        return self.sync_clock()

    def pool_now(self, name: str, at: float | None = None) -> float:
        """Redis time by the clock of pool ``name`` (at local wall-clock time ``at``)."""
        return (time.time() if at is None else at) + self.clock_offset(name)

    def clock_offset(self, name: str) -> float:
        """Pool ``name``'s clock minus the local wall clock."""
        return self.offsets.get(name, self.offset)

    def now(self) -> float:
        return time.time() + self.offset

    # ---------------------------------------------------------------- one cycle

    def load_pools(self, everything: bool = False) -> tuple[list[PoolHead], dict[str, PoolState]]:
        """Every pool's head, and in full the pools this poller may observe in this cycle:
        those it observed or was assigned in their last round and those it has not judged yet
        (every pool: a pinned poller, or ``everything``). Decoding every pool every cycle would
        cost each of N pollers the whole fleet's documents, not its own K/N share of them.

        Each pool read in full is remembered (``seen``) unless it is older than a state seen
        before, and of every pool the newest version seen (``versions``, heads included): a
        poller that has seen a newer state never ticks from a rolled-back one without writing
        above it, whether or not it was the one that committed it (``rolled_back``)."""
        if self.settings.pools:
            names = list(dict.fromkeys(self.settings.pools))
        else:
            names, whole_index = self.store.pool_index()
            if whole_index:  # else a pool missing from it may still be there
                self.forget_removed(names)
        if everything or self.settings.is_pinned:
            whole: set[str] = set(names)
        else:  # a pool this poller cannot serve needs no more than its head (its interval)
            mine = {n for n in names if self.assigned.get(n, True) or n in self.observing}
            whole = mine - self.unserved.keys()
        heads, pools = self.store.read_heads(names, whole)
        for pool in pools.values():
            self.remember(pool)
        for head in heads:
            if head.name not in pools:
                self.note_version(head)
        return heads, pools

    def forget_removed(self, names: Sequence[str]) -> None:
        """What this poller holds of the pools not in ``names`` (removed from the pool index)
        dropped, their metrics too: a poller that runs for months must not keep every pool it
        ever saw. The newest version seen of each (``versions``, a few bytes a pool) is kept,
        so that a pool of that name that comes back with an older state is still never ticked
        from it."""
        present = set(names)
        # Every pool this poller read or probed is in seen or handled: nothing else to drop.
        if not (self.seen.keys() - present or self.handled.keys() - present):
            return
        for held_by in (self.seen, self.handled, self.assigned, self.degraded):
            for name in held_by.keys() - present:
                del held_by[name]
        self.observing &= present
        self.store.forget_pools(present)
        self.metrics.forget_pools(present)
        self.fencer.forget_pools(present)

    def read_whole(
        self, chosen: Sequence[PoolHead], pools: dict[str, PoolState]
    ) -> list[PoolState]:
        """The chosen pools in full: those of ``pools``, and the others (newly assigned to
        this poller) read now and added to ``pools``; a pool removed meanwhile is left out."""
        missing = [h.name for h in chosen if h.name not in pools]
        for pool in self.store.load_pools(missing) if missing else []:
            self.remember(pool)
            pools[pool.name] = pool
        return [pools[h.name] for h in chosen if h.name in pools]

    def remember(self, pool: PoolState) -> bool:
        """Remember ``pool`` as the newest state seen of it, unless it is older than a version
        seen before (then nothing is remembered: False)."""
        if went_backwards(self.versions.get(pool.name), pool):
            return False
        self.seen[pool.name] = pool
        self.versions[pool.name] = Seen.of(pool)
        return True

    def note_version(self, head: PoolHead) -> None:
        """A pool read by its head only: its version is the newest seen unless older than one
        seen before; a state held of it that is older is forgotten (it must never be restored
        over a newer one this poller did not read)."""
        seen = Seen(head.incarnation, head.version)
        if adoption(self.versions.get(head.name), seen.incarnation, seen.version) is Adoption.NEW:
            self.versions[head.name] = seen
            self.seen.pop(head.name, None)

    def due_pools(self, pools: Sequence[PoolHead], at: float) -> list[PoolHead]:
        """The pools whose new round has started at local time ``at``."""
        # "!=" rather than ">": a pool whose interval changed has re-numbered its rounds.
        return [p for p in pools if self.round_at(p, at) != self.handled.get(p.name, -1)]

    def passed_rounds(
        self, pools: Sequence[PoolState], previous: float | None, at: float
    ) -> dict[str, tuple[int, int]]:
        """The rounds of ``pools`` that started and passed between this poller's previous
        cycle (at ``previous``, where it had handled the round then running) and this one, at
        ``at``: none of them probed by this poller (``rounds.next_probe_in`` lets a round whose
        deadline passed go). A pool whose rounds were numbered otherwise then (its interval
        changed) or that this poller did not handle then has none."""
        if previous is None:
            return {}
        passed = {}
        for pool in pools:
            before = self.handled.get(pool.name)
            now = self.round_at(pool, at)
            if before is not None and before == self.round_at(pool, previous) and now > before + 1:
                passed[pool.name] = (before + 1, now - 1)
        return passed

    def round_at(self, pool: PoolHead | PoolState, at: float) -> int:
        return round_of(self.pool_now(pool.name, at), pool.interval)

    def cycle(self, *, force: bool = False) -> CycleReport:
        """Probe and record every pool whose new round has started; commit the complete ones.

        ``force`` (``--once``) commits at once instead of waiting for other pollers."""
        report = CycleReport()
        heads, pools = self.load_pools(everything=force)
        now = self.sync_clocks(heads)
        at = time.time()
        previous, self.last_cycle_at = self.last_cycle_at, at
        report.pools, report.read = heads, list(pools.values())
        served = self.serve(heads, report)
        self.cadence = heartbeat_cadence(p.interval for p in served)
        started = self.due_pools(served, at)
        if not started:
            return report
        report.due = [p.name for p in started]
        chosen, expected = self.observed(started, now, force)
        due = self.read_whole(chosen, pools) if chosen else []
        report.passed = self.passed_rounds(due, previous, at)
        self.metrics.rounds_passed(report.passed)
        for head in started:
            self.handled[head.name] = self.round_at(head, at)
        if not due:
            return report
        report.read = list(pools.values())
        whole = [p for p in pools.values() if p.name not in self.unserved]
        results, checkpoints = self.probe_pools(due, whole)
        report.probe_seconds = time.time() - at
        records = [self.record_of(p, self.round_at(p, at), results, checkpoints) for p in due]
        self.metrics.recorded(records, {node: r.latency for node, r in results.items()})
        for pool in due:
            report.rounds[pool.name] = self.round_at(pool, at)
            why = lateness(pool, self.round_at(pool, at), self.pool_now(pool.name, at))
            if why is not None:
                report.late[pool.name] = why
        self.track_abstentions(records, served, report)
        recorded = self.store.record_observations(
            records,
            self.settings.poller_id,
            ttl=max(observation_ttl(p.interval) for p in due),
            heartbeat_ttl=max(pool_heartbeat_ttl(p.interval) for p in due),
            waits=expected,
        )
        self.settle(recorded, {p.name: p for p in due}, report, force)
        return report

    def settle(
        self,
        recorded: Sequence[RoundRecord],
        due: Mapping[str, PoolState],
        report: CycleReport,
        force: bool,
    ) -> None:
        """What follows the recording of each round: nothing when it is committed already (a
        poller that recorded late must not read and tick it again), its commit when it is
        complete (or ``force``), else a wait for its other observers until its deadline."""
        complete, waiting = [], []
        for record in recorded:
            if record.was_committed:
                report.skipped[record.pool] = f"round {record.round} {ALREADY_COMMITTED}"
            elif record.is_complete or force:
                complete.append((record.pool, record.round))
            else:
                waiting.append(record)
        report.committed.update(self.commit_rounds(complete, report))
        for record in waiting:
            report.deferred.append(record.pool)
            self.schedule_deadline(record, due[record.pool])

    def observed(
        self, started: Sequence[PoolHead], now: float, force: bool
    ) -> tuple[list[PoolHead], dict[str, tuple[str, ...]]]:
        """The pools whose new round this poller observes, and per pool the assigned observers
        its round waits for (none: every live poller of the pool). A pinned poller (``--pools``)
        and ``--once`` observe every pool; the others observe the pools assigned to them by
        rendezvous hashing over the observers' heartbeats (``rounds.assign`` over
        ``rounds.candidates``, computed once for all the pools)."""
        if force or self.settings.is_pinned:
            self.observing = {p.name for p in started} | self.observing
            return list(started), {}
        me = self.settings.poller_id
        beats = self.store.observer_beats()
        beats.setdefault(me, now + heartbeat_ttl(self.cadence))
        pollers = frozenset(candidates(beats, now, self.cadence, me))  # the same for every pool
        chosen, expected = [], {}
        for pool in started:
            assigned = assign(pool.name, pollers, pool.observers)
            mine = me in assigned
            if observes(mine, self.assigned.get(pool.name, False)):
                chosen.append(pool)
                expected[pool.name] = assigned
                self.observing.add(pool.name)
            else:
                self.observing.discard(pool.name)
            self.assigned[pool.name] = mine
        return chosen, expected

    def serve(self, pools: Sequence[PoolHead], report: CycleReport) -> list[PoolHead]:
        """The pools this poller can serve; the others are said once (WARNING), on change."""
        bounds = self.settings.limits
        unserved = {
            p.name: why for p in pools if (why := unserved_reason(p.interval, bounds)) is not None
        }
        for name, why in sorted(unserved.items()):
            if self.unserved.get(name) != why:
                log.warning("not polling pool %s: %s", name, why)
                report.news = True
        names = {p.name for p in pools}
        for name in sorted(self.unserved.keys() - unserved.keys()):
            if name in names:
                log.warning("polling pool %s again: its interval fits this poller now", name)
            report.news = True
        self.unserved = unserved
        report.unserved = dict(unserved)
        return [p for p in pools if p.name not in unserved]

    def probe_pools(
        self, due: Sequence[PoolState], served: Sequence[PoolState]
    ) -> tuple[dict[NodeId, ProbeResult], str | None]:
        """``probe_round`` of the due pools' nodes, each once with the tightest timeouts and
        keep_connections of its ``served`` pools (those read in full: the pools this poller
        observes); then the kept connections to nodes this poller no longer observes or keeps
        (or past their age) are closed."""
        timeouts = node_timeouts(served, self.settings.limits)
        keep = node_keep(served)
        nodes = {n.node for p in due for n in p.nodes}
        results = self.probe_round({node: timeouts[node] for node in nodes}, keep)
        observed = {n.node for p in served if p.name in self.observing for n in p.nodes}
        self.connections.retain({node: keep.get(node, 0.0) for node in observed})
        return results

    def probe_round(
        self, timeouts: Mapping[NodeId, Timeouts], keep: Mapping[NodeId, float]
    ) -> tuple[dict[NodeId, ProbeResult], str | None]:
        """Every node once and every checkpoint, all concurrently. Returns the probe results and
        the abstention reason when every checkpoint failed (else None)."""
        # The checkpoints' connect fits the tightest pool of the round, like its probes.
        wait = min((t.connect for t in timeouts.values()), default=self.settings.limits.connect)
        points = {cp: gevent.spawn(probe_checkpoint, cp, wait) for cp in self.settings.checkpoints}
        results = self.probe_all(timeouts, keep)
        gevent.joinall(list(points.values()), timeout=wait + 0.1)
        failures = {
            cp: job.value if job.successful() else f"no answer within {wait:g}s"
            for cp, job in points.items()
        }
        for job in points.values():
            job.kill(block=False)
        return results, checkpoints_down(failures)

    def probe_all(
        self, timeouts: Mapping[NodeId, Timeouts], keep: Mapping[NodeId, float]
    ) -> dict[NodeId, ProbeResult]:
        """Every node once, concurrently, each bounded by its hard probe timeout; ``keep``:
        how long each node's connection may serve its next probes (none: a login each). The
        nodes with a kept connection are probed all at once from this greenlet (their queries
        sent together, their replies read as they come); the others in a greenlet each."""
        settings = {
            node: self.settings_for(bounds, keep.get(node, 0.0))
            for node, bounds in timeouts.items()
        }
        started = time.monotonic()
        flights, rest = self.connections.launch(settings) if self.at_once else ([], list(settings))
        jobs = {n: self.spawn_probe(n, timeouts[n], settings[n]) for n in paced(rest)}
        landed, left = self.connections.land(
            flights, lambda result: self.judged(result, timeouts[result.node], started)
        )
        jobs.update({node: self.spawn_probe(node, timeouts[node], settings[node]) for node in left})
        results = {node: self.judged(r, timeouts[node], started) for node, r in landed.items()}
        gevent.joinall(list(jobs.values()))
        results.update({node: job.value for node, job in jobs.items()})
        return results

    def settings_for(self, bounds: Timeouts, keep_for: float) -> ProbeSettings:
        """The probe settings of a node with these bounds (one object per distinct bounds,
        not one per probe)."""
        key = (bounds, keep_for)
        settings = self.probe_settings.get(key)
        if settings is None:
            if len(self.probe_settings) > PROBE_SETTINGS_KEPT:
                self.probe_settings.clear()
            settings = self.probe_settings[key] = replace(
                self.settings.probe,
                connect_timeout=bounds.connect,
                read_timeout=bounds.read,
                keep_for=keep_for,
                reach_timeout=bounds.reach,
            )
        return settings

    def spawn_probe(
        self, node: NodeId, bounds: Timeouts, settings: ProbeSettings
    ) -> gevent.Greenlet:
        return self.workers.spawn(self.probe_bounded, node, bounds, settings)

    def probe_bounded(self, node: NodeId, bounds: Timeouts, settings: ProbeSettings) -> ProbeResult:
        started = time.monotonic()
        result = self.probe_within(node, settings, bounds, started)
        return self.judged(result, bounds, started, self.logins.waited(node))

    def judged(
        self,
        result: ProbeResult,
        bounds: Timeouts,
        started: float,
        wait: tuple[float, float] | None = None,
    ) -> ProbeResult:
        """``result``, or an abstention when it timed out and the time this poller lost itself
        explains it (``voids_timeout``): its event loop's longest stall or its wait for a CPU
        since the probe began its own work, plus what its login ``wait``-ed for a slot
        (seconds, and when it got one)."""
        if not is_timeout(result.observation):  # the common case: no stall to look up
            return result
        slot, since = wait if wait is not None else (0.0, started)
        lost = self.loop.lost(since, time.monotonic(), slot, started)
        if not voids_timeout(result.observation, lost, bounds):
            return result
        failure = (result.observation.message or "").removeprefix(connect_prefix(result.node))
        text = overload_text(failure, lost, self.logins.size)
        return replace(result, observation=Observation.abstain(text))

    def probe_within(
        self, node: NodeId, settings: ProbeSettings, bounds: Timeouts, started: float
    ) -> ProbeResult:
        """The probe, cut at the hard bound; never raises."""
        try:
            with gevent.Timeout(bounds.probe):
                return self.probe(node, settings)
        except gevent.Timeout:
            if self.logins.was_queued(node):
                return ProbeResult(
                    node, self.overloaded(bounds), NodeMetrics(), time.monotonic() - started
                )
            text = f"probe timed out after {bounds.probe:.3g}s"
        except Exception as exc:  # a probe bug must cost one node's verdict, not the round
            log_unexpected(node, exc)
            text = failure_text(exc)
        observation = Observation.connect_error(node, text)
        return ProbeResult(node, observation, NodeMetrics(), time.monotonic() - started)

    def overloaded(self, bounds: Timeouts) -> Observation:
        """The abstention of a probe cut while it waited for a login slot: the poller had
        more logins to make than it could within the probe's bound."""
        return Observation.abstain(
            f"this poller is overloaded: no login could start within the probe's "
            f"{bounds.probe:.3g}s ({self.logins.size} logins under way)"
        )

    def record_of(
        self,
        pool: PoolState,
        round_: int,
        results: Mapping[NodeId, ProbeResult],
        checkpoints: str | None = None,
    ) -> tuple[str, int, dict[NodeId, Observation], dict[str, str]]:
        observations = pool_observations(pool, results, checkpoints)
        metrics = {
            str(n.node): self.metrics_json(results[n.node], observations[n.node])
            for n in pool.nodes
        }
        return pool.name, round_, observations, metrics

    def metrics_json(self, result: ProbeResult, observation: Observation) -> str:
        data = flat_dict(result.metrics)
        data.update(
            latency=round(result.latency, 6),
            outcome=observation.outcome.value,
            poller=self.settings.poller_id,
            at=round(self.now(), 3),
        )
        if observation.is_abstained:
            data["abstained"] = observation.message
        elif not observation.is_healthy:
            data["error"] = observation.message  # mpp-admin status: the last probe's error
        return json.dumps(data, separators=(",", ":"))

    def track_abstentions(
        self,
        records: Sequence[tuple[str, int, dict[NodeId, Observation], dict[str, str]]],
        served: Sequence[PoolHead],
        report: CycleReport,
    ) -> None:
        """Say each abstention once when it starts and once when it ends (WARNING)."""
        recorded = {name for name, *_ in records}
        kept = {p.name for p in served} - recorded
        after = {key: why for key, why in self.abstentions.items() if key[0] in kept}
        for name, _, observations, _ in records:
            after.update(
                {(name, str(node)): o.message for node, o in observations.items() if o.is_abstained}
            )
        started, ended = abstention_changes(self.abstentions, after)
        for why, names in by_reason(started):
            log.warning(
                "abstaining on %s (this poller cannot judge them): %s", name_list(names), why
            )
        for why, names in by_reason(ended):
            log.warning("no longer abstaining on %s (was: %s)", name_list(names), why)
        self.abstentions = after
        report.abstaining = len(after)
        report.news = report.news or bool(started or ended)

    # ---------------------------------------------------------------- committing

    def commit_rounds(
        self, rounds: Sequence[tuple[str, int]], report: CycleReport
    ) -> dict[str, PoolState]:
        """Tick and commit each (pool, round); a round already committed is left alone.

        One call at a time (the cycle's and the deadlines'): a pool read by one call must not
        be compared with a commit the other made after that read (it would look rolled back)."""
        with self.committing:
            return self._commit_rounds(rounds, report)

    def _commit_rounds(
        self, rounds: Sequence[tuple[str, int]], report: CycleReport
    ) -> dict[str, PoolState]:
        committed: dict[str, PoolState] = {}
        todo = list(rounds)
        for attempt in range(COMMIT_RETRIES):
            if not todo:
                break
            ticks, retry = self.tick_rounds(todo, report, last_try=attempt == COMMIT_RETRIES - 1)
            # Every tick's compare-and-set in one round trip; each stands or falls on its own.
            commits = [t.commit for t in ticks]
            outcomes = self.store.commit_many(commits, each=paced) if ticks else []
            failure = None
            for ticked, outcome in zip(ticks, outcomes, strict=True):
                name, round_ = ticked.name, ticked.round
                if isinstance(outcome, UnknownPool):
                    report.skipped[name] = "was removed"
                elif isinstance(outcome, BadKey):
                    report.skipped[name] = f"not ticked: {outcome.key} is unusable"
                elif isinstance(outcome, Exception):  # Redis trouble: raised once all are read
                    failure = failure or outcome
                elif outcome.committed:
                    committed[name] = self.committed_round(ticked, report)
                elif outcome.refusal == CommitRefusal.VERSION:
                    self.metrics.commit_conflict(name)
                    retry.append((name, round_))
                else:
                    report.skipped[name] = f"round {round_} {ALREADY_COMMITTED}"
            if failure is not None:
                raise failure
            todo = retry
        for name, _ in todo:
            report.skipped[name] = "lost the commit race to other writers; next round"
        return committed

    def tick_rounds(
        self, todo: Sequence[tuple[str, int]], report: CycleReport, last_try: bool
    ) -> tuple[list[RoundTick], list[tuple[str, int]]]:
        """The rounds read and ticked, ready to commit, and those to read again (the pool
        looked rolled back); the ones not to tick are in ``report.skipped``."""
        ticks, retry = [], []
        loaded = zip(todo, self.store.load_round(todo), strict=True)
        for (name, round_), (pool, reports) in paced(loaded):
            try:
                if isinstance(pool, BadKey):  # logged once by the store
                    raise pool
                restore = self.rolled_back(pool, last_try)
                if isinstance(restore, str):  # re-read
                    retry.append((name, round_))
                    continue
                ticked = self.tick_round(name, round_, pool, reports, restore)
            except BadKey as exc:
                ticked = f"not ticked: {exc.key} is unusable"
            if isinstance(ticked, str):
                report.skipped[name] = ticked
            else:
                ticks.append(ticked)
        return ticks, retry

    def committed_round(self, ticked: RoundTick, report: CycleReport) -> PoolState:
        """What follows a committed round: this poller's view of the pool, the news, and the
        effects on MySQL of the state just committed, judged by the pool's own clock, as its tick
        was."""
        name, pool, outcome = ticked.name, ticked.pool, ticked.commit.after
        # What this poller wrote is the newest state it has seen (a rollback below it is told
        # from this, even if it never reads this version back).
        version = max(pool.version + 1, ticked.commit.least_version or 0)
        self.seen[name] = evolve(outcome, version=version, last_round=ticked.round)
        self.versions[name] = Seen.of(self.seen[name])
        self.metrics.round_committed(name)
        self.track_degraded(outcome)
        for line in replicas_view_news(pool, outcome):
            log.warning("%s", line)
        self.fencer.reconcile(self.seen[name], ticked.observations, self.pool_now(name))
        if has_changed(pool, outcome):
            report.changed.append(name)
        return outcome

    def rolled_back(self, pool: PoolState | None, last_try: bool) -> PoolState | str | None:
        """None when ``pool`` is not older than what this poller saw (then it is remembered);
        else "re-read", or on the last try the state to tick from instead, carrying the version
        to write above: the newer state seen, or where this poller read only its version (by
        the pool's head) ``pool`` itself, so that every reader adopts the tick at once."""
        if pool is None or self.remember(pool):
            return None
        seen = self.versions[pool.name]
        held = self.seen.get(pool.name)  # the state of that version, if read in full
        if held is not None:
            newer, action = held, f"ticking from version {held.version}"
        else:
            newer = evolve(pool, version=seen.version)
            action = f"ticking from version {pool.version}, written above version {seen.version}"
        log.warning(
            "%s (a Redis failover lost commits?); %s",
            backwards_text(pool, seen),
            action if last_try else "re-reading",
        )
        return newer if last_try else "re-read"

    def tick_round(
        self,
        name: str,
        round_: int,
        pool: PoolState | None,
        reports: Mapping[str, Mapping[NodeId, Observation]],
        restore: PoolState | None = None,
    ) -> RoundTick | str:
        """``pool`` (or ``restore``, a newer state of it that Redis lost, to be written above
        every version seen so that no reader keeps the older one) ticked with the round's
        observations, ready to commit over ``pool``; or why the round is not ticked."""
        if pool is None:
            return "was removed"
        if pool.last_round >= round_:
            return f"round {round_} {ALREADY_COMMITTED}"
        now = self.pool_now(name)
        if round_ > round_of(now, pool.interval):
            # Numbered with an interval the pool no longer has: committing it would put the
            # pool's last round far ahead of every round under the new interval.
            return f"round {round_} belongs to the pool's previous interval; not ticked"
        if not reports:
            return f"round {round_} has no observations; not ticked"
        base = pool if restore is None else restore
        observations = merge_observations(reports)
        result = tick(expire_overrides(base, now), observations, now)
        least = None if restore is None else restore.version + 1
        commit = Commit(pool, result.pool, result.events, self.settings.poller_id, round_, least)
        return RoundTick(name, round_, pool, observations, commit)

    def track_degraded(self, pool: PoolState) -> None:
        """Say once (WARNING) when a pool loses its last failover candidate, and once when it
        has one again."""
        why = degraded(pool, self.now())
        was = self.degraded.get(pool.name)
        if why is not None and was is None:
            log.warning("pool %s is degraded: %s", pool.name, why)
            self.degraded[pool.name] = why
        elif why is None and was is not None:
            log.warning("pool %s is no longer degraded (was: %s)", pool.name, was)
            del self.degraded[pool.name]

    def schedule_deadline(self, record: RoundRecord, pool: PoolState) -> None:
        """Commit the round at its deadline if no other poller did (a dead poller costs at most
        this wait until its heartbeat expires). The rounds whose deadline falls at the same
        moment (pools of one interval, on one clock) share one timer and one read of their
        rounds; a pool's newer round replaces its older one."""
        when = deadline_at(record.round, pool.interval) - self.clock_offset(pool.name)
        self.due_at[pool.name] = (when, record.round)
        timer = self.pending.get(when)
        if timer is None or timer.dead:
            self.pending[when] = gevent.spawn_later(
                max(0.0, when - time.time()), self.commit_at_deadline, when
            )

    def commit_at_deadline(self, when: float) -> None:
        """The rounds due at local time ``when`` that no other poller committed, committed."""
        self.pending.pop(when, None)
        due = [(name, r) for name, (at, r) in self.due_at.items() if at == when]
        for name, _ in due:
            del self.due_at[name]
        if due:
            self.commit_deadlines(due)

    def commit_deadlines(self, due: Sequence[tuple[str, int]]) -> None:
        report = CycleReport(rounds=dict(due))
        try:
            # One pipelined read of the rounds: most were committed by the other observers.
            last = self.store.last_rounds([name for name, _ in due])
            todo = [(name, r) for name, r in due if last.get(name, -1) < r]
            report.committed.update(self.commit_rounds(todo, report) if todo else {})
        except REDIS_DOWN_ERRORS as exc:
            self.deadline_trouble.problem(f"deadline commits: Redis unreachable: {exc}")
            return
        except Exception as exc:  # a greenlet of its own: nothing above it would log this
            self.deadline_trouble.problem(
                f"deadline commits fail: {type(exc).__name__}: {exc} (traceback at DEBUG)",
                logging.ERROR,
            )
            log.debug("deadline commits of %s failed", due, exc_info=True)
            return
        self.deadline_trouble.ok()
        if report.committed:
            # A deadline commit means some live poller did not report in time: worth a line.
            log.info("%s", deadline_sentence(report.committed, report.rounds))

    # ---------------------------------------------------------------- the loop

    def heartbeat(self, report: CycleReport, cycle_seconds: float) -> None:
        now = self.now()
        names = {p.name for p in report.pools}
        pools = sorted(self.observing & names if report.pools else self.observing)
        # Lag: how long after its round started the latest round was committed.
        starts = [
            round_start(report.rounds[name], p.interval) for name, p in report.committed.items()
        ]
        lag = max((now - start for start in starts), default=0.0)
        info = {
            "poller_id": self.settings.poller_id,
            "pools": pools,
            "started_at": round(self.started_at, 3),
            "last_cycle_at": round(now, 3),
            "cycle_seconds": round(cycle_seconds, 4),
            "probe_seconds": round(report.probe_seconds, 4),
            "lag": round(lag, 4),
            # What operators must see (mpp-admin pollers): nodes this poller cannot judge,
            # pools it cannot serve, and the shortest interval it can serve.
            "abstentions": {
                f"{pool}/{node}": why for (pool, node), why in self.abstentions.items()
            },
            "unserved": dict(self.unserved),
            "min_interval": round(min_interval(self.settings.limits), 4),
            "checkpoints": [str(cp) for cp in self.settings.checkpoints],
            "fencing": self.fencer.heartbeat(),  # pool[/node] -> why read_only is not kept
            "pinned": self.settings.is_pinned,
            "cadence": round(self.cadence, 4),
        }
        served = [p.interval for p in report.pools if p.name not in self.unserved]
        self.store.heartbeat(
            self.settings.poller_id,
            info,
            now,
            ttl=max(info_ttl(served), heartbeat_ttl(self.cadence)),
            live_for=heartbeat_ttl(self.cadence),
            observer=not self.settings.is_pinned,
        )
        self.last_heartbeat = time.monotonic()

    def watch_loop(self) -> None:
        """Note how late the event loop runs and how long its thread waited for a CPU
        (``LoopWatch``), while ``run()`` runs."""
        queue = RunQueue()  # opened here: the loop's own thread
        if queue.fd is None:
            log.info(
                "this system does not say how long a thread waits for a CPU: timeouts "
                "are voided by the event loop's stalls only"
            )
        try:
            self.loop.woke(time.monotonic(), 0.0, queue.cpu_wait())
            while True:
                gevent.sleep(STALL_PERIOD)
                self.loop.woke(time.monotonic(), STALL_PERIOD, queue.cpu_wait())
        finally:
            queue.close()
            self.loop.last = None  # nothing watches: no stall under way to void timeouts with

    def keep_alive(self) -> None:
        """Say once per cadence that this poller lives, whatever its cycles take: a poller
        slowed down by its load must not look dead to the others (they would take over its
        pools and add to the load of all)."""
        while True:
            gevent.sleep(self.cadence)
            try:
                self.store.heartbeat(
                    self.settings.poller_id,
                    None,
                    self.now(),
                    ttl=heartbeat_ttl(self.cadence),
                    observer=not self.settings.is_pinned,
                )
            except REDIS_DOWN_ERRORS:
                pass  # the cycles say that Redis is unreachable
            except Exception:  # a greenlet of its own: its failure must not go unsaid
                log.debug("keep-alive heartbeat failed", exc_info=True)

    def log_cycle(self, report: CycleReport) -> None:
        """The cycle's sentence at INFO when something changed, else at DEBUG; an INFO summary
        of the quiet cycles once every ``SUMMARY_EVERY`` seconds."""
        log.log(logging.INFO if report.is_notable else logging.DEBUG, "%s", report.sentence())
        line = self.summary.add(report, time.monotonic())
        if line is not None:
            log.info("%s", line)

    def next_wake(self, served: Sequence[PoolHead]) -> float:
        """Seconds until any served pool is due (``rounds.next_probe_in``; at most MAX_SLEEP)."""
        at = time.time()
        waits = [
            next_probe_in(self.pool_now(p.name, at), p.interval, self.handled.get(p.name))
            for p in served
        ]
        return min([MAX_SLEEP, *waits])

    def run(self, stop: Callable[[], bool], wait: Callable[[float], bool]) -> None:
        """Cycle until ``stop()``; ``wait(seconds)`` sleeps and returns True if stopping."""
        self.keeper = gevent.spawn(self.keep_alive)
        self.watcher = gevent.spawn(self.watch_loop)
        while not stop():
            started = time.monotonic()
            try:
                report = self.cycle()
                if report.rounds:
                    self.log_cycle(report)
                idle = time.monotonic() - self.last_heartbeat >= HEARTBEAT_IDLE
                if report.rounds or report.due or idle:
                    self.heartbeat(report, time.monotonic() - started)
                served = [p for p in report.pools if p.name not in self.unserved]
                delay = self.next_wake(served)
                self.cycle_trouble.ok()
                names = [p.name for p in served]
                self.metrics.cycle_done(time.monotonic() - started, names, len(self.unserved))
            except REDIS_DOWN_ERRORS as exc:
                text = f"Redis unreachable ({exc}); retrying every {REDIS_RETRY_DELAY:g}s"
                self.cycle_trouble.problem(text)
                self.metrics.cycle_failed(f"Redis unreachable: {exc}")
                delay = REDIS_RETRY_DELAY
            except Exception as exc:  # the loop must survive any one bad cycle
                self.cycle_trouble.problem(
                    f"poll cycles fail: {type(exc).__name__}: {exc}; the next cycle goes on "
                    "(traceback at DEBUG)",
                    logging.ERROR,
                )
                log.debug("poll cycle failed", exc_info=True)
                self.metrics.cycle_failed(f"{type(exc).__name__}: {exc}")
                delay = REDIS_RETRY_DELAY
            if wait(delay):
                break
        self.leave()

    def run_once(self) -> CycleReport:
        """MPP's cron mode: one round of every pool, committed at once, then stop."""
        report = self.cycle(force=True)
        log.info("%s", report.sentence())
        self.heartbeat(report, report.probe_seconds)
        self.leave()  # not a live poller between cron runs: others need not wait for it
        return report

    def leave(self) -> None:
        others = [g for g in (self.keeper, self.watcher) if g is not None]
        for greenlet in [*self.pending.values(), *others]:
            greenlet.kill(block=False)
        self.connections.close()
        try:
            self.store.leave(self.settings.poller_id, self.handled)
        except REDIS_DOWN_ERRORS as exc:
            log.warning("could not deregister from Redis on exit: %s", exc)
