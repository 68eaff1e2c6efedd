"""The agent's HTTP API: which path asks for what, what a check answers, and the OpenAPI 3
document that describes it all (served at ``/v1/openapi.json``).

Pure: no I/O. The agent (agent_server.py) reads its in-memory snapshot and serves what this
module decides, so an HTTP check and an agent-check of the same node can never disagree: both
are the reply line of ``agent_protocol`` for the same (pool, node, role).

=========================================  ===================================================
path                                       answer
=========================================  ===================================================
``GET /v1/pools``                          ``{"pools": [...]}``, the document of
                                           ``mpp-admin list --json``
``GET /v1/pools/<pool>``                   one pool of it; 404 if the agent does not know it
``GET|HEAD /v1/check/<pool>/<node>``       200 when the node takes that traffic (``role=rw``:
``?role=rw|ro``                            writes, the default; ``ro``: reads), else 503; the
                                           body is the agent-check reply line; 400 for a bad
                                           pool, node or role
``GET /v1/openapi.json``                   this API as OpenAPI 3
=========================================  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from mpp_agent import __version__

V1 = "/v1/"


@dataclass(frozen=True)
class Route:
    """What a request path asks for: ``kind`` is pools, pool, check, openapi or unknown."""

    kind: str
    pool: str = ""
    node: str = ""
    role: str = "rw"


def route_path(path: str, query: str) -> Route:
    """The request behind ``PATH_INFO`` and ``QUERY_STRING`` (percent-decoded per segment)."""
    if not path.startswith(V1):
        return Route("unknown")
    parts = [unquote(p) for p in path[len(V1) :].split("/")]
    if parts == ["pools"]:
        return Route("pools")
    if parts == ["openapi.json"]:
        return Route("openapi")
    if len(parts) == 2 and parts[0] == "pools" and parts[1]:
        return Route("pool", pool=parts[1])
    if len(parts) == 3 and parts[0] == "check" and parts[1] and parts[2]:
        roles = parse_qs(query, keep_blank_values=True).get("role", ["rw"])
        return Route("check", pool=parts[1], node=parts[2], role=roles[-1])
    return Route("unknown")


def check_line(route: Route) -> bytes | None:
    """The agent-check request line that the HTTP check stands for; None if a field holds
    whitespace (it would split into other fields)."""
    fields = (route.pool, route.node, route.role)
    if any(not f or any(c.isspace() for c in f) for f in fields):
        return None
    return " ".join(fields).encode() + b"\n"


def takes_traffic(reply: bytes) -> bool:
    """Whether an agent-check reply lets the node take its role's traffic: ``up ready``
    (``rw``: it takes writes; ``ro``: it takes reads, ``up ready N%``)."""
    return reply.startswith(b"up ready")


# --------------------------------------------------------------------------- OpenAPI

_NULLABLE_STRING = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "description": "ISO 8601, UTC"}

_ROUTE = {
    "type": "object",
    "description": "What the node answers: the routing decision.",
    "required": ["state", "takes_writes", "takes_reads", "weight", "reason"],
    "properties": {
        "state": {"type": "string"},
        "takes_writes": {"type": "boolean"},
        "takes_reads": {"type": "boolean"},
        "weight": {"type": "integer", "minimum": 0, "maximum": 100},
        "reason": {"type": "string"},
    },
}

_OVERRIDE = {
    "type": ["object", "null"],
    "required": ["state", "status", "reason", "actor", "set_at", "expires_at"],
    "properties": {
        "state": {"type": "string"},
        "status": _NULLABLE_STRING,
        "reason": {"type": "string"},
        "actor": {"type": "string"},
        "set_at": _TIME,
        "expires_at": _TIME,
    },
}

_NODE = {
    "type": "object",
    "required": [
        "node", "type", "requests", "level", "status", "state", "message",
        "last_request_time", "override", "lag", "monitor_note", "replicas_view", "route",
    ],
    "properties": {
        "node": {"type": "string", "description": "host:port"},
        "type": {"type": "string", "enum": ["PRIMARY", "SECONDARY"]},
        "requests": {"type": ["integer", "null"]},
        "level": {"type": "string"},
        "status": {"type": "string"},
        "state": {"type": "string"},
        "message": _NULLABLE_STRING,
        "last_request_time": _TIME,
        "override": {"$ref": "#/components/schemas/Override"},
        "lag": {"type": ["number", "null"], "description": "replication lag, seconds"},
        "monitor_note": _NULLABLE_STRING,
        "replicas_view": {
            "type": ["string", "null"],
            "description": "set while the pollers cannot reach this ACTIVE but its replicas "
            "still receive from it (no failover meanwhile)",
        },
        "route": {"$ref": "#/components/schemas/Route"},
        "read_only": {"type": ["boolean", "null"]},
        "caught_up": {
            "type": ["boolean", "null"],
            "description": "everything the node received is applied",
        },
        "behind": {
            "type": ["integer", "null"],
            "description": "transactions it lacks of the ACTIVE's last known position",
        },
    },
}  # fmt: skip

_POOL = {
    "type": "object",
    "required": ["name", "status", "interval", "max_requests", "max_lag", "active", "nodes"],
    "properties": {
        "name": {"type": "string"},
        "status": {"type": "string"},
        "interval": {"type": "number"},
        "max_requests": {"type": "integer"},
        "max_lag": {"type": "number"},
        "stale_writer": {"type": "string", "enum": ["keep", "drain"]},
        "catchup_timeout": {"type": "number"},
        "max_failover_lag": {"type": "number", "description": "0: off"},
        "fence": {
            "type": "string",
            "enum": ["off", "read_only"],
            "description": "read_only: the pollers keep every node but the writer read_only",
        },
        "observers": {"type": "integer", "description": "pollers probing the pool; 0: all"},
        "keep_connections": {
            "type": "number",
            "description": "seconds a poller keeps its connection to a node; 0: a login per probe",
        },
        "degraded": {
            **_NULLABLE_STRING,
            "description": "why no node could take over if the ACTIVE failed now",
        },
        "incarnation": {"type": "string"},
        "failback": {"type": "string", "enum": ["auto", "manual"]},
        "paused": {
            "type": ["object", "null"],
            "description": "the pause while it holds: reason, set_by, set_at, until, would",
        },
        "switchover": {
            "type": ["object", "null"],
            "description": "the switchover in progress: source, target, started_at, deadline, "
            "position, requested_by",
        },
        "version": {"type": "integer"},
        "active": {**_NULLABLE_STRING, "description": "the node taking writes"},
        "went_backwards": {
            **_NULLABLE_STRING,
            "description": "set when Redis holds an older state than one already served",
        },
        "nodes": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
    },
}

_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


_POOL_NAME = {
    "name": "pool",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}

_CHECK_PARAMETERS = [
    _POOL_NAME,
    {
        "name": "node",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "host[:port], the port defaulting to 3306",
    },
    {
        "name": "role",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["rw", "ro"], "default": "rw"},
    },
]

_CHECK_RESPONSES = {
    "200": {"description": "The node takes this traffic; the agent-check reply.", "content": _TEXT},
    "400": {"description": "Bad pool name, node or role.", "content": _TEXT},
    "503": {
        "description": "The node does not take this traffic (or is unknown, or the agent has "
        "no snapshot yet); the agent-check reply.",
        "content": _TEXT,
    },
}

_HEAD_RESPONSES = {k: {"description": v["description"]} for k, v in _CHECK_RESPONSES.items()}

_POOLS = {
    "type": "object",
    "required": ["pools"],
    "properties": {"pools": {"type": "array", "items": {"$ref": "#/components/schemas/Pool"}}},
}

_HEALTH_RESPONSES = {
    "200": {"description": "Yes.", "content": _TEXT},
    "503": {"description": "No; the body says why.", "content": _TEXT},
}

_NO_SNAPSHOT = {"description": "No snapshot from Redis yet.", "content": _TEXT}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "mpp-agent HTTP API",
        "version": __version__,
        "description": "Pools as the agent sees them (its in-memory snapshot of Redis) and HTTP "
        "checks for load balancers, answered exactly like HAProxy's agent-check.",
    },
    "paths": {
        "/v1/pools": {
            "get": {
                "summary": "Every pool (the document of mpp-admin list --json)",
                "operationId": "listPools",
                "responses": {
                    "200": {"description": "The pools.", "content": _json("Pools")},
                    "503": _NO_SNAPSHOT,
                },
            }
        },
        "/v1/pools/{pool}": {
            "get": {
                "summary": "One pool",
                "operationId": "getPool",
                "parameters": [_POOL_NAME],
                "responses": {
                    "200": {"description": "The pool.", "content": _json("Pool")},
                    "404": {"description": "No such pool.", "content": _TEXT},
                    "503": _NO_SNAPSHOT,
                },
            }
        },
        "/v1/check/{pool}/{node}": {
            "get": {
                "summary": "HTTP check: 200 when the node takes this role's traffic",
                "operationId": "check",
                "parameters": _CHECK_PARAMETERS,
                "responses": _CHECK_RESPONSES,
            },
            "head": {
                "summary": "HTTP check, status only",
                "operationId": "checkHead",
                "parameters": _CHECK_PARAMETERS,
                "responses": _HEAD_RESPONSES,
            },
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: serving from a fresh snapshot",
                "operationId": "healthz",
                "responses": _HEALTH_RESPONSES,
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: a pool with fresh state, every loop running",
                "operationId": "readyz",
                "responses": _HEALTH_RESPONSES,
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {"200": {"description": "Metrics.", "content": _TEXT}},
            }
        },
    },
    "components": {
        "schemas": {
            "Pools": _POOLS,
            "Pool": _POOL,
            "Node": _NODE,
            "Override": _OVERRIDE,
            "Route": _ROUTE,
        }
    },
}  # fmt: skip
