#!/usr/bin/env python3
"""Benchmark of the whole failover through HAProxy: ``kill -9`` of the ACTIVE MariaDB until the
first write through HAProxy lands on the new ACTIVE, repeated.

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

Run: ``.venv/bin/python bench/failover.py [--runs 5]``
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.demo import (  # noqa: E402 - after the path set-up
    AGENT_INTER,
    BUDGET,
    INTERVAL,
    DemoError,
    M,
    measure_switch,
    running_demo,
    summary,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--verbose", action="store_true", help="show the demo's start-up steps")
    args = parser.parse_args(argv)

    def quiet(_: str) -> None:
        pass

    failovers: list[float] = []
    handbacks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mppbench-") as state_dir:
        say = print if args.verbose else quiet
        started = time.monotonic()
        with running_demo(Path(state_dir), say=say) as demo:
            print(f"system up in {time.monotonic() - started:.1f} s; {args.runs} runs")
            print("run  failover s  failed writes  hand-back s")
            for run in range(1, args.runs + 1):
                # A random phase within the round: the kill does not always land just after
                # a probe.
                time.sleep(random.uniform(0.5, 1.5))
                start = time.monotonic()
                demo.kill9(1)
                failover = measure_switch(demo, 2, start)
                demo.start_node(1)
                time.sleep(2 * INTERVAL)
                start = time.monotonic()
                demo.admin("recover", demo.node_id(1))
                handback = measure_switch(demo, 1, start)
                deadline = time.monotonic() + 20
                while not demo.is_steady():
                    if time.monotonic() > deadline:
                        raise DemoError("the pool did not settle after the hand-back")
                    time.sleep(0.1)
                failovers.append(failover.seconds)
                handbacks.append(handback.seconds)
                print(
                    f"{run:3d}  {failover.seconds:10.2f}  {failover.failed_writes:13d}"
                    f"  {handback.seconds:11.2f}"
                )
    print(f"failover (kill -9 -> first write on the new ACTIVE): {summary(failovers)}")
    print(
        f"budget M x interval + agent-inter + 1 s = {M} x {INTERVAL:.0f} + {AGENT_INTER:.0f}"
        f" + 1 = {BUDGET:.0f} s; over budget: {sum(f > BUDGET for f in failovers)}"
    )
    print(f"hand-back (recover -> first write on the PRIMARY): {summary(handbacks)}")
    return 1 if any(f > BUDGET for f in failovers) else 0


if __name__ == "__main__":
    sys.exit(main())
