"""Every Redis URL and connection mistake, for mpp-admin, mpp-poller and mpp-agent, as real
processes against real servers: one line naming what to fix, the documented exit code, no
traceback anywhere, nothing changed in Redis, and the Redis password (which holds ``#``, ``/``,
``?``, ``@`` and ``%``) in no output, raw or percent-encoded."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.store import Store
from tests.servers import (
    RedisServer,
    free_ports,
    require_binary,
    short_tempdir,
    spawn,
    terminate,
    wait_until,
)

pytestmark = pytest.mark.integration

SECRET = "p#s/s?w@r%d-Zq9"
ENCODED = quote(SECRET, safe="")
DAEMON_WAIT = 3.0  # how long a daemon that keeps retrying is watched


@dataclass
class Servers:
    redis: RedisServer
    store: Store
    fake_port: int  # answers like an HTTP server, not Redis
    sentinel_port: int  # a Sentinel that monitors no master
    workdir: Path

    def dump(self) -> dict[bytes, bytes]:
        return {k: self.store.client.dump(k) for k in self.store.client.scan_iter("*")}

    def file(self, name: str, content: bytes) -> str:
        path = self.workdir / name
        path.write_bytes(content)
        return str(path)


def serve_garbage(listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with contextlib.suppress(OSError), conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    workdir = short_tempdir("mppe")
    redis_server = RedisServer()
    redis_server.start()
    with redis_server.client() as client:
        client.config_set("requirepass", SECRET)
    store = Store.from_url(redis_server.url, "mpp", password=SECRET)
    store.create_pool(parse_failoverpool("name:p1;primary:10.0.0.1;secondary:10.0.0.2"))
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve_garbage, args=(listener,), daemon=True).start()
    (sentinel_port,) = free_ports(1)
    conf = workdir / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {workdir}\n")
    sentinel = spawn(
        [require_binary("redis-server"), str(conf), "--sentinel"], workdir / "sentinel.log"
    )
    try:
        wait_until(lambda: port_open(sentinel_port), 10, "sentinel")
        yield Servers(redis_server, store, listener.getsockname()[1], sentinel_port, workdir)
    finally:
        terminate(sentinel)
        listener.close()
        redis_server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


@dataclass(frozen=True)
class Case:
    url: str  # {port}, {fake}, {sentinel}, {secret}, {encoded} filled in
    password_file: bytes | None  # content, or None for no file
    code: int  # the exit code of mpp-admin, and of the daemons when they give up
    text: str  # what the one line says
    daemons_retry: bool = False  # Redis looks down, not refusing: the daemons keep retrying
    # mpp-poller --once against a Redis that times out takes three timeouts (start-up check,
    # pool load, cycle); test_poller_cli covers it with a Redis that is down.
    once: bool = True


RIGHT = SECRET.encode() + b"\n"
CASES = {
    "bad-db": Case("redis://:{encoded}@127.0.0.1:{port}/99", None, 6, "has no such database"),
    "not-redis": Case("redis://127.0.0.1:{fake}/0", RIGHT, 6, "did not answer as a Redis server"),
    "tls-mismatch": Case(
        "rediss://127.0.0.1:{port}/0", RIGHT, 6, "does not serve TLS, use redis://", True, False
    ),
    "sentinel-without-master": Case(
        "redis+sentinel://127.0.0.1:{sentinel}/nomaster/0",
        RIGHT,
        6,
        "knows a reachable master of that name",
        True,
    ),
    "sentinel-url-at-plain-redis": Case(
        "redis+sentinel://:{encoded}@127.0.0.1:{port}/mymaster/0",
        None,
        6,
        "names a plain Redis where Sentinels were expected",
    ),
    "wrong-password": Case("redis://127.0.0.1:{port}/0", b"wrong\n", 6, "refused the password"),
    "no-password": Case("redis://127.0.0.1:{port}/0", None, 6, "refused the password"),
    "raw-password-in-url": Case(
        "redis://:{secret}@127.0.0.1:{port}/0", None, 2, "percent-encode '#', '/', '?', '@'"
    ),
    "unknown-parameter": Case(
        "redis://127.0.0.1:{port}/0?sockettimeout=3", RIGHT, 2, "unknown parameter 'sockettimeout'"
    ),
    "password-file-not-utf8": Case(
        "redis://127.0.0.1:{port}/0", b"\xff" + RIGHT, 2, "is not UTF-8 text"
    ),
}


def run_all(servers: Servers, case: Case, tmp: Path) -> list[tuple[str, int | None, str]]:
    """mpp-admin (a read and a write), mpp-poller --once, mpp-poller and mpp-agent, at once:
    (what, exit code or None if still running after DAEMON_WAIT, all its output)."""
    url = case.url.format(
        port=servers.redis.port,
        fake=servers.fake_port,
        sentinel=servers.sentinel_port,
        secret=SECRET,
        encoded=ENCODED,
    )
    common = ["--redis-url", url]
    if case.password_file is not None:
        common += ["--redis-password-file", servers.file(f"pw-{tmp.name}", case.password_file)]
    mysql_pw = servers.file("mysql.pw", b"monpass\n")
    agent_port, metrics_port = free_ports(2)
    commands = {
        "mpp-admin list": ["mpp-admin", *common, "list"],
        "mpp-admin recover": ["mpp-admin", *common, "recover", "--pool", "p1"],
        "mpp-poller --once": ["mpp-poller", *common, "--mysql-password-file", mysql_pw, "--once"],
        "mpp-poller": ["mpp-poller", *common, "--mysql-password-file", mysql_pw],
        "mpp-agent": [
            *("mpp-agent", *common, "--listen", f"127.0.0.1:{agent_port}"),
            *("--metrics-listen", f"127.0.0.1:{metrics_port}"),
        ],
    }
    if not case.once:
        del commands["mpp-poller --once"]
    procs = {}
    for what, argv in commands.items():
        log = tmp / f"{what.replace(' ', '_')}.log"
        procs[what] = (spawn(argv, log), log)
    started = time.monotonic()
    results = []
    for what, (proc, log) in procs.items():
        # One-shot commands must end (a timeout may take a few tries); daemons are watched.
        wait = DAEMON_WAIT if what in ("mpp-poller", "mpp-agent") else 30.0
        try:
            code: int | None = proc.wait(timeout=max(0.1, started + wait - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
            terminate(proc)
        results.append((what, code, log.read_text(errors="replace")))
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_a_redis_mistake_is_one_line_and_an_exit_code(
    servers: Servers, name: str, tmp_path: Path
) -> None:
    case = CASES[name]
    before = servers.dump()
    results = run_all(servers, case, tmp_path)
    assert servers.dump() == before  # nothing changed
    for what, code, output in results:
        assert "Traceback" not in output, (what, output)
        assert SECRET not in output and ENCODED not in output, (what, output)
        assert case.text in output, (what, output)
        retries = case.daemons_retry and what in ("mpp-poller", "mpp-agent")
        if retries:
            assert code is None, (what, output)  # still running, still retrying
            problem_lines = [line for line in output.splitlines() if case.text in line]
            assert len(problem_lines) <= 2, (what, output)  # said once, not once a second
        else:
            assert code == case.code, (what, code, output)
        if what.startswith("mpp-admin"):
            assert output.strip().count("\n") == 0, output  # one line
            assert output.startswith(f"mpp-admin {what.split()[1]}: "), output


def test_the_password_file_dev_zero_is_refused_at_once(servers: Servers, tmp_path: Path) -> None:
    url = servers.redis.url
    for argv in (
        ["mpp-admin", "--redis-url", url, "--redis-password-file", "/dev/zero", "list"],
        ["mpp-agent", "--redis-url", url, "--redis-password-file", "/dev/zero"],
        ["mpp-poller", "--redis-url", url, "--redis-password-file", "/dev/zero", "--once"],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, result
        assert "has no line end in its first 4096 bytes" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
