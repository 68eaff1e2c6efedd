"""End to end: the replicas' view before failing an unreachable ACTIVE (holistic detection).

The pollers reach node1 (the ACTIVE) only through a forwarder (the pool's node address), while
node2 replicates from node1's real port and HAProxy writes to it directly. Stopping the
forwarder cuts the pollers off (connection refused) while node2 still receives from node1: no
failover for twice M intervals, writes go on landing on node1, and ``mpp-admin list``, ``list
--json``, the agent's ``GET /v1/pools`` and one poller WARNING say "ACTIVE unreachable from the
pollers but its replicas still receive from it". Then node1 really dies (``kill -9``): node2's
link is cut too, and the failover comes within the budget M x interval + agent-inter + 1 s.

node2 is matched to node1 by server_id (its ``Master_Server_Id`` against node1's last observed
server_id): the address it replicates from is not the one the pool knows node1 by.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mpp_agent.config import PoolConfig
from mpp_agent.model import NodeId, NodeType, PoolState, State
from mpp_agent.state import MSG_REPLICAS_RECEIVE
from mpp_agent.store import Store
from scripts.demo import HAPROXY_CFG, render_haproxy_config
from tests.daemons import PollerProcess
from tests.e2e.conftest import AGENT_INTER, NAMESPACE, POOL, Recorder, write_through
from tests.forwarder import Forwarder
from tests.servers import (
    HAProxy,
    MariaDBCluster,
    RedisServer,
    free_ports,
    spawn,
    terminate,
    wait_until,
)

pytestmark = pytest.mark.e2e

INTERVAL = 1.0
M = 3
BUDGET = M * INTERVAL + AGENT_INTER + 1.0
STARTED = "not failing it over"
ENDED = "the replicas' view no longer holds its failover"


@dataclass
class Rig:
    cluster: MariaDBCluster
    redis: RedisServer
    store: Store
    link: Forwarder  # the pollers' only way to node1
    pollers: list[PollerProcess]
    rw_port: int
    http_port: int

    def pool(self) -> PoolState:
        return self.store.load_pool(POOL)

    def admin(self, *args: str) -> str:
        argv = ["mpp-admin", "--redis-url", self.redis.url, "--namespace", NAMESPACE, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def agent_pools(self) -> Any:
        url = f"http://127.0.0.1:{self.http_port}/v1/pools"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return json.loads(reply.read())

    def poller_lines(self, text: str) -> list[str]:
        return [x for p in self.pollers for x in p.output().splitlines() if text in x]


def haproxy_cfg(rig_nodes: tuple[str, str], real_node1: str, agent_port: int) -> tuple[str, int]:
    """The shipped config: agent-send names the pool's nodes, db1 is node1's real port."""
    rw_port, ro_port = free_ports(2)
    cfg = render_haproxy_config(
        HAPROXY_CFG.read_text(),
        rw_port=rw_port,
        ro_port=ro_port,
        node1=rig_nodes[0],
        node2=rig_nodes[1],
        pool=POOL,
        agent_port=agent_port,
    )
    return cfg.replace(f"server db1 {rig_nodes[0]} ", f"server db1 {real_node1} "), rw_port


@pytest.fixture
def rig(
    mariadb_cluster: MariaDBCluster,
    haproxy_factory: Callable[[str], HAProxy],
    tmp_path: Path,
) -> Iterator[Rig]:
    cluster = mariadb_cluster
    redis_server = RedisServer().start()
    link = Forwarder(cluster.node1.port).start()
    pollers: list[PollerProcess] = []
    agent = None
    try:
        store = Store.from_url(redis_server.url, NAMESPACE)
        members = ((NodeId.parse(link.address), NodeType.PRIMARY),)
        members += ((NodeId.parse(cluster.node2.node_id), NodeType.SECONDARY),)
        store.create_pool(PoolConfig(POOL, members, max_requests=M, interval=INTERVAL))
        for name in ("poller-a", "poller-b"):
            pollers.append(PollerProcess(redis_server.url, name, namespace=NAMESPACE).start())
        agent_port, http_port = free_ports(2)
        argv = [
            "mpp-agent", "--redis-url", redis_server.url, "--namespace", NAMESPACE,
            "--listen", f"127.0.0.1:{agent_port}", "--http-listen", f"127.0.0.1:{http_port}",
            "--stale-after", "1",
        ]  # fmt: skip
        agent = spawn(argv, tmp_path / "agent.log")
        cfg, rw_port = haproxy_cfg(
            (link.address, cluster.node2.node_id), cluster.node1.node_id, agent_port
        )
        haproxy_factory(cfg)
        rig = Rig(cluster, redis_server, store, link, pollers, rw_port, http_port)
        steady = (State.ACTIVE, State.STANDBY)
        wait_until(
            lambda: (
                tuple(n.state for n in rig.pool().nodes) == steady
                and all(n.r == 0 for n in rig.pool().nodes)
            ),
            30,
            "node1 ACTIVE, node2 STANDBY",
        )
        wait_until(lambda: write_through(rw_port)[0] == cluster.node1.port, 20, "writes on node1")
        yield rig
    finally:
        terminate(agent)
        for poller in pollers:
            poller.cleanup()
        link.stop()
        redis_server.cleanup()


def test_no_failover_while_the_standby_receives_then_failover_once_it_lost_it_too(
    rig: Rig,
) -> None:
    node1, node2 = rig.cluster.node1, rig.cluster.node2
    expected = f"{MSG_REPLICAS_RECEIVE}: {node2.node_id}"
    with Recorder(rig.store, rig.rw_port) as rec:
        cut_at = time.monotonic()
        rig.link.stop()  # the pollers lose node1; node2's IO thread still streams from it
        wait_until(lambda: rig.pool().nodes[0].replicas_view is not None, 3 * INTERVAL, "view")
        time.sleep(2 * M * INTERVAL + INTERVAL)
        held_until = time.monotonic()

        a, b = rig.pool().nodes
        assert (a.state, a.requests, a.replicas_view) == (State.ACTIVE, 0, expected), a
        assert b.state is State.STANDBY
        assert all(s.states.get(rig.link.port) is State.ACTIVE for s in rec.snapshots)
        # Writes kept landing on node1 only: no failover, no second writer.
        landed = {w.port for w in rec.writes if w.port and cut_at + 1 <= w.start <= held_until}
        assert landed == {node1.port}, rec.timeline()

        assert f"  ! {expected}" in rig.admin("list")
        (listed,) = json.loads(rig.admin("list", "--json"))["pools"]
        assert listed["nodes"][0]["replicas_view"] == expected
        assert listed["nodes"][1]["replicas_view"] is None
        (served,) = rig.agent_pools()["pools"]
        assert served["nodes"][0]["replicas_view"] == expected
        # One WARNING when it started (the committing poller's), not one per round.
        started = rig.poller_lines(STARTED)
        assert len(started) == 1 and "WARNING" in started[0] and expected in started[0], started

        killed_at = time.monotonic()
        node1.kill9()  # node2's link is cut too: the replicas' view no longer holds
        wait_until(lambda: rec.first_write_on(node2.port, killed_at) is not None, BUDGET + 15, "w")
        first = rec.first_write_on(node2.port, killed_at)
        assert first is not None
        failover = first.end - killed_at
    print(f"\nfailover {failover:.2f}s after node2 lost node1 too (budget {BUDGET:g}s)")
    assert failover <= BUDGET, rec.timeline()
    a, b = rig.pool().nodes
    assert (a.state, b.state, a.replicas_view) == (State.FAILED_OFFLINE, State.ACTIVE, None)
    wait_until(lambda: bool(rig.poller_lines(ENDED)), 5, "the WARNING that the view ended")
    assert len(rig.poller_lines(ENDED)) == 1
