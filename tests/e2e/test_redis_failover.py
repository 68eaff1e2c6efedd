"""A Redis failover that loses the last commits never rolls the writer back.

Redis master + replica + 3 Sentinels started here; pollers and the agent reach Redis through the
Sentinels. The replica is frozen (SIGSTOP, its link dropped by the master) just before the pollers
commit a failover of the pool (node1 -> node2), so it never receives that commit; once the agent
serves node2 as the writer the master is killed and the replica thawed: the Sentinels promote it,
with the pool's older state (node1 ACTIVE, a lower version). The pollers are paused meanwhile, so
that the agent and ``mpp-admin list`` meet that older state: the agent keeps the newer one, ``list``
says the state went backwards; resumed, the pollers see the rollback and restore their newer state
above every version seen. At no moment does the agent send writes back to node1.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from mpp_agent.config import PoolConfig
from mpp_agent.model import NodeId, NodeType, State
from mpp_agent.store import Store
from tests.daemons import PollerProcess, ask_agent
from tests.e2e.conftest import replicate_through, reset_source
from tests.forwarder import Forwarder
from tests.integration.admin_support import mpp_admin
from tests.servers import (
    MariaDBCluster,
    RedisServer,
    free_ports,
    require_binary,
    spawn,
    terminate,
    wait_until,
)

POOL = "redis_failover"
NAMESPACE = "mpp"
MASTER = "mymaster"


class Sentinels:
    """Three redis-server --sentinel processes watching ``master_port`` (quorum 2)."""

    def __init__(self, master_port: int, workdir: Path) -> None:
        self.ports = free_ports(3)
        self.procs = []
        for port in self.ports:
            conf = workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 3000\n"
            )
            argv = [require_binary("redis-server"), str(conf), "--sentinel"]
            self.procs.append(spawn(argv, workdir / f"sentinel-{port}.log"))
        for port in self.ports:
            wait_until(lambda p=port: ping(p), 10, f"sentinel on {port}")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def master_port(self) -> int:
        with redis.Redis(port=self.ports[0], socket_timeout=1) as s:
            return int(s.sentinel_get_master_addr_by_name(MASTER)[1])  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        for proc in self.procs:
            terminate(proc)


def restored(store: Store, served: int, writer: str) -> bool:
    pool = store.load_pool(POOL)
    node = pool.find(NodeId.parse(writer))
    return pool.version > served and node is not None and node.state is State.ACTIVE


def ping(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as c:
            return bool(c.ping())
    except redis.RedisError:
        return False


def ask(agent_port: int, node: str) -> str:
    return ask_agent(agent_port, f"{POOL} {node} rw")


def test_a_redis_failover_that_lost_commits_never_moves_the_writer_back(
    mariadb_cluster: MariaDBCluster,
    redis_master_and_replica: tuple[RedisServer, RedisServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # mpp-admin's memory
    master, replica = redis_master_and_replica
    cluster = mariadb_cluster
    sentinels = Sentinels(master.port, tmp_path)
    fwd = {1: Forwarder(cluster.node1.port).start(), 2: Forwarder(cluster.node2.port).start()}
    node1, node2 = fwd[1].address, fwd[2].address
    pollers: list[PollerProcess] = []
    agent = None
    answers: list[tuple[float, str, str]] = []  # (time, node, answer)
    stop = threading.Event()
    try:
        # node2 replicates through node1's forwarder: stopping it cuts the pollers and node2's
        # replication off node1 (the replicas' view does not hold the failover).
        replicate_through(cluster.node2, fwd[1])
        store = Store.from_url(sentinels.url, NAMESPACE)
        members = (
            (NodeId.parse(node1), NodeType.PRIMARY),
            (NodeId.parse(node2), NodeType.SECONDARY),
        )
        store.create_pool(PoolConfig(POOL, members, max_requests=3, interval=1.0))
        for name in ("poller-a", "poller-b"):
            pollers.append(PollerProcess(sentinels.url, name, namespace=NAMESPACE).start())
        (agent_port,) = free_ports(1)
        argv = [
            "mpp-agent", "--redis-url", sentinels.url, "--namespace", NAMESPACE,
            "--listen", f"127.0.0.1:{agent_port}", "--stale-after", "2",
        ]  # fmt: skip
        agent = spawn(argv, tmp_path / "agent.log")
        wait_until(lambda: ask(agent_port, node1).startswith("up ready"), 30, "node1 the writer")

        def watch() -> None:
            while not stop.is_set():
                for node in (node1, node2):
                    answers.append((time.monotonic(), node, ask(agent_port, node)))
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        served_before = store.load_pool(POOL).version
        # The replica's link frozen: the replica stopped, and its connection dropped by the
        # master (else what the master sends meanwhile would wait in the replica's socket).
        os.kill(replica.pid, signal.SIGSTOP)
        master.client().client_kill_filter(_type="replica")
        fwd[1].stop()  # node1 unreachable to the pollers: they fail it over
        wait_until(lambda: ask(agent_port, node2).startswith("up ready"), 30, "node2 the writer")
        served = store.load_pool(POOL)
        assert served.version > served_before
        moved = time.monotonic()
        listed = mpp_admin(sentinels.url, "list", "--pool", POOL)  # mpp-admin sees it too
        assert listed.exit_code == 0, listed.output
        # The pollers paused through the Redis failover, so the agent and mpp-admin meet the
        # older state before any poller can restore the newer one.
        for poller in pollers:
            os.kill(poller.proc.pid, signal.SIGSTOP)
        os.kill(master.pid, signal.SIGKILL)  # the master dies with the commits the replica lacks
        os.kill(replica.pid, signal.SIGCONT)
        wait_until(lambda: sentinels.master_port() == replica.port, 60, "the replica promoted")
        after = Store.from_url(sentinels.url, NAMESPACE)
        # Every Sentinel must agree before a client gets the new master (it may still be
        # flagged down for a moment after the first Sentinel reports it).
        wait_until(lambda: redis_answers(after), 30, "Sentinels to hand out the new master")
        rolled_back = after.load_pool(POOL)
        assert rolled_back.version < served.version  # the commits the replica lacked are lost
        assert rolled_back.incarnation == served.incarnation
        log = tmp_path / "agent.log"
        wait_until(lambda: "state went backwards" in log.read_text(), 15, "the agent to see it")
        assert "keeping version" in log.read_text()
        listed = mpp_admin(sentinels.url, "list", "--pool", POOL)
        assert "! state went backwards" in listed.stdout, listed.output
        for poller in pollers:
            os.kill(poller.proc.pid, signal.SIGCONT)
        # The pollers restore their newer state above every version seen; rounds go on.
        wait_until(
            lambda: restored(after, served.version, node2), 30, "the pollers' newer state back"
        )
        time.sleep(3)
        stop.set()
        back = [
            (round(at - moved, 2), a)
            for at, node, a in answers
            if node == node1 and at > moved and a.startswith("up ready")
        ]
        assert not back, f"the writer went back to node1: {back[:5]}"
        assert ask(agent_port, node2).startswith("up ready")
        poller_logs = "".join(p.output() for p in pollers)
        assert "state went backwards" in poller_logs, poller_logs[-3000:]
        # A WAIT timed out, or the replica was seen gone (whichever the pollers met first).
        assert "not confirmed by any Redis replica" in poller_logs
    finally:
        stop.set()
        terminate(agent)
        for poller in pollers:
            if poller.proc is not None and poller.proc.poll() is None:
                os.kill(poller.proc.pid, signal.SIGCONT)
            poller.cleanup()
        for f in fwd.values():
            f.stop()
        reset_source(cluster.node2, cluster.node1)
        sentinels.stop()


def redis_answers(store: Store) -> bool:
    try:
        return bool(store.client.ping())
    except redis.RedisError:
        return False
