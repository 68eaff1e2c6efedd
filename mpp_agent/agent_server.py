"""The agent's shell: a gevent TCP server answering HAProxy agent-checks from an in-memory snapshot.

This is the only module that imports ``gevent.server`` (its HTTP listener is http_server.py's).
It owns:

* **the probe path** (``Agent.handle``): read at most one short line within ``read_timeout``
  (``MAX_REQUEST_BYTES``; oversized, slow or binary input is answered ``down #bad request``),
  look the answer up in the snapshot, one ``sendall``, close. A probe never waits on Redis: the
  answer is a dict lookup of reply bytes precomputed per (pool, node, role);
* **the snapshot**: rebuilt by a background greenlet from ``Store.load_pools`` on each pub/sub
  notification (only the notified pools) and every ``refresh_interval`` (all pools);
* **staleness**, two kinds, both answered with the last known decision and ``stale`` in the
  reason, logged once per transition and exported as metrics:

  - *snapshot stale*: no successful refresh from Redis for more than ``stale_after`` seconds
    (Redis down, unreachable or hung). Checked on every probe against the monotonic clock;
  - *pollers stale*: a pool with nodes whose last committed round is more than
    ``rounds.STALE_ROUNDS`` rounds behind the current round, by Redis server time (round ``k``
    starts at ``k x interval``). Pollers commit every round, so this means no poller has ticked
    the pool for about three intervals. A pool never ticked is stale;
  - *pool vanished*: a full load no longer finds a pool that the snapshot has, and no removal
    was notified for it (Redis restarted without its data, a flush, a wrong namespace). Its
    last decisions are kept, marked stale, until it reappears. A pool removed through the store
    (``remove_pool`` notifies) is dropped at once: its nodes become unknown, i.e. ``down``.
    If that notification was missed, the pool stays (stale) until the agent restarts.

* **stale writers** (the pool setting ``stale_writer`` = ``drain``, routing's rule 9): a stale
  view (either kind) stops the writer's writes ``agent_inter`` before the pollers' earliest
  failover; the refresher wakes at that moment to re-decide. Logged with what the agent knows;
* **rollbacks**: a pool that Redis has at a lower version than served (same incarnation: a
  Redis failover lost commits) keeps the served state until Redis has a newer one (logged once);
* **before the first snapshot** (agent just started, Redis not reachable yet) probes are closed
  *without a reply*: HAProxy then ignores the check and keeps what it had, rather
  than hearing ``down`` for every node from an agent that knows nothing;
* **metrics** (Prometheus text on ``/metrics``: probes, staleness, Redis errors, and per node
  ``mpp_node_monitor_abstained``), ``/healthz`` (liveness: 200 ``ok`` when serving from a fresh
  snapshot, 503 otherwise) and ``/readyz`` (200 when at least one pool has fresh state and every
  background loop runs). The HTTP port is bounded like the probe port: at most
  ``metrics_max_connections`` at once, each closed after ``http_server.HTTP_TIMEOUT``; what bad
  clients send is logged at most once a minute;
* **loops that never die**: the refresher and the pub/sub listener catch everything a cycle
  raises (logged once, then only when the problem changes) and run under ``supervised``, which
  restarts a loop that ended anyway and reports it down meanwhile. An unreadable pool document
  (out of bounds, or naming another pool: the store refuses both) keeps the pool's last answers,
  marked stale, and is picked up again once repaired;
* **graceful stop**: ``stop()`` closes the listener, lets in-flight probes finish (bounded), and
  stops the background greenlets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer

from mpp_agent import haproxy_runtime
from mpp_agent.adoption import Seen, backwards_text, went_backwards
from mpp_agent.agent_protocol import (
    BAD_REQUEST,
    MAX_REQUEST_BYTES,
    BadRequest,
    Reply,
    Role,
    answer_changes,
    changed_answers,
    decide_pool,
    parse_request,
    unknown_node,
    unknown_pool,
)
from mpp_agent.candidates import degraded
from mpp_agent.daemon import OnChange, RateLimited
from mpp_agent.haproxy_push import commands, parse_servers_state, pools_of_nodes, servers_for
from mpp_agent.http_api import OPENAPI, check_line, route_path, takes_traffic
from mpp_agent.http_api import Route as ApiRoute
from mpp_agent.http_server import (
    OK,
    PROMETHEUS,
    UNAVAILABLE,
    HttpServer,
    health_answer,
    start_http,
)
from mpp_agent.model import PoolState, StaleWriter
from mpp_agent.prometheus import Histogram, family, label_value, labels
from mpp_agent.rounds import is_stale, round_start
from mpp_agent.routing import earliest_failover, route, stops_writes
from mpp_agent.store import REDIS_ERRORS, BadKey, Store, is_redis_down, redis_problem
from mpp_agent.views import NodeMetrics, listing_json, pool_json

log = logging.getLogger("mpp.agent")

PROBE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)
STOP_GRACE = 2.0
LOOP_RESTART_DELAY = 1.0
JSON = "application/json"

Key = tuple[str, str, Role]


@dataclass(frozen=True)
class AgentSettings:
    """How the agent runs; ``agent_main`` declares the options that fill it."""

    listen: tuple[str, int] = ("127.0.0.1", 9777)
    http_listen: tuple[str, int] | None = None
    haproxy_sockets: tuple[str, ...] = ()
    stale_after: float = 5.0
    refresh_interval: float = 1.0
    agent_inter: float = 1.0  # HAProxy's, for rule 9's lead
    read_timeout: float = 1.0
    max_connections: int = 4096
    metrics_max_connections: int = 64


@dataclass(frozen=True)
class Entry:
    """One precomputed answer: the line when fresh, the line when stale, the metrics label."""

    fresh: bytes
    stale: bytes
    label: str

    @classmethod
    def of(cls, reply: Reply, pool_stale: bool = False) -> Entry:
        stale = reply.encode(stale=True)
        return cls(stale if pool_stale else reply.encode(), stale, reply.label)


@dataclass
class RenderedPool:
    """A pool's entries and what they were computed from (re-render only when that changes)."""

    version: int
    stale: bool
    expiry: float | None
    entries: dict[Key, Entry]
    replies: dict[Key, Reply] = field(default_factory=dict)
    writes_stopped: bool = False


@dataclass
class Snapshot:
    """What probes read. Replaced whole on change; ``by_line`` caches request bytes -> entry."""

    entries: dict[Key, Entry]
    pools: frozenset[str]
    by_line: dict[bytes, Entry] = field(default_factory=dict)

    @property
    def line_cache_limit(self) -> int:
        return 2 * len(self.entries) + 1024


@dataclass
class Metrics:
    probes: Counter[str] = field(default_factory=Counter)
    bad_requests: Counter[str] = field(default_factory=Counter)
    redis_errors: int = 0
    refreshes: int = 0
    socket_errors: int = 0
    # From accepting a probe to its reply sent (a slow client's wait for its line included).
    probe_seconds: Histogram = field(default_factory=lambda: Histogram(PROBE_BUCKETS))


def is_pool_stale(pool: PoolState, now: float) -> bool:
    """Pollers stale: the pool has nodes and no poller is ticking it (``rounds.is_stale``)."""
    return bool(pool.nodes) and is_stale(pool.last_round, pool.interval, now)


def utc(seconds: float) -> str:
    """A Redis or wall-clock time for log lines."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def node_metrics(pools: Iterable[PoolState]) -> list[str]:
    """Per-node gauges: ``mpp_node_monitor_abstained`` is 1 while the pollers could not judge
    the node in its last polled round (all or some of them abstained: its monitor note), 0
    otherwise."""
    lines = [
        "# HELP mpp_node_monitor_abstained 1 when pollers could not judge the node in its "
        "last round (the monitor's fault, not the node's), else 0.",
        "# TYPE mpp_node_monitor_abstained gauge",
    ]
    for pool in sorted(pools, key=lambda p: p.name):
        for node in pool.nodes:
            labels = f'pool="{label_value(pool.name)}",node="{label_value(str(node.node))}"'
            lines.append(f"mpp_node_monitor_abstained{{{labels}}} {int(bool(node.monitor_note))}")
    return lines


def pool_metrics(pools: Iterable[PoolState], now: float) -> list[str]:
    """``mpp_pool_degraded`` is 1 while no node of the pool could take over if its ACTIVE
    failed now (``candidates.degraded``), else 0."""
    lines = [
        "# HELP mpp_pool_degraded 1 when no node could take over if the ACTIVE failed now.",
        "# TYPE mpp_pool_degraded gauge",
    ]
    for pool in sorted(pools, key=lambda p: p.name):
        lost = degraded(pool, now) is not None
        lines.append(f'mpp_pool_degraded{{pool="{label_value(pool.name)}"}} {int(lost)}')
    return lines


def state_metrics(pools: Iterable[PoolState], now: float, stale: Iterable[str]) -> list[str]:
    """The pools' failover state as the agent serves it: each node's MPP state (one series
    per node, ``state`` its current state), its request counter R, whether it takes writes
    (the writer) and reads by the agent's decision; each pool's status and staleness."""
    stale = set(stale)
    ordered = sorted(pools, key=lambda p: p.name)
    families: dict[str, list[str]] = {
        "mpp_node_state": family(
            "mpp_node_state", "gauge", "1 for the node's MPP state (the state label)."
        ),
        "mpp_node_requests": family(
            "mpp_node_requests", "gauge", "The node's MPP request counter R (failing ticks)."
        ),
        "mpp_node_takes_writes": family(
            "mpp_node_takes_writes", "gauge", "1 when the agent routes writes to the node."
        ),
        "mpp_node_takes_reads": family(
            "mpp_node_takes_reads", "gauge", "1 when the agent routes reads to the node."
        ),
        "mpp_pool_status": family(
            "mpp_pool_status", "gauge", "1 for the pool's MPP status (the status label)."
        ),
        "mpp_pool_stale": family(
            "mpp_pool_stale", "gauge", "1 while the pool's pollers stopped committing."
        ),
    }
    for pool in ordered:
        decision = route(pool, now, pool.name in stale)
        for node, decided in zip(pool.nodes, decision.nodes, strict=True):
            at = labels(pool=pool.name, node=str(node.node))
            families["mpp_node_state"].append(
                f"mpp_node_state{{{at},{labels(state=node.state.value)}}} 1"
            )
            if node.requests is not None:
                families["mpp_node_requests"].append(f"mpp_node_requests{{{at}}} {node.requests}")
            families["mpp_node_takes_writes"].append(
                f"mpp_node_takes_writes{{{at}}} {int(decided.takes_writes)}"
            )
            families["mpp_node_takes_reads"].append(
                f"mpp_node_takes_reads{{{at}}} {int(decided.takes_reads)}"
            )
        at = labels(pool=pool.name)
        families["mpp_pool_status"].append(
            f"mpp_pool_status{{{at},{labels(status=pool.status.value)}}} 1"
        )
        families["mpp_pool_stale"].append(f"mpp_pool_stale{{{at}}} {int(pool.name in stale)}")
    return [line for lines in families.values() for line in lines]


def render_pool(
    pool: PoolState, now: float, stale: bool, view_stale: bool = False, lead: float = 0.0
) -> RenderedPool:
    """``stale``: the pool's own staleness (pollers, vanished); ``view_stale``: the snapshot's
    too (Redis unreachable), which only routing's rule 9 (writes stopped, ``lead`` seconds
    early) reads at render time: probes mark the rest stale themselves."""
    decision = route(pool, now, stale or view_stale, lead)
    replies = dict(decide_pool(decision))
    entries = {key: Entry.of(reply, stale) for key, reply in replies.items()}
    return RenderedPool(
        pool.version, stale, decision.next_expiry, entries, replies, decision.writes_stopped
    )


def read_line(sock: Any, timeout: float) -> bytes | None:
    """Up to the first newline (included), at most MAX_REQUEST_BYTES + 1 bytes, within
    ``timeout`` seconds in total; what came before EOF; None if the client was too slow."""
    deadline = time.monotonic() + timeout
    buf: bytes = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.0))
        try:
            chunk: bytes = sock.recv(MAX_REQUEST_BYTES + 1 - len(buf))
        except TimeoutError:
            return None
        if not chunk:
            return buf
        buf += chunk
        newline = buf.find(b"\n")
        if newline >= 0:
            return buf[: newline + 1]
        if len(buf) > MAX_REQUEST_BYTES:
            return buf


class Agent:
    """The snapshot, the probe handler, the refresher and the servers."""

    def __init__(self, store: Store, settings: AgentSettings) -> None:
        self.store = store
        self.settings = settings
        self.metrics = Metrics()
        self.snapshot: Snapshot | None = None
        self.pools: dict[str, PoolState] = {}
        self.probe_metrics: dict[str, NodeMetrics] = {}  # pool -> node -> its last probe's
        self.stale_pools: set[str] = set()
        self.vanished: set[str] = set()  # pools a full load no longer found (kept, stale)
        self.last_ok = -math.inf  # monotonic time of the last successful refresh
        self._rendered: dict[str, RenderedPool] = {}
        self._clock_offset = 0.0  # Redis server time minus our wall clock
        self._was_stale = False
        self._dirty: set[str] = set()
        self._wakeup = Event()
        self._stopping = Event()
        self._loops: dict[str, gevent.Greenlet] = {}
        self.loops_down: set[str] = set()  # loops waiting to be restarted after they ended
        self._refresh_problem = OnChange(log, "refreshing from Redis works again")
        self._pubsub_problem = OnChange(log, "pub/sub listener subscribed again")
        self.rate_limited = RateLimited(log)
        self._no_pools_noted = False
        self._next_drain: float | None = None  # monotonic: a rule-7 deadline to re-decide at
        self._backwards_noted: dict[str, int] = {}  # pool -> the older version Redis has
        self._server: StreamServer | None = None
        self._metrics_server: HttpServer | None = None
        self.pusher = Pusher(self, settings.haproxy_sockets) if settings.haproxy_sockets else None

    @property
    def redis_url(self) -> str:
        """The redacted URL, for log lines."""
        return str(getattr(self.store, "redacted_url", "the configured Redis"))

    # ------------------------------------------------------------------ the probe path

    def is_stale(self) -> bool:
        return time.monotonic() - self.last_ok > self.settings.stale_after

    def answer(self, line: bytes) -> bytes:
        """The reply bytes for one request line; empty when there is no snapshot yet."""
        snap = self.snapshot
        if snap is None:
            self.metrics.probes["no_snapshot"] += 1
            return b""
        entry = snap.by_line.get(line)
        if entry is None:
            try:
                entry = self._lookup(snap, line)
            except BadRequest:
                self.metrics.probes["bad_request"] += 1
                self.metrics.bad_requests["malformed"] += 1
                return BAD_REQUEST
        self.metrics.probes[entry.label] += 1
        return entry.stale if self.is_stale() else entry.fresh

    def _lookup(self, snap: Snapshot, line: bytes) -> Entry:
        request = parse_request(line)
        entry = snap.entries.get(request.key)
        if entry is None:
            if request.pool in snap.pools:
                reply = unknown_node(request.pool, str(request.node))
            else:
                reply = unknown_pool(request.pool)
            entry = Entry.of(reply)
        if len(snap.by_line) < snap.line_cache_limit:
            snap.by_line[line] = entry
        return entry

    def handle(self, sock: Any, _address: Any) -> None:
        """One probe: one short line in, one line out, close."""
        started = time.monotonic()
        try:
            line = read_line(sock, self.settings.read_timeout)
            if line is None:
                self.metrics.probes["bad_request"] += 1
                self.metrics.bad_requests["timeout"] += 1
                reply = BAD_REQUEST
            else:
                reply = self.answer(line)
            if reply:
                sock.sendall(reply)
        except OSError:
            self.metrics.socket_errors += 1
        finally:
            sock.close()
            self.metrics.probe_seconds.observe(time.monotonic() - started)

    # ------------------------------------------------------------------ the snapshot

    def refresh(self, names: Iterable[str] | None = None) -> None:
        """Reload all pools (``names`` None) or just these, and rebuild what changed."""
        redis_now = self.store.server_time()
        if names is None:
            # A pool missing from a full load was not deleted through mpp-admin (that notifies
            # and is handled below): Redis lost it. Keep its last decisions, marked stale.
            pools = self._adopt({p.name: p for p in self.store.load_pools()})
            vanished = set(self.pools) - set(pools)
            pools.update((n, self.pools[n]) for n in vanished)
            self._note_pool_count(len(pools))
        else:
            wanted = set(names)
            loaded = self._adopt({p.name: p for p in self.store.load_pools(sorted(wanted))})
            missing = wanted - set(loaded)
            # A notified pool whose hash is still there but did not load is unreadable (the
            # store logs why), not removed: keep its last decisions, stale, like a vanished one.
            unreadable = self.store.stored_pools(sorted(missing)) if missing else set()
            pools = {n: p for n, p in self.pools.items() if n not in wanted or n in unreadable}
            pools.update(loaded)
            vanished = (self.vanished - wanted) | (unreadable & set(self.pools))
        self.vanished = vanished
        self._read_probe_metrics(names, pools)
        self._clock_offset = redis_now - time.time()
        self.pools = pools
        self.last_ok = time.monotonic()
        self.metrics.refreshes += 1
        self._rebuild(redis_now)

    def _read_probe_metrics(self, names: Iterable[str] | None, pools: dict[str, PoolState]) -> None:
        """The lags of ``GET /v1/pools``: an unreadable metrics hash only makes them null."""
        wanted = sorted(pools if names is None else set(names) & set(pools))
        found = self.store.read_metrics(wanted) if wanted else {}
        kept = {n: m for n, m in self.probe_metrics.items() if n in pools and names is not None}
        kept.update((n, {} if isinstance(m, BadKey) else m) for n, m in found.items())
        self.probe_metrics = kept

    def backwards(self) -> dict[str, str]:
        """Pools whose state in Redis is older than the one this agent keeps serving."""
        return {
            name: f"Redis has version {older}; this agent serves {self.pools[name].version}"
            for name, older in self._backwards_noted.items()
            if name in self.pools
        }

    def _adopt(self, loaded: dict[str, PoolState]) -> dict[str, PoolState]:
        """The loaded pools, except that a pool Redis now has at an older version than this
        agent served (same incarnation) keeps the newer state, said once per version."""
        out = {}
        for name, pool in loaded.items():
            served = self.pools.get(name)
            seen = Seen.of(served) if served is not None else None
            if served is not None and seen is not None and went_backwards(seen, pool):
                if self._backwards_noted.get(name) != pool.version:
                    log.warning(
                        "%s: keeping version %d until Redis has a newer one",
                        backwards_text(pool, seen),
                        served.version,
                    )
                self._backwards_noted[name] = pool.version
                out[name] = served
                continue
            if self._backwards_noted.pop(name, None) is not None:
                log.info("pool %s: Redis has version %d, newer than served", name, pool.version)
            out[name] = pool
        return out

    def _note_pool_count(self, count: int) -> None:
        """Say once when the namespace has no pools (a wrong --namespace?), and where some are."""
        if count and self._no_pools_noted:
            log.info("pools found in namespace %s", self.store.keys.namespace)
        if not count and not self._no_pools_noted:
            others = [
                n for n in self.store.namespaces_with_pools() if n != self.store.keys.namespace
            ]
            log.warning(
                "no pools in namespace %s at %s (%s): every agent-check is answered "
                "'down #unknown pool'",
                self.store.keys.namespace,
                self.redis_url,
                f"namespaces with pools: {', '.join(others)}" if others else "no namespace has any",
            )
        self._no_pools_noted = not count

    def now(self) -> float:
        """Our best estimate of Redis server time (overrides and rounds are in that clock)."""
        return time.time() + self._clock_offset

    def _rebuild(self, now: float) -> None:
        changed = self.snapshot is None or set(self._rendered) != set(self.pools)
        rendered: dict[str, RenderedPool] = {}
        view_stale = self.is_stale()
        for name, pool in self.pools.items():
            old = self._rendered.get(name)
            try:
                stale = name in self.vanished or is_pool_stale(pool, now)
                lead = self.settings.agent_inter
                stopped = stops_writes(pool, now, stale or view_stale, lead)
                if (
                    old is None
                    or old.version != pool.version
                    or old.stale != stale
                    or old.writes_stopped != stopped
                    or (old.expiry is not None and now >= old.expiry)
                ):
                    new = render_pool(pool, now, stale, view_stale, lead)
                    self._note_writes_stopped(pool, old, new)
                    for line in answer_changes(old.replies if old else {}, new.replies):
                        log.info("%s", line)
                    if self.pusher is not None:
                        self.pusher.changed(
                            changed_answers(old.replies if old else {}, new.replies)
                        )
                    old = new
                    changed = True
            except Exception as exc:  # one pool's bad state must not stop the others' answers
                self.rate_limited.note(
                    f"cannot render pool {name}",
                    f"{type(exc).__name__}: {exc}; keeping its last answers",
                    logging.ERROR,
                )
                log.debug("rendering pool %s failed", name, exc_info=True)
                old = self._rendered.get(name)
                if old is None:
                    continue
            rendered[name] = old
        self._rendered = rendered
        self._next_drain = self._drain_wake(now)
        self._note_stale_pools({n for n, r in rendered.items() if r.stale})
        if changed:
            entries: dict[Key, Entry] = {}
            for r in rendered.values():
                entries.update(r.entries)
            self.snapshot = Snapshot(entries, frozenset(rendered))

    def _drain_wake(self, now: float) -> float | None:
        """The monotonic time of the next rule-7 deadline of a pool still taking writes, so
        the refresher re-decides then rather than at its next refresh."""
        times = []
        for name, pool in self.pools.items():
            deadline = earliest_failover(pool)
            rendered = self._rendered.get(name)
            if deadline is None or rendered is None or rendered.writes_stopped:
                continue
            if pool.stale_writer is StaleWriter.DRAIN:
                times.append(deadline - self.settings.agent_inter - now)
        return time.monotonic() + max(0.0, min(times)) if times else None

    def _note_writes_stopped(
        self, pool: PoolState, old: RenderedPool | None, new: RenderedPool
    ) -> None:
        """Say when writes stop and start again (rule 9), with what the agent knows."""
        if new.writes_stopped and not (old and old.writes_stopped):
            deadline = earliest_failover(pool)
            log.warning(
                "pool %s (stale-writer drain): last state seen is round %d; the pollers could "
                "have failed its writer over without this agent from %s on: writes stopped to "
                "avoid two writers",
                pool.name,
                pool.last_round,
                utc(deadline if deadline is not None else 0.0),
            )
        elif old is not None and old.writes_stopped and not new.writes_stopped:
            log.info("pool %s: fresh state again; writes follow it", pool.name)

    def _note_stale_pools(self, stale: set[str]) -> None:
        for name in sorted(stale - self.stale_pools):
            pool = self.pools[name]
            if name in self.vanished:
                log.warning(
                    "pool %s is gone from Redis without being removed (Redis lost its data? "
                    "or one of its keys is unusable, logged above): "
                    "answering its last known decisions marked stale",
                    name,
                )
                continue
            log.warning(
                "no commit of pool %s since round %d (%s, interval %gs): answering its last "
                "known decisions marked stale",
                name,
                pool.last_round,
                utc(round_start(pool.last_round, pool.interval)),
                pool.interval,
            )
        for name in sorted(self.stale_pools - stale):
            if name in self.pools:
                log.info("pool %s: pollers committing again; answers fresh", name)
        self.stale_pools = stale

    def _note_staleness(self) -> None:
        stale = self.is_stale()
        if stale and not self._was_stale and self.snapshot is not None:
            log.warning(
                "snapshot stale: Redis unreachable since %s (no successful refresh for over "
                "%gs); answering the last known decisions marked stale",
                utc(time.time() - (time.monotonic() - self.last_ok)),
                self.settings.stale_after,
            )
        elif not stale and self._was_stale:
            log.info("snapshot fresh again")
        self._was_stale = stale and self.snapshot is not None  # "stale" means: was fresh once

    def _note_redis_error(self, exc: Exception) -> None:
        """One line when the problem starts or changes, none while it repeats."""
        self.metrics.redis_errors += 1
        if isinstance(exc, REDIS_ERRORS):
            text = redis_problem(exc, self.redis_url)
            level = logging.WARNING if is_redis_down(exc) else logging.ERROR
        else:  # a bug: its traceback at DEBUG, once per change like the rest
            text = f"refreshing the snapshot failed: {type(exc).__name__}: {exc}"
            level = logging.ERROR
            if text != self._refresh_problem.last:
                log.debug("refresh failure", exc_info=exc)
        self._refresh_problem.problem(f"{text}; keeping the last snapshot", level)

    def _note_redis_ok(self) -> None:
        self._refresh_problem.ok()

    # ------------------------------------------------------------------ background greenlets

    def refresh_loop(self) -> None:
        """Refresh on each notification (those pools) and every refresh_interval (all).

        Nothing a refresh raises ends the loop: it is logged (once per change) and the next
        refresh tries again, so repaired data is picked up by itself."""
        next_full = 0.0
        while not self._stopping.is_set():
            self._wakeup.wait(timeout=max(0.0, self._next_wake(next_full) - time.monotonic()))
            notified = self._wakeup.is_set()
            self._wakeup.clear()
            if self._stopping.is_set():
                break
            self._note_staleness()
            due = time.monotonic() >= next_full
            if not (notified or due):
                # woken to log the moment the snapshot went stale, or at a rule-7 deadline
                self._rebuild_quietly()
                continue
            # a wake-up with no notified pool (start, resubscribe, SIGHUP) asks for a full one
            full = due or not self._dirty
            names = None if full else self._dirty
            self._dirty = set()
            try:
                self.refresh(names)
                self._note_redis_ok()
            except Exception as exc:
                self._note_redis_error(exc)
                self._rebuild_quietly()
            if full:
                next_full = time.monotonic() + self.settings.refresh_interval
            self._note_staleness()

    def _rebuild_quietly(self) -> None:
        """Without fresh data, overrides still expire and rounds still pass."""
        if self.snapshot is None:
            return
        try:
            self._rebuild(self.now())
        except Exception as exc:
            self.rate_limited.note("rebuilding the snapshot failed", repr(exc), logging.ERROR)

    def reload(self) -> None:
        """Reload every pool now (SIGHUP): wakes the refresher with nothing notified."""
        self._dirty = set()
        self._wakeup.set()

    def _next_wake(self, next_full: float) -> float:
        """The next full refresh, or the moment the snapshot turns stale if that is sooner."""
        if self.snapshot is None:
            return next_full
        wakes = [next_full]
        if not self._was_stale:
            wakes.append(self.last_ok + self.settings.stale_after + 0.001)
        if self._next_drain is not None and self.is_stale():
            wakes.append(self._next_drain)
        return min(wakes)

    def subscribe_loop(self) -> None:
        """Mark notified pools dirty and wake the refresher; resubscribe after errors."""
        while not self._stopping.is_set():
            pubsub = None
            try:
                # Inside the try: a Redis Cluster client connects when it is first used.
                pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.store.notify_channel)
                self._wakeup.set()  # catch up on anything missed while unsubscribed
                self._pubsub_problem.ok()
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        self._dirty.add(data.decode(errors="replace"))
                        self._wakeup.set()
            except Exception as exc:
                # The refresher words Redis problems; pub/sub only says it is not listening.
                self._pubsub_problem.problem(
                    f"pub/sub listener not subscribed ({type(exc).__name__}: {exc}); "
                    "full refreshes go on, retrying every second"
                )
                self._stopping.wait(timeout=1.0)
            finally:
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        pubsub.close()

    def supervised(self, name: str, loop: Callable[[], None]) -> None:
        """Run ``loop`` until the agent stops, restarting it whenever it ends (a bug that
        escaped it); meanwhile it counts as down for ``/readyz``."""
        while not self._stopping.is_set():
            try:
                loop()
            except Exception as exc:
                log.error("the %s loop failed: %s: %s", name, type(exc).__name__, exc)
                log.debug("the %s loop failed", name, exc_info=True)
            if self._stopping.is_set():
                return
            self.loops_down.add(name)
            log.error("the %s loop ended; restarting it in %gs", name, LOOP_RESTART_DELAY)
            self._stopping.wait(timeout=LOOP_RESTART_DELAY)
            self.loops_down.discard(name)

    # ------------------------------------------------------------------ metrics

    def metrics_text(self) -> str:
        m = self.metrics
        age = time.monotonic() - self.last_ok if self.snapshot is not None else -1
        snap = self.snapshot
        lines = [
            "# HELP mpp_agent_probes_total Agent-check probes answered, by reply.",
            "# TYPE mpp_agent_probes_total counter",
        ]
        labels = ("up_ready", "up_drain", "down", "bad_request", "no_snapshot")
        for label in sorted(set(labels) | set(m.probes)):
            lines.append(f'mpp_agent_probes_total{{reply="{label}"}} {m.probes[label]}')
        lines += [
            "# HELP mpp_agent_bad_requests_total Requests answered 'down #bad request', by kind.",
            "# TYPE mpp_agent_bad_requests_total counter",
        ]
        for kind in sorted({"malformed", "timeout"} | set(m.bad_requests)):
            lines.append(f'mpp_agent_bad_requests_total{{kind="{kind}"}} {m.bad_requests[kind]}')
        gauges: list[tuple[str, str, str, float]] = [
            ("snapshot_age_seconds", "gauge", "Seconds since the last successful refresh.", age),
            ("stale", "gauge", "1 when the snapshot is stale (Redis).", int(self.is_stale())),
            (
                "stale_pools",
                "gauge",
                "Pools whose pollers stopped committing.",
                len(self.stale_pools),
            ),
            ("pools", "gauge", "Pools in the snapshot.", len(snap.pools) if snap else 0),
            ("redis_errors_total", "counter", "Failed refreshes from Redis.", m.redis_errors),
            ("refreshes_total", "counter", "Successful refreshes from Redis.", m.refreshes),
            ("socket_errors_total", "counter", "Probes lost to socket errors.", m.socket_errors),
            ("loops_down", "gauge", "Background loops not running.", len(self.loops_down)),
            (
                "haproxy_pushes_total",
                "counter",
                "Changed answers applied to an HAProxy server through its runtime API.",
                self.pusher.pushed if self.pusher else 0,
            ),
            (
                "haproxy_push_failures_total",
                "counter",
                "Pushes to an HAProxy runtime API that failed (the agent-check corrects them).",
                self.pusher.failed if self.pusher else 0,
            ),
        ]
        for name, kind, text, value in gauges:
            lines += [
                f"# HELP mpp_agent_{name} {text}",
                f"# TYPE mpp_agent_{name} {kind}",
                f"mpp_agent_{name} {value:g}"
                if isinstance(value, float)
                else f"mpp_agent_{name} {value}",
            ]
        lines += family(
            "mpp_agent_probe_seconds",
            "histogram",
            "Seconds from accepting an agent-check probe to its reply sent.",
        )
        lines += m.probe_seconds.samples("mpp_agent_probe_seconds")
        lines += node_metrics(self.pools.values())
        lines += pool_metrics(self.pools.values(), time.time())
        lines += state_metrics(self.pools.values(), self.now(), self.stale_pools)
        return "\n".join(lines) + "\n"

    def health(self) -> tuple[bool, str]:
        """Liveness (``/healthz``): serving from a fresh snapshot."""
        if self.snapshot is None:
            return False, "no snapshot yet"
        if self.is_stale():
            return False, "stale"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        """``/readyz``: fresh state for at least one pool, and every loop running."""
        down = sorted(self.loops_down | {n for n, g in self._loops.items() if g.dead})
        if down and not self._stopping.is_set():
            return False, f"loop down: {', '.join(down)}"
        ok, text = self.health()
        if not ok:
            return False, text
        fresh = set(self._rendered) - self.stale_pools
        if not fresh:
            return False, "no pool with fresh state" if self._rendered else "no pools"
        return True, f"ready: {len(fresh)} of {len(self._rendered)} pools fresh"

    def http(self, path: str, query: str) -> tuple[str, str, str]:
        """Status, content type and body of an HTTP GET (http_server.py serves it)."""
        if path == "/metrics":
            return OK, PROMETHEUS, self.metrics_text()
        if path in ("/healthz", "/readyz"):
            return health_answer(*(self.health() if path == "/healthz" else self.readiness()))
        return self.api(route_path(path, query))

    def api(self, request: ApiRoute) -> tuple[str, str, str]:
        """Status, content type and body of a ``/v1/`` request, from the snapshot alone."""
        if request.kind == "openapi":
            return "200 OK", JSON, json.dumps(OPENAPI)
        if request.kind == "unknown":
            return "404 Not Found", "text/plain", "not found"
        if self.snapshot is None:
            return UNAVAILABLE, "text/plain", "no snapshot yet"
        if request.kind == "check":
            line = check_line(request)
            reply = BAD_REQUEST if line is None else self.answer(line)
            if reply == BAD_REQUEST:
                return "400 Bad Request", "text/plain", reply.decode()
            return ("200 OK" if takes_traffic(reply) else UNAVAILABLE), "text/plain", reply.decode()
        now = self.now()
        if request.kind == "pool":
            pool = self.pools.get(request.pool)
            if pool is None:
                return "404 Not Found", "text/plain", f"unknown pool {request.pool}"
            document = pool_json(
                pool, now, self.probe_metrics.get(pool.name, {}), self.backwards().get(pool.name)
            )
        else:
            pools = [self.pools[name] for name in sorted(self.pools)]
            document = listing_json(pools, now, self.probe_metrics, self.backwards())
        return "200 OK", JSON, json.dumps(document)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind the servers (raises OSError if a port is taken) and start the greenlets."""
        pool = Pool(self.settings.max_connections)
        self._server = StreamServer(self.settings.listen, self.handle, spawn=pool, backlog=4096)
        self._server.start()
        if self.settings.http_listen is not None:
            self._metrics_server = start_http(
                self.settings.http_listen,
                self.http,
                self.settings.metrics_max_connections,
                self.rate_limited,
            )
        loops = [("refresh", self.refresh_loop), ("pub/sub", self.subscribe_loop)]
        if self.pusher is not None:
            loops.append(("HAProxy push", self.pusher.loop))
        self._loops = {name: gevent.spawn(self.supervised, name, loop) for name, loop in loops}

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop accepting, let in-flight probes finish (at most STOP_GRACE s), stop the rest."""
        self._stopping.set()
        self._wakeup.set()
        if self._server is not None:
            self._server.stop(timeout=STOP_GRACE)
        if self._metrics_server is not None:
            self._metrics_server.stop(timeout=STOP_GRACE)
        gevent.killall(list(self._loops.values()), timeout=STOP_GRACE)


class Pusher:
    """Applies each changed answer to HAProxy at once (haproxy_push.py says how), from a
    greenlet of its own so that neither the probes nor the refresher ever wait on HAProxy."""

    def __init__(self, agent: Agent, sockets: Iterable[str]) -> None:
        self.agent = agent
        self.sockets = tuple(sockets)
        self.pending: dict[Key, str] = {}  # the latest words of each changed answer
        self.wakeup = Event()
        self.pushed = 0
        self.failed = 0
        self.problems = {
            path: OnChange(log, f"HAProxy at {path} takes pushes again") for path in self.sockets
        }
        self.unmatched = {
            path: OnChange(log, f"HAProxy at {path} has servers to push to")
            for path in self.sockets
        }

    def changed(self, changes: Iterable[tuple[Key, Reply, Reply]]) -> None:
        for key, _old, new in changes:
            self.pending[key] = new.words
            self.wakeup.set()

    def loop(self) -> None:
        stopping = self.agent._stopping
        while not stopping.is_set():
            self.wakeup.wait(timeout=1.0)
            self.wakeup.clear()
            if self.pending and not stopping.is_set():
                batch, self.pending = self.pending, {}
                for path in self.sockets:
                    self.push(path, batch)

    def push(self, path: str, batch: dict[Key, str]) -> None:
        """One batch to one HAProxy: find the servers, apply, log what was pushed."""
        pools_of_node = pools_of_nodes(self.agent.pools.values())
        try:
            servers = parse_servers_state(haproxy_runtime.servers_state(path))
            carried = servers_for(servers, self.agent.address[1], pools_of_node)
            self.note_unmatched(path, bool(carried))
            done = []
            for key, words in batch.items():
                for server in carried.get(key, []):
                    haproxy_runtime.apply(path, commands(server, words))
                    done.append(f"{server.backend}/{server.name} {words} ({' '.join(key)})")
        except OSError as exc:
            self.failed += 1
            self.problems[path].problem(
                f"pushing to HAProxy at {path} failed ({type(exc).__name__}: {exc}); "
                "its agent-checks will correct it"
            )
            return
        self.problems[path].ok()
        self.pushed += len(done)
        for line in done:
            log.info("pushed to HAProxy at %s: %s", path, line)

    def note_unmatched(self, path: str, found: bool) -> None:
        """Say once when HAProxy has no server this agent can push to (see haproxy_push)."""
        if found:
            self.unmatched[path].ok()
            return
        self.unmatched[path].problem(
            f"HAProxy at {path} has no server checked by this agent (agent-port "
            f"{self.agent.address[1]}) in a backend named *rw or *ro with a node of a pool: "
            "nothing is pushed, the agent-checks alone apply the answers"
        )
