#!/usr/bin/env python3
"""Benchmark of the failover through HAProxy, polled by agent-checks or pushed by the agent:
``kill -9`` of the ACTIVE MariaDB until the first write through HAProxy lands on the new ACTIVE,
repeated. (``bench/failover.py`` measures the data side: what the new ACTIVE holds.)

It starts the demo's system once (``scripts/demo.py``: MariaDB x2 master-master, Redis, two
``mpp-poller``s, ``mpp-agent``, HAProxy running ``haproxy/haproxy.cfg``; pool interval 1 s,
M = 4), then ``--runs`` times:

1. with node1 ACTIVE and steady, ``kill -9`` node1 and write through HAProxy every 50 ms (a new
   connection each: ``INSERT``, ``SELECT @@port``) until a write lands on node2; that time is
   the failover;
2. restart node1, ``mpp-admin recover`` it, wait until a write lands on node1 again (the
   hand-back, reported too) and the pool is steady.

Prints each run, then min/median/max next to the budget M x interval + agent-inter + 1 s
(the target of bench/README.md); exits 1 if any run is over it. Everything is stopped at the end,
by pid. Needs what ``make demo`` needs (``scripts/setup.sh``).

``--push`` runs it all twice, first with the agent-check alone, then with ``mpp-agent
--haproxy-socket`` pushing each changed answer into HAProxy's runtime API, and prints both; the
column ``commit->write`` is HAProxy's part of the failover (from the commit that makes node2
ACTIVE to the first write on it): up to one agent-inter without the push, a few milliseconds
with it. ``--agent-inter 3s`` replaces haproxy.cfg's ``agent-inter 1s``.

Run: ``.venv/bin/python bench/push.py [--runs 5] [--push] [--agent-inter 3s]``
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mpp_agent.model import State  # noqa: E402 - after the path set-up
from scripts.demo import (  # noqa: E402
    AGENT_INTER,
    INTERVAL,
    Demo,
    DemoError,
    M,
    hand_back,
    running_demo,
    summary,
)


@dataclass
class Run:
    failover: float  # kill -9 -> first write on the new ACTIVE
    after_commit: float  # the commit making node2 ACTIVE -> that write (HAProxy's part)
    failed_writes: int
    handback: float


def failover_run(demo: Demo) -> Run:
    """One kill -9 of node1 and its hand-back; the commit is seen by polling Redis."""
    # A random phase within the round: the kill does not always land just after a probe.
    time.sleep(random.uniform(0.5, 1.5))
    start = time.monotonic()
    demo.kill9(1)
    committed = None
    failed = 0
    want = demo.ports["node2"]
    while True:
        if committed is None and demo.pool().nodes[1].state is State.ACTIVE:
            committed = time.monotonic()
        port, _ = demo.write(tag="failover", timeout=0.5)
        if port == want:
            break
        failed += port is None
        if time.monotonic() - start > 30:
            raise DemoError("no write landed on node2 within 30 s")
        time.sleep(0.02)
    landed = time.monotonic()
    committed = committed or landed  # seen in the same iteration as the write
    return Run(landed - start, landed - committed, failed, hand_back(demo))


def bench(runs: int, push: bool, agent_inter: str, say: Callable[[str], None]) -> list[Run]:
    mode = "push (--haproxy-socket)" if push else "agent-check only"
    results = []
    with tempfile.TemporaryDirectory(prefix="mppbench-") as state_dir:
        started = time.monotonic()
        with running_demo(Path(state_dir), say=say, push=push, agent_inter=agent_inter) as demo:
            print(f"{mode}: system up in {time.monotonic() - started:.1f} s; {runs} runs")
            print("run  failover s  commit->write s  failed writes  hand-back s")
            for run in range(1, runs + 1):
                r = failover_run(demo)
                results.append(r)
                print(
                    f"{run:3d}  {r.failover:10.2f}  {r.after_commit:15.2f}  {r.failed_writes:13d}"
                    f"  {r.handback:11.2f}"
                )
    print(
        f"{mode}: failover (kill -9 -> first write on the new ACTIVE): "
        f"{summary([r.failover for r in results])}"
    )
    print(
        f"{mode}: commit -> first write through HAProxy: "
        f"{summary([r.after_commit for r in results])}"
    )
    print(
        f"{mode}: hand-back (recover -> first write on the PRIMARY): "
        f"{summary([r.handback for r in results])}"
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--push",
        action="store_true",
        help="run twice, without and with mpp-agent --haproxy-socket, and compare",
    )
    parser.add_argument(
        "--agent-inter",
        default="",
        help="HAProxy agent-inter instead of haproxy.cfg's 1s (e.g. 3s: the push matters more)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the demo's start-up steps")
    args = parser.parse_args(argv)

    def quiet(_: str) -> None:
        pass

    say = print if args.verbose else quiet
    inter = float(args.agent_inter.removesuffix("s")) if args.agent_inter else AGENT_INTER
    budget = M * INTERVAL + inter + 1.0
    modes = (False, True) if args.push else (False,)
    over = 0
    for push in modes:
        results = bench(args.runs, push, args.agent_inter, say)
        over += sum(r.failover > budget for r in results)
    print(
        f"budget M x interval + agent-inter + 1 s = {M} x {INTERVAL:g} + {inter:g}"
        f" + 1 = {budget:g} s; over budget: {over}"
    )
    if args.push:
        print(f"push goal: M x interval + 0.2 s = {M * INTERVAL + 0.2:g} s")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
