"""Benchmark of a login probe: PyMySQL's SET NAMES in a round trip of its own, or in front of
the probe's statements (the poller's way), side by side in one run.

A probe that logs in (a pool without ``keep_connections``, and every renewal of a kept
connection) costs a TCP connect, the handshake, and its statements. PyMySQL sends ``SET NAMES``
after the handshake and waits for its answer; the poller sends it in front of the probe's
statements, in the same query. One real MariaDB server, the probe of a node on it run over and
over, the two ways alternately in blocks: per probe, the wall time (median and 99th
percentile), the prober's CPU and the server's CPU (``/proc/<pid>/stat``), and the statements
the server counted (``Questions``: the same in both ways, only the round trips differ).

Run: ``.venv/bin/python bench/login.py`` (needs mariadbd; about a minute).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpp_agent import probe  # noqa: E402
from mpp_agent.model import NodeId  # noqa: E402
from mpp_agent.probe import ProbeSettings, probe_node  # noqa: E402
from tests.servers import (  # noqa: E402
    MONITOR_DB,
    MONITOR_PASSWORD,
    MONITOR_USER,
    MariaDBCluster,
    MariaDBNode,
)

SETTINGS = ProbeSettings(MONITOR_USER, MONITOR_PASSWORD, MONITOR_DB, 2.0, 2.0)
TICKS = os.sysconf("SC_CLK_TCK")

_connect: Callable[..., Any] = probe._connect


def _own_round_trip(node: NodeId, settings: ProbeSettings, *, names_deferred: bool) -> Any:
    """PyMySQL's own way: SET NAMES sent and answered before the probe's statements."""
    return _connect(node, settings, names_deferred=False)


WAYS: dict[str, Callable[..., Any]] = {
    "SET NAMES on its own": _own_round_trip,
    "SET NAMES in front": _connect,
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def questions(server: MariaDBNode) -> int:
    return int(server.sql("SHOW GLOBAL STATUS LIKE 'Questions'")[0][1])


def block(server: MariaDBNode, way: Callable[..., Any], probes: int) -> dict[str, Any]:
    """``probes`` login probes of the server, one after the other, the given way."""
    probe._connect = way
    node = NodeId("127.0.0.1", server.port)
    walls: list[float] = []
    asked, cpu, served = questions(server), time.process_time(), cpu_seconds(server.pid)
    for _ in range(probes):
        result = probe_node(node, SETTINGS)
        if not result.observation.is_healthy:
            raise SystemExit(f"probe failed: {result.observation.message}")
        walls.append(result.latency)
    return {
        "walls": walls,
        "cpu": time.process_time() - cpu,
        "server": cpu_seconds(server.pid) - served,
        "questions": questions(server) - asked - 1,  # less this block's own first SHOW STATUS
    }


def run(server: MariaDBNode, probes: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    blocks: dict[str, list[dict[str, Any]]] = {name: [] for name in WAYS}
    for way in WAYS.values():
        block(server, way, 20)  # warm both ways up
    for _ in range(rounds):
        for name, way in WAYS.items():
            blocks[name].append(block(server, way, probes))
    probe._connect = _connect
    return blocks


def report(title: str, blocks: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n{title}")
    print(
        f"{'way':<24}{'probes':>8}{'wall ms':>10}{'p99 ms':>9}{'prober us':>11}"
        f"{'server us':>11}{'Questions':>11}"
    )
    for name, runs in blocks.items():
        walls = sorted(w for run in runs for w in run["walls"])
        count = len(walls)
        p99 = walls[min(count - 1, int(count * 0.99))]
        cpu = sum(run["cpu"] for run in runs) / count
        served = sum(run["server"] for run in runs) / count
        asked = sum(run["questions"] for run in runs) / count
        print(
            f"{name:<24}{count:>8}{statistics.median(walls) * 1000:>10.2f}{p99 * 1000:>9.2f}"
            f"{cpu * 1e6:>11.0f}{served * 1e6:>11.0f}{asked:>11.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=500, help="probes per block")
    parser.add_argument("--rounds", type=int, default=4, help="blocks of each way")
    parser.add_argument("--threads", default="pool-of-threads", help="MariaDB thread handling")
    args = parser.parse_args()
    cluster = MariaDBCluster(size=2)
    cluster.node1.extra_options = (f"--thread-handling={args.threads}",)
    try:
        cluster.start()
        server = cluster.node1
        report(
            f"{args.probes * args.rounds} login probes each way",
            run(server, args.probes, args.rounds),
        )
    finally:
        cluster.cleanup()


if __name__ == "__main__":
    main()
