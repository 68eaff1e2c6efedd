"""The two shortcuts of a commit, against what they stand in for: ``model.evolve`` gives what
``dataclasses.replace`` gives for every frozen value the tick copies, and a poller's own
report, read back with the others', is what decoding its stored text gives."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from mpp_agent import model, poller, state
from mpp_agent.codec import as_stored, observations_from_json, observations_to_json
from mpp_agent.model import (
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    Override,
    PoolState,
    Replication,
    State,
    Status,
    evolve,
)
from mpp_agent.store import decode_reports

A, B = NodeId("10.0.0.1"), NodeId("10.0.0.2")
NODE = NodeState(A, NodeType.PRIMARY, State.ACTIVE, Status.OK, message="OK")
POOL = PoolState("db", (NODE, NodeState(B, NodeType.SECONDARY, State.STANDBY, Status.OK)))
REPLICA = Replication(source="10.0.0.1:3306", source_server_id=1)


def frozen_dataclasses() -> list[type]:
    """Every frozen dataclass of the modules whose values the tick and the poller copy."""
    found = []
    for module in (model, state, poller):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            params = getattr(cls, "__dataclass_params__", None)
            if cls.__module__ == module.__name__ and params is not None and params.frozen:
                found.append(cls)
    return found


@pytest.mark.parametrize("cls", frozen_dataclasses(), ids=lambda c: c.__name__)
def test_every_copied_value_is_one_evolve_may_copy(cls: type) -> None:
    # evolve copies the instance dictionary: a __post_init__ would not run, __slots__ have none.
    assert "__post_init__" not in vars(cls)
    assert "__slots__" not in vars(cls)


@pytest.mark.parametrize(
    ("value", "changes"),
    [
        (NODE, {"state": State.FAILED_ONLINE, "status": Status.FAIL}),
        (NODE, {"override": Override(State.STANDBY, None, "maint", expires_at=9.0)}),
        (NODE, {"catchup_until": None, "message": ""}),
        (POOL, {"version": 7, "last_round": 12}),
        (POOL, {"nodes": (NODE,)}),
        (POOL, {}),
        (Observation(Outcome.CONNECT, "refused"), {"monitor_note": "1 of 2 abstained"}),
        (Observation(Outcome.HEALTHY), {"replication": REPLICA}),
    ],
)
def test_evolve_gives_what_replace_gives(value: Any, changes: dict[str, Any]) -> None:
    before = dataclasses.astuple(value)
    copy = evolve(value, **changes)
    expected = dataclasses.replace(value, **changes)
    assert copy == expected and type(copy) is type(value)
    assert dataclasses.astuple(copy) == dataclasses.astuple(expected)
    assert dataclasses.astuple(value) == before  # the original is unchanged
    if changes:
        assert copy is not value
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.version = 1


def test_evolve_refuses_a_field_the_value_does_not_have() -> None:
    with pytest.raises(TypeError, match="NodeState has no field colour"):
        evolve(NODE, colour="red")
    with pytest.raises(TypeError):
        dataclasses.replace(NODE, colour="red")  # type: ignore[call-arg]


SEEN = {
    A: Observation(Outcome.HEALTHY, replication=None),
    B: Observation(Outcome.CONNECT, "refused", monitor_note="1 of 2 abstained", unreachable=True),
}


def test_a_report_as_stored_is_what_its_text_reads_back_as() -> None:
    stored = as_stored(SEEN)
    assert stored == observations_from_json(observations_to_json(SEEN))
    assert stored[B].monitor_note == "" and stored[B].unreachable
    assert SEEN[B].monitor_note  # the merged verdict itself is unchanged


def test_the_own_report_is_reused_only_when_its_stored_text_is_the_one_recorded() -> None:
    own = observations_to_json(SEEN).encode()
    other = observations_to_json({A: Observation(Outcome.REQUEST, "boom")}).encode()
    raw = {b"p1": own, b"p2": other}
    known = ("p1", own, as_stored(SEEN))
    assert decode_reports(raw, known) == decode_reports(raw)
    assert decode_reports(raw, known)["p1"] is known[2]
    # Another text under the same poller (a newer record), or the same text under another
    # poller, is decoded from what is stored.
    changed = {b"p1": other, b"p2": own}
    assert decode_reports(changed, known) == decode_reports(changed)
    assert decode_reports(changed, known)["p1"] is not known[2]
    assert decode_reports(changed, known)["p2"] is not known[2]
    assert decode_reports(changed, known)["p1"][A].outcome is Outcome.REQUEST
