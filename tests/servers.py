"""Real servers for integration and end-to-end tests: redis-server, mariadbd x3, haproxy.

This module owns starting and stopping the outside systems the tests run against. It follows a
proven recipe for running them locally exactly where it matters:

* every server is a direct child of the pytest process (``Popen``), bound to 127.0.0.1 on a free
  port, with its files under a short ``/tmp/mpp*`` directory (unix socket paths must stay under
  108 bytes, so never under pytest's deep ``tmp_path``);
* servers are stopped by their pid, never by name; a server left SIGSTOPped gets SIGCONT first;
  every server started is also registered for an ``atexit`` kill, and is started with
  ``PR_SET_PDEATHSIG`` so that even a ``kill -9`` of pytest leaves nothing running;
* ``--no-defaults`` is the first option of every MariaDB tool, ``mariadbd`` runs with
  ``--user=root``, accounts are created at ``'127.0.0.1'`` (``--skip-name-resolve``).

The API here is what other tests code against: keep it stable.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pymysql
import pytest
import redis

from mpp_agent.model import NodeId

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

MONITOR_USER = "monitor"
MONITOR_PASSWORD = "monpass"
APP_USER = "app"
APP_PASSWORD = "apppass"
# The pollers' fencing account (--fence-user): READ_ONLY ADMIN only, nothing else.
FENCE_USER = "fence"
FENCE_PASSWORD = "fencepass"
REPL_USER = "repl"
REPL_PASSWORD = "replpass"
MONITOR_DB = "mppmon"
APP_DB = "app"

# ---------------------------------------------------------------------------------------------
# helpers


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(message: str, under_ci: str = "") -> NoReturn:
    """Skip a test that cannot run here (``message``); under CI (``CI=true``) fail it instead,
    with ``under_ci`` if given: nothing real may silently not run in CI."""
    if is_ci():
        pytest.fail(under_ci or message, pytrace=False)
    pytest.skip(message)


def require_binary(name: str) -> str:
    """The absolute path of an executable; skip without it, but fail under CI (``CI=true``).

    ``/usr/sbin`` and ``/sbin`` are searched too: ``mariadbd`` and ``haproxy`` live there and a
    non-root PATH often lacks them."""
    extra = os.pathsep.join(["/usr/sbin", "/sbin", "/usr/local/sbin"])
    path = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + extra)
    if path is not None:
        return path
    message = f"{name} is not installed (scripts/setup.sh installs it)"
    unavailable(message, f"{message}; real servers may not be skipped under CI=true")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all sockets are held until every port is chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cluster_port() -> int:
    """A free port for a Redis Cluster node: at most 55535, with its cluster bus port (the
    port + 10000) free too."""
    for _ in range(1000):
        port = free_port()
        if port <= 55535 and port + 10000 not in _ports_in_use([port + 10000]):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _ports_in_use(ports: list[int]) -> set[int]:
    used = set()
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                used.add(port)
    return used


def short_tempdir(prefix: str = "mpp") -> Path:
    """A fresh directory under /tmp with a short path, so unix sockets fit in 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is in the stopped state (``T``)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue  # a thread that just ended
    return all(state in ("T", "t") for state in states)


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> float:
    """Poll ``check`` until it is true; return the seconds waited, raise TimeoutError if not."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# Every live child, so that an interpreter exit without fixture teardown still kills them.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_leftovers() -> None:
    for pid, proc in list(_LIVE.items()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    _LIVE.clear()


atexit.register(_kill_leftovers)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when pytest dies, however pytest dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server as our own child in its own session (a Ctrl-C to pytest reaches only
    pytest, whose teardown then stops the server cleanly)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    _LIVE[proc.pid] = proc
    return proc


def terminate(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop one child by pid: SIGCONT (it may be SIGSTOPped), ``sig``, then SIGKILL if slow."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
    _LIVE.pop(proc.pid, None)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------
# Redis


class RedisServer:
    """One redis-server on a free loopback port, no persistence (``--save '' --appendonly no``),
    or with an append-only file in ``workdir`` when ``persistent`` (a restart keeps the data)."""

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        *,
        persistent: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.binary = require_binary("redis-server")
        self.extra = extra  # more redis-server options (e.g. those of a Cluster node)
        self.workdir = workdir or short_tempdir("mppr")
        self._own_workdir = workdir is None
        self.port = port or free_port()
        self.persistent = persistent
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("redis-server is not running")
        return self._proc.pid

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client with ``decode_responses=True`` (str in, str out) unless told otherwise."""
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 5)
        return redis.Redis.from_url(self.url, **kwargs)

    def start(self) -> RedisServer:
        if self.is_running:
            return self
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--daemonize", "no",
            *self.extra,
        ]  # fmt: skip
        log = self.workdir / "redis.log"
        self._proc = spawn(argv, log)
        wait_until(self._answers_ping, STARTUP_TIMEOUT, f"redis-server on {self.port}")
        return self

    def _answers_ping(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"redis-server exited:\n{_log_tail(self.workdir / 'redis.log')}")
        try:
            with self.client(socket_timeout=0.5, socket_connect_timeout=0.5) as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        terminate(self._proc)
        self._proc = None

    def restart(self) -> RedisServer:
        """Stop and start on the same port; the data is lost unless ``persistent``."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class RedisClusterServers:
    """A Redis Cluster on loopback: ``masters`` masters, each with ``replicas`` replicas
    (``redis-server --cluster-enabled yes`` on free ports, ``redis-cli --cluster create``), with
    a short node timeout so that a killed master's replica takes over within seconds."""

    NODE_TIMEOUT_MS = 1000

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.cli = require_binary("redis-cli")
        self.masters, self.replicas = masters, replicas
        options = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS),
            # Pools on the other shards go on while one shard is being failed over.
            "--cluster-require-full-coverage", "no",
            # A replica takes over however long ago it last heard its master.
            "--cluster-replica-validity-factor", "0",
        )  # fmt: skip
        count = masters * (1 + replicas)
        self.nodes = [RedisServer(port=cluster_port(), extra=options) for _ in range(count)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[: self.masters])
        return f"redis+cluster://{hosts}/"

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            self.start_node(node)
        argv = [
            self.cli, "--cluster", "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas", str(self.replicas), "--cluster-yes",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")
        self.wait_healthy()
        return self

    @staticmethod
    def start_node(node: RedisServer, attempts: int = 5) -> None:
        """Start a node, on another free port if its own (or its bus port) was taken meanwhile
        by another process of the machine."""
        for attempt in range(attempts):
            try:
                node.start()
                return
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
                node.port = cluster_port()

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Every running node says cluster_state:ok and knows every slot; every replica is in
        sync with its master."""

        def healthy() -> bool:
            for node in self.nodes:
                if not node.is_running:
                    continue
                try:
                    with node.client(socket_timeout=1) as c:
                        info = c.execute_command("CLUSTER INFO")
                        replication = c.info("replication")
                except redis.RedisError:
                    return False
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
                if (
                    info.get("cluster_state") != "ok"
                    or str(info.get("cluster_slots_ok")) != "16384"
                ):
                    return False
            return True

        wait_until(healthy, timeout, "the Redis Cluster healthy", interval=0.1)

    def role(self, node: RedisServer) -> str:
        with node.client(socket_timeout=1) as c:
            return str(c.info("replication")["role"])

    def master_of(self, key: str) -> RedisServer:
        """The running master holding ``key``'s slot (as the running nodes' CLUSTER SLOTS say)."""
        for node in self.nodes:
            if not node.is_running:
                continue
            with node.client(socket_timeout=1) as c:
                slot = int(c.execute_command("CLUSTER KEYSLOT", key))
                ranges = c.execute_command("CLUSTER SLOTS")
            for start, end, master, *_ in ranges:
                if int(start) <= slot <= int(end):
                    return next(n for n in self.nodes if n.port == int(master[1]))
        raise LookupError(f"no running node knows who holds {key}")

    def kill9(self, node: RedisServer) -> None:
        os.kill(node.pid, signal.SIGKILL)
        assert node._proc is not None
        node._proc.wait(10)
        node._proc = None

    def flush(self) -> None:
        for node in self.nodes:
            if node.is_running and self.role(node) == "master":
                with node.client() as c:
                    c.flushall()
                    c.script_flush()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


# ---------------------------------------------------------------------------------------------
# MariaDB


class MariaDBNode:
    """One mariadbd with binary logging, ready to be a master and a replica (GTID)."""

    def __init__(self, index: int, port: int, workdir: Path) -> None:
        self.index = index  # 1-based: server_id, gtid domain and auto-increment offset
        self.port = port
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.socket = workdir / "s.sock"
        self._proc: subprocess.Popen[bytes] | None = None
        self.is_sigstopped = False
        # The poller benchmark listens on every 127.0.0.x alias (one server, many "nodes").
        self.bind_address = "127.0.0.1"
        self.extra_options: tuple[str, ...] = ()  # more mariadbd options (they come last)

    def __repr__(self) -> str:
        return f"MariaDBNode(node{self.index}, {self.node_id})"

    @property
    def node_id(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self!r} is not running")
        return self._proc.pid

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def install(self, template: Path | None = None) -> None:
        """Create the datadir: a copy of ``template`` (fast) or a fresh mariadb-install-db."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if template is not None:
            shutil.copytree(template, self.datadir)
            return
        install_datadir(self.datadir, self.workdir / "install.log")

    def start(self) -> MariaDBNode:
        """Start on the existing datadir (also after ``kill9``: crash recovery, then the slave
        threads start by themselves from the persisted connection info)."""
        if self.is_running:
            return self
        argv = [
            require_binary("mariadbd"),
            "--no-defaults",  # must be first: mariadbd reads it only as its first argument
            "--user=root",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--socket={self.socket}",
            f"--bind-address={self.bind_address}",
            f"--pid-file={self.workdir / 'mysqld.pid'}",
            f"--log-error={self.workdir / 'error.log'}",
            f"--server-id={self.index}",
            f"--gtid-domain-id={self.index}",
            "--log-bin=mysql-bin",
            "--relay-log=relay-bin",
            "--log-slave-updates",
            "--binlog-format=ROW",
            "--auto-increment-increment=3",
            f"--auto-increment-offset={self.index}",
            "--slave-net-timeout=4",
            "--skip-name-resolve",
            "--max-connections=50",
            "--innodb-log-file-size=8M",
            "--innodb-buffer-pool-size=32M",
            "--performance-schema=OFF",
            *self.extra_options,
        ]
        self._proc = spawn(argv, self.workdir / "stdout.log")
        self.is_sigstopped = False
        wait_until(self._answers, STARTUP_TIMEOUT, f"{self!r} to accept connections")
        return self

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"{self!r} exited:\n{_log_tail(self.workdir / 'error.log')}")
        try:
            self.sql("SELECT 1", timeout=1)
        except (pymysql.err.MySQLError, OSError):
            return False
        return True

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), by pid."""
        terminate(self._proc)
        self._proc = None
        self.is_sigstopped = False

    def kill9(self) -> None:
        """``kill -9``: the server vanishes without closing anything (reaped here)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=STOP_TIMEOUT)
        _LIVE.pop(self._proc.pid, None)
        self._proc = None
        self.is_sigstopped = False

    def sigstop(self) -> None:
        """Freeze the server: it still accepts TCP (the kernel does), but never answers.
        Returns once every thread is stopped (a signal is delivered asynchronously: a thread
        busy on another CPU can still answer a query just after ``kill`` returns)."""
        os.kill(self.pid, signal.SIGSTOP)
        self.is_sigstopped = True
        wait_until(lambda: all_threads_stopped(self.pid), 5, "the server's threads stopped")

    def sigcont(self) -> None:
        if self.is_running:
            os.kill(self.pid, signal.SIGCONT)
        self.is_sigstopped = False

    def connect(self, **kwargs: Any) -> pymysql.connections.Connection[Any]:
        """A root connection over the unix socket (root has no password there)."""
        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("read_timeout", 30)
        kwargs.setdefault("write_timeout", 30)
        return pymysql.connect(
            unix_socket=str(self.socket),
            user="root",
            password="",
            autocommit=True,
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
            ssl_disabled=True,  # else PyMySQL loads the CA store on every connect (~18 ms)
            **kwargs,
        )

    def connect_tcp(self, user: str, password: str, **kwargs: Any) -> Any:
        """A TCP connection as ``user`` (what a client or the probe sees)."""
        kwargs.setdefault("connect_timeout", 5)
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            autocommit=True,
            ssl_disabled=True,
            **kwargs,
        )

    def sql(self, stmt: str, timeout: float = 30) -> list[tuple[Any, ...]]:
        """Run one or more ``;``-separated statements as root; the rows of the last result."""
        conn = self.connect(connect_timeout=min(timeout, 5), read_timeout=timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(stmt)
                rows: list[tuple[Any, ...]] = list(cur.fetchall())
                while cur.nextset():
                    if cur.description is not None:
                        rows = list(cur.fetchall())
                return rows
        finally:
            conn.close()

    def slave_status(self) -> dict[str, Any] | None:
        """The first row of SHOW SLAVE STATUS by column name, or None when not a replica."""
        conn = self.connect()
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SHOW SLAVE STATUS")
                row: dict[str, Any] | None = cur.fetchone()
                return row
        finally:
            conn.close()

    def wait_slave(self, io: str = "Yes", sql: str = "Yes", timeout: float = 15) -> float:
        """Wait until the replica threads report ``io`` / ``sql``; return the seconds waited."""

        def reached() -> bool:
            s = self.slave_status()
            return s is not None and (s["Slave_IO_Running"], s["Slave_SQL_Running"]) == (io, sql)

        return wait_until(reached, timeout, f"{self!r} slave IO={io} SQL={sql}", interval=0.05)

    def change_master(self, source: MariaDBNode) -> None:
        self.sql(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={source.port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1"
        )


def install_datadir(datadir: Path, log: Path) -> None:
    cmd = [
        require_binary("mariadb-install-db"),
        "--no-defaults",
        "--user=root",
        f"--datadir={datadir}",
        "--skip-test-db",
        "--auth-root-authentication-method=normal",
        "--innodb-log-file-size=8M",
    ]
    with open(log, "wb") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed:\n{_log_tail(log)}")


# Run on every node with sql_log_bin=0, so users never replicate and GTID state stays identical.
USERS_SQL = f"""
SET sql_log_bin=0;
CREATE USER '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}';
GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1';
CREATE USER '{MONITOR_USER}'@'127.0.0.1' IDENTIFIED BY '{MONITOR_PASSWORD}';
GRANT SLAVE MONITOR, BINLOG MONITOR, PROCESS ON *.* TO '{MONITOR_USER}'@'127.0.0.1';
GRANT SELECT ON {MONITOR_DB}.* TO '{MONITOR_USER}'@'127.0.0.1';
CREATE USER 'haproxy_check'@'127.0.0.1';
CREATE USER '{FENCE_USER}'@'127.0.0.1' IDENTIFIED BY '{FENCE_PASSWORD}';
GRANT READ_ONLY ADMIN ON *.* TO '{FENCE_USER}'@'127.0.0.1';
CREATE USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{APP_PASSWORD}';
GRANT ALL ON {APP_DB}.* TO '{APP_USER}'@'127.0.0.1';
SET sql_log_bin=1;
"""

# Run on node1 once replication is up: it reaches node2 and node3 through replication.
SCHEMA_SQL = f"""
CREATE DATABASE {MONITOR_DB};
CREATE TABLE {MONITOR_DB}.heartbeat (server_id INT UNSIGNED PRIMARY KEY, ts TIMESTAMP(6) NOT NULL);
CREATE DATABASE {APP_DB};
CREATE TABLE {APP_DB}.t (id INT AUTO_INCREMENT PRIMARY KEY, origin INT, v VARCHAR(64));
"""


def aliases(cluster: MariaDBCluster, count: int) -> list[NodeId]:
    """``count`` distinct nodes: 127.0.x.y aliases of node1 and node2, alternately (for a
    cluster started by ``start_aliased``)."""
    ports = [cluster.node1.port, cluster.node2.port]
    return [NodeId(f"127.0.{i // 2 // 250}.{i // 2 % 250 + 1}", ports[i % 2]) for i in range(count)]


# A server standing for a hundred nodes meets a poller's logins to all of them at once (up to
# --max-logins, and a login cut by its bound holds its server connection until the server sees
# the close): at the 50 the other test servers allow, a healthy alias would answer "Too many
# connections".
ALIASED_MAX_CONNECTIONS = 1000


def start_aliased(
    cluster: MariaDBCluster, nodes: Sequence[MariaDBNode], user: str, password: str
) -> MariaDBCluster:
    """Start ``cluster`` with ``nodes`` listening on every loopback address (their 127.x.y.z
    aliases stand for many nodes; traffic stays on loopback) and ``user`` allowed to monitor
    them from any of those addresses. Such a server takes the connections of all the nodes it
    stands for (``ALIASED_MAX_CONNECTIONS``, unless the node's ``extra_options`` say more)."""
    for node in nodes:
        node.bind_address = "0.0.0.0"
        node.extra_options = (f"--max-connections={ALIASED_MAX_CONNECTIONS}", *node.extra_options)
    cluster.start()
    for node in nodes:
        node.sql(
            "SET sql_log_bin=0;"
            f"CREATE USER '{user}'@'127.%' IDENTIFIED BY '{password}';"
            f"GRANT SLAVE MONITOR, BINLOG MONITOR, PROCESS ON *.* TO '{user}'@'127.%';"
            f"GRANT SELECT ON {MONITOR_DB}.* TO '{user}'@'127.%'"
        )
    return cluster


class MariaDBCluster:
    """node1 <-> node2 master-master, node3 a replica of node1."""

    def __init__(self, size: int = 3, workdir: Path | None = None) -> None:
        if size < 2:
            raise ValueError("a cluster needs at least node1 and node2")
        self.workdir = workdir or short_tempdir("mppm")
        self._own_workdir = workdir is None
        ports = free_ports(size)
        self.nodes = [
            MariaDBNode(i + 1, port, self.workdir / f"n{i + 1}") for i, port in enumerate(ports)
        ]

    def __getitem__(self, index: int) -> MariaDBNode:
        """``cluster[1]`` is node1 (1-based, like the recipe)."""
        return self.nodes[index - 1]

    @property
    def node1(self) -> MariaDBNode:
        return self.nodes[0]

    @property
    def node2(self) -> MariaDBNode:
        return self.nodes[1]

    @property
    def node3(self) -> MariaDBNode:
        return self.nodes[2]

    def source_of(self, node: MariaDBNode) -> MariaDBNode:
        """Who ``node`` replicates from: node1 from node2, everyone else from node1."""
        return self.node2 if node is self.node1 else self.node1

    def start(self) -> MariaDBCluster:
        """Install (once, then copy), start, create users, wire replication, create schemas."""
        template = self.workdir / "template"
        install_datadir(template, self.workdir / "install.log")
        for node in self.nodes:
            node.install(template)
        shutil.rmtree(template)
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.sql(USERS_SQL)
        for node in self.nodes:
            node.change_master(self.source_of(node))
            node.sql("START SLAVE")
        for node in self.nodes:
            node.wait_slave()
        self.node1.sql(SCHEMA_SQL)
        self.wait_replicated()
        return self

    def wait_replicated(self, source: MariaDBNode | None = None, timeout: float = 15) -> None:
        """Wait until every other node has applied what ``source`` (default node1) has in its
        binlog; with log-slave-updates that includes what it replicated from its own master."""
        source = source or self.node1
        pos = source.sql("SELECT @@gtid_binlog_pos")[0][0]
        if not pos:
            return
        for node in self.nodes:
            if node is source:
                continue
            waited = node.sql(f"SELECT MASTER_GTID_WAIT('{pos}', {timeout})", timeout=timeout + 5)
            if waited[0][0] != 0:
                raise TimeoutError(f"{node!r} did not reach GTID {pos} within {timeout}s")

    def restore(self, timeout: float = 20) -> None:
        """Bring every node back to healthy after whatever a test did to it.

        SIGCONT, restart killed nodes, replication configured and running, read_only off,
        max_connections back to 50, the ``app`` user's sessions killed."""
        for node in self.nodes:
            node.sigcont()
            if not node.is_running:
                node.start()
        for node in self.nodes:
            node.sql(
                f"SET GLOBAL read_only=OFF; SET GLOBAL max_connections=50; KILL USER {APP_USER}"
            )
            status = node.slave_status()
            if status is None or not status.get("Master_Port"):
                node.change_master(self.source_of(node))
            if status is None or "No" in (status["Slave_IO_Running"], status["Slave_SQL_Running"]):
                node.sql("START SLAVE")
        for node in self.nodes:
            node.wait_slave(timeout=timeout)

    def stop(self) -> None:
        """Stop every node: SIGTERM all at once, then wait for each (by pid)."""
        for node in self.nodes:
            if node.is_running:
                node.sigcont()
                os.kill(node.pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# HAProxy


class HAProxy:
    """One haproxy in the foreground (``-db``), with an admin stats socket in ``workdir``.

    A ``global`` section with ``stats socket <workdir>/admin.sock level admin`` is prepended to
    ``cfg_text`` (HAProxy merges several global sections), so ``admin()`` and ``stat()`` work
    whatever the test's config says."""

    def __init__(self, cfg_text: str, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin_socket = self.workdir / "admin.sock"
        if len(str(self.admin_socket)) >= 108:
            raise ValueError(f"socket path too long for a unix socket: {self.admin_socket}")
        self.config_path = self.workdir / "haproxy.cfg"
        self.config_path.write_text(
            "global\n"
            f"    stats socket {self.admin_socket} mode 600 level admin\n"
            "    stats timeout 10s\n\n" + cfg_text
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("haproxy is not running")
        return self._proc.pid

    def check_config(self, path: Path | str | None = None) -> subprocess.CompletedProcess[str]:
        """``haproxy -c -f PATH`` (default: this instance's config); never raises on rc != 0."""
        target = str(path or self.config_path)
        return subprocess.run(
            [require_binary("haproxy"), "-c", "-f", target],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def start(self) -> HAProxy:
        if self._proc is not None and self._proc.poll() is None:
            return self
        argv = [require_binary("haproxy"), "-db", "-f", str(self.config_path)]
        self._proc = spawn(argv, self.workdir / "haproxy.log")
        wait_until(self._answers, STARTUP_TIMEOUT, "haproxy runtime API")
        return self

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"haproxy exited:\n{_log_tail(self.workdir / 'haproxy.log')}")
        try:
            return "Pid:" in self.admin("show info")
        except OSError:
            return False

    def stop(self) -> None:
        # SIGUSR1 is HAProxy's soft stop; terminate() still SIGKILLs it if sessions linger.
        terminate(self._proc, signal.SIGTERM)
        self._proc = None

    def admin(self, cmd: str, timeout: float = 5) -> str:
        """One runtime API command over the stats socket; its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.admin_socket))
            s.sendall(cmd.rstrip("\n").encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def stat(self) -> list[dict[str, str]]:
        """``show stat`` as one dict per proxy/server row, keyed by the CSV header names."""
        text = self.admin("show stat").lstrip("# ")
        lines = [line for line in text.splitlines() if line.strip()]
        return [dict(row) for row in csv.DictReader(lines)]

    def server(self, backend: str, name: str) -> dict[str, str]:
        """The ``show stat`` row of one server."""
        for row in self.stat():
            if row.get("pxname") == backend and row.get("svname") == name:
                return row
        raise KeyError(f"no server {backend}/{name} in show stat")


@contextlib.contextmanager
def running(server: Any) -> Iterator[Any]:
    """Start a server object and always clean it up."""
    try:
        yield server.start()
    finally:
        (getattr(server, "cleanup", None) or server.stop)()
