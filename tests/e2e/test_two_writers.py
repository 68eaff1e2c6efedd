"""Two HAProxy + agent pairs, one agent cut off from Redis while the pollers fail the ACTIVE over
(the ACTIVE still alive and reachable by HAProxy): with ``stale_writer`` = ``drain`` no write
through either HAProxy reaches the old ACTIVE; with ``keep`` the cut-off HAProxy's writes go on
landing on it (two writers), and the test prints how many.

The pollers reach the nodes through forwarders (``tests/forwarder.py``) and HAProxy reaches
them directly; node2 replicates from node1 through node1's forwarder too, so stopping it makes
node1 unreachable to the pollers and to node2's replication (the replicas' view does not hold
the failover) while HAProxy still reaches it; the first agent reaches Redis through a
forwarder too. Pool: interval 1 s, M = 3.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mpp_agent.config import PoolConfig
from mpp_agent.model import NodeId, NodeType, StaleWriter, State
from mpp_agent.store import Store
from scripts.demo import HAPROXY_CFG, render_haproxy_config
from tests.daemons import PollerProcess
from tests.e2e.conftest import AGENT_INTER, replicate_through, reset_source, write_through
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

POOL = "two_writers"
NAMESPACE = "mpp"
INTERVAL = 1.0
M = 3
MEASURE = 10.0


@dataclass
class Writer:
    """Writes through one HAProxy every ``pause`` s; counts the successes per MariaDB port."""

    port: int
    pause: float = 0.05
    landed: list[tuple[float, int]] = field(default_factory=list)
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Writer:
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            port, _ = write_through(self.port)
            if port is None:
                self.failed += 1
            else:
                self.landed.append((time.monotonic(), port))
            time.sleep(self.pause)

    def count(self, since: float, until: float) -> Counter[int]:
        return Counter(p for at, p in self.landed if since <= at <= until)


@dataclass
class Pair:
    agent: Any
    agent_port: int
    haproxy: HAProxy
    rw_port: int


def haproxy_cfg(cluster: MariaDBCluster, fwd: dict[int, Forwarder], agent_port: int) -> str:
    """The shipped config, agent-send naming the pool's nodes (the forwarder addresses the
    pollers use) while HAProxy's servers are the real MariaDB ports."""
    rw_port, ro_port = free_ports(2)
    cfg = render_haproxy_config(
        HAPROXY_CFG.read_text(),
        rw_port=rw_port,
        ro_port=ro_port,
        node1=fwd[1].address,
        node2=fwd[2].address,
        pool=POOL,
        agent_port=agent_port,
    )
    for i, node in ((1, cluster.node1), (2, cluster.node2)):
        cfg = cfg.replace(f"server db{i} {fwd[i].address} ", f"server db{i} {node.node_id} ")
    return cfg


def rw_port_of(cfg: str) -> int:
    line = next(x for x in cfg.splitlines() if "listen mysql_rw" in x)
    after = cfg.split(line, 1)[1]
    bind = next(x for x in after.splitlines() if x.strip().startswith("bind"))
    return int(bind.rsplit(":", 1)[1])


@pytest.fixture
def rig(
    mariadb_cluster: MariaDBCluster,
    haproxy_factory: Callable[[str], HAProxy],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Store, dict[int, Forwarder], Forwarder, list[Pair], list[PollerProcess]]]:
    policy: StaleWriter = request.param
    cluster = mariadb_cluster
    redis_server = RedisServer().start()
    fwd = {1: Forwarder(cluster.node1.port).start(), 2: Forwarder(cluster.node2.port).start()}
    redis_link = Forwarder(redis_server.port).start()
    pollers: list[PollerProcess] = []
    pairs: list[Pair] = []
    try:
        replicate_through(cluster.node2, fwd[1])
        store = Store.from_url(redis_server.url, NAMESPACE)
        Store.from_url(f"redis://{redis_link.address}/0").check()
        members = ((NodeId.parse(fwd[1].address), NodeType.PRIMARY),)
        members += ((NodeId.parse(fwd[2].address), NodeType.SECONDARY),)
        store.create_pool(
            PoolConfig(POOL, members, max_requests=M, interval=INTERVAL, stale_writer=policy)
        )
        for name in ("poller-a", "poller-b"):
            pollers.append(PollerProcess(redis_server.url, name, namespace=NAMESPACE).start())
        for i, url in enumerate((f"redis://{redis_link.address}/0", redis_server.url)):
            (agent_port,) = free_ports(1)
            argv = [
                "mpp-agent", "--redis-url", url, "--namespace", NAMESPACE,
                "--listen", f"127.0.0.1:{agent_port}", "--stale-after", "1",
            ]  # fmt: skip
            agent = spawn(argv, tmp_path / f"agent{i + 1}.log")
            cfg = haproxy_cfg(cluster, fwd, agent_port)
            pairs.append(Pair(agent, agent_port, haproxy_factory(cfg), rw_port_of(cfg)))
        wait_until(lambda: all(n.r == 0 for n in store.load_pool(POOL).nodes), 30, "a steady pool")
        wait_until(
            lambda: all(agent_says(p.agent_port, fwd[1]).startswith("up ready") for p in pairs),
            40,
            "both agents to send writes to node1",
        )
        wait_until(
            lambda: all(write_through(p.rw_port)[0] == cluster.node1.port for p in pairs),
            40,
            "writes on node1 through both HAProxies",
        )
        yield store, fwd, redis_link, pairs, pollers
    finally:
        for pair in pairs:
            terminate(pair.agent)
        for poller in pollers:
            poller.cleanup()
        for f in (*fwd.values(), redis_link):
            f.stop()
        reset_source(cluster.node2, cluster.node1)
        redis_server.cleanup()


def agent_says(port: int, node: Forwarder) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"{POOL} {node.address} rw\n".encode())
            return s.makefile("rb").readline().decode()
    except OSError as exc:
        return repr(exc)


def active_port(store: Store, fwd: dict[int, Forwarder]) -> int | None:
    by_address = {f.address: i for i, f in fwd.items()}
    pool = store.load_pool(POOL)
    active = [n for n in pool.nodes if n.state is State.ACTIVE]
    return by_address.get(str(active[0].node)) if active else None


@pytest.mark.parametrize("rig", [StaleWriter.DRAIN, StaleWriter.KEEP], indirect=True)
def test_a_cut_off_agent_and_a_failover(
    rig: tuple[Store, dict[int, Forwarder], Forwarder, list[Pair], list[PollerProcess]],
    mariadb_cluster: MariaDBCluster,
    tmp_path: Path,
) -> None:
    store, fwd, redis_link, pairs, _ = rig
    policy = store.load_pool(POOL).stale_writer
    old, new = mariadb_cluster.node1.port, mariadb_cluster.node2.port
    writers = [Writer(p.rw_port).start() for p in pairs]
    try:
        cut = time.monotonic()
        redis_link.stop()  # agent 1 cut off from Redis
        fwd[1].stop()  # the ACTIVE unreachable to the pollers, still reachable by HAProxy
        wait_until(lambda: active_port(store, fwd) == 2, 30, "the pollers to fail node1 over")
        failover = time.monotonic()
        start = failover + M * INTERVAL + AGENT_INTER + 0.5
        time.sleep(max(0.0, start + MEASURE - time.monotonic()))
        end = time.monotonic()
        counts = [w.count(start, end) for w in writers]
        overlap = [w.count(failover, end)[old] for w in writers]
        first_stop = [
            max((at for at, p in w.landed if p == old and at >= cut), default=cut) - cut
            for w in writers
        ]
        print(
            f"\n[{policy}] over {MEASURE:g}s from M x interval + agent-inter after the failover "
            f"({failover - cut:.1f}s after the cut): HA1 (cut off) {dict(counts[0])}, "
            f"HA2 {dict(counts[1])} (old ACTIVE {old}, new {new}); "
            f"failed writes HA1 {writers[0].failed}, HA2 {writers[1].failed}; "
            f"last write on the old ACTIVE through HA1 {first_stop[0]:.1f}s after the cut; "
            f"writes on the old ACTIVE after the failover was seen: HA1 {overlap[0]}, "
            f"HA2 {overlap[1]}"
        )
        assert counts[1][old] == 0 and counts[1][new] > 0  # the connected pair follows
        if policy is StaleWriter.DRAIN:
            assert counts[0][old] == 0, counts
            # it says what it knows, and no guess
            log = (tmp_path / "agent1.log").read_text()
            assert "Redis unreachable since" in log
            assert "writes stopped to avoid two writers" in log
            assert "look dead" not in log
        else:
            assert counts[0][old] > 0  # the documented risk of keep: two writers
        # fresh state again: the cut-off pair follows the pool at once
        redis_link.start()
        wait_until(lambda: write_through(pairs[0].rw_port)[0] == new, 15, "HA1 writing to node2")
    finally:
        for w in writers:
            w.stop()
        fwd[1].start()
