"""The agent's snapshot and probe path, without sockets or Redis (the pytest process stays
unpatched: importing agent_server does not monkey-patch)."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import cast

from mpp_agent.agent_server import Agent, AgentSettings, is_pool_stale
from mpp_agent.model import NodeId, NodeState, NodeType, Override, PoolState, State
from mpp_agent.store import Store

NOW = 1_000_000.0
INTERVAL = 10.0
ROUND = math.floor(NOW / INTERVAL)


def pool(last_round: int = ROUND, version: int = 1, **node_changes: object) -> PoolState:
    a = NodeState(NodeId("db1"), NodeType.PRIMARY, State.ACTIVE, requests=0)
    b = NodeState(NodeId("db2"), NodeType.SECONDARY, State.STANDBY, requests=2)
    a = replace(a, **node_changes)  # type: ignore[arg-type]
    return PoolState("p1", (a, b), interval=INTERVAL, version=version, last_round=last_round)


def loaded_agent(*pools: PoolState, now: float = NOW) -> Agent:
    """An agent whose last refresh (just now) found ``pools``."""
    agent = Agent(cast(Store, None), AgentSettings(stale_after=5.0))
    agent.pools = {p.name: p for p in pools}
    agent.last_ok = time.monotonic()
    agent._rebuild(now)
    return agent


def test_pool_staleness_by_rounds() -> None:
    assert not is_pool_stale(pool(ROUND), NOW)
    assert not is_pool_stale(pool(ROUND - 3), NOW)
    assert is_pool_stale(pool(ROUND - 4), NOW)
    assert is_pool_stale(pool(-1), NOW)  # never ticked
    assert not is_pool_stale(replace(pool(-1), nodes=()), NOW)


def test_answers_from_the_snapshot() -> None:
    agent = loaded_agent(pool())
    assert agent.answer(b"p1 db1\n") == b"up ready #ACTIVE OK level=OK\n"
    assert agent.answer(b"p1 db2:3306 ro\n") == b"up ready 50% #STANDBY OK level=OK_WARN\n"
    assert agent.answer(b"p1 db3\n") == b"down #unknown node db3:3306 in pool p1\n"
    assert agent.answer(b"p2 db1\n") == b"down #unknown pool p2\n"
    assert agent.answer(b"p1\n") == b"down #bad request\n"
    assert agent.metrics.probes == {"up_ready": 2, "down": 2, "bad_request": 1}


def test_stale_snapshot_keeps_the_answer_and_says_stale() -> None:
    agent = loaded_agent(pool())
    agent.answer(b"p1 db1\n")  # cached by line
    agent.last_ok = time.monotonic() - 6
    assert agent.answer(b"p1 db1\n") == b"up ready #ACTIVE OK level=OK; stale\n"
    assert agent.answer(b"p1 db1 rw\n") == b"up ready #ACTIVE OK level=OK; stale\n"
    assert agent.health() == (False, "stale")


def test_dead_pollers_make_the_pool_stale() -> None:
    agent = loaded_agent(pool(ROUND - 10))
    assert agent.answer(b"p1 db1\n") == b"up ready #ACTIVE OK level=OK; stale\n"
    assert agent.stale_pools == {"p1"}
    assert agent.health() == (True, "ok")  # Redis itself is fine


def test_no_snapshot_means_no_reply() -> None:
    agent = Agent(cast(Store, None), AgentSettings())
    assert agent.answer(b"p1 db1\n") == b""
    assert agent.health() == (False, "no snapshot yet")


def test_snapshot_is_rebuilt_only_on_change() -> None:
    agent = loaded_agent(pool())
    first = agent.snapshot
    agent._rebuild(NOW + 1)
    assert agent.snapshot is first
    agent.pools = {"p1": pool(version=2, state=State.FAILED_OFFLINE)}
    agent._rebuild(NOW + 2)
    assert agent.snapshot is not first
    assert agent.answer(b"p1 db1\n").startswith(b"down #FAILED_OFFLINE")


def test_overrides_expire_without_a_new_version() -> None:
    override = Override(State.FAILED_OFFLINE, None, "maint", "ops", NOW - 1, NOW + 5)
    agent = loaded_agent(pool(override=override))
    assert agent.answer(b"p1 db1\n").startswith(b"down #FAILED_OFFLINE OK level=OK; override")
    agent._rebuild(NOW + 6)
    assert agent.answer(b"p1 db1\n") == b"up ready #ACTIVE OK level=OK\n"


def test_line_cache_is_bounded() -> None:
    agent = loaded_agent(pool())
    for i in range(5000):
        agent.answer(b"p1 " + b" " * (i % 200) + b"db1 rw\n")
        agent.answer(f"p{i} db1\n".encode())
    snap = agent.snapshot
    assert snap is not None
    assert len(snap.by_line) <= snap.line_cache_limit


def test_metrics_text() -> None:
    agent = loaded_agent(pool())
    agent.answer(b"p1 db1\n")
    text = agent.metrics_text()
    assert 'mpp_agent_probes_total{reply="up_ready"} 1' in text
    assert "mpp_agent_stale 0" in text
    assert "mpp_agent_pools 1" in text
