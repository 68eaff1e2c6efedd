"""The pure part of mpp-hooks (mpp_agent/hooks.py): --on parsing, derived kinds, the retry
schedule, and what a hook receives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mpp_agent.hooks import (
    BadKinds,
    backoff,
    document,
    environment,
    kinds_of,
    parse_kinds,
    wanted,
)


def transition(from_state: str, to_state: str, rule: str = "") -> dict[str, Any]:
    return {
        "kind": "transition",
        "pool": "p1",
        "node": "10.0.0.2:3306",
        "from_state": from_state,
        "to_state": to_state,
        "from_status": "OK",
        "to_status": "OK_WARN",
        "requests": 0,
        "message": "failover",
        "extra": {"rule": rule},
        "actor": "poller-a",
        "at": 1764614400.5,
        "round": 42,
    }


@pytest.mark.parametrize(
    ("event", "derived"),
    [
        (transition("STANDBY", "ACTIVE", "E6"), {"failover"}),
        (transition("STANDBY", "ACTIVE", "A+E6"), {"failover"}),  # after the A pre-step
        (transition("STANDBY", "ACTIVE", "D2"), {"switchover"}),  # the PRIMARY takes back
        (transition("ACTIVE", "FAILED_OFFLINE", "B1"), {"failed", "writer-lost"}),
        (transition("STANDBY", "FAILED_ONLINE", "C2"), {"failed"}),
        (transition("FAILED_OFFLINE", "FAILED_ONLINE", "C2"), set()),  # already failed
        (transition("ACTIVE", "STANDBY", "E1"), {"writer-lost"}),
        (transition("STANDBY", "STANDBY", "D1"), set()),  # a status change only
        ({"kind": "activate-primary", "pool": "p1"}, {"switchover"}),
        ({"kind": "override", "pool": "p1"}, set()),
        ({"kind": "pool-status", "pool": "p1"}, set()),
    ],
)
def test_derived_kinds(event: dict[str, Any], derived: set[str]) -> None:
    assert kinds_of(event) == {event["kind"], "any"} | derived


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("failover", {"failover"}),
        ("Failover, FAILED ,override", {"failover", "failed", "override"}),
        ("any", {"any"}),
        ("pool-status,recover-pool", {"pool-status", "recover-pool"}),
        ("fenced,unfenced", {"fenced", "unfenced"}),
    ],
)
def test_parse_kinds(text: str, kinds: set[str]) -> None:
    assert parse_kinds(text) == kinds


@pytest.mark.parametrize("text", ["", " , ", "failovers", "failover,fencing"])
def test_parse_kinds_refuses(text: str) -> None:
    with pytest.raises(BadKinds, match="kind"):
        parse_kinds(text)


@pytest.mark.parametrize(
    ("on", "event", "runs"),
    [
        ({"failover"}, transition("STANDBY", "ACTIVE", "E6"), True),
        ({"failover"}, transition("STANDBY", "ACTIVE", "D2"), False),
        ({"transition"}, transition("STANDBY", "ACTIVE", "D2"), True),
        ({"any"}, {"kind": "release"}, True),
        ({"failed", "override"}, {"kind": "release"}, False),
        ({"fenced"}, {"kind": "fenced", "node": "10.0.0.1:3306"}, True),
        ({"fenced"}, {"kind": "unfenced", "node": "10.0.0.1:3306"}, False),
        ({"writer-lost", "failed"}, {"kind": "fenced", "node": "10.0.0.1:3306"}, False),
    ],
)
def test_wanted(on: set[str], event: dict[str, Any], runs: bool) -> None:
    assert wanted(event, on) is runs


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "delay"),
    [(1, 1.0, 60.0, 1.0), (2, 1.0, 60.0, 2.0), (4, 1.0, 60.0, 8.0), (8, 1.0, 60.0, 60.0),
     (1, 0.1, 60.0, 0.1), (3, 0.5, 1.5, 1.5), (0, 1.0, 60.0, 1.0)],
)  # fmt: skip
def test_backoff(attempt: int, base: float, cap: float, delay: float) -> None:
    assert backoff(attempt, base, cap) == pytest.approx(delay)


def test_what_a_hook_receives() -> None:
    doc = document("p1", "1764614400500-0", transition("STANDBY", "ACTIVE", "E6"))
    assert doc["id"] == "1764614400500-0"
    assert doc["kinds"] == ["any", "failover", "transition"]
    env = environment(doc)
    assert env["MPP_EVENT_KIND"] == "transition"
    assert env["MPP_EVENT_KINDS"] == "any,failover,transition"
    assert env["MPP_EVENT_POOL"] == "p1"
    assert env["MPP_EVENT_NODE"] == "10.0.0.2:3306"
    assert env["MPP_EVENT_FROM_STATE"] == "STANDBY"
    assert env["MPP_EVENT_TO_STATE"] == "ACTIVE"
    assert env["MPP_EVENT_RULE"] == "E6"
    assert env["MPP_EVENT_REQUESTS"] == "0"
    assert env["MPP_EVENT_ROUND"] == "42"
    assert env["MPP_EVENT_ID"] == "1764614400500-0"
    assert json.loads(env["MPP_EVENT_JSON"]) == doc
    assert json.loads(env["MPP_EVENT_EXTRA"]) == {"rule": "E6"}


def test_environment_values_are_safe() -> None:
    env = environment({"kind": "override", "message": "a\x00b" + "x" * 10_000, "node": None})
    assert env["MPP_EVENT_MESSAGE"].startswith("ab")
    assert len(env["MPP_EVENT_MESSAGE"]) == 4096
    assert env["MPP_EVENT_NODE"] == ""
    assert env["MPP_EVENT_RULE"] == ""
