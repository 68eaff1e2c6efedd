"""The poller: probe every node, record what was seen, and tick each pool once per round.

Rounds are cut by Redis server time (architecture.md 2.3): round ``k`` of a pool starts at
``k x interval``. At the start of a round every poller probes the pool's nodes (all pools'
nodes at once, concurrently, each node once however many pools it is in) and records its
observations for that round. The tick of round ``k`` is committed by whichever poller first
sees that every live poller has recorded it, or that the round's deadline has passed; the
commit script refuses a round that is not newer than the last committed one, so the request
counter advances once per interval whether 1 or 5 pollers run. The tick itself merges all
pollers' observations by majority (architecture.md 2.4) and runs the pure state machine.

Redis round trips per cycle grow with the number of pools due, never with nodes.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import gevent
import gevent.pool

from mpp_agent.adoption import Seen, backwards_text, went_backwards
from mpp_agent.model import NodeId, Observation, Outcome, PoolState, State
from mpp_agent.probe import NodeMetrics, ProbeResult, ProbeSettings, probe_node
from mpp_agent.state import expire_overrides, tick
from mpp_agent.store import REDIS_DOWN_ERRORS, BadKey, RoundRecord, Store, UnknownPool

log = logging.getLogger("mpp.poller")

DEADLINE_FRACTION = 0.5  # a round's tick is forced half an interval after the round starts
COMMIT_RETRIES = 3
MAX_SLEEP = 1.0  # re-read pool settings at least this often
REDIS_RETRY_DELAY = 1.0


@dataclass(frozen=True)
class PollerSettings:
    poller_id: str
    probe: ProbeSettings
    pools: tuple[str, ...] = ()  # empty: every pool
    probe_timeout: float = 3.0  # hard bound on one probe, connect and queries together
    concurrency: int = 500

    def deadline(self, interval: float) -> float:
        return interval * DEADLINE_FRACTION

    def problem(self, pool: PoolState) -> str | None:
        """Cross-field rule: the probe timeout must be shorter than the pool's deadline."""
        if self.probe_timeout < self.deadline(pool.interval):
            return None
        return (
            f"pool {pool.name}: probe timeout {self.probe_timeout:g}s is not shorter than its "
            f"deadline {self.deadline(pool.interval):g}s (half its {pool.interval:g}s interval)"
        )

    def problems(self, pools: Iterable[PoolState]) -> list[str]:
        return [text for text in map(self.problem, pools) if text is not None]


# --------------------------------------------------------------------------- pure parts


def round_of(now: float, interval: float) -> int:
    return int(now // interval)


def merge_observations(
    reports: Mapping[str, Mapping[NodeId, Observation]],
) -> dict[NodeId, Observation]:
    """Corroborate the pollers' views of a round (architecture.md 2.4 and 2.8).

    Abstentions are not votes: among the pollers that judged a node, it counts as failing only
    when more than half of them report an error (a tie is healthy), and the error reported is
    the majority's among the failing reports. A node every poller abstained on merges into an
    abstention (not evaluated); any abstention is carried as the verdict's ``monitor_note``.
    Nodes nobody observed are left out, so they are not evaluated either."""
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
        return Observation(Outcome.HEALTHY, monitor_note=note)
    counts = Counter((o.outcome, o.message) for o in failing)
    (outcome, message), _ = min(
        counts.items(), key=lambda item: (-item[1], item[0][0] != Outcome.CONNECT, item[0])
    )
    return Observation(outcome, message, monitor_note=note)


def abstention_note(abstained: Sequence[Observation], pollers: int) -> str:
    """``monitor cannot check: <the most common reason>``, with how many pollers if not all."""
    if not abstained:
        return ""
    reason, _ = min(Counter(o.message for o in abstained).items(), key=lambda i: (-i[1], i[0]))
    share = "" if len(abstained) == pollers else f" ({len(abstained)} of {pollers} pollers)"
    return f"monitor cannot check{share}: {reason}"


def describe_pool(pool: PoolState) -> str:
    """One clause of the cycle's log sentence, in MPP's POLL CYCLE terms."""
    active = ", ".join(f"{n.node} ({n.type})" for n in pool.nodes if n.state is State.ACTIVE)
    troubled = [f"{n.node} {n.state}/{n.status} R={n.r}" for n in pool.nodes if n.r > 0]
    text = f"{pool.name} status {pool.status}, ACTIVE: {active or 'NONE'}"
    return text + (f" ({'; '.join(troubled)})" if troubled else "")


# --------------------------------------------------------------------------- the poller


@dataclass
class CycleReport:
    """What one cycle did, for its log line and for tests."""

    rounds: dict[str, int] = field(default_factory=dict)
    committed: dict[str, PoolState] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    probe_seconds: float = 0.0
    pools: list[PoolState] = field(default_factory=list)  # every pool this poller polls

    def sentence(self) -> str:
        parts = [f"committed {describe_pool(p)}" for p in self.committed.values()]
        parts += [f"{name} waits for the other pollers" for name in self.deferred]
        parts += [f"{name} {why}" for name, why in self.skipped.items()]
        return f"probed in {self.probe_seconds:.3f}s; " + "; ".join(parts)


ProbeFn = Callable[[NodeId, ProbeSettings], ProbeResult]


class Poller:
    def __init__(self, store: Store, settings: PollerSettings, probe: ProbeFn = probe_node) -> None:
        self.store = store
        self.settings = settings
        self.probe = probe
        self.handled: dict[str, int] = {}  # pool -> last round this poller probed
        self.offset = 0.0  # Redis time minus local wall clock
        self.started_at = time.time()
        self.last_cycle: dict[str, object] = {}
        self.workers = gevent.pool.Pool(settings.concurrency)
        self.pending: dict[str, gevent.Greenlet] = {}
        self.seen: dict[str, PoolState] = {}  # pool -> its newest state this poller read

    # ---------------------------------------------------------------- clock

    def sync_clock(self) -> float:
        now = self.store.server_time()
        self.offset = now - time.time()
        return now

    def now(self) -> float:
        return time.time() + self.offset

    # ---------------------------------------------------------------- one cycle

    def load_pools(self) -> list[PoolState]:
        names = list(self.settings.pools) or self.store.pool_names()
        return self.store.load_pools(names)

    def due_pools(self, pools: Sequence[PoolState], now: float) -> list[PoolState]:
        # "!=" rather than ">": a pool whose interval changed has re-numbered its rounds.
        return [p for p in pools if round_of(now, p.interval) != self.handled.get(p.name, -1)]

    def cycle(self, *, force: bool = False) -> CycleReport:
        """Probe and record every pool whose new round has started; commit the complete ones.

        ``force`` (``--once``) commits at once instead of waiting for other pollers."""
        now = self.sync_clock()
        report = CycleReport()
        pools = self.load_pools()
        report.pools = pools
        for pool in pools:
            problem = self.settings.problem(pool)
            if problem is not None:
                report.skipped[pool.name] = f"not polled: {problem}"
        due = [p for p in self.due_pools(pools, now) if p.name not in report.skipped]
        if not due:
            return report
        results = self.probe_all({n.node for p in due for n in p.nodes})
        report.probe_seconds = self.now() - now
        records = [self.record_of(p, round_of(now, p.interval), results) for p in due]
        for pool in due:
            self.handled[pool.name] = round_of(now, pool.interval)
            report.rounds[pool.name] = round_of(now, pool.interval)
        recorded = self.store.record_observations(
            records,
            self.settings.poller_id,
            self.now(),
            ttl=max(p.interval for p in due) * 4 + 5,
            heartbeat_expiry=self.now() + 2 * max(p.interval for p in due) + 1,
        )
        complete = [r for r in recorded if r.is_complete or force]
        report.committed.update(self.commit_rounds([(r.pool, r.round) for r in complete], report))
        for record in recorded:
            if record not in complete:
                report.deferred.append(record.pool)
                self.schedule_deadline(record, next(p for p in due if p.name == record.pool))
        return report

    def probe_all(self, nodes: Iterable[NodeId]) -> dict[NodeId, ProbeResult]:
        """Every node once, concurrently, each bounded by the hard probe timeout."""
        jobs = {node: self.workers.spawn(self.probe_bounded, node) for node in nodes}
        gevent.joinall(list(jobs.values()))
        return {node: job.value for node, job in jobs.items()}

    def probe_bounded(self, node: NodeId) -> ProbeResult:
        timeout = self.settings.probe_timeout
        started = time.monotonic()
        try:
            with gevent.Timeout(timeout):
                return self.probe(node, self.settings.probe)
        except gevent.Timeout:
            text = f"probe timed out after {timeout:g}s"
        except Exception as exc:  # a probe bug must cost one node's verdict, not the round
            log.exception("probe of %s failed unexpectedly", node)
            text = f"probe failed: {type(exc).__name__}"
        observation = Observation.connect_error(node, text)
        return ProbeResult(node, observation, NodeMetrics(), time.monotonic() - started)

    def record_of(
        self, pool: PoolState, round_: int, results: Mapping[NodeId, ProbeResult]
    ) -> tuple[str, int, dict[NodeId, Observation], dict[str, str]]:
        observations = {n.node: results[n.node].observation for n in pool.nodes}
        metrics = {str(n.node): self.metrics_json(results[n.node]) for n in pool.nodes}
        return pool.name, round_, observations, metrics

    def metrics_json(self, result: ProbeResult) -> str:
        data = asdict(result.metrics)
        data.update(
            latency=round(result.latency, 6),
            outcome=result.observation.outcome.value,
            poller=self.settings.poller_id,
            at=round(self.now(), 3),
        )
        return json.dumps(data, separators=(",", ":"))

    # ---------------------------------------------------------------- committing

    def commit_rounds(
        self, rounds: Sequence[tuple[str, int]], report: CycleReport
    ) -> dict[str, PoolState]:
        """Tick and commit each (pool, round); a round already committed is left alone."""
        committed: dict[str, PoolState] = {}
        todo = list(rounds)
        for attempt in range(COMMIT_RETRIES):
            if not todo:
                break
            retry = []
            for (name, round_), (pool, reports) in zip(
                todo, self.store.load_round(todo), strict=True
            ):
                try:
                    if isinstance(pool, BadKey):  # logged once by the store
                        raise pool
                    restore = self.rolled_back(pool, last_try=attempt == COMMIT_RETRIES - 1)
                    if isinstance(restore, str):  # re-read
                        retry.append((name, round_))
                        continue
                    outcome = self.commit_round(name, round_, pool, reports, restore)
                except UnknownPool:
                    outcome = "was removed"
                except BadKey as exc:
                    outcome = f"not ticked: {exc.key} is unusable"
                if isinstance(outcome, PoolState):
                    committed[name] = outcome
                elif outcome == "version":
                    retry.append((name, round_))
                else:
                    report.skipped[name] = outcome
            todo = retry
        for name, _ in todo:
            report.skipped[name] = "lost the commit race to other writers; next round"
        return committed

    def rolled_back(self, pool: PoolState | None, last_try: bool) -> PoolState | str | None:
        """None when ``pool`` is not older than what this poller saw (then it is remembered);
        else "re-read", or on the last try the newer state to tick from instead."""
        if pool is None:
            return None
        newer = self.seen.get(pool.name)
        if newer is None or not went_backwards(Seen.of(newer), pool):
            self.seen[pool.name] = pool
            return None
        action = f"ticking from version {newer.version}" if last_try else "re-reading"
        log.warning(
            "%s (a Redis failover lost commits?); %s", backwards_text(pool, Seen.of(newer)), action
        )
        return newer if last_try else "re-read"

    def commit_round(
        self,
        name: str,
        round_: int,
        pool: PoolState | None,
        reports: Mapping[str, Mapping[NodeId, Observation]],
        restore: PoolState | None = None,
    ) -> PoolState | str:
        """Tick ``pool`` (or ``restore``, a newer state of it that Redis lost, written above
        every version seen so that no reader keeps the older one) and commit over ``pool``."""
        if pool is None:
            return "was removed"
        if pool.last_round >= round_:
            return f"round {round_} already committed"
        now = self.now()
        if round_ > round_of(now, pool.interval):
            # Numbered with an interval the pool no longer has: committing it would put the
            # pool's last round far ahead of every round under the new interval.
            return f"round {round_} belongs to the pool's previous interval; not ticked"
        if not reports:
            return f"round {round_} has no observations; not ticked"
        base = pool if restore is None else restore
        result = tick(expire_overrides(base, now), merge_observations(reports), now)
        least = None if restore is None else restore.version + 1
        done = self.store.commit(
            pool, result.pool, result.events, self.settings.poller_id, now, round_, least
        )
        ok, why = done
        if ok:
            # What this poller wrote is the newest state it has seen (a rollback below it is
            # told from this, even if it never reads this version back).
            version = max(pool.version + 1, least or 0)
            self.seen[name] = replace(result.pool, version=version, last_round=round_)
            return result.pool
        return "version" if why == "version" else f"round {round_} already committed"

    def schedule_deadline(self, record: RoundRecord, pool: PoolState) -> None:
        """Commit the round at its deadline if no other poller did (a dead poller costs at most
        this wait until its heartbeat expires)."""
        start = record.round * pool.interval
        delay = start + self.settings.deadline(pool.interval) - self.now()
        previous = self.pending.get(pool.name)
        if previous is not None and not previous.dead:
            previous.kill(block=False)
        self.pending[pool.name] = gevent.spawn_later(
            max(0.0, delay), self.commit_at_deadline, record.pool, record.round
        )

    def commit_at_deadline(self, pool: str, round_: int) -> None:
        report = CycleReport(rounds={pool: round_})
        try:
            report.committed.update(self.commit_rounds([(pool, round_)], report))
        except REDIS_DOWN_ERRORS as exc:
            log.warning("deadline commit of %s round %d: Redis unreachable: %s", pool, round_, exc)
            return
        except Exception:  # a greenlet of its own: nothing above it would log this
            log.exception("deadline commit of %s round %d failed", pool, round_)
            return
        if report.committed:
            log.info(
                "round %d deadline: committed %s", round_, describe_pool(report.committed[pool])
            )

    # ---------------------------------------------------------------- the loop

    def heartbeat(self, report: CycleReport, cycle_seconds: float) -> None:
        now = self.now()
        pools = sorted(self.handled)
        # Lag: how long after its round started the latest round was committed.
        starts = [report.rounds[name] * p.interval for name, p in report.committed.items()]
        lag = max((now - start for start in starts), default=0.0)
        info = {
            "poller_id": self.settings.poller_id,
            "pools": pools,
            "started_at": round(self.started_at, 3),
            "last_cycle_at": round(now, 3),
            "cycle_seconds": round(cycle_seconds, 4),
            "probe_seconds": round(report.probe_seconds, 4),
            "lag": round(lag, 4),
        }
        intervals = [p.interval for p in report.committed.values()] or [10.0]
        self.store.heartbeat(self.settings.poller_id, info, now, ttl=3 * max(intervals) + 5)

    def next_wake(self, pools: Sequence[PoolState]) -> float:
        """Seconds until the next round start of any pool (at most MAX_SLEEP)."""
        now = self.now()
        waits = [(round_of(now, p.interval) + 1) * p.interval - now for p in pools]
        return min([MAX_SLEEP, *waits])

    def run(self, stop: Callable[[], bool], wait: Callable[[float], bool]) -> None:
        """Cycle until ``stop()``; ``wait(seconds)`` sleeps and returns True if stopping."""
        while not stop():
            started = time.monotonic()
            try:
                report = self.cycle()
                if report.rounds:
                    log.info("%s", report.sentence())
                    self.heartbeat(report, time.monotonic() - started)
                delay = self.next_wake(report.pools)
            except REDIS_DOWN_ERRORS as exc:
                log.warning("Redis unreachable (%s); retrying in %gs", exc, REDIS_RETRY_DELAY)
                delay = REDIS_RETRY_DELAY
            except Exception:  # the loop must survive any one bad cycle (house style rule 6)
                log.exception("poll cycle failed; the next cycle goes on")
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
        for greenlet in self.pending.values():
            greenlet.kill(block=False)
        try:
            self.store.leave(self.settings.poller_id, self.handled)
        except REDIS_DOWN_ERRORS as exc:
            log.warning("could not deregister from Redis on exit: %s", exc)
