#!/usr/bin/env python3
"""Benchmark of the whole failover through HAProxy: ``kill -9`` of the ACTIVE MariaDB until the
first write through HAProxy lands on the new ACTIVE, repeated.

It starts the demo's system once (``scripts/demo.py``: MariaDB x2 master-master, Redis, two
``mpp-poller``s, ``mpp-agent``, HAProxy running ``haproxy/haproxy.cfg``; pool interval 1 s,
M = 4), then ``--runs`` times:

1. with node1 ACTIVE and steady, write through HAProxy for a moment, ``kill -9`` node1 and go on
   writing (a new connection each: read how many of this run's node1 rows the node holds,
   ``INSERT``) until ten writes land on node2; the time to the first is the failover. Once
   node2 has applied its relay log, count what it received of node1's acknowledged rows:
   *early writes* are writes on node2 before it held all of them (the catch-up gate must
   make this 0), *missing* the acknowledged rows it never received;
2. restart node1, ``mpp-admin recover`` it, wait until a write lands on node1 again (the
   hand-back, reported too) and the pool is steady;

once with a healthy standby, once with a lagging one (``MASTER_DELAY=6`` on node2: longer
than the failure detection, so the catch-up gate has to hold writes).

Prints each run, then min/median/max next to the budget M x interval + agent-inter + 1 s
(the target of bench/README.md) and the data figures; exits 1 if a healthy run is over the
budget or any write landed early. Everything is stopped at the end,
by pid. Needs what ``make demo`` needs (``scripts/setup.sh``).

With ``--fence`` the pool has ``--fence read_only`` and the pollers a fencing account: the
same figures with read_only fencing (it must add no interval to the failover).

With ``--keep-connections S`` the pool keeps the pollers' connections to its nodes (the pool
setting ``keep_connections``): the same figures with probes on kept connections.

With ``--push [--agent-inter 3s]`` it measures instead how fast HAProxy follows the failover,
with the agent-check alone and then with ``mpp-agent --haproxy-socket`` pushing each changed
answer, side by side in one run (``bench/push.py --push``).

Run: ``.venv/bin/python bench/failover.py [--runs 5] [--fence] [--keep-connections 60]``, or
``.venv/bin/python bench/failover.py [--runs 5] --push [--agent-inter 3s]``
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import push  # noqa: E402 - after the path set-up
from mpp_agent.config import apply_config, config_of  # noqa: E402
from mpp_agent.model import PoolState  # noqa: E402
from mpp_agent.state import AdminResult  # noqa: E402
from scripts.demo import (  # noqa: E402
    AGENT_INTER,
    APP_PASSWORD,
    APP_USER,
    BUDGET,
    INTERVAL,
    POOL,
    Demo,
    DemoError,
    M,
    hand_back,
    running_demo,
    summary,
)

LAG_DELAY = 6  # seconds of MASTER_DELAY on node2 for the "lagging standby" runs


@dataclass
class DataRun:
    """One kill -9 failover, with what the new ACTIVE held when each write landed on it."""

    seconds: float  # kill -> first write that lands on node2
    failed_writes: int
    early_writes: int  # writes on node2 before it had applied every row it had received
    missing: int  # rows acknowledged by node1 that node2 never got


def counted_write(demo: Demo, tag: str, origin: int) -> tuple[int | None, int]:
    """A write through HAProxy that also reads how many of ``origin``'s rows of this run its
    node holds at that moment: (port or None, held)."""
    try:
        conn = pymysql.connect(
            host="127.0.0.1", port=demo.ports["rw"], user=APP_USER, password=APP_PASSWORD,
            autocommit=True, connect_timeout=0.5, read_timeout=0.5, write_timeout=0.5,
        )  # fmt: skip
    except (pymysql.err.MySQLError, OSError):
        return None, 0
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT @@port, (SELECT COUNT(*) FROM app.t WHERE v = %s AND port = %s)",
                (tag, origin),
            )
            port, held = cur.fetchone()
            cur.execute("INSERT INTO app.t (port, v) VALUES (@@port, %s)", (tag,))
            return int(port), int(held)
    except (pymysql.err.MySQLError, OSError):
        return None, 0
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def data_run(demo: Demo, tag: str, delay: int) -> DataRun:
    """Writes for 1.5 s, ``kill -9`` node1, writes until ten land on node2; then, replication
    settled, counts what node2 received of node1's acknowledged rows."""
    node1, node2 = demo.ports["node1"], demo.ports["node2"]
    demo.sql(2, f"STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={delay}; START SLAVE")
    acked = failed = 0
    landed: list[int] = []  # what node2 held at each write that landed on it
    until = time.monotonic() + 1.5 + random.uniform(0, 1)
    while time.monotonic() < until:
        port, _ = counted_write(demo, tag, node1)
        acked += port == node1
        time.sleep(0.02)
    killed = time.monotonic()
    demo.kill9(1)
    first = None
    while len(landed) < 10:
        if time.monotonic() - killed > 60:
            raise DemoError("no failover within 60 s")
        port, held = counted_write(demo, tag, node1)
        if port == node2:
            first = first or time.monotonic()
            landed.append(held)
        elif port is None:
            failed += 1
        time.sleep(0.02)
    time.sleep(delay + 2)  # the relay log applied
    received = demo.sql(2, f"SELECT COUNT(*) FROM app.t WHERE v = '{tag}' AND port = {node1}")
    count = int(received[0][0])
    demo.sql(2, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE")
    assert first is not None
    return DataRun(first - killed, failed, sum(h < count for h in landed), acked - count)


def verbose(on: bool) -> list[str]:
    return ["--verbose"] if on else []


def keep_connections(demo: Demo, seconds: float) -> None:
    """Set the demo pool's keep_connections (as ``mpp-admin pool apply --keep-connections``)."""

    def change(pool: PoolState) -> AdminResult:
        after = apply_config(pool, replace(config_of(pool), keep_connections=seconds))
        return AdminResult(after, f"keep_connections {seconds:g} s", ())

    if seconds:
        demo.store().admin(POOL, change)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per kind of standby")
    parser.add_argument("--verbose", action="store_true", help="show the demo's start-up steps")
    parser.add_argument(
        "--fence",
        action="store_true",
        help="the pool with --fence read_only and the pollers with a fencing account",
    )
    parser.add_argument(
        "--push",
        action="store_true",
        help="compare the failover without and with mpp-agent --haproxy-socket (bench/push.py)",
    )
    parser.add_argument("--agent-inter", default="", help="with --push: HAProxy's agent-inter")
    parser.add_argument(
        "--keep-connections",
        type=float,
        default=0.0,
        help="the pool's keep_connections (seconds; 0: a login per probe)",
    )
    args = parser.parse_args(argv)
    if args.push:
        if args.fence or args.keep_connections:
            parser.error("--push measures something else: give it alone")
        extra = ["--agent-inter", args.agent_inter] if args.agent_inter else []
        return push.main(["--runs", str(args.runs), "--push", *extra, *verbose(args.verbose)])

    def quiet(_: str) -> None:
        pass

    results: dict[str, list[DataRun]] = {"healthy": [], "lagging": []}
    handbacks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mppbench-") as state_dir:
        say = print if args.verbose else quiet
        started = time.monotonic()
        with running_demo(Path(state_dir), say=say, fence=args.fence) as demo:
            fencing = "on" if args.fence else "off"
            keep_connections(demo, args.keep_connections)
            print(
                f"system up in {time.monotonic() - started:.1f} s; {args.runs} runs of each; "
                f"read_only fencing {fencing}; keep_connections {args.keep_connections:g} s"
            )
            print("run  standby  failover s  failed writes  early writes  missing  hand-back s")
            for run in range(1, args.runs + 1):
                for kind, delay in (("healthy", 0), ("lagging", LAG_DELAY)):
                    result = data_run(demo, f"bench-{kind}-{run}-{time.time():.0f}", delay)
                    results[kind].append(result)
                    handbacks.append(hand_back(demo))
                    print(
                        f"{run:3d}  {kind:7s}  {result.seconds:10.2f}  {result.failed_writes:13d}"
                        f"  {result.early_writes:12d}  {result.missing:7d}  {handbacks[-1]:11.2f}"
                    )
    healthy = [r.seconds for r in results["healthy"]]
    print(f"failover, healthy standby (kill -9 -> first write on it): {summary(healthy)}")
    lagging = [r.seconds for r in results["lagging"]]
    print(f"failover, standby with MASTER_DELAY={LAG_DELAY}: {summary(lagging)}")
    print(
        f"budget M x interval + agent-inter + 1 s = {M} x {INTERVAL:.0f} + {AGENT_INTER:.0f}"
        f" + 1 = {BUDGET:.0f} s; healthy runs over budget: {sum(f > BUDGET for f in healthy)}"
    )
    for kind, runs in results.items():
        print(
            f"{kind} standby: writes on the new ACTIVE before it had caught up: "
            f"{sum(r.early_writes for r in runs)} (must be 0); acknowledged writes missing on "
            f"it once replication settled: {sum(r.missing for r in runs)}"
        )
    print(f"hand-back (recover -> first write on the PRIMARY): {summary(handbacks)}")
    early = sum(r.early_writes for runs in results.values() for r in runs)
    return 1 if early or any(f > BUDGET for f in healthy) else 0


if __name__ == "__main__":
    sys.exit(main())
