"""The poller's fencing step: after committing a round, apply that round's fencing plan.

``Poller`` calls ``Fencer.reconcile`` with the state it has just committed and the round's
merged observations. The plan (``fencing.plan``, pure) says which nodes to set read_only ON or
OFF; this shell sets them concurrently with the fencing account (``probe.set_read_only``,
each bounded by the pool's probe timeouts), then records what it did in one compare-and-set
of the pool (``Store.commit`` as an admin-style change: the nodes' stored read_only and one
``fenced``/``unfenced`` event each), so the agent opens a new ACTIVE's writes at once instead
of after the next round's probe.

A fencing account that is missing (a pool has ``fence`` = ``read_only`` and this poller no
``--fence-user``) or refused (access denied, a privilege missing) fails no node: the probes
use the monitoring account and never see it. It is said in a WARNING when it starts and one
when it ends, and listed under ``fencing`` in the poller's heartbeat (``mpp-admin pollers``).
``reconcile`` never raises: the commit it follows stands whatever happens here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable, Mapping

import gevent

from mpp_agent.fencing import (
    FenceAction,
    FencingCounter,
    Step,
    is_reachable,
    plan,
    recorded,
    step_event,
)
from mpp_agent.model import Fence, NodeId, Observation, PoolState
from mpp_agent.probe import FenceAccount, FenceReply, set_read_only
from mpp_agent.store import REDIS_DOWN_ERRORS, BadKey, Store, UnknownPool
from mpp_agent.timeouts import Timeouts, fit

log = logging.getLogger("mpp.poller")

RECORD_RETRIES = 3
NOT_RECORDED: tuple[type[Exception], ...] = (UnknownPool, BadKey, *REDIS_DOWN_ERRORS)
NO_ACCOUNT = (
    "pool has fence=read_only but this poller has no fencing account "
    "(--fence-user / MPP_FENCE_USER): read_only is not kept"
)
NO_PASSWORD = (
    "pool has fence=read_only but this poller's fencing account has no password "
    "(--fence-password-file or MPP_FENCE_PASSWORD): read_only is not kept"
)

SetReadOnly = Callable[[NodeId, FenceAccount, bool, float, float], FenceReply]
ProblemKey = tuple[str, str]  # (pool, node); node "" for the pool as a whole


class Fencer:
    def __init__(
        self,
        store: Store,
        account: FenceAccount | None,
        poller_id: str,
        limits: Timeouts,
        apply: SetReadOnly = set_read_only,
    ) -> None:
        self.store = store
        self.account = account
        self.poller_id = poller_id
        self.limits = limits
        self.apply = apply
        self.counter = FencingCounter()
        self.problems: dict[ProblemKey, str] = {}

    def reconcile(
        self, pool: PoolState, observations: Mapping[NodeId, Observation], now: float
    ) -> list[Step]:
        """Apply ``pool``'s fencing plan (``pool`` as committed, with its new version); the
        steps done. Never raises."""
        try:
            return self._reconcile(pool, observations, now)
        except Exception as exc:  # the commit stands; the next round derives the plan anew
            log.error(
                "fencing of pool %s failed: %s: %s (traceback at DEBUG)",
                pool.name,
                type(exc).__name__,
                exc,
            )
            log.debug("fencing of pool %s failed", pool.name, exc_info=True)
            return []

    def _reconcile(
        self, pool: PoolState, observations: Mapping[NodeId, Observation], now: float
    ) -> list[Step]:
        if pool.fence is not Fence.READ_ONLY:
            self.settle(pool.name, {}, keep=())
            return []
        retry = [NodeId.parse(k[1]) for k in self.problems if k[0] == pool.name and k[1]]
        steps = plan(pool, observations, now, recheck=retry)
        unseen = [n.node for n in pool.nodes if not is_reachable(observations.get(n.node))]
        if self.account is None or not self.account.password:
            # Connecting could only be refused: the poller's fault, said without trying.
            why = NO_ACCOUNT if self.account is None else NO_PASSWORD
            self.settle(pool.name, {(pool.name, ""): why}, keep=())
            for step in steps:
                self.counter.add(pool.name, step.node, FenceAction.FAILED)
            return []
        replies = self.run(pool, steps)
        failures = {
            (pool.name, str(step.node)): f"cannot set read_only: {r.text}"
            for step, r in replies.items()
            if not r.done
        }
        self.settle(pool.name, failures, keep=unseen)
        done = [step for step, reply in replies.items() if reply.done and step.is_change]
        for step, reply in replies.items():
            if step.is_change or not reply.done:
                action = step.action if reply.done else FenceAction.FAILED
                self.counter.add(pool.name, step.node, action)
        if done:
            self.record(pool, done)
        return done

    def run(self, pool: PoolState, steps: Iterable[Step]) -> dict[Step, FenceReply]:
        """Every step at once, each bounded by the pool's probe timeouts."""
        bounds = fit(pool.interval, self.limits)
        jobs = {step: gevent.spawn(self.bounded, step, bounds) for step in steps}
        gevent.joinall(list(jobs.values()))
        return {step: job.value for step, job in jobs.items()}

    def bounded(self, step: Step, bounds: Timeouts) -> FenceReply:
        assert self.account is not None
        try:
            with gevent.Timeout(bounds.probe):
                return self.apply(
                    step.node, self.account, step.read_only, bounds.connect, bounds.read
                )
        except gevent.Timeout:
            return FenceReply(False, f"no answer within {bounds.probe:.3g}s")

    def record(self, pool: PoolState, done: list[Step]) -> None:
        """The new read_only values and their events, in one compare-and-set (re-read and
        applied again if another writer came first)."""
        events = [step_event(pool, step, self.poller_id) for step in done]
        for step, event in zip(done, events, strict=True):
            log.info("pool %s node %s: %s", pool.name, step.node, event.message)
        current = pool
        try:
            for _ in range(RECORD_RETRIES):
                result = self.store.commit(
                    current, recorded(current, done), events, self.poller_id, None
                )
                if result.committed:
                    return
                current = self.store.load_pool(pool.name)
        except NOT_RECORDED as exc:
            log.warning("pool %s: fencing done but not recorded: %s", pool.name, exc)
            return
        log.warning(
            "pool %s: fencing done but not recorded (the pool kept changing); the next round "
            "observes it",
            pool.name,
        )

    def settle(
        self, pool: str, now_failing: Mapping[ProblemKey, str], keep: Iterable[NodeId]
    ) -> None:
        """Say each problem of ``pool`` once when it starts and once when it ends (WARNING);
        a node not observed this round (``keep``) keeps the problem it had."""
        kept = {(pool, str(node)) for node in keep}
        before = {k: v for k, v in self.problems.items() if k[0] == pool}
        after = {k: v for k, v in before.items() if k in kept}
        after.update(now_failing)
        started = {k: why for k, why in after.items() if before.get(k) != why}
        for why, names in grouped(started):
            log.warning("fencing %s: %s", ", ".join(names), why)
        for why, names in grouped({k: why for k, why in before.items() if k not in after}):
            log.warning("fencing %s works again (was: %s)", ", ".join(names), why)
        self.problems = {k: v for k, v in self.problems.items() if k[0] != pool} | after

    def forget_pools(self, present: Container[str]) -> None:
        """Only the problems and counts of the pools ``present`` kept (the others were
        removed: ``mpp-admin pollers`` must not go on listing them)."""
        self.problems = {k: v for k, v in self.problems.items() if k[0] in present}
        self.counter.forget_pools(present)

    def heartbeat(self) -> dict[str, str]:
        """What ``mpp-admin pollers`` lists under ``fencing``: ``pool[/node]`` -> the problem."""
        return {where(key): why for key, why in sorted(self.problems.items())}


def grouped(problems: Mapping[ProblemKey, str]) -> list[tuple[str, list[str]]]:
    """Problems by their text, each with its ``pool[/node]`` names: one log line each."""
    groups: dict[str, list[str]] = {}
    for key, why in sorted(problems.items()):
        groups.setdefault(why, []).append(where(key))
    return sorted(groups.items())


def where(key: ProblemKey) -> str:
    pool, node = key
    return f"{pool}/{node}" if node else pool
