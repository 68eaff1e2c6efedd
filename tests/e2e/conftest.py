"""The whole system for end-to-end tests: real MariaDB (the session cluster), a Redis with an
append-only file, two real ``mpp-poller``s, a real ``mpp-agent`` and a real HAProxy running
``haproxy/haproxy.cfg`` (addresses and ports rewritten by the demo's renderer, nothing else).

The pool is node1 PRIMARY, node2 SECONDARY (master-master), interval 1 s, M = 4. ``Recorder``
writes through HAProxy and watches the pool in Redis at the same time, so a test can check each
successful connection against the pool state of that moment.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pymysql
import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import DEFAULT_OBSERVERS, Fence, PoolState, State
from mpp_agent.store import Store
from scripts.demo import HAPROXY_CFG, render_haproxy_config
from tests.daemons import PollerProcess, ask_agent
from tests.forwarder import Forwarder
from tests.servers import (
    APP_PASSWORD,
    APP_USER,
    HAProxy,
    MariaDBCluster,
    MariaDBNode,
    RedisServer,
    free_ports,
    spawn,
    terminate,
    wait_until,
)

POOL = "e2e_pool"
NAMESPACE = "mpp"
INTERVAL = 1.0
M = 4
AGENT_INTER = 1.0  # haproxy/haproxy.cfg
BUDGET = M * INTERVAL + AGENT_INTER + 1.0  # failover budget: kill -9 to new writes
# How long HAProxy may keep acting on the agent's previous answer after a commit: one
# agent-inter (+3 % spread-checks), plus the agent's own refresh and a margin for a busy CI box.
HAPROXY_LAG = AGENT_INTER * 1.03 + 0.5


def write_through(port: int, timeout: float = 0.5) -> tuple[int | None, str]:
    """A new connection through HAProxy: INSERT a row, read ``@@port``."""
    try:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=port,
            user=APP_USER,
            password=APP_PASSWORD,
            autocommit=True,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            ssl_disabled=True,
        )
    except (pymysql.err.MySQLError, OSError) as exc:
        return None, repr(exc)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO app.t (origin, v) VALUES (@@port, 'e2e')")
            cur.execute("SELECT @@port")
            return int(cur.fetchone()[0]), ""
    except (pymysql.err.MySQLError, OSError) as exc:
        return None, repr(exc)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


@dataclass
class Write:
    start: float
    end: float
    port: int | None
    error: str = ""


@dataclass
class Snapshot:
    at: float
    states: dict[int, State]  # MariaDB port -> state


@dataclass
class Recorder:
    """Two threads: one writes through HAProxy every ``pause`` s, one polls the pool."""

    store: Store
    rw_port: int
    pause: float = 0.03
    writes: list[Write] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Recorder:
        # The watcher first: every write must start after the first snapshot it is judged by.
        for target in (self._watch_loop, self._write_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
            wait_until(lambda: bool(self.snapshots), 10, "the first pool snapshot")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            port, error = write_through(self.rw_port)
            self.writes.append(Write(start, time.monotonic(), port, error))
            time.sleep(self.pause)

    def _watch_loop(self) -> None:
        last: dict[int, State] | None = None
        while not self._stop.is_set():
            try:
                pool = self.store.load_pool(POOL)
            except Exception:  # Redis restarting: the state did not change meanwhile
                time.sleep(0.05)
                continue
            states = {n.node.port: n.state for n in pool.nodes}
            if states != last:
                self.snapshots.append(Snapshot(time.monotonic(), states))
                last = states
            time.sleep(0.01)

    def first_write_on(self, port: int, after: float) -> Write | None:
        return next((w for w in self.writes if w.port == port and w.start >= after), None)

    def was_active(self, port: int, since: float, until: float) -> bool:
        """Whether ``port`` was ACTIVE at any moment of [since, until]."""
        for i, snap in enumerate(self.snapshots):
            ends = self.snapshots[i + 1].at if i + 1 < len(self.snapshots) else float("inf")
            if snap.at <= until and ends >= since and snap.states.get(port) is State.ACTIVE:
                return True
        return False

    def misrouted(self) -> list[str]:
        """Every successful write that reached a node which was not ACTIVE at any moment from
        one HAProxy lag before its connect to its end (the transition's allowance)."""
        bad = []
        for w in self.writes:
            if w.port is not None and not self.was_active(w.port, w.start - HAPROXY_LAG, w.end):
                bad.append(f"write at {w.start:.2f} landed on {w.port}; {self.timeline()}")
        return bad

    def timeline(self) -> str:
        return "; ".join(
            f"{s.at:.2f}: " + ",".join(f"{p}={st.value}" for p, st in s.states.items())
            for s in self.snapshots
        )


def replicate_through(replica: MariaDBNode, link: Forwarder) -> None:
    """``replica`` replicates from its source through ``link`` (a forwarder a test can stop)."""
    replica.sql(
        f"STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={link.port}; "
        "START SLAVE"
    )
    replica.wait_slave()


def reset_source(replica: MariaDBNode, source: MariaDBNode) -> None:
    """``replica`` replicates from ``source`` directly again."""
    replica.sql("STOP SLAVE")
    replica.change_master(source)
    replica.sql("START SLAVE")


@dataclass
class System:
    cluster: MariaDBCluster
    redis: Any  # what a test may stop and start (a RedisServer, or a Redis Cluster's node)
    store: Store
    pollers: list[PollerProcess]
    agent_port: int
    rw_port: int
    redis_url: str = ""
    haproxy: HAProxy = field(init=False)

    @property
    def node1(self) -> Any:
        return self.cluster.node1

    @property
    def node2(self) -> Any:
        return self.cluster.node2

    def pool(self) -> PoolState:
        return self.store.load_pool(POOL)

    def is_steady(self, active: Any) -> bool:
        """``active`` ACTIVE, the other STANDBY, both at R = 0."""
        pool = self.pool()
        want = {self.node1.port: State.STANDBY, self.node2.port: State.STANDBY}
        want[active.port] = State.ACTIVE
        return all(n.state is want[n.node.port] and n.r == 0 for n in pool.nodes)

    def ask_agent(self, node: Any, role: str = "rw") -> str:
        return ask_agent(self.agent_port, f"{POOL} {node.node_id} {role}")

    def haproxy_heard_agent(self) -> bool:
        return all(
            self.haproxy.server("mysql_rw", name)["agent_status"] == "L7OK"
            for name in ("db1", "db2")
        )

    def recorder(self) -> Recorder:
        return Recorder(Store.from_url(self.redis_url or self.redis.url, NAMESPACE), self.rw_port)


@contextlib.contextmanager
def running_system(
    cluster: MariaDBCluster,
    haproxy_factory: Callable[[str], HAProxy],
    tmp_path: Path,
    redis_server: Any,
    redis_url: str,
    poller_ids: Sequence[str] = ("poller-a", "poller-b"),
    observers: int = DEFAULT_OBSERVERS,
    fence: Fence = Fence.OFF,
    poller_extra: Sequence[str] = (),
) -> Iterator[System]:
    """The pool on the Redis at ``redis_url`` (``redis_server`` is what a test may stop),
    its pollers (given ``poller_extra`` options, e.g. a fencing account), the agent and HAProxy,
    all up and steady: node1 ACTIVE, node2 STANDBY."""
    pollers: list[PollerProcess] = []
    agents: list[Any] = []
    try:
        store = Store.from_url(redis_url, NAMESPACE)
        text = f"name:{POOL};primary:{cluster.node1.node_id};secondary:{cluster.node2.node_id}"
        config = parse_failoverpool(text, interval=INTERVAL, max_requests=M)
        store.create_pool(replace(config, observers=observers, fence=fence))
        for name in poller_ids:
            poller = PollerProcess(redis_url, name, namespace=NAMESPACE)
            poller.extra = list(poller_extra)
            pollers.append(poller.start())

        agent_port, rw_port, ro_port = free_ports(3)

        argv = [
            "mpp-agent",
            "--redis-url", redis_url,
            "--namespace", NAMESPACE,
            "--listen", f"127.0.0.1:{agent_port}",
            "--stale-after", "1",
        ]  # fmt: skip
        agents.append(spawn(argv, tmp_path / "agent.log"))
        system = System(cluster, redis_server, store, pollers, agent_port, rw_port, redis_url)
        wait_until(lambda: system.is_steady(cluster.node1), 30, "node1 ACTIVE, node2 STANDBY")
        wait_until(lambda: system.ask_agent(cluster.node1).startswith("up ready"), 15, "the agent")
        cfg = render_haproxy_config(
            HAPROXY_CFG.read_text(),
            rw_port=rw_port,
            ro_port=ro_port,
            node1=cluster.node1.node_id,
            node2=cluster.node2.node_id,
            pool=POOL,
            agent_port=agent_port,
        )
        system.haproxy = haproxy_factory(cfg)
        wait_until(system.haproxy_heard_agent, 15, "HAProxy to hear the agent about both")
        wait_until(lambda: write_through(rw_port)[0] == cluster.node1.port, 15, "a write on node1")
        yield system
    finally:
        for proc in agents:
            terminate(proc)
        for poller in pollers:
            poller.cleanup()


@contextlib.contextmanager
def fresh_system(
    mariadb_cluster: MariaDBCluster,
    haproxy_factory: Callable[[str], HAProxy],
    tmp_path: Path,
    **options: Any,
) -> Iterator[System]:
    """``running_system`` on a Redis of its own (``options``: its keyword arguments)."""
    redis_server = RedisServer(persistent=True).start()
    try:
        with running_system(
            mariadb_cluster, haproxy_factory, tmp_path, redis_server, redis_server.url, **options
        ) as system:
            yield system
    finally:
        redis_server.cleanup()


@pytest.fixture
def system(
    mariadb_cluster: MariaDBCluster,
    haproxy_factory: Callable[[str], HAProxy],
    tmp_path: Path,
) -> Iterator[System]:
    """Everything up and steady: node1 ACTIVE, node2 STANDBY, HAProxy writing to node1."""
    with fresh_system(mariadb_cluster, haproxy_factory, tmp_path) as system:
        yield system
