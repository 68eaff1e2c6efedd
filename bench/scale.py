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
* outside probes, from the bench, not a poller, with the probe's own bounds, from the pools'
  creation on: a fresh login and ``SELECT 1`` to each MariaDB server every 0.25 s, and a
  ``SELECT 1`` on a connection kept to each every 0.1 s of a round's first half (over the
  window: median, 99th percentile, max, how many timed out as a probe would; for each failed
  node, those of its server in the rounds that failed it): the two servers stand for
  thousands of nodes and meet every probe of a round at its start, and outside probes that
  timed out too say that a node failed on timeouts then was failed by its server's slowness,
  not by a poller.
* the machine's idle CPU seconds per interval (of 2 x its CPUs), and those its hypervisor
  gave to other VMs (steal): whether the machine had room left, and whether it was slowed;
* when rounds were missed: which rounds of the window, and how many of them (one reading of
  every pool's version and last round 1.9 s into each round), and the pollers' warnings and
  rounds they did not probe in the window; and, each round, the pools not yet committed then.

Run: ``.venv/bin/python bench/scale.py`` (needs mariadbd, redis-server and redis-cli; 40-70
minutes for the whole matrix, depending on the warm-ups); ``--nodes 1000 --pollers 1 2 --redis
single --keep-connections 60`` for a part of it.
Goal (bench/README.md): per-poller probe work falls as K/N (within 15 %), and 4,000 nodes at a
2 s interval fit 4 pollers with every round committed. Exits 1 if a case missed a round, never
got steady or through its warm-up, or ended with a failed node.
"""

from __future__ import annotations

import argparse
import itertools
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
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The pollers are started by their console script: this interpreter's first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

import pymysql

from mpp_agent.model import NodeState, PoolState
from mpp_agent.rounds import round_of, round_start
from mpp_agent.store import Store
from mpp_agent.timeouts import fit as fit_timeouts
from mpp_agent.timeouts import limits
from tests.daemons import PollerProcess, create_pools, pools_steady, rounds_missed
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
CPUS = os.cpu_count() or 1


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
    idle: float  # the machine's idle CPU seconds per interval, all its CPUs together
    steal: float  # CPU seconds per interval its hypervisor gave to others (a VM's steal time)
    outside: str  # the outside probes of the MariaDB servers in the window (OutsideProbes)
    missed_when: list[tuple[int, int]]  # (round of the window, rounds missed), RoundSampler's
    late: list[tuple[int, int]]  # (round of the window, pools not committed SAMPLE_AT into it)
    log: list[str]  # where rounds were missed: the pollers' log lines of the window that tell


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


def machine_cpu() -> tuple[float, float]:
    """The machine's idle and stolen CPU seconds so far, all CPUs together (``/proc/stat``:
    idle with iowait; steal, the time a hypervisor gave this VM's CPUs to others)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, steal = fields[3] + fields[4], fields[7] if len(fields) > 7 else 0
    return idle / CLOCK_TICKS, steal / CLOCK_TICKS


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


def story(store: Store, pool: PoolState, node: NodeState, outside: OutsideProbes) -> str:
    """The last events of ``pool`` about ``node``, one per line: how a node came to fail, and
    how the outside probes of its server fared in the rounds that failed it."""
    events = [
        (event_id, event)
        for event_id, event in store.last_events(pool.name, 200)
        if event.get("node") == str(node.node)
    ]
    failed_in = [
        e["round"]
        for _, e in events
        if e.get("to_state") == "FAILED_OFFLINE" and e.get("from_state") != "FAILED_OFFLINE"
    ]
    head = f"  {node.node} of pool {pool.name} failed"
    if failed_in and isinstance(failed_in[-1], int):
        # The rounds of its last max_requests probes, which failed it.
        last = failed_in[-1]
        first = last - pool.max_requests + 1
        head += f" in round {last}; " + outside.during(
            node.node.port, round_start(first, INTERVAL), round_start(last + 1, INTERVAL)
        )
    return "\n".join([f"{head}:", *(f"    {i} {e}" for i, e in events[-12:])])


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


# The bounds of the bench's pools' probes: a fresh login that waits longer than SOCKET_BOUND
# for one socket operation, or takes longer than PROBE_BOUND in all, is a timeout to a poller.
BENCH_TIMEOUTS = fit_timeouts(INTERVAL, limits())
PROBE_BOUND, SOCKET_BOUND = BENCH_TIMEOUTS.probe, BENCH_TIMEOUTS.read
AS_A_PROBE = (
    f"timed out as a probe would ({SOCKET_BOUND:g} s a socket wait, {PROBE_BOUND:g} s in all)"
)
OUTSIDE_EVERY = 0.25  # seconds between two outside logins to each server
# Seconds after a round's start that outside kept queries are sent: through the first half of
# the round, when the pollers' probes meet the servers.
KEPT_AT = (0.005, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class Outside(NamedTuple):
    """One outside probe, or a kept connection made (``what`` "connect", not measured)."""

    what: str  # "login", "kept" or "connect"
    started: float  # wall clock
    port: int  # the server's
    seconds: float  # a failed one: its whole wait
    ok: bool  # it ended within the probe's bounds


class OutsideProbes:
    """From a thread of the bench, not a poller: a fresh login and ``SELECT 1`` to each MariaDB
    server every ``OUTSIDE_EVERY`` seconds, and on a connection kept to each a ``SELECT 1`` at
    each of ``KEPT_AT`` in every round, when the pollers send theirs; both with the probe's own
    bounds (a kept query that timed out: its connection made again, not measured). How
    long a client that is not the monitor waits for the servers: the two servers stand for
    thousands of nodes, so each meets every probe of a round at its start. When those time out
    too, a node that failed on timeouts then was failed by its server's slowness (a topology
    of this bench: a real node takes two probes a round), not by a poller short of CPU. Made
    from the pools' creation on (a node may fail in the warm-up); ``summary`` is of the window,
    from ``mark`` to ``window``."""

    def __init__(self, cluster: MariaDBCluster) -> None:
        self.servers = [cluster.node1, cluster.node2]
        self.made: list[Outside] = []
        self._from = 0
        self._window: list[Outside] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._logins, daemon=True)] + [
            threading.Thread(target=self._kept, args=(server,), daemon=True)
            for server in self.servers
        ]

    def __enter__(self) -> OutsideProbes:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _connect(self, server: MariaDBNode) -> Any:
        return server.connect_tcp(
            USER, PASSWORD, connect_timeout=SOCKET_BOUND, read_timeout=SOCKET_BOUND
        )

    def _logins(self) -> None:
        while not self._stop.wait(OUTSIDE_EVERY):
            for server in self.servers:
                started, start, ok = time.time(), time.monotonic(), True
                try:
                    conn = self._connect(server)
                    conn.query("SELECT 1")
                    conn.close()
                except pymysql.MySQLError:
                    ok = False
                self._add("login", started, server.port, time.monotonic() - start, ok)

    def _kept(self, server: MariaDBNode) -> None:
        conn = None
        while True:
            if self._stop.wait(max(0.0, self._next_kept() - time.time())):
                break
            if conn is None:  # not measured: the round's query is
                self._add("connect", time.time(), server.port, 0.0, True)
                try:
                    conn = self._connect(server)
                except pymysql.MySQLError:
                    continue
            started, start, ok = time.time(), time.monotonic(), True
            try:
                conn.query("SELECT 1")
            except pymysql.MySQLError:
                ok, conn = False, None
            self._add("kept", started, server.port, time.monotonic() - start, ok)

    @staticmethod
    def _next_kept() -> float:
        """When the next outside kept query is due (wall clock): the next of ``KEPT_AT``."""
        now = time.time()
        start = round_start(round_of(now, INTERVAL), INTERVAL)
        due = [start + at for at in KEPT_AT if start + at > now]
        return due[0] if due else round_start(round_of(now, INTERVAL) + 1, INTERVAL) + KEPT_AT[0]

    def _add(self, what: str, started: float, port: int, seconds: float, ok: bool) -> None:
        self.made.append(Outside(what, started, port, seconds, ok and seconds <= PROBE_BOUND))

    def mark(self) -> None:
        """The window starts."""
        self._from = len(self.made)

    def window(self) -> int:
        """The window ends: how many connections the outside probes made in it (each one a
        server took: the logins, and the kept connections made again after a timeout)."""
        self._window = self.made[self._from :]
        return sum(m.what in ("login", "connect") for m in self._window)

    def during(self, port: int, start: float, end: float) -> str:
        """What the probes of the server on ``port`` started from ``start`` to ``end`` (wall
        clock, the local Redis's too) took, against the probe's bounds."""
        made = [m for m in self.made if m.port == port and start <= m.started < end]
        if not made:
            return "no outside probe of its server measured then"
        return f"outside probes of its server in those rounds: {self._tally(made)}"

    def summary(self) -> str:
        return self._tally(self._window) if self._window else "none made"

    @staticmethod
    def _tally(made: Sequence[Outside]) -> str:
        parts = []
        for what, name in (("login", "logins"), ("kept", "kept queries in a round's first half")):
            ranked = sorted(m.seconds for m in made if m.what == what)
            if not ranked:
                continue
            late = sum(not m.ok for m in made if m.what == what)
            parts.append(
                f"{name} median {statistics.median(ranked):.3f} s, 99th percentile "
                f"{ranked[int(0.99 * (len(ranked) - 1))]:.3f} s, max {ranked[-1]:.3f} s, "
                f"{late} of {len(ranked)} {AS_A_PROBE}"
            )
        return "; ".join(parts)


SAMPLE_AT = 1.9  # seconds into a round: its commit has landed by then unless it is late
LOG_LINES = 4  # lines of each poller's log printed for a case that missed rounds


class Reading(NamedTuple):
    """A pool as ``RoundSampler`` read it."""

    version: int
    last_round: int


class RoundSampler:
    """From a thread of the bench: every pool's version and last committed round (one
    ``HMGET`` a pool) ``SAMPLE_AT`` seconds into each round of the window. Between two
    readings a pool's last round moved by the rounds that passed and its version by the
    commits (the bench changes no pool meanwhile): the difference is the rounds it missed
    then. So a missed round says when it was missed and by how many pools (all at once:
    something held up every poller or Redis; a few: those pools' observers ran late), and a
    pool whose last round is not the one running at a reading was committed late, if at
    all."""

    def __init__(self, url: str, names: Sequence[str]) -> None:
        self.store = Store.from_url(url, "bench")
        self.names = names
        # (round, each pool's version and last committed round) at each reading
        self.readings: list[tuple[int, dict[str, Reading]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RoundSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def commands(self) -> int:
        """The Redis commands the readings took (not the pollers')."""
        return len(self.readings) * len(self.names)

    def _run(self) -> None:
        while True:
            now = time.time()
            at = round_start(round_of(now, INTERVAL), INTERVAL) + SAMPLE_AT
            at += INTERVAL if at <= now else 0.0
            if self._stop.wait(at - now):
                return
            pipe = self.store.client.pipeline(transaction=False)
            for name in self.names:
                pipe.hmget(self.store.keys.pool(name), "version", "round")
            read = {
                name: Reading(int(version), int(round_))
                for name, (version, round_) in zip(self.names, pipe.execute(), strict=True)
            }
            self.readings.append((round_of(at, INTERVAL), read))

    def _first(self) -> int:
        return self.readings[0][0] if self.readings else 0

    def missed(self) -> list[tuple[int, int]]:
        """(round of the window, rounds missed since the reading before, over all pools), where
        any were."""
        out = []
        for (_, was), (round_, now) in itertools.pairwise(self.readings):
            lost = sum(rounds_missed(was[n], now[n]) for n in now.keys() & was.keys())
            if lost:
                out.append((round_ - self._first(), lost))
        return out

    def late(self) -> list[tuple[int, int]]:
        """(round of the window, pools whose last committed round was not that one
        ``SAMPLE_AT`` into it), where any were."""
        out = []
        for round_, read in self.readings:
            behind = sum(1 for r in read.values() if r.last_round < round_)
            if behind:
                out.append((round_ - self._first(), behind))
        return out


def told(line: str) -> str:
    """A log line, or of a cycle's line its time and the clauses of the rounds not probed."""
    clauses = line.split("; ")
    passed = [clause for clause in clauses if " not probed: " in clause]
    return f"{line[:23]} ... {'; '.join(passed)}" if " INFO " in line and passed else line


def log_excerpt(procs: Sequence[PollerProcess], offsets: dict[str, int]) -> list[str]:
    """Each poller's first ``LOG_LINES`` lines at WARNING or above, or saying rounds passed
    that it did not probe, written since ``offsets`` (each log's size at the window's
    start)."""
    out = []
    for proc in procs:
        with proc.log.open("rb") as log:
            log.seek(offsets.get(proc.poller_id, 0))
            text = log.read().decode(errors="replace")
        wanted = [
            told(line)[:240]
            for line in text.splitlines()
            if " WARNING " in line or " ERROR " in line or " not probed: " in line
        ]
        out += [f"    {proc.poller_id}: {line}" for line in wanted[:LOG_LINES]]
    return out


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
    with pollers_running(redis.url, count) as procs, OutsideProbes(cluster) as outside:
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
        logs0 = {p.poller_id: p.log.stat().st_size for p in procs if p.log.exists()}
        sampler = RoundSampler(redis.url, names).start()
        commands0 = redis.info_sum("total_commands_processed", "stats")
        servers0 = sum(cpu_seconds(node.pid) for node in (cluster.node1, cluster.node2))
        taken0 = connections(cluster)
        outside.mark()
        redis0 = redis.cpu()
        machine0 = machine_cpu()
        t0, start = time.monotonic(), store.server_time()
        cycles: dict[str, list[float]] = {p.poller_id: [] for p in procs}
        ended: dict[str, set[float]] = {p.poller_id: set() for p in procs}  # cycles' end times
        observed: dict[str, set[str]] = {}
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
        outside_connections = outside.window()
        commands = redis.info_sum("total_commands_processed", "stats") - commands0
        commands -= sampler.commands
        cpu = {p.poller_id: cpu_seconds(p.proc.pid) - cpu0[p.poller_id] for p in procs if p.proc}
        servers = sum(cpu_seconds(node.pid) for node in (cluster.node1, cluster.node2)) - servers0
        total, aborted = connections(cluster)
        # Less the second count's own (one per server) and the outside probes' connections.
        taken = total - taken0[0] - 2 - outside_connections
        aborted -= taken0[1]
        redis_cpu = redis.cpu() - redis0
        idle, steal = (b - a for a, b in zip(machine0, machine_cpu(), strict=True))
        time.sleep(INTERVAL)  # the window's last round committed
        after = {p.name: p for p in store.load_pools(names)}
        last = round_of(store.server_time(), INTERVAL) - 1
        sampler.stop()
        excerpt = log_excerpt(procs, logs0)
        memory = redis.info_sum("used_memory", "memory") - base_memory
    stories = [
        story(store, p, n, outside) for p in after.values() for n in p.nodes if n.state.is_failed
    ]
    for name in names:
        store.remove_pool(name)
    intervals = elapsed / INTERVAL
    committed = sum(after[n].version - before[n].version for n in names)
    # A round is missed when the pool's last round jumped over it or has not reached it.
    missed = sum(
        rounds_missed(before[n], after[n]) + max(0, last - after[n].last_round) for n in names
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
        idle / intervals,
        steal / intervals,
        outside.summary(),
        sampler.missed(),
        sampler.late(),
        excerpt if missed else [],
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
    print(
        f"  the machine: {case.idle:.2f} CPU s idle per interval of {INTERVAL * CPUS:g}, "
        f"{case.steal:.2f} stolen by its hypervisor"
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
    print(f"  outside probes of the MariaDB servers: {case.outside}")
    if case.noted:
        print(f"  nodes not judged by every observer in the last round: {case.noted} ({case.note})")
    if case.missed_when:
        rounds = ", ".join(f"round {r}: {n}" for r, n in case.missed_when)
        print(
            f"  rounds missed, by the window's round (from 0) of the reading that found them: "
            f"{rounds}"
        )
    if case.late:
        rounds = ", ".join(f"round {r}: {n}" for r, n in case.late)
        print(f"  pools whose round was not committed {SAMPLE_AT:g} s into it: {rounds}")
    if case.log:
        print("  the pollers' log in the window (warnings, rounds not probed):")
        for line in case.log:
            print(line)
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
