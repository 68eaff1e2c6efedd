"""The MPP failover state machine as pure functions.

``tick(pool, observations, now)`` applies MPP's per-node rules A to E and its commit steps to
a whole pool, node by node in priority order, each node seeing the decisions already made in
the same tick. The admin transitions (recover, recover pool,
activate-primary, delete, override, release) are pure too. Nothing here does I/O, reads a
clock or logs: time comes in as ``now``, reasons go out as events.

Deliberate divergences from the original MPP are marked DIVERGENCE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from mpp_agent import switchover
from mpp_agent.candidates import MSG_HELD, held_back
from mpp_agent.model import (
    Event,
    EventKind,
    Failback,
    Fence,
    NodeId,
    NodeState,
    Observation,
    Outcome,
    Override,
    Pause,
    PoolState,
    PoolStatus,
    Replication,
    State,
    Status,
    Switchover,
    evolve,
)
from mpp_agent.positions import lacks
from mpp_agent.routing import route

CLEAR = "--"  # MPP's sentinel: "healthy, clear the message"

MSG_RELINQUISH_CONTROL = "Relinquishing ACTIVE control to PRIMARY"
MSG_NOT_FAILING = "Not failing from ACTIVE state because no other server is on standby"
MSG_INSTATEMENT = "PRIMARY instatement to ACTIVE complete."
MSG_WAITING = "Waiting for SECONDARY to stand down before instatement to ACTIVE."
MSG_FAILED_PRIMARY_RECOVERY = (
    "FAILED PRIMARY server is reporting recovery. Manual intervention required."
)
MSG_RELINQUISHING = "Relinquishing ACTIVE state to PRIMARY."
MSG_READY_TO_RELINQUISH = "Ready to relinquish ACTIVE state to PRIMARY."
MSG_FAILOVER = "FAILOVER: Taking over ACTIVE state."
MSG_FAILED_RECOVERY = "FAILED server is reporting recovery. Manual intervention required."
MSG_MANUAL_RECOVERY = "Manual Recovery Initiated."
MSG_MANUALLY_REINSTATED = "PRIMARY Manually reinstated as ACTIVE."
MSG_READ_ONLY = "ACTIVE node is read_only"
MSG_MANUAL_FAILBACK = (
    "Fail-back is manual: STANDBY until activate-primary or switchover moves writes here."
)
MSG_SWITCHOVER = "SWITCHOVER: Taking over ACTIVE state."
MSG_SWITCHED_AWAY = "SWITCHOVER: writes moved to {target}."
MSG_REPLICAS_RECEIVE = "ACTIVE unreachable from the pollers but its replicas still receive from it"
MSG_NOT_FAILING_ALIVE = "Not failing from ACTIVE state because its replicas still receive from it"
RECOVERING_PREFIX = "(recovering) "


def pool_override_suffix(pool_status: PoolStatus) -> str:
    # Commit step C1; "wile" is MPP's spelling, kept word for word.
    return f" (Server not allowed to be active wile POOL has {pool_status} status.)"


class Exit(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    HOLD = "HOLD"  # the round neither counts nor resets R (the replicas' view)


@dataclass(frozen=True)
class Decision:
    """What one evaluation of a node decided, before the commit steps."""

    exit: Exit
    state: State | None = None
    status: Status | None = None
    message: str | None = None
    rule: str = ""
    replicas_view: str | None = None  # NodeState.replicas_view after this evaluation


@dataclass(frozen=True)
class TickResult:
    pool: PoolState
    events: tuple[Event, ...]
    rules: Mapping[NodeId, str]  # which rule decided each evaluated node
    # How each evaluated node's evaluation exited (OK resets R, WARN and FAIL count it).
    exits: Mapping[NodeId, Exit] = field(default_factory=dict)


class AdminRefused(Exception):
    """An admin transition that MPP refuses; the message is MPP's text where MPP has one."""


@dataclass(frozen=True)
class AdminResult:
    pool: PoolState
    output: str
    events: tuple[Event, ...]


# --------------------------------------------------------------------------- the tick


def tick(
    pool: PoolState,
    observations: Mapping[NodeId, Observation],
    now: float,
    *,
    pool_failed: bool = False,
) -> TickResult:
    """One poll cycle of a pool: the rules (``run_rules``), then the switchover in progress.

    A paused pool commits no state change: its rules run on the pause's shadow only
    (``paused_tick``). A pause past its ``--for`` ends here, and this tick runs as usual."""
    resumed: tuple[Event, ...] = ()
    if pool.pause is not None and pool.pause.is_expired(now):
        ended = resume_pool(pool, by="expiry")
        pool, resumed = ended.pool, ended.events
    if pool.pause is not None:
        return paused_tick(pool, observations, now, pool_failed=pool_failed)
    result = run_rules(pool, observations, now, pool_failed=pool_failed)
    if pool.switchover is not None:
        result = advance_switchover(pool, result, observations, now)
    return evolve(result, events=resumed + result.events) if resumed else result


def run_rules(
    pool: PoolState,
    observations: Mapping[NodeId, Observation],
    now: float,
    *,
    pool_failed: bool = False,
) -> TickResult:
    """The rules A to E over the pool. Nodes without an observation are not evaluated this
    tick, nor are nodes whose observation is an abstention (every poller was at fault, not the
    node).

    ``pool_failed`` reports a pool FAIL detected this cycle; pool FAIL is sticky until
    ``recover_pool``."""
    status = PoolStatus.FAIL if pool_failed or pool.status is PoolStatus.FAIL else PoolStatus.OK
    events: list[Event] = []
    if status is not pool.status:
        events.append(Event(EventKind.POOL_STATUS, pool.name, message=f"{pool.status} -> {status}"))
    current = evolve(pool, status=status)
    observations = excuse_cut_links(pool, observations)
    rules: dict[NodeId, str] = {}
    exits: dict[NodeId, Exit] = {}
    for index, before in enumerate(pool.nodes):
        observation = observations.get(before.node)
        if observation is None:
            continue
        note = observation.monitor_note or (observation.message if observation.is_abstained else "")
        if observation.is_abstained:
            # Every poller that saw the node blamed itself: not evaluated (R, status and state
            # unchanged), only the reason is kept for operators.
            current = with_node(current, index, evolve(before, monitor_note=note or None))
            continue
        before = with_sync(pool, before, observation, now)
        current = with_node(current, index, before)
        decision = decide(current, index, observation, observations, now=now)
        after = evolve(
            commit(before, decision, status, now),
            monitor_note=note or None,
            replication=observation.replication or before.replication,
            replicas_view=decision.replicas_view,
        )
        after, gate_event = catch_up(pool, before, after, now)
        rules[before.node] = decision.rule
        exits[before.node] = decision.exit
        current = with_node(current, index, after)
        event = transition_event(pool.name, before, after, decision.rule)
        if event is not None:
            events.append(event)
        if gate_event is not None:
            events.append(gate_event)
        if decision.rule.endswith(HELD_SUFFIX) and not is_held(before):
            events.append(
                admin_event(EventKind.HELD, pool.name, before, after, extra={"level": "WARNING"})
            )
    return TickResult(current, tuple(events), rules, exits)


def last_active_position(pool: PoolState, node: NodeState) -> Replication | None:
    """The replication values of the pool's ACTIVE (other than ``node``) as last observed."""
    return next(
        (
            n.replication
            for n in pool.nodes
            if n.state is State.ACTIVE and n.node != node.node and n.replication is not None
        ),
        None,
    )


def lacks_of(reference: Replication | None, details: Replication | None) -> int | None:
    """Transactions of ``reference``'s binlog position that ``details`` does not hold."""
    if reference is None or details is None:
        return None
    return lacks(reference.binlog, details.binlog, details.applied, details.received)


def with_sync(pool: PoolState, node: NodeState, observation: Observation, now: float) -> NodeState:
    """``synced_at`` moves to ``now`` when the node is the ACTIVE, or when this round's
    observation holds everything of the ACTIVE's last known position (``pool`` as it was
    before the tick: a dead ACTIVE's position stays what it last was)."""
    if node.state is State.ACTIVE and observation.outcome is not Outcome.CONNECT:
        return evolve(node, synced_at=now)
    if lacks_of(last_active_position(pool, node), observation.replication) == 0:
        return evolve(node, synced_at=now)
    return node


HELD_SUFFIX = "-held"


def is_held(node: NodeState) -> bool:
    """Whether the node's message says the lag gate holds it (its event is already written)."""
    return (node.message or "").removeprefix(RECOVERING_PREFIX).startswith(MSG_HELD)


def catch_up(
    pool: PoolState, before: NodeState, after: NodeState, now: float
) -> tuple[NodeState, Event | None]:
    """The catch-up gate: a node that becomes ACTIVE while its last observation shows received
    transactions not yet applied takes no writes (``routing``) until an observation shows them
    applied, or until the pool's catch-up timeout has passed: then writes open anyway, with a
    WARNING event (availability wins). Leaving ACTIVE ends the gate."""
    if after.state is not State.ACTIVE:
        return (evolve(after, catchup_until=None), None) if after.catchup_until else (after, None)
    details = after.replication
    caught_up = details is None or details.caught_up is not False
    if before.state is not State.ACTIVE:
        if caught_up or pool.catchup_timeout <= 0:
            return after, None
        gated = evolve(after, catchup_until=now + pool.catchup_timeout)
        text = f"catching up ({behind_text(gated)}): no writes until it has applied them"
        return gated, gate_event(pool, gated, text, "INFO")
    if after.catchup_until is None:
        return after, None
    if caught_up:
        return evolve(after, catchup_until=None), gate_event(
            pool, after, "caught up: writes open", "INFO"
        )
    if now >= after.catchup_until:
        text = (
            f"catch-up timeout ({pool.catchup_timeout:g}s) passed with {behind_text(after)}: "
            "writes open before the node has applied everything it received"
        )
        return evolve(after, catchup_until=None), gate_event(pool, after, text, "WARNING")
    return after, None


def behind_text(node: NodeState) -> str:
    """``<n> behind`` (received, not applied), or ``relay log not applied`` when only the
    binlog file positions tell."""
    unapplied = node.replication.unapplied if node.replication else None
    return f"{unapplied} behind" if unapplied is not None else "relay log not applied"


def gate_event(pool: PoolState, node: NodeState, text: str, level: str) -> Event:
    return Event(
        EventKind.CATCHUP,
        pool.name,
        node=str(node.node),
        to_state=node.state,
        to_status=node.status,
        requests=node.requests,
        message=text,
        extra={"level": level},
    )


def decide(
    pool: PoolState,
    index: int,
    observation: Observation,
    observations: Mapping[NodeId, Observation] | None = None,
    *,
    now: float = 0.0,
) -> Decision:
    """Rules A to E for the node at ``index``, seeing ``pool`` as updated so far this tick and
    this round's ``observations`` of every node (default: only this node's); ``now`` is for
    the lag gate."""
    node = pool.nodes[index]
    seen = observations if observations is not None else {node.node: observation}
    pre = rule_a(pool, node)
    if (
        node.state is State.ACTIVE
        and is_read_only(observation)
        and not is_draining(pool, node)
        and not is_fenced(pool, node, now)
    ):
        # An ACTIVE that refuses writes is failing like one that cannot be reached: writes
        # move after M ticks when another node can take over (the node itself is up).
        errors = MSG_READ_ONLY
        if observation.outcome is Outcome.REQUEST:
            errors = f"{MSG_READ_ONLY}, {observation.message}"
        decision = rules_b(pool, index, errors, seen, failed=State.FAILED_ONLINE, rule="B-ro")
    elif observation.outcome is Outcome.CONNECT:
        receivers = replicas_view(pool, index, observation, seen)
        if receivers:
            decision = rule_b_alive(observation, receivers)
        else:
            decision = rules_b(pool, index, observation.message, seen)
    elif observation.outcome is Outcome.REQUEST:
        decision = rules_c(pool, node, observation.message)
    elif node.is_primary:
        decision = lag_gate(pool, node, rules_d(pool, index), now)
    else:
        decision = lag_gate(pool, node, rules_e(pool, index), now)
    if pre is not None and decision.state is None:
        # Rule A is a pre-step: its state survives unless a later rule sets one.
        decision = evolve(decision, state=pre.state, rule=f"A+{decision.rule}")
    return decision


def is_draining(pool: PoolState, node: NodeState) -> bool:
    """The source of a switchover in progress: read_only by design (fencing), not failing."""
    return pool.switchover is not None and pool.switchover.source == node.node


def lag_gate(pool: PoolState, node: NodeState, decision: Decision, now: float) -> Decision:
    """A takeover (D2, E6) by a node that lagged beyond the pool's ``max_failover_lag`` does
    not happen: the node stays STANDBY (OK_WARN) with a message saying why and what to run."""
    if decision.state is not State.ACTIVE or node.state is State.ACTIVE:
        return decision
    why = held_back(pool, node, now)
    if why is None:
        return decision
    return Decision(
        Exit.OK, status=Status.OK_WARN, message=why, rule=f"{decision.rule}{HELD_SUFFIX}"
    )


def rule_a(pool: PoolState, node: NodeState) -> Decision | None:
    primary = pool.primary
    if (
        primary is not None
        and primary.state is State.ACTIVE
        and not node.is_primary
        and node.state is State.ACTIVE
    ):
        return Decision(Exit.OK, state=State.STANDBY, message=MSG_RELINQUISH_CONTROL, rule="A")
    return None


def is_failing_threshold(pool: PoolState, node: NodeState) -> bool:
    """The M-th consecutive failed poll: pre-poll R >= M-1, as MPP counts."""
    return node.r >= pool.max_requests - 1


def is_read_only(observation: Observation) -> bool:
    """A node that answered and said it is read_only (or super_read_only)."""
    details = observation.replication
    return (
        observation.outcome in (Outcome.HEALTHY, Outcome.REQUEST)
        and details is not None
        and details.read_only is True
    )


def is_fenced(pool: PoolState, node: NodeState, now: float) -> bool:
    """Whether an ACTIVE's read_only is the pollers' own fencing (``fence`` = ``read_only``),
    not a fault: they hold it read_only while it takes no writes (catching up, writes pinned
    elsewhere), and until they have opened it (its stored read_only is not OFF yet). Only an
    ACTIVE they had opened, and still keep writable, fails for reporting read_only."""
    if pool.fence is not Fence.READ_ONLY:
        return False
    opened = node.replication is not None and node.replication.read_only is False
    return not (opened and route(pool, now).write_target == node.node)


def excuse_cut_links(
    pool: PoolState, observations: Mapping[NodeId, Observation]
) -> Mapping[NodeId, Observation]:
    """DIVERGENCE (replaces the probe's blanket excuse): a node whose only replication error is
    an IO thread that cannot reach its source is healthy only when that source is a node of
    the pool that is connect-failing in the same round (the master-master failover case: the
    source is down, not the link). Cut off from a living source, or from a source outside the
    pool or not observed this round, it stays MPP's replication error: its data is ageing."""
    excused = {
        node: Observation(
            Outcome.HEALTHY, monitor_note=obs.monitor_note, replication=obs.replication
        )
        for node, obs in observations.items()
        if obs.outcome is Outcome.REQUEST
        and obs.replication is not None
        and obs.replication.source_unreachable
        and source_is_down(pool, obs, observations)
    }
    return {**observations, **excused} if excused else observations


def source_is_down(
    pool: PoolState, observation: Observation, observations: Mapping[NodeId, Observation]
) -> bool:
    """Whether the node ``observation`` replicates from is connect-failing this round. The
    source is the pool node written as the slave status's ``host:port``, or else the one whose
    server_id is the slave status's ``Master_Server_Id``."""
    details = observation.replication
    if details is None:
        return False
    for n in pool.nodes:
        seen = observations.get(n.node)
        if seen is None:
            continue
        server_id = (seen.replication or n.replication or Replication()).server_id
        named = details.source == str(n.node)
        same_id = details.source_server_id is not None and server_id == details.source_server_id
        if named or (same_id and not any(details.source == str(m.node) for m in pool.nodes)):
            return seen.outcome is Outcome.CONNECT
    return False


def replicas_view(
    pool: PoolState,
    index: int,
    observation: Observation,
    observations: Mapping[NodeId, Observation],
) -> tuple[NodeId, ...]:
    """The replicas' view before failing an unreachable ACTIVE (holistic detection, as
    orchestrator declares a master dead only when its replicas lost it too): the other nodes
    whose IO thread reports in this round that it is connected to and receiving from the
    node at ``index``. Empty, so the round counts as usual, unless that node is ACTIVE and
    the round's merged verdict is that the pollers could not reach it at all
    (``Observation.unreachable``): 1040 Too many connections, a hung server or a query
    error are what clients see too, and count."""
    node = pool.nodes[index]
    if (
        node.state is not State.ACTIVE
        or observation.outcome is not Outcome.CONNECT
        or not observation.unreachable
    ):
        return ()
    return tuple(
        n.node
        for i, n in enumerate(pool.nodes)
        if i != index and receives_from(node, observations.get(n.node))
    )


def receives_from(source: NodeState, seen: Observation | None) -> bool:
    """Whether ``seen`` (a node's verdict this round) shows its IO thread connected to
    ``source`` and receiving: ``Slave_IO_Running`` is ``Yes`` ("Connecting" means it lost
    the source) and the link is not reported cut. The source is matched by server_id where
    both are known (``Master_Server_Id`` against ``source``'s server_id from its last
    successful observation: right even when the pollers and the replica reach it by
    different addresses), else by ``host:port``."""
    details = None if seen is None or seen.is_abstained else seen.replication
    if details is None or details.source_unreachable:
        return False
    if details.io_running.strip().lower() != "yes":
        return False
    known = source.replication.server_id if source.replication is not None else None
    if known and details.source_server_id:
        return details.source_server_id == known
    return details.source == str(source.node)


def rule_b_alive(observation: Observation, receivers: tuple[NodeId, ...]) -> Decision:
    """An unreachable ACTIVE that its replicas still receive from is alive: the round does
    not count toward failing it (R neither advances nor resets), it stays ACTIVE with
    STATUS OK_WARN, and the message says why it is not failed over."""
    return Decision(
        Exit.HOLD,
        status=Status.OK_WARN,
        message=f"{observation.message}; {MSG_NOT_FAILING_ALIVE}",
        rule="B-replicas",
        replicas_view=f"{MSG_REPLICAS_RECEIVE}: {', '.join(map(str, receivers))}",
    )


def rules_b(
    pool: PoolState,
    index: int,
    errors: str,
    observations: Mapping[NodeId, Observation],
    *,
    failed: State = State.FAILED_OFFLINE,
    rule: str = "B",
) -> Decision:
    node = pool.nodes[index]
    if not is_failing_threshold(pool, node):
        return Decision(Exit.WARN, status=Status.OK_WARN, message=errors, rule=f"{rule}2")
    if node.state is State.ACTIVE and not can_take_over(pool, index, observations):
        # DIVERGENCE: the ACTIVE node is not failed while no other node can take over this
        # tick; it stays ACTIVE, counting, and takes writes again when it comes back.
        return Decision(
            Exit.WARN,
            status=Status.OK_WARN,
            message=f"{errors}; {MSG_NOT_FAILING}",
            rule=f"{rule}1-last-active",
        )
    return Decision(Exit.FAIL, state=failed, status=Status.FAIL, message=errors, rule=f"{rule}1")


def can_take_over(pool: PoolState, index: int, observations: Mapping[NodeId, Observation]) -> bool:
    """DIVERGENCE (fixes MPP bugs #1 and #2, and the all-nodes-fail-at-once case): another
    node, higher or lower, that is STANDBY or ACTIVE *and* observed healthy in this round."""
    return any(
        n.state in (State.STANDBY, State.ACTIVE) and is_observed_healthy(n, observations)
        for i, n in enumerate(pool.nodes)
        if i != index
    )


def is_observed_healthy(node: NodeState, observations: Mapping[NodeId, Observation]) -> bool:
    observation = observations.get(node.node)
    return observation is not None and observation.is_healthy


def rules_c(pool: PoolState, node: NodeState, errors: str) -> Decision:
    if not is_failing_threshold(pool, node):
        return Decision(Exit.WARN, status=Status.OK_WARN, message=errors, rule="C3")
    if node.state is State.ACTIVE:
        # An ACTIVE node is never failed for replication errors.
        return Decision(Exit.WARN, status=Status.OK_WARN, message=errors, rule="C1")
    return Decision(
        Exit.FAIL, state=State.FAILED_ONLINE, status=Status.FAIL, message=errors, rule="C2"
    )


def rules_d(pool: PoolState, index: int) -> Decision:
    node = pool.nodes[index]
    if node.state is State.ACTIVE:
        return Decision(Exit.OK, status=Status.OK, message=CLEAR, rule="D1")
    if node.state is State.STANDBY:
        if any(n.state is State.ACTIVE for n in pool.nodes[index + 1 :]):
            if pool.failback is Failback.MANUAL:
                return Decision(
                    Exit.OK, status=Status.OK, message=MSG_MANUAL_FAILBACK, rule="D3-manual"
                )
            return Decision(Exit.OK, status=Status.OK_WARN, message=MSG_WAITING, rule="D3")
        return Decision(
            Exit.WARN,
            state=State.ACTIVE,
            status=Status.OK_WARN,
            message=MSG_INSTATEMENT,
            rule="D2",
        )
    if node.state is State.UNKNOWN:
        return Decision(Exit.OK, state=State.STANDBY, status=Status.OK, rule="D4")
    return Decision(Exit.OK, status=Status.OK_WARN, message=MSG_FAILED_PRIMARY_RECOVERY, rule="D5")


def rules_e(pool: PoolState, index: int) -> Decision:
    node = pool.nodes[index]
    if node.state is State.ACTIVE:
        return rules_e_active(pool, node)
    if node.state is State.STANDBY:
        if any(is_blocking_higher(n) for n in pool.nodes[:index]):
            return Decision(Exit.OK, status=Status.OK, message=CLEAR, rule="E5")
        if any(n.state is State.ACTIVE for n in pool.nodes[index + 1 :]):
            # DIVERGENCE: a lower node is already ACTIVE; taking over would leave two ACTIVE.
            return Decision(Exit.OK, status=Status.OK, message=CLEAR, rule="E5-lower-active")
        return Decision(
            Exit.WARN, state=State.ACTIVE, status=Status.OK_WARN, message=MSG_FAILOVER, rule="E6"
        )
    if node.state is State.UNKNOWN:
        return Decision(Exit.OK, state=State.STANDBY, status=Status.OK, rule="E7")
    return Decision(Exit.OK, status=Status.OK, message=MSG_FAILED_RECOVERY, rule="E8")


def is_blocking_higher(node: NodeState) -> bool:
    """Rule E5: a HIGHER node whose STATUS is OK or OK_WARN blocks a secondary's takeover.
    DIVERGENCE (MPP bug #3): a FAILED_* node never blocks, whatever its STATUS."""
    return node.status.is_ok and not node.state.is_failed


def rules_e_active(pool: PoolState, node: NodeState) -> Decision:
    primary = pool.primary
    primary_state = primary.state if primary is not None else None
    if primary_state is State.STANDBY and holds_writer(pool):
        return Decision(Exit.OK, status=Status.OK, message=CLEAR, rule="E4-manual")
    if primary_state is State.ACTIVE:
        return Decision(
            Exit.WARN,
            state=State.STANDBY,
            status=Status.OK_WARN,
            message=MSG_RELINQUISHING,
            rule="E1",
        )
    if primary_state is State.STANDBY and node.r >= 1:
        return Decision(
            Exit.OK,
            state=State.STANDBY,
            status=Status.OK_WARN,
            message=MSG_RELINQUISHING,
            rule="E2",
        )
    if primary_state is State.STANDBY:
        return Decision(
            Exit.WARN, status=Status.OK_WARN, message=MSG_READY_TO_RELINQUISH, rule="E3"
        )
    return Decision(Exit.OK, status=Status.OK, message=CLEAR, rule="E4")


def holds_writer(pool: PoolState) -> bool:
    """No hand-back to a STANDBY primary: fail-back is manual, or a switchover decides."""
    return pool.failback is Failback.MANUAL or pool.switchover is not None


def commit(node: NodeState, decision: Decision, pool_status: PoolStatus, now: float) -> NodeState:
    """The commit steps of MPP's ``poll_exit``, in MPP's order."""
    state, message = decision.state, decision.message
    # Step C1: no node may be ACTIVE while the pool status is not OK.
    would_be_active = state is State.ACTIVE or (state is None and node.state is State.ACTIVE)
    if pool_status is not PoolStatus.OK and would_be_active:
        state = State.STANDBY
        message = (message or "") + pool_override_suffix(pool_status)
    # Step 2: R, and the "(recovering)" rule on an OK exit after trouble.
    if decision.exit is Exit.OK:
        if node.r >= 1:
            shown = message if message is not None and message != CLEAR else node.message
            message = RECOVERING_PREFIX + (shown or "")
        requests = 0
    elif decision.exit is Exit.HOLD:
        requests = node.r
    else:
        requests = node.r + 1
    # Step 3: write what was set; "--" deletes the message.
    if message == CLEAR:
        new_message: str | None = None
    elif message is None:
        new_message = node.message
    else:
        new_message = message
    return evolve(
        node,
        state=state if state is not None else node.state,
        status=decision.status if decision.status is not None else node.status,
        requests=requests,
        message=new_message,
        last_request_time=now,
    )


def transition_event(pool: str, before: NodeState, after: NodeState, rule: str) -> Event | None:
    """DIVERGENCE: only a change of state or status is an event; a tick that leaves both as
    they were (R counting, a new error text) writes nothing to the history."""
    if (before.state, before.status) == (after.state, after.status):
        return None
    return Event(
        EventKind.TRANSITION,
        pool,
        node=str(before.node),
        from_state=before.state,
        to_state=after.state,
        from_status=before.status,
        to_status=after.status,
        requests=after.requests,
        message=after.message or "",
        extra={"rule": rule},
    )


# --------------------------------------------------------------------------- admin transitions


def node_index(pool: PoolState, node: NodeId) -> int:
    for i, n in enumerate(pool.nodes):
        if n.node == node:
            return i
    raise AdminRefused(f"Server {node} is not a member of pool {pool.name}.")


def with_node(pool: PoolState, index: int, node: NodeState) -> PoolState:
    return evolve(pool, nodes=(*pool.nodes[:index], node, *pool.nodes[index + 1 :]))


def admin_event(
    kind: EventKind,
    pool: str,
    before: NodeState,
    after: NodeState,
    extra: dict[str, str] | None = None,
) -> Event:
    return Event(
        kind,
        pool,
        node=str(before.node),
        from_state=before.state,
        to_state=after.state,
        from_status=before.status,
        to_status=after.status,
        requests=after.requests,
        message=after.message or "",
        extra=extra or {},
    )


def recover_node(pool: PoolState, node: NodeId) -> AdminResult:
    """MPP's ``--recover=<host:port>``."""
    index = node_index(pool, node)
    before = pool.nodes[index]
    if before.requests is None:
        return AdminResult(pool, f"Server {node} requests number not set.", ())
    after = evolve(
        before,
        requests=0,
        message=MSG_MANUAL_RECOVERY,
        state=State.UNKNOWN,
        status=Status.OK_WARN,
    )
    output = (
        f"OK: Cached level reset from {before.status}/{before.requests} ({before.state}) "
        f"to OK_WARN/0 (UNKNOWN) for {node}"
    )
    event = admin_event(EventKind.RECOVER, pool.name, before, after)
    return AdminResult(with_node(pool, index, after), output, (event,))


def recover_pool(pool: PoolState) -> AdminResult:
    """MPP's ``--recover=pool:<name>``: the pool status goes back to OK."""
    output = f"OK: Pool status reset from {pool.status} to OK"
    event = Event(EventKind.RECOVER_POOL, pool.name, message=output)
    return AdminResult(evolve(pool, status=PoolStatus.OK), output, (event,))


def activate_primary(pool: PoolState, now: float) -> AdminResult:
    """MPP's ``--activate-primary``.

    DIVERGENCE: any other ACTIVE node is demoted to STANDBY in the same change, so there are
    never two ACTIVE nodes. Refused while the pool status is FAIL (commit step C1 would
    otherwise be bypassed)."""
    primary = pool.primary
    if primary is None:
        raise AdminRefused(f"Pool {pool.name} has no PRIMARY server to activate.")
    if primary.state is not State.STANDBY:
        raise AdminRefused(
            f"PRIMARY SERVER {primary.node} IS NOT READY. STATE must be STANDBY for activation."
        )
    if pool.status is not PoolStatus.OK:
        raise AdminRefused(
            f"PRIMARY SERVER {primary.node} IS NOT READY. "
            f"POOL status must be OK for activation (it is {pool.status})."
        )
    promoted = evolve(primary, state=State.ACTIVE, message=MSG_MANUALLY_REINSTATED)
    after, events = hand_writer_to(pool, primary, promoted, EventKind.ACTIVATE_PRIMARY, now)
    output = f"PRIMARY SERVER {primary.node} STATE is now ACTIVE."
    return AdminResult(after, output, events)


def hand_writer_to(
    pool: PoolState,
    target: NodeState,
    promoted: NodeState,
    kind: EventKind,
    now: float,
    demoted_message: str = MSG_RELINQUISHING,
) -> tuple[PoolState, tuple[Event, ...]]:
    """An admin change of writer: ``target`` becomes ``promoted`` (ACTIVE) and any other
    ACTIVE node STANDBY, in one change (never two ACTIVE). The new ACTIVE passes the catch-up
    gate like a node the tick makes ACTIVE; an event for each node that changed."""
    events: list[Event] = []
    nodes: list[NodeState] = []
    for n in pool.nodes:
        if n is target:
            after, _ = catch_up(pool, n, promoted, now)
        elif n.state is State.ACTIVE:
            after = evolve(n, state=State.STANDBY, message=demoted_message, catchup_until=None)
        else:
            nodes.append(n)
            continue
        events.append(admin_event(kind, pool.name, n, after))
        nodes.append(after)
    return evolve(pool, nodes=tuple(nodes)), tuple(events)


MSG_MANUAL_FAILOVER = "FAILOVER by hand: Taking over ACTIVE state."


def failover_to(pool: PoolState, node: NodeId, now: float, *, force: bool = False) -> AdminResult:
    """``mpp-admin failover POOL --to NODE``: promote a chosen node by hand.

    The node must be STANDBY (``force``: also UNKNOWN or FAILED_*, e.g. a standby the lag
    gate or a cut link left behind). Any other ACTIVE node is demoted to STANDBY in the same
    change (never two ACTIVE). Refused while the pool status is FAIL, as activate-primary is.
    The new ACTIVE passes the catch-up gate like any other; the output says what it lacks of
    every other node's last known position."""
    index = node_index(pool, node)
    target = pool.nodes[index]
    if target.state is State.ACTIVE:
        raise AdminRefused(f"Server {node} is already ACTIVE in pool {pool.name}.")
    if target.state is not State.STANDBY and not force:
        raise AdminRefused(
            f"Server {node} is {target.state}, not STANDBY: use --force to promote it anyway."
        )
    if pool.status is not PoolStatus.OK:
        raise AdminRefused(
            f"Pool {pool.name} status is {pool.status}: recover the pool first "
            f"(mpp-admin recover --pool {pool.name})."
        )
    manual = evolve(
        target, state=State.ACTIVE, status=Status.OK_WARN, requests=0,
        message=MSG_MANUAL_FAILOVER, synced_at=now,
    )  # fmt: skip
    promoted, events = hand_writer_to(pool, target, manual, EventKind.FAILOVER, now)
    output = [f"OK: Server {node} STATE is now ACTIVE (was {target.state}/{target.status})."]
    output += lacks_report(pool, target)
    new = promoted.nodes[index]
    if new.catchup_until is not None:
        output.append(
            f"It takes writes once it has applied what it received ({behind_text(new)}), "
            f"at the latest in {pool.catchup_timeout:g}s."
        )
    return AdminResult(promoted, "\n".join(output), events)


def lacks_report(pool: PoolState, target: NodeState) -> list[str]:
    """What ``target`` lacks of every other node's last known position, one line each."""
    lines = []
    for n in pool.nodes:
        if n is target or n.replication is None or not n.replication.binlog:
            continue
        missing = lacks_of(n.replication, target.replication)
        if missing is None:
            lines.append(f"Unknown what it lacks of {n.node} (positions not comparable).")
        elif missing:
            lines.append(
                f"It lacks {missing} transaction(s) of {n.node}'s last known position "
                f"({n.replication.binlog})."
            )
        else:
            lines.append(f"It lacks nothing of {n.node}'s last known position.")
    return lines


def delete_node(pool: PoolState, node: NodeId) -> AdminResult:
    """MPP's ``--delete=<host:port>``. DIVERGENCE: the node also leaves the
    pool's configuration, so it is not recreated by the next configure."""
    index = node_index(pool, node)
    before = pool.nodes[index]
    output = f"OK: Cached server {node} with {before.r} request attempts was deleted."
    event = Event(
        EventKind.DELETE,
        pool.name,
        node=str(node),
        from_state=before.state,
        from_status=before.status,
        requests=before.requests,
        message=output,
    )
    nodes = pool.nodes[:index] + pool.nodes[index + 1 :]
    return AdminResult(evolve(pool, nodes=nodes), output, (event,))


def set_override(pool: PoolState, node: NodeId, override: Override) -> AdminResult:
    """Pin what the agent answers for a node; the state machine keeps running underneath."""
    index = node_index(pool, node)
    before = pool.nodes[index]
    if override.state is State.ACTIVE:
        # Moving writes takes two steps: an ACTIVE override only where no other node takes
        # writes now (the routing decision; it also pins the writer, so never two writers).
        writer = route(pool, override.set_at).writer
        if writer is not None and writer.node != node:
            raise AdminRefused(
                f"Server {node} cannot be overridden to ACTIVE while {writer.node} is "
                f"ACTIVE; override {writer.node} to STANDBY first."
            )
    after = evolve(before, override=override)
    status = f"/{override.status}" if override.status else ""
    until = f" until {utc_text(override.expires_at)}" if override.expires_at is not None else ""
    output = f"OK: Override {override.state}{status} set for {node}{until}: {override.reason}"
    event = Event(
        EventKind.OVERRIDE,
        pool.name,
        node=str(node),
        to_state=override.state,
        to_status=override.status or "",
        message=override.reason,
    )
    return AdminResult(with_node(pool, index, after), output, (event,))


def utc_text(epoch: float) -> str:
    """A time in an output text, with its zone (the core has no local time zone: UTC)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def release_override(pool: PoolState, node: NodeId) -> AdminResult:
    index = node_index(pool, node)
    before = pool.nodes[index]
    if before.override is None:
        raise AdminRefused(f"Server {node} has no override to release.")
    after = evolve(before, override=None)
    event = Event(EventKind.RELEASE, pool.name, node=str(node), message=before.override.reason)
    return AdminResult(with_node(pool, index, after), f"OK: Override released for {node}", (event,))


def expire_overrides(pool: PoolState, now: float) -> PoolState:
    """Drop overrides whose expiry has passed (applied by every writer before it commits)."""
    if not any(n.override is not None and n.override.is_expired(now) for n in pool.nodes):
        return pool
    nodes = tuple(
        evolve(n, override=None) if n.override is not None and n.override.is_expired(now) else n
        for n in pool.nodes
    )
    return evolve(pool, nodes=nodes)


# --------------------------------------------------------------------------- switchover


def start_switchover(
    pool: PoolState, to: NodeId | None, now: float, timeout: float, by: str = ""
) -> AdminResult:
    """``mpp-admin switchover POOL [--to NODE]``: store the switchover; the ticks carry it out
    (``switchover.progress``). From this change on the source takes no writes."""
    try:
        record = switchover.start(pool, to, now, timeout, by)
    except switchover.SwitchoverRefused as exc:
        raise AdminRefused(str(exc)) from None
    text = (
        f"started: writes stop on {record.source}; {record.target} takes them once it has "
        f"applied everything {record.source} wrote (at the latest in {timeout:g}s)"
    )
    output = f"OK: Switchover of pool {pool.name} from {record.source} to {record.target} {text}."
    event = switchover_event(pool, record, text, record.source)
    return AdminResult(evolve(pool, switchover=record), output, (event,))


def switchover_event(pool: PoolState, record: Switchover, text: str, node: NodeId) -> Event:
    return Event(
        EventKind.SWITCHOVER,
        pool.name,
        node=str(node),
        message=text,
        extra={"source": str(record.source), "target": str(record.target)},
    )


def advance_switchover(
    before: PoolState,
    result: TickResult,
    observations: Mapping[NodeId, Observation],
    now: float,
) -> TickResult:
    """One tick of the switchover in progress: wait, move the writer, or abandon."""
    record = before.switchover
    assert record is not None
    verdict = switchover.progress(before, result.pool, observations, now)
    pool = evolve(result.pool, switchover=verdict.switchover)
    events = list(result.events)
    if verdict.step is switchover.Step.FLIP:
        target = pool.find(record.target)
        assert target is not None
        promoted = evolve(
            target, state=State.ACTIVE, status=Status.OK, message=MSG_SWITCHOVER, synced_at=now
        )
        away = MSG_SWITCHED_AWAY.format(target=record.target)
        pool, moved = hand_writer_to(pool, target, promoted, EventKind.SWITCHOVER, now, away)
        events += moved
    if verdict.text:
        level = "WARNING" if verdict.step is switchover.Step.ABANDON else "INFO"
        flipped = verdict.step is switchover.Step.FLIP
        event = switchover_event(
            pool, record, verdict.text, record.target if flipped else record.source
        )
        events.append(evolve(event, extra={**event.extra, "level": level}))
    return evolve(result, pool=pool, events=tuple(events))


def abandon_switchover(pool: PoolState, now: float) -> AdminResult:
    """Abandon a switchover past its deadline that no poller has ticked (the command that
    started it gives up waiting): the source takes writes again."""
    record = pool.switchover
    if record is None:
        raise AdminRefused(f"Pool {pool.name} has no switchover in progress.")
    if now < record.deadline:
        raise AdminRefused(f"The switchover of pool {pool.name} has not timed out yet.")
    text = "abandoned: timeout passed and no poller ticked the pool; the source takes writes again"
    event = switchover_event(pool, record, text, record.source)
    event = evolve(event, extra={**event.extra, "level": "WARNING"})
    return AdminResult(evolve(pool, switchover=None), f"Switchover {text}.", (event,))


# --------------------------------------------------------------------------- pause


def pause_pool(
    pool: PoolState, reason: str, by: str, now: float, until: float | None
) -> AdminResult:
    """``mpp-admin pause POOL``: the pollers keep probing; no state change is committed."""
    if pool.is_paused(now) and pool.pause is not None:
        raise AdminRefused(
            f"Pool {pool.name} is already paused by {pool.pause.set_by} "
            f"({pool.pause.reason}): resume it first."
        )
    if pool.switchover is not None:
        raise AdminRefused(
            f"A switchover of pool {pool.name} is in progress: wait for it to finish."
        )
    held = Pause(reason, by, now, until, shadow=pool.nodes)
    text = f"paused: {reason}" + (f" until {utc_text(until)}" if until is not None else "")
    event = Event(EventKind.PAUSE, pool.name, message=text)
    output = f"OK: Pool {pool.name} {text}; no state change is committed until resume."
    return AdminResult(evolve(pool, pause=held), output, (event,))


def resume_pool(pool: PoolState, by: str = "") -> AdminResult:
    """``mpp-admin resume POOL`` (``by="expiry"``: the pause's time is up): the state machine
    continues from the held state and the live observations; the shadow is dropped."""
    if pool.pause is None:
        raise AdminRefused(f"Pool {pool.name} is not paused.")
    why = "pause expired" if by == "expiry" else "resumed"
    would = f" (it would have done: {pool.pause.would})" if pool.pause.would else ""
    text = f"{why} after {pool.pause.reason!r}{would}"
    event = Event(EventKind.RESUME, pool.name, message=text)
    return AdminResult(evolve(pool, pause=None), f"OK: Pool {pool.name} {text}.", (event,))


def paused_tick(
    pool: PoolState,
    observations: Mapping[NodeId, Observation],
    now: float,
    *,
    pool_failed: bool = False,
) -> TickResult:
    """A round of a paused pool: the rules run on the shadow (what would have happened), the
    held nodes only record what was read of them (replication, monitor notes)."""
    held = pool.pause
    assert held is not None
    # The shadow follows the pool's membership (a node added or removed meanwhile).
    kept = {n.node: n for n in held.shadow}
    members = tuple(evolve(kept[n.node], type=n.type) if n.node in kept else n for n in pool.nodes)
    shadow = evolve(pool, nodes=members, pause=None)
    would = run_rules(shadow, observations, now, pool_failed=pool_failed).pool
    seen = {n.node: n for n in would.nodes}
    nodes = tuple(
        evolve(n, replication=seen[n.node].replication, monitor_note=seen[n.node].monitor_note)
        if n.node in seen
        else n
        for n in pool.nodes
    )
    pause = evolve(held, shadow=would.nodes, would=would_text(pool, would))
    return TickResult(evolve(pool, nodes=nodes, pause=pause), (), {}, {})


def would_text(held: PoolState, would: PoolState) -> str:
    """How the state machine's view differs from the held state, e.g. ``would fail
    10.0.0.1:3306 over; would make 10.0.0.2:3306 ACTIVE``; "" when it does not."""
    parts = []
    shadow = {n.node: n for n in would.nodes}
    for n in held.nodes:
        other = shadow.get(n.node)
        if other is None or other.state is n.state:
            continue
        if other.state.is_failed:
            parts.append(f"would fail {n.node}" + (" over" if n.state is State.ACTIVE else ""))
        else:
            parts.append(f"would make {n.node} {other.state}")
    if would.status is not held.status:
        parts.append(f"would set the pool {would.status}")
    return "; ".join(parts)
