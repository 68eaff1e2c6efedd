"""mpp-agent as a real subprocess (gevent-patched there, not here) against a real redis-server."""

from __future__ import annotations

import contextlib
import json
import math
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import Override, PoolState, State, Status
from mpp_agent.state import AdminResult
from mpp_agent.store import Store
from tests.servers import RedisServer, free_ports, spawn, terminate, unavailable, wait_until

pytestmark = pytest.mark.integration

N1 = "127.0.0.1:3306"
N2 = "127.0.0.1:3307"
INTERVAL = 60.0  # pollers are "alive" for 3 rounds after each test commit


# ---------------------------------------------------------------------------------------------
# helpers


def probe(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, read until the agent closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if data:
            sock.sendall(data)
        return recv_all(sock)


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(port: int, name: str) -> float:
    _, text = http_get(port, "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    def ask(self, line: str) -> str:
        return probe(self.port, line.encode() + b"\n").decode()

    def wait_reply(self, line: str, check: Callable[[str], bool], timeout: float = 10) -> float:
        last: list[str] = []

        def ok() -> bool:
            last[:] = [self.ask(line)]
            return check(last[0])

        try:
            return wait_until(ok, timeout, f"reply to {line!r}", interval=0.01)
        except TimeoutError:
            raise AssertionError(
                f"last reply to {line!r}: {last}\n{self.log.read_text()}"
            ) from None


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(redis_url: str, *args: str, wait_snapshot: bool = True) -> AgentProcess:
        port, metrics_port = free_ports(2)
        log = tmp_path / f"agent{len(started)}.log"
        argv = ["mpp-agent", "--redis-url", redis_url, "--listen", f"127.0.0.1:{port}"]
        argv += ["--metrics-listen", f"127.0.0.1:{metrics_port}", "--log-level", "DEBUG", *args]
        proc = spawn(argv, log)
        started.append(proc)
        agent = AgentProcess(proc, port, metrics_port, log)
        want = (200,) if wait_snapshot else (200, 503)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"mpp-agent exited:\n{log.read_text()}")
            try:
                return http_get(metrics_port, "/healthz")[0] in want
            except OSError:
                return False

        wait_until(ready, 15, "mpp-agent /healthz")
        return agent

    yield start
    for proc in started:
        terminate(proc)


def tick(store: Store, name: str) -> PoolState:
    """Commit the current round unchanged, as a live poller would."""
    pool = store.load_pool(name)
    now = store.server_time()
    store.commit(pool, pool, [], "test", math.floor(now / pool.interval))
    return store.load_pool(name)


def set_nodes(store: Store, name: str, changes: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace fields of nodes (keyed ``host:port``) in one atomic admin change."""

    def change(pool: PoolState) -> AdminResult:
        nodes = []
        for node in pool.nodes:
            nodes.append(replace(node, **changes.get(str(node.node), {})))
        return AdminResult(replace(pool, nodes=tuple(nodes)), "", ())

    store.admin(name, change)


def make_pool(url: str, interval: float = INTERVAL) -> Store:
    """Pool p1: N1 ACTIVE, N2 STANDBY (R=1), ticked now."""
    store = Store.from_url(url)
    spec = f"name:p1;primary:{N1};secondary:{N2}"
    store.create_pool(parse_failoverpool(spec, interval=interval))
    standby = {"state": State.STANDBY, "requests": 1}
    set_nodes(store, "p1", {N1: {"state": State.ACTIVE}, N2: standby})
    tick(store, "p1")
    return store


# ---------------------------------------------------------------------------------------------
# tests


def test_replies_follow_state_changes(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    store = make_pool(redis_url)
    agent = start_agent(redis_url)
    assert agent.ask(f"p1 {N1} rw") == "up ready #ACTIVE OK level=OK\n"
    assert agent.ask("p1 127.0.0.1 rw") == "up ready #ACTIVE OK level=OK\n"
    assert agent.ask(f"p1 {N2}") == "up drain #STANDBY OK level=OK_INFO\n"
    assert agent.ask(f"p1 {N2} ro") == "up ready 75% #STANDBY OK level=OK_INFO\n"
    assert agent.ask(f"p1 {N1} ro") == "up drain #ACTIVE OK level=OK\n"
    assert agent.ask("p2 127.0.0.1 rw") == "down #unknown pool p2\n"
    assert agent.ask("p1 127.0.0.9 rw") == "down #unknown node 127.0.0.9:3306 in pool p1\n"

    # failover: the notification refreshes the snapshot well within one refresh interval
    failed = {"state": State.FAILED_OFFLINE, "status": Status.FAIL, "requests": 4}
    set_nodes(store, "p1", {N1: failed, N2: {"state": State.ACTIVE, "requests": 0}})
    waited = agent.wait_reply(f"p1 {N1} rw", lambda r: r.startswith("down #FAILED_OFFLINE FAIL"))
    assert waited < 1.0
    # node1 failed: nobody could take over from node2 now, and the reason says so
    lost = "degraded: no failover candidate"
    assert agent.ask(f"p1 {N2} rw") == f"up ready #ACTIVE OK level=OK; {lost}\n"
    assert agent.ask(f"p1 {N2} ro") == f"up ready 100% #ACTIVE OK level=OK; {lost}\n"

    # an operator override, with who and why
    override = Override(State.STANDBY, None, "backup window", "alice", 0.0, None)
    set_nodes(store, "p1", {N2: {"override": override}})
    agent.wait_reply(
        f"p1 {N2} rw",
        lambda r: r == "up drain #STANDBY OK level=OK; override: backup window by alice\n",
    )

    # the pool goes away: its nodes are unknown
    store.remove_pool("p1")
    agent.wait_reply(f"p1 {N2} rw", lambda r: r == "down #unknown pool p1\n", timeout=3)
    assert metric(agent.metrics_port, "mpp_agent_stale") == 0


def test_overrides_expire(redis_url: str, start_agent: Callable[..., AgentProcess]) -> None:
    store = make_pool(redis_url)
    now = store.server_time()
    override = Override(State.FAILED_OFFLINE, None, "short", "bob", now, now + 1.5)
    set_nodes(store, "p1", {N1: {"override": override}})
    agent = start_agent(redis_url)
    assert agent.ask(f"p1 {N1}").startswith("down #FAILED_OFFLINE OK level=OK; override: short")
    agent.wait_reply(f"p1 {N1}", lambda r: r == "up ready #ACTIVE OK level=OK\n", timeout=5)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"garbage\n", id="garbage"),
        pytest.param(b"p1 127.0.0.1 rw extra\n", id="extra-field"),
        pytest.param(b"p1 127.0.0.1:99999\n", id="bad-port"),
        pytest.param(b"\x00\xff\xfe\x80" * 20 + b"\n", id="binary"),
        pytest.param(b"p1 " + b"x" * 300, id="oversized-no-newline"),
        pytest.param(b"p1 " + b"x" * 300 + b"\n", id="oversized-line"),
        pytest.param(b"", id="nothing-then-eof"),
        pytest.param(b"p1 127.0.0.1", id="eof-before-newline"),
    ],
)
def test_bad_input(data: bytes, redis_url: str, start_agent: Callable[..., AgentProcess]) -> None:
    make_pool(redis_url)
    agent = start_agent(redis_url)
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as sock:
        if data:
            sock.sendall(data)
        if not data.endswith(b"\n") and len(data) <= 256:
            sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) in (b"down #bad request\n", b"")
    assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK\n"
    assert metric(agent.metrics_port, 'mpp_agent_probes_total{reply="bad_request"}') >= 1


def test_huge_input_is_not_buffered(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    make_pool(redis_url)
    agent = start_agent(redis_url)
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as sock:
        with contextlib.suppress(OSError):  # the agent may close while we still send
            sock.sendall(b"A" * 1_000_000)
        assert recv_all(sock) in (b"down #bad request\n", b"")
    assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK\n"


def test_slow_client_times_out_without_stalling_others(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    make_pool(redis_url)
    agent = start_agent(redis_url, "--read-timeout", "1")
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as slow:
        slow.sendall(b"p1 127.0")  # and then nothing
        t0 = time.monotonic()
        for _ in range(20):
            assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK\n"
        assert time.monotonic() - t0 < 0.9
        assert recv_all(slow) == b"down #bad request\n"
        assert 0.9 < time.monotonic() - t0 < 2.0
    assert metric(agent.metrics_port, 'mpp_agent_bad_requests_total{kind="timeout"}') == 1


def test_redis_down_keeps_answers_marked_stale(
    fresh_redis: RedisServer, start_agent: Callable[..., AgentProcess]
) -> None:
    make_pool(fresh_redis.url)
    agent = start_agent(fresh_redis.url, "--stale-after", "1.5")
    fresh = "up ready #ACTIVE OK level=OK\n"
    assert agent.ask(f"p1 {N1}") == fresh
    assert http_get(agent.metrics_port, "/healthz")[0] == 200

    fresh_redis.stop()
    t0 = time.monotonic()
    agent.wait_reply(f"p1 {N1}", lambda r: r != fresh, timeout=5)
    assert time.monotonic() - t0 > 1.0  # not before --stale-after
    assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK; stale\n"
    assert agent.ask(f"p1 {N2} ro") == "up ready 75% #STANDBY OK level=OK_INFO; stale\n"
    assert agent.ask("p9 127.0.0.1") == "down #unknown pool p9; stale\n"
    assert metric(agent.metrics_port, "mpp_agent_stale") == 1
    assert metric(agent.metrics_port, "mpp_agent_redis_errors_total") >= 1
    assert metric(agent.metrics_port, "mpp_agent_snapshot_age_seconds") > 1.5
    assert http_get(agent.metrics_port, "/healthz") == (503, "stale\n")

    # Redis back, but empty (no persistence): the last snapshot is kept, still stale
    fresh_redis.start()
    time.sleep(2.5)
    assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK; stale\n"

    # the state is back: fresh again, and the new state is answered
    store = make_pool(fresh_redis.url)
    set_nodes(store, "p1", {N1: {"state": State.STANDBY}, N2: {"state": State.ACTIVE}})
    agent.wait_reply(f"p1 {N1}", lambda r: r == "up drain #STANDBY OK level=OK\n", timeout=5)
    assert metric(agent.metrics_port, "mpp_agent_stale") == 0
    assert http_get(agent.metrics_port, "/healthz")[0] == 200
    log = agent.log.read_text()
    assert log.count("snapshot stale") == 1
    assert "snapshot fresh again" in log
    assert "gone from Redis without being removed" in log


def test_dead_pollers_mark_the_pool_stale(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    store = make_pool(redis_url, interval=1.0)
    agent = start_agent(redis_url)
    assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK\n"
    # no tick for more than 3 rounds: last known decision, marked stale
    agent.wait_reply(f"p1 {N1}", lambda r: r == "up ready #ACTIVE OK level=OK; stale\n")
    assert metric(agent.metrics_port, "mpp_agent_stale_pools") == 1
    assert metric(agent.metrics_port, "mpp_agent_stale") == 0  # Redis itself is fine
    tick(store, "p1")
    agent.wait_reply(f"p1 {N1}", lambda r: r == "up ready #ACTIVE OK level=OK\n", timeout=2)
    assert "no commit of pool" in agent.log.read_text()


def test_no_snapshot_yet_closes_without_reply(start_agent: Callable[..., AgentProcess]) -> None:
    (dead_port,) = free_ports(1)
    agent = start_agent(f"redis://127.0.0.1:{dead_port}/0", wait_snapshot=False)
    assert probe(agent.port, f"p1 {N1}\n".encode()) == b""  # HAProxy: no change
    assert http_get(agent.metrics_port, "/healthz") == (503, "no snapshot yet\n")
    assert metric(agent.metrics_port, 'mpp_agent_probes_total{reply="no_snapshot"}') == 1


def test_idle_connections_do_not_block_probes(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    make_pool(redis_url)
    agent = start_agent(redis_url, "--read-timeout", "10")
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", agent.port), timeout=5))
        worst = 0.0
        for _ in range(200):
            t0 = time.perf_counter()
            assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK\n"
            worst = max(worst, time.perf_counter() - t0)
        assert worst < 0.2
        # the idle ones are all still open: a request on the last one is answered
        idle[-1].sendall(f"p1 {N2} ro\n".encode())
        assert recv_all(idle[-1]) == b"up ready 75% #STANDBY OK level=OK_INFO\n"
    finally:
        for sock in idle:
            sock.close()


def test_sigterm_finishes_in_flight_probes_and_exits_0(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    make_pool(redis_url)
    agent = start_agent(redis_url)
    proc = agent.proc
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as sock:
        time.sleep(0.1)  # accepted, waiting for its line
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        sock.sendall(f"p1 {N1}\n".encode())
        assert recv_all(sock) == b"up ready #ACTIVE OK level=OK\n"
    assert proc.wait(timeout=10) == 0
    with pytest.raises(OSError):
        probe(agent.port, b"p1 127.0.0.1\n", timeout=1)
    assert "SIGTERM received" in agent.log.read_text()


def test_password_protected_redis_from_a_file_never_logged(
    fresh_redis: RedisServer, start_agent: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    secret = "s3cret-redis-pw"
    with fresh_redis.client() as client:
        client.config_set("requirepass", secret)
    store = Store.from_url(fresh_redis.url, "mpp", password=secret)
    store.create_pool(parse_failoverpool("name:pw;primary:10.0.0.1;secondary:10.0.0.2"))
    tick(store, "pw")
    pw_file = tmp_path / "redis.pw"
    pw_file.write_text(secret + "\n")
    agent = start_agent(fresh_redis.url, "--redis-password-file", str(pw_file))
    assert agent.ask("pw 10.0.0.1 rw").startswith("down #UNKNOWN")
    # Without the password: one line saying what to fix, exit 6, still no secret anywhere.
    (port,) = free_ports(1)
    refused = subprocess.run(
        ["mpp-agent", "--redis-url", fresh_redis.url, "--listen", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 6
    assert "refused the password" in refused.stderr
    assert "--redis-password-file" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert secret not in agent.log.read_text() + refused.stderr


# ---------------------------------------------------------------------------------------------
# hardening: bad documents, readiness, signals, a bounded HTTP port


def corrupt_doc(store: Store, name: str, **changes: object) -> bytes:
    """Overwrite fields of a pool's stored document, as a hand edit would; the old document."""
    key = store.keys.pool(name)
    old: bytes = store.client.hget(key, "doc")
    store.client.hset(key, "doc", json.dumps({**json.loads(old), **changes}))
    store.client.publish(store.notify_channel, name)
    return old


def test_a_bad_interval_is_skipped_and_the_repair_picked_up(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    store = make_pool(redis_url)
    store.create_pool(parse_failoverpool("name:p2;primary:10.0.0.1", interval=INTERVAL))
    set_nodes(store, "p2", {"10.0.0.1:3306": {"state": State.ACTIVE}})
    tick(store, "p2")
    agent = start_agent(redis_url)
    fresh = "up ready #ACTIVE OK level=OK\n"
    assert agent.ask(f"p1 {N1}") == fresh

    good = corrupt_doc(store, "p1", interval=1e-300)
    # Its last decision is kept, marked stale; the other pool is untouched; nothing died.
    agent.wait_reply(f"p1 {N1}", lambda r: r == "up ready #ACTIVE OK level=OK; stale\n")
    time.sleep(2.5)  # several full refreshes of the bad document
    assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK; stale\n"
    # p2 has one node: nobody could take over, its reason says so
    assert agent.ask("p2 10.0.0.1") == fresh.replace("\n", "; degraded: no failover candidate\n")
    assert http_get(agent.metrics_port, "/healthz")[0] == 200
    assert http_get(agent.metrics_port, "/readyz")[0] == 200  # p2 is fresh

    store.client.hset(store.keys.pool("p1"), "doc", good)  # repaired, no notification
    agent.wait_reply(f"p1 {N1}", lambda r: r == fresh, timeout=5)
    assert agent.proc.poll() is None
    log = agent.log.read_text()
    problem = ":{p1}:pool holds an unreadable pool document of 'p1': interval must be"
    assert problem in log
    assert log.count(problem) == 1  # once, not once a refresh
    assert ":{p1}:pool is usable again" in log
    assert "Traceback" not in log and "OverflowError" not in log


def test_a_document_naming_another_pool_hijacks_nothing(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    store = make_pool(redis_url)
    store.create_pool(parse_failoverpool(f"name:p2;primary:{N2}", interval=INTERVAL))
    hijack = store.client.hget(store.keys.pool("p1"), "doc")
    store.client.hset(store.keys.pool("p2"), "doc", hijack)  # p2's key, p1's document
    agent = start_agent(redis_url)
    assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK\n"
    assert agent.ask(f"p1 {N2}") == "up drain #STANDBY OK level=OK_INFO\n"
    assert agent.ask(f"p2 {N2}") == "down #unknown pool p2\n"
    log = agent.log.read_text()
    assert "under the key of pool 'p2': it names pool 'p1'" in log


def test_readyz_needs_a_fresh_pool_and_an_empty_namespace_is_named(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    store = make_pool(redis_url, interval=1.0)
    other = start_agent(redis_url, "--namespace", "typo")
    assert http_get(other.metrics_port, "/healthz") == (200, "ok\n")
    assert http_get(other.metrics_port, "/readyz") == (503, "no pools\n")
    assert "no pools in namespace typo at redis://" in other.log.read_text()
    assert "(namespaces with pools: mpp)" in other.log.read_text()

    agent = start_agent(redis_url)
    assert http_get(agent.metrics_port, "/readyz") == (200, "ready: 1 of 1 pools fresh\n")
    # no poller ticks it: after 3 rounds the pool is stale, and the agent not ready
    wait_until(lambda: http_get(agent.metrics_port, "/readyz")[0] == 503, 10, "/readyz 503")
    assert http_get(agent.metrics_port, "/readyz") == (503, "no pool with fresh state\n")
    assert http_get(agent.metrics_port, "/healthz")[0] == 200  # alive all the same
    tick(store, "p1")
    wait_until(lambda: http_get(agent.metrics_port, "/readyz")[0] == 200, 5, "/readyz 200")


def test_sighup_reloads_and_does_not_stop_the_agent(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    make_pool(redis_url)
    agent = start_agent(redis_url, "--refresh-interval", "600")
    refreshes = metric(agent.metrics_port, "mpp_agent_refreshes_total")
    agent.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: metric(agent.metrics_port, "mpp_agent_refreshes_total") > refreshes, 5, "reload"
    )
    assert agent.proc.poll() is None
    assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK\n"
    assert "SIGHUP received: reloading every pool" in agent.log.read_text()
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=10) == 0


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            message = f"open-file hard limit {hard} is below {wanted}"
            unavailable(message, f"{message}; raise it for CI (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that never send a byte (non-blocking connects: those beyond the
    agent's backlog simply stay pending)."""
    idle = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        idle.append(sock)
    return idle


def test_idle_http_connections_are_capped_and_closed(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    raise_fd_limit(8192)
    make_pool(redis_url)
    agent = start_agent(redis_url)
    idle = open_idle(agent.metrics_port, 5000)
    try:
        time.sleep(0.5)
        latencies = []
        for _ in range(300):
            t0 = time.perf_counter()
            assert agent.ask(f"p1 {N1}") == "up ready #ACTIVE OK level=OK\n"
            latencies.append(time.perf_counter() - t0)
        latencies.sort()
        assert latencies[len(latencies) // 2] < 0.05, latencies[-10:]
        assert latencies[int(len(latencies) * 0.99)] < 0.05, latencies[-10:]
        assert latencies[-1] < 0.25, latencies[-10:]  # a loaded CI machine may hiccup once
        # at most --metrics-max-connections (64) of them are held by the agent
        held = len(list(Path(f"/proc/{agent.proc.pid}/fd").iterdir()))
        assert held < 64 + 64, held
    finally:
        for sock in idle:
            sock.close()
    # the held ones are closed by the agent within its HTTP timeout (5 s); then it answers
    wait_until(lambda: http_get(agent.metrics_port, "/healthz")[0] == 200, 15, "/healthz")
    idle_one = socket.create_connection(("127.0.0.1", agent.metrics_port), timeout=10)
    short_body = socket.create_connection(("127.0.0.1", agent.metrics_port), timeout=10)
    short_body.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    t0 = time.monotonic()
    with idle_one, short_body:
        assert recv_all(idle_one) == b""  # idle: closed by the agent, not by us
        assert 4.0 < time.monotonic() - t0 < 8.0
        assert recv_all(short_body).startswith(b"HTTP/1.1 200 OK")
        assert time.monotonic() - t0 < 8.0
    assert "Traceback" not in agent.log.read_text()


def test_bad_http_requests_log_one_line_a_minute(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    make_pool(redis_url)
    agent = start_agent(redis_url)
    for _ in range(300):
        with contextlib.suppress(OSError):
            probe(agent.metrics_port, b"\x16\x03\x01garbage\r\n\r\n", timeout=2)
    assert http_get(agent.metrics_port, "/healthz")[0] == 200
    log = agent.log.read_text()
    assert 1 <= log.count("bad HTTP request") <= 2
    assert "Traceback" not in log


def test_connection_caps_are_lowered_to_the_open_file_limit(redis_url: str, tmp_path: Path) -> None:
    make_pool(redis_url)
    port, metrics_port = free_ports(2)
    limit = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024));"
    argv = [sys.executable, "-c", limit + " os.execvp(sys.argv[1], sys.argv[1:])"]
    argv += ["mpp-agent", "--redis-url", redis_url, "--listen", f"127.0.0.1:{port}"]
    argv += ["--metrics-listen", f"127.0.0.1:{metrics_port}"]
    log = tmp_path / "capped.log"
    proc = spawn(argv, log)
    try:
        wait_until(lambda: "listening" in log.read_text(), 15, "mpp-agent start")
        text = log.read_text()
        assert "WARNING" in text
        assert "open-file limit 1024: --max-connections 4096 and --metrics-max-connections 64" in (
            text
        )
        # "listening" comes before the first snapshot: until then a probe gets no reply
        want = b"up ready #ACTIVE OK level=OK\n"
        wait_until(lambda: probe(port, f"p1 {N1}\n".encode()) == want, 10, "the first snapshot")
    finally:
        terminate(proc)
