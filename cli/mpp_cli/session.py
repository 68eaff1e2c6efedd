"""What every mpp-admin command shares: the global options, the store, the actor, and how a
node named on the command line is found in the pools.

The store is created on first use, so ``--help`` and usage errors never touch Redis. The Redis
password comes from the URL, ``MPP_REDIS_PASSWORD`` or ``--redis-password-file``; only
``redacted_url`` is ever printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import typer

from mpp_agent.model import NodeId, NodeState, PoolState
from mpp_agent.state import AdminResult, expire_overrides
from mpp_agent.store import BadKey, Store, StoreError, read_password, redact_url
from mpp_cli.errors import AmbiguousNode, CliError, UnknownNode

# The NODE argument and --pool option that every node command shares.
NodeArg = Annotated[str, typer.Argument(help="The node, host[:port] (port 3306 by default).")]
PoolOpt = Annotated[
    str | None,
    typer.Option(
        "--pool",
        "-p",
        help="The pool (needed when the node is in several pools).",
        show_default=False,
    ),
]


@dataclass
class Session:
    """The global options of one mpp-admin invocation."""

    redis_url: str
    namespace: str
    password_file: str | None = None
    _store: Store | None = field(default=None, repr=False)

    @property
    def redacted_url(self) -> str:
        return redact_url(self.redis_url)

    @property
    def store(self) -> Store:
        if self._store is None:
            try:
                password = read_password(self.password_file)
                self._store = Store.from_url(self.redis_url, self.namespace, password)
            except StoreError as exc:
                raise CliError(str(exc)) from None
        return self._store

    @property
    def actor(self) -> str:
        """Who the events of this invocation are attributed to: ``admin:<user>``."""
        return f"admin:{os.environ.get('USER') or os.getuid()}"


def note_if_no_pools(store: Store, found: int, command: str) -> None:
    """A namespace without pools is most often a wrong --namespace: say so on stderr, and
    where pools are (the command still succeeds: a new deployment has none yet)."""
    if found:
        return
    namespace = store.keys.namespace
    others = [n for n in store.namespaces_with_pools() if n != namespace]
    where = f"namespaces with pools: {', '.join(others)}" if others else "no namespace has any"
    typer.echo(f"mpp-admin {command}: namespace {namespace!r} has no pools ({where})", err=True)


def session_of(ctx: typer.Context) -> Session:
    obj = ctx.find_root().obj
    if not isinstance(obj, Session):  # pragma: no cover - the root callback always sets it
        raise RuntimeError("mpp-admin session missing")
    return obj


def parse_node(text: str) -> NodeId:
    """``host[:port]``, port 3306 by default; NodeIdError (exit 2) otherwise."""
    return NodeId.parse(text)


def locate(store: Store, node: NodeId, pool: str | None) -> tuple[PoolState, NodeState]:
    """The pool and node state of ``node``: in ``pool`` if given, else in the only pool that
    has it (a node in several pools needs ``--pool``)."""
    if pool is not None:
        found = store.load_pool(pool)
        member = found.find(node)
        if member is None:
            raise UnknownNode(f"Server {node} is not a member of pool {pool}.")
        return found, member
    pools = [p for p in store.load_pools() if p.has_node(node)]
    if not pools:
        raise UnknownNode(f"Server {node} is not a member of any pool.")
    if len(pools) > 1:
        names = ", ".join(p.name for p in pools)
        raise AmbiguousNode(f"Server {node} is in pools {names}: choose one with --pool.")
    member = pools[0].find(node)
    assert member is not None
    return pools[0], member


def readable_pools(store: Store, pool: str | None) -> tuple[list[PoolState], list[BadKey]]:
    """``pool`` (UnknownPool or BadKey if it cannot be had), or every pool: the readable ones
    and what makes the others unreadable."""
    if pool is not None:
        return [store.load_pool(pool)], []
    found = store.read_pools()
    return (
        [p for p in found.values() if isinstance(p, PoolState)],
        [p for p in found.values() if isinstance(p, BadKey)],
    )


def run_admin(
    store: Store, pool: str, change: Callable[[PoolState], AdminResult], actor: str
) -> AdminResult:
    """Apply an admin transition through the store's compare-and-set.

    The change is tried on the current state first: a refusal (AdminRefused) or a change with
    nothing to record (e.g. recovering a never-polled node) writes nothing at all."""
    preview = change(expire_overrides(store.load_pool(pool), store.server_time()))
    if not preview.events:
        return preview
    return store.admin(pool, change, actor)
