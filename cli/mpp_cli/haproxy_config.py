"""``mpp-admin haproxy-config``: a pool's HAProxy section, as haproxy/haproxy.cfg ships it.

Pure: a pool and the agent's address in, configuration text out. The server options of each
role are declared once here (``ROLE_OPTIONS``, ``CHECK_OPTIONS``) and are exactly those of the
shipped haproxy/haproxy.cfg, which tests/integration/test_haproxy_config.py holds to this
module: the regular check (``inter 2s fall 3 rise 2``, ``option mysql-check``), ``on-marked-down
shutdown-sessions`` (a writer that fails loses its sessions), the agent-check asking mpp-agent
about each server, ``balance first`` for rw and ``balance leastconn`` with ``weight 100`` for
ro (the agent's N% weights are relative to it).

Times follow HAProxy's syntax with a unit (``us``, ``ms``, ``s``, ``m``, ``h``, ``d``); a bare
number is taken as **seconds** (``1`` is ``1s``, never HAProxy's bare milliseconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from mpp_agent.model import NodeState, PoolState
from mpp_cli.errors import CliError


class Role(StrEnum):
    RW = "rw"
    RO = "ro"


# What each role's backend says beyond its servers (haproxy/haproxy.cfg, listen mysql_rw/ro).
BALANCE = {
    # Only the ACTIVE node is usable (the others are DRAIN or DOWN); the order is a tie-break
    # for the moment HAProxy (re)starts and every server is UP until its first agent answer.
    Role.RW: "balance first",
    # A dynamic algorithm: agent weights other than 0%/100% need one.
    Role.RO: "balance leastconn",
}
CHECK_OPTIONS = "check inter 2s fall 3 rise 2 on-marked-down shutdown-sessions"
ROLE_OPTIONS = {Role.RW: "", Role.RO: "weight 100"}
DEFAULT_CHECK_USER = "haproxy_check"

_TIME = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?", re.IGNORECASE)
_UNIT_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MIN_AGENT_INTER_MS = 100
MAX_AGENT_INTER_MS = 3_600_000
_SERVER_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ADDR_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\[\]-]")
_BIND = re.compile(r"(\*|[A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")
_CHECK_USER = re.compile(r"[A-Za-z0-9_.-]{0,80}")


class HAProxyConfigError(CliError):
    """An option that would not give a working HAProxy section (exit 2, usage)."""


def haproxy_time(text: str, option: str = "--agent-inter") -> str:
    """An interval in HAProxy's syntax, canonical: ``1`` and ``1000ms`` are ``1s``."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise HAProxyConfigError(
            f"bad {option} {text!a}: a time such as 1s, 500ms or 2 (bare numbers are seconds)"
        )
    number, unit = match.groups()
    ms = float(number) * _UNIT_MS[(unit or "s").lower()]
    if ms != int(ms) or not MIN_AGENT_INTER_MS <= ms <= MAX_AGENT_INTER_MS:
        raise HAProxyConfigError(
            f"bad {option} {text!a}: between {MIN_AGENT_INTER_MS}ms and 1h, in whole ms"
        )
    return f"{int(ms) // 1000}s" if ms % 1000 == 0 else f"{int(ms)}ms"


@dataclass(frozen=True)
class AgentAddress:
    """Where HAProxy asks mpp-agent, and how often."""

    addr: str = "127.0.0.1"
    port: int = 9777
    inter: str = "1s"

    def __post_init__(self) -> None:
        if not self.addr or _ADDR_UNSAFE.search(self.addr):
            raise HAProxyConfigError(f"bad --agent-addr {self.addr!a}: a host name or address")


def check_bind(text: str) -> str:
    """A ``bind`` address HAProxy reads: ``host:port``, ``:port``, ``*:port``, ``[v6]:port``."""
    match = _BIND.fullmatch(text)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise HAProxyConfigError(f"bad --bind {text!a}: address:port, e.g. 0.0.0.0:6446")
    return text


def check_user_name(text: str) -> str:
    if not _CHECK_USER.fullmatch(text):
        raise HAProxyConfigError(f"bad --check-user {text!a}: a MySQL user name, or '' for none")
    return text


def server_name(pool: str, node: NodeState) -> str:
    return _SERVER_NAME_UNSAFE.sub("_", f"{pool}_{node.node.host}_{node.node.port}")


def default_server(role: Role, agent: AgentAddress) -> str:
    """The options every server of the role carries (the shipped ``default-server`` line)."""
    words = [
        CHECK_OPTIONS,
        f"agent-check agent-addr {agent.addr} agent-port {agent.port} agent-inter {agent.inter}",
        ROLE_OPTIONS[role],
    ]
    return " ".join(w for w in words if w)


def agent_send(pool: str, node: NodeState, role: Role) -> str:
    """The ``agent-send`` value: the request line of the agent protocol, quoted for HAProxy."""
    line = f"{pool} {node.node} {role.value}".replace("\\", "\\\\").replace('"', '\\"')
    return f'agent-send "{line}\\n"'


def section(
    pool: PoolState,
    role: Role,
    agent: AgentAddress,
    *,
    bind: str | None = None,
    check_user: str = DEFAULT_CHECK_USER,
) -> str:
    """A whole ``backend`` (or, with ``bind``, ``listen``) section for the pool in one role."""
    name = f"{pool.name}_{role.value}"
    lines = [
        f"# pool {pool.name}, role {role.value}: mpp-agent tells HAProxy which servers serve",
        f"listen {name}" if bind else f"backend {name}",
    ]
    if bind:
        lines.append(f"    bind {bind}")
    lines += ["    mode tcp", f"    {BALANCE[role]}"]
    if check_user:
        lines.append(f"    option mysql-check user {check_user} post-41")
    lines.append(f"    default-server {default_server(role, agent)}")
    lines += [
        f"    server {server_name(pool.name, n)} {n.node} {agent_send(pool.name, n, role)}"
        for n in pool.nodes
    ]
    return "\n".join(lines) + "\n"


def server_lines(pool: PoolState, role: Role, agent: AgentAddress) -> str:
    """Only the ``server`` lines, each with every option, to paste into an existing backend
    (which must then have the role's ``balance`` and, for checks, ``option mysql-check``)."""
    lines = [f"    # pool {pool.name}, role {role.value}: paste into the pool's backend section"]
    lines += [
        f"    server {server_name(pool.name, n)} {n.node} {default_server(role, agent)} "
        f"{agent_send(pool.name, n, role)}"
        for n in pool.nodes
    ]
    return "\n".join(lines) + "\n"
