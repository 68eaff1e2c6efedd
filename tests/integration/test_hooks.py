"""mpp-hooks as real processes against a real redis-server (and, for the failover, real MariaDB
nodes and two real pollers): once per group, at least once overall, retries, dead letters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import NodeId, Override, State
from mpp_agent.state import set_override
from mpp_agent.store import Store
from tests.daemons import PollerProcess
from tests.integration.test_agent_server import http_get
from tests.servers import MariaDBCluster, free_ports, spawn, terminate, wait_until

pytestmark = pytest.mark.integration

N1, N2 = "127.0.0.1:3306", "127.0.0.1:3307"


@dataclass
class HooksProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_hooks(tmp_path: Path) -> Iterator[Callable[..., HooksProcess]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(redis_url: str, *args: str) -> HooksProcess:
        log = tmp_path / f"hooks{len(started)}.log"
        argv = ["mpp-hooks", "--redis-url", redis_url, "--poll-interval", "0.1", *args]
        proc = spawn(argv, log)
        started.append(proc)
        return HooksProcess(proc, log)

    yield start
    for proc in started:
        terminate(proc)


def reading(store: Store, pool: str, *hooks: HooksProcess) -> bool:
    """The group exists on the pool's events (so every later event is delivered to one of its
    consumers), and each of ``hooks`` has started reading."""
    groups = store.hook_groups([pool])[pool]
    started = all("mpp-hooks" in h.output() and " in group " in h.output() for h in hooks)
    return started and any(g["group"] == "mpp-hooks" for g in groups)


def override(store: Store, pool: str, node: str, reason: str) -> str:
    """An operator override (an ``override`` event); its event id."""
    pinned = Override(State.STANDBY, None, reason, "admin:test", store.server_time(), None)
    store.admin(pool, lambda p: set_override(p, NodeId.parse(node), pinned))
    return store.last_events(pool, 1)[0][0]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def plain_pool(redis_url: str) -> Store:
    store = Store.from_url(redis_url)
    store.create_pool(parse_failoverpool(f"name:p1;primary:{N1};secondary:{N2}", interval=60.0))
    return store


def test_two_processes_one_real_failover_runs_the_hook_once(
    redis_url: str,
    mariadb_cluster: MariaDBCluster,
    start_hooks: Callable[..., HooksProcess],
    tmp_path: Path,
) -> None:
    store = Store.from_url(redis_url)
    cluster = mariadb_cluster
    spec = f"name:p1;primary:{cluster.node1.node_id};secondary:{cluster.node2.node_id}"
    store.create_pool(parse_failoverpool(spec, interval=1.0, max_requests=4))
    pollers = [PollerProcess(redis_url, name).start() for name in ("poller-a", "poller-b")]
    try:

        def steady() -> bool:
            pool = store.load_pool("p1")
            states = [n.state for n in pool.nodes]
            return states == [State.ACTIVE, State.STANDBY] and all(
                n.requests == 0 for n in pool.nodes
            )

        wait_until(steady, 30, "node1 ACTIVE, node2 STANDBY")
        out = tmp_path / "ran"
        hook = f'sh -c \'read -r event; printf "%s %s\\n" "$PPID" "$event" >> {out}\''
        hooks = [start_hooks(redis_url, "--on", "failover", "--exec", hook) for _ in range(2)]
        wait_until(lambda: reading(store, "p1", *hooks), 15, "both mpp-hooks reading")
        threading.Event().wait(0.5)  # a few reads each

        cluster.node1.kill9()
        wait_until(lambda: bool(lines(out)), 30, "the failover hook")
        # what a duplicate would need: the other process's next read, a claim, a retry
        wait_until(lambda: store.load_pool("p1").nodes[1].state is State.ACTIVE, 5, "node2")
        for _ in range(3):
            threading.Event().wait(1.0)
            assert len(lines(out)) == 1, lines(out)
    finally:
        for poller in pollers:
            poller.cleanup()
    pid, text = lines(out)[0].split(" ", 1)
    assert int(pid) in {h.proc.pid for h in hooks}
    event = json.loads(text)
    assert event["kinds"] == ["any", "failover", "transition"]
    assert (event["node"], event["from_state"], event["to_state"]) == (
        cluster.node2.node_id,
        "STANDBY",
        "ACTIVE",
    )
    takeover = [
        rid
        for rid, e in store.events("p1", 1000)
        if (e.get("node"), e.get("from_state"), e.get("to_state"))
        == (cluster.node2.node_id, "STANDBY", "ACTIVE")
    ]
    assert [event["id"]] == takeover
    assert all("hook done for p1/" in h.output() for h in hooks if h.proc.pid == int(pid))


def test_a_process_killed_mid_hook_the_other_runs_the_event(
    redis_url: str, start_hooks: Callable[..., HooksProcess], tmp_path: Path
) -> None:
    store = plain_pool(redis_url)
    started, done, first = tmp_path / "started", tmp_path / "done", tmp_path / "first"
    # The first run hangs (a hook that sleeps); the run after it finishes.
    hook = (
        f"sh -c 'echo $PPID >> {started}; "
        f"if [ ! -e {first} ]; then touch {first}; exec sleep 60; fi; cat >> {done}'"
    )
    args = ("--on", "override", "--exec", hook, "--claim-after", "3", "--timeout", "120")
    a = start_hooks(redis_url, *args)
    wait_until(lambda: reading(store, "p1", a), 15, "mpp-hooks A reading")
    event_id = override(store, "p1", N2, "kernel upgrade")
    wait_until(lambda: lines(started) == [str(a.proc.pid)], 10, "A running the hook")
    b = start_hooks(redis_url, *args)
    wait_until(lambda: reading(store, "p1", b), 15, "mpp-hooks B reading")
    threading.Event().wait(4.0)  # over --claim-after: A is alive and touching, B must not claim
    assert lines(started) == [str(a.proc.pid)]
    os.kill(a.proc.pid, signal.SIGKILL)
    wait_until(lambda: bool(lines(done)), 15, "B running the event")
    assert lines(started) == [str(a.proc.pid), str(b.proc.pid)]
    event = json.loads(lines(done)[0])
    assert (event["id"], event["kind"], event["message"]) == (
        event_id,
        "override",
        "kernel upgrade",
    )
    assert f"claimed p1/{event_id}" in b.output()
    threading.Event().wait(1.0)
    assert len(lines(done)) == 1  # acknowledged by B: nobody runs it again
    assert store.hook_groups(["p1"])["p1"][0]["pending"] == 0


def test_a_failing_hook_is_retried_then_dead_lettered(
    redis_url: str, start_hooks: Callable[..., HooksProcess], tmp_path: Path
) -> None:
    store = plain_pool(redis_url)
    tries = tmp_path / "tries"
    (port,) = free_ports(1)
    hook = f"sh -c 'echo $MPP_EVENT_KIND-$MPP_EVENT_NODE >> {tries}; echo nope >&2; exit 3'"
    hooks = start_hooks(
        redis_url,
        *("--on", "override,release", "--exec", hook, "--attempts", "3", "--backoff", "0.1"),
        *("--http-listen", f"127.0.0.1:{port}"),
    )
    wait_until(lambda: reading(store, "p1", hooks), 15, "mpp-hooks reading")
    event_id = override(store, "p1", N2, "backup")
    wait_until(lambda: store.dead_letter_count() == 1, 15, "a dead letter")
    assert lines(tries) == [f"override-{N2}"] * 3
    _, record = store.dead_letters(10)[0]
    assert (record["pool"], record["id"], record["attempts"]) == ("p1", event_id, 3)
    assert record["error"] == "exit status 3"
    assert record["event"]["kind"] == "override"

    status, metrics = http_get(port, "/metrics")
    assert status == 200
    assert "mpp_hooks_dead_letters_total 1" in metrics
    assert "mpp_hooks_failed_attempts_total 3" in metrics

    shown = subprocess.run(
        ["mpp-admin", "--redis-url", redis_url, "hooks"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "Dead letters: 1" in shown
    assert f"p1/{event_id}  any,override  after 3 attempts: exit status 3" in shown
    assert "mpp-hooks" in shown  # the group, on pool p1
    document = json.loads(
        subprocess.run(
            ["mpp-admin", "--redis-url", redis_url, "hooks", "--json"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    )  # fmt: skip
    assert document["dead_letters_total"] == 1
    assert document["dead_letters"][0]["id"] == event_id
    assert document["groups"][0]["pool"] == "p1"
    assert document["groups"][0]["pending"] == 0


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint: fails the first call, then takes them."""

    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        self.send_response(500 if len(self.bodies) == 1 else 204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def test_webhook_is_posted_and_retried(
    redis_url: str, start_hooks: Callable[..., HooksProcess]
) -> None:
    store = plain_pool(redis_url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook/s3cr3t-token"
        hooks = start_hooks(redis_url, "--on", "override", "--backoff", "0.1", "--webhook", url)
        wait_until(lambda: reading(store, "p1", hooks), 15, "mpp-hooks reading")
        event_id = override(store, "p1", N1, "maintenance")
        wait_until(lambda: len(Receiver.bodies) == 2, 15, "the webhook, twice")
    finally:
        server.shutdown()
    assert [b["id"] for b in Receiver.bodies] == [event_id, event_id]
    assert Receiver.bodies[1]["kind"] == "override"
    assert Receiver.bodies[1]["node"] == N1
    wait_until(lambda: "hook done for p1/" in hooks.output(), 5, "the ack")
    assert "answered 500" in hooks.output()
    assert "s3cr3t" not in hooks.output()  # a webhook's path is never logged


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--on", "fencing", "--exec", "true"], "unknown event kind(s) fencing"),
        (["--on", "failover"], "give --exec CMD, --webhook URL or both"),
        (["--exec", "true"], "--on KIND,... is required"),
        (["--on", "any", "--webhook", "ftp://x"], "expected an http:// or https:// URL"),
    ],
)
def test_bad_options_exit_2(redis_url: str, args: list[str], complaint: str) -> None:
    run = subprocess.run(
        ["mpp-hooks", "--redis-url", redis_url, *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert complaint in run.stderr
