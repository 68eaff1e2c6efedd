"""Benchmark of scale-out: the same fleet over 1, 2 and 4 mpp-poller processes, K = 2.

Nodes are 127.0.x.y aliases of two real MariaDB servers (they listen on every loopback address,
as in bench/poller.py), so N nodes cost N real connections, handshakes and queries per probe.
Pools have 4 nodes each (one PRIMARY, three SECONDARY), interval 2 s, ``--observers 2``, and
``--keep-connections`` 0 (a login per probe) or 60 (probes on kept connections). Each
case starts the pollers as real processes (the ``mpp-poller`` console script), creates the pools
once the pollers have seen each other, waits until every pool is steady and then until the
warm-up is over (every node judged by every observer of its pool in the last round: with kept
connections, every node has its connection; at most ``--warm-up-limit`` seconds after the
pools' creation, 300 by default, and how long it took is printed), then measures over a
window of 5 intervals (with kept connections, a whole keep_connections period, so that every
connection is renewed in it):

* per poller: the nodes it probes per interval (the nodes of the pools it observes, from its
  heartbeat), its CPU seconds per interval (``/proc/<pid>/stat``), its cycle wall time (the
  heartbeat's ``cycle_seconds``, median), and its CPU seconds per cycle (over the cycles that
  ended in the window: what a round costs it, whatever share of a saturated machine it got;
  CPU per interval cannot exceed that share);
* the rounds committed in the window against the rounds that started (every round committed
  once is ``missed 0``), and the nodes not healthy at its end (R > 0 or failed), the failed
  ones apart, each failed node's last events (how it came to fail: every node is healthy, so
  a failed one is the monitor's fault), and the nodes some observer could not judge in the
  last round (a monitor note);
* the two MariaDB servers' CPU seconds per interval (what the probes cost the nodes) and the
  connections they took per interval (``Connections``: logins, and TCP connects that never
  logged in, ``Aborted_connects``: reachability checks, logins cut), and the Redis masters' CPU
  seconds per interval (what the pollers cost Redis);
* Redis: commands per second (``total_commands_processed``, summed over the masters) and memory
  per pool (``used_memory`` with the pools in place, less before they were created).
* outside logins: a fresh login and ``SELECT 1`` to each MariaDB server every 0.25 s from the
  bench, not a poller (median, 99th percentile, max, how many took longer than the pools'
  probe bound): the two servers stand for thousands of nodes and meet every probe of a round
  at its start, and a login from outside slower than the probe bound says that a node failed
  on login timeouts then was failed by its server's slowness, not by a poller.

Run: ``.venv/bin/python bench/scale.py`` (needs mariadbd, redis-server and redis-cli; 40-70
minutes for the whole matrix, depending on the warm-ups); ``--nodes 1000 --pollers 1 2 --redis
single --keep-connections 60`` for a part of it.
Goal (bench/README.md): per-poller probe work falls as K/N (within 15 %), and 4,000 nodes at a
2 s interval fit 4 pollers with every round committed. Exits 1 if a case missed a round, never
got steady or through its warm-up, or ended with a failed node.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The pollers are started by their console script: this interpreter's first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

import pymysql

from mpp_agent.model import NodeState, PoolState
from mpp_agent.rounds import round_of
from mpp_agent.store import Store
from mpp_agent.timeouts import fit as fit_timeouts
from mpp_agent.timeouts import limits
from tests.daemons import PollerProcess, create_pools, pools_steady
from tests.servers import (
    MariaDBCluster,
    MariaDBNode,
    RedisClusterServers,
    RedisServer,
    aliases,
    start_aliased,
    wait_until,
)

INTERVAL = 2.0
K = 2
POOL_SIZE = 4
WINDOW_ROUNDS = 5  # at least; with kept connections, a whole keep_connections period
STORIES = 3  # failed nodes whose events are printed
WARM_UP_LIMIT = 300.0  # seconds after the pools' creation the window waits for the warm-up
USER, PASSWORD = "bench", "benchpass"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class PollerFigures:
    poller: str
    nodes: int  # probed per interval
    cpu: float  # seconds per interval
    cycle: float  # median wall seconds of a cycle
    cpu_per_cycle: float  # seconds per cycle ended in the window: the demand, not the share got


@dataclass
class Case:
    redis: str
    keep: float  # the pools' keep_connections
    nodes: int
    pollers: int
    per_poller: list[PollerFigures]
    committed: int  # rounds committed in the window, over all pools
    missed: int  # rounds of the window no commit ticked
    unhealthy: int  # nodes with R > 0 or failed at the end
    failed: int  # of those, the failed ones
    steady: bool  # every pool reached ACTIVE with R = 0 before the window
    warm_up: float | None  # seconds from the pools' creation until every node was judged by
    # every observer (with kept connections: every connection open), None if not by the limit
    why: str  # the most common message of the unhealthy nodes
    kinds: str  # the unhealthy nodes by state and R, most common first
    stories: list[str]  # how each failed node came to fail: its pool's events
    noted: int  # nodes some poller could not judge in the last round (a monitor note)
    note: str  # the most common of those notes
    commands_per_s: float
    bytes_per_pool: float
    mariadb_cpu: float  # seconds per interval, both servers together
    connections: float  # per interval the servers took (their Connections counter)
    aborted: float  # of those, the ones that never logged in (Aborted_connects)
    redis_cpu: float  # seconds per interval, every Redis master together
    outside: str  # the outside logins to the MariaDB servers in the window (OutsideLogins)


class Redis:
    """A single redis-server or a 3-master Redis Cluster, with the figures the bench reads."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.single: RedisServer | None = None
        self.cluster: RedisClusterServers | None = None
        if kind == "single":
            self.single = RedisServer().start()
            self.url = self.single.url
        else:
            self.cluster = RedisClusterServers(masters=3, replicas=0).start()
            self.url = self.cluster.url

    def masters(self) -> list[RedisServer]:
        return [self.single] if self.single is not None else list(self.cluster.nodes)  # type: ignore[union-attr]

    def info_sum(self, field: str, section: str) -> float:
        total = 0.0
        for node in self.masters():
            with node.client() as c:
                total += float(c.info(section)[field])
        return total

    def cpu(self) -> float:
        """CPU seconds the Redis servers have used."""
        return sum(cpu_seconds(node.pid) for node in self.masters())

    def flush(self) -> None:
        for node in self.masters():
            with node.client() as c:
                c.flushall()

    def cleanup(self) -> None:
        for node in self.masters():
            node.cleanup()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextmanager
def pollers_running(url: str, count: int) -> Iterator[list[PollerProcess]]:
    procs = [
        PollerProcess(url, f"bench-{i}", namespace="bench", user=USER, password=PASSWORD)
        for i in range(count)
    ]
    for proc in procs:
        proc.probe_options = []  # the defaults, fitted to the 2 s interval
        proc.start()
    try:
        yield procs
    finally:
        for proc in procs:
            proc.cleanup()


def connections(cluster: MariaDBCluster) -> tuple[int, int]:
    """The connections both servers have taken so far (each counts this one too), and of
    those the ones that never logged in (a TCP connect only, a login cut or refused)."""
    counts = [
        dict(
            node.sql(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('Connections', 'Aborted_connects')"
            )
        )
        for node in (cluster.node1, cluster.node2)
    ]
    return (
        sum(int(c["Connections"]) for c in counts),
        sum(int(c["Aborted_connects"]) for c in counts),
    )


def story(store: Store, pool: PoolState, node: NodeState) -> str:
    """The last events of ``pool`` about ``node``, one per line: how a node came to fail."""
    lines = [
        f"    {event_id} {event}"
        for event_id, event in store.last_events(pool.name, 200)
        if event.get("node") == str(node.node)
    ]
    return "\n".join([f"  {node.node} of pool {pool.name} failed:", *lines[-12:]])


def window_rounds(keep: float) -> int:
    """Rounds measured: with kept connections, every connection is renewed within them."""
    return max(WINDOW_ROUNDS, math.ceil(keep / INTERVAL) + 1)


def monitor_notes(pools: Iterable[PoolState]) -> list[str]:
    """The monitor notes of the pools' nodes: why some observer could not judge a node in
    the last round (with kept connections, mostly a node still waiting for its first login)."""
    return [n.monitor_note for p in pools for n in p.nodes if n.monitor_note]


def all_judged(store: Store, names: Sequence[str]) -> bool:
    """Whether every node of the pools was judged by every observer of the last round."""
    return not monitor_notes(store.load_pools(names))


def warmed_up(store: Store, names: Sequence[str], created: float, limit: float) -> float | None:
    """Seconds from ``created`` until ``all_judged`` held, None if not within ``limit``."""
    left = limit - (time.monotonic() - created)
    try:
        wait_until(lambda: all_judged(store, names), max(0.0, left), "warm-up", interval=1.0)
    except TimeoutError:  # measured anyway, in the warm-up: said so
        return None
    return time.monotonic() - created


# The probe bound of the bench's pools: a fresh login slower than this is a timeout to a poller.
PROBE_BOUND = fit_timeouts(INTERVAL, limits()).probe
OUTSIDE_EVERY = 0.25  # seconds between two outside logins to each server


class OutsideLogins:
    """A fresh login and ``SELECT 1`` to each MariaDB server every ``OUTSIDE_EVERY`` seconds,
    from a thread of the bench, not a poller: how long a client that is not the monitor waits
    for the servers. The two servers stand for thousands of nodes, so each meets every probe of
    a round at its start; when a login from outside takes longer than the probe bound too, a
    node that failed on login timeouts then was failed by its server's slowness (a topology of
    this bench: a real node takes two probes a round), not by a poller short of CPU."""

    def __init__(self, cluster: MariaDBCluster) -> None:
        self.servers = [cluster.node1, cluster.node2]
        self.seconds: list[float] = []  # a login that failed counts as its whole wait
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OutsideLogins:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(OUTSIDE_EVERY):
            for server in self.servers:
                self.seconds.append(self._login(server))

    def _login(self, server: MariaDBNode) -> float:
        start = time.monotonic()
        try:
            conn = server.connect_tcp(USER, PASSWORD, connect_timeout=10, read_timeout=10)
            conn.query("SELECT 1")
            conn.close()
        except pymysql.MySQLError:
            self.failures += 1
        return time.monotonic() - start

    def summary(self) -> str:
        if not self.seconds:
            return "none made"
        ranked = sorted(self.seconds)
        over = sum(s > PROBE_BOUND for s in ranked)
        return (
            f"median {statistics.median(ranked):.3f} s, 99th percentile "
            f"{ranked[int(0.99 * (len(ranked) - 1))]:.3f} s, max {ranked[-1]:.3f} s; "
            f"{over} of {len(ranked)} over the probe bound ({PROBE_BOUND:g} s), "
            f"{self.failures} failed"
        )


def measure(
    redis: Redis,
    cluster: MariaDBCluster,
    nodes: int,
    count: int,
    keep: float,
    warm_up_limit: float = WARM_UP_LIMIT,
) -> Case:
    redis.flush()
    store = Store.from_url(redis.url, "bench")
    base_memory = redis.info_sum("used_memory", "memory")
    with pollers_running(redis.url, count) as procs:
        # Pools only once the pollers know each other: pollers started together each observe
        # every pool until they have seen the others' heartbeats (never 0 observers), and that
        # burst of probes would fail nodes on this small machine before the window.
        time.sleep(2 * INTERVAL)
        names = create_pools(
            store, aliases(cluster, nodes), POOL_SIZE, "s{:04d}", observers=K, keep_connections=keep
        )
        created = time.monotonic()
        try:
            wait_until(lambda: pools_steady(store, names), 90, "every pool steady", interval=0.5)
            steady = True
        except TimeoutError:  # measured anyway: the figures say what did not fit
            steady = False
        warm_up = warmed_up(store, names, created, warm_up_limit) if steady else None
        time.sleep(3 * INTERVAL)  # assignments settled: every poller has seen the others
        now = store.server_time()
        time.sleep(INTERVAL - (now % INTERVAL) + 0.1)  # just after a round start
        before = {p.name: p for p in store.load_pools(names)}
        cpu0 = {p.poller_id: cpu_seconds(p.proc.pid) for p in procs if p.proc}
        commands0 = redis.info_sum("total_commands_processed", "stats")
        servers0 = sum(cpu_seconds(node.pid) for node in (cluster.node1, cluster.node2))
        taken0 = connections(cluster)
        redis0 = redis.cpu()
        t0, start = time.monotonic(), store.server_time()
        cycles: dict[str, list[float]] = {p.poller_id: [] for p in procs}
        ended: dict[str, set[float]] = {p.poller_id: set() for p in procs}  # cycles' end times
        observed: dict[str, set[str]] = {}
        with OutsideLogins(cluster) as outside:
            while time.monotonic() - t0 < window_rounds(keep) * INTERVAL:
                for info in store.pollers():
                    if info.poller_id in cycles and info.info:
                        cycles[info.poller_id].append(float(info.info.get("cycle_seconds", 0)))
                        observed[info.poller_id] = set(info.info.get("pools", []))
                        at = float(info.info.get("last_cycle_at", 0))
                        if at > start:
                            ended[info.poller_id].add(at)
                time.sleep(INTERVAL / 2)
        elapsed = time.monotonic() - t0
        commands = redis.info_sum("total_commands_processed", "stats") - commands0
        cpu = {p.poller_id: cpu_seconds(p.proc.pid) - cpu0[p.poller_id] for p in procs if p.proc}
        servers = sum(cpu_seconds(node.pid) for node in (cluster.node1, cluster.node2)) - servers0
        total, aborted = connections(cluster)
        # Less the second count's own (one per server) and the outside logins.
        taken = total - taken0[0] - 2 - len(outside.seconds)
        aborted -= taken0[1]
        redis_cpu = redis.cpu() - redis0
        time.sleep(INTERVAL)  # the window's last round committed
        after = {p.name: p for p in store.load_pools(names)}
        last = round_of(store.server_time(), INTERVAL) - 1
        memory = redis.info_sum("used_memory", "memory") - base_memory
    stories = [story(store, p, n) for p in after.values() for n in p.nodes if n.state.is_failed]
    for name in names:
        store.remove_pool(name)
    intervals = elapsed / INTERVAL
    committed = sum(after[n].version - before[n].version for n in names)
    # A round is missed when the pool's last round jumped over it or has not reached it.
    missed = sum(
        (after[n].last_round - before[n].last_round)
        - (after[n].version - before[n].version)
        + max(0, last - after[n].last_round)
        for n in names
    )
    troubled = [n for p in after.values() for n in p.nodes if n.r > 0 or n.state.is_failed]
    why = Counter(n.message or "" for n in troubled).most_common(1)
    kinds = Counter(f"{n.state.value} R={n.r}" for n in troubled)
    notes = monitor_notes(after.values())
    per_poller = [
        PollerFigures(
            pid,
            POOL_SIZE * len(observed.get(pid, ())),
            cpu[pid] / intervals,
            statistics.median(cycles[pid]) if cycles[pid] else float("nan"),
            cpu[pid] / len(ended[pid]) if ended[pid] else float("nan"),
        )
        for pid in sorted(cpu)
    ]
    return Case(
        redis.kind,
        keep,
        nodes,
        count,
        per_poller,
        committed,
        missed,
        len(troubled),
        sum(n.state.is_failed for n in troubled),
        steady,
        warm_up,
        why[0][0][:120] if why else "",
        ", ".join(f"{k} x{v}" for k, v in kinds.most_common(4)),
        stories[:STORIES],
        len(notes),
        Counter(notes).most_common(1)[0][0][:160] if notes else "",
        commands / elapsed,
        memory / len(names),
        servers / intervals,
        taken / intervals,
        aborted / intervals,
        redis_cpu / intervals,
        outside.summary(),
    )


def prepare_mariadb(threads: str) -> MariaDBCluster:
    cluster = MariaDBCluster(2)
    for node in (cluster.node1, cluster.node2):
        # Thousands of probes connect at once: a listen backlog for them, not the default ~90
        # (an overflowing backlog shows as connect timeouts, i.e. failing nodes).
        # Kept connections: one per node and observer stays open (8,000 for 4,000 nodes, K = 2).
        # The two servers stand for thousands: with a thread per connection, 8,000 threads
        # woken together by each round's probes cost the machine more than the probes do.
        node.extra_options = (
            "--max-connections=10000",
            "--back-log=4000",
            f"--thread-handling={threads}",
        )
    start_aliased(cluster, (cluster.node1, cluster.node2), USER, PASSWORD)
    return cluster


def print_case(case: Case) -> None:
    ideal = case.nodes * min(K, case.pollers) / case.pollers
    print(
        f"\n{case.redis} Redis, keep_connections {case.keep:g}, {case.nodes} nodes "
        f"({case.nodes // POOL_SIZE} pools), "
        f"{case.pollers} poller(s): rounds committed {case.committed}, missed {case.missed}, "
        f"unhealthy nodes at the end {case.unhealthy} ({case.failed} failed); Redis "
        f"{case.commands_per_s:,.0f} commands/s, {case.bytes_per_pool / 1024:.1f} KiB per pool; "
        f"MariaDB {case.mariadb_cpu:.2f} CPU s/interval, {case.connections:,.0f} connections "
        f"({case.aborted:,.0f} never logged in), "
        f"Redis {case.redis_cpu:.2f}"
        f"{'' if case.steady else '; NOT steady before the window'}; K/N share {ideal:.0f} nodes"
    )
    if case.warm_up is None:
        print("  warm-up: some node was still not judged by every observer when the window began")
    else:
        print(f"  warm-up: every node judged by every observer {case.warm_up:.0f}s after creation")
    if case.why:
        print(f"  most common failure: {case.why}")
    if case.kinds:
        print(f"  unhealthy by state: {case.kinds}")
    for text in case.stories:
        print(text)
    print(f"  outside logins to the MariaDB servers: {case.outside}")
    if case.noted:
        print(f"  nodes not judged by every observer in the last round: {case.noted} ({case.note})")
    print(
        f"  {'poller':10} {'nodes/interval':>15} {'cpu s/interval':>15} {'cycle wall s':>13}"
        f" {'cpu s/cycle':>12}"
    )
    for p in case.per_poller:
        print(
            f"  {p.poller:10} {p.nodes:15d} {p.cpu:15.3f} {p.cycle:13.3f} {p.cpu_per_cycle:12.3f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--pollers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--redis", nargs="+", default=["single", "cluster"])
    parser.add_argument("--keep-connections", type=float, nargs="+", default=[0, 60])
    parser.add_argument(
        "--mariadb-threads",
        choices=["pool-of-threads", "one-thread-per-connection"],
        default="pool-of-threads",
    )
    parser.add_argument("--warm-up-limit", type=float, default=WARM_UP_LIMIT)
    args = parser.parse_args(argv)
    print(f"MariaDB thread handling: {args.mariadb_threads}")
    cluster = prepare_mariadb(args.mariadb_threads)
    cases: list[Case] = []
    try:
        for kind in args.redis:
            redis = Redis(kind)
            try:
                for keep in args.keep_connections:
                    for nodes in args.nodes:
                        for count in args.pollers:
                            case = measure(redis, cluster, nodes, count, keep, args.warm_up_limit)
                            print_case(case)
                            cases.append(case)
            finally:
                redis.cleanup()
    finally:
        cluster.cleanup()
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    fit = (c.missed == 0 and c.failed == 0 and c.steady and c.warm_up is not None for c in cases)
    return 0 if all(fit) else 1


if __name__ == "__main__":
    sys.exit(main())
