"""One mpp-poller with default options serves pools of very different intervals at once, and
says so when it cannot serve one (real MariaDB, real Redis, a real mpp-poller)."""

from __future__ import annotations

import time

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import State
from mpp_agent.store import Store
from mpp_agent.timeouts import limits, min_interval
from tests.daemons import PollerProcess
from tests.servers import MariaDBCluster, wait_until

pytestmark = pytest.mark.integration


def test_default_options_serve_half_a_second_one_second_and_ten_seconds_at_once(
    redis_url, mariadb_cluster: MariaDBCluster
):
    store = Store.from_url(redis_url, "mpp")
    node1, node2, node3 = (n.node_id for n in mariadb_cluster.nodes)
    # node1 is in all three pools: it is probed once per cycle with the tightest timeouts.
    intervals = {"half": 0.5, "one": 1.0, "ten": 10.0, "tenth": 0.1}
    members = {
        "half": f"primary:{node1};secondary:{node2}",
        "one": f"primary:{node1};secondary:{node3}",
        "ten": f"primary:{node2};secondary:{node1}",
        "tenth": f"primary:{node3}",
    }
    for name, interval in intervals.items():
        store.create_pool(parse_failoverpool(f"name:{name};{members[name]}", interval=interval))
    poller = PollerProcess(redis_url, "p-default", probe_options=[]).start()
    try:
        wait_until(
            lambda: all(p.last_round >= 0 for p in store.load_pools(["half", "one", "ten"])),
            15,
            "a first round of every served pool",
        )
        first = {p.name: p for p in store.load_pools()}
        time.sleep(11)  # at least one round start of the 10 s pool
        assert poller.is_running
        info = next(p.info for p in store.pollers() if p.poller_id == "p-default")
        final = {p.name: p for p in store.load_pools()}
    finally:
        poller.stop()
    # Every round of every served pool committed, once: the version (bumped by each commit
    # only) advanced exactly as much as the round number.
    for name, least in (("half", 20), ("one", 10), ("ten", 1)):
        rounds = final[name].last_round - first[name].last_round
        assert first[name].last_round >= 0, first[name]
        assert rounds >= least, (name, first[name].last_round, final[name].last_round)
        assert final[name].version - first[name].version == rounds, name
    for name in ("half", "one", "ten"):  # bootstrapped, nothing failing
        assert final[name].nodes[0].state is State.ACTIVE, final[name]
        assert all(
            n.state is not State.UNKNOWN and not n.state.is_failed for n in final[name].nodes
        )
    for name in ("half", "one"):  # past the instatement round too
        assert all(n.requests == 0 for n in final[name].nodes), final[name]
    # The 0.1 s pool cannot be served: never silently skipped.
    assert final["tenth"].last_round == -1
    assert list(info["unserved"]) == ["tenth"]
    assert "interval 0.1s is shorter than 0.167s" in info["unserved"]["tenth"]
    assert info["min_interval"] == pytest.approx(min_interval(limits()), abs=1e-3)
    assert info["abstentions"] == {}
    said = [line for line in poller.output().splitlines() if "not polling pool tenth" in line]
    assert len(said) == 1 and " WARNING " in said[0], poller.output()
    assert "Traceback" not in poller.output()
    # Quiet steady state: an INFO cycle line only when something changed (the bootstraps,
    # the unserved pool), not one per cycle.
    cycles = [line for line in poller.output().splitlines() if "INFO mpp.poller: probed in" in line]
    assert 1 <= len(cycles) <= 12, "\n".join(cycles)
    poller.cleanup()
