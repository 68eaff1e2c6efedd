"""The poller's Prometheus metrics and health, served on ``mpp-poller --http-listen``.

Pure bookkeeping: the poller calls one method per thing that happened (a round committed, a
commit race lost, a probe recorded, a cycle done or failed, a fencing action), and
``metrics_text`` renders it all in Prometheus' text format. The HTTP listener itself is
http_server.py's; ``http`` answers its requests. Every metric is one poller's view: sum them
over the pollers for a pool's (``sum by (pool)``).

==============================================  =========  ======================================
metric                                          type       meaning
==============================================  =========  ======================================
``mpp_poller_rounds_committed_total{pool}``     counter    rounds this poller ticked and committed
``mpp_poller_rounds_passed_total{pool}``        counter    rounds of a pool it observes that it
                                                           never probed: its previous cycle ran
                                                           past their deadline (short of CPU, or
                                                           held up)
``mpp_poller_commit_conflicts_total{pool}``     counter    commits refused because the pool's
                                                           version moved (a race lost to another
                                                           writer; retried at once)
``mpp_poller_abstentions_total{pool,node}``     counter    observations this poller recorded as
                                                           abstentions (it could not judge)
``mpp_poller_abstaining{pool,node}``            gauge      1 while it abstains on the node
``mpp_poller_probe_latency_seconds``            histogram  time of each recorded probe
``{pool,node}``
``mpp_poller_fencing_actions_total``            counter    changes this poller made to a node's
``{pool,node,action}``                                     read_only (``fence``, ``unfence``,
                                                           ``failed``)
``mpp_poller_cycles_total``                     counter    poll cycles completed
``mpp_poller_cycle_errors_total``               counter    poll cycles that failed (Redis
                                                           unreachable, or an error)
``mpp_poller_cycle_seconds``                    gauge      duration of the last completed cycle
``mpp_poller_pools``                            gauge      pools this poller polls
``mpp_poller_unserved_pools``                   gauge      pools whose interval it cannot serve
``mpp_poller_last_cycle_age_seconds``           gauge      seconds since the last completed cycle
                                                           (-1 before the first)
``mpp_poller_info{poller_id,version}``          gauge      1
==============================================  =========  ======================================

``/healthz`` answers 200 ``ok`` while cycles complete (one within ``HEALTHY_WITHIN`` seconds,
the last not failed), else 503 saying why.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Any

from mpp_agent import __version__
from mpp_agent.fencing import FencingCounter
from mpp_agent.http_server import OK, PROMETHEUS, health_answer
from mpp_agent.model import NodeId, Observation
from mpp_agent.prometheus import Histogram, family, labels

# A cycle runs at least every second (poller.MAX_SLEEP), whether a round is due or not.
HEALTHY_WITHIN = 10.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FENCING_ACTIONS_HELP = (
    "read_only changes this poller made under --fence read_only: fence (ON), unfence (OFF), "
    "failed (refused or not done)."
)

PoolNode = tuple[str, str]


class PollerMetrics:
    """What one poller did since it started, and whether its cycles still complete."""

    def __init__(
        self,
        poller_id: str,
        clock: Callable[[], float] = time.monotonic,
        fencing: FencingCounter | None = None,
    ) -> None:
        self.poller_id = poller_id
        self.clock = clock
        self.committed: Counter[str] = Counter()
        self.conflicts: Counter[str] = Counter()
        self.passed: Counter[str] = Counter()
        self.abstentions: Counter[PoolNode] = Counter()
        self.abstaining: dict[PoolNode, int] = {}
        self.latency: dict[PoolNode, Histogram] = {}
        # the fencer's own count of its actions (fencing.py), exported as it stands
        self.fencing = fencing if fencing is not None else FencingCounter()
        self.cycles = 0
        self.cycle_errors = 0
        self.cycle_seconds = 0.0
        self.pools = 0
        self.unserved = 0
        self.last_ok: float | None = None  # clock time of the last completed cycle
        self.problem = ""  # why the last cycle failed; "" when it completed

    # ---------------------------------------------------------------- what happened

    def round_committed(self, pool: str) -> None:
        self.committed[pool] += 1

    def rounds_passed(self, passed: Mapping[str, tuple[int, int]]) -> None:
        """Rounds (first and last of each pool) this poller let pass without probing them."""
        for pool, (first, last) in passed.items():
            self.passed[pool] += last - first + 1

    def commit_conflict(self, pool: str) -> None:
        """A commit refused because the pool's version moved (another writer was first)."""
        self.conflicts[pool] += 1

    def recorded(
        self,
        records: Iterable[tuple[str, int, Mapping[NodeId, Observation], Mapping[str, str]]],
        latencies: Mapping[NodeId, float],
    ) -> None:
        """This cycle's recorded rounds: each node's probe time and abstentions, per pool."""
        for pool, _, observations, _ in records:
            for node, observation in observations.items():
                key = (pool, str(node))
                if node in latencies:
                    self.latency.setdefault(key, Histogram(LATENCY_BUCKETS)).observe(
                        latencies[node]
                    )
                if observation.is_abstained:
                    self.abstentions[key] += 1
                self.abstaining[key] = int(observation.is_abstained)

    def cycle_done(self, seconds: float, pools: Sequence[str], unserved: int) -> None:
        self.cycles += 1
        self.cycle_seconds = seconds
        self.pools = len(pools)
        self.unserved = unserved
        self.last_ok = self.clock()
        self.problem = ""
        # A pool no longer polled takes its gauges with it.
        kept = set(pools)
        self.abstaining = {k: v for k, v in self.abstaining.items() if k[0] in kept}

    def forget_pools(self, present: Container[str]) -> None:
        """The series of the pools not ``present`` (removed from the pool index) dropped, their
        counters too: a pool removed takes its series with it (one that moves to another
        poller keeps its counters here). The fencing counts are the fencer's to drop."""
        self.committed = Counter({k: v for k, v in self.committed.items() if k in present})
        self.conflicts = Counter({k: v for k, v in self.conflicts.items() if k in present})
        self.passed = Counter({k: v for k, v in self.passed.items() if k in present})
        self.abstentions = Counter({k: v for k, v in self.abstentions.items() if k[0] in present})
        self.latency = {k: v for k, v in self.latency.items() if k[0] in present}
        self.abstaining = {k: v for k, v in self.abstaining.items() if k[0] in present}

    def cycle_failed(self, why: str) -> None:
        self.cycle_errors += 1
        self.problem = why

    # ---------------------------------------------------------------- serving

    def health(self) -> tuple[bool, str]:
        """``/healthz``: whether this poller's cycles complete."""
        if self.problem:
            return False, f"last cycle failed: {self.problem}"
        if self.last_ok is None:
            return False, "no cycle completed yet"
        age = self.clock() - self.last_ok
        if age > HEALTHY_WITHIN:
            return False, f"no cycle completed for {age:.0f}s"
        return True, "ok"

    def http(self, path: str, _query: str) -> tuple[str, str, str]:
        if path == "/metrics":
            return OK, PROMETHEUS, self.metrics_text()
        if path == "/healthz":
            return health_answer(*self.health())
        return "404 Not Found", "text/plain", "not found: /metrics or /healthz"

    def metrics_text(self) -> str:
        lines: list[str] = []
        labelled: list[tuple[str, str, str, tuple[str, ...], Mapping[Any, int]]] = [
            ("rounds_committed_total", "counter", "Rounds this poller committed.", ("pool",),
             self.committed),
            ("rounds_passed_total", "counter", "Rounds of a pool this poller observes that it "
             "never probed (its previous cycle ran past their deadline).", ("pool",), self.passed),
            ("commit_conflicts_total", "counter", "Commits refused because the pool's version "
             "moved (a race lost to another writer).", ("pool",), self.conflicts),
            ("abstentions_total", "counter", "Observations recorded as abstentions (this "
             "poller could not judge the node).", ("pool", "node"), self.abstentions),
            ("abstaining", "gauge", "1 while this poller abstains on the node.",
             ("pool", "node"), self.abstaining),
            ("fencing_actions_total", "counter", FENCING_ACTIONS_HELP,
             ("pool", "node", "action"), self.fencing.samples()),
        ]  # fmt: skip
        for name, kind, text, names, values in labelled:
            lines += family(f"mpp_poller_{name}", kind, text)
            for key, value in sorted(values.items()):
                parts = key if isinstance(key, tuple) else (key,)
                sample = labels(**dict(zip(names, parts, strict=True)))
                lines.append(f"mpp_poller_{name}{{{sample}}} {value}")
        lines += self.latency_lines()
        age = -1.0 if self.last_ok is None else self.clock() - self.last_ok
        scalars: list[tuple[str, str, str, float]] = [
            ("cycles_total", "counter", "Poll cycles completed.", self.cycles),
            ("cycle_errors_total", "counter", "Poll cycles that failed.", self.cycle_errors),
            ("cycle_seconds", "gauge", "Duration of the last completed cycle.", self.cycle_seconds),
            ("pools", "gauge", "Pools this poller polls.", self.pools),
            ("unserved_pools", "gauge", "Pools whose interval it cannot serve.", self.unserved),
            ("last_cycle_age_seconds", "gauge", "Seconds since the last completed cycle.", age),
        ]
        for name, kind, text, number in scalars:
            lines += family(f"mpp_poller_{name}", kind, text)
            lines.append(f"mpp_poller_{name} {number:g}")
        lines += family("mpp_poller_info", "gauge", "This poller's id and version.")
        info = labels(poller_id=self.poller_id, version=__version__)
        lines.append(f"mpp_poller_info{{{info}}} 1")
        return "\n".join(lines) + "\n"

    def latency_lines(self) -> list[str]:
        name = "mpp_poller_probe_latency_seconds"
        lines = family(name, "histogram", "Time of each probe this poller recorded.")
        for (pool, node), histogram in sorted(self.latency.items()):
            lines += histogram.samples(name, labels(pool=pool, node=node))
        return lines
