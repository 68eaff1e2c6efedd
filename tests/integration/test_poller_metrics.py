"""``mpp-poller --http-listen``: real pollers against real Redis and MariaDB, scraped over HTTP.

The counters must move with what the pollers really do: every round a lone poller commits is
one more ``mpp_poller_rounds_committed_total`` (and one more pool version in Redis), every probe
one more latency sample, a poller with a wrong password counts abstentions, and an admin writer
racing the poller makes it lose version races (``mpp_poller_commit_conflicts_total``), and a
poller held up past rounds' deadlines counts and says the rounds it never probed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from mpp_agent import __version__
from mpp_agent.config import parse_failoverpool
from mpp_agent.model import NodeId, Override, State
from mpp_agent.state import release_override, set_override
from mpp_agent.store import Store
from tests.daemons import PollerProcess, rounds_missed, watch_ticks
from tests.integration.test_agent_server import http_get
from tests.integration.test_poller_abstain import pollers, store
from tests.servers import MariaDBCluster, free_port, wait_until

pytestmark = pytest.mark.integration
_ = (pollers, store)  # the fixtures, imported for this module's tests

INTERVAL = 0.5
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def samples(port: int) -> dict[str, float]:
    """Every sample of ``/metrics``: ``name{labels}`` -> value (the text checked line by line:
    HELP and TYPE before each family, every other line a sample)."""
    status, text = http_get(port, "/metrics")
    assert status == 200
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return out


def value(port: int, name: str, **labels: str) -> float:
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return samples(port).get(f"{name}{{{inside}}}" if labels else name, 0.0)


def start(
    pollers: list[PollerProcess], url: str, name: str, **kw: object
) -> tuple[PollerProcess, int]:
    port = free_port()
    extra = ["--http-listen", f"127.0.0.1:{port}"]
    proc = PollerProcess(url, name, extra=extra, **kw)  # type: ignore[arg-type]
    pollers.append(proc)
    proc.start()

    def healthy() -> bool:
        assert proc.is_running, proc.output()
        try:
            return http_get(port, "/healthz") == (200, "ok\n")
        except OSError:
            return False

    wait_until(healthy, 15, f"{name} /healthz")
    return proc, port


def make_pool(store: Store, cluster: MariaDBCluster) -> None:
    text = f"name:m1;primary:{cluster.node1.node_id};secondary:{cluster.node2.node_id}"
    store.create_pool(parse_failoverpool(text, interval=INTERVAL, max_requests=4))


def test_rounds_latency_and_abstentions_move_with_what_the_pollers_do(
    store: Store, mariadb_cluster: MariaDBCluster, pollers: list[PollerProcess], redis_url: str
) -> None:
    make_pool(store, mariadb_cluster)
    node1, node2 = mariadb_cluster.node1.node_id, mariadb_cluster.node2.node_id
    first = store.load_pool("m1").version
    _, port = start(pollers, redis_url, "pm-good")
    watch_ticks(store, "m1", lambda seen: len(seen) >= 4, 15)

    # A lone poller commits every round: its counter is the pool's version count in Redis.
    before = value(port, "mpp_poller_rounds_committed_total", pool="m1")
    versions = store.load_pool("m1").version - first
    wait_until(
        lambda: value(port, "mpp_poller_rounds_committed_total", pool="m1") >= versions,
        5,
        "the counter to reach the pool's version count",
    )
    after = value(port, "mpp_poller_rounds_committed_total", pool="m1")
    assert before <= versions <= after <= versions + 2
    assert versions >= 3
    watch_ticks(store, "m1", lambda seen: len(seen) >= 3, 10)
    assert value(port, "mpp_poller_rounds_committed_total", pool="m1") >= after + 2

    found = samples(port)
    for node in (node1, node2):
        family = "mpp_poller_probe_latency_seconds"
        count = found[f'{family}_count{{pool="m1",node="{node}"}}']
        assert count >= 3
        buckets = [
            v
            for k, v in found.items()
            if k.startswith(f'{family}_bucket{{pool="m1",node="{node}",')
        ]
        assert buckets == sorted(buckets) and buckets[-1] == count  # cumulative, +Inf last
        assert 0 < found[f'{family}_sum{{pool="m1",node="{node}"}}'] < count * 0.5
        assert found[f'mpp_poller_abstaining{{pool="m1",node="{node}"}}'] == 0
    assert found["mpp_poller_cycles_total"] >= 3
    assert found["mpp_poller_cycle_errors_total"] == 0
    assert found["mpp_poller_pools"] == 1
    assert found['mpp_poller_info{poller_id="pm-good",version="' + __version__ + '"}'] == 1
    assert not any(k.startswith("mpp_poller_abstentions_total") for k in found)

    # A poller with a wrong password abstains on every node, round after round.
    _, bad = start(pollers, redis_url, "pm-bad", password="not-the-password")
    for node in (node1, node2):
        wait_until(
            lambda n=node: value(bad, "mpp_poller_abstentions_total", pool="m1", node=n) >= 3,
            15,
            f"abstentions on {node} counted",
        )
        assert value(bad, "mpp_poller_abstaining", pool="m1", node=node) == 1
        assert value(port, "mpp_poller_abstaining", pool="m1", node=node) == 0
    assert not any(k.startswith("mpp_poller_abstentions_total") for k in samples(port))


def test_commit_races_lost_to_an_admin_writer_are_counted(
    store: Store, mariadb_cluster: MariaDBCluster, pollers: list[PollerProcess], redis_url: str
) -> None:
    make_pool(store, mariadb_cluster)
    _, port = start(pollers, redis_url, "pm-race")
    watch_ticks(store, "m1", lambda seen: len(seen) >= 2, 15)
    assert value(port, "mpp_poller_commit_conflicts_total", pool="m1") == 0
    node2 = NodeId.parse(mariadb_cluster.node2.node_id)
    stop = threading.Event()

    def hammer() -> None:
        """Change the pool's version as fast as Redis allows: an override on and off."""
        admin = Store.from_url(redis_url, "mpp")
        while not stop.is_set():
            hold = Override(State.STANDBY, None, "metrics test", "admin:test", time.time())
            admin.admin("m1", lambda p, h=hold: set_override(p, node2, h))
            admin.admin("m1", lambda p: release_override(p, node2))

    writer = threading.Thread(target=hammer, daemon=True)
    writer.start()
    try:
        wait_until(
            lambda: value(port, "mpp_poller_commit_conflicts_total", pool="m1") >= 1,
            30,
            "a commit race lost and counted",
        )
    finally:
        stop.set()
        writer.join(10)
    # Losing a race is retried at once: rounds are still committed.
    committed = value(port, "mpp_poller_rounds_committed_total", pool="m1")
    watch_ticks(store, "m1", lambda seen: len(seen) >= 3, 10)
    assert value(port, "mpp_poller_rounds_committed_total", pool="m1") > committed


def test_rounds_a_held_up_poller_never_probed_are_counted_and_said(
    store: Store, mariadb_cluster: MariaDBCluster, pollers: list[PollerProcess], redis_url: str
) -> None:
    make_pool(store, mariadb_cluster)
    proc, port = start(pollers, redis_url, "pm-held")
    watch_ticks(store, "m1", lambda seen: len(seen) >= 2, 15)
    assert proc.proc is not None
    before, counted = (
        store.load_pool("m1"),
        value(port, "mpp_poller_rounds_passed_total", pool="m1"),
    )
    os.kill(proc.proc.pid, signal.SIGSTOP)  # the poller's host froze for 4 intervals
    try:
        time.sleep(4 * INTERVAL)
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)
    watch_ticks(store, "m1", lambda seen: len(seen) >= 2, 10)
    after = store.load_pool("m1")
    # The lone poller committed every round it probed: the pool's rounds without a commit are
    # the rounds it never probed, and at least the 3 that started and passed while it was held.
    missed = rounds_missed(before, after)
    passed = value(port, "mpp_poller_rounds_passed_total", pool="m1") - counted
    assert 3 <= passed <= missed, (passed, missed)
    said = [line for line in proc.output().splitlines() if " not probed: " in line]
    assert said and " INFO " in said[0], proc.output()[-2000:]
    assert "this poller's previous cycle ran past their deadline" in said[0]


def test_healthz_says_when_cycles_fail(
    fresh_redis, mariadb_cluster: MariaDBCluster, pollers: list[PollerProcess]
) -> None:
    store = Store.from_url(fresh_redis.url, "mpp")
    make_pool(store, mariadb_cluster)
    proc, port = start(pollers, fresh_redis.url, "pm-health")
    assert http_get(port, "/nothing")[0] == 404
    fresh_redis.stop()
    wait_until(lambda: http_get(port, "/healthz")[0] == 503, 15, "/healthz 503 without Redis")
    _, text = http_get(port, "/healthz")
    assert text.startswith("last cycle failed: Redis unreachable")
    assert value(port, "mpp_poller_cycle_errors_total") >= 1
    fresh_redis.start()
    wait_until(lambda: http_get(port, "/healthz") == (200, "ok\n"), 20, "/healthz ok again")
    assert proc.is_running


def test_a_bad_or_taken_http_listen_address_exits_2(redis_url: str) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        for address, said in (
            ("nowhere", "expected HOST:PORT"),
            (f"127.0.0.1:{port}", f"cannot listen on 127.0.0.1:{port}"),
        ):
            argv = ["mpp-poller", "--redis-url", redis_url, "--http-listen", address]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 2, done.stderr
            assert said in done.stderr
    finally:
        taken.close()
