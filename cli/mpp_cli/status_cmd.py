"""``mpp-admin status [POOL] [--haproxy-socket PATH ...] [--json]``: everything an operator
checks during an incident, in one view.

Per node: its state, status, R, replication (lag, read_only, received and applied positions,
IO/SQL threads), its last probe (latency, poller, error) and which pollers observed it in the
pool's last committed round; and, for each HAProxy stats socket given, what HAProxy currently
says of every server carrying the node. Data first (``status_document``: the node documents of
``list --json``, views.py's, with the status fields added), rendered once: ``status_text`` reads
that same document, so the text and ``--json`` cannot disagree.

An HAProxy socket that cannot be used (missing, refused, not the runtime API, below level
admin) is said on stderr after everything else was shown, and the command exits 8.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import typer

from mpp_agent import haproxy_runtime
from mpp_agent.haproxy_push import pools_of_nodes
from mpp_agent.haproxy_status import ServerStatus, server_statuses
from mpp_agent.model import NodeState, PoolState
from mpp_agent.store import BadKey, Reports
from mpp_cli.errors import ExitCode, cli_errors, report_unusable
from mpp_cli.render import age, iso_time, pool_json, table, to_json
from mpp_cli.seen import check_versions
from mpp_cli.session import note_if_no_pools, readable_pools, session_of

REPLICATION_FIELDS = ("source", "io_running", "sql_running", "received", "applied", "binlog")


@dataclass
class SocketReport:
    """One ``--haproxy-socket``: its level and servers, or why it could not be used."""

    path: str
    level: str | None = None
    error: str | None = None
    servers: list[ServerStatus] = field(default_factory=list)


def socket_problem(path: str, exc: OSError) -> str:
    """Why a stats socket could not be used, in words that say what to check."""
    if isinstance(exc, haproxy_runtime.RuntimeApiError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such socket (see the 'stats socket' line of HAProxy's global section)"
    if isinstance(exc, ConnectionRefusedError):
        return f"{path}: connection refused (is HAProxy running?)"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied (run mpp-admin as a user that may open the socket)"
    if isinstance(exc, TimeoutError):
        return f"{path}: no answer within {haproxy_runtime.TIMEOUT:g}s"
    return f"{path}: {exc.strerror or exc}"


def read_socket(path: str, pools: Sequence[PoolState]) -> SocketReport:
    """What the HAProxy at ``path`` says of the servers carrying the pools' nodes."""
    try:
        level = haproxy_runtime.cli_level(path)
        if level != "admin":
            why = (
                f"{path} is a level {level} socket: give HAProxy's stats socket at level admin "
                "(the one mpp-agent --haproxy-socket uses)"
            )
            return SocketReport(path, level, why)
        state = haproxy_runtime.servers_state(path)
        stat = haproxy_runtime.show_stat(path)
    except OSError as exc:
        return SocketReport(path, error=socket_problem(path, exc))
    return SocketReport(path, level, servers=server_statuses(state, stat, pools_of_nodes(pools)))


# --------------------------------------------------------------------------- the document


def status_document(
    pools: Sequence[PoolState],
    now: float,
    metrics: Mapping[str, Mapping[str, Mapping[str, Any]]],
    rounds: Mapping[str, Reports],
    alive: Mapping[str, bool],
    sockets: Sequence[SocketReport],
    backwards: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The one document of ``status``: ``{"now", "pools", "haproxy"}`` (docs/admin.md)."""
    backwards = backwards or {}
    return {
        "now": iso_time(now),
        "pools": [
            pool_status_json(
                pool,
                now,
                metrics.get(pool.name, {}),
                rounds.get(pool.name, {}),
                alive,
                sockets,
                backwards.get(pool.name),
            )
            for pool in pools
        ],
        "haproxy": [
            {"socket": s.path, "level": s.level, "error": s.error, "servers": len(s.servers)}
            for s in sockets
        ],
    }


def pool_status_json(
    pool: PoolState,
    now: float,
    metrics: Mapping[str, Mapping[str, Any]],
    reports: Reports,
    alive: Mapping[str, bool],
    sockets: Sequence[SocketReport],
    went_backwards: str | None,
) -> dict[str, Any]:
    """A pool document of ``list --json`` with its last round, who observed it, and each
    node's status fields."""
    document = pool_json(pool, now, metrics, went_backwards)
    document["last_round"] = pool.last_round if pool.last_round >= 0 else None
    document["last_round_at"] = (
        iso_time(pool.last_round * pool.interval) if pool.last_round >= 0 else None
    )
    document["observers"] = [
        {"poller": poller, "alive": alive.get(poller, False)} for poller in sorted(reports)
    ]
    document["nodes"] = [
        {
            **shown,
            **node_status_json(pool.name, node, metrics.get(str(node.node), {}), reports, alive),
            "haproxy": [
                server_json(s.path, server)
                for s in sockets
                for server in s.servers
                if (server.pool, server.node) == (pool.name, str(node.node))
            ],
        }
        for shown, node in zip(document["nodes"], pool.nodes, strict=True)
    ]
    return document


def node_status_json(
    pool: str,
    node: NodeState,
    metrics: Mapping[str, Any],
    reports: Reports,
    alive: Mapping[str, bool],
) -> dict[str, Any]:
    """``replication`` (as the last judged round read it), ``probe`` (the last one recorded,
    by any poller) and ``observers`` (the pollers' verdicts in the last committed round)."""
    details = None
    if node.replication is not None:
        found = node.replication
        details = {key: getattr(found, key) or None for key in REPLICATION_FIELDS}
        details["unapplied"] = found.unapplied
    observers = []
    for poller, seen in sorted(reports.items()):
        verdict = seen.get(node.node)
        if verdict is not None:
            observers.append(
                {
                    "poller": poller,
                    "alive": alive.get(poller, False),
                    "outcome": verdict.outcome.value,
                    "message": verdict.message or None,
                }
            )
    return {"replication": details, "probe": probe_json(metrics), "observers": observers}


def probe_json(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """The node's last recorded probe: ``{"poller", "at", "latency", "outcome", "error"}``
    (``latency`` in seconds; ``error`` the failure or abstention text, else null)."""
    if not metrics:
        return None
    at = metrics.get("at")
    return {
        "poller": metrics.get("poller"),
        "at": iso_time(at) if isinstance(at, int | float) else None,
        "latency": metrics.get("latency"),
        "outcome": metrics.get("outcome"),
        "error": metrics.get("error") or metrics.get("abstained") or None,
    }


def server_json(path: str, server: ServerStatus) -> dict[str, Any]:
    """An HAProxy server carrying the node: ``{"socket", "backend", "server", "role",
    "status", "weight", "sessions", "check_status", "agent_status", "agent_description",
    "agent_reply"}`` (pool and node are those of the node it is listed under)."""
    shown = asdict(server)
    del shown["pool"], shown["node"]
    return {"socket": path, **{k: (v if v != "" else None) for k, v in shown.items()}}


# --------------------------------------------------------------------------- text


def status_text(document: Mapping[str, Any], now: float) -> str:
    """The operator's view of ``status_document``: per pool one line, a table of its nodes
    (with a line under a node for its last error), and a table of its HAProxy servers."""
    if not document["pools"]:
        return "No pools.\n"
    blocks = [pool_text(pool, now, bool(document["haproxy"])) for pool in document["pools"]]
    return "\n".join(blocks)


def pool_text(pool: Mapping[str, Any], now: float, with_haproxy: bool) -> str:
    observers = ", ".join(
        o["poller"] + ("" if o["alive"] else " (expired)") for o in pool["observers"]
    )
    round_at = pool["last_round_at"]
    when = "never ticked" if round_at is None else f"round {pool['last_round']}"
    if pool["last_round"] is not None:
        when += f" ({age(now - pool['last_round'] * pool['interval'])} ago)"
    lines = [
        f"{pool['name']}  status {pool['status']}  writer {pool['active'] or '-'}  {when}  "
        f"observed by {observers or 'no poller'}"
    ]
    if pool["went_backwards"]:
        lines.append(f"  ! {pool['went_backwards']}")
    if pool["degraded"]:
        lines.append(f"  D degraded: {pool['degraded']}")
    rows = [NODE_HEADER] + [node_row(n) for n in pool["nodes"]]
    rendered = table(rows).splitlines()
    lines.append(f"  {rendered[0]}")
    for node, row in zip(pool["nodes"], rendered[1:], strict=True):
        lines.append(f"  {row}")
        lines += [f"      {note}" for note in node_notes(node)]
    servers = [(n["node"], s) for n in pool["nodes"] for s in n["haproxy"]]
    if with_haproxy:
        lines += haproxy_lines(servers)
    return "\n".join(lines) + "\n"


NODE_HEADER = (
    "NODE", "STATE", "STATUS", "R", "ANSWERS", "LAG", "RO", "IO/SQL", "RECEIVED", "APPLIED",
    "PROBE", "OBSERVED BY",
)  # fmt: skip


def node_row(node: Mapping[str, Any]) -> tuple[str, ...]:
    rep = node["replication"] or {}
    probe = node["probe"]
    threads = "-"
    if rep.get("io_running") or rep.get("sql_running"):
        threads = f"{rep.get('io_running') or '-'}/{rep.get('sql_running') or '-'}"
    return (
        node["node"],
        node["state"],
        node["status"],
        "-" if node["requests"] is None else str(node["requests"]),
        answers(node["route"]),
        "-" if node["lag"] is None else f"{node['lag']:g}s",
        {True: "yes", False: "no", None: "-"}[node["read_only"]],
        threads,
        rep.get("received") or "-",
        rep.get("applied") or "-",
        "-" if probe is None else probe_text(probe),
        ", ".join(f"{o['poller']} {verdict(o)}" for o in node["observers"]) or "-",
    )


def answers(route: Mapping[str, Any]) -> str:
    """What the agent answers for the node: ``rw`` (takes writes), ``ro 75%``, or ``-``."""
    parts = ["rw"] if route["takes_writes"] else []
    if route["takes_reads"]:
        parts.append(f"ro {route['weight']}%")
    return ", ".join(parts) or "-"


def probe_text(probe: Mapping[str, Any]) -> str:
    latency = probe["latency"]
    took = f"{latency * 1000:.1f}ms" if isinstance(latency, int | float) else "?"
    return f"{took} by {probe['poller']}"


def verdict(observer: Mapping[str, Any]) -> str:
    return {"healthy": "ok", "abstain": "abstained"}.get(observer["outcome"], "failing")


def node_notes(node: Mapping[str, Any]) -> list[str]:
    """Lines under a node: its last probe's error, each poller's when they differ, its
    monitor note and override."""
    errors: dict[str, list[str]] = {}  # message -> the pollers that reported it
    for observer in node["observers"]:
        if observer["outcome"] != "healthy" and observer["message"]:
            errors.setdefault(observer["message"], []).append(observer["poller"])
    notes = []
    probe = node["probe"]
    if probe is not None and probe["error"] and probe["error"] not in errors:
        notes.append(f"last probe ({probe['poller']}): {probe['error']}")
    notes += [f"{', '.join(pollers)}: {message}" for message, pollers in errors.items()]
    if node["override"]:
        o = node["override"]
        notes.append(f"override {o['state']} by {o['actor']}: {o['reason']}")
    return notes


HAPROXY_HEADER = (
    "HAPROXY", "SERVER", "ROLE", "NODE", "STATUS", "WEIGHT", "SESSIONS", "CHECK", "AGENT",
    "AGENT SAYS",
)  # fmt: skip


def haproxy_lines(servers: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    if not servers:
        return ["  HAProxy: no server carries a node of this pool"]
    rows = [HAPROXY_HEADER] + [
        (
            s["socket"],
            f"{s['backend']}/{s['server']}",
            s["role"] or "-",
            node,
            s["status"] or "-",
            "-" if s["weight"] is None else str(s["weight"]),
            "-" if s["sessions"] is None else str(s["sessions"]),
            s["check_status"] or "-",
            s["agent_status"] or "-",
            s["agent_reply"] or s["agent_description"] or "-",
        )
        for node, s in servers
    ]
    return [f"  {line}" for line in table(rows).splitlines()]


# --------------------------------------------------------------------------- the command


@cli_errors("status")
def status(
    ctx: typer.Context,
    pool: Annotated[
        str | None, typer.Argument(help="Only this pool (default: every pool).", show_default=False)
    ] = None,
    haproxy_socket: Annotated[
        list[str] | None,
        typer.Option(
            "--haproxy-socket",
            help="HAProxy stats socket (level admin) to show what HAProxy says of each "
            "server carrying a node (repeatable).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show each node's state, replication, last probe and observers, and what HAProxy says.

    Per node: state, status, R, what the agent answers, lag, read_only, IO/SQL threads,
    received and applied positions, the last probe (latency, poller, error) and the pollers'
    verdicts in the pool's last round; with --haproxy-socket, each HAProxy server carrying
    it: status, weight, current sessions, check and agent-check status. Exit 8 when a socket
    cannot be used (after showing the rest).
    """
    session = session_of(ctx)
    store = session.store
    pools, unusable = readable_pools(store, pool)
    note_if_no_pools(store, len(pools) + len(unusable), "status")
    now = store.server_time()
    metrics = store.read_metrics([p.name for p in pools])
    rounds = store.read_rounds([(p.name, p.last_round) for p in pools])
    alive = {p.poller_id: p.alive for p in store.pollers()}
    sockets = [read_socket(path, pools) for path in dict.fromkeys(haproxy_socket or [])]
    document = status_document(
        pools,
        now,
        {n: m for n, m in metrics.items() if not isinstance(m, BadKey)},
        {n: r for n, r in rounds.items() if not isinstance(r, BadKey)},
        alive,
        sockets,
        check_versions(session.redacted_url, session.namespace, pools),
    )
    if json_output:
        typer.echo(to_json(document))
    else:
        typer.echo(status_text(document, now), nl=False)
    shown_only = [x for x in (*metrics.values(), *rounds.values()) if isinstance(x, BadKey)]
    report_unusable("status", shown_only, fatal=False)
    for report in sockets:
        if report.error is not None:
            typer.echo(f"mpp-admin status: {report.error}", err=True)
    report_unusable("status", unusable)
    if any(report.error is not None for report in sockets):
        raise typer.Exit(ExitCode.HAPROXY)
