"""The poller's metrics and /healthz, pure (an injected clock; no sockets, no Redis)."""

from __future__ import annotations

from mpp_agent.fencing import FenceAction, FencingCounter
from mpp_agent.model import NodeId, Observation
from mpp_agent.poller_metrics import PollerMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fencing_actions_are_counted_per_pool_node_and_action() -> None:
    fencing = FencingCounter()
    m = PollerMetrics("p-a", fencing=fencing)
    fencing.add("p1", "db1:3306", FenceAction.FENCE)
    fencing.add("p1", "db1:3306", FenceAction.FENCE)
    fencing.add("p1", "db2:3306", FenceAction.UNFENCE)
    text = m.metrics_text()
    assert (
        'mpp_poller_fencing_actions_total{pool="p1",node="db1:3306",action="fence"} 2'
        in text.splitlines()
    )
    assert (
        'mpp_poller_fencing_actions_total{pool="p1",node="db2:3306",action="unfence"} 1'
        in text.splitlines()
    )
    assert "# TYPE mpp_poller_fencing_actions_total counter" in text


def test_latency_buckets_are_cumulative_and_abstentions_counted() -> None:
    m = PollerMetrics("p-a")
    db1 = NodeId("db1")
    for latency in (0.002, 0.02, 3.0):
        m.recorded([("p1", 1, {db1: Observation.abstain("denied")}, {})], {db1: latency})
    lines = m.metrics_text().splitlines()
    at = 'pool="p1",node="db1:3306"'
    assert f'mpp_poller_probe_latency_seconds_bucket{{{at},le="0.001"}} 0' in lines
    assert f'mpp_poller_probe_latency_seconds_bucket{{{at},le="0.0025"}} 1' in lines
    assert f'mpp_poller_probe_latency_seconds_bucket{{{at},le="0.025"}} 2' in lines
    assert f'mpp_poller_probe_latency_seconds_bucket{{{at},le="+Inf"}} 3' in lines
    assert f"mpp_poller_probe_latency_seconds_count{{{at}}} 3" in lines
    assert f"mpp_poller_abstentions_total{{{at}}} 3" in lines
    assert f"mpp_poller_abstaining{{{at}}} 1" in lines


def test_healthz_follows_the_cycles() -> None:
    clock = Clock()
    m = PollerMetrics("p-a", clock=clock)
    assert m.health() == (False, "no cycle completed yet")
    m.cycle_done(0.01, ["p1"], 0)
    assert m.health() == (True, "ok")
    assert m.http("/healthz", "")[0] == "200 OK"
    m.cycle_failed("Redis unreachable: refused")
    assert m.health() == (False, "last cycle failed: Redis unreachable: refused")
    assert m.http("/healthz", "")[0].startswith("503")
    m.cycle_done(0.01, ["p1"], 0)
    clock.now += 30
    assert m.health() == (False, "no cycle completed for 30s")
    assert m.http("/other", "")[0].startswith("404")


def test_a_removed_pool_takes_its_series_with_it() -> None:
    fencing = FencingCounter()
    m = PollerMetrics("p-a", fencing=fencing)
    db1 = NodeId("db1")
    for pool in ("kept", "gone"):
        m.recorded([(pool, 1, {db1: Observation.abstain("denied")}, {})], {db1: 0.01})
        m.round_committed(pool)
        m.commit_conflict(pool)
        m.rounds_passed({pool: (7, 9)})
        fencing.add(pool, db1, FenceAction.FENCE)
    m.forget_pools({"kept"})
    fencing.forget_pools({"kept"})  # the fencer's, dropped by it
    lines = [line for line in m.metrics_text().splitlines() if not line.startswith("#")]
    assert any('pool="kept"' in line for line in lines)
    assert not [line for line in lines if 'pool="gone"' in line]
    assert 'mpp_poller_rounds_committed_total{pool="kept"} 1' in lines
    assert 'mpp_poller_rounds_passed_total{pool="kept"} 3' in lines  # rounds 7, 8 and 9
