"""Pushing a changed answer into HAProxy at once: which servers carry it, which runtime API
commands apply it. Pure: the text HAProxy reports in, command lines out (the socket I/O is in
haproxy_runtime.py).

HAProxy learns each answer at its next agent-check, up to one ``agent-inter`` later. With
``mpp-agent --haproxy-socket PATH`` the agent also applies every answer that changes, the moment
it changes, through the runtime API. The agent-check stays the source of truth: a push that is
lost (HAProxy restarting, the socket busy) is corrected by the next check, and a push only does
what that check's reply would do.

Which servers carry (pool, node, role)
=====================================

HAProxy's runtime API does not report a server's ``agent-send`` string, so the agent finds the
servers from what ``show servers state`` does report:

* the **node**: the server's address and port (``srv_addr``:``srv_port``) is the node's
  ``host:port`` as the pool names it (the agent-send string names it the same way);
* the **agent**: the server's agent port (``srv_agent_port``) is this agent's port (servers
  checked by another agent, or by none, are left alone);
* the **role**: the backend's name ends in ``rw`` or ``ro`` (``mysql_rw``, ``app_pool_ro``: the
  names of haproxy/haproxy.cfg and of ``mpp-admin haproxy-config``); other backends are left to
  the agent-check;
* the **pool**: the one whose name the backend's starts with (``app_pool_rw``), else the only
  pool that has the node. A node of several pools in a backend named after none of them is
  left to the agent-check.

What a reply does, as runtime commands
=====================================

=================  ==========================================================================
reply words        commands (``<b>/<s>``: backend/server)
=================  ==========================================================================
``up ready``       ``set server <b>/<s> agent up``; ``set server <b>/<s> state ready``
``up ready N%``    the same, then ``set server <b>/<s> weight N%``
``up drain``       ``set server <b>/<s> agent up``; ``set server <b>/<s> state drain``
``down``           ``set server <b>/<s> agent down``
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mpp_agent.model import NodeId, NodeIdError, PoolState

Key = tuple[str, str, str]  # pool, node (host:port), role


@dataclass(frozen=True)
class Server:
    """One server line of ``show servers state``, what the push needs of it."""

    backend: str
    name: str
    node: str  # host:port, canonical
    agent_port: int | None


STATE_COLUMNS = ("be_name", "srv_name", "srv_addr", "srv_port", "srv_agent_port")


def parse_servers_state(text: str) -> list[Server]:
    """The servers of ``show servers state`` (version line, ``#`` header, one line each)."""
    header: list[str] = []
    servers = []
    for line in text.splitlines():
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            continue
        fields = line.split()
        if not header or len(fields) != len(header):
            continue
        row = dict(zip(header, fields, strict=True))
        if any(c not in row for c in STATE_COLUMNS):
            continue
        try:
            node = str(NodeId.parse(f"{bracketed(row['srv_addr'])}:{row['srv_port']}"))
        except NodeIdError:
            continue
        port = row["srv_agent_port"]
        agent_port = int(port) if port.isdigit() else None
        servers.append(Server(row["be_name"], row["srv_name"], node, agent_port))
    return servers


def bracketed(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


def role_of(backend: str) -> str | None:
    """``rw`` or ``ro`` from a backend's name (``mysql_rw``, ``app_pool-ro``), else None."""
    tail = backend.lower()[-2:]
    return tail if tail in ("rw", "ro") else None


def pool_of(backend: str, node: str, pools_of_node: Mapping[str, Iterable[str]]) -> str | None:
    """The pool a server of ``backend`` stands for: see the module docstring."""
    pools = sorted(pools_of_node.get(node, ()))
    named = [p for p in pools if backend.startswith(p)]
    if named:
        return max(named, key=len)
    return pools[0] if len(pools) == 1 else None


def pools_of_nodes(pools: Iterable[PoolState]) -> dict[str, set[str]]:
    """node (``host:port``) -> the names of the pools that have it."""
    out: dict[str, set[str]] = {}
    for pool in pools:
        for node in pool.nodes:
            out.setdefault(str(node.node), set()).add(pool.name)
    return out


def carried(
    server: Server, pools_of_node: Mapping[str, Iterable[str]]
) -> tuple[str, str | None] | None:
    """The pool whose node ``server`` carries and its role (None if the backend's name says
    none), by the rules of the module docstring; None if it carries no node of a pool."""
    pool = pool_of(server.backend, server.node, pools_of_node)
    return None if pool is None else (pool, role_of(server.backend))


def servers_for(
    servers: Iterable[Server], agent_port: int, pools_of_node: Mapping[str, Iterable[str]]
) -> dict[Key, list[Server]]:
    """Every (pool, node, role) that HAProxy's servers checked by the agent on ``agent_port``
    carry, and the servers carrying it."""
    found: dict[Key, list[Server]] = {}
    for server in servers:
        match = carried(server, pools_of_node) if server.agent_port == agent_port else None
        if match is not None and match[1] is not None:
            found.setdefault((match[0], server.node, match[1]), []).append(server)
    return found


def commands(server: Server, words: str) -> list[str]:
    """The runtime commands that do what the reply ``words`` does to ``server``."""
    target = f"{server.backend}/{server.name}"
    parts = words.split()
    if parts[:1] != ["up"]:
        return [f"set server {target} agent down"]
    out = [f"set server {target} agent up"]
    if "drain" in parts:
        out.append(f"set server {target} state drain")
    elif "ready" in parts:
        out.append(f"set server {target} state ready")
    out += [f"set server {target} weight {w}" for w in parts if w.endswith("%")]
    return out
