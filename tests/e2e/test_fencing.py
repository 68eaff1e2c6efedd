"""End to end, through a real HAProxy: read_only fencing (``--fence read_only``).

Two real pollers with a fencing account (``READ_ONLY ADMIN`` only) keep every node that takes
no writes ``read_only=ON``:

* in steady state the STANDBY is read_only and the ACTIVE is not;
* a SIGSTOPped ACTIVE is failed over within the failover budget (fencing adds no interval:
  the committing poller opens the new ACTIVE itself), and once SIGCONTed it is read_only
  within two intervals: a direct write to it by an application account fails with 1290;
* a killed old primary restarted (it comes back ``read_only=0``) is read_only within two
  intervals;
* a new ACTIVE still catching up (``MASTER_DELAY``) stays read_only without counting as a
  read_only ACTIVE, and is opened once caught up;
* a wrong fencing password fails no node and is reported (``mpp-admin pollers``, a WARNING).

Direct writes use the plain ``app`` account (privileges on its database only): an account
with ``READ_ONLY ADMIN`` (root among them) is not held by read_only on MariaDB.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from mpp_agent.model import Fence, State
from mpp_agent.state import MSG_READ_ONLY
from tests.e2e.conftest import BUDGET, INTERVAL, NAMESPACE, System, fresh_system
from tests.e2e.test_failover import failover_seconds, never_two_active
from tests.e2e.test_replication_gates import CountingWriter, applied_everything, delayed
from tests.servers import (
    APP_PASSWORD,
    APP_USER,
    FENCE_PASSWORD,
    FENCE_USER,
    HAProxy,
    MariaDBCluster,
    MariaDBNode,
    wait_until,
)

pytestmark = pytest.mark.e2e

ER_OPTION_PREVENTS_STATEMENT = 1290  # "running with the --read-only option"
FENCED_WITHIN = 2 * INTERVAL


def fence_options(tmp_path: Path, password: str = FENCE_PASSWORD) -> list[str]:
    secret = tmp_path / "fence.pw"
    secret.write_text(password + "\n")
    return ["--fence-user", FENCE_USER, "--fence-password-file", str(secret)]


@pytest.fixture
def fenced(
    mariadb_cluster: MariaDBCluster, haproxy_factory: Callable[[str], HAProxy], tmp_path: Path
) -> Iterator[System]:
    """The e2e system with ``--fence read_only`` and a fencing account on both pollers."""
    with fresh_system(
        mariadb_cluster,
        haproxy_factory,
        tmp_path,
        fence=Fence.READ_ONLY,
        poller_extra=fence_options(tmp_path),
    ) as system:
        yield system


def is_read_only(node: MariaDBNode) -> bool:
    return bool(node.sql("SELECT @@global.read_only", timeout=5)[0][0])


def seconds_until_read_only(node: MariaDBNode, since: float, timeout: float) -> float:
    wait_until(lambda: is_read_only(node), timeout, f"{node!r} read_only", interval=0.02)
    return time.monotonic() - since


def direct_write_error(node: MariaDBNode) -> int | None:
    """A write straight to ``node`` as the application: None if accepted, else its errno."""
    conn = node.connect_tcp(APP_USER, APP_PASSWORD)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO app.t (origin, v) VALUES (@@port, 'direct')")
        return None
    except pymysql.err.MySQLError as exc:
        return int(exc.args[0])
    finally:
        conn.close()


def history(system: System) -> list[dict[str, object]]:
    return [e for _, e in system.store.last_events(system.pool().name, 200)]


def admin(system: System, *argv: str) -> str:
    """``mpp-admin <argv>`` against the system's Redis: its stdout (exit 0 asserted)."""
    done = subprocess.run(
        ["mpp-admin", "--redis-url", system.redis.url, "--namespace", NAMESPACE, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def admin_json(system: System, *argv: str) -> object:
    return json.loads(admin(system, *argv, "--json"))


def test_steady_state_the_standby_is_read_only_and_the_active_is_not(fenced: System) -> None:
    node1, node2 = fenced.node1, fenced.node2
    wait_until(lambda: is_read_only(node2), 3 * INTERVAL, "node2 fenced")
    assert not is_read_only(node1)
    assert direct_write_error(node2) == ER_OPTION_PREVENTS_STATEMENT
    assert direct_write_error(node1) is None
    assert fenced.ask_agent(node1).startswith("up ready")
    assert fenced.ask_agent(node2).startswith("up drain")
    events = history(fenced)
    assert any(e["kind"] == "fenced" and e["node"] == node2.node_id for e in events), events
    # Steady: nothing more to do, so no more events (idempotent).
    count = len(events)
    time.sleep(3 * INTERVAL)
    assert len([e for e in history(fenced) if e["kind"] in ("fenced", "unfenced")]) == len(
        [e for e in events[:count] if e["kind"] in ("fenced", "unfenced")]
    )


def test_a_sigstopped_active_fails_over_in_budget_and_is_fenced_when_it_wakes(
    fenced: System,
) -> None:
    node1, node2 = fenced.node1, fenced.node2
    wait_until(lambda: is_read_only(node2), 3 * INTERVAL, "node2 fenced")
    with fenced.recorder() as rec:
        time.sleep(1.0)
        stopped_at = time.monotonic()
        node1.sigstop()
        failover = failover_seconds(rec, node2.port, stopped_at, BUDGET + 15)
        assert not is_read_only(node2)
        woke_at = time.monotonic()
        node1.sigcont()
        fenced_after = seconds_until_read_only(node1, woke_at, FENCED_WITHIN + 10)
        time.sleep(1.0)
    print(
        f"failover {failover:.2f} s with fencing (budget {BUDGET:.0f} s); old ACTIVE read_only "
        f"{fenced_after:.2f} s after SIGCONT"
    )
    assert failover <= BUDGET, rec.timeline()
    assert fenced_after <= FENCED_WITHIN
    assert direct_write_error(node1) == ER_OPTION_PREVENTS_STATEMENT
    assert rec.misrouted() == []
    never_two_active(rec)
    pool = fenced.pool()
    assert [n.state for n in pool.nodes] == [State.FAILED_OFFLINE, State.ACTIVE]
    events = history(fenced)
    assert any(e["kind"] == "unfenced" and e["node"] == node2.node_id for e in events), events
    assert any(e["kind"] == "fenced" and e["node"] == node1.node_id for e in events), events


def test_a_killed_old_primary_restarted_is_fenced_within_two_intervals(fenced: System) -> None:
    node1, node2 = fenced.node1, fenced.node2
    with fenced.recorder() as rec:
        time.sleep(1.0)
        killed_at = time.monotonic()
        node1.kill9()
        failover = failover_seconds(rec, node2.port, killed_at, BUDGET + 15)
        node1.start()  # comes back read_only=0, as its configuration says
        answered_at = time.monotonic()
        fenced_after = seconds_until_read_only(node1, answered_at, FENCED_WITHIN + 10)
        time.sleep(1.0)
        assert direct_write_error(node1) == ER_OPTION_PREVENTS_STATEMENT
        assert fenced.pool().nodes[0].state is State.FAILED_OFFLINE
        # recovered: the PRIMARY takes its writes back, opened, and node2 is fenced again
        recovered_at = time.monotonic()
        admin(fenced, "recover", node1.node_id)
        handback = failover_seconds(rec, node1.port, recovered_at, 30)
        wait_until(lambda: fenced.is_steady(node1), 15, "node1 ACTIVE and node2 STANDBY")
        wait_until(lambda: is_read_only(node2), 3 * INTERVAL, "node2 fenced again")
        time.sleep(1.0)
    print(
        f"failover {failover:.2f} s after kill -9 with fencing; restarted old primary read_only "
        f"{fenced_after:.2f} s after it answered; hand-back {handback:.2f} s"
    )
    assert failover <= BUDGET, rec.timeline()
    assert fenced_after <= FENCED_WITHIN
    assert not is_read_only(node1)
    assert rec.misrouted() == []
    never_two_active(rec)
    tail = {w.port for w in rec.writes if w.start > rec.writes[-1].start - 1.0}
    assert tail == {node1.port}, tail


def test_a_wrong_fencing_password_fails_no_node_and_is_reported(
    mariadb_cluster: MariaDBCluster, haproxy_factory: Callable[[str], HAProxy], tmp_path: Path
) -> None:
    options = fence_options(tmp_path, password="not-the-password")
    with fresh_system(
        mariadb_cluster, haproxy_factory, tmp_path, fence=Fence.READ_ONLY, poller_extra=options
    ) as system:
        node1, node2 = system.node1, system.node2

        def reported() -> bool:
            data = admin_json(system, "pollers")
            assert isinstance(data, dict)
            return any(p["fencing"] for p in data["pollers"])

        wait_until(reported, 5 * INTERVAL, "the fencing problem in mpp-admin pollers")
        time.sleep(2 * INTERVAL)
        assert system.is_steady(node1)
        assert all(not n.state.is_failed for n in system.pool().nodes)
        assert not is_read_only(node2)  # not fenced: the account is refused
        assert system.ask_agent(node1).startswith("up ready")
        data = admin_json(system, "pollers")
        assert isinstance(data, dict)
        problems = {k: v for p in data["pollers"] for k, v in p["fencing"].items()}
        key = f"{system.pool().name}/{node2.node_id}"
        assert "fencing account refused" in problems[key], problems
        assert "Access denied" in problems[key]
        assert "not-the-password" not in json.dumps(data)
        assert all("not-the-password" not in p.output() for p in system.pollers)
        warnings = [
            line
            for poller in system.pollers
            for line in poller.output().splitlines()
            if "WARNING" in line and "fencing" in line
        ]
        assert warnings, [p.output()[-2000:] for p in system.pollers]
        # Said once when it starts, not every round.
        for poller in system.pollers:
            lines = poller.output().splitlines()
            said = [line for line in lines if "WARNING" in line and "account refused" in line]
            assert len(said) <= 1, said


def test_a_catching_up_active_stays_fenced_without_failing_then_is_opened(fenced: System) -> None:
    """node2 (MASTER_DELAY=5) takes over with rows not applied yet: the fencing keeps it
    read_only while its catch-up gate holds, which is not "ACTIVE node is read_only", and
    opens it once caught up; no write lands before it holds every row it had received."""
    node1, node2 = fenced.node1, fenced.node2
    wait_until(lambda: is_read_only(node2), 3 * INTERVAL, "node2 fenced")
    delayed(node2, 5)
    try:
        with CountingWriter(fenced.rw_port, node1.port) as writer:
            time.sleep(3.0)
            node1.kill9()

            def gated() -> bool:
                n = fenced.pool().nodes[1]
                return n.state is State.ACTIVE and n.catchup_until is not None

            wait_until(gated, BUDGET + 15, "node2 ACTIVE, catching up")
            held = 0
            while gated():
                assert is_read_only(node2)
                assert fenced.ask_agent(node2).startswith("up drain")
                held += 1
                time.sleep(0.2)
            wait_until(
                lambda: any(port == node2.port for _, port, _ in writer.rows), 15, "node2 writes"
            )
            time.sleep(1.0)
        wait_until(lambda: applied_everything(node2), 30, "node2 to apply its relay log")
    finally:
        delayed(node2, 0)
    received = node2.sql(f"SELECT COUNT(*) FROM app.t WHERE origin = {node1.port}")[0][0]
    on_node2 = [held for _, port, held in writer.rows if port == node2.port]
    assert held >= 2, "the gate held for less than a round"
    assert on_node2 and all(h == received for h in on_node2)
    assert not is_read_only(node2)
    pool = fenced.pool()
    assert pool.nodes[1].state is State.ACTIVE
    events = history(fenced)
    assert not any(e.get("message") == MSG_READ_ONLY for e in events), events
    caught_up = max(
        i for i, e in enumerate(events)
        if e["kind"] == "catch-up" and e.get("message") == "caught up: writes open"
    )  # fmt: skip
    assert any(
        e["kind"] == "unfenced" and e["node"] == node2.node_id for e in events[caught_up:]
    ), events
