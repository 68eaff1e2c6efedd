"""The Redis key schema: every key mpp-agent uses, built here and nowhere else.

Every key of a pool carries the pool's hash tag (``{pool}``) so that all of a pool's keys live in
one Redis Cluster slot and a Lua script may touch them together. ``ns`` is the ``--namespace``
prefix (default ``mpp``) that lets deployments share one Redis.

==============================  ======  ===========================  ============================
key                             type    TTL                          written by
==============================  ======  ===========================  ============================
``ns:pools``                    set     none                         create_pool.lua,
                                                                     remove_pool.lua: every
                                                                     pool's name (not on a Redis
                                                                     Cluster)
``ns:pools:{<tag>}``            set     none                         create_pool.lua,
                                                                     remove_pool.lua (Redis
                                                                     Cluster only): the names of
                                                                     the pools of one slot
``ns:pool-buckets``             set     none                         mpp-admin pool create (Redis
                                                                     Cluster only): the ``<tag>``
                                                                     of every bucket used
``ns:{pool}:pool``              hash    none                         commit_pool.lua,
                                                                     create_pool.lua (fields ``doc``
                                                                     = the pool as JSON,
                                                                     ``version``, ``round`` =
                                                                     last ticked round,
                                                                     ``head`` = "<version>
                                                                     <interval> <observers>
                                                                     <incarnation>" of that
                                                                     doc)
``ns:{pool}:obs:<round>``       hash    a few intervals              record_observation.lua: one
                                                                     field per poller id, its
                                                                     observations of that round
``ns:{pool}:pollers``           zset    members pruned on expiry     record_observation.lua:
                                                                     poller id -> heartbeat expiry
                                                                     (ms, by the script's TIME:
                                                                     the pool's shard); a round
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
                                                                     id -> expiry (ms, by the
                                                                     default clock: the shard of
                                                                     this key)
``ns:poller:<id>``              string  a few intervals              mpp-poller heartbeat: JSON of
                                                                     its last cycle
``ns:observers``                zset    members pruned on expiry     mpp-poller heartbeat (pollers
                                                                     not pinned by ``--pools``):
                                                                     id -> expiry (ms, default
                                                                     clock); pools are assigned
                                                                     over them
``ns:pool-changes``             string  none                         mpp-admin pool create and
                                                                     remove (Redis Cluster only):
                                                                     a counter bumped after each,
                                                                     so that readers re-read the
                                                                     buckets only when it moved
==============================  ======  ===========================  ============================

Pub/sub channel ``ns:notify``: every commit publishes the pool's name (mpp-agent listens; a
Redis Cluster delivers it to a subscriber on any node).

On a Redis Cluster each pool's keys share the slot of its tag; ``ns:pollers``,
``ns:observers``, ``ns:poller:<id>`` and ``ns:pool-buckets`` are keys of their own, never used in
one command with another slot's keys. The pool index is split there into one bucket per slot,
``ns:pools:{<tag>}``, whose ``<tag>`` (``slot_tag``) hashes to the slot of the pools it lists, so
the script that creates or removes a pool changes its index entry too. The directory
``ns:pool-buckets`` is only ever added to (before the pool is created): a listed bucket without
pools lists none, so no pool is ever missing from the index and no removed pool lingers in it.
Reading every bucket is a command per bucket (about one per pool): a process reads them again
when ``ns:pool-changes`` moved, and at least every ``INDEX_REFRESH`` seconds whatever it says
(the counter is bumped after the script, so a writer that died in between is made up for).

Times: what a pool's scripts store (pool heartbeats, event times) is their own ``TIME``, the
clock of the shard holding the pool. The keys no pool owns are stamped by the default clock,
that of the shard holding ``ns:pollers`` (``Store.server_time()``): every poller's liveness is
judged by that one clock.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

DEFAULT_NAMESPACE = "mpp"


@dataclass
class SlotTags:
    """For each Redis Cluster slot, the smallest decimal integer whose own slot it is (so
    ``{<tag>}`` puts a key in that slot): found by counting up once, remembered for good (every
    slot has one below 110,000)."""

    tags: dict[int, str] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    # Every process must find the same tag (a pool is removed from the bucket it was added
    # to): two threads counting at once could leave a larger one first.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, slot: int) -> str:
        if not 0 <= slot < REDIS_CLUSTER_HASH_SLOTS:
            raise ValueError(f"no Redis Cluster slot {slot}")
        with self.lock:
            while slot not in self.tags:
                text = str(next(self.counter))
                self.tags.setdefault(key_slot(text.encode()), text)
            return self.tags[slot]


SLOT_TAGS = SlotTags()


def slot_tag(slot: int) -> str:
    """The hash tag of the pool-index bucket of ``slot``."""
    return SLOT_TAGS.of(slot)


@dataclass(frozen=True)
class Keys:
    """Key builder for one namespace."""

    namespace: str = DEFAULT_NAMESPACE

    def pools(self) -> str:
        return f"{self.namespace}:pools"

    def pool_bucket(self, tag: str) -> str:
        """A Redis Cluster's pool-index bucket of the slot of ``tag``."""
        return f"{self.namespace}:pools:{{{tag}}}"

    def pool_changes(self) -> str:
        """A Redis Cluster's counter of pool creations and removals (``INDEX_REFRESH``)."""
        return f"{self.namespace}:pool-changes"

    def pool_buckets(self) -> str:
        """A Redis Cluster's directory of the pool-index buckets in use (their tags)."""
        return f"{self.namespace}:pool-buckets"

    def bucket_tag(self, pool: str) -> str:
        """The tag of the bucket that lists ``pool``: its slot is the slot of the pool's keys."""
        return slot_tag(key_slot(self.pool(pool).encode()))

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
