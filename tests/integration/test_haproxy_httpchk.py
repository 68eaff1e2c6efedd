"""haproxy/haproxy-httpchk.cfg: valid for the installed HAProxy, and a live HAProxy running it
routes connections by the agent's HTTP checks (the writer changes, HAProxy follows)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import State, Status
from mpp_agent.store import Store
from tests.integration.test_agent_server import AgentProcess, set_nodes, start_agent, tick
from tests.servers import HAProxy, free_ports, require_binary, wait_until

pytestmark = pytest.mark.integration
_ = start_agent  # the fixture, imported for this module's tests

CONFIG = Path(__file__).resolve().parents[2] / "haproxy" / "haproxy-httpchk.cfg"


def test_httpchk_config_is_valid() -> None:
    result = subprocess.run(
        [require_binary("haproxy"), "-c", "-f", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@contextlib.contextmanager
def banner_server(port: int) -> Iterator[None]:
    """A TCP server standing in for a database: it says its port to whoever connects."""
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(f"{port}\n".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def served_by(port: int) -> int | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            data = sock.makefile("rb").readline()
            return int(data) if data.strip() else None
    except (OSError, ValueError):
        return None


def render(text: str, rw: int, ro: int, node1: str, node2: str, http_port: int) -> str:
    replacements = {
        "0.0.0.0:6446": f"127.0.0.1:{rw}",
        "0.0.0.0:6447": f"127.0.0.1:{ro}",
        "10.0.0.1:3306": node1,
        "10.0.0.2:3306": node2,
        "app_pool": "web",
        "port 9778": f"port {http_port}",
        "log stdout format raw local0": "",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def web_pool(redis_url: str, node1: str, node2: str, interval: float = 10.0) -> Store:
    """Pool ``web``: node1 ACTIVE, node2 STANDBY, as a tick committed them."""
    store = Store.from_url(redis_url)
    spec = f"name:web;primary:{node1};secondary:{node2}"
    store.create_pool(parse_failoverpool(spec, interval=interval))
    set_nodes(store, "web", {node1: {"state": State.ACTIVE}, node2: {"state": State.STANDBY}})
    tick(store, "web")
    return store


def test_live_haproxy_routes_by_the_http_check(
    redis_url: str,
    start_agent: Callable[..., AgentProcess],
    haproxy_factory: Callable[[str], HAProxy],
) -> None:
    db1, db2, rw, ro = free_ports(4)
    node1, node2 = f"127.0.0.1:{db1}", f"127.0.0.1:{db2}"
    store = web_pool(redis_url, node1, node2, interval=60.0)
    agent = start_agent(redis_url)
    with banner_server(db1), banner_server(db2):
        haproxy_factory(render(CONFIG.read_text(), rw, ro, node1, node2, agent.metrics_port))
        wait_until(lambda: served_by(rw) == db1, 15, "writes on node1")
        wait_until(lambda: served_by(ro) == db2, 15, "reads on node2")
        assert {served_by(rw) for _ in range(10)} == {db1}

        failed = {"state": State.FAILED_OFFLINE, "status": Status.FAIL, "requests": 4}
        set_nodes(store, "web", {node1: failed, node2: {"state": State.ACTIVE}})
        wait_until(lambda: served_by(rw) == db2, 15, "writes move to node2")
        assert {served_by(rw) for _ in range(10)} == {db2}
        assert served_by(ro) == db2  # the writer reads too: no healthy replica is left
