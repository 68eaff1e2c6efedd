"""The probe of one MySQL/MariaDB node: the only module that talks to MySQL (PyMySQL).

It owns what a poll checks, as MPP checked it, and the exact MPP message texts:

* connect phase, failures are **connect-class** (``Outcome.CONNECT``): connect to the monitoring
  database (``Could not connect to mysql host <host:port>: <error>``), then list its tables
  (``Query Error: No tables found for database <db> on server <host:port>``); a connect that
  never reached the server (refused, timed out, no route, a name that does not resolve) is
  marked ``Observation.unreachable`` (``is_unreachable``);
* request phase, failures are **request-class** (``Outcome.REQUEST``): the first row of
  ``SHOW SLAVE STATUS`` (``SHOW REPLICA STATUS`` on MySQL >= 8.0.22) checked by
  ``slave_status_errors``; no row gives ``Could not get slave status for mysql host <host:port>.``
  The replication lag is reported as a metric (``NodeMetrics.lag``); whether it is an error
  depends on the pool (``with_max_lag``), so the poller applies it per pool;
* **abstentions** (``Outcome.ABSTAIN``): a failure that blames the poller, not the node (its
  account is refused or lacks a privilege, its monitoring database is unknown, it has no
  password), at connect or on any probe query. The node is not judged.

It also owns the poller's checkpoints (MPP's checkpoints, made per poller): a TCP connect to
each; when every one fails the poller cannot trust what it sees and abstains on every node.

Guarantees: ``probe_node`` never raises (every failure is an observation with a one-line
message; an unexpected exception's traceback is logged at DEBUG, once per node and kind), and
never waits longer than its timeouts: each socket read during connect is bounded by
``connect_timeout``, each read or write of a query by ``read_timeout``. It is synchronous and
blocking-socket based; the poller runs probes concurrently under gevent (PyMySQL is pure Python,
so monkey-patching makes it cooperative). The password lives only in ``ProbeSettings`` and is
kept out of its ``repr``; no message built here contains it.

A probe sends its queries in one round trip (a login's with Threads_connected too) and reads
the reply in a few socket reads, parsed by ``mysql_reply`` (PyMySQL's packet-by-packet reading
was most of the probe's CPU). A server error to any of them asks them again one by one on the
same connection; a reply no server sends (or a hang-up) after a login asks them one by one on a
second login; that path words each failure by its statement, as MPP's probe did.

Kept connections (the pool setting ``keep_connections``, off by default): a probe may run on the
connection the node's previous probe left (``KeptConnections``) and leave it for the next; it
logs in again when the connection is too old or the server closed it. What a login proves every
round (the node accepts new connections) is then proved only at each login. A kept connection
that times out is followed by a bare TCP connect, so that a node that hangs (reachable) is still
told from one that cannot be reached.

Divergences from MPP, on purpose: a connection lost or timed out *during* the request phase is
connect-class (the node stopped answering; MPP filed it as a request error); a server error
on the slave-status query is reported with its text appended; replication lag is an error only
above the pool's ``max_lag`` (MPP failed any standby whose executed position trailed the read
one, so a busy standby failed); the monitor's own faults are abstentions, not errors.
"""

from __future__ import annotations

import _socket
import errno
import logging
import math
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import gevent
import gevent.event
import pymysql
from pymysql.constants import CLIENT, COMMAND, CR
from pymysql.protocol import FieldDescriptorPacket, MysqlPacket

from mpp_agent import mysql_reply
from mpp_agent.model import NodeId, Observation, Outcome, Replication
from mpp_agent.pacing import paced
from mpp_agent.positions import missing
from mpp_agent.timeouts import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT

log = logging.getLogger("mpp.probe")

DEFAULT_MONITOR_DATABASE = "mppmon"
NO_PASSWORD = "no MySQL password configured (--mysql-password-file or MPP_MYSQL_PASSWORD)"

# Client-side error codes meaning "the server stopped answering": connect-class whatever phase.
_CR_CONNECTION_LOST = frozenset({2002, 2003, 2006, 2013, 2055})

# Server errors that blame the monitor's own account or configuration, not the node: the
# poller abstains. 1044 database access denied, 1045 access denied, 1049 unknown database,
# 1142 table command denied, 1227 a privilege missing (e.g. SLAVE MONITOR), 4151 account locked
# (MariaDB); also MySQL's locked account (3118) and an expired password (1820, 1862), which are
# the same fault in other words.
MONITOR_FAULTS = frozenset({1044, 1045, 1049, 1142, 1227, 4151, 3118, 1820, 1862})

# What a node that is not a MySQL server (or a broken one) can make PyMySQL raise besides its own
# errors: garbage where a packet should be.
_PROTOCOL_ERRORS: tuple[type[Exception], ...] = (
    struct.error,
    IndexError,
    KeyError,
    ValueError,  # UnicodeDecodeError and int() of garbage among them
    AssertionError,  # PyMySQL asserts on packet structure
)

# SHOW REPLICA STATUS (MySQL >= 8.0.22) column names -> the SHOW SLAVE STATUS names MPP checks.
_REPLICA_COLUMNS = {
    "Replica_IO_Running": "Slave_IO_Running",
    "Replica_SQL_Running": "Slave_SQL_Running",
    "Source_Host": "Master_Host",
    "Source_Port": "Master_Port",
    "Source_Server_Id": "Master_Server_Id",
    "Source_Log_File": "Master_Log_File",
    "Relay_Source_Log_File": "Relay_Master_Log_File",
    "Read_Source_Log_Pos": "Read_Master_Log_Pos",
    "Exec_Source_Log_Pos": "Exec_Master_Log_Pos",
    "Seconds_Behind_Source": "Seconds_Behind_Master",
}

# The slave-status columns the rules read (their SHOW SLAVE STATUS names) and, under either
# name, the only ones a reply read at once keeps: a row has some 60 columns.
_STATUS_COLUMNS = frozenset(
    {
        "Slave_IO_Running",
        "Slave_SQL_Running",
        "Last_Error",
        "Last_IO_Errno",
        "Master_Host",
        "Master_Port",
        "Master_Server_Id",
        "Master_Log_File",
        "Relay_Master_Log_File",
        "Read_Master_Log_Pos",
        "Exec_Master_Log_Pos",
        "Seconds_Behind_Master",
        "Gtid_IO_Pos",
        "Retrieved_Gtid_Set",
        "Executed_Gtid_Set",
    }
)
_KEPT_STATUS_COLUMNS = _STATUS_COLUMNS.union(_REPLICA_COLUMNS)


@dataclass(frozen=True)
class ProbeSettings:
    """How to log in to every node of a pool. The password is never part of the repr."""

    user: str
    password: str = field(repr=False)
    database: str = DEFAULT_MONITOR_DATABASE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    # How long a connection may serve the next probes of its node (the pool setting
    # keep_connections); 0: every probe logs in afresh, as MPP's did.
    keep_for: float = 0.0
    # After a kept connection's query timed out: the bound on the TCP connect that tells a
    # node that cannot be reached from one that hangs (None: the connect timeout).
    reach_timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.user:
            raise ValueError("the probe needs a MySQL user")
        if not self.database:
            raise ValueError("the probe needs a monitoring database (with at least one table)")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise ValueError(f"{name} must be > 0 and <= 3600 s, not {value}")
        if self.keep_for < 0:
            raise ValueError(f"keep_for must be >= 0 s, not {self.keep_for}")


@dataclass(frozen=True)
class NodeMetrics:
    """What the probe learnt about a node besides its verdict; None when not known.

    ``lag`` is the replication lag in seconds (``Seconds_Behind_Master``, MySQL 8's
    ``Seconds_Behind_Source``); None when the server does not know it (NULL: a thread stopped,
    or the IO thread still connecting) or the node is not a replica."""

    read_only: bool | None = None
    threads_connected: int | None = None
    max_connections: int | None = None
    lag: int | None = None
    server_version: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    """One probe of one node: the verdict, the metrics and how long it took (seconds)."""

    node: NodeId
    observation: Observation
    metrics: NodeMetrics
    latency: float


class _NodeGone(Exception):
    """The connection failed or was lost: the probe ends with a connect-class observation;
    ``unreachable`` when the node could not be reached at all (``is_unreachable``),
    ``timed_out`` when it stopped answering (rather than closed the connection)."""

    def __init__(self, text: str, *, unreachable: bool = False, timed_out: bool = False) -> None:
        super().__init__(text)
        self.unreachable = unreachable
        self.timed_out = timed_out


class _MonitorFault(Exception):
    """The server refused the monitor itself (``MONITOR_FAULTS``): the probe abstains."""


# ---------------------------------------------------------------------------------------------
# pure rules


def normalize_slave_status(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A slave-status row with MySQL 8's ``Replica_*``/``Source`` names mapped to MPP's (the
    row itself when it has none of them: MariaDB's, and one already normalised)."""
    if _REPLICA_COLUMNS.keys().isdisjoint(row):
        return row
    return {_REPLICA_COLUMNS.get(key, key): value for key, value in row.items()}


def _text(value: Any) -> str:
    """A column as MPP's Perl interpolated it: NULL (undef) is the empty string."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _number(value: Any) -> int:
    """A column compared numerically as Perl does: NULL or non-numeric counts as 0."""
    match = re.match(r"\s*(-?\d+)", _text(value))
    return int(match.group(1)) if match else 0


def _is_yes(value: Any) -> bool:
    # MPP: `!~ /YES/i`, a case-insensitive substring match.
    return "yes" in _text(value).lower()


# Last_IO_Errno values that mean "the source cannot be reached" (or no error yet).
_SOURCE_UNREACHABLE = frozenset({0, 2002, 2003, 2005, 2006, 2013})


def is_reconnecting(status: Mapping[str, Any]) -> bool:
    """An IO thread (re)connecting to a source it cannot reach, the SQL thread fine.

    When the ACTIVE primary of a master-master pair dies, the secondary's IO thread goes to
    ``Connecting`` at once; the same is seen when the link to a living source is cut. Which of
    the two it is only the round's other observations can tell, so this is reported
    (``Replication.source_unreachable``) and the tick decides (``state.excuse_cut_links``).
    Any other reason to be stuck connecting (e.g. 1045, a wrong replication password) is an
    error of this node whatever its source's state."""
    state = _text(status.get("Slave_IO_Running")).strip().lower()
    errno = _number(status.get("Last_IO_Errno"))
    return (
        state in ("connecting", "preparing")
        and errno in _SOURCE_UNREACHABLE
        and _is_yes(status.get("Slave_SQL_Running"))
        and not re.search(r"\w", _text(status.get("Last_Error")))
    )


def slave_status_errors(row: Mapping[str, Any]) -> list[str]:
    """MPP's request-phase checks of one ``SHOW SLAVE STATUS`` row.

    Only one thread error is reported (SQL before IO); ``Last_Error`` counts when it holds a
    word character. An IO thread that cannot reach its source is an error here; the tick
    excuses it when that source is down in the same round (``is_reconnecting``).
    DIVERGENCE: MPP's "Replication out of sync by N positions" is gone (any
    write load made the executed position trail the read one, so a busy standby failed); lag
    is judged against the pool's ``max_lag`` instead (``with_max_lag``)."""
    status = normalize_slave_status(row)
    errors: list[str] = []
    sql_running = status.get("Slave_SQL_Running")
    io_running = status.get("Slave_IO_Running")
    if not _is_yes(sql_running):
        errors.append(
            f"Slave Error: Slave SQL is not running, Slave_SQL_Running={_text(sql_running)}."
        )
    elif not _is_yes(io_running):
        errors.append(
            f"Slave Error: Slave IO is not running, Slave_IO_Running={_text(io_running)}."
        )
    last_error = _text(status.get("Last_Error"))
    if re.search(r"\w", last_error):
        errors.append(f"Last_Error: {last_error}")
    return errors


def replication_of(
    status: Mapping[str, Any] | None, variables: Mapping[str, Any], lag: int | None
) -> Replication:
    """The replication values of one probe: a (normalised) slave-status row, or None when the
    node has none, and its global variables (``binlog``, ``slave_pos``, ``server_id``,
    ``read_only``, ``super_read_only``)."""
    row = status or {}
    received = _text(row.get("Gtid_IO_Pos") or row.get("Retrieved_Gtid_Set")).strip()
    applied = _text(variables.get("slave_pos") or row.get("Executed_Gtid_Set")).strip()
    binlog = _text(variables.get("binlog")).strip()
    unapplied = missing(received, applied, binlog) if received else None
    relay_caught_up = None
    if status is not None and _text(row.get("Master_Log_File")):
        relay_caught_up = _text(row.get("Master_Log_File")) == _text(
            row.get("Relay_Master_Log_File")
        ) and _number(row.get("Read_Master_Log_Pos")) == _number(row.get("Exec_Master_Log_Pos"))
    read_only = _optional_bool(variables.get("read_only"))
    if _optional_bool(variables.get("super_read_only")):
        read_only = True
    return Replication(
        source=_source(row),
        source_server_id=_optional_int(row.get("Master_Server_Id")),
        server_id=_optional_int(variables.get("server_id")),
        io_running=_text(row.get("Slave_IO_Running")),
        sql_running=_text(row.get("Slave_SQL_Running")),
        received=received,
        applied=applied,
        binlog=binlog,
        unapplied=unapplied,
        relay_caught_up=relay_caught_up,
        read_only=read_only,
        lag=lag,
        source_unreachable=status is not None and is_reconnecting(status),
    )


def _source(row: Mapping[str, Any]) -> str:
    host, port = _text(row.get("Master_Host")).strip(), _optional_int(row.get("Master_Port"))
    if not host:
        return ""
    try:
        return str(NodeId.parse(host if port is None else f"{host}:{port}"))
    except ValueError:
        return one_line(host)


def replication_lag(row: Mapping[str, Any]) -> int | None:
    """Seconds behind the source; None when unknown (NULL: a thread stopped or connecting)."""
    return _optional_int(normalize_slave_status(row).get("Seconds_Behind_Master"))


def with_max_lag(observation: Observation, lag: int | None, max_lag: float) -> Observation:
    """A node's observation for one pool: lag above the pool's ``max_lag`` is MPP's request
    error ``Slave Error: Seconds Behind Master: <n>`` (DIVERGENCE: for MPP any lag was an
    error). Unknown lag is no error (a stopped thread is one already); a connect error or an
    abstention stays as it is."""
    if lag is None or lag <= max_lag or observation.outcome in (Outcome.CONNECT, Outcome.ABSTAIN):
        return observation
    error = f"Slave Error: Seconds Behind Master: {lag}"
    if observation.outcome is Outcome.REQUEST:
        error = f"{observation.message}, {error}"
    # No longer a link that is merely cut: the tick must not excuse it.
    details = observation.replication
    if details is not None:
        details = replace(details, source_unreachable=False)
    return Observation(Outcome.REQUEST, error, replication=details)


def uses_replica_syntax(server_version: str) -> bool:
    """True for MySQL >= 8.0.22 (``SHOW REPLICA STATUS``); MariaDB keeps ``SHOW SLAVE STATUS``."""
    if "mariadb" in server_version.lower():
        return False
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", server_version)
    if not match:
        return False
    return tuple(int(part) for part in match.groups()) >= (8, 0, 22)


def server_version(handshake_version: str) -> str:
    """The version an operator knows: MariaDB prefixes its handshake version with "5.5.5-" for
    the sake of old clients; ``SELECT @@version`` has no such prefix."""
    prefix = "5.5.5-"
    if handshake_version.startswith(prefix) and "mariadb" in handshake_version.lower():
        return handshake_version[len(prefix) :]
    return handshake_version


def error_text(exc: BaseException) -> str:
    """The server's (or PyMySQL's) message of an error, without the ``(code, ...)`` tuple, on
    one line (a message is one line of a listing, a log and an agent reply)."""
    args: tuple[Any, ...] = exc.args
    if len(args) >= 2 and isinstance(args[1], str):
        # PyMySQL's (0, '') says only that the connection is gone.
        return one_line(args[1]) or f"{kind_of(exc)}: connection closed"
    return one_line(str(exc)) or type(exc).__name__


def one_line(text: str) -> str:
    return " ".join(text.split())


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL error, if it has one."""
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


# Client-side errors of a connect that never reached the server: 2002 (socket), 2003 (PyMySQL's
# wrapper of a failed TCP connect: refused, timed out, no route, name resolution), 2005
# (unknown host). A server that answered (1040 Too many connections) or accepted the TCP
# connection and then said nothing (2013, a hung server) is reachable: clients see that too.
_CR_UNREACHABLE = frozenset({2002, 2003, 2005})


def is_unreachable(exc: BaseException) -> bool:
    """Whether a connect failure means the node could not be reached at all (the replicas'
    view may then speak for it, ``state.replicas_view``)."""
    if isinstance(exc, pymysql.err.MySQLError):
        return error_code(exc) in _CR_UNREACHABLE
    return isinstance(exc, OSError)


def is_monitor_fault(exc: BaseException) -> bool:
    """True for a server error that blames the monitor, not the node (``MONITOR_FAULTS``)."""
    return isinstance(exc, pymysql.err.MySQLError) and error_code(exc) in MONITOR_FAULTS


def kind_of(exc: BaseException) -> str:
    """An exception's type as a reader can look it up: ``IndexError``, ``struct.error``."""
    kind = type(exc)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"{module}{kind.__qualname__}"


def failure_text(exc: BaseException) -> str:
    """What an observation says about an exception nobody expected: its kind, on one line."""
    return f"probe failed: {kind_of(exc)}"


_logged_failures: set[tuple[str, str]] = set()


def log_unexpected(node: NodeId, exc: BaseException) -> None:
    """The traceback of an unexpected probe failure, at DEBUG, once per node and kind: a broken
    server answers the same garbage every round, and the observation already says so."""
    key = (str(node), failure_text(exc))
    if key in _logged_failures:
        return
    if len(_logged_failures) < 10_000:  # bounded: a process lives for months
        _logged_failures.add(key)
    log.debug("probe of %s failed unexpectedly", node, exc_info=exc)


# ---------------------------------------------------------------------------------------------
# I/O


def probe_node(
    node: NodeId,
    settings: ProbeSettings,
    kept: KeptConnections | None = None,
    logins: LoginSlots | None = None,
) -> ProbeResult:
    """Probe one node as MPP's ``host/mysql.pm`` does, bounded by the settings' timeouts.

    With ``kept`` and ``settings.keep_for`` > 0 the probe runs on the connection an earlier
    probe of the node left there, and leaves its own for the next one. With ``logins`` a login
    waits for one of the poller's login slots. Never raises: whatever goes wrong is the node's
    observation."""
    started = time.monotonic()
    try:
        kept = kept if settings.keep_for > 0 else None
        observation, metrics = _probe(node, settings, kept, logins)
    except Exception as exc:  # the probe never raises; logged once
        log_unexpected(node, exc)
        observation, metrics = Observation.connect_error(node, failure_text(exc)), NodeMetrics()
    return ProbeResult(node, observation, metrics, time.monotonic() - started)


Verdict = tuple[Observation, NodeMetrics]


def _probe(
    node: NodeId, settings: ProbeSettings, kept: KeptConnections | None, logins: LoginSlots | None
) -> Verdict:
    if not settings.password:
        # Connecting without one could only be refused (1045): the poller's fault, said at once.
        return Observation.abstain(NO_PASSWORD), NodeMetrics()
    held = kept.take(node, settings.keep_for) if kept is not None else None
    if held is not None:
        verdict = _on_connection(held, node, settings, kept, login=False)
        if verdict is not None:
            return verdict
        # The server closed the kept connection (a restart, wait_timeout, KILL): log in again.
    # A login's statements go at once, its SET NAMES in front of them; if that reply is not
    # one a server sends (a count or a packet that is wrong, a hang-up, SET NAMES refused), a
    # second login asks them one by one, after PyMySQL's own SET NAMES, and its verdict words
    # the failure by the statement that met it.
    for at_once in (True, False):
        try:
            with logins.slot(node) if logins is not None else nullcontext():
                conn = _connect(node, settings, names_deferred=at_once)
        except _NodeGone as gone:
            return Observation.connect_error(
                node, str(gone), unreachable=gone.unreachable
            ), NodeMetrics()
        except _MonitorFault as fault:
            return Observation.abstain(str(fault)), NodeMetrics()
        held = kept.logged_in(node, conn) if kept is not None else _Kept(conn, 0.0)
        verdict = _on_connection(replace(held, at_once=at_once), node, settings, kept, login=True)
        if verdict is not None:
            return verdict
    raise AssertionError("a login that asks one statement at a time always has a verdict")


def _on_connection(
    held: _Kept, node: NodeId, settings: ProbeSettings, kept: KeptConnections | None, login: bool
) -> Verdict | None:
    """The checks on one connection, which is then kept for the next probe (when ``kept``
    has room) or closed. None when the statements sent at once met a connection the server
    closed or a reply no server sends (not a timeout: that is the node's verdict), on a kept
    connection (``login`` False) or a login's: the caller logs in again."""
    conn = held.conn
    reusable = False
    try:
        try:
            verdict = _check(conn, node, settings, at_once=held.at_once, login=login)
        except _NodeGone as gone:
            if (held.at_once or not login) and not gone.timed_out:
                return None
            # A kept connection that stopped answering: as a login that timed out would, it
            # says whether the node can be reached at all (the replicas' view needs that).
            unreachable = not login and not is_reachable(node, settings)
            return Observation.connect_error(node, str(gone), unreachable=unreachable), NodeMetrics(
                server_version=_version(conn)
            )
        reusable = kept is not None and kept.give_back(node, held)
        return verdict
    finally:
        if not reusable:
            _close(conn)


def is_reachable(node: NodeId, settings: ProbeSettings) -> bool:
    """Whether a TCP connect to the node succeeds within the reach timeout: a server that
    hangs (SIGSTOP, a stuck process) still has its port accepting; a cut link does not."""
    timeout = settings.reach_timeout or settings.connect_timeout
    return probe_checkpoint(Checkpoint(node.host, node.port), timeout) is None


def _connect(node: NodeId, settings: ProbeSettings, *, names_deferred: bool) -> Any:
    return open_connection(
        node,
        settings.user,
        settings.password,
        settings.database,
        settings.connect_timeout,
        settings.read_timeout,
        statements_at_once=True,
        names_deferred=names_deferred,
    )


def open_connection(
    node: NodeId,
    user: str,
    password: str,
    database: str | None,
    connect_timeout: float,
    read_timeout: float,
    *,
    statements_at_once: bool = False,
    names_deferred: bool = False,
) -> Any:
    """A connection whose connect is bounded by ``connect_timeout`` and each later read or
    write by ``read_timeout``; ``_NodeGone`` or ``_MonitorFault`` (the account's fault, or the
    poller's: out of file descriptors). ``statements_at_once``: the connection may send
    several statements in one query (``_check``'s ``at_once``), and with ``names_deferred``
    the login's ``SET NAMES`` goes in front of its first query (``_ProbeConnection``)."""
    try:
        conn = _ProbeConnection(
            host=node.host,
            port=node.port,
            user=user,
            password=password,
            database=database,
            connect_timeout=connect_timeout,
            # PyMySQL reads the handshake with the read timeout: during connect that must be the
            # connect timeout, or a SIGSTOPped server (TCP accepted, no greeting) holds us.
            read_timeout=connect_timeout,
            write_timeout=connect_timeout,
            autocommit=None,  # no extra round trip: the probe only reads
            # PyMySQL >= 1.2 "prefers" TLS: it builds a CA-loaded SSL context on every connect
            # (~18 ms of CPU) and negotiates TLS when the server offers it. A probe is plain
            # MySQL protocol, as MPP's was; at 500 nodes per interval that CPU matters.
            ssl_disabled=True,
            charset="utf8mb4",
            program_name="mpp-poller",
            client_flag=CLIENT.MULTI_STATEMENTS if statements_at_once else 0,
            names_deferred=statements_at_once and names_deferred,
        )
    except (pymysql.err.MySQLError, OSError) as exc:
        raise _login_failure(exc) from None
    except _PROTOCOL_ERRORS as exc:
        text = f"Bad handshake, not a MySQL server? ({kind_of(exc)}: {exc})"
        raise _NodeGone(one_line(text)) from None
    # From here on every query read and write is bounded by the read timeout. PyMySQL has no
    # public setter; it compares these before each socket operation, so changing them works.
    conn._read_timeout = read_timeout
    conn._write_timeout = read_timeout
    return conn


def _login_failure(exc: pymysql.err.MySQLError | OSError) -> Exception:
    """Whose fault a failed login is: the account's or the poller's (out of file
    descriptors) is a ``_MonitorFault``, anything else the node's (``_NodeGone``)."""
    if is_monitor_fault(exc):
        return _MonitorFault(error_text(exc))
    if _out_of_descriptors(exc) or _out_of_descriptors(getattr(exc, "original_exception", None)):
        return _MonitorFault(f"this poller is out of file descriptors: {error_text(exc)}")
    return _NodeGone(error_text(exc), unreachable=is_unreachable(exc))


def _out_of_descriptors(exc: BaseException | None) -> bool:
    """The poller's own limit, not the node's fault: it abstains rather than fail the node."""
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


class _ProbeConnection(pymysql.connections.Connection):  # type: ignore[misc]
    """PyMySQL's connection, parsing each distinct column description once: ``SHOW SLAVE
    STATUS`` has 50-60 columns, and parsing their descriptions again on every probe was half of
    the probe's CPU. A description is a pure function of its bytes (and the connection's
    encoding), so one parsed description serves every identical one, from any server.

    With ``names_deferred`` (a connection that may send several statements in one query),
    the ``SET NAMES`` PyMySQL sends after the login, a round trip of its own, is held back and
    sent in front of the first query (``take_names``): a login then costs the server one
    statement and one wait in its queue less. Any query through PyMySQL's own path sends it
    first, on its own, as PyMySQL would have."""

    def __init__(self, *args: Any, names_deferred: bool = False, **kwargs: Any) -> None:
        self._names_deferred = names_deferred
        self._names_pending: str | None = None
        super().__init__(*args, **kwargs)

    def set_character_set(self, charset: str, collation: str | None = None) -> None:
        if not self._names_deferred:
            super().set_character_set(charset, collation)
            return
        self._names_deferred = False  # only the login's own is held back
        self._names_pending = _names_statement(charset, collation)
        self.charset, self.collation = charset, collation
        self.encoding = pymysql.charset.charset_by_name(charset).encoding

    def take_names(self) -> str | None:
        """The ``SET NAMES`` held back, for the caller to send in front of its statements:
        from here on it is the caller's to send."""
        pending, self._names_pending = self._names_pending, None
        return pending

    def query(self, sql: Any, unbuffered: bool = False) -> int:
        if self.take_names() is not None:  # PyMySQL's own, as its connect would have sent it
            super().set_character_set(self.charset, self.collation)
        return int(super().query(sql, unbuffered))

    def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        if packet_type is FieldDescriptorPacket:
            packet_type = _column_description
        return super()._read_packet(packet_type)

    def connect(self, sock: Any = None) -> None:
        """A node named by its address is connected to without a name lookup: PyMySQL's own
        connect asks gevent's resolver, which hands even a numeric host to a thread of its
        pool and back, a wait and a wake-up more on every login of a busy poller."""
        if sock is None and not self.unix_socket:
            sock = _connect_numeric(self.host, self.port, self.connect_timeout)
        super().connect(sock)


def _connect_numeric(host: str, port: int, timeout: float | None) -> socket.socket | None:
    """A TCP socket connected to ``host`` when it is an IPv4 or IPv6 address (None for a
    name, which PyMySQL resolves), set up as PyMySQL sets up its own. A failure to connect is
    PyMySQL's own error for it, so that it reads and counts as any other."""
    family = _address_family(host)
    if family is None:
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError as exc:
        sock.close()
        error = pymysql.err.OperationalError(
            CR.CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on {host!r} ({exc})"
        )
        error.original_exception = exc
        raise error from None
    return sock


def _address_family(host: str) -> int | None:
    """AF_INET or AF_INET6 for a numeric address, None for a name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return family
    return None


_DESCRIPTIONS: dict[tuple[bytes, str], Any] = {}
_MAX_DESCRIPTIONS = 10_000  # a few hundred per server version; bounded all the same


def _column_description(data: bytes, encoding: str) -> Any:
    described = _DESCRIPTIONS.get((data, encoding))
    if described is None:
        if len(_DESCRIPTIONS) >= _MAX_DESCRIPTIONS:
            _DESCRIPTIONS.clear()
        described = _DESCRIPTIONS[data, encoding] = FieldDescriptorPacket(data, encoding)
    return described


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # the verdict is made; closing a broken connection must not undo it
        # The QUIT packet could not be sent: the node is gone, nothing is left to close.
        conn._force_close()


def _version(conn: Any) -> str:
    return server_version(_text(conn.get_server_info()))


@dataclass(frozen=True)
class _Answers:
    """What the probe queries answered: whether the monitoring database has tables, the
    slave status (None: no row, or the query failed) with its errors, the global variables
    and Threads_connected (None: not read)."""

    has_tables: bool
    status: Mapping[str, Any] | None = None
    errors: tuple[str, ...] = ()
    variables: Mapping[str, Any] = field(default_factory=dict)
    threads: Any = None


def _check(
    conn: Any, node: NodeId, settings: ProbeSettings, *, at_once: bool, login: bool
) -> Verdict:
    """The connect-phase table check, then the request phase, then the metrics; the queries
    in one round trip when ``at_once`` (the connection has not turned out to need PyMySQL's
    own reading), a ``login``'s with Threads_connected too; one by one when any of them
    failed (that path words each failure). A lost connection is ``_NodeGone``, raised."""
    version = _version(conn)
    try:
        answers = _all_at_once(conn, node, version, threads=login) if at_once else None
        if answers is None:
            answers = _one_by_one(conn, node, version)
    except _MonitorFault as fault:
        return Observation.abstain(str(fault)), NodeMetrics(server_version=version)
    return _verdict(node, settings, version, answers)


def _verdict(node: NodeId, settings: ProbeSettings, version: str, answers: _Answers) -> Verdict:
    if not answers.has_tables:
        message = f"Query Error: No tables found for database {settings.database} on server {node}"
        return Observation(Outcome.CONNECT, message), NodeMetrics(server_version=version)
    values = answers.variables
    metrics = NodeMetrics(
        read_only=_optional_bool(values.get("read_only")),
        threads_connected=_optional_int(answers.threads),
        max_connections=_optional_int(values.get("max_conn")),
        lag=replication_lag(answers.status) if answers.status else None,
        server_version=version,
    )
    details = replication_of(answers.status, values, metrics.lag)
    if answers.errors:
        return Observation(Outcome.REQUEST, ", ".join(answers.errors), replication=details), metrics
    return Observation(Outcome.HEALTHY, replication=details), metrics


def _one_by_one(conn: Any, node: NodeId, version: str) -> _Answers:
    if not _has_tables(conn):
        return _Answers(has_tables=False)
    status, errors = _slave_status(conn, node, version)
    variables, threads = _variables(conn, version)
    return _Answers(True, status, tuple(errors), variables, threads)


def _all_at_once(conn: Any, node: NodeId, version: str, *, threads: bool) -> _Answers | None:
    """The queries of a probe in one round trip; None when a server error stopped them (the
    one-by-one path then says which). Threads_connected only with ``threads`` (a login's
    probe): it costs the server more than the rest together."""
    sql = _at_once_sql(version, threads=threads)
    with _talking(sql):
        reply = _reply(conn, sql, _AT_ONCE_ONLY)
    return _answers_of(reply, node, threads=threads)


_THREADS_SQL = "SHOW GLOBAL STATUS LIKE 'Threads_connected'"


def _at_once_sql(version: str, *, threads: bool = False) -> str:
    statements = ["SHOW TABLES", _slave_status_sql(version), _variables_sql(version)]
    return ";".join([*statements, _THREADS_SQL] if threads else statements)


_AT_ONCE_STATEMENTS = 3
# The columns kept of each statement's result: SHOW TABLES's, the slave status's the rules read,
# every variable.
_AT_ONCE_ONLY = (None, _KEPT_STATUS_COLUMNS)


def _answers_of(
    reply: mysql_reply.Reply, node: NodeId, *, threads: bool = False
) -> _Answers | None:
    """What the statements sent at once answered (with Threads_connected when ``threads``);
    None when a server error stopped them or a value is of a type the reader leaves to
    PyMySQL."""
    if reply.error is not None or reply.unsupported:
        return None
    expected = _AT_ONCE_STATEMENTS + int(threads)
    if len(reply.results) != expected:
        raise _NodeGone(f"{len(reply.results)} results to {expected} statements")
    tables, rows, variables, *status = (_rows_of(result) for result in reply.results)
    if not tables:
        return _Answers(has_tables=False)
    found, errors = _status_of(rows, node)
    values = variables[0] if variables else {}
    connected = _first_value(status[0], "Value") if status else None
    return _Answers(True, found, tuple(errors), values, connected)


@contextmanager
def _talking(sql: str) -> Iterator[None]:
    """PyMySQL's errors during a query as the probe reads them: a lost connection, a timeout
    or a garbled reply raise ``_NodeGone``, a refusal of the monitor ``_MonitorFault``; other
    server errors pass."""
    try:
        yield
    except pymysql.err.OperationalError as exc:
        if error_code(exc) in _CR_CONNECTION_LOST:
            raise _NodeGone(error_text(exc), timed_out=_timed_out(exc)) from None
        if is_monitor_fault(exc):
            raise _MonitorFault(f"{sql}: {error_text(exc)}") from None
        raise
    except pymysql.err.MySQLError as exc:
        if is_monitor_fault(exc):
            raise _MonitorFault(f"{sql}: {error_text(exc)}") from None
        # InterfaceError: the connection is closed; InternalError: PyMySQL's own packet
        # checks failed (or an errno < 1000): either way the conversation is over.
        if isinstance(exc, pymysql.err.InterfaceError | pymysql.err.InternalError):
            raise _NodeGone(error_text(exc)) from None
        raise
    except OSError as exc:
        raise _NodeGone(error_text(exc), timed_out=isinstance(exc, TimeoutError)) from None
    except _PROTOCOL_ERRORS as exc:
        text = f"Malformed reply to {sql}, not a MySQL server? ({kind_of(exc)}: {exc})"
        raise _NodeGone(one_line(text)) from None


def _timed_out(exc: BaseException) -> bool:
    """PyMySQL raises its "Lost connection" error while handling the socket's own error."""
    return isinstance(exc.__context__, TimeoutError)


Rows = list[dict[str, Any]]


def _query(conn: Any, sql: str) -> Rows:
    """Rows as dicts by column name (errors as ``_talking`` reads them)."""
    return _results(conn, sql, 1)[0]


def _results(conn: Any, sql: str, count: int) -> list[Rows]:
    """The rows of each of the ``count`` result sets of ``sql``."""
    out: list[Rows] = []
    with _talking(sql), conn.cursor() as cur:
        cur.execute(sql)
        while True:
            names = [column[0] for column in cur.description or ()]
            out.append([dict(zip(names, row, strict=True)) for row in cur.fetchall()])
            if len(out) == count or not cur.nextset():
                break
    if len(out) != count:
        raise _NodeGone(f"{len(out)} results to {count} statements, not a MySQL server?")
    return out


def _reply(conn: Any, sql: str, only: tuple[frozenset[str] | None, ...] = ()) -> mysql_reply.Reply:
    """The whole reply to ``sql``, read in as few socket reads as it arrives in (a kept
    connection's one round trip; ``mysql_reply`` parses it, keeping ``only`` those columns of
    each result set). Each read is bounded by the read timeout; a lost connection is PyMySQL's
    own error, worded as PyMySQL words it."""
    if conn.client_flag & CLIENT.DEPRECATE_EOF:
        raise _NodeGone("the connection negotiated CLIENT_DEPRECATE_EOF")  # PyMySQL never does
    names = conn.take_names()
    if names is not None:
        return _after_names(names, _read_reply(conn, f"{names};{sql}", (None, *only)))
    return _read_reply(conn, sql, only)


def _names_statement(charset: str, collation: str | None) -> str:
    """The ``SET NAMES`` PyMySQL sends after a login."""
    return f"SET NAMES {charset} COLLATE {collation}" if collation else f"SET NAMES {charset}"


def _after_names(names: str, reply: mysql_reply.Reply) -> mysql_reply.Reply:
    """The reply without the result of the ``SET NAMES`` sent in front of it. A server that
    refused it ends the conversation (the login is then made again, with PyMySQL's own
    ``SET NAMES``, which words the refusal)."""
    if not reply.results:
        raise _NodeGone(f"{names}: {reply.error}")
    return replace(reply, results=reply.results[1:])


def _read_reply(conn: Any, sql: str, only: tuple[frozenset[str] | None, ...]) -> mysql_reply.Reply:
    conn._execute_command(COMMAND.COM_QUERY, sql)
    reader = mysql_reply.ReplyReader(conn.encoding, only=only)
    if conn._current_timeout != conn._read_timeout:
        conn._sock.settimeout(conn._read_timeout)
        conn._current_timeout = conn._read_timeout
    while True:
        try:
            data = conn._rfile.read1(_READ_SIZE)
        except InterruptedError:
            continue
        except OSError as exc:
            conn._force_close()
            raise _lost_connection(exc) from exc
        if not data:
            conn._force_close()
            raise _lost_connection(None)
        reply = reader.feed(data)
        if reply is not None:
            return reply


_READ_SIZE = 64 * 1024


def _lost_connection(exc: OSError | None) -> pymysql.err.OperationalError:
    """A connection lost during a query, worded as PyMySQL words it."""
    why = f" ({exc})" if exc is not None else ""
    return pymysql.err.OperationalError(
        CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query{why}"
    )


def _rows_of(result: mysql_reply.ResultSet) -> Rows:
    return [dict(zip(result.names, row, strict=True)) for row in result.rows]


def _has_tables(conn: Any) -> bool:
    try:
        return bool(_query(conn, "SHOW TABLES"))
    except pymysql.err.MySQLError:
        # MPP's DBI tables() gives an empty list on error: "No tables found" as well.
        return False


def _slave_status_sql(version: str) -> str:
    return "SHOW REPLICA STATUS" if uses_replica_syntax(version) else "SHOW SLAVE STATUS"


def _slave_status(
    conn: Any, node: NodeId, version: str
) -> tuple[Mapping[str, Any] | None, list[str]]:
    try:
        rows = _query(conn, _slave_status_sql(version))
    except pymysql.err.MySQLError as exc:
        # A server error that does not blame the monitor: say which.
        return None, [f"Could not get slave status for mysql host {node}: {error_text(exc)}"]
    return _status_of(rows, node)


def _status_of(rows: Rows, node: NodeId) -> tuple[Mapping[str, Any] | None, list[str]]:
    """The slave status (normalised) of its query's rows, and its errors; no row is MPP's
    "Could not get slave status" error."""
    if not rows:
        return None, [f"Could not get slave status for mysql host {node}."]
    status = normalize_slave_status(rows[0])
    return status, slave_status_errors(status)


# The global variables a probe reads besides the slave status, per dialect.
_MARIADB_VARIABLES = (
    "SELECT @@global.read_only AS read_only, @@global.max_connections AS max_conn, "
    "@@global.gtid_binlog_pos AS `binlog`, @@global.gtid_slave_pos AS slave_pos, "
    "@@global.server_id AS server_id"
)
_MYSQL_VARIABLES = (
    "SELECT @@global.read_only AS read_only, @@global.max_connections AS max_conn, "
    "@@global.super_read_only AS super_read_only, @@global.gtid_executed AS `binlog`, "
    "@@global.server_id AS server_id"
)
_BASIC_VARIABLES = "SELECT @@global.read_only AS read_only, @@global.max_connections AS max_conn"


def _variables_sql(version: str) -> str:
    return _MARIADB_VARIABLES if "mariadb" in version.lower() else _MYSQL_VARIABLES


def _variables(conn: Any, version: str) -> tuple[dict[str, Any], Any]:
    """Best effort: a server error here (not a lost connection) leaves a value unknown.
    The global variables (for ``replication_of``) and Threads_connected."""
    values: dict[str, Any] = {}
    for sql in (_variables_sql(version), _BASIC_VARIABLES):  # a server without GTIDs: basic
        try:
            rows = _query(conn, sql)
        except (pymysql.err.MySQLError, _MonitorFault):
            continue
        values.update(rows[0] if rows else {})
        break
    try:
        threads = _first_value(_query(conn, _THREADS_SQL), "Value")
    except (pymysql.err.MySQLError, _MonitorFault):
        threads = None
    return values, threads


# ---------------------------------------------------------------------------------------------
# logins under way at once


class LoginSlots:
    """At most ``size`` logins of a poller under way at once. A login costs the poller far more
    CPU than a probe on a kept connection; hundreds of them at once (pools just created, a
    poller just started, connections that aged together) share the CPU so thinly that each
    takes longer than its timeout, and healthy nodes would fail for the poller's own fault.
    Past ``size``, a login waits for a slot; a probe whose hard bound ends while it waits is
    the poller's fault, not the node's (``was_queued``: the poller abstains on it), and so is
    the part of a timed-out probe's time spent waiting (``waited``)."""

    def __init__(self, size: int, semaphore: Any = None) -> None:
        """``semaphore``: a bounded semaphore of ``size`` (threading's by default). A poller
        gives gevent's own: threading's, even monkey-patched, is left broken when a waiter is
        cut by a ``gevent.Timeout``."""
        if size < 1:
            raise ValueError(f"login slots must be >= 1, not {size}")
        self.size = size
        self._free = threading.BoundedSemaphore(size) if semaphore is None else semaphore
        self._queued: set[NodeId] = set()  # waiting for a slot when their probe was cut
        # node -> (seconds its last login waited for a slot, monotonic time it got one)
        self._waits: dict[NodeId, tuple[float, float]] = {}

    @contextmanager
    def slot(self, node: NodeId) -> Iterator[None]:
        """Hold a slot while the body logs in to ``node``."""
        self._queued.discard(node)  # only this probe's wait counts (a stop may have left one)
        asked = time.monotonic()
        try:
            self._free.acquire()
        except BaseException:  # the probe's hard bound (or a stop) while waiting: noted
            self._queued.add(node)
            raise
        got = time.monotonic()
        self._waits[node] = (got - asked, got)
        try:
            yield
        finally:
            self._free.release()

    def waited(self, node: NodeId) -> tuple[float, float] | None:
        """How long ``node``'s last login waited for its slot, and when it got it; None when
        that probe did not log in (asked once)."""
        return self._waits.pop(node, None)

    def was_queued(self, node: NodeId) -> bool:
        """Whether ``node``'s last probe was cut while waiting for a slot (asked once)."""
        if node in self._queued:
            self._queued.discard(node)
            return True
        return False


# ---------------------------------------------------------------------------------------------
# connections kept between rounds (the pool setting keep_connections)


@dataclass(frozen=True)
class _Kept:
    conn: Any
    since: float  # monotonic: when it logged in (its age bounds how long it serves)
    # False once the statements sent at once got an error or a type the reader does not read:
    # this connection's probes then ask one by one (PyMySQL's path words each failure).
    at_once: bool = True
    share: float = 1.0  # the part of its pools' keep_for this login serves, in (0, 1]

    def is_aged(self, now: float, keep_for: float) -> bool:
        """Whether this login has served its part of ``keep_for`` seconds by ``now``."""
        return now - self.since >= keep_for * self.share


def _as_is(result: ProbeResult) -> ProbeResult:
    """A probe's result as it is: ``KeptConnections.land``'s judge when none is given."""
    return result


class KeptConnections:
    """The connections a poller keeps to its nodes between rounds: at most one per node,
    taken out while a probe uses it (so never shared), closed once its login is older than its
    pools allow (``ProbeSettings.keep_for``: however often it is used, the node is logged in to
    again that often), when its node is no longer probed (``retain``) and when the poller stops
    (``close``). At most ``limit`` are kept (the file descriptors the poller can spare): past
    that a probe closes its connection as if nothing were kept.

    Renewals are spread: a login that does not replace a connection closed for its age (the
    node's first, or one after the server closed the connection) serves a random part of the
    period (``spread``, in [0, 1), gives 1 minus that part), and a renewal the whole period.
    Connections opened together (a poller started, pools created, a server restarted) are
    then renewed a few per round instead of all in one round every period: a login costs
    the poller several kept probes, and thousands of them in one round would not fit it."""

    def __init__(
        self,
        limit: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        logins: LoginSlots | None = None,
        spread: Callable[[], float] = random.random,
    ) -> None:
        self.limit = limit
        self.clock = clock
        self.logins = logins  # the poller's login slots, for every login of its probes
        self.spread = spread
        self._kept: dict[NodeId, _Kept] = {}
        # Probes sent all at once that timed out: their connections wait for the rest of the
        # reply (``launch`` serves them again once it is in), not logged in to again.
        self._late: dict[NodeId, _Flight] = {}
        self._renewing: set[NodeId] = set()  # closed for their age: the next login renews

    def __len__(self) -> int:
        """The connections ready for their node's next probe."""
        return len(self._kept)

    @property
    def late(self) -> int:
        """The connections waiting for the rest of a reply that came too late."""
        return len(self._late)

    def probe(self, node: NodeId, settings: ProbeSettings) -> ProbeResult:
        """``probe_node`` with these connections and login slots: the poller's probe function."""
        return probe_node(node, settings, self, self.logins)

    def logged_in(self, node: NodeId, conn: Any) -> _Kept:
        """A connection to ``node`` that has just logged in, as it may be kept: a renewal
        serves the whole period, any other login a random part of it (see the class)."""
        if node in self._renewing:
            self._renewing.discard(node)
            return _Kept(conn, self.clock())
        return _Kept(conn, self.clock(), share=1.0 - self.spread())

    def take(self, node: NodeId, keep_for: float) -> _Kept | None:
        """The node's kept connection, now the caller's; None when there is none whose login
        has yet to serve its part of ``keep_for`` (an older one is closed)."""
        kept = self._kept.pop(node, None)
        if kept is None:
            return None
        if kept.is_aged(self.clock(), keep_for):
            self.aged_out(node, kept)
            return None
        return kept

    def aged_out(self, node: NodeId, kept: _Kept) -> None:
        """Close ``kept``, which has served its period: the node's next login renews it."""
        _close(kept.conn)
        self._renewing.add(node)

    def give_back(self, node: NodeId, kept: _Kept) -> bool:
        """Keep the connection for the node's next probe; False (the caller closes it) when
        full."""
        if len(self._kept) + len(self._late) >= self.limit:
            return False
        previous = self._kept.pop(node, None)
        if previous is not None:
            _close(previous.conn)
        self._kept[node] = kept
        return True

    def retain(self, keep: Mapping[NodeId, float]) -> None:
        """Close the connections to nodes not in ``keep`` and those that have served their
        part of the node's ``keep`` seconds."""
        now = self.clock()
        late = [n for n, f in self._late.items() if f.held.is_aged(now, keep.get(n, 0.0))]
        aged = [n for n, k in self._kept.items() if k.is_aged(now, keep.get(n, 0.0))]
        for node, kept in [(n, self._late.pop(n).held) for n in late] + [
            (n, self._kept.pop(n)) for n in aged
        ]:
            if node in keep:
                self.aged_out(node, kept)
            else:
                _close(kept.conn)
        self._renewing &= keep.keys()

    def close(self) -> None:
        self.retain({})

    # ------------------------------------------------------------- probes all at once

    def launch(self, jobs: Mapping[NodeId, ProbeSettings]) -> tuple[list[_Flight], list[NodeId]]:
        """The probes of every node in ``jobs`` that has a kept connection, sent now, all
        from this greenlet (their replies are read by ``land``); and the nodes left to
        ``probe`` one each (no kept connection, or one that asks one statement at a time).
        A connection whose last reply came too late serves again once the rest of that reply
        is in (read now, without waiting: it is then in step); otherwise it is closed."""
        self.catch_up(jobs)
        flights: list[_Flight] = []
        rest: list[NodeId] = []
        for node, settings in paced(jobs.items()):
            kept = self._kept.get(node)
            if kept is None or not kept.at_once or not settings.password:
                rest.append(node)
                continue
            held = self.take(node, settings.keep_for)
            flight = _Flight.start(node, held, settings) if held is not None else None
            if flight is None:
                if held is not None:
                    _close(held.conn)
                rest.append(node)
            else:
                flights.append(flight)
        return flights, rest

    def catch_up(self, nodes: Container[NodeId]) -> None:
        """The late connections of ``nodes`` made ready again, or closed (see ``launch``)."""
        for node in [n for n in self._late if n in nodes]:  # a few, of thousands probed
            flight = self._late.pop(node)
            if flight.caught_up() and node not in self._kept:
                self._kept[node] = flight.held
            else:
                _close(flight.held.conn)

    def land(
        self, flights: Sequence[_Flight], judge: Callable[[ProbeResult], ProbeResult] = _as_is
    ) -> tuple[dict[NodeId, ProbeResult], list[NodeId]]:
        """The verdicts of the probes ``launch`` sent, their replies read as they arrive (one
        event-loop watcher each, no greenlet each), each within its read timeout; and the
        nodes left to ``probe`` one each: a server error or a value the reader leaves to
        PyMySQL (their connection, kept, then asks one statement at a time), a connection the
        server closed or a garbled reply (``probe`` logs in again). A probe that timed out is
        first given to ``judge`` (the poller's: an abstention when the poller's own lost time
        explains the timeout); only one it leaves a timeout asks whether the node can be
        reached at all. Never raises: should anything go wrong here, every node of
        ``flights`` is left to ``probe``, on a new login."""
        try:
            return self._land(flights, judge)
        except Exception as exc:  # a bug must cost these probes' connections, not the round
            for flight in flights:
                log_unexpected(flight.node, exc)
                if self._kept.get(flight.node) is flight.held:
                    del self._kept[flight.node]
                if self._late.get(flight.node) is flight:
                    del self._late[flight.node]
                _close(flight.held.conn)
            return {}, [flight.node for flight in flights]

    def _land(
        self, flights: Sequence[_Flight], judge: Callable[[ProbeResult], ProbeResult]
    ) -> tuple[dict[NodeId, ProbeResult], list[NodeId]]:
        _await(flights)
        results: dict[NodeId, ProbeResult] = {}
        rest: list[NodeId] = []
        late = [f for f in flights if f.timed_out]
        for flight in paced(flights):
            if flight.timed_out:
                continue
            verdict = self.verdict_of(flight)
            if verdict is None:
                rest.append(flight.node)
            else:
                results[flight.node] = flight.result(verdict)
        for flight in late:
            self.set_aside(flight)
            results[flight.node] = judge(flight.result(_timed_out_verdict(flight, False)))
        # A timeout that stands: as on a probe's own connection, whether the node can be
        # reached at all (a TCP connect: not asked of a node the poller abstains on).
        late = [f for f in late if not results[f.node].observation.is_abstained]
        reach = [gevent.spawn(_timed_out_verdict, f) for f in late]
        gevent.joinall(reach)
        for flight, job in zip(late, reach, strict=True):
            if job.successful():
                results[flight.node] = flight.result(job.value)
        return results, rest

    def set_aside(self, flight: _Flight) -> None:
        """A timed-out probe's connection, kept until the rest of its reply is in (a reply
        late for a poller short of CPU, or from a node slow for a moment, costs no login);
        closed when full."""
        if len(self._kept) + len(self._late) >= self.limit:
            _close(flight.held.conn)
        else:
            self._late[flight.node] = flight

    def verdict_of(self, flight: _Flight) -> Verdict | None:
        """A landed probe's verdict (its connection kept for the next); None: left to
        ``probe``."""
        conn = flight.held.conn
        if flight.answer is None:  # failed: closed by the server, or a garbled reply
            _close(conn)
            return None
        try:
            answers = _answers_of(flight.answer, flight.node)
        except _NodeGone:
            _close(conn)
            return None
        if answers is None:  # asked again one statement at a time, on the same connection
            if not self.give_back(flight.node, replace(flight.held, at_once=False)):
                _close(conn)
            return None
        if not self.give_back(flight.node, flight.held):
            _close(conn)
        return _verdict(flight.node, flight.settings, flight.version, answers)


@dataclass(eq=False)
class _Flight:
    """One probe on a kept connection, sent and not yet judged: what its reply has given so
    far (``reader``), and its end: the reply (``answer``), a failure, or neither by its
    ``deadline`` (monotonic, the read timeout after it was sent)."""

    node: NodeId
    held: _Kept
    settings: ProbeSettings
    version: str
    sent: float
    deadline: float
    reader: mysql_reply.ReplyReader
    answer: mysql_reply.Reply | None = None
    failed: bool = False
    ended: float = 0.0

    @classmethod
    def start(cls, node: NodeId, held: _Kept, settings: ProbeSettings) -> _Flight | None:
        """The probe's statements sent on ``held``; None when they could not be (the
        connection is closed or broken)."""
        conn = held.conn
        if conn._sock is None or conn.client_flag & CLIENT.DEPRECATE_EOF:
            return None
        version = _version(conn)
        body = bytes((COMMAND.COM_QUERY,)) + _at_once_sql(version).encode(conn.encoding)
        if not _send(conn._sock, len(body).to_bytes(3, "little") + b"\x00" + body):
            return None
        now = time.monotonic()
        reader = mysql_reply.ReplyReader(conn.encoding, only=_AT_ONCE_ONLY)
        return cls(node, held, settings, version, now, now + settings.read_timeout, reader)

    def read(self) -> bool:
        """What has arrived, fed to the reader (the socket is readable); True once ended."""
        try:
            data = _recv(self.held.conn._sock, _READ_SIZE)
        except OSError:
            data = b""
        if data is None:
            return False
        self.ended = time.monotonic()
        if not data:
            self.failed = True
            return True
        try:
            self.answer = self.reader.feed(data)
        except _PROTOCOL_ERRORS:
            self.failed = True
            return True
        return self.answer is not None

    def caught_up(self) -> bool:
        """Whether the whole reply has arrived by now (read without waiting), and the
        connection is in step again; False once it failed."""
        for _ in range(_CATCH_UP_READS):
            if self.read():
                break
        return self.answer is not None

    @property
    def timed_out(self) -> bool:
        """Neither a reply nor a failure by the end of the wait."""
        return self.answer is None and not self.failed

    def result(self, verdict: Verdict) -> ProbeResult:
        observation, metrics = verdict
        ended = self.ended if self.answer is not None else time.monotonic()
        return ProbeResult(self.node, observation, metrics, ended - self.sent)


def _send(sock: Any, data: bytes) -> bool:
    """``data`` sent on ``sock``; False if the connection is closed or broken. A probe's
    query fits the socket's send buffer: it goes straight to the OS socket that gevent's
    wraps (one system call), and only what does not fit waits with gevent's ``sendall`` (which
    asks the buffer size before every send: a second system call per probe)."""
    raw = _os_socket(sock)
    try:
        sent = raw.send(data) if raw is not None else 0
    except BlockingIOError:
        sent = 0
    except OSError:
        return False
    try:
        if sent < len(data):
            sock.sendall(data[sent:])
    except OSError:
        return False
    return True


def _recv(sock: Any, size: int) -> bytes | None:
    """What waits in ``sock`` (b"" once the peer closed it), read from the OS socket that
    gevent's wraps, without waiting: None when nothing has arrived (gevent's ``recv`` would
    wait for it instead, up to the socket's timeout)."""
    try:
        return (_os_socket(sock) or sock).recv(size)
    except BlockingIOError:
        return None


def _os_socket(sock: Any) -> _socket.socket | None:
    """The non-blocking OS socket a gevent socket wraps; None for a plain (or closed) one."""
    raw = getattr(sock, "_sock", None)  # a plain socket has no such attribute
    return raw if isinstance(raw, _socket.socket) else None


_LAST_READS = 3  # a reply in several pieces may need more than one
_CATCH_UP_READS = 4  # a late reply's pieces, each read up to _READ_SIZE


def _await(flights: Sequence[_Flight]) -> None:
    """Read the replies of ``flights`` as they arrive, until each has ended or the last
    deadline has passed. The event loop calls back when a socket is readable; this greenlet
    reads every ready one at each wake. A reply counts by when it arrived, not by when this
    greenlet got to it: past the deadline, what is already waiting in the sockets is read
    before a probe is called timed out (a poller short of CPU must not fail a node that
    answered)."""
    if not flights:
        return
    loop = gevent.get_hub().loop
    ready: list[_Flight] = []
    wake = gevent.event.Event()
    watchers: dict[_Flight, Any] = {}

    def readable(flight: _Flight) -> None:
        watchers[flight].stop()
        ready.append(flight)
        wake.set()

    for flight in flights:
        watchers[flight] = loop.io(flight.held.conn._sock.fileno(), 1)
        watchers[flight].start(readable, flight)
    waiting, last = len(flights), max(f.deadline for f in flights)

    def read_ready() -> None:
        nonlocal waiting
        wake.clear()
        batch, ready[:] = list(ready), []
        for flight in paced(batch):
            if flight.read():
                waiting -= 1
            else:
                watchers[flight].start(readable, flight)

    try:
        while waiting and wake.wait(max(0.0, last - time.monotonic())):
            read_ready()
        for _ in range(_LAST_READS):  # what arrived by now, while this greenlet waited for the CPU
            if not waiting:
                break
            gevent.idle()  # the event loop has polled the sockets
            if not ready:
                break
            read_ready()
    finally:
        for watcher in watchers.values():
            watcher.stop()
            watcher.close()


def _timed_out_verdict(flight: _Flight, check: bool = True) -> Verdict:
    """A kept connection that did not answer in time: as a probe on it would say, and
    whether the node can be reached at all (``check``: a TCP connect, the replicas' view
    needs it)."""
    text = error_text(_lost_connection(TimeoutError("timed out")))
    unreachable = check and not is_reachable(flight.node, flight.settings)
    observation = Observation.connect_error(flight.node, text, unreachable=unreachable)
    return observation, NodeMetrics(server_version=flight.version)


def _first_value(rows: Sequence[Mapping[str, Any]], column: str) -> Any:
    return rows[0].get(column) if rows else None


def _optional_int(value: Any) -> int | None:
    if type(value) is int:  # an integer column, as the reply typed it
        return value
    text = _text(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _optional_bool(value: Any) -> bool | None:
    number = _optional_int(value)
    if number is not None:
        return number != 0
    text = _text(value).upper()
    return {"ON": True, "OFF": False}.get(text)


# ---------------------------------------------------------------------------------------------
# checkpoints


class CheckpointError(ValueError):
    """A checkpoint written in a form that is not ``HOST:PORT``."""


@dataclass(frozen=True, order=True)
class Checkpoint:
    """Something every node's network path shares with the poller (a gateway, a switch's
    management port, another service): when the poller reaches none of them, the fault is on
    its side of the network and it abstains instead of failing every node (MPP's checkpoints,
    made per poller)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """``HOST:PORT`` or ``[IPv6]:PORT``; the port is required."""
        host, sep, port = text.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or any(c.isspace() or not c.isprintable() for c in host):
            raise CheckpointError(f"not a checkpoint (HOST:PORT): {text!r}")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise CheckpointError(f"bad port in checkpoint {text!r}: expected 1-65535")
        return cls(host, int(port))


def probe_checkpoint(checkpoint: Checkpoint, timeout: float) -> str | None:
    """None when a TCP connect to the checkpoint succeeds within ``timeout``, else why not."""
    try:
        with socket.create_connection((checkpoint.host, checkpoint.port), timeout=timeout):
            return None
    except OSError as exc:
        return one_line(exc.strerror or str(exc)) or type(exc).__name__


def checkpoints_down(failures: Mapping[Checkpoint, str | None]) -> str | None:
    """The abstention reason when every checkpoint failed; None when any answered or none are
    configured (then the poller trusts its view as it always did)."""
    if not failures or any(why is None for why in failures.values()):
        return None
    listed = ", ".join(f"{cp} ({why})" for cp, why in sorted(failures.items()))
    return f"checkpoints unreachable: {listed}"


# ---------------------------------------------------------------------------------------------
# fencing (the pool setting fence = read_only; what to set where is fencing.py's decision)

# MySQL 5.6 and MariaDB know no super_read_only: 1193 is "unknown system variable".
_UNKNOWN_VARIABLE = 1193


@dataclass(frozen=True)
class FenceAccount:
    """The account the pollers set read_only with (``--fence-user``): MariaDB needs
    ``READ_ONLY ADMIN`` (``SUPER`` before 10.5.2), MySQL 8 ``SYSTEM_VARIABLES_ADMIN`` (or
    ``SUPER``). The monitoring account needs none of these. The password is never in the repr."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class FenceReply:
    """What one attempt to set a node's read_only did: ``done``, else why not (one line) and
    whether the fencing account is at fault (refused, or missing the privilege) rather than
    the node (unreachable, a timeout)."""

    done: bool
    text: str = ""
    blames_account: bool = False


def read_only_statements(version: str, read_only: bool, lock_wait: int) -> tuple[str, ...]:
    """The statements that set read_only on a server of ``version``: ``super_read_only=ON``
    on MySQL (it implies read_only, and stops SUPER accounts too), ``read_only`` on MariaDB;
    ``read_only=OFF`` clears MySQL's super_read_only as well. ``lock_wait`` bounds the wait for
    the global read lock that setting read_only=ON takes (a long transaction holds it)."""
    value = "ON" if read_only else "OFF"
    setting = "read_only"
    if read_only and "mariadb" not in version.lower():
        setting = "super_read_only"
    return (f"SET SESSION lock_wait_timeout = {lock_wait}", f"SET GLOBAL {setting} = {value}")


def set_read_only(
    node: NodeId,
    account: FenceAccount,
    read_only: bool,
    connect_timeout: float,
    read_timeout: float,
) -> FenceReply:
    """Set ``node``'s read_only with the fencing account, bounded by the timeouts (as a probe
    is). Never raises: whatever goes wrong is the reply."""
    try:
        conn = open_connection(
            node, account.user, account.password, None, connect_timeout, read_timeout
        )
    except _NodeGone as gone:
        return FenceReply(False, f"cannot connect: {gone}")
    except _MonitorFault as fault:
        return FenceReply(False, f"fencing account refused: {fault}", blames_account=True)
    except Exception as exc:  # never raises (like probe_node); logged once
        log_unexpected(node, exc)
        return FenceReply(False, failure_text(exc))
    try:
        return _set_read_only(conn, read_only, max(1, math.ceil(read_timeout)))
    finally:
        _close(conn)


def _set_read_only(conn: Any, read_only: bool, lock_wait: int) -> FenceReply:
    version = server_version(_text(conn.get_server_info()))
    statements = read_only_statements(version, read_only, lock_wait)
    try:
        try:
            for sql in statements:
                _query(conn, sql)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) != _UNKNOWN_VARIABLE:
                raise
            _query(conn, statements[-1].replace("super_read_only", "read_only"))
    except _NodeGone as gone:
        return FenceReply(False, f"connection lost: {gone}")
    except _MonitorFault as fault:
        # Without the statement (``<sql>: <error>``): the same refusal whichever value was set,
        # so that it is said once, not again each time the wanted value changes.
        why = str(fault).partition(": ")[2] or str(fault)
        return FenceReply(False, f"fencing account lacks a privilege: {why}", True)
    except pymysql.err.MySQLError as exc:
        return FenceReply(False, f"{statements[-1]}: {error_text(exc)}")
    return FenceReply(True)
