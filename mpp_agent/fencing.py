"""read_only fencing: which nodes the committing poller sets read_only ON or OFF, as pure data.

With the pool setting ``fence`` = ``read_only`` (effects on MySQL are derived from the
committed state and reconciled every round), the poller that committed a round's tick brings
every node's ``read_only`` in line with the routing decision of that state:

* the one node ``routing.route(pool, now)`` keeps writable (``PoolRoute.write_target``: the
  writer once its catch-up gate has opened, not pinned away, not stopped) gets
  ``read_only=OFF``;
* every other node gets ``read_only=ON`` (``super_read_only=ON`` on MySQL 8): STANDBY,
  FAILED_*, UNKNOWN, an ACTIVE still catching up or whose writes an override moved elsewhere,
  every node of a pool without a writer.

Only nodes that answered this round are touched (a connect-failing or unobserved node cannot
be, and is fenced in the first round it answers again: a hung or restarted old primary), and
only when what the round observed differs from what they should be (an unknown read_only,
e.g. a node every poller abstained on, counts as differing): a steady pool costs no
connection at all. Because it is derived anew every round from the committed state, a poller
that dies half-way is repaired by whichever poller commits the next round.

This module also records what was done: the pool with the new read_only values in its nodes'
stored replication (so that the agent opens writes at once, without waiting for the next
round's observation) and one ``fenced``/``unfenced`` event per change. Pure: no I/O, no
clock, no logging.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from mpp_agent.model import (
    Event,
    EventKind,
    Fence,
    NodeId,
    NodeState,
    Observation,
    Outcome,
    PoolState,
    Replication,
    State,
)
from mpp_agent.routing import NodeRoute, route


class FenceAction(StrEnum):
    """What the fencing does to a node, as its metrics label (``action``)."""

    FENCE = "fence"  # read_only=ON
    UNFENCE = "unfence"  # read_only=OFF
    FAILED = "failed"  # either, refused or not done


@dataclass(frozen=True)
class Step:
    """One change the fencing makes: set ``node``'s read_only to ``read_only``, because
    ``why``; ``observed`` is what the round saw (None: unknown)."""

    node: NodeId
    read_only: bool
    observed: bool | None
    why: str

    @property
    def is_change(self) -> bool:
        """False for a recheck of a node that already is as it should be."""
        return self.observed is not self.read_only

    @property
    def action(self) -> FenceAction:
        return FenceAction.FENCE if self.read_only else FenceAction.UNFENCE


def observed_read_only(observation: Observation) -> bool | None:
    details = observation.replication
    return None if details is None else details.read_only


def is_reachable(observation: Observation | None) -> bool:
    """Whether the fencing may try the node: it was observed this round and not as a node that
    cannot be connected to (an abstention is tried: the monitoring account's fault says
    nothing about the node)."""
    return observation is not None and observation.outcome is not Outcome.CONNECT


def plan(
    pool: PoolState,
    observations: Mapping[NodeId, Observation],
    now: float,
    recheck: Collection[NodeId] = (),
) -> tuple[Step, ...]:
    """The changes that bring ``pool``'s nodes in line with its routing decision at ``now``
    (``pool`` is the state just committed, ``observations`` that round's merged verdicts);
    empty for a pool without ``fence`` = ``read_only``. Nodes in ``recheck`` (the last try
    failed) get their step even when already as they should be: setting a value a node
    already has is how the shell finds out that the fencing account works again."""
    if pool.fence is not Fence.READ_ONLY:
        return ()
    decision = route(pool, now)
    target = decision.write_target
    steps = []
    for node in pool.nodes:
        observation = observations.get(node.node)
        if observation is None or not is_reachable(observation):
            continue
        want = node.node != target
        observed = observed_read_only(observation)
        if observed is want and node.node not in recheck:
            continue
        steps.append(Step(node.node, want, observed, reason(node, decision.find(node.node))))
    return tuple(steps)


def reason(node: NodeState, decided: NodeRoute | None) -> str:
    """Why a node is set as it is, for its event: its state, and the routing reason when
    that is what keeps an ACTIVE from writes."""
    if decided is not None and decided.is_write_target:
        return f"{node.state}: takes writes"
    if decided is not None and node.state is State.ACTIVE:
        return f"{node.state}: takes no writes ({decided.why[0]})"
    return f"{node.state}: takes no writes"


def recorded(pool: PoolState, done: Iterable[Step]) -> PoolState:
    """``pool`` with each done step's read_only in its node's stored replication: what the
    agent routes by until the next round observes it."""
    values = {step.node: step.read_only for step in done if step.is_change}
    if not values:
        return pool
    nodes = tuple(
        replace(n, replication=replace(n.replication or Replication(), read_only=values[n.node]))
        if n.node in values
        else n
        for n in pool.nodes
    )
    return replace(pool, nodes=nodes)


def step_event(pool: PoolState, step: Step, poller: str) -> Event:
    """The history's record of one change: ``fenced`` (read_only=ON) or ``unfenced``
    (read_only=OFF). No state or status: the node's did not change (the message says it)."""
    value = "ON" if step.read_only else "OFF"
    was = "unknown" if step.observed is None else ("ON" if step.observed else "OFF")
    return Event(
        EventKind.FENCED if step.read_only else EventKind.UNFENCED,
        pool.name,
        node=str(step.node),
        message=f"read_only={value} (was {was}) by poller {poller}: {step.why}",
        extra={"level": "INFO", "read_only": value},
    )


class FencingCounter:
    """How many fencing actions a poller took, by (pool, node, action): what a Prometheus
    counter ``mpp_poller_fencing_actions_total{pool,node,action}`` exports."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, pool: str, node: NodeId | str, action: FenceAction) -> None:
        self._counts[(pool, str(node), action.value)] += 1

    def forget_pools(self, present: Container[str]) -> None:
        """Only the counts of the pools ``present`` kept (the others were removed)."""
        self._counts = Counter({k: v for k, v in self._counts.items() if k[0] in present})

    def samples(self) -> dict[tuple[str, str, str], int]:
        """Every (pool, node, action) counted so far, with its count."""
        return dict(self._counts)

    def total(self, action: FenceAction | None = None) -> int:
        return sum(c for (_, _, a), c in self._counts.items() if action is None or a == action)
