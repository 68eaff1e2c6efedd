"""The replication fields of ``list --wide`` and ``list --json`` (cli/mpp_cli/render.py)."""

from __future__ import annotations

from mpp_agent.model import NodeId, NodeState, NodeType, PoolState, Replication, State
from mpp_agent.routing import route
from mpp_cli.render import listing, member_json

A, B = NodeId("10.0.0.1"), NodeId("10.0.0.2")


def pool() -> PoolState:
    active = NodeState(
        A, NodeType.PRIMARY, State.ACTIVE, replication=Replication(binlog="1-1-50", read_only=False)
    )
    standby = NodeState(
        B,
        NodeType.SECONDARY,
        State.STANDBY,
        replication=Replication(
            received="1-1-45", applied="1-1-40", binlog="1-1-40", unapplied=5, read_only=True, lag=3
        ),
    )
    return PoolState("p", (active, standby))


def test_json_fields() -> None:
    p = pool()
    decided = route(p, 0.0).nodes
    standby = member_json(p, p.nodes[1], decided[1], None)
    assert {k: standby[k] for k in ("read_only", "lag", "caught_up", "behind")} == {
        "read_only": True, "lag": 3, "caught_up": False, "behind": 5,
    }  # fmt: skip
    active = member_json(p, p.nodes[0], decided[0], 0.5)
    assert (active["behind"], active["lag"], active["caught_up"]) == (0, 0.5, None)


def test_wide_columns() -> None:
    lines = listing([pool()], 0.0, wide=True).splitlines()
    assert lines[0].split()[:10] == [
        "T", "Server", "Name", "req", "Time", "of", "Last", "Request", "Status", "State",
    ]  # fmt: skip
    assert "RO   Lag    Caught up  Behind" in lines[0]
    assert lines[4].split()[-4:] == ["yes", "3", "no", "5"]
    assert "RO" not in listing([pool()], 0.0).splitlines()[0]
