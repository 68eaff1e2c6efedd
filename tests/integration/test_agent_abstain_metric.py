"""The agent's ``mpp_node_monitor_abstained`` gauge, from a real mpp-agent over a real Redis:
1 while the pollers could not judge a node in its last round, 0 otherwise."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.integration.test_agent_server import (
    N1,
    N2,
    AgentProcess,
    make_pool,
    metric,
    set_nodes,
    start_agent,  # noqa: F401 - the fixture
)
from tests.servers import wait_until

pytestmark = pytest.mark.integration

NOTE = "monitor cannot check: Access denied for user 'monitor'@'127.0.0.1' (using password: NO)"


def abstained(agent: AgentProcess, node: str) -> float:
    return metric(agent.metrics_port, f'mpp_node_monitor_abstained{{pool="p1",node="{node}"}}')


def test_the_gauge_follows_the_monitor_note(
    redis_url: str,
    start_agent: Callable[..., AgentProcess],  # noqa: F811
) -> None:
    store = make_pool(redis_url)
    agent = start_agent(redis_url)
    assert (abstained(agent, N1), abstained(agent, N2)) == (0, 0)
    set_nodes(store, "p1", {N2: {"monitor_note": NOTE}})
    wait_until(lambda: abstained(agent, N2) == 1, 5, "the gauge at 1")
    assert abstained(agent, N1) == 0
    # The reply HAProxy hears is unchanged: abstaining is the monitor's fault, not the node's.
    assert agent.ask(f"p1 {N2} rw") == "up drain #STANDBY OK level=OK_INFO\n"
    set_nodes(store, "p1", {N2: {"monitor_note": None}})
    wait_until(lambda: abstained(agent, N2) == 0, 5, "the gauge back at 0")
