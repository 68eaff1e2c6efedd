"""The agent wire protocol: parse HAProxy's ``agent-send`` line, render the ``agent-check`` reply.

This module is pure (no I/O, no clock, no logging); its docstring is the spec.

Request
=======

One line, sent by HAProxy's ``agent-send``::

    <pool> <node> [rw|ro]\\n

* fields are separated by one or more spaces or tabs; a trailing ``\\r`` is tolerated;
* ``pool`` is a pool name (1-128 of ``A-Z a-z 0-9 . _ -``);
* ``node`` is ``host[:port]`` or ``[ipv6]:port``, the port defaulting to 3306 (so ``db1`` and
  ``db1:3306`` are the same node), as ``NodeId.parse`` reads it;
* the role is ``rw`` (the default when absent) or ``ro``, case-insensitive;
* the whole line, newline included, is at most ``MAX_REQUEST_BYTES`` (256) bytes of UTF-8.

Anything else (empty, no newline, too long, not UTF-8, control characters, extra fields, a bad
node or port, an unknown role) is a ``BadRequest``, answered ``down #bad request``.

Reply
=====

Always exactly one line ending in ``\\n``, shorter than ``MAX_REPLY_BYTES``, made of HAProxy
agent words, health word first, then ``#`` and a short printable-ASCII reason::

    up ready 75% #STANDBY OK level=OK_INFO; override: kernel upgrade by alice; stale

The words render the routing decision of ``routing.route`` (which node takes writes, which take
reads and with what weight; overrides, writer pinning and their reasons live there, nowhere else):

=====================================  ==============  ======================================
the node, as ``routing`` decided       ``rw``          ``ro``
=====================================  ==============  ======================================
takes writes (the one ACTIVE)          ``up ready``    ``up ready N%`` if it takes reads
                                                       (no healthy STANDBY), else ``up drain``
up, no writes (STANDBY)                ``up drain``    ``up ready N%`` if it takes reads
                                                       (status OK or OK_WARN), else ``up drain``
not up (UNKNOWN, FAILED_*)             ``down``        ``down``
=====================================  ==============  ======================================

* ``N%`` is the routing weight of the node's request level (100, 75, 50, 25, 25).
* The reason is the decision's: ``<STATE> <STATUS> level=<LEVEL>``, then ``pool FAIL``, the
  override (``override: <reason> by <who>``) or the pinning (``ACTIVE, writes pinned to <node>
  by override``) when they apply.
* Stale (the snapshot is old, or the pollers stopped committing): the same words (the last known
  decision), with ``stale`` at the end of the reason. With the pool's ``stale_writer`` = ``drain``
  and a view older than M x interval, the writer answers ``rw`` with
  ``up drain #stale: writes stopped to avoid two writers; <STATE> <STATUS> level=<LEVEL>``.
* The source of a switchover in progress answers ``rw`` with ``down #switchover to <target>;
  ACTIVE ...`` (HAProxy marks it down and, with ``on-marked-down shutdown-sessions``, closes
  its write sessions) and ``ro`` as a STANDBY. A paused pool's reasons start with
  ``paused: <reason>``.
* With the pool's ``fence`` = ``read_only``, a writer that has not reported (or been set)
  ``read_only=OFF`` answers ``rw`` ``up drain #fenced: read_only until the pollers open writes;
  ...`` and ``ro`` as a STANDBY (routing's rule 12).
* A pool or node that the snapshot does not hold: ``down #unknown pool <pool>`` or
  ``down #unknown node <node> in pool <pool>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from mpp_agent.config import MAX_AGENT_REQUEST_BYTES, POOL_NAME_RE
from mpp_agent.model import NodeId, NodeIdError, PoolState
from mpp_agent.routing import NodeRoute, PoolRoute, route

MAX_REQUEST_BYTES = MAX_AGENT_REQUEST_BYTES
MAX_REPLY_BYTES = 200

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
        """The reply line, ``stale`` appended to the reason when asked (unless the reason
        already starts with it: writes stopped); always < 200 bytes."""
        reason = (
            f"{self.reason}; stale"
            if stale and not self.reason.startswith("stale")
            else self.reason
        )
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
    if not POOL_NAME_RE.fullmatch(text):
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


def words(node: NodeRoute, role: Role) -> str:
    """The HAProxy words for one node in one role: the reply table of the module docstring."""
    if not node.is_up:
        return "down"
    if role is Role.RW:
        if node.writes_closed:
            return "down"  # a switchover's source: HAProxy closes its write sessions
        return "up ready" if node.takes_writes else "up drain"
    return f"up ready {node.weight}%" if node.takes_reads else "up drain"


def reply(node: NodeRoute, role: Role) -> Reply:
    return Reply(words(node, role), node.reason)


def decide(pool: PoolState, node: NodeId, role: Role, now: float) -> Reply:
    """The reply for one node of a pool (``now``, wall-clock seconds, expires overrides)."""
    found = route(pool, now).find(node)
    return unknown_node(pool.name, str(node)) if found is None else reply(found, role)


def decide_pool(decision: PoolRoute) -> Iterator[tuple[tuple[str, str, Role], Reply]]:
    """Every (snapshot key, reply) of a pool's routing decision: each node in each role."""
    for node in decision.nodes:
        for role in Role:
            yield (decision.pool, str(node.node), role), reply(node, role)


def changed_answers(
    before: Mapping[tuple[str, str, Role], Reply], after: Mapping[tuple[str, str, Role], Reply]
) -> Iterator[tuple[tuple[str, str, Role], Reply, Reply]]:
    """Each answer whose words changed: (key, old, new). Answers that did not exist before (a
    new pool or node) are not changes."""
    for key, new in after.items():
        old = before.get(key)
        if old is not None and old.words != new.words:
            yield key, old, new


def answer_changes(
    before: Mapping[tuple[str, str, Role], Reply], after: Mapping[tuple[str, str, Role], Reply]
) -> Iterator[str]:
    """One log line per answer whose words changed, e.g.
    ``pool1 10.0.0.1:3306 rw: up ready -> down (FAILED_OFFLINE OK level=FAIL_CRITICAL)``."""
    for (pool, node, role), old, new in changed_answers(before, after):
        yield f"{pool} {node} {role}: {old.words} -> {new.words} ({new.reason})"
