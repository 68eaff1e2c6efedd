"""Pool configuration: MPP's failoverpool string, parsed and rendered, and new pools from it.

The failoverpool string is ``name:<pool>;primary:<host>[:<port>];secondary:<host>[:<port>]...``
(MPP's format): entries split on ``;``, each entry on ``:`` into (type, host, port), further
fields ignored, port default 3306, type exactly ``name``, ``primary`` or ``secondary``, at most
one primary, zero primaries allowed. Priority order is the primary first, then the secondaries
as written. Ours on top: an IPv6 host is written in brackets (``secondary:[fd00::2]:3306``),
and every name and node must fit what HAProxy, MySQL and the agent-check line can carry
(``NodeId.parse``; a pool name of 1-128 of ``A-Z a-z 0-9 . _ -``; ``<pool> <node> ro\n`` within
the agent's request limit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from mpp_agent.model import (
    DEFAULT_CATCHUP_TIMEOUT,
    DEFAULT_INTERVAL,
    DEFAULT_KEEP_CONNECTIONS,
    DEFAULT_MAX_FAILOVER_LAG,
    DEFAULT_MAX_LAG,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_OBSERVERS,
    Failback,
    Fence,
    NodeId,
    NodeIdError,
    NodeState,
    NodeType,
    PoolState,
    StaleWriter,
)

MAX_LAG_LIMIT = 86400.0
MAX_OBSERVERS = 1000
MAX_KEEP_CONNECTIONS = 86400.0
# Use with fullmatch: "$" would let a trailing newline through.
POOL_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
# The longest agent-check request line, newline included (agent_protocol.py's spec).
MAX_AGENT_REQUEST_BYTES = 256


class PoolConfigError(ValueError):
    """A pool configuration that MPP (or this project) refuses, with a message for operators."""


@dataclass(frozen=True)
class PoolConfig:
    """What an operator configures for a pool: members in priority order and its settings."""

    name: str
    members: tuple[tuple[NodeId, NodeType], ...]
    max_requests: int = DEFAULT_MAX_REQUESTS
    interval: float = DEFAULT_INTERVAL
    max_lag: float = DEFAULT_MAX_LAG
    stale_writer: StaleWriter = StaleWriter.KEEP
    catchup_timeout: float = DEFAULT_CATCHUP_TIMEOUT
    max_failover_lag: float = DEFAULT_MAX_FAILOVER_LAG
    failback: Failback = Failback.AUTO
    fence: Fence = Fence.OFF
    observers: int = DEFAULT_OBSERVERS
    keep_connections: float = DEFAULT_KEEP_CONNECTIONS

    def __post_init__(self) -> None:
        validate_pool_name(self.name)
        if not self.members:
            raise PoolConfigError(f"Pool {self.name} has no servers.")
        seen: set[NodeId] = set()
        for node, _ in self.members:
            if node in seen:
                raise PoolConfigError(f"Server {node} is listed twice in pool {self.name}.")
            if len(f"{self.name} {node} ro\n") > MAX_AGENT_REQUEST_BYTES:
                raise PoolConfigError(
                    f"Pool name and server {node} are too long together for the agent-check "
                    f"line (at most {MAX_AGENT_REQUEST_BYTES} bytes): use a shorter name."
                )
            seen.add(node)
        if sum(1 for _, t in self.members if t is NodeType.PRIMARY) > 1:
            raise PoolConfigError(f"Pool {self.name} has more than one primary.")
        if self.members[0][1] is not NodeType.PRIMARY and any(
            t is NodeType.PRIMARY for _, t in self.members
        ):
            raise PoolConfigError(f"The primary of pool {self.name} must come first.")
        if not 1 <= self.max_requests <= 1000:
            raise PoolConfigError(f"max_requests must be 1-1000, not {self.max_requests}.")
        if not 0.1 <= self.interval <= 86400:
            raise PoolConfigError(f"interval must be between 0.1 and 86400 s, not {self.interval}.")
        if not 0 <= self.max_lag <= MAX_LAG_LIMIT:
            raise PoolConfigError(
                f"max_lag must be between 0 and {MAX_LAG_LIMIT:g} s, not {self.max_lag}."
            )
        if not isinstance(self.stale_writer, StaleWriter):
            raise PoolConfigError(f"stale_writer must be keep or drain, not {self.stale_writer!r}.")
        if not isinstance(self.fence, Fence):
            raise PoolConfigError(f"fence must be off or read_only, not {self.fence!r}.")
        if not 0 <= self.catchup_timeout <= MAX_LAG_LIMIT:
            raise PoolConfigError(
                f"catchup_timeout must be between 0 and {MAX_LAG_LIMIT:g} s, "
                f"not {self.catchup_timeout}."
            )
        if not 0 <= self.max_failover_lag <= MAX_LAG_LIMIT:
            raise PoolConfigError(
                f"max_failover_lag must be between 0 (off) and {MAX_LAG_LIMIT:g} s, "
                f"not {self.max_failover_lag}."
            )
        if not 0 <= self.observers <= MAX_OBSERVERS:
            raise PoolConfigError(
                f"observers must be between 0 (every live poller) and {MAX_OBSERVERS}, "
                f"not {self.observers}."
            )
        if not 0 <= self.keep_connections <= MAX_KEEP_CONNECTIONS:
            raise PoolConfigError(
                f"keep_connections must be between 0 (a login per probe) and "
                f"{MAX_KEEP_CONNECTIONS:g} s, not {self.keep_connections}."
            )

        if not isinstance(self.failback, Failback):
            raise PoolConfigError(f"failback must be auto or manual, not {self.failback!r}.")

    @property
    def nodes(self) -> tuple[NodeId, ...]:
        return tuple(n for n, _ in self.members)


def validate_pool_name(name: str) -> str:
    if not POOL_NAME_RE.fullmatch(name):
        raise PoolConfigError(
            f"Bad pool name {name!a}: use 1-128 letters, digits, '.', '_' or '-'."
        )
    return name


def parse_failoverpool(
    text: str,
    *,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    interval: float = DEFAULT_INTERVAL,
) -> PoolConfig:
    """Parse MPP's failoverpool string with MPP's validation and error texts."""
    name: str | None = None
    primary: NodeId | None = None
    secondaries: list[NodeId] = []
    for entry in text.strip().split(";"):
        if not entry.strip():
            continue
        kind, _, rest = entry.strip().partition(":")
        if kind == "name":
            name = rest.split(":")[0]
            continue
        node = parse_member(member_text(rest), text)
        if kind == "primary":
            if primary is not None:
                raise second_primary(node)
            primary = node
        elif kind == "secondary":
            secondaries.append(node)
        else:
            raise PoolConfigError(f"Type of {kind} is not recognized for host {node}.")
    if not name:
        raise PoolConfigError(f"No pool name (name:<pool>) in failoverpool string {text!r}.")
    members = ([(primary, NodeType.PRIMARY)] if primary is not None else []) + [
        (s, NodeType.SECONDARY) for s in secondaries
    ]
    return PoolConfig(name, tuple(members), max_requests=max_requests, interval=interval)


def second_primary(node: NodeId) -> PoolConfigError:
    """MPP's refusal of a second primary; its second host name is always empty (an MPP bug)."""
    return PoolConfigError(
        f'Cannot designate host "{node}" as primary, because host "" is already defined as primary!'
    )


def member_text(rest: str) -> str:
    """``host[:port]`` of an entry after its type; fields after the port are ignored (MPP)."""
    if rest.startswith("[") and "]" in rest:
        close = rest.index("]") + 1
        host, tail = rest[:close], rest[close:].split(":")
        port = tail[1] if len(tail) > 1 else ""
    else:
        fields = rest.split(":")
        host, port = fields[0], fields[1] if len(fields) > 1 else ""
    return f"{host}:{port}" if port else host


def parse_member(node: str, text: str) -> NodeId:
    try:
        return NodeId.parse(node)
    except NodeIdError as exc:
        raise PoolConfigError(f"{exc} in failoverpool string {text!a}") from None


def render_failoverpool(config: PoolConfig) -> str:
    """The failoverpool string for a configuration (the reverse of ``parse_failoverpool``)."""
    parts = [f"name:{config.name}"]
    parts += [f"{t.value.lower()}:{n}" for n, t in config.members]
    return ";".join(parts)


# The settings a pool's configuration and its state both carry, under the same names.
SETTINGS = (
    "max_requests",
    "interval",
    "max_lag",
    "stale_writer",
    "catchup_timeout",
    "max_failover_lag",
    "failback",
    "fence",
    "observers",
    "keep_connections",
)


def settings_of(source: PoolConfig | PoolState) -> dict[str, Any]:
    """A pool's settings by name (``SETTINGS``), to carry from a configuration to a state or
    back."""
    return {name: getattr(source, name) for name in SETTINGS}


def config_of(pool: PoolState) -> PoolConfig:
    return PoolConfig(pool.name, tuple((n.node, n.type) for n in pool.nodes), **settings_of(pool))


def new_pool(config: PoolConfig, incarnation: str = "") -> PoolState:
    """A fresh pool: every node UNKNOWN/OK, never polled (as MPP creates it); ``incarnation``
    is the id the store draws for it."""
    return PoolState(
        config.name,
        tuple(NodeState(node, kind) for node, kind in config.members),
        incarnation=incarnation,
        **settings_of(config),
    )


def apply_config(pool: PoolState, config: PoolConfig, *, force: bool = False) -> PoolState:
    """Replace a pool's configuration (DIVERGENCE: removed nodes leave, TYPE changes apply).

    Nodes that stay keep their state, status, R and message; new ones start UNKNOWN.
    Removing the ACTIVE node is refused with PoolConfigError unless ``force``: it would
    silently leave the pool without a serving node."""
    kept = set(config.nodes)
    removed_active = [n.node for n in pool.active_nodes if n.node not in kept]
    if removed_active and not force:
        raise PoolConfigError(
            f"Refusing to remove the ACTIVE server {removed_active[0]} from pool {pool.name}; "
            f"use force to remove it anyway."
        )
    existing = {n.node: n for n in pool.nodes}
    nodes = tuple(
        replace(existing[node], type=kind) if node in existing else NodeState(node, kind)
        for node, kind in config.members
    )
    return replace(pool, nodes=nodes, **settings_of(config))
