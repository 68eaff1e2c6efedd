"""The Redis key schema: every key mpp-agent uses, built here and nowhere else.

Every key of a pool carries the pool's hash tag (``{pool}``) so that all of a pool's keys live in
one Redis Cluster slot and a Lua script may touch them together. ``ns`` is the ``--namespace``
prefix (default ``mpp``) that lets deployments share one Redis.

==============================  ======  ===========================  ============================
key                             type    TTL                          written by
==============================  ======  ===========================  ============================
``ns:pools``                    set     none                         mpp-admin pool create/remove
``ns:{pool}:pool``              hash    none                         commit_pool.lua,
                                                                     create_pool.lua (fields ``doc``
                                                                     = the pool as JSON,
                                                                     ``version``, ``round`` =
                                                                     last ticked round)
``ns:{pool}:obs:<round>``       hash    a few intervals              record_observation.lua: one
                                                                     field per poller id, its
                                                                     observations of that round
``ns:{pool}:pollers``           zset    members pruned on expiry     record_observation.lua:
                                                                     poller id -> heartbeat expiry
                                                                     (ms, Redis time); a round
                                                                     waits for them when no
                                                                     observers are assigned
``ns:{pool}:metrics``           hash    a few intervals              record_observation.lua: node
                                                                     -> last probe metrics (JSON)
``ns:{pool}:events``            stream  bounded length (MAXLEN ~)    commit_pool.lua,
                                                                     create_pool.lua,
                                                                     remove_pool.lua
                                                                     (mpp-hooks' consumer groups
                                                                     read it: XREADGROUP, XACK)
``ns:hooks:dead``               stream  bounded length (MAXLEN ~)    mpp-hooks: events whose hook
                                                                     kept failing (dead letters)
``ns:pollers``                  zset    members pruned on expiry     mpp-poller heartbeat: poller
                                                                     id -> expiry (ms)
``ns:poller:<id>``              string  a few intervals              mpp-poller heartbeat: JSON of
                                                                     its last cycle
``ns:observers``                zset    members pruned on expiry     mpp-poller heartbeat (pollers
                                                                     not pinned by ``--pools``):
                                                                     id -> expiry (ms); pools are
                                                                     assigned over them
==============================  ======  ===========================  ============================

Pub/sub channel ``ns:notify``: every commit publishes the pool's name (mpp-agent listens; a
Redis Cluster delivers it to a subscriber on any node).

On a Redis Cluster each pool's keys share the slot of its tag; ``ns:pools``, ``ns:pollers``,
``ns:observers`` and ``ns:poller:<id>`` are keys of their own, never used in one command with
another slot's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "mpp"


@dataclass(frozen=True)
class Keys:
    """Key builder for one namespace."""

    namespace: str = DEFAULT_NAMESPACE

    def pools(self) -> str:
        return f"{self.namespace}:pools"

    def pool(self, pool: str) -> str:
        return f"{self._tag(pool)}:pool"

    def observations(self, pool: str, round_: int) -> str:
        return f"{self._tag(pool)}:obs:{round_}"

    def pool_pollers(self, pool: str) -> str:
        return f"{self._tag(pool)}:pollers"

    def metrics(self, pool: str) -> str:
        return f"{self._tag(pool)}:metrics"

    def events(self, pool: str) -> str:
        return f"{self._tag(pool)}:events"

    def hooks_dead(self) -> str:
        return f"{self.namespace}:hooks:dead"

    def pollers(self) -> str:
        return f"{self.namespace}:pollers"

    def observers(self) -> str:
        return f"{self.namespace}:observers"

    def poller(self, poller_id: str) -> str:
        return f"{self.namespace}:poller:{poller_id}"

    def notify_channel(self) -> str:
        return f"{self.namespace}:notify"

    def _tag(self, pool: str) -> str:
        return f"{self.namespace}:{{{pool}}}"
