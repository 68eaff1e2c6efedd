"""The only Redis I/O of mpp-agent: pool state, observations, events, heartbeats.

Every change to a pool is a compare-and-set on the pool's version inside one Lua script
(``lua/*.lua``); a writer that loses the race re-reads and, where that is safe, tries again a
bounded number of times. Lua return codes become typed exceptions here. Policy (what the new
state is) stays in Python: the scripts only fence and write.

Redis URLs: ``redis://``, ``rediss://`` (TLS), ``unix://`` and
``redis+sentinel://h1:26379,h2:26379/<master>/<db>``. The password comes from the URL, the
environment (``MPP_REDIS_PASSWORD``) or a file, and never appears in a log line or repr.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import redis
import redis.sentinel

from mpp_agent.codec import (
    DocumentError,
    event_from_json,
    event_to_json,
    observations_from_json,
    observations_to_json,
    pool_from_doc,
    pool_to_doc,
)
from mpp_agent.config import PoolConfig, new_pool
from mpp_agent.keys import DEFAULT_NAMESPACE, Keys
from mpp_agent.model import Event, EventKind, NodeId, Observation, PoolState
from mpp_agent.state import AdminResult, expire_overrides

log = logging.getLogger("mpp.store")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
EVENTS_MAXLEN = 10_000
ADMIN_RETRIES = 20
SOCKET_TIMEOUT = 2.0

# Errors that mean "Redis is not reachable right now" (as opposed to a bug or a refusal).
REDIS_DOWN_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.sentinel.MasterNotFoundError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
)


class StoreError(Exception):
    """Base of the store's refusals."""


class UnknownPool(StoreError):
    def __init__(self, pool: str) -> None:
        super().__init__(f"No pool named {pool!r}.")
        self.pool = pool


class PoolExists(StoreError):
    def __init__(self, pool: str) -> None:
        super().__init__(f"Pool {pool!r} already exists (use 'pool apply' to change it).")
        self.pool = pool


class Conflict(StoreError):
    """A compare-and-set kept losing to other writers."""


# --------------------------------------------------------------------------- connecting


def redact_url(url: str) -> str:
    """The URL with any password replaced, for log lines and error messages."""
    parts = urlsplit(url)
    if parts.password is not None:
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}:***@{parts.netloc.rsplit('@', 1)[1]}")
    if "password" in parts.query.lower():  # redis-py also takes ?password=...
        query = [
            f"{k}=***" if k.lower() == "password" else f"{k}={v}"
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query="&".join(query))
    return urlunsplit(parts)


def read_password(password_file: str | None = None) -> str | None:
    """The Redis password from a file (first line) or ``MPP_REDIS_PASSWORD``, if any."""
    if password_file:
        lines = Path(password_file).read_text().splitlines()
        return lines[0] if lines else None
    return os.environ.get("MPP_REDIS_PASSWORD") or None


def connect(url: str, password: str | None = None) -> redis.Redis:
    """A client for ``url``; ``password`` (from env or file) applies if the URL has none."""
    parts = urlsplit(url)
    if parts.scheme == "redis+sentinel":
        return connect_sentinel(url, password)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise StoreError(
            f"Unsupported Redis URL scheme {parts.scheme!r}: use redis://, rediss://, unix:// "
            "or redis+sentinel://"
        )
    extra: dict[str, Any] = {}
    if password and parts.password is None:
        extra["password"] = password
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
            **extra,
        )
    except ValueError as exc:
        raise StoreError(f"Bad Redis URL {redact_url(url)}: {exc}") from None


def connect_sentinel(url: str, password: str | None) -> redis.Redis:
    """``redis+sentinel://[:password@]h1:p1,h2:p2/<master>/<db>``."""
    parts = urlsplit(url)
    hosts_part = parts.netloc.rsplit("@", 1)[-1]
    path = [p for p in parts.path.split("/") if p]
    if not hosts_part or not path:
        raise StoreError(
            f"Bad Sentinel URL {redact_url(url)}: expected redis+sentinel://h1:p1,h2:p2/<master>/<db>"
        )
    sentinels = []
    for item in hosts_part.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise StoreError(f"Bad Sentinel address {item!r} in {redact_url(url)}")
        sentinels.append((host, int(port)))
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    secret = unquote(parts.password) if parts.password else password
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        socket_timeout=SOCKET_TIMEOUT,
        sentinel_kwargs={"password": secret, "socket_timeout": SOCKET_TIMEOUT},
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        path[0], db=db, password=secret, socket_timeout=SOCKET_TIMEOUT
    )
    return client


def load_script(name: str) -> str:
    return resources.files("mpp_agent").joinpath("lua", f"{name}.lua").read_text()


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class PollerInfo:
    poller_id: str
    alive: bool
    info: dict[str, Any]


@dataclass(frozen=True)
class RoundRecord:
    """What ``record_observation.lua`` said about a round after recording."""

    pool: str
    round: int
    live: int
    reported: int

    @property
    def is_complete(self) -> bool:
        return self.reported >= self.live


class Store:
    """Pool state in Redis for one namespace."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        # redis-py's return types are unions over decode modes; this client never decodes.
        self.client: Any = client
        self.keys = Keys(namespace)
        # register_script costs no round trip and reloads itself after NOSCRIPT.
        self._commit = client.register_script(load_script("commit_pool"))
        self._create = client.register_script(load_script("create_pool"))
        self._remove = client.register_script(load_script("remove_pool"))
        self._record = client.register_script(load_script("record_observation"))

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_REDIS_URL,
        namespace: str = DEFAULT_NAMESPACE,
        password: str | None = None,
    ) -> Store:
        return cls(connect(url, password if password is not None else read_password()), namespace)

    def __repr__(self) -> str:
        return f"Store(namespace={self.keys.namespace!r})"

    @property
    def notify_channel(self) -> str:
        return self.keys.notify_channel()

    # ---------------------------------------------------------------- reading

    def server_time(self) -> float:
        """Redis server time in seconds: the only clock rounds are cut by."""
        seconds, micros = self.client.time()
        return float(seconds) + float(micros) / 1e6

    def pool_names(self) -> list[str]:
        return sorted(m.decode() for m in self.client.smembers(self.keys.pools()))

    def load_pools(self, names: Iterable[str] | None = None) -> list[PoolState]:
        """The named pools (default all) in one round trip; missing ones are left out."""
        names = self.pool_names() if names is None else list(names)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.pool(name))
        return decode_pools(pipe.execute())

    def load_pool(self, name: str) -> PoolState:
        pool = decode_pool(self.client.hgetall(self.keys.pool(name)))
        if pool is None:
            raise UnknownPool(name)
        return pool

    def events(
        self, pool: str, count: int = 100, after: str = "-"
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``count`` events of a pool after stream id ``after`` (exclusive), oldest first."""
        start = "-" if after == "-" else f"({after}"
        rows = self.client.xrange(self.keys.events(pool), min=start, count=count)
        return [(rid.decode(), event_from_json(fields[b"event"])) for rid, fields in rows]

    def last_events(self, pool: str, count: int) -> list[tuple[str, dict[str, Any]]]:
        rows = self.client.xrevrange(self.keys.events(pool), count=count)
        return [(rid.decode(), event_from_json(fields[b"event"])) for rid, fields in reversed(rows)]

    def metrics(self, pool: str) -> dict[str, dict[str, Any]]:
        raw = self.client.hgetall(self.keys.metrics(pool))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def round_observations(self, pool: str, round_: int) -> dict[str, dict[NodeId, Observation]]:
        return decode_reports(self.client.hgetall(self.keys.observations(pool, round_)))

    # ---------------------------------------------------------------- pools

    def create_pool(self, config: PoolConfig, actor: str = "admin") -> PoolState:
        pool = new_pool(config)
        event = Event(EventKind.CONFIGURE, pool.name, message=f"pool created by {actor}")
        created = self._create(
            keys=[self.keys.pool(pool.name), self.keys.events(pool.name)],
            args=[
                pool_to_doc(pool),
                EVENTS_MAXLEN,
                self.notify_channel,
                pool.name,
                event_to_json(event, actor, self.server_time()),
            ],
        )
        self.client.sadd(self.keys.pools(), pool.name)
        if not created:
            raise PoolExists(pool.name)
        return self.load_pool(pool.name)

    def remove_pool(self, name: str) -> None:
        for _ in range(ADMIN_RETRIES):
            pool = self.load_pool(name)
            k = self.keys
            result = self._remove(
                keys=[k.pool(name), k.events(name), k.metrics(name), k.pool_pollers(name)],
                args=[pool.version, self.notify_channel, name],
            )
            if result == 1:
                self.client.srem(k.pools(), name)
                return
            if result == 0:
                raise UnknownPool(name)
        raise Conflict(f"Pool {name} kept changing while removing it; try again.")

    def admin(
        self,
        name: str,
        change: Callable[[PoolState], AdminResult],
        actor: str = "admin",
    ) -> AdminResult:
        """Apply an admin transition atomically: read, change, compare-and-set, retry if beaten.

        ``change`` may raise (e.g. ``AdminRefused``): nothing is written then."""
        for _ in range(ADMIN_RETRIES):
            pool = self.load_pool(name)
            now = self.server_time()
            result = change(expire_overrides(pool, now))
            # A new interval re-numbers the rounds (round = time // interval): start afresh.
            renumber = "=-1" if result.pool.interval != pool.interval else None
            ok, _ = self.commit(pool, result.pool, result.events, actor, now, renumber)
            if ok:
                return result
        raise Conflict(f"Pool {name} kept changing under concurrent writers; try again.")

    def commit(
        self,
        before: PoolState,
        after: PoolState,
        events: Sequence[Event],
        actor: str,
        now: float,
        round_: int | str | None,
    ) -> tuple[bool, str]:
        """Compare-and-set ``after`` over ``before``. Returns (committed, reason-if-not).

        ``round_`` is the tick's round (refused unless newer than the last), None for an admin
        change, or ``"=<n>"`` to re-number the rounds.

        Raises UnknownPool if the pool is gone."""
        tag = round_ if isinstance(round_, int) else None
        payload = [event_to_json(e, actor, now, tag) for e in events]
        result = self._commit(
            keys=[self.keys.pool(before.name), self.keys.events(before.name)],
            args=[
                before.version,
                "" if round_ is None else round_,
                pool_to_doc(after),
                EVENTS_MAXLEN,
                self.notify_channel,
                before.name,
                len(payload),
                *payload,
            ],
        )
        if int(result[0]) == 1:
            return True, ""
        reason = result[1].decode()
        if reason == "missing":
            raise UnknownPool(before.name)
        return False, reason

    # ---------------------------------------------------------------- pollers

    def record_observations(
        self,
        records: Sequence[tuple[str, int, dict[NodeId, Observation], dict[str, str]]],
        poller_id: str,
        now: float,
        ttl: float,
        heartbeat_expiry: float,
    ) -> list[RoundRecord]:
        """Record this poller's observations for several (pool, round)s in one round trip.

        Each record is (pool, round, observations, metrics JSON by node)."""
        pipe = self.client.pipeline(transaction=False)
        for pool, round_, observations, metrics in records:
            flat = [x for item in metrics.items() for x in item]
            self._record(
                keys=[
                    self.keys.observations(pool, round_),
                    self.keys.pool_pollers(pool),
                    self.keys.metrics(pool),
                ],
                args=[
                    poller_id,
                    observations_to_json(observations),
                    int(ttl * 1000),
                    int(now * 1000),
                    int(heartbeat_expiry * 1000),
                    len(metrics),
                    *flat,
                ],
                client=pipe,
            )
        replies = pipe.execute()
        return [
            RoundRecord(pool, round_, int(live), int(reported))
            for (pool, round_, _, _), (live, reported) in zip(records, replies, strict=True)
        ]

    def load_round(
        self, names: Sequence[tuple[str, int]]
    ) -> list[tuple[PoolState | None, dict[str, dict[NodeId, Observation]]]]:
        """For each (pool, round): the pool and every poller's observations of that round."""
        pipe = self.client.pipeline(transaction=False)
        for name, round_ in names:
            pipe.hgetall(self.keys.pool(name))
            pipe.hgetall(self.keys.observations(name, round_))
        raw = pipe.execute()
        out: list[tuple[PoolState | None, dict[str, dict[NodeId, Observation]]]] = []
        for i, (name, _) in enumerate(names):
            try:
                pool = decode_pool(raw[2 * i])
            except DocumentError as exc:
                log.error("not ticking pool %s: %s", name, exc)
                pool = None
            out.append((pool, decode_reports(raw[2 * i + 1])))
        return out

    def heartbeat(self, poller_id: str, info: dict[str, Any], now: float, ttl: float) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.poller(poller_id), json.dumps(info), px=int(ttl * 1000))
        pipe.zadd(self.keys.pollers(), {poller_id: (now + ttl) * 1000})
        pipe.zremrangebyscore(self.keys.pollers(), "-inf", f"({int(now * 1000) - 3600_000}")
        pipe.execute()

    def leave(self, poller_id: str, pools: Iterable[str]) -> None:
        """A poller stopping gracefully: it stops counting as live at once."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.poller(poller_id))
        pipe.zrem(self.keys.pollers(), poller_id)
        for pool in pools:
            pipe.zrem(self.keys.pool_pollers(pool), poller_id)
        pipe.execute()

    def pollers(self) -> list[PollerInfo]:
        now_ms = self.server_time() * 1000
        members = self.client.zrange(self.keys.pollers(), 0, -1, withscores=True)
        if not members:
            return []
        infos = self.client.mget([self.keys.poller(m.decode()) for m, _ in members])
        return [
            PollerInfo(
                m.decode(), score > now_ms and raw is not None, json.loads(raw) if raw else {}
            )
            for (m, score), raw in zip(members, infos, strict=True)
        ]


def decode_pool(raw: dict[bytes, bytes]) -> PoolState | None:
    """The pool of a raw pool hash; None if absent; DocumentError if unreadable."""
    if not raw or b"doc" not in raw:
        return None
    try:
        version, round_ = int(raw[b"version"]), int(raw[b"round"])
    except (KeyError, ValueError) as exc:
        raise DocumentError(f"unreadable pool hash: {exc!r}") from None
    return pool_from_doc(raw[b"doc"], version, round_)


def decode_pools(raws: Iterable[dict[bytes, bytes]]) -> list[PoolState]:
    """Every readable pool; an unreadable one is logged and left out, so that one bad
    document never stops the pollers or the agent from serving the others."""
    pools = []
    for raw in raws:
        try:
            pool = decode_pool(raw)
        except DocumentError as exc:
            log.error("skipping a pool: %s", exc)
            continue
        if pool is not None:
            pools.append(pool)
    return pools


def decode_reports(raw: dict[bytes, bytes]) -> dict[str, dict[NodeId, Observation]]:
    """Every poller's readable observations of a round; an unreadable report is left out."""
    reports = {}
    for poller, text in raw.items():
        try:
            reports[poller.decode()] = observations_from_json(text)
        except DocumentError as exc:
            log.error("ignoring the report of poller %s: %s", poller.decode(), exc)
    return reports
