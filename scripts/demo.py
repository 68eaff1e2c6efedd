"""The mpp-agent demo: the whole system on this machine, then a real failover through HAProxy.

``make demo`` runs this with the virtualenv's python after ``scripts/setup.sh``. It starts, on
free loopback ports, with every file under one short temp dir (``/tmp/mppdemo-*``):

* two MariaDB servers in master-master replication (node1 PRIMARY, node2 SECONDARY);
* a Redis (append-only file on, so a restart keeps the pools);
* the pool ``demo_pool`` (interval 1 s, M = 4), created with ``mpp-admin pool create``;
* two ``mpp-poller``s, one ``mpp-agent`` and an HAProxy running ``haproxy/haproxy.cfg``, with
  only its addresses and ports rewritten (``render_haproxy_config``);

then shows it working: the listing, a write through HAProxy on the ACTIVE node, ``kill -9`` of
that node, the rounds as the pool fails over, the first write on the new ACTIVE (timed), the
restart and ``mpp-admin recover`` of the old node, and the hand-back.

Every process is started detached (its own session) and its pid is written to the state file
(``.demo/state.json``) the moment it starts, so ``make demo-down`` (``demo.py down``) stops
exactly what was started, by pid, even after a crash half-way. Nothing is stopped by name.

``Demo`` is also what ``bench/failover.py`` and ``tests/e2e/test_demo.py`` drive.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pymysql

from mpp_agent.model import PoolState, State
from mpp_agent.store import Store

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "haproxy" / "haproxy.cfg"
DEFAULT_STATE_DIR = ROOT / ".demo"
BIN = Path(sys.executable).parent  # the venv's bin: mpp-poller, mpp-agent, mpp-admin

NAMESPACE = "demo"
POOL = "demo_pool"
INTERVAL = 1.0
M = 4
AGENT_INTER = 1.0  # haproxy/haproxy.cfg: agent-inter 1s
BUDGET = M * INTERVAL + AGENT_INTER + 1.0  # failover budget: kill -9 to new writes
# Probe timeouts that fit a 1 s interval (the probe timeout must be below half of it).
FAST_PROBE = ["--connect-timeout", "0.3", "--read-timeout", "0.3", "--probe-timeout", "0.45"]

MONITOR_USER, MONITOR_PASSWORD = "monitor", "monpass"
APP_USER, APP_PASSWORD = "app", "apppass"
REPL_USER, REPL_PASSWORD = "repl", "replpass"
FENCE_USER, FENCE_PASSWORD = "fence", "fencepass"  # the pollers' fencing account (--fence)
MONITOR_DB = "mppmon"

# Run on both nodes with sql_log_bin=0: users never replicate, GTID states stay identical.
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
GRANT ALL ON app.* TO '{APP_USER}'@'127.0.0.1';
SET sql_log_bin=1;
"""
# Run on node1 once replication runs: it reaches node2 through replication.
SCHEMA_SQL = f"""
CREATE DATABASE {MONITOR_DB};
CREATE TABLE {MONITOR_DB}.heartbeat (server_id INT UNSIGNED PRIMARY KEY, ts TIMESTAMP(6));
CREATE DATABASE app;
CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, port INT, v VARCHAR(64));
"""


class DemoError(Exception):
    """A step that did not do what it should; the message says which and why."""


def find_binary(name: str) -> str:
    extra = os.pathsep.join(["/usr/sbin", "/sbin", "/usr/local/sbin"])
    path = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + extra)
    if path is None:
        raise DemoError(f"{name} is not installed: run scripts/setup.sh (make demo does)")
    return path


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - start


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------
# processes, by pid


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie no longer counts: PID 1 may be slow to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_pid(pid: int, marker: str, timeout: float = 15.0) -> bool:
    """Stop one process we started: SIGCONT, SIGTERM, SIGKILL after ``timeout``. Only if its
    command line still contains ``marker`` (the pid was not reused). True if it was running."""
    if not is_alive(pid) or marker not in cmdline(pid):
        return False
    for sig in (signal.SIGCONT, signal.SIGTERM):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
        time.sleep(0.05)
    if is_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return True


# ---------------------------------------------------------------------------------------------
# the stack


@dataclass
class Demo:
    """The running system: ports, pids and files, mirrored to ``state_file`` on every change."""

    state_file: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mppdemo-")))
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = print
    # bench/failover.py --push: the agent pushes to HAProxy; agent_inter replaces haproxy.cfg's
    push: bool = False
    agent_inter: str = ""
    # bench/failover.py --fence: the pool has --fence read_only, the pollers a fencing account
    fence: bool = False

    @property
    def haproxy_socket(self) -> Path:
        return self.workdir / "haproxy.sock"

    def haproxy_cfg_text(self) -> str:
        text = HAPROXY_CFG.read_text()
        if self.agent_inter:
            if "agent-inter 1s" not in text:
                raise DemoError(
                    "haproxy/haproxy.cfg no longer says agent-inter 1s: update the demo"
                )
            text = text.replace("agent-inter 1s", f"agent-inter {self.agent_inter}")
        return text

    # ---- state file

    def save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "workdir": str(self.workdir),
            "ports": self.ports,
            "pids": self.pids,
            "markers": self.markers,
            "redis_url": self.redis_url if "redis" in self.ports else None,
            "namespace": NAMESPACE,
            "pool": POOL,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, state_file: Path) -> Demo:
        doc = json.loads(state_file.read_text())
        return cls(
            state_file=state_file,
            workdir=Path(doc["workdir"]),
            ports={k: int(v) for k, v in doc["ports"].items()},
            pids={k: int(v) for k, v in doc["pids"].items()},
            markers=dict(doc.get("markers", {})),
        )

    def running(self) -> list[str]:
        return [
            name
            for name, pid in self.pids.items()
            if is_alive(pid) and self.markers.get(name, "") in cmdline(pid)
        ]

    # ---- addresses

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    def node_id(self, n: int) -> str:
        return f"127.0.0.1:{self.ports[f'node{n}']}"

    def node_of_port(self, port: int) -> str:
        return next((f"node{n}" for n in (1, 2) if self.ports[f"node{n}"] == port), str(port))

    def env(self) -> dict[str, str]:
        """The environment of our daemons and of the mpp-admin commands shown to the user."""
        env = dict(os.environ)
        env.update(MPP_REDIS_URL=self.redis_url, MPP_NAMESPACE=NAMESPACE)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        return env

    def store(self) -> Store:
        return Store.from_url(self.redis_url, NAMESPACE)

    # ---- starting things

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Start ``argv`` detached (own session, survives this script), log to ``name.log``,
        and record its pid before doing anything else."""
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.pids[name] = proc.pid
        self.markers[name] = Path(argv[0]).name
        self.save()
        return proc.pid

    def check_alive(self, name: str) -> None:
        pid = self.pids[name]
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not is_alive(pid):
            raise DemoError(f"{name} exited:\n{log_tail(self.workdir / f'{name}.log')}")

    def step(self, text: str) -> StepTimer:
        return StepTimer(text, self.say)

    def up(self) -> None:
        """Start everything, in order, each step checked before the next one."""
        for tool in ("mariadbd", "mariadb-install-db", "redis-server", "haproxy"):
            find_binary(tool)
        n1, n2, redis_port, agent, metrics, rw, ro = free_ports(7)
        self.ports.update(
            node1=n1, node2=n2, redis=redis_port, agent=agent, metrics=metrics, rw=rw, ro=ro
        )
        self.save()
        self.say(f"Demo files in {self.workdir}; state in {self.state_file}")
        with self.step("MariaDB: one data directory (mariadb-install-db), copied for node2"):
            template = self.workdir / "template"
            install_datadir(template, self.workdir / "install.log")
            for n in (1, 2):
                shutil.copytree(template, self.workdir / f"n{n}" / "data")
            shutil.rmtree(template)
        for n in (1, 2):
            with self.step(f"MariaDB node{n} on {self.node_id(n)}"):
                self.start_node(n)
        with self.step("Replication node1 <-> node2 (master-master, GTID), users and schema"):
            for n in (1, 2):
                self.sql(n, USERS_SQL)
            for n, source in ((1, 2), (2, 1)):
                self.sql(
                    n,
                    f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', "
                    f"MASTER_PORT={self.ports[f'node{source}']}, MASTER_USER='{REPL_USER}', "
                    f"MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, "
                    "MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1; START SLAVE",
                )
            for n in (1, 2):
                wait_until(partial(self.is_replicating, n), 20, f"node{n} replication")
            self.sql(1, SCHEMA_SQL)
            wait_until(lambda: bool(self.sql(2, "SHOW TABLES IN app")), 20, "schema on node2")
        with self.step(f"Redis on {self.redis_url} (append-only file on)"):
            self.spawn(
                "redis",
                [
                    find_binary("redis-server"),
                    "--port", str(self.ports["redis"]),
                    "--bind", "127.0.0.1",
                    "--dir", str(self.workdir),
                    "--appendonly", "yes",
                    "--save", "",
                    "--daemonize", "no",
                ],
            )  # fmt: skip
            wait_until(self.redis_answers, 20, "redis-server")
        create = [
            "pool", "create", POOL,
            "--primary", self.node_id(1),
            "--secondary", self.node_id(2),
            "--interval", str(INTERVAL),
            "--max-requests", str(M),
            *(["--fence", "read_only"] if self.fence else []),
        ]  # fmt: skip
        with self.step(f"Pool {POOL}: node1 PRIMARY, node2 SECONDARY, interval 1 s, M = {M}"):
            self.admin(*create, show=True)
        with self.step("Two pollers (mpp-poller), the MySQL password from a file"):
            password_file = self.workdir / "monitor.pw"
            password_file.write_text(MONITOR_PASSWORD + "\n")
            password_file.chmod(0o600)
            fencing: list[str] = []
            if self.fence:
                fence_file = self.workdir / "fence.pw"
                fence_file.write_text(FENCE_PASSWORD + "\n")
                fence_file.chmod(0o600)
                fencing = ["--fence-user", FENCE_USER, "--fence-password-file", str(fence_file)]
            for i in (1, 2):
                self.spawn(
                    f"poller{i}",
                    [
                        str(BIN / "mpp-poller"),
                        "--poller-id", f"demo-poller-{i}",
                        "--mysql-user", MONITOR_USER,
                        "--mysql-password-file", str(password_file),
                        *FAST_PROBE,
                        *fencing,
                    ],
                    env=self.env(),
                )  # fmt: skip
            wait_until(self.is_steady, 30, "node1 ACTIVE and node2 STANDBY")
            for i in (1, 2):
                self.check_alive(f"poller{i}")
        with self.step(f"mpp-agent on 127.0.0.1:{agent} (metrics on 127.0.0.1:{metrics})"):
            self.spawn(
                "agent",
                [
                    str(BIN / "mpp-agent"),
                    "--listen", f"127.0.0.1:{agent}",
                    "--http-listen", f"127.0.0.1:{metrics}",
                    *(["--haproxy-socket", str(self.haproxy_socket)] if self.push else []),
                ],
                env=self.env(),
            )  # fmt: skip
            wait_until(lambda: self.agent_says(1).startswith("up ready"), 20, "the agent")
        with self.step(f"HAProxy: haproxy/haproxy.cfg, read-write on 127.0.0.1:{rw}"):
            cfg = self.workdir / "haproxy.cfg"
            cfg.write_text(
                render_haproxy_config(
                    self.haproxy_cfg_text(),
                    rw_port=rw,
                    ro_port=ro,
                    node1=self.node_id(1),
                    node2=self.node_id(2),
                    pool=POOL,
                    agent_port=agent,
                    admin_socket=self.haproxy_socket,
                )
            )
            checked = subprocess.run(
                [find_binary("haproxy"), "-c", "-q", "-f", str(cfg)],
                capture_output=True,
                text=True,
                check=False,
            )
            if checked.returncode != 0:
                raise DemoError(f"haproxy -c failed:\n{checked.stdout}{checked.stderr}")
            self.spawn("haproxy", [find_binary("haproxy"), "-db", "-f", str(cfg)])
            wait_until(self.haproxy_heard_agent, 20, "HAProxy to hear the agent about both nodes")
            wait_until(lambda: self.write()[0] == self.ports["node1"], 20, "a write on node1")

    def start_node(self, n: int) -> None:
        """Start (or restart, after kill -9: crash recovery, replication resumes by itself)."""
        workdir = self.workdir / f"n{n}"
        argv = [
            find_binary("mariadbd"),
            "--no-defaults",  # must be first: mariadbd reads it only as its first argument
            "--user=root",
            f"--datadir={workdir / 'data'}",
            f"--port={self.ports[f'node{n}']}",
            f"--socket={workdir / 's.sock'}",
            "--bind-address=127.0.0.1",
            f"--pid-file={workdir / 'mysqld.pid'}",
            f"--log-error={workdir / 'error.log'}",
            f"--server-id={n}",
            f"--gtid-domain-id={n}",
            "--log-bin=mysql-bin",
            "--relay-log=relay-bin",
            "--log-slave-updates",
            "--binlog-format=ROW",
            "--auto-increment-increment=2",
            f"--auto-increment-offset={n}",
            "--slave-net-timeout=4",
            "--skip-name-resolve",
            "--max-connections=50",
            "--innodb-log-file-size=8M",
            "--innodb-buffer-pool-size=32M",
            "--performance-schema=OFF",
        ]
        name = f"node{n}"
        self.spawn(name, argv)

        def answers() -> bool:
            self.check_alive(name)
            try:
                self.sql(n, "SELECT 1")
            except (pymysql.err.MySQLError, OSError):
                return False
            return True

        wait_until(answers, 30, f"{name} to accept connections")

    def kill9(self, n: int) -> None:
        pid = self.pids[f"node{n}"]
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    # ---- looking at things

    def sql(self, n: int, stmt: str) -> list[tuple[Any, ...]]:
        """Root over node ``n``'s unix socket (no password there); rows of the last result."""
        conn = pymysql.connect(
            unix_socket=str(self.workdir / f"n{n}" / "s.sock"),
            user="root",
            password="",
            autocommit=True,
            connect_timeout=2,
            read_timeout=20,
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(stmt)
                rows = list(cur.fetchall())
                while cur.nextset():
                    if cur.description is not None:
                        rows = list(cur.fetchall())
                return rows
        finally:
            conn.close()

    def is_replicating(self, n: int) -> bool:
        conn = pymysql.connect(
            unix_socket=str(self.workdir / f"n{n}" / "s.sock"), user="root", password=""
        )
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SHOW SLAVE STATUS")
                row = cur.fetchone()
        finally:
            conn.close()
        return bool(row) and (row["Slave_IO_Running"], row["Slave_SQL_Running"]) == ("Yes", "Yes")

    def redis_answers(self) -> bool:
        self.check_alive("redis")
        try:
            return bool(self.store().client.ping())
        except Exception:
            return False

    def pool(self) -> PoolState:
        return self.store().load_pool(POOL)

    def is_steady(self, on: int = 1) -> bool:
        """node``on`` ACTIVE, the other STANDBY, both at R = 0 (no recovery in progress)."""
        pool = self.pool()
        want = {self.node_id(on): State.ACTIVE, self.node_id(3 - on): State.STANDBY}
        return all(want[str(n.node)] is n.state and n.r == 0 for n in pool.nodes)

    def agent_says(self, n: int, role: str = "rw") -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.ports["agent"]), timeout=1) as s:
                s.sendall(f"{POOL} {self.node_id(n)} {role}\n".encode())
                return s.makefile("rb").readline().decode().strip()
        except OSError:
            return ""

    def haproxy(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.workdir / "haproxy.sock"))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def haproxy_servers(self, backend: str = "mysql_rw") -> dict[str, dict[str, str]]:
        lines = [ln for ln in self.haproxy("show stat").lstrip("# ").splitlines() if ln]
        header = lines[0].split(",")
        rows = [dict(zip(header, ln.split(","), strict=False)) for ln in lines[1:]]
        return {r["svname"]: r for r in rows if r["pxname"] == backend and r["svname"] != "BACKEND"}

    def haproxy_heard_agent(self) -> bool:
        self.check_alive("haproxy")
        try:
            servers = self.haproxy_servers()
        except OSError:
            return False
        return all(servers.get(s, {}).get("agent_status") == "L7OK" for s in ("db1", "db2"))

    def write(self, tag: str = "demo", timeout: float = 1.0) -> tuple[int | None, str]:
        """A new connection through HAProxy's read-write port: INSERT a row and read
        ``@@port``. (port, "") on success, (None, error) otherwise."""
        try:
            conn = pymysql.connect(
                host="127.0.0.1",
                port=self.ports["rw"],
                user=APP_USER,
                password=APP_PASSWORD,
                autocommit=True,
                connect_timeout=timeout,
                read_timeout=timeout,
                write_timeout=timeout,
            )
        except (pymysql.err.MySQLError, OSError) as exc:
            return None, short_error(exc)
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO app.t (port, v) VALUES (@@port, %s)", (tag,))
                cur.execute("SELECT @@port")
                row = cur.fetchone()
                return int(row[0]), ""
        except (pymysql.err.MySQLError, OSError) as exc:
            return None, short_error(exc)
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def admin(self, *args: str, show: bool = False, check: bool = True) -> str:
        """Run ``mpp-admin ARGS`` the way an operator would (env MPP_REDIS_URL/MPP_NAMESPACE)."""
        argv = [str(BIN / "mpp-admin"), *args]
        if show:
            self.say(f"    $ mpp-admin {shlex.join(args)}")
        done = subprocess.run(
            argv, env=self.env(), capture_output=True, text=True, timeout=60, check=False
        )
        if show:
            for line in (done.stdout + done.stderr).rstrip().splitlines():
                self.say(f"    {line}")
        if check and done.returncode != 0:
            raise DemoError(f"mpp-admin {shlex.join(args)} exited {done.returncode}")
        return done.stdout

    # ---- stopping

    def down(self) -> list[str]:
        """Stop every process we started, by pid (front to back), then remove our files."""
        stopped = []
        order = ["haproxy", "agent", "poller1", "poller2", "redis", "node1", "node2"]
        for name in sorted(self.pids, key=lambda n: order.index(n) if n in order else 0):
            if stop_pid(self.pids[name], self.markers.get(name, "")):
                stopped.append(name)
        shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        return stopped


class StepTimer:
    """``with demo.step("..."):`` prints the step, then ``ok (0.4 s)`` or the failure."""

    def __init__(self, text: str, say: Callable[[str], None]) -> None:
        self.text, self.say = text, say

    def __enter__(self) -> StepTimer:
        self.start = time.monotonic()
        self.say(f"==> {self.text}")
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        took = time.monotonic() - self.start
        self.say(f"    {'ok' if kind is None else 'FAILED'} ({took:.1f} s)")


def short_error(exc: BaseException) -> str:
    args = exc.args
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[0]} {str(args[1]).splitlines()[0][:70]}"
    return f"{type(exc).__name__}: {str(exc)[:70]}"


def install_datadir(datadir: Path, log: Path) -> None:
    argv = [
        find_binary("mariadb-install-db"),
        "--no-defaults",
        "--user=root",
        f"--datadir={datadir}",
        "--skip-test-db",
        "--auth-root-authentication-method=normal",
        "--innodb-log-file-size=8M",
    ]
    with open(log, "wb") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
    if done.returncode != 0:
        raise DemoError(f"mariadb-install-db failed:\n{log_tail(log)}")


def render_haproxy_config(
    text: str,
    *,
    rw_port: int,
    ro_port: int,
    node1: str,
    node2: str,
    pool: str,
    agent_port: int,
    admin_socket: Path | None = None,
) -> str:
    """haproxy/haproxy.cfg on local ports: the listeners on 127.0.0.1, the example nodes
    10.0.0.1/10.0.0.2:3306 replaced by ``node1``/``node2``, the pool name and the agent port;
    plus, with ``admin_socket``, a global section with the runtime API. Everything else is the
    shipped config (mysql-check, agent-inter 1s, balance first, redispatch). Fails loudly if the
    shipped config no longer has what is rewritten, rather than running something else."""
    replacements = {
        "0.0.0.0:6446": f"127.0.0.1:{rw_port}",
        "0.0.0.0:6447": f"127.0.0.1:{ro_port}",
        "10.0.0.1:3306": node1,
        "10.0.0.2:3306": node2,
        "app_pool ": f"{pool} ",
        "agent-port 9777": f"agent-port {agent_port}",
    }
    for old, new in replacements.items():
        if old not in text:
            raise DemoError(f"haproxy/haproxy.cfg no longer contains {old!r}: update the demo")
        text = text.replace(old, new)
    header = f"# Rendered by scripts/demo.py from {HAPROXY_CFG}\n"
    if admin_socket is not None:
        header += f"global\n    stats socket {admin_socket} mode 600 level admin\n\n"
    return header + text


# ---------------------------------------------------------------------------------------------
# what the demo shows


def describe_round(pool: PoolState, demo: Demo) -> str:
    parts = []
    for i, n in enumerate(pool.nodes, 1):
        text = n.message or ""
        msg = f' "{text[:45]}..."' if len(text) > 48 else f' "{text}"' if text else ""
        parts.append(f"node{i} R={n.r} {n.status.value} {n.state.value}{msg}")
    return f"round {pool.last_round}: " + " | ".join(parts)


@dataclass
class Failover:
    """One measured change of the writer: from the kill (or recover) to the first write that
    lands on ``target`` through HAProxy."""

    seconds: float
    failed_writes: int
    wrong_writes: int  # writes that landed elsewhere meanwhile
    rounds: list[str]


def measure_switch(
    demo: Demo,
    target: int,
    start: float,
    timeout: float = 30.0,
    show: Callable[[str], None] | None = None,
) -> Failover:
    """Write through HAProxy every 50 ms until a write lands on node ``target``; meanwhile
    report each committed round once (``show``)."""
    want = demo.ports[f"node{target}"]
    failed = wrong = 0
    rounds: list[str] = []
    last_round = None
    last_error = ""
    while True:
        elapsed = time.monotonic() - start
        try:
            pool = demo.pool()
        except Exception:
            pool = None
        if pool is not None and pool.last_round != last_round:
            last_round = pool.last_round
            line = f"+{elapsed:5.2f}s  {describe_round(pool, demo)}"
            rounds.append(line)
            if show:
                extra = f"   [{failed} failed writes: {last_error}]" if failed else ""
                show("    " + line + extra)
        port, error = demo.write(tag="failover", timeout=0.5)
        if port == want:
            return Failover(time.monotonic() - start, failed, wrong, rounds)
        if port is None:
            failed += 1
            last_error = error
        else:
            wrong += 1
        if elapsed > timeout:
            raise DemoError(
                f"no write landed on node{target} within {timeout:.0f} s (last error: {last_error})"
            )
        time.sleep(0.05)


def hand_back(demo: Demo) -> float:
    """After a failover away from node1: restart it, recover it, and time from the recover to
    the first write on it through HAProxy; returns once the pool is steady again."""
    demo.start_node(1)
    time.sleep(2 * INTERVAL)  # two rounds: a FAILED node stays FAILED until recovered
    start = time.monotonic()
    demo.admin("recover", demo.node_id(1))
    handback = measure_switch(demo, 1, start)
    wait_until(demo.is_steady, 20, "the pool to settle after the hand-back")
    return handback.seconds


def wait_state(demo: Demo, n: int, states: tuple[State, ...], timeout: float) -> PoolState:
    def reached() -> bool:
        node = demo.pool().nodes[n - 1]
        return node.state in states

    wait_until(reached, timeout, f"node{n} to be {'/'.join(states)}")
    return demo.pool()


def show_failover(demo: Demo, pause: Callable[[str], None]) -> tuple[float, float]:
    """The story after ``up``: returns (failover seconds, hand-back seconds)."""
    say = demo.say
    with demo.step("The pool as MPP lists it"):
        demo.admin("list", show=True)
    with demo.step(f"A write through HAProxy (127.0.0.1:{demo.ports['rw']})"):
        port, error = demo.write()
        if port != demo.ports["node1"]:
            raise DemoError(f"the write did not land on node1: {port} {error}")
        say(f"    INSERT INTO app.t ...; SELECT @@port  ->  {port} (node1, ACTIVE)")
    pause(f"kill -9 node1 (pid {demo.pids['node1']}), the ACTIVE node")
    with demo.step(f"kill -9 node1 (pid {demo.pids['node1']}); writing through HAProxy"):
        start = time.monotonic()
        demo.kill9(1)
        result = measure_switch(demo, 2, start, show=say)
        verdict = "within" if result.seconds <= BUDGET else "OVER"
        say(
            f"    first write on node2 (the new ACTIVE) {result.seconds:.2f} s after the kill, "
            f"{verdict} the budget M x interval + agent-inter + 1 s = {BUDGET:.0f} s "
            f"({result.failed_writes} writes failed meanwhile, {result.wrong_writes} elsewhere)"
        )
        if result.seconds > BUDGET or result.wrong_writes:
            raise DemoError("the failover missed its budget or a write landed elsewhere")
    with demo.step("The pool after the failover"):
        wait_until(lambda: demo.pool().nodes[0].state is State.FAILED_OFFLINE, 10, "node1 FAILED")
        demo.admin("list", show=True)
    pause("restart node1 and recover it")
    with demo.step("Restart node1 (crash recovery; replication resumes by itself)"):
        demo.start_node(1)
        wait_until(lambda: demo.is_replicating(1), 20, "node1 replication")
        time.sleep(2 * INTERVAL)  # two rounds: a FAILED node stays FAILED until recovered
        demo.admin("report", demo.node_id(1), show=True)
    with demo.step("Manual recovery; then MPP hands ACTIVE back to the PRIMARY"):
        start = time.monotonic()
        demo.admin("recover", demo.node_id(1), show=True)
        handback = measure_switch(demo, 1, start, show=say)
        say(f"    first write on node1 again {handback.seconds:.2f} s after the recover")
        wait_until(demo.is_steady, 15, "node1 ACTIVE, node2 STANDBY, R = 0")
        demo.admin("list", show=True)
    return result.seconds, handback.seconds


def how_to_poke(demo: Demo) -> None:
    client = demo.workdir / "app.cnf"
    client.write_text(f"[client]\nuser={APP_USER}\npassword={APP_PASSWORD}\n")
    client.chmod(0o600)
    mariadb = f"mariadb --defaults-extra-file={client} -h127.0.0.1"
    lines = [
        "",
        "The demo keeps running. Poke at it:",
        f"  export MPP_REDIS_URL={demo.redis_url} MPP_NAMESPACE={NAMESPACE}",
        f"  export PATH={BIN}:$PATH",
        "  mpp-admin list; mpp-admin pools; mpp-admin pollers",
        f"  mpp-admin history --pool {POOL} --follow",
        f"  mpp-admin activate-primary {POOL}",
        f'  mpp-admin override {demo.node_id(1)} --state STANDBY --reason "try it" --for 1m',
        f"  {mariadb} -P{demo.ports['rw']} -e 'SELECT @@port'    # HAProxy read-write",
        f"  {mariadb} -P{demo.ports['ro']} -e 'SELECT @@port'    # HAProxy read-only",
        f"  echo 'show stat' | socat - UNIX-CONNECT:{demo.workdir / 'haproxy.sock'}",
        f"  curl -s http://127.0.0.1:{demo.ports['metrics']}/metrics    # mpp-agent",
        f"  kill -9 {demo.pids['node1']}    # node1 (pids: {demo.state_file})",
        "  make demo-restart NODE=node1    # start it again, tracked for make demo-down",
        f"  logs: {demo.workdir}/*.log",
        "Stop everything it started: make demo-down",
    ]
    for line in lines:
        demo.say(line)


# ---------------------------------------------------------------------------------------------
# entry points


def cmd_up(args: argparse.Namespace) -> int:
    state_file = args.state_dir / "state.json"
    if state_file.exists():
        old = Demo.load(state_file)
        if old.running():
            print(f"A demo is already running ({', '.join(old.running())}): make demo-down")
            return 1
        old.down()
    interactive = not args.non_interactive and sys.stdin.isatty()

    def pause(what: str) -> None:
        if interactive:
            input(f"\n--- press Enter to {what} ---")

    demo = Demo(state_file=state_file, say=lambda s: print(s, flush=True))
    started = time.monotonic()
    try:
        demo.up()
        demo.say(f"All up in {time.monotonic() - started:.1f} s.\n")
        failover, handback = show_failover(demo, pause)
        demo.say(
            f"\nDemo passed: failover {failover:.2f} s (budget {BUDGET:.0f} s), "
            f"hand-back {handback:.2f} s, total {time.monotonic() - started:.1f} s."
        )
    except (DemoError, pymysql.err.MySQLError, OSError) as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr, flush=True)
        print(f"Logs: {demo.workdir}/*.log", file=sys.stderr)
        if args.teardown:
            demo.say(f"Stopped: {', '.join(demo.down()) or 'nothing'}")
        else:
            print("Stop what was started: make demo-down", file=sys.stderr)
        return 1
    if args.teardown:
        demo.say(f"Stopped: {', '.join(demo.down())}")
    else:
        how_to_poke(demo)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_file = args.state_dir / "state.json"
    if not state_file.exists():
        print("No demo running (no state file).")
        return 0
    demo = Demo.load(state_file)
    stopped = demo.down()
    print(f"Stopped: {', '.join(stopped) or 'nothing was running'}; removed {demo.workdir}")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    """Start a node of a running demo again (after a ``kill -9``), its new pid recorded, so
    that ``make demo-down`` stops it too."""
    state_file = args.state_dir / "state.json"
    if not state_file.exists():
        print("No demo running (no state file): make demo")
        return 1
    demo = Demo.load(state_file)
    if args.node in demo.running():
        print(f"{args.node} is running (pid {demo.pids[args.node]}): kill it first")
        return 1
    try:
        demo.start_node(int(args.node.removeprefix("node")))
    except (DemoError, OSError) as exc:
        print(f"{args.node} did not start: {exc}", file=sys.stderr)
        return 1
    print(f"{args.node} restarted (pid {demo.pids[args.node]}, recorded in {state_file})")
    print(f"A failed node stays failed until: mpp-admin recover {demo.node_id(int(args.node[-1]))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=["up", "down", "restart"], default="up")
    parser.add_argument(
        "node", nargs="?", choices=["node1", "node2"], help="restart: the node to start again"
    )
    parser.add_argument(
        "--non-interactive",
        "--ci",
        action="store_true",
        help="no pauses (also when stdin is not a terminal); exit 1 if any step fails",
    )
    parser.add_argument(
        "--teardown", action="store_true", help="stop everything at the end (also on failure)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default: .demo/ in the repo"
    )
    args = parser.parse_args(argv)
    if args.command == "restart":
        if args.node is None:
            parser.error("restart needs a node: node1 or node2")
        return cmd_restart(args)
    return cmd_down(args) if args.command == "down" else cmd_up(args)


@contextlib.contextmanager
def running_demo(
    state_dir: Path,
    say: Callable[[str], None] = print,
    push: bool = False,
    agent_inter: str = "",
    fence: bool = False,
) -> Iterator[Demo]:
    """A started demo, always torn down (for the bench and the tests)."""
    demo = Demo(
        state_file=state_dir / "state.json",
        say=say,
        push=push,
        agent_inter=agent_inter,
        fence=fence,
    )
    try:
        demo.up()
        yield demo
    finally:
        demo.down()


def summary(values: list[float]) -> str:
    return (
        f"min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
        f"max {max(values):.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
