"""What ``mpp-hooks`` decides, without doing it: which events a hook wants, the derived kinds,
the retry schedule, and the environment and JSON a hook is given. Pure (no I/O, no clock).

Kinds
=====

An event has one stored kind (``transition``, ``recover``, ``recover-pool``,
``activate-primary``, ``delete``, ``configure``, ``override``, ``release``, ``pool-status``,
``catch-up``, ``failover``, ``held``, ``switchover``, ``pause``, ``resume``, ``fenced``: a poller
set read_only=ON, ``unfenced``: read_only=OFF) and may have derived kinds too, so that a hook
can ask for what it means:

================  ===========================================================================
derived kind      the events that have it
================  ===========================================================================
``failover``      a ``transition`` to ACTIVE by takeover (rule E6: a SECONDARY takes over from
                  a writer that failed)
``switchover``    a ``transition`` to ACTIVE that is not a takeover (the PRIMARY taking its
                  writes back), and every ``activate-primary`` (besides the stored
                  ``switchover`` events: each step of ``mpp-admin switchover``)
``failed``        a ``transition`` to FAILED_OFFLINE or FAILED_ONLINE
``writer-lost``   a ``transition`` from ACTIVE to anything else, and the old ACTIVE's step
                  down in a ``switchover``
``any``           every event
================  ===========================================================================

``--on failover,failed,override`` runs the hook for every event having at least one of them.

The hook's input
================

On stdin: one JSON object, the event as the history stores it plus ``id`` (its stream id, unique
within the pool: ``<pool>/<id>`` is unique overall) and ``kinds`` (stored and derived, sorted).
In the environment: ``MPP_EVENT_<FIELD>`` for each top-level field (upper case, ``-`` as
``_``; ``MPP_EVENT_RULE`` for a transition's rule; ``MPP_EVENT_KINDS`` comma-separated;
``MPP_EVENT_JSON`` the whole object), empty for a null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from mpp_agent.model import EventKind

TAKEOVER_RULES = frozenset({"E6"})
DERIVED_KINDS = ("failover", "switchover", "failed", "writer-lost", "any")
# "switchover" is both stored and derived: listed once
KINDS = tuple(dict.fromkeys((*(k.value for k in EventKind), *DERIVED_KINDS)))
MAX_ENV_VALUE = 4096  # one variable's length; the whole event is on stdin anyway


class BadKinds(ValueError):
    """An ``--on`` list naming a kind that does not exist."""


def parse_kinds(text: str) -> frozenset[str]:
    """``--on``: comma-separated kinds, any case; BadKinds naming the unknown ones."""
    kinds = {k.strip().lower() for k in text.split(",") if k.strip()}
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise BadKinds(f"unknown event kind(s) {', '.join(unknown)}: expected {', '.join(KINDS)}")
    if not kinds:
        raise BadKinds(f"no event kind given: expected some of {', '.join(KINDS)}")
    return frozenset(kinds)


def rule_of(event: Mapping[str, Any]) -> str:
    """A transition's rule without its ``A+`` pre-step (``A+E6`` is a takeover by E6)."""
    extra = event.get("extra")
    rule = extra.get("rule", "") if isinstance(extra, Mapping) else ""
    return str(rule).rsplit("+", 1)[-1]


def kinds_of(event: Mapping[str, Any]) -> frozenset[str]:
    """The event's stored kind and its derived kinds (see the module docstring)."""
    kind = str(event.get("kind", ""))
    kinds = {kind, "any"}
    if kind == EventKind.ACTIVATE_PRIMARY:
        kinds.add("switchover")
    before, after = str(event.get("from_state", "")), str(event.get("to_state", ""))
    if kind == EventKind.SWITCHOVER and before == "ACTIVE" and after != "ACTIVE":
        kinds.add("writer-lost")
    if kind == EventKind.TRANSITION:
        if after == "ACTIVE" and before != "ACTIVE":
            kinds.add("failover" if rule_of(event) in TAKEOVER_RULES else "switchover")
        if after.startswith("FAILED_") and not before.startswith("FAILED_"):
            kinds.add("failed")
        if before == "ACTIVE" and after != "ACTIVE":
            kinds.add("writer-lost")
    return frozenset(kinds)


def wanted(event: Mapping[str, Any], on: Iterable[str]) -> bool:
    return not kinds_of(event).isdisjoint(on)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): base, 2 x base,
    4 x base, ... never more than ``cap``."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


def document(pool: str, event_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object a hook receives (stdin, webhook body, ``MPP_EVENT_JSON``)."""
    return {**event, "pool": pool, "id": event_id, "kinds": sorted(kinds_of(event))}


def environment(doc: Mapping[str, Any]) -> dict[str, str]:
    """The ``MPP_EVENT_*`` variables of a hook's document."""
    env = {f"MPP_EVENT_{k.upper().replace('-', '_')}": env_value(v) for k, v in doc.items()}
    env["MPP_EVENT_RULE"] = rule_of(doc)
    env["MPP_EVENT_KINDS"] = ",".join(doc.get("kinds", ()))
    env["MPP_EVENT_JSON"] = json.dumps(doc, separators=(",", ":"))
    return env


def env_value(value: Any) -> str:
    """A value as a variable: text as is, null empty, anything else as JSON; no NUL, bounded."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"))
    return text.replace("\x00", "")[:MAX_ENV_VALUE]
