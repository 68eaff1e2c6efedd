#!/usr/bin/env python3
"""Benchmark of mpp-agent over loopback, side by side with a minimal gevent responder.

What it runs (all started and stopped here, nothing else needed but redis-server on PATH):

* a throwaway ``redis-server`` on a free port, with one pool of three nodes (ACTIVE, STANDBY,
  STANDBY) committed at the current round;
* ``mpp-agent`` (the real entry point, defaults except ``--read-timeout``) pinned to CPU 0;
* the *floor*: a minimal gevent ``StreamServer`` (this file, ``--floor-server``) that reads one
  chunk and writes a constant ``up\\n``; the same process shape as the agent, none of its work;
* the *idle holder* (a process on the other CPU): 1,000 connections opened to the server under
  test that send nothing, re-opened if closed;
* the *load generator* (a process on the other CPU): N concurrent clients, each doing HAProxy's
  probe (connect, send ``<pool> <node> <role>\\n``, read the line) in a loop on epoll, for each N
  in 1, 50 and 500. Latency is connect-start to reply line, per probe.

The server under test gets ``--read-timeout 30`` so the 1,000 idle connections really stay open
during a measurement (with the 1 s default the agent would close and the holder re-open them all
every second). Needs two CPUs for the one-core figure to mean anything.

Run: ``python bench/agent.py [--seconds 5]``; prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import multiprocessing as mp
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

IDLE_CONNECTIONS = 1000
CONCURRENCY = (1, 10, 50, 500)
SERVER_CPU = 0
CLIENT_CPU = 1
POOL = "bench_pool"
NODES = ("10.0.0.1:3306", "10.0.0.2:3306", "10.0.0.3:3306")
REQUESTS = [f"{POOL} {n} {r}\n".encode() for n in NODES for r in ("rw", "ro")]


# ---------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def pin(pid: int, cpu: int) -> None:
    if cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# the floor: a minimal gevent responder (runs in its own process)


def floor_server(port: int) -> None:
    from gevent import monkey

    monkey.patch_all()
    from gevent.pool import Pool
    from gevent.server import StreamServer

    def handle(sock: socket.socket, _address: object) -> None:
        try:
            sock.settimeout(30)
            sock.recv(257)
            sock.sendall(b"up\n")
        except OSError:
            pass
        finally:
            sock.close()

    StreamServer(("127.0.0.1", port), handle, spawn=Pool(4096), backlog=4096).serve_forever()


# ---------------------------------------------------------------------------------------------
# clients (run in their own processes, pinned to the other CPU)


def hold_idle(port: int, count: int, stop: EventType, ready: EventType) -> None:
    """Keep ``count`` connections open that never send anything."""
    pin(0, CLIENT_CPU)
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}
    reopened = 0

    def open_one() -> None:
        s = socket.create_connection(("127.0.0.1", port))
        socks[s.fileno()] = s
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)

    for _ in range(count):
        open_one()
    ready.set()
    while not stop.is_set():
        for fd, _ in ep.poll(0.2):
            ep.unregister(fd)
            socks.pop(fd).close()
            open_one()
            reopened += 1
    for s in socks.values():
        s.close()
    if reopened:
        print(f"    (idle holder re-opened {reopened} connections)", file=sys.stderr)


@dataclass
class Result:
    probes: int
    seconds: float
    latencies: list[float]
    total: int  # probes completed, warm-up included (for CPU per probe)
    errors: int
    bad: int


def load(port: int, concurrency: int, seconds: float, warmup: float) -> Result:
    """``concurrency`` clients probing in a loop on one epoll; runs in its own process."""
    pin(0, CLIENT_CPU)
    ep = select.epoll()
    addr = ("127.0.0.1", port)
    conns: dict[int, tuple[socket.socket, float, bytes, int]] = {}
    latencies: list[float] = []
    errors = bad = total = 0
    counter = 0
    linger0 = (1).to_bytes(4, "little") + (0).to_bytes(4, "little")

    def start() -> None:
        nonlocal counter
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)  # no TIME_WAIT pile-up
        request = REQUESTS[counter % len(REQUESTS)]
        counter += 1
        t0 = time.perf_counter()
        rc = s.connect_ex(addr)
        if rc not in (0, errno.EINPROGRESS):
            raise OSError(rc, os.strerror(rc))
        conns[s.fileno()] = (s, t0, request, 0)
        ep.register(s.fileno(), select.EPOLLOUT)

    for _ in range(concurrency):
        start()
    t_start = time.perf_counter()
    measure_from = t_start + warmup
    measure_to = measure_from + seconds
    buffers: dict[int, bytes] = {}
    while True:
        now = time.perf_counter()
        if now >= measure_to:
            break
        for fd, ev in ep.poll(1.0):
            s, t0, request, state = conns[fd]
            done = False
            if state == 0:
                if ev & (select.EPOLLERR | select.EPOLLHUP):
                    errors += 1
                    done = True
                else:
                    s.send(request)
                    conns[fd] = (s, t0, request, 1)
                    ep.modify(fd, select.EPOLLIN)
                    continue
            else:
                try:
                    data = buffers.pop(fd, b"") + s.recv(512)
                except OSError:
                    data, done = b"", True
                    errors += 1
                if not done and data.endswith(b"\n"):
                    t1 = time.perf_counter()
                    if t0 >= measure_from and t1 <= measure_to:
                        latencies.append(t1 - t0)
                    total += 1
                    if not data.startswith(b"up"):
                        bad += 1
                    done = True
                elif not done and not data:
                    errors += 1
                    done = True
                elif not done:
                    buffers[fd] = data
            if done:
                ep.unregister(fd)
                del conns[fd]
                s.close()
                start()
    for s, *_ in conns.values():
        s.close()
    return Result(len(latencies), seconds, latencies, total, errors, bad)


def run_load(port: int, concurrency: int, seconds: float) -> Result:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(load, (port, concurrency, seconds, 0.5))


# ---------------------------------------------------------------------------------------------
# set-up: redis, pool, agent


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pin(proc.pid, CLIENT_CPU)
    wait_port(port)
    return proc, f"redis://127.0.0.1:{port}/0"


def make_pool(url: str) -> None:
    from mpp_agent.config import parse_failoverpool
    from mpp_agent.model import PoolState, State
    from mpp_agent.state import AdminResult
    from mpp_agent.store import Store

    store = Store.from_url(url)
    spec = f"name:{POOL};primary:{NODES[0]};" + ";".join(f"secondary:{n}" for n in NODES[1:])
    store.create_pool(parse_failoverpool(spec, interval=600))

    def change(pool: PoolState) -> AdminResult:
        states = (State.ACTIVE, State.STANDBY, State.STANDBY)
        pairs = zip(pool.nodes, states, strict=True)
        nodes = tuple(replace(n, state=s, requests=i) for i, (n, s) in enumerate(pairs))
        return AdminResult(replace(pool, nodes=nodes), "", ())

    store.admin(POOL, change)
    pool = store.load_pool(POOL)
    now = store.server_time()
    store.commit(pool, pool, [], "bench", math.floor(now / pool.interval))


def start_agent(url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    agent = shutil.which("mpp-agent") or "mpp-agent"
    argv = [agent, "--redis-url", url, "--listen", f"127.0.0.1:{port}", "--read-timeout", "30",
            "--log-level", "WARNING"]  # fmt: skip
    log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    pin(proc.pid, SERVER_CPU)
    wait_port(port)
    for _ in range(100):  # until the snapshot is loaded
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(REQUESTS[0])
            if s.recv(256).startswith(b"up ready"):
                break
        time.sleep(0.05)
    else:
        raise RuntimeError("the agent never answered 'up ready'")
    return proc, port


def start_floor() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--floor-server", str(port)])
    pin(proc.pid, SERVER_CPU)
    wait_port(port)
    return proc, port


# ---------------------------------------------------------------------------------------------
# the run


Row = tuple[str, int, Result, float]


def measure(servers: dict[str, tuple[int, int]], seconds: float) -> list[Row]:
    """For each concurrency, each server in turn (interleaved: both see the same machine), with
    IDLE_CONNECTIONS idle connections held to every server throughout."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    holders = []
    for _, port in servers.values():
        ready = ctx.Event()
        holder = ctx.Process(target=hold_idle, args=(port, IDLE_CONNECTIONS, stop, ready))
        holder.start()
        ready.wait(30)
        holders.append(holder)
    time.sleep(2)  # let the servers accept them all and the holders go quiet
    rows = []
    try:
        for concurrency in CONCURRENCY:
            for name, (pid, port) in servers.items():
                cpu0 = cpu_seconds(pid)
                result = run_load(port, concurrency, seconds)
                rows.append((name, concurrency, result, cpu_seconds(pid) - cpu0))
                rate = result.probes / seconds
                print(f"  {name:6} c={concurrency:<4} {rate:8.0f}/s", file=sys.stderr)
    finally:
        stop.set()
        for holder in holders:
            holder.join(30)
    return rows


def table(rows: list[Row]) -> str:
    head = (f"{'server':8}{'clients':>8}{'probes/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'max ms':>9}{'CPU us/probe':>14}{'errors':>8}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for name, concurrency, r, cpu in rows:
        lat = sorted(r.latencies)
        p50 = statistics.median(lat) * 1000 if lat else math.nan
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else math.nan
        lines.append(
            f"{name:8}{concurrency:>8}{r.probes / r.seconds:>11.0f}{p50:>9.3f}{p99:>9.3f}"
            f"{(lat[-1] * 1000 if lat else math.nan):>9.2f}"
            f"{cpu / max(r.total, 1) * 1e6:>14.1f}{r.errors + r.bad:>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        floor_server(args.floor_server)
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = Path(tempfile.mkdtemp(prefix="mppbench"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_proc, url = start_redis(workdir)
        procs.append(redis_proc)
        make_pool(url)
        agent, agent_port = start_agent(url, workdir)
        procs.append(agent)
        floor, floor_port = start_floor()
        procs.append(floor)
        servers = {"floor": (floor.pid, floor_port), "agent": (agent.pid, agent_port)}
        rows = measure(servers, args.seconds)
        print(f"\nmpp-agent vs a constant 'up' gevent responder, loopback, "
              f"{IDLE_CONNECTIONS} idle connections held, server on CPU {SERVER_CPU}, "
              f"clients on CPU {CLIENT_CPU}, {args.seconds:g} s per row, "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")  # fmt: skip
        print(table(rows))
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
