"""Whether a pool state read from Redis may replace the one a process last saw.

This module is pure. Versions only grow within one incarnation of a pool (every commit is a
compare-and-set that bumps it), so a lower version of the same incarnation can only be a
rollback: Redis failed over to a replica that had not received the last commits, or was
restored from an old dump. Adopting it would route writes to a node the pools have since left
(the writer going back). A different incarnation is another pool of the same name (removed and
created again): its versions start afresh and it is always adopted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mpp_agent.model import PoolState


class Adoption(StrEnum):
    NEW = "new"  # first sight, a newer version, or another incarnation: adopt it
    SAME = "same"  # the version already seen: nothing changed
    BACKWARDS = "backwards"  # an older version of the same incarnation: keep the newer one


@dataclass(frozen=True)
class Seen:
    """The newest version of a pool a process has seen."""

    incarnation: str
    version: int

    @classmethod
    def of(cls, pool: PoolState) -> Seen:
        return cls(pool.incarnation, pool.version)


def adoption(seen: Seen | None, incarnation: str, version: int) -> Adoption:
    """The adoption rule: never a lower version of an incarnation already seen."""
    if seen is None or seen.incarnation != incarnation or version > seen.version:
        return Adoption.NEW
    if version == seen.version:
        return Adoption.SAME
    return Adoption.BACKWARDS


def went_backwards(seen: Seen | None, pool: PoolState) -> bool:
    return adoption(seen, pool.incarnation, pool.version) is Adoption.BACKWARDS


def backwards_text(pool: PoolState, seen: Seen) -> str:
    """One phrase for log lines and listings."""
    return (
        f"state went backwards: Redis has version {pool.version} of pool {pool.name}, "
        f"older than version {seen.version} already seen (incarnation {seen.incarnation or '-'})"
    )
