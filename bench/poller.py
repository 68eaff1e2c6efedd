"""Benchmark of one mpp-poller cycle: wall time, CPU time and Redis round trips per cycle.

One poller (in this process, gevent-patched like the real one), a real Redis, and real MariaDB
servers. Many "nodes" are aliases of one server on 127.0.0.x addresses (the server listens on
all of them), so N nodes cost N real connections, handshakes and queries per cycle. Rows:

* 1 pool of N nodes for N = 10, 100, 500, then 500 nodes split into 10 and 50 pools: round
  trips per cycle should stay flat as nodes grow and grow with pools;
* 500 nodes of which one is a separate server that is SIGSTOPped: the cycle should take about
  the probe timeout, no more;
* 500 nodes in 50 pools again, with ``keep_connections`` 60 (probes on kept connections) and
  with one of them SIGSTOPped: side by side with the login-per-probe rows.

Run: ``.venv/bin/python bench/poller.py`` (needs mariadbd and redis-server; about a minute).
Target (bench/README.md): 500 nodes within a 2 s interval on one core.

``--kept NODES POOLS [--cycles C]``: only kept connections, NODES nodes in POOLS pools, the
median of C steady cycles (default 9): a steadier figure of a kept probe's cost (the rows above
take three cycles, and the renewals a poller spreads over its first minute fall in some).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import redis.connection  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpp_agent.model import NodeId  # noqa: E402
from mpp_agent.poller import Poller, PollerSettings  # noqa: E402
from mpp_agent.poller_main import GC_THRESHOLDS  # noqa: E402
from mpp_agent.probe import ProbeSettings  # noqa: E402
from mpp_agent.store import Store  # noqa: E402
from tests.daemons import create_pools  # noqa: E402
from tests.servers import (  # noqa: E402
    MariaDBCluster,
    MariaDBNode,
    RedisServer,
    aliases,
    start_aliased,
)

INTERVAL = 2.0
CYCLES = 3
PROBE = ProbeSettings("bench", "benchpass", "mppmon", connect_timeout=0.5, read_timeout=0.5)
PROBE_TIMEOUT = 0.9  # below the 1 s deadline of a 2 s interval

ROUND_TRIPS = 0
_send: Callable[..., None] = redis.connection.Connection.send_packed_command


def counting_send(self, command, check_health=True):  # type: ignore[no-untyped-def]
    """Every request sent to Redis, a pipeline counting once: one round trip each."""
    global ROUND_TRIPS
    ROUND_TRIPS += 1
    return _send(self, command, check_health)


redis.connection.Connection.send_packed_command = counting_send  # type: ignore[method-assign]


def make_pools(
    store: Store, nodes: list[NodeId], pools: int, tag: str, keep: float = 0.0
) -> list[str]:
    """``pools`` pools sharing ``nodes`` evenly (a remainder left out), named ``<tag>-<i>``."""
    size = len(nodes) // pools
    return create_pools(store, nodes[: size * pools], size, tag + "-{}", keep_connections=keep)


def measure(
    store: Store, names: list[str], stop: MariaDBNode | None = None, cycles: int = CYCLES
) -> dict[str, float]:
    """The steady cycles' figures; ``stop`` is SIGSTOPped after the first (warm-up) cycle, so
    that kept connections to it exist when it hangs."""
    global ROUND_TRIPS
    poller = Poller(
        store, PollerSettings("bench", PROBE, tuple(names), probe_timeout=PROBE_TIMEOUT)
    )
    walls, cpus, trips = [], [], []
    for cycle in range(cycles + 1):
        if cycle == 1 and stop is not None:
            stop.sigstop()
        now = store.server_time()
        time.sleep((int(now / INTERVAL) + 1) * INTERVAL - now + 0.01)  # a round start
        ROUND_TRIPS = 0
        wall, cpu = time.perf_counter(), time.process_time()
        report = poller.cycle()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        trips.append(ROUND_TRIPS)
        assert set(report.committed) == set(names), report.sentence()
    poller.leave()
    if stop is not None:
        stop.sigcont()
    # The first cycle also warms up connections and caches: report the steady ones.
    return {
        "wall": statistics.median(walls[1:]),
        "wall_max": max(walls[1:]),
        "cpu": statistics.median(cpus[1:]),
        "trips": statistics.median(trips[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kept", type=int, nargs=2, metavar=("NODES", "POOLS"))
    parser.add_argument("--cycles", type=int, default=9)
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)  # as the mpp-poller process does
    redis_server = RedisServer().start()
    cluster = MariaDBCluster(3)
    try:
        start_aliased(cluster, cluster.nodes, "bench", "benchpass")
        store = Store.from_url(redis_server.url, "bench")
        rows = []
        if args.kept:
            nodes, pools = args.kept
            names = make_pools(store, aliases(cluster, nodes), pools, "kept", keep=60)
            rows.append(
                (f"{nodes} nodes, {pools} pools, kept", measure(store, names, None, args.cycles))
            )
            print_table(rows, args.cycles)
            return
        for nodes, pools in ((10, 1), (100, 1), (500, 1), (500, 10), (500, 50)):
            names = make_pools(store, aliases(cluster, nodes), pools, f"n{nodes}p{pools}")
            rows.append((f"{nodes} nodes, {pools} pool(s)", measure(store, names)))
        hung = [*aliases(cluster, 499), NodeId.parse(cluster.node3.node_id)]
        names = make_pools(store, hung, 1, "hung")
        cluster.node3.sigstop()
        rows.append(("500 nodes, 1 SIGSTOPped", measure(store, names)))
        cluster.node3.sigcont()
        names = make_pools(store, aliases(cluster, 500), 50, "kept", keep=60)
        rows.append(("500 nodes, 50 pools, kept", measure(store, names)))
        names = make_pools(store, hung, 50, "kepthung", keep=60)
        rows.append(("500 nodes, 1 SIGSTOPped, kept", measure(store, names, stop=cluster.node3)))
        print_table(rows, CYCLES)
    finally:
        cluster.cleanup()
        redis_server.cleanup()


def print_table(rows: list[tuple[str, dict[str, float]]], cycles: int) -> None:
    print(
        f"\nmpp-poller cycle, interval {INTERVAL:g}s, probe timeout {PROBE_TIMEOUT:g}s, "
        f"median of {cycles} cycles"
    )
    print(f"{'case':32} {'wall s':>8} {'max s':>8} {'cpu s':>8} {'redis round trips':>18}")
    for name, m in rows:
        print(f"{name:32} {m['wall']:8.3f} {m['wall_max']:8.3f} {m['cpu']:8.3f} {m['trips']:18.0f}")


if __name__ == "__main__":
    main()
