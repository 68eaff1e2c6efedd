"""The key schema of a Redis Cluster's pool index: each pool's bucket is in the pool's own slot,
and every process finds the same bucket for it."""

from __future__ import annotations

import random
import string

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from mpp_agent.keys import Keys, SlotTags, slot_tag


def slot(key: str) -> int:
    return key_slot(key.encode())


def random_names(count: int, seed: int = 12) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "._-"
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 128))) for _ in range(count)]


@pytest.mark.parametrize("namespace", ["mpp", "acme-prod", "a.b"])
def test_a_pools_bucket_is_in_the_pools_own_slot(namespace: str) -> None:
    keys = Keys(namespace)
    names = [f"pool{i:02d}" for i in range(100)] + random_names(2000)
    for name in names:
        bucket = keys.pool_bucket(keys.bucket_tag(name))
        assert slot(bucket) == slot(keys.pool(name)) == slot(keys.events(name)), name


def test_the_tag_is_the_smallest_number_of_the_slot() -> None:
    for name in random_names(50, seed=3):
        tag = Keys().bucket_tag(name)
        wanted = slot(Keys().pool(name))
        assert tag.isdigit() and slot(tag) == wanted
        assert all(slot(str(i)) != wanted for i in range(int(tag)))


# Fixed for good: a deployment's buckets are named by these (another choice would orphan them).
@pytest.mark.parametrize(
    ("name", "tag"),
    [("pool01", "8354"), ("orders", "1835"), ("a", "20200"), ("db-main.eu", "49547")],
)
def test_known_tags(name: str, tag: str) -> None:
    assert Keys().bucket_tag(name) == tag
    assert Keys("acme").bucket_tag(name) == tag  # the namespace is no part of the slot
    assert Keys("acme").pool_bucket(tag) == f"acme:pools:{{{tag}}}"


def test_every_slot_has_a_tag_whatever_the_order_asked() -> None:
    forwards, backwards = SlotTags(), SlotTags()
    slots = range(REDIS_CLUSTER_HASH_SLOTS)
    ahead = {s: forwards.of(s) for s in slots}
    behind = {s: backwards.of(s) for s in reversed(slots)}
    assert ahead == behind
    assert all(slot(tag) == s for s, tag in ahead.items())
    assert len(set(ahead.values())) == REDIS_CLUSTER_HASH_SLOTS
    assert ahead == {s: slot_tag(s) for s in slots}  # the shared cache agrees


@pytest.mark.parametrize("bad", [-1, REDIS_CLUSTER_HASH_SLOTS])
def test_no_tag_for_a_slot_that_does_not_exist(bad: int) -> None:
    with pytest.raises(ValueError, match="no Redis Cluster slot"):
        slot_tag(bad)
