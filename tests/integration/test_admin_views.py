"""mpp-admin list, report, is-active, history, pollers and haproxy-config against a real Redis:
MPP's texts asserted exactly."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time

import pytest

from mpp_agent import state
from mpp_agent.model import NodeId, Outcome, Override, State, evolve
from mpp_agent.store import Store
from mpp_cli.errors import ExitCode
from mpp_cli.render import iso_time, local_time, zoned_time
from tests.integration.admin_support import (
    S1,
    S2,
    P,
    bootstrap,
    client_for,
    create,
    dump,
    failover,
    mpp_admin,
    store_for,
    tick,
)

pytestmark = pytest.mark.integration

HEADER = (
    "T  Server Name                     req  Time of Last Request  Status   State           "
    "Last Status Message  "
)
DASHES = (
    "-  ------------------------------  ---  --------------------  -------  --------------  "
    "-------------------  "
)

SETTINGS = (
    "interval=10s max_requests=4 max_lag=30s stale_writer=keep catchup_timeout=30s"
    " max_failover_lag=off failback=auto fence=off observers=3 keep_connections=off"
)


def node_time(store: Store, node: NodeId) -> float | None:
    found = store.load_pool("pool1").find(node)
    assert found is not None
    return found.last_request_time


def row(t: str, node: str, req: str, when: str, status: str, st: str, msg: str) -> str:
    widths = (1, 30, 3, 20, 7, 14, 19)
    return "".join(
        v.ljust(w) + "  "
        for v, w in zip((t, node, req, when, status, st, msg), widths, strict=True)
    )


def test_list_is_mpps_table_in_priority_order(redis_url: str) -> None:
    store = store_for(redis_url)
    create(store, "name:pool0;primary:zz;secondary:aa")  # lexical order would differ
    pool = bootstrap(store)
    t = local_time(pool.nodes[0].last_request_time)
    result = mpp_admin(redis_url, "list")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        HEADER,
        DASHES,
        f"*  [ pool0 ] status=OK  {SETTINGS}",
        row("P", "zz:3306", "", "", "OK", "UNKNOWN", ""),
        row("S", "aa:3306", "", "", "OK", "UNKNOWN", ""),
        f"*  [ pool1 ] status=OK  {SETTINGS}",
        row("P", "10.0.0.1:3306", "0", t, "OK", "ACTIVE",
            "(recovering) PRIMARY instatement to ACTIVE complete."),
        row("S", "10.0.0.2:3306", "0", t, "OK", "STANDBY", ""),
        row("S", "10.0.0.3:3307", "0", t, "OK", "STANDBY", ""),
    ]  # fmt: skip
    # The exact layout of MPP's --list: the time column starts at offset 40.
    assert result.stdout.splitlines()[6][40:59] == t
    only = mpp_admin(redis_url, "list", "--pool", "pool0").stdout.splitlines()
    pool0 = f"*  [ pool0 ] status=OK  {SETTINGS}"
    assert only[:3] == [HEADER, DASHES, pool0] and len(only) == 5


def test_list_shows_overrides_and_json(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    set_ = mpp_admin(
        redis_url, "override", "10.0.0.3:3307", "--state", "STANDBY", "--status", "OK",
        "--reason", "kernel upgrade", "--for", "2h",
    )  # fmt: skip
    assert set_.exit_code == 0, set_.stderr
    node = store.load_pool("pool1").find(S2)
    assert node is not None and node.override is not None
    text = mpp_admin(redis_url, "list").stdout.splitlines()
    user = f"admin:{os.environ.get('USER') or os.getuid()}"
    assert text[-1] == (
        f"  O override STANDBY/OK by {user} at {zoned_time(node.override.set_at)} "
        f"until {zoned_time(node.override.expires_at)}: kernel upgrade"
    )
    doc = json.loads(mpp_admin(redis_url, "list", "--json").stdout)
    [pool] = doc["pools"]
    assert {
        k: pool[k] for k in ("name", "status", "interval", "max_requests", "max_lag", "active")
    } == {
        "name": "pool1", "status": "OK", "interval": 10.0, "max_requests": 4, "max_lag": 30.0,
        "active": "10.0.0.1:3306",
    }  # fmt: skip
    primary, _, overridden = pool["nodes"]
    assert set(primary) == {
        "node", "type", "requests", "level", "status", "state", "message",
        "last_request_time", "override", "lag", "monitor_note", "replicas_view", "route",
        "read_only", "caught_up", "behind",
    }  # fmt: skip
    assert primary["route"] == {
        "state": "ACTIVE", "takes_writes": True, "takes_reads": False, "weight": 0,
        "reason": "ACTIVE OK level=OK",
    }  # fmt: skip
    assert primary["last_request_time"] == iso_time(node_time(store, P))
    assert primary["last_request_time"].endswith("Z")
    assert (primary["node"], primary["state"], primary["level"]) == (
        "10.0.0.1:3306",
        "ACTIVE",
        "OK",
    )
    assert primary["override"] is None
    assert overridden["override"]["state"] == "STANDBY"
    assert overridden["override"]["reason"] == "kernel upgrade"
    assert overridden["override"]["actor"] == user
    assert overridden["override"]["set_at"] == iso_time(node.override.set_at)
    assert overridden["override"]["expires_at"] == iso_time(node.override.expires_at)
    assert overridden["route"]["takes_reads"] and overridden["route"]["weight"] == 100


def test_report_lines_are_mpps_exactly(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)

    def report(node: str) -> str:
        result = mpp_admin(redis_url, "report", node)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    assert report("10.0.0.1") == (
        "OK/ACTIVE (PRIMARY) : (OK/0) (recovering) PRIMARY instatement to ACTIVE complete.\n"
    )
    assert report("10.0.0.2:3306") == "OK/STANDBY (SECONDARY)\n"
    tick(store, "pool1")
    assert report("10.0.0.1") == "OK/ACTIVE (PRIMARY)\n"
    failover(store)
    assert report("10.0.0.1") == (
        "FAIL/FAILED_OFFLINE (PRIMARY) : (FAIL/4) "
        "Could not connect to mysql host 10.0.0.1:3306: Can't connect (111)\n"
    )
    assert report("10.0.0.2") == (
        "OK_WARN/ACTIVE (SECONDARY) : (OK_WARN/1) FAILOVER: Taking over ACTIVE state.\n"
    )


def test_report_without_message_uses_the_request_level_label(redis_url: str) -> None:
    store = store_for(redis_url)
    pool = bootstrap(store)
    # R=2 and no message: MPP prints the level label "OK WARN".
    node = pool.find(S1)
    assert node is not None
    after = state.with_node(pool, 1, evolve(node, requests=2, message=None))
    assert store.commit(pool, after, (), "test", None)[0]
    assert mpp_admin(redis_url, "report", "10.0.0.2").stdout == "OK WARN/STANDBY (SECONDARY)\n"


def test_report_shows_the_override_on_a_second_line(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    # Never two writers: the ACTIVE primary must be overridden away first.
    refused = mpp_admin(redis_url, "override", "10.0.0.2", "--state", "ACTIVE", "--reason", "x")
    assert refused.exit_code == ExitCode.REFUSED
    assert "while 10.0.0.1:3306 is ACTIVE" in refused.stderr
    mpp_admin(redis_url, "override", "10.0.0.1", "--state", "STANDBY", "--reason", "drill")
    mpp_admin(redis_url, "override", "10.0.0.2", "--state", "ACTIVE", "--reason", "drill")
    out = mpp_admin(redis_url, "report", "10.0.0.2").stdout.splitlines()
    assert out[0] == "OK/STANDBY (SECONDARY)"
    assert out[1].startswith("override ACTIVE by admin:") and out[1].endswith(": drill")


def test_is_active(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    yes = mpp_admin(redis_url, "is-active", "10.0.0.1")
    assert (yes.exit_code, yes.stdout) == (0, "OK\n")
    no = mpp_admin(redis_url, "is-active", "10.0.0.2:3306")
    assert (no.exit_code, no.stdout) == (ExitCode.NO, "NO\n")
    unknown = mpp_admin(redis_url, "is-active", "10.9.9.9")
    assert (unknown.exit_code, unknown.stdout, unknown.stderr) == (ExitCode.NO, "NO\n", "")
    with_pool = mpp_admin(redis_url, "is-active", "10.0.0.1", "--pool", "pool1")
    assert (with_pool.exit_code, with_pool.stdout) == (0, "OK\n")


def test_is_active_follows_unexpired_overrides(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    assert (
        mpp_admin(
            redis_url, "override", "10.0.0.1", "--state", "STANDBY", "--reason", "x"
        ).exit_code
        == 0
    )
    assert mpp_admin(redis_url, "is-active", "10.0.0.1").stdout == "NO\n"
    assert mpp_admin(redis_url, "release", "10.0.0.1").exit_code == 0
    assert mpp_admin(redis_url, "is-active", "10.0.0.1").stdout == "OK\n"
    # An expired override no longer counts, even before a writer drops it.
    pool = store.load_pool("pool1")
    now = store.server_time()
    expired = Override(State.STANDBY, None, "old", "admin:t", now - 20, now - 10)
    after = state.set_override(pool, P, expired).pool
    assert store.commit(pool, after, (), "test", None)[0]
    assert mpp_admin(redis_url, "is-active", "10.0.0.1").stdout == "OK\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["report", "10.9.9.9"], ExitCode.NOT_FOUND,
                     "mpp-admin report: Server 10.9.9.9:3306 is not a member of any pool.\n",
                     id="report-unknown-node"),
        pytest.param(["report", "10.0.0.1:3306"], ExitCode.USAGE,
                     "mpp-admin report: Server 10.0.0.1:3306 is in pools pool1, pool2: "
                     "choose one with --pool.\n", id="report-ambiguous"),
        pytest.param(["report", "10.0.0.2", "--pool", "pool2"], ExitCode.NOT_FOUND,
                     "mpp-admin report: Server 10.0.0.2:3306 is not a member of pool pool2.\n",
                     id="report-not-in-pool"),
        pytest.param(["report", "10.0.0.1:x"], ExitCode.USAGE,
                     "mpp-admin report: bad port in node '10.0.0.1:x': expected 1-65535\n",
                     id="report-bad-node"),
        pytest.param(["is-active", "10.0.0.1"], ExitCode.USAGE, "choose one with --pool",
                     id="is-active-ambiguous"),
        pytest.param(["is-active", "a", "--pool", "nope"], ExitCode.NOT_FOUND,
                     "mpp-admin is-active: No pool named 'nope'.\n", id="is-active-unknown-pool"),
        pytest.param(["list", "--pool", "nope"], ExitCode.NOT_FOUND, "No pool named 'nope'",
                     id="list-unknown-pool"),
        pytest.param(["list", "--json", "--pool", "nope"], ExitCode.NOT_FOUND,
                     "No pool named 'nope'", id="list-json-unknown-pool"),
        pytest.param(["history", "--pool", "nope"], ExitCode.NOT_FOUND, "No pool named 'nope'",
                     id="history-unknown-pool"),
        pytest.param(["history", "--limit", "0"], ExitCode.USAGE, "", id="history-bad-limit"),
        pytest.param(["haproxy-config", "nope"], ExitCode.NOT_FOUND, "No pool named 'nope'",
                     id="haproxy-unknown-pool"),
        pytest.param(["haproxy-config", "pool1", "--agent-inter", "soon"], ExitCode.USAGE,
                     "bad --agent-inter 'soon'", id="haproxy-bad-inter"),
        pytest.param(["haproxy-config", "pool1", "--role", "rx"], ExitCode.USAGE, "",
                     id="haproxy-bad-role"),
        pytest.param(["pool", "show", "nope"], ExitCode.NOT_FOUND, "No pool named 'nope'",
                     id="show-unknown-pool"),
    ],
)  # fmt: skip
def test_read_errors(redis_url: str, args: list[str], code: ExitCode, message: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    create(store, "name:pool2;primary:10.0.0.1;secondary:10.0.0.9")
    before = dump(client_for(redis_url))
    result = mpp_admin(redis_url, *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stderr
    assert result.stdout == ""
    assert dump(client_for(redis_url)) == before


def test_history_text_json_and_limit(redis_url: str) -> None:
    store = store_for(redis_url)
    failover(store, bootstrap(store).name)
    recovered = mpp_admin(redis_url, "recover", "10.0.0.1")
    assert recovered.exit_code == 0, recovered.stderr
    text = mpp_admin(redis_url, "history").stdout.splitlines()
    assert "configure" in text[0] and "pool created by admin" in text[0]
    last = text[-1].split()
    user = f"admin:{os.environ.get('USER') or os.getuid()}"
    assert last[2] == time.strftime("%Z")  # text times carry their zone
    assert last[3:10] == [
        "pool1", "recover", "10.0.0.1:3306", "FAILED_OFFLINE/FAIL", "->", "UNKNOWN/OK_WARN", user,
    ]  # fmt: skip
    assert text[-1].endswith("Manual Recovery Initiated.")
    assert any(
        "poller-test" in line and "FAILOVER: Taking over ACTIVE state." in line for line in text
    )
    doc = json.loads(mpp_admin(redis_url, "history", "--json", "--limit", "2").stdout)
    assert len(doc["events"]) == 2
    tick_event, recover_event = doc["events"]
    assert recover_event["kind"] == "recover" and recover_event["actor"] == user
    assert "round" not in recover_event
    assert tick_event["actor"] == "poller-test" and isinstance(tick_event["round"], int)
    assert tick_event["id"] < recover_event["id"] or len(tick_event["id"]) < len(
        recover_event["id"]
    )
    assert recover_event["at"].endswith("Z") and recover_event["at"][10] == "T"
    assert tick_event["message"] is None or tick_event["message"]  # never ""


def test_history_by_node_and_since(redis_url: str) -> None:
    store = store_for(redis_url)
    failover(store, bootstrap(store).name)
    time.sleep(0.05)
    mid = store.server_time()  # 50 ms after the last tick, 50 ms before the recover
    time.sleep(0.05)
    assert mpp_admin(redis_url, "recover", "10.0.0.1").exit_code == 0

    def events(*args: str) -> list[dict[str, object]]:
        result = mpp_admin(redis_url, "history", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return list(json.loads(result.stdout)["events"])

    everything = events()
    of_s1 = events("--node", "10.0.0.2")
    assert of_s1 and all(e["node"] == "10.0.0.2:3306" for e in of_s1)
    assert len(of_s1) == sum(1 for e in everything if e["node"] == "10.0.0.2:3306")
    whole, ms = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid)), int(mid * 1000) % 1000
    since = f"{whole}.{ms:03d}Z"
    recent = events("--since", since)
    assert [e["kind"] for e in recent] == ["recover"]
    assert events("--since", since, "--node", "10.0.0.2") == []
    assert len(events("--since", "1h")) == len(everything)
    assert events("--node", "10.0.0.1", "--limit", "1") == [everything[-1]]
    bad = mpp_admin(redis_url, "history", "--since", "yesterday")
    assert bad.exit_code == ExitCode.USAGE and "bad --since 'yesterday'" in bad.stderr


def test_history_merges_pools_in_time_order(redis_url: str) -> None:
    store = store_for(redis_url)
    create(store, "name:a;primary:h1")
    create(store, "name:b;primary:h2")
    tick(store, "a")
    doc = json.loads(mpp_admin(redis_url, "history", "--json").stdout)
    assert [(e["pool"], e["kind"]) for e in doc["events"]] == [
        ("a", "configure"), ("b", "configure"), ("a", "transition"),
    ]  # fmt: skip
    only_b = json.loads(mpp_admin(redis_url, "history", "--json", "--pool", "b").stdout)
    assert [e["pool"] for e in only_b["events"]] == ["b"]


class LineReader:
    """Lines of a subprocess's stdout, read by a thread (select on a buffered pipe can hang)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(x) for x in stdout], daemon=True).start()

    def wait_for(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if text in line:
                return line
        raise AssertionError(f"no line containing {text!r} within {timeout}s")


def test_history_follow_prints_new_events_until_ctrl_c(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    proc = subprocess.Popen(
        ["mpp-admin", "--redis-url", redis_url, "history", "--follow", "--limit", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    reader = LineReader(proc)
    try:
        reader.wait_for("pool1")  # the newest existing event
        failover(store)
        line = reader.wait_for("FAILOVER: Taking over ACTIVE state.")
        assert "10.0.0.2:3306" in line and "STANDBY/OK -> ACTIVE/OK_WARN" in line
        create(store, "name:late;primary:h9")  # a pool created while following
        assert "late" in reader.wait_for("pool created")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_pollers(redis_url: str) -> None:
    store = store_for(redis_url)
    assert mpp_admin(redis_url, "pollers").stdout == "No pollers have reported.\n"
    now = store.server_time()
    info = {
        "poller_id": "p1", "pools": ["pool1", "pool2"], "started_at": now - 100,
        "last_cycle_at": now - 0.5, "cycle_seconds": 0.0123, "lag": 0.05,
    }  # fmt: skip
    store.heartbeat("p1", info, now, ttl=30)
    store.heartbeat("p2", {"poller_id": "p2", "pools": []}, now - 100, ttl=10)
    out = mpp_admin(redis_url, "pollers").stdout.splitlines()
    assert out[0] == "p1  alive"
    assert out[1] == "  pools          pool1, pool2"
    assert out[2].startswith(f"  started_at     {zoned_time(now - 100)} (1m4") and out[2].endswith(
        "s ago)"
    )
    assert out[3].startswith(f"  last_cycle_at  {zoned_time(now - 0.5)} (0.")
    assert out[4:6] == ["  cycle_seconds  0.012s", "  lag            0.050s"]
    assert out[6:] == ["p2  EXPIRED", "  pools  -"]
    doc = json.loads(mpp_admin(redis_url, "pollers", "--json").stdout)
    assert [(p["poller_id"], p["alive"]) for p in doc["pollers"]] == [("p1", True), ("p2", False)]
    assert doc["pollers"][0]["info"]["lag"] == 0.05
    # Times in JSON are ISO 8601 UTC, like every other command's.
    assert doc["now"].endswith("Z") and doc["pollers"][0]["info"]["last_cycle_at"].endswith("Z")


def test_haproxy_config_lines(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    result = mpp_admin(
        redis_url, "haproxy-config", "pool1", "--role", "ro", "--agent-port", "9999",
        "--agent-addr", "10.1.1.1", "--agent-inter", "500ms",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1:6] == [
        "backend pool1_ro",
        "    mode tcp",
        "    balance leastconn",
        "    option mysql-check user haproxy_check post-41",
        "    default-server check inter 2s fall 3 rise 2 on-marked-down shutdown-sessions "
        "agent-check agent-addr 10.1.1.1 agent-port 9999 agent-inter 500ms weight 100",
    ]
    assert lines[6] == (
        '    server pool1_10.0.0.1_3306 10.0.0.1:3306 agent-send "pool1 10.0.0.1:3306 ro\\n"'
    )
    assert [line.split()[1] for line in lines[6:]] == [
        "pool1_10.0.0.1_3306", "pool1_10.0.0.2_3306", "pool1_10.0.0.3_3307",
    ]  # fmt: skip
    default = mpp_admin(redis_url, "haproxy-config", "pool1", "--agent-inter", "1").stdout
    assert "agent-addr 127.0.0.1 agent-port 9777 agent-inter 1s\n" in default
    assert "balance first" in default and "weight" not in default
    assert '"pool1 10.0.0.2:3306 rw\\n"' in default


def test_listing_of_a_failed_pool(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    pool = tick(store, "pool1", {P: Outcome.CONNECT, S1: Outcome.CONNECT}, times=4)
    lines = mpp_admin(redis_url, "list").stdout.splitlines()
    t = local_time(pool.nodes[0].last_request_time)
    # the third node took over; if it failed now nobody could: the pool says so
    assert lines[3] == (
        "  D degraded: no failover candidate: 10.0.0.1:3306 is FAILED_OFFLINE; "
        "10.0.0.2:3306 is FAILED_OFFLINE"
    )
    lines = lines[:3] + lines[4:]
    assert lines[3] == row(
        "P", "10.0.0.1:3306", "4", t, "FAIL", "FAILED_OFFLINE",
        "Could not connect to mysql host 10.0.0.1:3306: Can't connect (111)",
    )  # fmt: skip
    assert lines[5].startswith(row("S", "10.0.0.3:3307", "1", t, "OK_WARN", "ACTIVE", "")[:70])
