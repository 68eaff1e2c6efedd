"""haproxy/haproxy.cfg: valid for the installed HAProxy, wired to the agent as documented, and
a real HAProxy applying real agent replies (the words and the reason) to its servers."""

from __future__ import annotations

import contextlib
import math
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import PoolState, State
from mpp_agent.state import AdminResult
from mpp_agent.store import Store
from mpp_cli.errors import ExitCode
from mpp_cli.haproxy_config import (
    BALANCE,
    CHECK_OPTIONS,
    DEFAULT_CHECK_USER,
    AgentAddress,
    HAProxyConfigError,
    Role,
    default_server,
    haproxy_time,
)
from tests.integration.admin_support import mpp_admin
from tests.servers import HAProxy, free_ports, require_binary, spawn, terminate, wait_until

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "haproxy" / "haproxy.cfg"


def sections(text: str) -> dict[str, list[str]]:
    """``listen``/``defaults``/``global`` section header -> its lines (comments dropped)."""
    out: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("server") else raw
        if not line.strip():
            continue
        if not line[0].isspace():
            current = line.strip()
            out[current] = []
        else:
            out[current].append(line.strip())
    return out


def test_shipped_config_is_valid() -> None:
    result = subprocess.run(
        [require_binary("haproxy"), "-c", "-f", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[WARNING]" not in output and "[ALERT]" not in output, output


@pytest.mark.parametrize(("backend", "role"), [("mysql_rw", "rw"), ("mysql_ro", "ro")])
def test_every_server_asks_the_agent_about_itself(backend: str, role: str) -> None:
    lines = sections(CONFIG.read_text())[f"listen {backend}"]
    default = next(line for line in lines if line.startswith("default-server"))
    for word in ("agent-check", "agent-addr 127.0.0.1", "agent-port 9777", "agent-inter 1s"):
        assert word in default
    assert "on-marked-down shutdown-sessions" in default
    servers = [line for line in lines if line.startswith("server ")]
    assert len(servers) >= 2
    for line in servers:
        match = re.fullmatch(r'server (\S+) (\S+) agent-send "(\S+) (\S+) (\S+)\\n"', line)
        assert match, line
        _, address, pool, node, asked_role = match.groups()
        assert (node, asked_role) == (address, role)
        assert pool == "app_pool"
    if role == "rw":
        assert "balance first" in lines


# ---------------------------------------------------------------------------------------------
# a real HAProxy, a real agent, a real Redis


@pytest.fixture
def agent_port(redis_url: str, tmp_path: Path) -> Iterator[int]:
    (port,) = free_ports(1)
    argv = ["mpp-agent", "--redis-url", redis_url, "--listen", f"127.0.0.1:{port}"]
    proc = spawn(argv, tmp_path / "agent.log")
    try:
        wait_until(lambda: port_open(port), 15, "mpp-agent to listen")
        yield port
    finally:
        terminate(proc)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def agent_status(proxy: HAProxy, backend: str, server: str, status: str) -> bool:
    return proxy.server(backend, server)["agent_status"] == status


def local_config(agent_port: int) -> tuple[str, list[int]]:
    """The shipped config on free local ports, regular checks off (no MariaDB here: the agent
    alone decides, which is what this test looks at)."""
    text = CONFIG.read_text()
    rw_port, ro_port, db1, db2 = free_ports(4)
    text = text.replace("0.0.0.0:6446", f"127.0.0.1:{rw_port}")
    text = text.replace("0.0.0.0:6447", f"127.0.0.1:{ro_port}")
    text = text.replace("10.0.0.1:3306", f"127.0.0.1:{db1}").replace(
        "10.0.0.2:3306", f"127.0.0.1:{db2}"
    )
    text = text.replace("agent-port 9777", f"agent-port {agent_port}")
    text = text.replace("check inter 2s fall 3 rise 2 ", "")
    return text, [db1, db2]


def set_states(store: Store, states: dict[int, tuple[State, int]]) -> None:
    def change(pool: PoolState) -> AdminResult:
        nodes = tuple(
            replace(n, state=states[n.node.port][0], requests=states[n.node.port][1])
            for n in pool.nodes
        )
        return AdminResult(replace(pool, nodes=nodes), "", ())

    store.admin("app_pool", change)
    pool = store.load_pool("app_pool")
    now = store.server_time()
    store.commit(pool, pool, [], "test", math.floor(now / pool.interval))


UP = "no check"  # regular checks are off here: an agent "up ready" server shows this


def wait_status(proxy: HAProxy, expected: dict[tuple[str, str], tuple[str, str]]) -> None:
    """Wait until each (backend, server) shows (status, weight); weight "*" is any."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}

    def reached() -> bool:
        for (backend, server), (_, weight) in expected.items():
            row = proxy.server(backend, server)
            seen[(backend, server)] = (row["status"], "*" if weight == "*" else row["weight"])
        return seen == expected

    try:
        wait_until(reached, 8, "haproxy to apply the agent replies", interval=0.1)
    except TimeoutError:
        raise AssertionError(f"expected {expected}, saw {seen}") from None


def test_haproxy_applies_the_agent_replies(
    redis_url: str, agent_port: int, haproxy_factory: Callable[[str], HAProxy]
) -> None:
    text, (db1, db2) = local_config(agent_port)
    store = Store.from_url(redis_url)
    spec = f"name:app_pool;primary:127.0.0.1:{db1};secondary:127.0.0.1:{db2}"
    store.create_pool(parse_failoverpool(spec, interval=60))
    set_states(store, {db1: (State.ACTIVE, 0), db2: (State.STANDBY, 1)})
    proxy = haproxy_factory(text)

    wait_status(
        proxy,
        {
            ("mysql_rw", "db1"): (UP, "*"),
            ("mysql_rw", "db2"): ("DRAIN (agent)", "*"),
            ("mysql_ro", "db1"): ("DRAIN (agent)", "*"),
            ("mysql_ro", "db2"): (UP, "75"),
        },
    )
    wait_until(lambda: agent_status(proxy, "mysql_rw", "db1", "L7OK"), 5, "agent L7OK")

    # failover: db1 FAILED, db2 ACTIVE and the only one left for reads too
    set_states(store, {db1: (State.FAILED_OFFLINE, 4), db2: (State.ACTIVE, 2)})
    wait_status(
        proxy,
        {
            ("mysql_rw", "db1"): ("DOWN (agent)", "*"),
            ("mysql_rw", "db2"): (UP, "*"),
            ("mysql_ro", "db1"): ("DOWN (agent)", "*"),
            ("mysql_ro", "db2"): (UP, "50"),
        },
    )
    wait_until(lambda: agent_status(proxy, "mysql_rw", "db1", "L7STS"), 5, "agent L7STS")
    row = proxy.server("mysql_rw", "db1")
    # HAProxy shows our reason as the agent's last message
    assert row["last_agt"] == "via agent : down (FAILED_OFFLINE OK level=FAIL_CRITICAL)"


# ---------------------------------------------------------------------------------------------
# mpp-admin haproxy-config: the shipped configuration, for any pool


@pytest.mark.parametrize("role", list(Role))
def test_generated_options_are_the_shipped_ones(role: Role) -> None:
    shipped = sections(CONFIG.read_text())
    lines = shipped[f"listen mysql_{role.value}"]
    default = next(line for line in lines if line.startswith("default-server"))
    assert default == f"default-server {default_server(role, AgentAddress())}"
    assert BALANCE[role] in lines
    assert f"option mysql-check user {DEFAULT_CHECK_USER} post-41" in shipped["defaults"]


def haproxy_config(redis_url: str, *args: str) -> str:
    result = mpp_admin(redis_url, "haproxy-config", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def defaults_of_shipped_config() -> str:
    """The shipped global and defaults sections (everything before the first listen)."""
    text = CONFIG.read_text()
    return text[: text.index("\nlisten ")] + "\n"


def test_generated_sections_pass_haproxy_check(redis_url: str, tmp_path: Path) -> None:
    store = Store.from_url(redis_url)
    store.create_pool(parse_failoverpool("name:pool1;primary:127.0.0.1:3306;secondary:[::1]:3307"))
    rw_port, ro_port = free_ports(2)
    text = defaults_of_shipped_config()
    text += haproxy_config(redis_url, "pool1", "--role", "RW", "--bind", f"127.0.0.1:{rw_port}")
    text += haproxy_config(redis_url, "pool1", "--role", "ro", "--bind", f"127.0.0.1:{ro_port}")
    store.create_pool(parse_failoverpool("name:pool2;secondary:localhost"))
    text += haproxy_config(redis_url, "pool2", "--role", "Ro")  # a backend section
    path = tmp_path / "generated.cfg"
    path.write_text(text)
    result = subprocess.run(
        [require_binary("haproxy"), "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output + text
    assert "[WARNING]" not in output and "[ALERT]" not in output, output + text
    servers = [line for line in text.splitlines() if line.strip().startswith("server ")]
    assert servers[1] == (
        '    server pool1___1_3307 [::1]:3307 agent-send "pool1 [::1]:3307 rw\\n"'
    )


@pytest.mark.parametrize(
    ("given", "emitted"),
    [("1", "1s"), ("2.5", "2500ms"), ("500ms", "500ms"), ("1000ms", "1s"), ("1S", "1s"),
     ("2m", "120s"), ("0.1", "100ms")],
)  # fmt: skip
def test_agent_inter_has_a_unit_and_bare_numbers_are_seconds(given: str, emitted: str) -> None:
    assert haproxy_time(given) == emitted


@pytest.mark.parametrize("given", ["soon", "0", "50ms", "2h", "1.5ms", "-1s", "1 s", ""])
def test_bad_agent_inter_is_refused(given: str) -> None:
    with pytest.raises(HAProxyConfigError, match="bad --agent-inter"):
        haproxy_time(given)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--agent-inter", "50ms"], "between 100ms and 1h", id="inter-too-short"),
        pytest.param(["--agent-addr", 'x" y'], "bad --agent-addr", id="addr-quote"),
        pytest.param(["--bind", "6446"], "bad --bind", id="bind-no-colon"),
        pytest.param(["--check-user", "a b"], "bad --check-user", id="check-user-space"),
        pytest.param(["--role", "rx"], "", id="unknown-role"),
    ],
)
def test_bad_haproxy_config_options(redis_url: str, args: list[str], message: str) -> None:
    Store.from_url(redis_url).create_pool(parse_failoverpool("name:pool1;primary:a"))
    result = mpp_admin(redis_url, "haproxy-config", "pool1", *args)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr and result.stdout == ""


def test_servers_only_carry_every_option(redis_url: str) -> None:
    Store.from_url(redis_url).create_pool(parse_failoverpool("name:pool1;primary:db1"))
    text = haproxy_config(
        redis_url, "pool1", "--role", "ro", "--servers-only", "--agent-inter", "2"
    )
    assert text.splitlines()[1] == (
        f"    server pool1_db1_3306 db1:3306 {CHECK_OPTIONS} agent-check agent-addr 127.0.0.1 "
        'agent-port 9777 agent-inter 2s weight 100 agent-send "pool1 db1:3306 ro\\n"'
    )


class Banner:
    """A TCP server that greets every client with its name: where HAProxy sent a client."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.sendall(self.name + b"\n")

    def close(self) -> None:
        self.sock.close()


def reached(port: int) -> str:
    """Which server a client connecting through HAProxy reaches (or "refused")."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.makefile("rb").readline().decode().strip() or "closed"
    except OSError:
        return "refused"


def test_a_live_haproxy_from_generated_sections_routes_as_the_agent_says(
    redis_url: str, agent_port: int, haproxy_factory: Callable[[str], HAProxy]
) -> None:
    banners = {name: Banner(name) for name in ("db1", "db2")}
    try:
        db1, db2 = banners["db1"].port, banners["db2"].port
        store = Store.from_url(redis_url)
        spec = f"name:app_pool;primary:127.0.0.1:{db1};secondary:127.0.0.1:{db2}"
        store.create_pool(parse_failoverpool(spec, interval=60))
        set_states(store, {db1: (State.ACTIVE, 0), db2: (State.STANDBY, 0)})
        rw_port, ro_port = free_ports(2)
        common = ["--agent-port", str(agent_port), "--check-user", ""]
        text = defaults_of_shipped_config().replace("    option mysql-check", "    # ")
        for role, port in (("rw", rw_port), ("ro", ro_port)):
            text += haproxy_config(
                redis_url, "app_pool", "--role", role, "--bind", f"127.0.0.1:{port}", *common
            )
        haproxy_factory(text)

        def expect(rw: str, *ro: str) -> None:
            """Writes reach ``rw`` ("closed": HAProxy has no server), reads reach ``ro``."""
            seen: list[tuple[str, set[str]]] = []

            def check() -> bool:
                # leastconn over idle servers: a few connections reach every reader
                seen[:] = [(reached(rw_port), {reached(ro_port) for _ in range(6)})]
                return seen[0] == (rw, set(ro))

            try:
                wait_until(check, 10, "HAProxy to route as the agent says", interval=0.2)
            except TimeoutError:
                raise AssertionError(f"expected {(rw, set(ro))}, saw {seen}") from None

        expect("db1", "db2")
        # the writer moves: off db1 first (no writer meanwhile), then pinned on db2
        move = ["--reason", "move"]
        off = mpp_admin(redis_url, "override", f"127.0.0.1:{db1}", "--state", "standby", *move)
        assert off.exit_code == 0, off.stderr
        expect("closed", "db1", "db2")
        on = mpp_admin(redis_url, "override", f"127.0.0.1:{db2}", "--state", "ACTIVE", *move)
        assert on.exit_code == 0, on.stderr
        expect("db2", "db1")
        # and is-active agrees with where HAProxy sent the writes
        assert mpp_admin(redis_url, "is-active", f"127.0.0.1:{db2}").stdout == "OK\n"
        assert mpp_admin(redis_url, "is-active", f"127.0.0.1:{db1}").stdout == "NO\n"
    finally:
        for banner in banners.values():
            banner.close()
