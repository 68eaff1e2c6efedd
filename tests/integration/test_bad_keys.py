"""One bad pool stops only itself: a real mpp-poller and a real mpp-agent over three pools of
real MariaDB nodes, one pool's keys corrupted by hand (real Redis).

Each kind of corruption must cost the bad pool its rounds and nothing else: the other two
pools tick every round, the agent keeps answering them fresh (and the bad pool's last
decisions, marked stale), and the poller logs the bad key once, with what is wrong, and once
more when it is repaired.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import State
from mpp_agent.store import Store
from tests.daemons import PollerProcess, ask_agent
from tests.servers import MariaDBCluster, RedisServer, free_port, spawn, terminate, wait_until

pytestmark = pytest.mark.integration

POOLS = ("p1", "p2", "p3")
BAD = "p2"
INTERVAL = 1.0
WATCH_ROUNDS = 5


@dataclass
class Ticking:
    store: Store
    client: redis.Redis
    poller: PollerProcess
    agent_port: int
    node1: str

    def round_of(self, pool: str) -> int | None:
        """The pool's last committed round as stored, without decoding its document."""
        key = self.store.keys.pool(pool)
        if self.client.type(key) != b"hash":
            return None
        raw = self.client.hget(key, "round")
        return None if raw is None else int(raw)

    def ask(self, pool: str) -> str:
        return ask_agent(self.agent_port, f"{pool} {self.node1} rw")

    def log_lines(self, offset: int) -> list[str]:
        return self.poller.output()[offset:].splitlines()


@pytest.fixture(scope="module")
def ticking(
    mariadb_cluster: MariaDBCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ticking]:
    """Three pools (node1 PRIMARY, node2 SECONDARY), one poller, one agent: all steady."""
    server = RedisServer().start()
    poller = PollerProcess(server.url, "p-bad-keys")
    agent = None
    try:
        store = Store.from_url(server.url)
        node1, node2 = mariadb_cluster.node1.node_id, mariadb_cluster.node2.node_id
        for name in POOLS:
            text = f"name:{name};primary:{node1};secondary:{node2}"
            store.create_pool(parse_failoverpool(text, interval=INTERVAL))
        poller.start()
        agent_port = free_port()
        log = tmp_path_factory.mktemp("agent") / "agent.log"
        argv = ["mpp-agent", "--redis-url", server.url, "--listen", f"127.0.0.1:{agent_port}"]
        agent = spawn(argv, log)
        state = Ticking(store, server.client(), poller, agent_port, node1)
        wait_until(
            lambda: all(store.load_pool(n).nodes[0].state is State.ACTIVE for n in POOLS),
            30,
            "node1 ACTIVE in every pool",
        )
        wait_until(lambda: state.ask("p1").startswith("up ready"), 15, "the agent")
        yield state
    finally:
        terminate(agent)
        poller.cleanup()
        server.cleanup()


def set_string(client: redis.Redis, key: str) -> None:
    client.set(key, "set by hand")


def corrupt_doc(change: Callable[[dict], object]) -> Callable[[redis.Redis, str], None]:
    def corrupt(client: redis.Redis, key: str) -> None:
        doc = json.loads(client.hget(key, "doc") or b"{}")
        new = change(doc)
        client.hset(key, "doc", new if isinstance(new, str) else json.dumps(new))

    return corrupt


def twice(doc: dict) -> dict:
    return {**doc, "nodes": [*doc["nodes"], doc["nodes"][-1]]}


@pytest.mark.parametrize(
    ("which", "corrupt", "problem"),
    [
        pytest.param("metrics", set_string, "is a string, not a hash", id="metrics-string"),
        pytest.param("pool_pollers", set_string, "is a string, not a zset", id="pollers-string"),
        pytest.param("pool", set_string, "is a string, not a hash", id="pool-string"),
        pytest.param(
            "pool",
            corrupt_doc(lambda _: '{"schema": 1, "name": "p2", "nodes": [tru'),
            "unreadable pool document",
            id="garbage-json",
        ),
        pytest.param("pool", corrupt_doc(twice), "is listed twice", id="node-twice"),
    ],
)
def test_one_corrupted_key_costs_only_its_pool(
    ticking: Ticking,
    which: str,
    corrupt: Callable[[redis.Redis, str], None],
    problem: str,
) -> None:
    client, store = ticking.client, ticking.store
    key = getattr(store.keys, which)(BAD)
    wait_until(lambda: client.exists(key) == 1, 10, f"{key} written by the poller")
    saved = client.dump(key)
    offset = len(ticking.poller.output())
    corrupt(client, key)
    bad_round = ticking.round_of(BAD)
    seen: dict[str, list[int]] = {"p1": [], "p3": []}
    deadline = time.monotonic() + WATCH_ROUNDS * INTERVAL + 0.5
    while time.monotonic() < deadline:
        for name, rounds in seen.items():
            last = store.load_pool(name).last_round
            if not rounds or rounds[-1] != last:
                rounds.append(last)
        time.sleep(0.02)
    # The good pools ticked every round, one after the other, and answer fresh.
    for name, rounds in seen.items():
        assert len(rounds) >= WATCH_ROUNDS, (name, rounds)
        assert rounds == list(range(rounds[0], rounds[0] + len(rounds))), (name, rounds)
        assert ticking.ask(name).startswith("up ready #ACTIVE"), ticking.ask(name)
        assert "stale" not in ticking.ask(name)
    # The bad pool lost its rounds; the agent keeps its last decision, marked stale.
    assert ticking.round_of(BAD) == bad_round
    wait_until(lambda: ticking.ask(BAD).endswith("stale"), 10, f"{BAD} answered stale")
    assert ticking.ask(BAD).startswith("up ready #ACTIVE")
    # Logged once, with the key and what is wrong.
    errors = [line for line in ticking.log_lines(offset) if " ERROR " in line and key in line]
    assert len(errors) == 1, ticking.log_lines(offset)
    assert problem in errors[0]
    # Repaired: the pool ticks again, and the log says so once.
    client.restore(key, 0, saved, replace=True)
    before = store.load_pool(BAD).last_round
    wait_until(lambda: store.load_pool(BAD).last_round > before + 1, 10, f"{BAD} ticking again")
    lines = ticking.log_lines(offset)
    assert [line for line in lines if f"{key} is usable again" in line] != []
    assert len([line for line in lines if key in line and " ERROR " in line]) == 1
    wait_until(lambda: "stale" not in ticking.ask(BAD), 10, f"{BAD} answered fresh")
