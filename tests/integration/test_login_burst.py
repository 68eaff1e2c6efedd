"""More logins at once than a poller has login slots (pools just created, a poller just
started): real MariaDB nodes behind links that hold each server greeting, a real Redis, a real
``mpp-poller --max-logins 1``. The logins queue; what the queue costs is the poller's time, not
the nodes': no healthy node may be failed for it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import State
from mpp_agent.store import Store
from tests.daemons import PollerProcess
from tests.forwarder import Forwarder
from tests.servers import MariaDBCluster, wait_until

pytestmark = pytest.mark.integration

GREETING_DELAY = 0.4  # s: each login takes that long; a 2 s pool's probe bound is 0.9 s
NAMESPACE = "mpp-burst"


@pytest.fixture
def slow_links(mariadb_cluster: MariaDBCluster) -> Iterator[list[Forwarder]]:
    nodes = (mariadb_cluster.node1, mariadb_cluster.node2, mariadb_cluster.node3)
    links = [Forwarder(n.port, greeting_delay=GREETING_DELAY).start() for n in nodes]
    yield links
    for link in links:
        link.stop()


def is_steady(store: Store) -> bool:
    pool = store.load_pool("b1")
    states = [n.state for n in pool.nodes]
    return states == [State.ACTIVE, State.STANDBY, State.STANDBY] and all(
        n.r == 0 for n in pool.nodes
    )


def test_logins_queued_past_the_probe_bound_abstain_instead_of_failing_nodes(
    redis_url: str, slow_links: list[Forwarder]
) -> None:
    # Three logins of 0.4 s through one slot: the third waits about 0.8 s of its 0.9 s bound.
    store = Store.from_url(redis_url, NAMESPACE)
    primary, *secondaries = (link.address for link in slow_links)
    text = f"name:b1;primary:{primary};" + "".join(f"secondary:{s};" for s in secondaries)
    store.create_pool(replace(parse_failoverpool(text, interval=2.0), keep_connections=60.0))
    poller = PollerProcess(
        redis_url,
        "p-burst",
        namespace=NAMESPACE,
        extra=["--max-logins", "1"],
        probe_options=[],  # the defaults, fitted to the 2 s interval
    ).start()
    try:
        wait_until(lambda: "abstaining on" in poller.output(), 15, "an abstention")
        # The first round's logins are kept: the next rounds have fewer to make, and judge all.
        wait_until(lambda: is_steady(store), 20, "every node judged healthy", interval=0.2)
        log = poller.output()
        events = store.last_events("b1", 100)
    finally:
        poller.cleanup()
        store.remove_pool("b1")
    abstained = [line for line in log.splitlines() if "WARNING mpp.poller: abstaining on" in line]
    assert abstained and all("this poller is overloaded" in line for line in abstained), log
    assert any("the login waited" in line for line in abstained), log
    failures = [e for _, e in events if "timed out" in (e.get("message") or "")]
    assert not failures, failures  # no node counted the queue's time as its own
