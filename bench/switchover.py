#!/usr/bin/env python3
"""Benchmark of planned switchovers through HAProxy: the write pause and the writes lost.

It starts the demo's system once (``scripts/demo.py``: MariaDB x2 master-master, Redis, two
``mpp-poller``s, ``mpp-agent``, HAProxy running ``haproxy/haproxy.cfg``; pool interval 1 s,
M = 4), sets the pool's ``--failback manual``, and starts a writer that inserts a row through
HAProxy every 20 ms (a new connection each) and records every acknowledged insert (its id,
the node that took it, when). Then ``--runs`` times ``mpp-admin switchover`` to the other node
(node1 -> node2, node2 -> node1, ...), each waited for (exit 0) and followed by a second of
writes on the new ACTIVE.

For each switchover: the *write pause*, the longest time between two acknowledged writes from
the command's start until writes flow on the new ACTIVE. At the end, replication settled:
*lost* writes are acknowledged rows missing on either node, *late* writes are writes on the old
ACTIVE that started after the first write on the new one had been acknowledged. Prints each
run, then min/median/max of the pause next to the bound 2 x interval + agent-inter + 1 s, and
the lost and late counts; exits 1 if any write was lost or late or a pause over the bound.
Everything is stopped at the end, by pid. Needs what ``make demo`` needs
(``scripts/setup.sh``).

Run: ``.venv/bin/python bench/switchover.py [--runs 10]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.ack_writer import AckWriter  # noqa: E402 - after the path set-up
from scripts.demo import (  # noqa: E402
    AGENT_INTER,
    APP_PASSWORD,
    APP_USER,
    INTERVAL,
    POOL,
    Demo,
    running_demo,
    summary,
)

BOUND = 2 * INTERVAL + AGENT_INTER + 1.0
TAG = "bench-switchover"


def lost_of(demo: Demo, writer: AckWriter) -> int:
    time.sleep(2)  # replication settles both ways
    rows = [dict(demo.sql(n, f"SELECT id, port FROM app.t WHERE v = '{TAG}'")) for n in (1, 2)]
    return sum(len(writer.lost(r)) for r in rows)


def switch(demo: Demo, writer: AckWriter, source: int, target: int) -> tuple[float, float, int]:
    """One switchover: (seconds the command took, longest write pause, late writes)."""
    started = time.monotonic()
    demo.admin("switchover", POOL, "--to", demo.node_id(target), "--timeout", "20")
    took = time.monotonic() - started
    time.sleep(1.0)
    ports = demo.ports[f"node{source}"], demo.ports[f"node{target}"]
    late = writer.late_on(*ports, started)
    return took, writer.longest_pause(started, time.monotonic()), len(late)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="switchovers (alternating)")
    parser.add_argument("--verbose", action="store_true", help="show the demo's start-up steps")
    args = parser.parse_args(argv)

    def quiet(_: str) -> None:
        pass

    pauses: list[float] = []
    late = lost = 0
    say = print if args.verbose else quiet
    with (
        tempfile.TemporaryDirectory(prefix="mppbench-") as state_dir,
        running_demo(Path(state_dir), say=say) as demo,
    ):
        demo.admin("pool", "apply", POOL, "--failback", "manual")
        with AckWriter(demo.ports["rw"], APP_USER, APP_PASSWORD, TAG) as writer:
            time.sleep(1.0)
            print("run  from -> to  command s  write pause s  late writes")
            for run in range(1, args.runs + 1):
                source, target = (1, 2) if run % 2 else (2, 1)
                took, pause, run_late = switch(demo, writer, source, target)
                pauses.append(pause)
                late += run_late
                print(
                    f"{run:3d}  node{source} -> node{target}  {took:9.2f}  {pause:13.2f}"
                    f"  {run_late:11d}"
                )
        lost = lost_of(demo, writer)
        acked = len(writer.acks)
    print(f"write pause over {len(pauses)} switchovers: {summary(pauses)}")
    print(
        f"bound 2 x interval + agent-inter + 1 s = 2 x {INTERVAL:.0f} + {AGENT_INTER:.0f} + 1 = "
        f"{BOUND:.0f} s; over it: {sum(p > BOUND for p in pauses)}"
    )
    print(f"acknowledged writes: {acked}; lost: {lost}; late on the old ACTIVE: {late}")
    return 1 if lost or late or any(p > BOUND for p in pauses) else 0


if __name__ == "__main__":
    sys.exit(main())
