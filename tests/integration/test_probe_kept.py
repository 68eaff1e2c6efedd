"""Probes on kept connections (the pool setting keep_connections) against real MariaDB nodes.

A kept connection must see what a fresh login sees (same outcome, message and replication
values), log in again whenever the server closed it, and keep telling a node that hangs from
a node that cannot be reached: probed node by node (``probe_node``) and all at once (the
poller's ``KeptConnections.launch`` and ``land``, then ``probe`` for the nodes they leave)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from mpp_agent import probe
from mpp_agent.model import NodeId, Observation, Outcome
from mpp_agent.probe import (
    KeptConnections,
    ProbeResult,
    ProbeSettings,
    open_connection,
    probe_node,
)
from tests.forwarder import Forwarder
from tests.servers import (
    MONITOR_PASSWORD,
    MONITOR_USER,
    MariaDBCluster,
    MariaDBNode,
    wait_until,
)

pytestmark = pytest.mark.integration

FRESH = ProbeSettings(MONITOR_USER, MONITOR_PASSWORD, connect_timeout=1.0, read_timeout=1.0)
KEPT = ProbeSettings(
    MONITOR_USER,
    MONITOR_PASSWORD,
    connect_timeout=1.0,
    read_timeout=1.0,
    keep_for=60.0,
    reach_timeout=0.5,
)


@pytest.fixture
def kept() -> Iterator[KeptConnections]:
    # Every login serves its whole keep_for (no spread, which tests/unit covers): a first
    # login never falls due in the middle of a test that counts sessions.
    connections = KeptConnections(spread=lambda: 0.0)
    yield connections
    connections.close()


def all_at_once(
    kept: KeptConnections, jobs: dict[NodeId, ProbeSettings]
) -> dict[NodeId, ProbeResult]:
    """The probes as the poller makes them: the kept connections' all at once, the nodes they
    leave one by one."""
    flights, rest = kept.launch(jobs)
    results, left = kept.land(flights)
    for node in [*rest, *left]:
        results[node] = kept.probe(node, jobs[node])
    return results


ProbeWith = Callable[[NodeId, ProbeSettings, KeptConnections], ProbeResult]


@pytest.fixture(params=["node by node", "all at once"])
def probe_with(request: pytest.FixtureRequest) -> ProbeWith:
    """A probe of one node on kept connections, by either path."""
    if request.param == "node by node":
        return probe_node
    return lambda node, settings, kept: all_at_once(kept, {node: settings})[node]


def node_id(node: MariaDBNode) -> NodeId:
    return NodeId.parse(node.node_id)


def monitor_sessions(node: MariaDBNode) -> list[int]:
    """The ids of the monitoring account's sessions on the node."""
    rows = node.sql(
        f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{MONITOR_USER}' ORDER BY ID"
    )
    return [int(row[0]) for row in rows]


def comparable(result: ProbeResult) -> tuple[object, ...]:
    """What an operator and the tick read from a probe; Threads_connected aside (a login
    reads it, a kept connection does not)."""
    metrics = result.metrics
    return (
        result.observation,
        (metrics.read_only, metrics.max_connections, metrics.lag, metrics.server_version),
    )


def test_a_kept_connection_serves_the_next_probes(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections, probe_with: ProbeWith
) -> None:
    node = mariadb_cluster.node2
    first = probe_with(node_id(node), KEPT, kept)
    assert first.observation.is_healthy, first.observation.message
    assert first.metrics.threads_connected is not None  # the login reads it
    sessions = monitor_sessions(node)
    assert len(sessions) == 1 and len(kept) == 1
    for _ in range(3):
        again = probe_with(node_id(node), KEPT, kept)
        assert comparable(again) == comparable(first)
        assert monitor_sessions(node) == sessions  # the same session, no new login
    # Without keep_for the probe logs in and out as MPP's did, and keeps nothing.
    fresh = probe_node(node_id(node), FRESH, kept)
    assert comparable(fresh) == comparable(first)


def stop_sql(node: MariaDBNode) -> None:
    node.sql("STOP SLAVE SQL_THREAD")


def stop_io(node: MariaDBNode) -> None:
    node.sql("STOP SLAVE IO_THREAD")


def no_replication(node: MariaDBNode) -> None:
    node.sql("STOP SLAVE; RESET SLAVE ALL")


def read_only(node: MariaDBNode) -> None:
    node.sql("SET GLOBAL read_only=ON")


def move_tables(node: MariaDBNode, source: str, target: str) -> None:
    """Every table of database ``source`` into ``target`` (other tests may have added some)."""
    tables = [row[0] for row in node.sql(f"SHOW TABLES FROM {source}")]
    moves = ", ".join(f"{source}.{t} TO {target}.{t}" for t in tables)
    node.sql(f"SET sql_log_bin=0; CREATE DATABASE IF NOT EXISTS {target}; RENAME TABLE {moves}")


def no_tables(node: MariaDBNode) -> None:
    move_tables(node, "mppmon", "mppaside")


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        (stop_sql, Outcome.REQUEST),
        (stop_io, Outcome.REQUEST),
        (no_replication, Outcome.REQUEST),
        (read_only, Outcome.HEALTHY),
        (no_tables, Outcome.CONNECT),
    ],
)
def test_a_kept_connection_sees_what_a_login_sees(
    mariadb_cluster: MariaDBCluster,
    kept: KeptConnections,
    probe_with: ProbeWith,
    change: Callable[[MariaDBNode], None],
    outcome: Outcome,
) -> None:
    node = mariadb_cluster.node3
    assert probe_with(node_id(node), KEPT, kept).observation.is_healthy
    change(node)
    try:
        on_kept = probe_with(node_id(node), KEPT, kept)
        fresh = probe_node(node_id(node), FRESH)
    finally:
        if change is no_tables:
            move_tables(node, "mppaside", "mppmon")
            node.sql("SET sql_log_bin=0; DROP DATABASE mppaside")
    assert on_kept.observation.outcome is outcome, on_kept.observation.message
    assert comparable(on_kept) == comparable(fresh), (on_kept, fresh)
    if change is read_only:
        assert on_kept.metrics.read_only is True


# Every kind of value a probe's reply carries, and a few it might: integers (signed, unsigned
# 64-bit), text in and out of ASCII, NULL, binary strings.
VALUES = (
    "SELECT 1 AS one, -7 AS neg, 18446744073709551615 AS big, 'h\u00e9' AS t, NULL AS n, "
    "CAST('a\\0' AS BINARY) AS b, @@global.server_id AS sid, REPEAT('x', 300) AS long_text"
)


@pytest.mark.parametrize("which", ["node1", "node2", "node3"])
def test_the_reply_read_at_once_equals_pymysqls_rows(
    mariadb_cluster: MariaDBCluster, which: str
) -> None:
    node: MariaDBNode = getattr(mariadb_cluster, which)
    conn = open_connection(
        node_id(node), MONITOR_USER, MONITOR_PASSWORD, "mppmon", 1.0, 1.0, statements_at_once=True
    )
    try:
        version = probe._version(conn)
        statements = ("SHOW TABLES", probe._slave_status_sql(version))
        sql = ";".join((*statements, probe._variables_sql(version), VALUES))
        for only in ((), probe._AT_ONCE_ONLY):
            for _ in range(2):  # the second time the column definitions are known bytes
                reply = probe._reply(conn, sql, only)
                assert reply.error is None and not reply.unsupported
                by_pymysql = probe._results(conn, sql, 4)
                ours = [probe._rows_of(r) for r in reply.results]
                # Positions may move between the two reads; everything else must be equal.
                assert ours[2:] == by_pymysql[2:]
                assert ours[0] == by_pymysql[0]
                assert ours[1] or which != "node2"  # node2 replicates: a row to compare
                for row, other in zip(ours[1], by_pymysql[1], strict=True):
                    kept = {k for k in other if not only or k in probe._KEPT_STATUS_COLUMNS}
                    assert sorted(row) == sorted(kept)
                    assert {k: type(v) for k, v in row.items()} == {k: type(other[k]) for k in kept}
                    assert row["Slave_IO_Running"] == other["Slave_IO_Running"] == "Yes"
                    assert row["Master_Host"] == other["Master_Host"] != ""
                    if only:  # MariaDB's columns the rules read (not MySQL's GTID sets) kept
                        mysql = {"Retrieved_Gtid_Set", "Executed_Gtid_Set"}
                        assert probe._STATUS_COLUMNS - mysql <= set(row)
                        assert len(row) < len(other) / 2
    finally:
        conn.close()


def test_a_reply_with_a_type_read_elsewhere_leaves_the_connection_in_step(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections
) -> None:
    node = mariadb_cluster.node1
    conn = open_connection(
        node_id(node), MONITOR_USER, MONITOR_PASSWORD, "mppmon", 1.0, 1.0, statements_at_once=True
    )
    try:
        reply = probe._reply(conn, "SELECT 1.5 AS d, NOW() AS at; SELECT 2 AS two")
        assert "column d has type 246" in reply.unsupported
        assert probe._results(conn, "SELECT 3 AS three", 1) == [[{"three": 3}]]
        # A server error ends the reply, and the connection serves the next query.
        failed = probe._reply(conn, "SELECT 1 AS one; SELECT nosuchcolumn; SELECT 2")
        assert failed.error is not None and failed.error.code == 1054
        assert len(failed.results) == 1
        assert probe._reply(conn, "SELECT 4 AS four").results[0].rows == ((4,),)
    finally:
        conn.close()


def test_a_connection_the_server_closed_logs_in_again(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections, probe_with: ProbeWith
) -> None:
    node = mariadb_cluster.node1
    assert probe_with(node_id(node), KEPT, kept).observation.is_healthy
    (session,) = monitor_sessions(node)
    node.sql(f"KILL {session}")  # as wait_timeout or an operator would
    after_kill = probe_with(node_id(node), KEPT, kept)
    assert after_kill.observation.is_healthy, after_kill.observation.message
    (second,) = monitor_sessions(node)
    assert second != session
    node.stop()
    node.start()  # a restart closes every connection
    after_restart = probe_with(node_id(node), KEPT, kept)
    # Logged in again (its IO thread may still be connecting to its source: not our concern).
    assert after_restart.observation.outcome is not Outcome.CONNECT
    assert after_restart.metrics.threads_connected is not None  # a login's probe
    assert len(monitor_sessions(node)) == 1


def test_a_connection_in_use_every_round_still_logs_in_again_at_its_age(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections
) -> None:
    """The age counts from the login, not from the last probe: a node is logged in to at least
    every keep_for seconds, so one that refuses new connections is seen within that."""
    node = mariadb_cluster.node1
    young = ProbeSettings(MONITOR_USER, MONITOR_PASSWORD, keep_for=0.5)
    assert probe_node(node_id(node), young, kept).observation.is_healthy
    (first,) = monitor_sessions(node)
    for _ in range(8):  # a probe every 0.1 s, well inside keep_for each time
        time.sleep(0.1)
        assert probe_node(node_id(node), young, kept).observation.is_healthy
    (last,) = monitor_sessions(node)
    assert last != first


def test_a_connection_past_its_age_is_replaced(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections
) -> None:
    node = mariadb_cluster.node1
    young = ProbeSettings(MONITOR_USER, MONITOR_PASSWORD, keep_for=0.3)
    assert probe_node(node_id(node), young, kept).observation.is_healthy
    (first,) = monitor_sessions(node)
    time.sleep(0.5)
    assert probe_node(node_id(node), young, kept).observation.is_healthy
    (second,) = monitor_sessions(node)  # the old one was closed, not left behind
    assert second != first
    kept.retain({})
    assert len(kept) == 0
    # Closed (COM_QUIT sent); the server ends the session a moment later.
    wait_until(lambda: monitor_sessions(node) == [], 2.0, "the closed session gone")


def test_a_killed_node_on_a_kept_connection_is_unreachable(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections, probe_with: ProbeWith
) -> None:
    node = mariadb_cluster.node2
    assert probe_with(node_id(node), KEPT, kept).observation.is_healthy
    node.kill9()
    result = probe_with(node_id(node), KEPT, kept)
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.message.startswith(
        f"Could not connect to mysql host {node.node_id}: Can't connect to MySQL server"
    )
    assert result.observation.unreachable  # as for a login: refused, nothing listens
    assert len(kept) == 0


def test_a_frozen_node_on_a_kept_connection_hangs_but_is_reachable(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections, probe_with: ProbeWith
) -> None:
    node = mariadb_cluster.node2
    assert probe_with(node_id(node), KEPT, kept).observation.is_healthy
    node.sigstop()
    started = time.monotonic()
    result = probe_with(node_id(node), KEPT, kept)
    elapsed = time.monotonic() - started
    assert result.observation.outcome is Outcome.CONNECT
    assert "timed out" in result.observation.message
    # Its port still accepts (the kernel does): a hung server, not a cut link.
    assert not result.observation.unreachable
    assert elapsed < KEPT.read_timeout + 1.0
    assert len(kept) == 0


def test_a_cut_link_on_a_kept_connection_is_unreachable(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections, probe_with: ProbeWith
) -> None:
    link = Forwarder(mariadb_cluster.node1.port).start()
    node = NodeId("127.0.0.1", link.port)
    try:
        assert probe_with(node, KEPT, kept).observation.is_healthy
        link.freeze()  # the open connection goes silent, new ones are refused
        started = time.monotonic()
        result = probe_with(node, KEPT, kept)
        elapsed = time.monotonic() - started
    finally:
        link.stop()
    assert result.observation.outcome is Outcome.CONNECT
    assert "timed out" in result.observation.message
    assert result.observation.unreachable  # so the replicas' view may speak for it
    assert elapsed < KEPT.read_timeout + KEPT.connect_timeout


def test_a_poller_out_of_file_descriptors_abstains(mariadb_cluster: MariaDBCluster) -> None:
    """Its own limit is not the node's fault: no failing observation."""
    script = textwrap.dedent(
        f"""
        import resource, socket
        from mpp_agent.model import NodeId
        from mpp_agent.probe import ProbeSettings, probe_node
        held = []
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            while True:
                held.append(socket.socket())
        except OSError:
            pass
        settings = ProbeSettings({MONITOR_USER!r}, {MONITOR_PASSWORD!r})
        result = probe_node(NodeId.parse({mariadb_cluster.node1.node_id!r}), settings)
        print(result.observation.outcome.value)
        print(result.observation.message)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcome, message = done.stdout.splitlines()[:2]
    assert outcome == Outcome.ABSTAIN.value
    assert message.startswith("this poller is out of file descriptors:")


def test_statements_refused_at_once_are_asked_one_by_one_on_the_same_connection(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections
) -> None:
    node = mariadb_cluster.node3
    ident = node_id(node)
    assert all_at_once(kept, {ident: KEPT})[ident].observation.is_healthy  # the login
    (session,) = monitor_sessions(node)
    # Its database gone, SHOW TABLES is a server error, not an empty list.
    move_tables(node, "mppmon", "mppaside")
    node.sql("SET sql_log_bin=0; DROP DATABASE mppmon")
    try:
        flights, rest = kept.launch({ident: KEPT})
        assert rest == []
        landed, left = kept.land(flights)
        assert landed == {} and left == [ident]  # the server's error: asked one by one
        result = kept.probe(ident, KEPT)
        # From then on this connection is asked one statement at a time: not launched.
        assert kept.launch({ident: KEPT}) == ([], [ident])
        again = kept.probe(ident, KEPT)
    finally:
        node.sql("SET sql_log_bin=0; CREATE DATABASE mppmon")
        move_tables(node, "mppaside", "mppmon")
        node.sql("SET sql_log_bin=0; DROP DATABASE mppaside")
    # Worded by the one-by-one path: the monitoring database is the monitor's to provide.
    assert result.observation.outcome is Outcome.ABSTAIN
    assert result.observation.message == "SHOW TABLES: Unknown database 'mppmon'"
    assert comparable(again) == comparable(result)
    assert monitor_sessions(node) == [session]  # the same connection throughout


def test_all_at_once_a_frozen_node_costs_the_others_nothing(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections
) -> None:
    nodes = {name: node_id(getattr(mariadb_cluster, name)) for name in ("node1", "node2", "node3")}
    jobs = dict.fromkeys(nodes.values(), KEPT)
    first = all_at_once(kept, jobs)
    assert all(r.observation.is_healthy for r in first.values()), first
    assert len(kept) == 3
    mariadb_cluster.node3.sigstop()
    try:
        flights, rest = kept.launch(jobs)
        assert rest == [] and len(flights) == 3
        started = time.monotonic()
        landed, left = kept.land(flights)
        elapsed = time.monotonic() - started
    finally:
        mariadb_cluster.node3.sigcont()
    assert left == []
    frozen = landed[nodes["node3"]]
    assert frozen.observation.outcome is Outcome.CONNECT
    assert frozen.observation.message == (
        f"Could not connect to mysql host {nodes['node3']}: "
        "Lost connection to MySQL server during query (timed out)"
    )
    assert not frozen.observation.unreachable  # its port still accepts
    assert KEPT.read_timeout <= elapsed < KEPT.read_timeout + 1.0
    for name in ("node1", "node2"):
        result = landed[nodes[name]]
        assert comparable(result) == comparable(first[nodes[name]])
        assert result.latency < KEPT.read_timeout / 2  # not held up by the frozen one
    assert len(kept) == 2  # the frozen node's connection was closed, the others kept


@pytest.mark.parametrize("thawed", [True, False], ids=["answers-late", "still-frozen"])
def test_a_reply_that_came_too_late_costs_no_login(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections, thawed: bool
) -> None:
    node = mariadb_cluster.node3
    ident, jobs = node_id(node), {node_id(node): KEPT}
    others = monitor_sessions(node)
    try:
        flights, landed = frozen_round(kept, node)
        session = flights[0].held.conn.thread_id()  # the server's id of the kept connection
        assert "timed out" in (landed[ident].observation.message or "")
        assert (len(kept), kept.late) == (0, 1)  # waiting for the rest of its reply
        if thawed:
            node.sigcont()
            wait_until(lambda: _readable(flights[0]), 5, "the late reply arrives")
        flights, rest = kept.launch(jobs)
    finally:
        node.sigcont()
    assert kept.late == 0
    if not thawed:  # nothing came: the connection is closed, the node logged in to again
        assert (flights, rest) == ([], [ident])
        assert kept.probe(ident, KEPT).observation.is_healthy
        # A new login in its place (the server ends the old session once it sees it closed).
        wait_until(lambda: session not in monitor_sessions(node), 5, "the old session ends")
        assert len(monitor_sessions(node)) == len(others) + 1
        return
    # The late reply was read and left aside: the same connection answers this round's probe.
    assert rest == [] and len(flights) == 1
    landed, left = kept.land(flights)
    assert left == [] and landed[ident].observation.is_healthy
    assert monitor_sessions(node) == sorted([*others, session])  # that login's, no other


def frozen_round(
    kept: KeptConnections,
    node: MariaDBNode,
    judge: Callable[[ProbeResult], ProbeResult] = probe._as_is,
) -> tuple[list[probe._Flight], dict[NodeId, ProbeResult]]:
    """A probe of ``node`` that logs in, then one on its kept connection sent once the node is
    SIGSTOPped (the caller resumes it): that round's flights and results."""
    jobs = {node_id(node): KEPT}
    assert all_at_once(kept, jobs)[node_id(node)].observation.is_healthy
    node.sigstop()
    flights, _ = kept.launch(jobs)
    landed, _ = kept.land(flights, judge)
    return flights, landed


def _readable(flight: probe._Flight) -> bool:
    readable, _, _ = select.select([flight.held.conn._sock], [], [], 0)
    return bool(readable)


def _connections(node: MariaDBNode) -> int:
    """The connections the server has taken (this query's own among them)."""
    return int(node.sql("SHOW GLOBAL STATUS LIKE 'Connections'")[0][1])


@pytest.mark.parametrize("voided", [False, True], ids=["timeout-stands", "poller-abstains"])
def test_a_timeout_the_poller_abstains_on_asks_nothing_more_of_the_node(
    mariadb_cluster: MariaDBCluster, kept: KeptConnections, voided: bool
) -> None:
    # A poller that finds a timeout its own fault abstains: whether the node can be reached
    # (a TCP connect) would change nothing, and under overload it is one more connection.
    node = mariadb_cluster.node2
    abstain = Observation.abstain("this poller is overloaded")

    def judge(result: ProbeResult) -> ProbeResult:
        return replace(result, observation=abstain) if voided else result

    before = _connections(node)
    try:
        _, landed = frozen_round(kept, node, judge)
    finally:
        node.sigcont()
    observation = landed[node_id(node)].observation
    assert observation == abstain if voided else "timed out" in (observation.message or "")
    time.sleep(0.5)  # a TCP connect made while it was stopped is accepted by now
    # Taken since: the login, this count's own query, the reach check's connect unless the
    # poller abstained.
    assert _connections(node) == before + (2 if voided else 3)
