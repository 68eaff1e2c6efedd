"""The agent's per-node Prometheus lines, pure (no sockets, no Redis)."""

from __future__ import annotations

from mpp_agent.agent_server import label_value, node_metrics
from mpp_agent.model import NodeId, NodeState, NodeType, PoolState


def test_one_abstained_gauge_per_node_with_its_pool_and_node() -> None:
    a = NodeState(NodeId("db1"), NodeType.PRIMARY, monitor_note="monitor cannot check: denied")
    b = NodeState(NodeId("db2", 3307), NodeType.SECONDARY)
    lines = node_metrics([PoolState("zz", (b,)), PoolState("p1", (a, b))])
    assert lines == [
        "# HELP mpp_node_monitor_abstained 1 when pollers could not judge the node in its last "
        "round (the monitor's fault, not the node's), else 0.",
        "# TYPE mpp_node_monitor_abstained gauge",
        'mpp_node_monitor_abstained{pool="p1",node="db1:3306"} 1',
        'mpp_node_monitor_abstained{pool="p1",node="db2:3307"} 0',
        'mpp_node_monitor_abstained{pool="zz",node="db2:3307"} 0',
    ]


def test_label_values_are_escaped() -> None:
    assert label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_a_degraded_gauge_per_pool() -> None:
    from mpp_agent.agent_server import pool_metrics
    from mpp_agent.model import State

    a = NodeState(NodeId("db1"), NodeType.PRIMARY, State.ACTIVE)
    b = NodeState(NodeId("db2"), NodeType.SECONDARY, State.STANDBY)
    failed = NodeState(NodeId("db2"), NodeType.SECONDARY, State.FAILED_ONLINE)
    lines = pool_metrics([PoolState("ok", (a, b)), PoolState("lost", (a, failed))], 0.0)
    assert lines[2:] == ['mpp_pool_degraded{pool="lost"} 1', 'mpp_pool_degraded{pool="ok"} 0']


def test_state_metrics_say_each_nodes_state_and_who_takes_writes() -> None:
    from mpp_agent.agent_server import state_metrics
    from mpp_agent.model import State, Status

    a = NodeState(NodeId("db1"), NodeType.PRIMARY, State.FAILED_OFFLINE, Status.FAIL, requests=4)
    b = NodeState(NodeId("db2"), NodeType.SECONDARY, State.ACTIVE, requests=0)
    lines = state_metrics([PoolState("p1", (a, b))], 0.0, stale=["p1"])
    samples = [line for line in lines if not line.startswith("#")]
    assert samples == [
        'mpp_node_state{pool="p1",node="db1:3306",state="FAILED_OFFLINE"} 1',
        'mpp_node_state{pool="p1",node="db2:3306",state="ACTIVE"} 1',
        'mpp_node_requests{pool="p1",node="db1:3306"} 4',
        'mpp_node_requests{pool="p1",node="db2:3306"} 0',
        'mpp_node_takes_writes{pool="p1",node="db1:3306"} 0',
        'mpp_node_takes_writes{pool="p1",node="db2:3306"} 1',
        'mpp_node_takes_reads{pool="p1",node="db1:3306"} 0',
        'mpp_node_takes_reads{pool="p1",node="db2:3306"} 1',
        'mpp_pool_status{pool="p1",status="OK"} 1',
        'mpp_pool_stale{pool="p1"} 1',
    ]
