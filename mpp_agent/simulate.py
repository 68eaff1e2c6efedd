"""Run the pure MPP state machine over a scripted sequence: no Redis, no MySQL, no clock.

A script is one step a line, split like a shell line (``shlex``: quotes allowed, a ``#`` outside
quotes starts a comment; blank and comment lines are ignored)::

    pool <failoverpool string> [max_requests=N] [failback=auto|manual] [force]
    cycle [<node>=connect:<text>] [<node>=unreachable:<text>] [<node>=request:<text>]
          [<node>=abstain:<text>] [<node>=receives:<source>] [<node>=connecting:<source>]
          [<node>=at:<binlog>[/<applied>]] [pool:<name>=fail] ...
    recover <node> [pool=<name>]
    recover pool:<name>
    activate-primary <pool>
    delete <node> [pool=<name>]
    switchover <pool> [to=<node>] [timeout=<steps>]
    pause <pool> [<reason>] [for=<steps>]
    resume <pool>

* ``pool`` creates a pool from MPP's failoverpool string; naming an existing pool re-applies
  the configuration, which replaces it (a divergence from MPP; removing the ACTIVE node
  needs ``force``).
* ``cycle`` ticks every pool once, in the order the pools were created. A node not listed is
  healthy this tick. ``connect:<text>`` becomes MPP's probe message ``Could not connect to mysql
  host <node>: <text>``; ``request:<text>`` is the request-error message verbatim;
  ``unreachable:<text>`` is the same connect error when the pollers could not reach the node
  at all (refused, timed out, no route), the only kind its replicas' view can speak against;
  ``abstain:<text>`` is a round in which every poller abstained on the node (the monitor was at
  fault, e.g. its password was refused): the node is not evaluated. ``receives:<source>`` is
  a healthy node whose IO thread is connected to and receiving from ``<source>``;
  ``connecting:<source>`` one whose IO thread lost ``<source>`` and is reconnecting. A node in
  several pools gets the same outcome in each. ``pool:<name>=fail`` reports that the pool's
  checkpoints all failed this cycle (pool FAIL, sticky until ``recover pool:<name>``).
* ``at:<binlog>[/<applied>]`` is a healthy round that read the node's replication positions
  (GTID texts; ``applied`` defaults to the binlog position): what a switchover compares.
* ``switchover``, ``pause`` and ``resume`` are ``mpp-admin``'s commands; ``timeout`` and
  ``for`` count in steps (the clock of a script). Every ``cycle`` is the round numbered by its
  step.
* ``recover`` and ``delete`` act on the one pool holding the node; a node in several pools must
  be written with ``pool=<name>``, or the step is refused.

Every tick gets the step number as ``now``. A refused step (MPP's refusal, an unknown node or
pool) is reported and the run goes on; a malformed line raises ``ScriptError`` before anything
runs. ``parse_script`` and ``run_steps`` are pure; the renderers turn results into text.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mpp_agent.config import PoolConfig, PoolConfigError, apply_config, new_pool, parse_failoverpool
from mpp_agent.model import (
    DEFAULT_SWITCHOVER_TIMEOUT,
    Failback,
    NodeId,
    NodeIdError,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    PoolState,
    Replication,
)
from mpp_agent.state import (
    AdminRefused,
    activate_primary,
    delete_node,
    pause_pool,
    recover_node,
    recover_pool,
    resume_pool,
    start_switchover,
    tick,
)
from mpp_agent.views import operator_notes

POOL_PREFIX = "pool:"  # MPP's --recover=pool:<name> form


class ScriptError(ValueError):
    """A malformed script line: nothing of the script runs."""

    def __init__(self, line_no: int, line: str, reason: str) -> None:
        super().__init__(f"line {line_no}: {reason}: {line}")
        self.line_no = line_no
        self.line = line
        self.reason = reason


class LineError(ValueError):
    """What is wrong with one line; ``parse_script`` adds the line number."""


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class CreatePool:
    config: PoolConfig
    force: bool = False


@dataclass(frozen=True)
class Cycle:
    observations: tuple[tuple[NodeId, Observation], ...] = ()
    failed_pools: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecoverNode:
    node: NodeId
    pool: str | None = None


@dataclass(frozen=True)
class RecoverPool:
    name: str


@dataclass(frozen=True)
class ActivatePrimary:
    name: str


@dataclass(frozen=True)
class DeleteNode:
    node: NodeId
    pool: str | None = None


@dataclass(frozen=True)
class StartSwitchover:
    name: str
    to: NodeId | None = None
    timeout: float = DEFAULT_SWITCHOVER_TIMEOUT


@dataclass(frozen=True)
class PausePool:
    name: str
    reason: str = "paused"
    duration: float | None = None


@dataclass(frozen=True)
class ResumePool:
    name: str


Action = (
    CreatePool
    | Cycle
    | RecoverNode
    | RecoverPool
    | ActivatePrimary
    | DeleteNode
    | StartSwitchover
    | PausePool
    | ResumePool
)


@dataclass(frozen=True)
class Step:
    number: int  # 1-based count of steps; also the tick's ``now``
    line_no: int  # 1-based line in the script
    command: str  # the line as written, stripped
    action: Action


@dataclass(frozen=True)
class StepResult:
    step: int
    command: str
    output: str  # what the step printed (MPP's text), or ""
    error: str  # why the step was refused, or ""
    pools: tuple[PoolState, ...]  # every pool after the step, in creation order


# --------------------------------------------------------------------------- parsing


def parse_script(text: str) -> tuple[Step, ...]:
    """Parse a whole script; the first malformed line raises ``ScriptError``."""
    steps: list[Step] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        try:
            words = shlex.split(line, comments=True)
            if not words:
                continue
            action = parse_action(words[0], words[1:])
        except (LineError, ValueError) as exc:
            # shlex raises ValueError on an unclosed quote.
            raise ScriptError(line_no, line, str(exc)) from None
        steps.append(Step(len(steps) + 1, line_no, line, action))
    return tuple(steps)


def parse_action(verb: str, args: list[str]) -> Action:
    if verb == "pool":
        return parse_pool(args)
    if verb == "cycle":
        return parse_cycle(args)
    if verb == "recover":
        if len(args) == 1 and args[0].startswith(POOL_PREFIX):
            return RecoverPool(pool_name(args[0].removeprefix(POOL_PREFIX)))
        node, pool = parse_node_and_pool(verb, args)
        return RecoverNode(node, pool)
    if verb == "activate-primary":
        if len(args) != 1:
            raise LineError("activate-primary takes one pool name")
        return ActivatePrimary(pool_name(args[0]))
    if verb == "delete":
        node, pool = parse_node_and_pool(verb, args)
        return DeleteNode(node, pool)
    if verb in ("switchover", "pause", "resume"):
        return parse_pool_command(verb, args)
    raise LineError(
        f"unknown step {verb!r} (expected pool, cycle, recover, activate-primary, delete, "
        "switchover, pause or resume)"
    )


def parse_pool_command(verb: str, args: list[str]) -> StartSwitchover | PausePool | ResumePool:
    if not args:
        raise LineError(f"{verb} needs a pool name")
    name, options = pool_name(args[0]), dict(option(verb, a) for a in args[1:] if "=" in a)
    words = [a for a in args[1:] if "=" not in a]
    allowed = {"switchover": {"to", "timeout"}, "pause": {"for"}, "resume": set()}[verb]
    if set(options) - allowed or (words and verb != "pause"):
        raise LineError(f"bad {verb} arguments {args[1:]!r}")
    if verb == "switchover":
        to = parse_node(options["to"]) if "to" in options else None
        return StartSwitchover(name, to, number(options.get("timeout", "30")))
    if verb == "pause":
        duration = number(options["for"]) if "for" in options else None
        return PausePool(name, " ".join(words) or "paused", duration)
    return ResumePool(name)


def option(verb: str, arg: str) -> tuple[str, str]:
    key, _, value = arg.partition("=")
    if not value:
        raise LineError(f"{verb}: {key}= needs a value")
    return key, value


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LineError(f"not a number: {text!r}") from None
    if not value > 0:
        raise LineError(f"must be more than 0: {text!r}")
    return value


def parse_pool(args: list[str]) -> CreatePool:
    if not args:
        raise LineError("pool needs a failoverpool string")
    max_requests: int | None = None
    force = False
    failback = Failback.AUTO
    for arg in args[1:]:
        if arg == "force":
            force = True
        elif arg.startswith("failback="):
            try:
                failback = Failback(arg.removeprefix("failback="))
            except ValueError:
                raise LineError(f"failback must be auto or manual, not {arg!r}") from None
        elif arg.startswith("max_requests="):
            value = arg.removeprefix("max_requests=")
            if not value.isdigit():
                raise LineError(f"max_requests must be a whole number, not {value!r}")
            max_requests = int(value)
        else:
            raise LineError(
                f"unknown pool option {arg!r} (expected max_requests=N, failback= or force)"
            )
    try:
        if max_requests is None:
            config = parse_failoverpool(args[0])
        else:
            config = parse_failoverpool(args[0], max_requests=max_requests)
        return CreatePool(replace(config, failback=failback), force)
    except PoolConfigError as exc:
        raise LineError(f"bad failoverpool string: {exc}") from None


def parse_cycle(args: list[str]) -> Cycle:
    observations: dict[NodeId, Observation] = {}
    failed: list[str] = []
    for arg in args:
        target, sep, outcome = arg.partition("=")
        if not sep:
            raise LineError(f"bad outcome {arg!r} (expected <node>=connect:<text> or ...)")
        if target.startswith(POOL_PREFIX):
            if outcome != "fail":
                raise LineError(f"bad pool outcome {arg!r} (expected pool:<name>=fail)")
            failed.append(pool_name(target.removeprefix(POOL_PREFIX)))
            continue
        node = parse_node(target)
        if node in observations:
            raise LineError(f"node {node} is given two outcomes")
        observations[node] = parse_outcome(node, outcome)
    return Cycle(tuple(observations.items()), tuple(failed))


def parse_outcome(node: NodeId, outcome: str) -> Observation:
    kind, sep, text = outcome.partition(":")
    if kind in ("connect", "unreachable") and sep:
        # Connect errors are worded as MPP's probe words them.
        return Observation.connect_error(node, text, unreachable=kind == "unreachable")
    if kind in ("receives", "connecting") and sep:
        return replica_outcome(kind == "receives", parse_node(text))
    if kind == "request" and sep and text:
        return Observation(Outcome.REQUEST, text)
    if kind == "at" and sep and text:
        binlog, _, applied = text.partition("/")
        details = Replication(binlog=binlog, applied=applied or binlog, unapplied=0)
        return Observation(Outcome.HEALTHY, replication=details)
    if kind == "abstain" and sep and text:
        # Every poller blamed itself this round: the node is not evaluated.
        note = f"monitor cannot check: {text}"
        return Observation(Outcome.ABSTAIN, note, monitor_note=note)
    raise LineError(
        f"bad outcome {outcome!r} for {node} "
        "(expected connect:<text>, unreachable:<text>, request:<text>, abstain:<text>, "
        "receives:<source>, connecting:<source> or at:<binlog>[/<applied>])"
    )


def replica_outcome(receiving: bool, source: NodeId) -> Observation:
    """A replica of ``source`` whose IO thread receives from it (healthy), or lost it and is
    reconnecting (MPP's IO error, the link reported cut: the tick excuses it when ``source``
    is connect-failing in the same cycle)."""
    if receiving:
        details = Replication(source=str(source), io_running="Yes", sql_running="Yes")
        return Observation(Outcome.HEALTHY, replication=details)
    details = Replication(
        source=str(source), io_running="Connecting", sql_running="Yes", source_unreachable=True
    )
    error = "Slave Error: Slave IO is not running, Slave_IO_Running=Connecting."
    return Observation(Outcome.REQUEST, error, replication=details)


def parse_node_and_pool(verb: str, args: list[str]) -> tuple[NodeId, str | None]:
    if len(args) == 1:
        return parse_node(args[0]), None
    if len(args) == 2 and args[1].startswith("pool="):
        return parse_node(args[0]), pool_name(args[1].removeprefix("pool="))
    raise LineError(f"{verb} takes <host[:port]> [pool=<name>]")


def parse_node(text: str) -> NodeId:
    try:
        return NodeId.parse(text)
    except NodeIdError as exc:
        raise LineError(str(exc)) from None


def pool_name(text: str) -> str:
    if not text:
        raise LineError("empty pool name")
    return text


# --------------------------------------------------------------------------- running


def run_steps(steps: Iterable[Step]) -> tuple[StepResult, ...]:
    """Run parsed steps from no pools at all; each result holds the pools after its step."""
    pools: dict[str, PoolState] = {}
    results: list[StepResult] = []
    for step in steps:
        output, error = "", ""
        try:
            pools, output = run_action(pools, step.action, step.number)
        except AdminRefused as exc:
            error = str(exc)
        results.append(StepResult(step.number, step.command, output, error, tuple(pools.values())))
    return tuple(results)


def run_action(
    pools: Mapping[str, PoolState], action: Action, now: int
) -> tuple[dict[str, PoolState], str]:
    """One step: the pools after it and what it printed; a refusal raises AdminRefused."""
    after = dict(pools)
    if isinstance(action, CreatePool):
        after[action.config.name] = configure(pools.get(action.config.name), action)
        return after, ""
    if isinstance(action, Cycle):
        return run_cycle(pools, action, now), ""
    if isinstance(action, RecoverPool):
        result = recover_pool(find_pool(pools, action.name))
    elif isinstance(action, StartSwitchover):
        found = find_pool(pools, action.name)
        result = start_switchover(found, action.to, now, action.timeout, "simulate")
    elif isinstance(action, PausePool):
        until = None if action.duration is None else now + action.duration
        result = pause_pool(find_pool(pools, action.name), action.reason, "simulate", now, until)
    elif isinstance(action, ResumePool):
        result = resume_pool(find_pool(pools, action.name))
    elif isinstance(action, ActivatePrimary):
        result = activate_primary(find_pool(pools, action.name), now)
    elif isinstance(action, RecoverNode):
        result = recover_node(pool_of(pools, action.node, action.pool, "recover"), action.node)
    else:
        result = delete_node(pool_of(pools, action.node, action.pool, "delete"), action.node)
    after[result.pool.name] = result.pool
    return after, result.output


def configure(existing: PoolState | None, action: CreatePool) -> PoolState:
    if existing is None:
        return new_pool(action.config)
    try:
        return apply_config(existing, action.config, force=action.force)
    except PoolConfigError as exc:
        raise AdminRefused(str(exc)) from None


def run_cycle(pools: Mapping[str, PoolState], cycle: Cycle, now: int) -> dict[str, PoolState]:
    known = {n.node for p in pools.values() for n in p.nodes}
    for node, _ in cycle.observations:
        if node not in known:
            raise AdminRefused(f"Server {node} is not a member of any pool.")
    for name in cycle.failed_pools:
        find_pool(pools, name)
    outcomes = dict(cycle.observations)
    after = {}
    for name, pool in pools.items():
        # Every node is probed every cycle; a node not listed answered healthily.
        observations = {n.node: outcomes.get(n.node, Observation.healthy()) for n in pool.nodes}
        failed = name in cycle.failed_pools
        # the round of this cycle is the step number (what a switchover counts rounds by)
        after[name] = replace(
            tick(pool, observations, now, pool_failed=failed).pool, last_round=now
        )
    return after


def find_pool(pools: Mapping[str, PoolState], name: str) -> PoolState:
    if name not in pools:
        raise AdminRefused(f"No pool named {name}.")
    return pools[name]


def pool_of(pools: Mapping[str, PoolState], node: NodeId, name: str | None, verb: str) -> PoolState:
    """The pool a node-level admin step acts on (a node in several pools needs ``pool=``)."""
    if name is not None:
        return find_pool(pools, name)
    holding = [p for p in pools.values() if p.has_node(node)]
    if not holding:
        raise AdminRefused(f"Server {node} is not a member of any pool.")
    if len(holding) > 1:
        names = ", ".join(p.name for p in holding)
        raise AdminRefused(f"Server {node} is in pools {names}; write: {verb} {node} pool=<name>")
    return holding[0]


def simulate(text: str) -> tuple[StepResult, ...]:
    """Parse and run a whole script (``ScriptError`` if it is malformed)."""
    return run_steps(parse_script(text))


# --------------------------------------------------------------------------- rendering

# MPP's --list layout without the time column: T, Server Name, req, Status, State, Last Status
# Message; each left-aligned, padded, followed by two spaces.
LIST_WIDTHS = (1, 30, 3, 7, 14, 19)
LIST_HEADER = ("T", "Server Name", "req", "Status", "State", "Last Status Message")
TYPE_LETTER = {NodeType.PRIMARY: "P", NodeType.SECONDARY: "S"}


def list_row(values: Sequence[str]) -> str:
    return "".join(f"{v:<{w}}  " for v, w in zip(values, LIST_WIDTHS, strict=True))


def list_node(node: NodeState) -> str:
    requests = "" if node.requests is None else str(node.requests)  # unset R prints blank
    return list_row(
        (
            TYPE_LETTER.get(node.type, "U"),
            str(node.node),
            requests,
            node.status,
            node.state,
            node.message or "",
        )
    )


def render_listing(pools: Iterable[PoolState]) -> list[str]:
    """MPP's --list-cached-pools: header once, then each pool line and its nodes, in priority
    order (MPP sorted them by name, a cosmetic bug #21 we do not copy in simulate)."""
    lines = [list_row(LIST_HEADER), list_row(tuple("-" * w for w in LIST_WIDTHS))]
    for pool in pools:
        lines.append(f"*  [ {pool.name} ] status={pool.status}")
        lines.extend(f"  {note}" for note in operator_notes(pool, pool_now(pool)))
        for node in pool.nodes:
            lines.append(list_node(node))
            if node.monitor_note:
                lines.append(f"  M {node.monitor_note}")
            if node.replicas_view:
                lines.append(f"  ! {node.replicas_view}")
    return lines


def pool_now(pool: PoolState) -> float:
    """The time of a pool in a script: its last cycle's step (what a pause expires by)."""
    return float(max(pool.last_round, 0))


def render_text(results: Iterable[StepResult]) -> str:
    blocks = []
    for result in results:
        lines = [f"== step {result.step}: {result.command}"]
        lines.extend(result.output.splitlines())
        lines.extend(f"error: {line}" for line in result.error.splitlines())
        lines.extend(render_listing(result.pools))
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def result_document(result: StepResult) -> dict[str, Any]:
    return {
        "step": result.step,
        "command": result.command,
        "output": result.output,
        "error": result.error,
        "pools": [pool_document(p) for p in result.pools],
    }


def pool_document(pool: PoolState) -> dict[str, Any]:
    return {
        "name": pool.name,
        "status": str(pool.status),
        **(
            {"notes": operator_notes(pool, pool_now(pool))} if pool.pause or pool.switchover else {}
        ),
        "nodes": [
            {
                "node": str(n.node),
                "type": str(n.type),
                "requests": n.r,  # 0 for a node never polled
                "status": str(n.status),
                "state": str(n.state),
                "message": n.message or "",
                "monitor_note": n.monitor_note or "",
                # Only while the replicas' view holds the node's failover (older scripts'
                # outputs stay as they were).
                **({"replicas_view": n.replicas_view} if n.replicas_view else {}),
            }
            for n in pool.nodes
        ],
    }


def render_json_lines(results: Iterable[StepResult]) -> str:
    return "".join(json.dumps(result_document(r)) + "\n" for r in results)
