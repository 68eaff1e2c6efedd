"""Our own daemons as real subprocesses for tests: mpp-poller (and helpers to watch its ticks).

The pytest process stays unpatched by gevent; every poller runs as its own process, started
with the console script exactly as an operator would, and is stopped by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from mpp_agent.config import PoolConfig
from mpp_agent.model import NodeId, NodeType, PoolState, State
from mpp_agent.store import Store
from tests.servers import MONITOR_PASSWORD, MONITOR_USER, short_tempdir, spawn, terminate

# Probe timeouts that fit a 1 s interval (the deadline is half of it).
FAST_PROBE = ["--connect-timeout", "0.3", "--read-timeout", "0.3", "--probe-timeout", "0.45"]


@dataclass
class PollerProcess:
    redis_url: str
    poller_id: str
    namespace: str = "mpp"
    user: str = MONITOR_USER
    password: str = MONITOR_PASSWORD
    extra: list[str] = field(default_factory=list)
    workdir: Path = field(default_factory=short_tempdir)
    probe_options: list[str] = field(default_factory=lambda: list(FAST_PROBE))  # []: defaults

    def __post_init__(self) -> None:
        self.log = self.workdir / f"{self.poller_id}.log"
        self.password_file = self.workdir / "mysql.pw"
        self.password_file.write_text(self.password + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        exe = shutil.which("mpp-poller") or "mpp-poller"
        return [
            exe,
            "--redis-url",
            self.redis_url,
            "--namespace",
            self.namespace,
            "--poller-id",
            self.poller_id,
            "--mysql-user",
            self.user,
            "--mysql-password-file",
            str(self.password_file),
            *self.probe_options,
            *self.extra,
        ]

    def start(self) -> PollerProcess:
        self.proc = spawn(self.argv(), self.log)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        terminate(self.proc, sig)
        code: int | None = self.proc.returncode
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def ask_agent(port: int, line: str) -> str:
    """One agent-check request (``<pool> <node> <role>``) to the mpp-agent on ``port``: its
    reply line, or ``error ...`` if it cannot be reached."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"{line}\n".encode())
            return s.makefile("rb").readline().decode().strip()
    except OSError as exc:
        return f"error {exc!r}"


def watch_ticks(
    store: Store,
    pool: str,
    until: Callable[[list[PoolState]], bool],
    timeout: float,
    poll: float = 0.02,
    then: Callable[[], object] | None = None,
) -> list[PoolState]:
    """Every distinct committed round of ``pool`` (one snapshot per round) until ``until``
    holds over the list or ``timeout`` passes (then AssertionError with what was seen);
    ``then`` is called once the first snapshot is taken (a poller started by it cannot tick
    before the watch has begun)."""
    seen: list[PoolState] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = store.load_pool(pool)
        if not seen or state.last_round != seen[-1].last_round:
            seen.append(state)
            if until(seen):
                return seen
        if then is not None:
            then()
            then = None
        time.sleep(poll)
    raise AssertionError(f"condition not reached in {timeout}s; ticks seen: {describe(seen)}")


def describe(pools: list[PoolState]) -> str:
    return "\n".join(
        f"round {p.last_round} v{p.version}: "
        + "; ".join(f"{n.node} {n.requests}/{n.status}/{n.state}/{n.message!r}" for n in p.nodes)
        for p in pools
    )


def row(pool: PoolState, index: int) -> tuple[int | None, str, str, str | None]:
    """A node as MPP's scenarios write it: R / STATUS / STATE / message."""
    n = pool.nodes[index]
    return (n.requests, n.status.value, n.state.value, n.message)


def create_pools(
    store: Store, nodes: Sequence[NodeId], size: int, name: str, **settings: Any
) -> list[str]:
    """Pools of ``size`` of ``nodes`` each, in order (the first of each PRIMARY, the others
    SECONDARY; nodes past the last whole pool left out), named ``name.format(index)``, with
    M = 4, a 2 s interval and the other ``settings`` (``PoolConfig``'s fields); their names."""
    names = []
    for p in range(len(nodes) // size):
        members = nodes[p * size : (p + 1) * size]
        kinds = [NodeType.PRIMARY] + [NodeType.SECONDARY] * (size - 1)
        config = PoolConfig(name.format(p), tuple(zip(members, kinds, strict=True)), 4, 2.0)
        store.create_pool(replace(config, **settings))
        names.append(config.name)
    return names


class Committed(Protocol):
    """What a reading of a pool says of its commits: its version and last committed round."""

    @property
    def version(self) -> int: ...

    @property
    def last_round(self) -> int: ...


def rounds_missed(before: Committed, after: Committed) -> int:
    """The rounds of a pool that passed from ``before`` to ``after`` without a commit: its last
    round moved by the rounds that passed, its version by the commits (nothing else writing
    the pool meanwhile)."""
    return (after.last_round - before.last_round) - (after.version - before.version)


def pools_steady(store: Store, names: Sequence[str]) -> bool:
    """Whether every pool of ``names`` exists, its first node ACTIVE and no node failing."""
    pools = store.load_pools(names)
    return len(pools) == len(names) and all(
        p.nodes[0].state is State.ACTIVE and all(n.r == 0 for n in p.nodes) for p in pools
    )
