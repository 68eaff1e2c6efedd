"""The agent wire protocol: parse HAProxy's ``agent-send`` line, render the ``agent-check`` reply.

This module is pure (no I/O, no clock, no logging); its docstring is the spec.

Request
=======

One line, sent by HAProxy's ``agent-send``::

    <pool> <node> [rw|ro]\\n

* fields are separated by one or more spaces or tabs; a trailing ``\\r`` is tolerated;
* ``pool`` is a pool name (1-128 of ``A-Z a-z 0-9 . _ -``);
* ``node`` is ``host[:port]``, the port defaulting to 3306 (so ``db1`` and ``db1:3306`` are the
  same node);
* the role is ``rw`` (the default when absent) or ``ro``, case-insensitive;
* the whole line, newline included, is at most ``MAX_REQUEST_BYTES`` (256) bytes of UTF-8.

Anything else (empty, no newline, too long, not UTF-8, control characters, extra fields, a bad
node or port, an unknown role) is a ``BadRequest``, answered ``down #bad request``.

Reply
=====

Always exactly one line ending in ``\\n``, shorter than ``MAX_REPLY_BYTES``, made of HAProxy
agent words, health word first, then ``#`` and a short printable-ASCII reason::

    up ready 75% #STANDBY OK level=OK_INFO; override: kernel upgrade by alice; stale

The words, for a node known to the agent (architecture.md section 4), by its *effective* state
and status (those of an unexpired override, else the node's own):

=============================  ==============  ===================================================
effective state                ``rw``          ``ro``
=============================  ==============  ===================================================
ACTIVE                         ``up ready``    ``up ready N%`` when no *healthy STANDBY* exists in
                                               the pool, else ``up drain``
STANDBY, status OK or OK_WARN  ``up drain``    ``up ready N%``
STANDBY, status FAIL           ``up drain``    ``up drain`` (not a healthy STANDBY)
UNKNOWN, FAILED_*              ``down``        ``down``
=============================  ==============  ===================================================

* ``N%`` is the weight of the node's request level ``request_level(R, M)``: ``OK`` 100%,
  ``OK INFO`` 75%, ``OK WARN`` 50%, ``OK CRITICAL`` 25%, and ``FAIL CRITICAL`` 25% too (never
  0%, which HAProxy shows as DRAIN and would contradict ``ready``).
* A *healthy STANDBY* is another node of the pool whose effective state is STANDBY with status OK
  or OK_WARN: exactly a node that this table sends ``up ready`` on the ``ro`` backend. So the ACTIVE
  node serves reads only when no replica can.
* An ACTIVE node is ``up ready`` on ``rw`` whatever its status (OK_WARN is the "last node
  standing" case of architecture.md section 3): the state machine alone decides who takes writes.
* Overrides: an unexpired override replaces the node's state (and its status, when it gives one)
  in the table above, also when other nodes look at it for the healthy-STANDBY rule; the reason
  says ``override: <reason> by <who>``. While a node is overridden to ACTIVE, a node that is
  ACTIVE by the state machine alone answers as a STANDBY (reason ``ACTIVE, writes pinned to
  <node> by override``): never two writers.
* Pool status FAIL: nothing changes in the table (no node is ACTIVE then, by construction of the
  state machine); the reason says ``pool FAIL``.
* Stale (the snapshot is old, or the pollers stopped committing): the same words (the last known
  decision, architecture.md 2.6), with ``stale`` at the end of the reason.
* A pool or node that the snapshot does not hold: ``down #unknown pool <pool>`` or
  ``down #unknown node <node> in pool <pool>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum

from mpp_agent.config import POOL_NAME_RE
from mpp_agent.model import (
    NodeId,
    NodeIdError,
    NodeState,
    PoolState,
    PoolStatus,
    State,
    Status,
    request_level,
)

MAX_REQUEST_BYTES = 256
MAX_REPLY_BYTES = 200

# Weight of each request level (the labels of model.REQUEST_LEVELS) on the ro backend.
LEVEL_WEIGHTS = {
    "OK": 100,
    "OK INFO": 75,
    "OK WARN": 50,
    "OK CRITICAL": 25,
    "FAIL CRITICAL": 25,
}

_FIELD_SEP = re.compile(r"[ \t]+")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


class Role(StrEnum):
    RW = "rw"
    RO = "ro"


class BadRequest(ValueError):
    """A request line that is not ``<pool> <node> [rw|ro]\\n``; the reply is ``BAD_REQUEST``."""


@dataclass(frozen=True)
class Request:
    pool: str
    node: NodeId
    role: Role = Role.RW

    @property
    def key(self) -> tuple[str, str, Role]:
        """The snapshot key: pool, canonical ``host:port``, role."""
        return (self.pool, str(self.node), self.role)


@dataclass(frozen=True)
class Reply:
    """HAProxy words (health word first) and a human reason for them."""

    words: str
    reason: str

    @property
    def label(self) -> str:
        """The metrics label of the reply: ``up_ready``, ``up_drain`` or ``down``."""
        return "_".join(w for w in self.words.split() if not w.endswith("%"))

    def encode(self, stale: bool = False) -> bytes:
        """The reply line, ``stale`` appended to the reason when asked; always < 200 bytes."""
        reason = f"{self.reason}; stale" if stale else self.reason
        return render_line(self.words, reason)


def render_line(words: str, reason: str) -> bytes:
    """``<words> #<reason>\\n`` with the reason made printable ASCII and cut to fit the limit."""
    head = f"{words} #"
    room = MAX_REPLY_BYTES - len(head) - 1  # the newline
    clean = _UNPRINTABLE.sub(" ", reason).strip()
    if len(clean) > room:
        clean = clean[: room - 3] + "..."
    return f"{head}{clean}\n".encode("ascii")


BAD_REQUEST = render_line("down", "bad request")


# ---------------------------------------------------------------------------------------------
# request


def parse_request(data: bytes) -> Request:
    """Parse one request line (the bytes read, which must end in ``\\n``); raise BadRequest."""
    if len(data) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request longer than {MAX_REQUEST_BYTES} bytes")
    if not data.endswith(b"\n") or data.count(b"\n") != 1:
        raise BadRequest("request is not exactly one line ending in a newline")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request is not UTF-8") from None
    text = text[:-1].removesuffix("\r").strip(" \t")
    if _UNPRINTABLE.search(text.replace("\t", " ")):
        raise BadRequest("request has control or non-ASCII characters")
    fields = _FIELD_SEP.split(text) if text else []
    if not 2 <= len(fields) <= 3:
        raise BadRequest(f"expected '<pool> <node> [rw|ro]', got {len(fields)} fields")
    return Request(_parse_pool(fields[0]), _parse_node(fields[1]), _parse_role(fields[2:]))


def _parse_pool(text: str) -> str:
    if not POOL_NAME_RE.match(text):
        raise BadRequest(f"bad pool name {text!r}")
    return text


def _parse_node(text: str) -> NodeId:
    try:
        return NodeId.parse(text)
    except NodeIdError as exc:
        raise BadRequest(str(exc)) from None


def _parse_role(rest: list[str]) -> Role:
    if not rest:
        return Role.RW
    try:
        return Role(rest[0].lower())
    except ValueError:
        raise BadRequest(f"unknown role {rest[0]!r} (rw or ro)") from None


# ---------------------------------------------------------------------------------------------
# reply


def unknown_pool(pool: str) -> Reply:
    return Reply("down", f"unknown pool {pool}")


def unknown_node(pool: str, node: str) -> Reply:
    return Reply("down", f"unknown node {node} in pool {pool}")


@dataclass(frozen=True)
class _Effective:
    """A node as the reply table sees it: overrides applied."""

    node: NodeState
    state: State
    status: Status
    override_note: str

    @property
    def is_healthy_standby(self) -> bool:
        return self.state is State.STANDBY and self.status.is_ok


def _effective(node: NodeState, now: float) -> _Effective:
    override = node.override
    if override is None or override.is_expired(now):
        return _Effective(node, node.state, node.status, "")
    status = override.status if override.status is not None else node.status
    note = f"override: {override.reason or 'no reason'} by {override.set_by or 'unknown'}"
    return _Effective(node, override.state, status, note)


def _words(pool: PoolState, me: _Effective, role: Role, others: list[_Effective]) -> str:
    """The HAProxy words for one node: the reply table of the module docstring."""
    weight = f"{LEVEL_WEIGHTS[request_level(me.node.requests, pool.max_requests)]}%"
    if me.state is State.ACTIVE:
        if role is Role.RW:
            return "up ready"
        has_replica = any(o.is_healthy_standby for o in others)
        return "up drain" if has_replica else f"up ready {weight}"
    if me.state is State.STANDBY:
        if role is Role.RO and me.is_healthy_standby:
            return f"up ready {weight}"
        return "up drain"
    return "down"  # UNKNOWN, FAILED_OFFLINE, FAILED_ONLINE


def _reason(pool: PoolState, me: _Effective) -> str:
    level = request_level(me.node.requests, pool.max_requests).replace(" ", "_")
    parts = [f"{me.state} {me.status} level={level}"]
    if pool.status is PoolStatus.FAIL:
        parts.append("pool FAIL")
    if me.override_note:
        parts.append(me.override_note)
    return "; ".join(parts)


def _pin_writer(effective: list[_Effective]) -> list[_Effective]:
    """An ACTIVE override pins the writer: a node that is ACTIVE by the state machine alone
    (say, after a failover that came after the override) answers as a STANDBY meanwhile, so
    that HAProxy never has two writers. ``mpp-admin`` refuses to set a second ACTIVE override."""
    pinned = [e for e in effective if e.override_note and e.state is State.ACTIVE]
    if not pinned:
        return effective
    note = f"ACTIVE, writes pinned to {pinned[0].node.node} by override"
    return [
        replace(e, state=State.STANDBY, override_note=note)
        if e.state is State.ACTIVE and not e.override_note
        else e
        for e in effective
    ]


def decide(pool: PoolState, node: NodeId, role: Role, now: float) -> Reply:
    """The reply for one node of a pool (``now``, wall-clock seconds, expires overrides)."""
    effective = _pin_writer([_effective(n, now) for n in pool.nodes])
    for me in effective:
        if me.node.node == node:
            others = [o for o in effective if o is not me]
            return Reply(_words(pool, me, role, others), _reason(pool, me))
    return unknown_node(pool.name, str(node))


def decide_pool(pool: PoolState, now: float) -> Iterator[tuple[tuple[str, str, Role], Reply]]:
    """Every (snapshot key, reply) of a pool: each node in each role."""
    for node in pool.nodes:
        for role in Role:
            yield (pool.name, str(node.node), role), decide(pool, node.node, role, now)


def next_expiry(pool: PoolState, now: float) -> float | None:
    """The earliest future override expiry in a pool (when its replies must be re-decided)."""
    times = [
        n.override.expires_at
        for n in pool.nodes
        if n.override is not None and n.override.expires_at is not None
        if n.override.expires_at > now
    ]
    return min(times, default=None)
