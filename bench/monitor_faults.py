#!/usr/bin/env python3
"""Benchmark of the monitor's own faults against the demo's system: does the monitor ever take a
healthy pool down, and how soon do writes come back after every node died at once?

It starts the demo's system once (``scripts/demo.py``: MariaDB x2 master-master, Redis, two
``mpp-poller``s, ``mpp-agent``, HAProxy running ``haproxy/haproxy.cfg``; pool interval 1 s,
M = 4), then measures, in this order:

1. **Wrong password.** Both good pollers are stopped and one poller runs with a wrong MySQL
   password for 8 intervals. Printed: the rounds committed meanwhile, how many nodes changed
   state, status or R (must be 0), the poller's WARNING lines, and what ``list`` shows.
2. **Lagging standby.** ``CHANGE MASTER TO MASTER_DELAY=6`` on node2 while writes go through
   HAProxy every 50 ms for 20 s. Printed: the highest lag the pollers saw, and the rounds in
   which node2 was not STANDBY/OK (must be 0 below the pool's max_lag of 30 s).
3. **Every node down at once.** ``kill -9`` of both MariaDB nodes, 8 intervals of outage, both
   restarted. Printed: node1's state during the outage (must stay ACTIVE) and the time from the
   restart to the first write through HAProxy that lands on node1, with no ``mpp-admin``
   command (the number to compare with M x interval + agent-inter + 1 s).

Exits 1 if any of the "must" conditions fails. Everything is stopped at the end, by pid.

Run: ``.venv/bin/python bench/monitor_faults.py``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mpp_agent.model import PoolState, State, Status  # noqa: E402
from scripts.demo import (  # noqa: E402 - after the path set-up
    BIN,
    BUDGET,
    INTERVAL,
    MONITOR_USER,
    Demo,
    DemoError,
    measure_switch,
    running_demo,
    stop_pid,
    wait_until,
)

OUTAGE_ROUNDS = 8


def node_view(pool: PoolState) -> list[tuple[str, str, str, int]]:
    return [(str(n.node), n.state.value, n.status.value, n.r) for n in pool.nodes]


def spawn_poller(demo: Demo, name: str, password: str) -> None:
    password_file = demo.workdir / f"{name}.pw"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    argv = [
        str(BIN / "mpp-poller"),
        "--poller-id", f"bench-{name}",
        "--mysql-user", MONITOR_USER,
        "--mysql-password-file", str(password_file),
    ]  # fmt: skip
    demo.spawn(name, argv, env=demo.env())
    time.sleep(1.0)
    demo.check_alive(name)  # the default options must serve a 1 s pool


def wrong_password(demo: Demo) -> bool:
    print("1. wrong MySQL password: the only poller running has a wrong password")
    good = (demo.workdir / "monitor.pw").read_text().strip()
    for name in ("poller1", "poller2"):
        stop_pid(demo.pids[name], demo.markers[name])
    spawn_poller(demo, "badpoller", "not-" + good)
    before = demo.pool()
    time.sleep(OUTAGE_ROUNDS * INTERVAL + 0.5)
    after = demo.pool()
    changed = sum(a != b for a, b in zip(node_view(before), node_view(after), strict=True))
    log = (demo.workdir / "badpoller.log").read_text()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    rounds = after.last_round - before.last_round
    print(f"   rounds committed meanwhile: {rounds} (must be about {OUTAGE_ROUNDS})")
    print(f"   nodes whose state, status or R changed: {changed} (must be 0)")
    print(f"   WARNING lines of the poller in {OUTAGE_ROUNDS} intervals: {len(warnings)}")
    for line in warnings:
        print(f"     {line[:160]}")
    for line in demo.admin("list").splitlines():
        print(f"   | {line.rstrip()}")
    stop_pid(demo.pids["badpoller"], demo.markers["badpoller"])
    for i in (1, 2):
        spawn_poller(demo, f"poller{i}", good)
    wait_until(demo.is_steady, 30, "node1 ACTIVE and node2 STANDBY again")
    return changed == 0 and rounds >= OUTAGE_ROUNDS - 2


def lagging_standby(demo: Demo) -> bool:
    print("2. lagging standby: MASTER_DELAY=6 on node2 under writes through HAProxy for 20 s")
    demo.sql(2, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=6; START SLAVE")
    stop = threading.Event()
    writes = [0]

    def write_load() -> None:
        while not stop.is_set():
            if demo.write(tag="lag", timeout=1.0)[0] is not None:
                writes[0] += 1
            time.sleep(0.05)

    loader = threading.Thread(target=write_load, daemon=True)
    loader.start()
    bad_rounds: set[int] = set()
    max_lag = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pool = demo.pool()
        standby = pool.nodes[1]
        if (standby.state, standby.status) != (State.STANDBY, Status.OK):
            bad_rounds.add(pool.last_round)
        metrics = demo.store().metrics(pool.name).get(demo.node_id(2), {})
        lag = metrics.get("lag", metrics.get("seconds_behind"))
        if isinstance(lag, int | float):
            max_lag = max(max_lag, int(lag))
        time.sleep(0.2)
    stop.set()
    loader.join()
    demo.sql(2, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE")
    print(f"   writes through HAProxy: {writes[0]}; highest lag seen by the pollers: {max_lag} s")
    print(f"   rounds with node2 not STANDBY/OK: {len(bad_rounds)} (must be 0)")
    wait_until(lambda: demo.is_replicating(2), 20, "node2 replicating")
    return not bad_rounds and max_lag > 0


def whole_outage(demo: Demo) -> bool:
    print(f"3. every node down: kill -9 of node1 and node2, {OUTAGE_ROUNDS} intervals, restart")
    demo.kill9(1)
    demo.kill9(2)
    states = set()
    end = time.monotonic() + OUTAGE_ROUNDS * INTERVAL
    while time.monotonic() < end:
        states.add(demo.pool().nodes[0].state.value)
        time.sleep(0.2)
    print(f"   node1 during the outage: {', '.join(sorted(states))} (must stay ACTIVE)")
    for n in (1, 2):
        demo.start_node(n)
    start = time.monotonic()
    result = measure_switch(demo, 1, start, timeout=60)
    print(
        f"   first write on node1 {result.seconds:.2f} s after both were restarted, with no "
        f"mpp-admin command (M x interval + agent-inter + 1 s = {BUDGET:.0f} s)"
    )
    for line in demo.admin("list").splitlines():
        print(f"   | {line.rstrip()}")
    return states == {"ACTIVE"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", action="store_true", help="show the demo's start-up steps")
    args = parser.parse_args(argv)

    def quiet(_: str) -> None:
        pass

    with tempfile.TemporaryDirectory(prefix="mppbench-") as state_dir:
        say = print if args.verbose else quiet
        try:
            with running_demo(Path(state_dir), say=say) as demo:
                results = [wrong_password(demo), lagging_standby(demo), whole_outage(demo)]
        except DemoError as exc:
            print(f"bench/monitor_faults.py: {exc}", file=sys.stderr)
            return 1
    print("all conditions held" if all(results) else "a condition FAILED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
