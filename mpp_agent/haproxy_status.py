"""What HAProxy currently says of the servers that carry the pools' nodes (``mpp-admin status
--haproxy-socket``). Pure: the text of ``show servers state`` and ``show stat`` in, one record
per server out (the socket I/O is in haproxy_runtime.py).

The servers are matched to (pool, node, role) as the push matches them (haproxy_push.py): the
node by the server's address and port, the pool by the backend's name (or the only pool that has
the node), the role by the backend's name ending in ``rw`` or ``ro`` (None otherwise). Unlike
the push, a server is shown whichever agent checks it, or none.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mpp_agent.haproxy_push import carried, parse_servers_state


@dataclass(frozen=True)
class ServerStatus:
    """One HAProxy server carrying a node, as ``show stat`` reports it."""

    pool: str
    node: str
    role: str | None
    backend: str
    server: str
    status: str  # UP, DOWN, DRAIN, MAINT, NOLB, ... (HAProxy's "UP 1/3" as it says it)
    weight: int | None
    sessions: int | None  # current sessions (scur)
    check_status: str  # e.g. L4OK, L7OK, L4CON; "" when the server has no check
    agent_status: str  # the agent-check's, e.g. L7OK; "" when it has none
    agent_description: str  # HAProxy's words for agent_status, e.g. "Layer7 check passed"
    agent_reply: str  # what it took from the last agent reply, e.g. "via agent : up (ACTIVE)"


def parse_stat(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """``show stat`` CSV: (proxy, server) -> its columns, for server rows only."""
    lines = [line for line in text.lstrip("# ").splitlines() if line.strip()]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for row in csv.DictReader(lines):
        proxy, name = row.get("pxname"), row.get("svname")
        if proxy and name and name not in ("FRONTEND", "BACKEND"):
            rows[(proxy, name)] = {k: v or "" for k, v in row.items() if k}
    return rows


def number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def server_statuses(
    servers_state: str, stat: str, pools_of_node: Mapping[str, Iterable[str]]
) -> list[ServerStatus]:
    """Every server carrying a node of a pool, with what ``show stat`` says of it, in
    HAProxy's order."""
    stats = parse_stat(stat)
    out = []
    for server in parse_servers_state(servers_state):
        match = carried(server, pools_of_node)
        row = stats.get((server.backend, server.name))
        if match is None or row is None:
            continue
        out.append(
            ServerStatus(
                pool=match[0],
                node=server.node,
                role=match[1],
                backend=server.backend,
                server=server.name,
                status=row.get("status", ""),
                weight=number(row.get("weight", "")),
                sessions=number(row.get("scur", "")),
                check_status=row.get("check_status", ""),
                agent_status=row.get("agent_status", ""),
                agent_description=row.get("agent_desc", ""),
                agent_reply=row.get("last_agt", ""),
            )
        )
    return out
