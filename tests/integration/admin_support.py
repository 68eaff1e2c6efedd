"""What the mpp-admin integration tests share: running the CLI, driving pools to real states
through the pure core and the store (as a poller would), and dumping a namespace to prove that
a failed command changed nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import redis
from typer.testing import CliRunner, Result

from mpp_agent import state
from mpp_agent.config import parse_failoverpool
from mpp_agent.model import NodeId, Observation, Outcome, PoolState
from mpp_agent.store import Store
from mpp_cli.app import app

POOL1 = "name:pool1;primary:10.0.0.1;secondary:10.0.0.2;secondary:10.0.0.3:3307"
P, S1, S2 = NodeId("10.0.0.1"), NodeId("10.0.0.2"), NodeId("10.0.0.3", 3307)


def mpp_admin(redis_url: str, *args: str, input: str | None = None) -> Result:
    """Run ``mpp-admin --redis-url <url> <args>`` in-process; stdout and stderr kept apart."""
    return CliRunner().invoke(app, ["--redis-url", redis_url, *args], input=input)


def store_for(redis_url: str) -> Store:
    return Store.from_url(redis_url)


def create(store: Store, failoverpool: str = POOL1, interval: float = 10.0) -> PoolState:
    return store.create_pool(parse_failoverpool(failoverpool, interval=interval))


def observe(
    pool: PoolState, failing: Mapping[NodeId, Outcome] | None = None
) -> dict[NodeId, Observation]:
    """Observations of every node: healthy unless named in ``failing``."""
    failing = failing or {}
    out = {}
    for n in pool.nodes:
        outcome = failing.get(n.node, Outcome.HEALTHY)
        if outcome is Outcome.CONNECT:
            out[n.node] = Observation.connect_error(n.node, "Can't connect (111)")
        elif outcome is Outcome.REQUEST:
            out[n.node] = Observation(Outcome.REQUEST, "Slave_IO_Running is No")
        else:
            out[n.node] = Observation.healthy()
    return out


def tick(
    store: Store,
    name: str,
    failing: Mapping[NodeId, Outcome] | None = None,
    times: int = 1,
    poller: str = "poller-test",
) -> PoolState:
    """Commit ``times`` ticks of the pool, as a poller does (next round each time)."""
    for _ in range(times):
        pool = store.load_pool(name)
        now = store.server_time()
        result = state.tick(pool, observe(pool, failing), now)
        ok, reason = store.commit(pool, result.pool, result.events, poller, pool.last_round + 1)
        assert ok, reason
    return store.load_pool(name)


def bootstrap(store: Store, failoverpool: str = POOL1) -> PoolState:
    """A pool whose primary is ACTIVE and secondaries STANDBY (the 2nd tick of MPP's bootstrap)."""
    name = create(store, failoverpool).name
    return tick(store, name, times=3)


def failover(store: Store, name: str = "pool1") -> PoolState:
    """Kill the primary (connect errors) until the first secondary has taken over."""
    return tick(store, name, {P: Outcome.CONNECT}, times=4)


def dump(client: redis.Redis, namespace: str = "mpp") -> dict[bytes, tuple[bytes, bool]]:
    """Every key of the namespace with its serialized value and TTL: equal dumps, equal state."""
    out: dict[bytes, tuple[bytes, bool]] = {}
    for key in client.scan_iter(match=f"{namespace}:*"):
        out[key] = (client.dump(key), client.pttl(key) > 0)
    return out


def client_for(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def lines(text: str) -> list[str]:
    return text.splitlines()


def nodes_by_name(pool: PoolState) -> dict[str, str]:
    return {str(n.node): n.state.value for n in pool.nodes}


def active_of(pool: PoolState) -> list[str]:
    return [str(n.node) for n in pool.active_nodes]


def all_events(store: Store, names: Iterable[str]) -> list[dict[str, object]]:
    return [e for name in names for _, e in store.events(name, 100_000)]
