"""The domain model of MPP: nodes, pools, observations and events, as frozen values.

Everything here is a plain immutable value with no I/O. The state machine (`state.py`), the
Redis store, the agent and the CLI all speak these types. Enum members are ``str`` valued and
spelled as MPP spells them (``State.ACTIVE == "ACTIVE"``), so they serialise as themselves.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

DEFAULT_PORT = 3306
DEFAULT_MAX_REQUESTS = 4
DEFAULT_INTERVAL = 10.0
DEFAULT_MAX_LAG = 30.0
DEFAULT_CATCHUP_TIMEOUT = 30.0
DEFAULT_MAX_FAILOVER_LAG = 0.0  # off
DEFAULT_SWITCHOVER_TIMEOUT = 30.0
DEFAULT_OBSERVERS = 3  # pollers observing each pool; 0: every live poller
DEFAULT_KEEP_CONNECTIONS = 0.0

_Frozen = TypeVar("_Frozen")


def evolve(value: _Frozen, **changes: Any) -> _Frozen:
    """``dataclasses.replace`` for the frozen values of the model and the state machine: a
    copy of ``value`` with ``changes``. ``replace`` inspects every field at every call (about
    4.5 us against 0.8 here), and a tick makes some twenty copies per pool, a quarter of a
    poller's CPU per commit. Only for dataclasses without ``__post_init__`` or ``__slots__``
    (none of the model's has either); a change that names no field is a TypeError, as with
    ``replace``."""
    unknown = changes.keys() - value.__dataclass_fields__.keys()  # type: ignore[attr-defined]
    if unknown:
        raise TypeError(f"{type(value).__name__} has no field {', '.join(sorted(unknown))}")
    copy = object.__new__(type(value))
    copy.__dict__.update(value.__dict__, **changes)
    return copy


class NodeType(StrEnum):
    PRIMARY = "PRIMARY"
    SECONDARY = "SECONDARY"


class State(StrEnum):
    UNKNOWN = "UNKNOWN"
    STANDBY = "STANDBY"
    ACTIVE = "ACTIVE"
    FAILED_OFFLINE = "FAILED_OFFLINE"
    FAILED_ONLINE = "FAILED_ONLINE"

    @property
    def is_failed(self) -> bool:
        return self in (State.FAILED_OFFLINE, State.FAILED_ONLINE)


class Status(StrEnum):
    """The stored node STATUS: the poller only ever writes these three."""

    OK = "OK"
    OK_WARN = "OK_WARN"
    FAIL = "FAIL"

    @property
    def is_ok(self) -> bool:
        """MPP's `host_status_ok`: OK or OK_WARN."""
        return self in (Status.OK, Status.OK_WARN)


class PoolStatus(StrEnum):
    OK = "OK"
    FAIL = "FAIL"


class StaleWriter(StrEnum):
    """What an agent cut off from the pool's state does with the writer it last knew.

    ``keep``: it keeps answering the writer ``up ready`` (a broken monitor never takes down a
    healthy database; two writers are possible if the pollers fail the ACTIVE over meanwhile).
    ``drain``: once its view is older than the pollers' earliest failover (M x interval), it
    answers the writer ``up drain`` (no write can reach a node the pollers may have replaced)."""

    KEEP = "keep"
    DRAIN = "drain"


class Failback(StrEnum):
    """Whether a recovered PRIMARY takes ACTIVE back by itself.

    ``auto``: MPP's hand-back (the ACTIVE secondary relinquishes, the PRIMARY takes over).
    ``manual``: the PRIMARY stays STANDBY until ``activate-primary`` or ``switchover``, so a
    failed-over pool takes no second write interruption unless the operator wants one."""

    AUTO = "auto"
    MANUAL = "manual"


class Fence(StrEnum):
    """Whether the pollers keep MySQL's ``read_only`` in line with the routing decision.

    ``off``: they never touch it. ``read_only``: pollers given a fencing account set
    ``read_only=ON`` (``super_read_only=ON`` on MySQL 8) on every reachable node that does not
    take writes, and ``read_only=OFF`` on the one that does (``fencing.py``); the writer then
    takes writes only once it reports ``read_only=OFF`` (``routing``)."""

    OFF = "off"
    READ_ONLY = "read_only"


class Outcome(StrEnum):
    """What one probe of a node found."""

    HEALTHY = "healthy"
    CONNECT = "connect"  # connect-class errors: rules B
    REQUEST = "request"  # request-class (replication) errors: rules C
    # The poller could not judge the node because the fault is its own (bad credentials, no
    # monitoring database, its checkpoints unreachable): never counted as failing.
    ABSTAIN = "abstain"


# MPP's request-level labels of R, indexed by min(R, 4).
REQUEST_LEVELS = ("OK", "OK INFO", "OK WARN", "OK CRITICAL", "FAIL CRITICAL")


def request_level(requests: int | None, max_requests: int = DEFAULT_MAX_REQUESTS) -> str:
    """The display label of a request counter, capped at M (and at the last label)."""
    r = min(requests or 0, max_requests, len(REQUEST_LEVELS) - 1)
    return REQUEST_LEVELS[r]


class NodeIdError(ValueError):
    """A node written in a form that is not ``host[:port]``."""


# What HAProxy's server address, MySQL and the agent-check line can all carry: a DNS name or an
# IPv4 address (letters, digits, '-', '_' in dot-separated labels), or an IPv6 address in brackets.
MAX_HOST_LENGTH = 253
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?")


@dataclass(frozen=True, order=True)
class NodeId:
    """A pool member, always keyed as ``host:port`` (``[v6 address]:port`` for IPv6)."""

    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> NodeId:
        """Parse ``host[:port]`` or ``[ipv6][:port]``; the port defaults to 3306 (see
        ``_parse``). Remembered: every stored pool and observation names its nodes as text,
        read again every round."""
        return _parsed(text)

    @classmethod
    def _parse(cls, text: str) -> NodeId:
        """Parse ``host[:port]`` or ``[ipv6][:port]``; the port defaults to 3306.

        Refused with a message saying why: whitespace, commas, control or non-ASCII characters,
        an IPv6 address without brackets, a host that is not a DNS name or an IP address."""
        shown = ascii(text)  # control characters never reach a terminal raw
        text = text.strip()
        if not text.isascii() or not text.isprintable():
            raise NodeIdError(f"not a node: {shown} has control or non-ASCII characters")
        if "," in text or any(c.isspace() for c in text):
            raise NodeIdError(
                f"not a node: {shown} has a comma or a space; give one host[:port] per node"
            )
        if text.startswith("["):
            host, close, rest = text[1:].partition("]")
            if not close or (rest and not rest.startswith(":")):
                raise NodeIdError(f"not a node: {shown}: write IPv6 nodes as [address]:port")
            port_text, has_port = rest[1:], bool(rest)
            host = _check_ipv6(host, shown)
        else:
            if text.count(":") > 1:
                raise NodeIdError(
                    f"not a node: {shown}: write IPv6 nodes in brackets, e.g. [::1]:3306"
                )
            host, sep, port_text = text.partition(":")
            has_port = bool(sep)
            _check_hostname(host, shown)
        if not has_port:
            return cls(host)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise NodeIdError(f"bad port in node {shown}: expected 1-65535")
        return cls(host, int(port_text))


@functools.lru_cache(maxsize=65536)
def _parsed(text: str) -> NodeId:
    return NodeId._parse(text)  # a refusal (NodeIdError) is not remembered


def _check_hostname(host: str, shown: str) -> None:
    labels = host.split(".")
    if not host or len(host) > MAX_HOST_LENGTH or not all(_HOST_LABEL.fullmatch(x) for x in labels):
        raise NodeIdError(
            f"not a node (host[:port]): {shown}: the host must be a DNS name or an IPv4 "
            f"address (letters, digits, '-', '_', dots; at most {MAX_HOST_LENGTH} characters)"
        )


def _check_ipv6(host: str, shown: str) -> str:
    """The address in its canonical (compressed) form, so one node has one key."""
    if "%" in host:
        raise NodeIdError(f"not a node: {shown}: IPv6 zone indexes are not supported")
    try:
        return str(ipaddress.IPv6Address(host))
    except ValueError:
        raise NodeIdError(f"not a node: {shown}: {host!r} is not an IPv6 address") from None


@dataclass(frozen=True)
class Replication:
    """What a probe read of a node's replication: positions, source, threads, read_only, lag.

    Positions are GTID texts as the server prints them (MariaDB ``domain-server-seqno`` lists,
    MySQL GTID sets); "" when unknown. ``received`` is what the IO thread has fetched
    (``Gtid_IO_Pos``, ``Retrieved_Gtid_Set``), ``applied`` what the SQL thread has applied
    (``gtid_slave_pos``, ``Executed_Gtid_Set``), ``binlog`` what the node has written
    (``gtid_binlog_pos``, ``gtid_executed``): an ACTIVE's ``binlog`` is the position a standby
    must hold to lack nothing. ``unapplied`` is how many received transactions are not applied
    yet (None when the positions cannot say; then ``relay_caught_up`` tells from the binlog
    file positions). ``source_unreachable`` is set when the only replication error is an IO
    thread that cannot reach ``source`` (whether that is excused is the tick's decision)."""

    source: str = ""  # host:port of the node it replicates from
    source_server_id: int | None = None
    server_id: int | None = None
    io_running: str = ""
    sql_running: str = ""
    received: str = ""
    applied: str = ""
    binlog: str = ""
    unapplied: int | None = None
    relay_caught_up: bool | None = None
    read_only: bool | None = None
    lag: int | None = None
    source_unreachable: bool = False

    @property
    def caught_up(self) -> bool | None:
        """Whether everything received is applied; None when unknown."""
        if self.unapplied is not None:
            return self.unapplied == 0
        return self.relay_caught_up


@dataclass(frozen=True)
class Observation:
    """One probe verdict for a node: the outcome and its message.

    A merged verdict (what a tick sees) may carry ``monitor_note``: why some or all pollers
    could not judge the node this round, shown to operators but never a failure.
    ``replication`` is what the probe read of the node's replication (None when it got no
    such far); it never takes part in comparing verdicts. ``unreachable`` marks a connect
    failure in which the node could not be reached at all (refused, timed out, no route, a
    name that does not resolve), as opposed to one where it answered (1040 Too many
    connections, a bad handshake, a hung server) or a query error: clients see those too,
    so only an unreachable node can be vouched for by its replicas (``state.replicas_view``)."""

    outcome: Outcome
    message: str = ""
    monitor_note: str = ""
    replication: Replication | None = field(default=None, compare=False)
    unreachable: bool = False

    @classmethod
    def healthy(cls) -> Observation:
        return cls(Outcome.HEALTHY)

    @classmethod
    def abstain(cls, text: str) -> Observation:
        """The poller is at fault: it cannot judge the node."""
        return cls(Outcome.ABSTAIN, text)

    @classmethod
    def connect_error(cls, node: NodeId, text: str, *, unreachable: bool = False) -> Observation:
        """A connect failure, worded as MPP's probe words it."""
        return cls(Outcome.CONNECT, connect_prefix(node) + text, unreachable=unreachable)

    @property
    def is_healthy(self) -> bool:
        return self.outcome is Outcome.HEALTHY

    @property
    def is_abstained(self) -> bool:
        return self.outcome is Outcome.ABSTAIN


@dataclass(frozen=True)
class Override:
    """An operator's override of what the agent answers for a node (MPP's proxy admin --set)."""

    state: State
    status: Status | None
    reason: str
    set_by: str = "admin"
    set_at: float = 0.0
    expires_at: float | None = None

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class NodeState:
    """A node as the pool sees it. ``requests`` is None for a node never polled; ``message`` is
    None when there is no message (MPP's "absent")."""

    node: NodeId
    type: NodeType
    state: State = State.UNKNOWN
    status: Status = Status.OK
    requests: int | None = None
    message: str | None = None
    last_request_time: float | None = None
    override: Override | None = None
    # Why the monitor could not judge this node in the last round it was polled (some or all
    # pollers abstained), or None. Not a state: it never makes an event.
    monitor_note: str | None = None
    # What the node's replication looked like in the last round it was judged (None if never
    # read): positions, read_only and lag for the listings and the failover rules.
    replication: Replication | None = None
    # Set while a node that became ACTIVE has not applied what it had received: it takes no
    # writes before this time (the pool's catch-up timeout), or before it has caught up.
    catchup_until: float | None = None
    # The last tick at which the node held everything of the ACTIVE's last known position (or
    # was the ACTIVE): how long it has been lagging is measured from here (the lag gate).
    synced_at: float | None = None
    # Set while the pollers cannot reach this ACTIVE but its replicas still receive from it
    # (the round does not count toward failing it): the text operators see, naming them.
    # Like monitor_note, not a state: it never makes an event by itself.
    replicas_view: str | None = None

    @property
    def is_primary(self) -> bool:
        return self.type is NodeType.PRIMARY

    @property
    def r(self) -> int:
        """R for comparisons: unset counts as 0, as in MPP."""
        return self.requests or 0


@dataclass(frozen=True)
class Switchover:
    """A planned move of writes from ``source`` (the ACTIVE) to ``target``, in progress.

    Part of the pool state, so whichever poller ticks carries it on. While it is set the
    source takes no writes (routing). ``first_round`` is the first round whose probes all
    started after the switchover was committed; ``position`` is the source's binlog position
    as read in such a round (None until read): the writer moves when a later round reads the
    same position and the target has applied it. Abandoned at ``deadline``."""

    source: NodeId
    target: NodeId
    started_at: float
    deadline: float
    first_round: int
    position: str | None = None
    requested_by: str = ""


@dataclass(frozen=True)
class Pause:
    """An operator's pause of a pool: the pollers keep probing, no state change is committed.

    ``shadow`` is the pool's nodes as the state machine would have them had it not been
    paused (ticked forward every round, never routed); ``would`` says how they differ from
    the held state, e.g. ``would fail 10.0.0.1:3306 over``."""

    reason: str
    set_by: str = "admin"
    set_at: float = 0.0
    until: float | None = None
    shadow: tuple[NodeState, ...] = ()
    would: str = ""

    def is_expired(self, now: float) -> bool:
        return self.until is not None and now >= self.until


@dataclass(frozen=True)
class PoolState:
    """A whole failover pool: its nodes in priority order, its status and its settings.

    ``version`` is owned by the store (bumped on every committed change); ``last_round`` is the
    last round whose tick was committed. The pure core carries both through unchanged."""

    name: str
    nodes: tuple[NodeState, ...]
    status: PoolStatus = PoolStatus.OK
    max_requests: int = DEFAULT_MAX_REQUESTS
    interval: float = DEFAULT_INTERVAL
    max_lag: float = DEFAULT_MAX_LAG
    catchup_timeout: float = DEFAULT_CATCHUP_TIMEOUT
    max_failover_lag: float = DEFAULT_MAX_FAILOVER_LAG
    version: int = 0
    last_round: int = -1
    stale_writer: StaleWriter = StaleWriter.KEEP
    # Set once when the pool is created (a pool removed and created again gets a new one):
    # versions are only comparable within one incarnation.
    incarnation: str = ""
    failback: Failback = Failback.AUTO
    switchover: Switchover | None = None
    pause: Pause | None = None
    fence: Fence = Fence.OFF
    observers: int = DEFAULT_OBSERVERS  # pollers that probe the pool (0: every live poller)
    # Seconds a poller may keep its connection to a node for the next probes (0: a login
    # per probe, as MPP's).
    keep_connections: float = DEFAULT_KEEP_CONNECTIONS

    def is_paused(self, now: float) -> bool:
        return self.pause is not None and not self.pause.is_expired(now)

    @property
    def primary(self) -> NodeState | None:
        return next((n for n in self.nodes if n.is_primary), None)

    @property
    def active_nodes(self) -> tuple[NodeState, ...]:
        return tuple(n for n in self.nodes if n.state is State.ACTIVE)

    def find(self, node: NodeId) -> NodeState | None:
        return next((n for n in self.nodes if n.node == node), None)

    def has_node(self, node: NodeId) -> bool:
        return self.find(node) is not None


@dataclass(frozen=True)
class PoolHead:
    """What a poller needs of every pool, whether it observes the pool or not: when its rounds
    start (``interval``), how many pollers observe it (``observers``), and which state of it
    is the newest (``incarnation``, ``version``: a state Redis lost in a failover is told from
    them). Stored beside the pool's document (the pool hash's ``head``), so that a poller reads
    in full only the pools it observes."""

    name: str
    interval: float
    observers: int
    incarnation: str = ""
    version: int = 0

    @classmethod
    def of(cls, pool: PoolState) -> PoolHead:
        return cls(pool.name, pool.interval, pool.observers, pool.incarnation, pool.version)


class EventKind(StrEnum):
    TRANSITION = "transition"  # a node's state, status or message changed in a tick
    RECOVER = "recover"
    RECOVER_POOL = "recover-pool"
    ACTIVATE_PRIMARY = "activate-primary"
    DELETE = "delete"
    CONFIGURE = "configure"
    OVERRIDE = "override"
    RELEASE = "release"
    POOL_STATUS = "pool-status"
    CATCHUP = "catch-up"  # a new ACTIVE's write gate: held, opened when caught up or timed out
    FAILOVER = "failover"  # promotion by hand (mpp-admin failover)
    HELD = "held"  # a STANDBY that would take over is held back by the lag gate
    SWITCHOVER = "switchover"  # each step of a planned switchover
    PAUSE = "pause"
    RESUME = "resume"
    FENCED = "fenced"  # a poller set read_only=ON on a node that takes no writes
    UNFENCED = "unfenced"  # a poller set read_only=OFF on the node that takes writes


@dataclass(frozen=True)
class Event:
    """Something that changed, and why; the shell adds who caused it and when."""

    kind: EventKind
    pool: str
    node: str = ""
    from_state: str = ""
    to_state: str = ""
    from_status: str = ""
    to_status: str = ""
    requests: int | None = None
    message: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)


def connect_prefix(node: NodeId) -> str:
    """How MPP's probe begins the message of a connect failure of ``node``."""
    return f"Could not connect to mysql host {node}: "
