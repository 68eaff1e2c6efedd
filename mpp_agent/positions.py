"""Replication positions as values: what a node has received, applied and written, compared.

Pure (no I/O). Two GTID dialects are understood, each as the server prints it:

* MariaDB: ``domain-server-seqno`` per domain, comma-separated (``1-1-120,2-2-7``). Within a
  domain sequence numbers only grow, whichever server wrote them, so what a node lacks of a
  position is, per domain, how far its highest seqno trails.
* MySQL: a GTID set ``uuid:1-120:122,uuid2:1-7``. What a node lacks is the number of
  transactions in the other set and not in its own.

``missing(have, want)`` is None when either position is unknown or they are of different
dialects, never a guess.
"""

from __future__ import annotations

import functools
import re

_MARIADB = re.compile(r"(\d+)-(\d+)-(\d+)")

MariaPos = dict[int, int]  # domain -> highest seqno
MySQLSet = dict[str, list[tuple[int, int]]]  # uuid(:tag) -> inclusive intervals


def _mariadb(text: str) -> MariaPos | None:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    out: MariaPos = {}
    for part in parts:
        match = _MARIADB.fullmatch(part)
        if match is None:
            return None
        domain, seqno = int(match.group(1)), int(match.group(3))
        out[domain] = max(out.get(domain, 0), seqno)
    return out


def _mysql(text: str) -> MySQLSet | None:
    out: MySQLSet = {}
    for part in (p.strip() for p in text.replace("\n", "").split(",")):
        if not part:
            continue
        name, _, ranges = part.partition(":")
        if not re.fullmatch(r"[0-9a-fA-F-]{36}", name) or not ranges:
            return None
        for piece in ranges.split(":"):
            first, _, last = piece.partition("-")
            if not first.isdigit() or (last and not last.isdigit()):
                return None
            out.setdefault(name.lower(), []).append((int(first), int(last or first)))
    return out


def _count_outside(intervals: list[tuple[int, int]], have: list[tuple[int, int]]) -> int:
    """Transactions of ``intervals`` not covered by ``have`` (both inclusive ranges)."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(have):  # overlapping ranges (from several positions) counted once
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    total = 0
    for first, last in intervals:
        size = last - first + 1
        for a, b in merged:
            lo, hi = max(first, a), min(last, b)
            if lo <= hi:
                size -= hi - lo + 1
        total += max(0, size)
    return total


@functools.lru_cache(maxsize=8192)  # every probe asks, mostly of the positions it asked before
def missing(want: str, *have: str) -> int | None:
    """How many transactions of position ``want`` are in none of the positions ``have`` (what
    a node holds: its binlog, applied and received positions together); 0 when it has them
    all; None when ``want`` is unreadable or of another dialect than ``have``."""
    if not want.strip():
        return 0
    held = [h for h in have if h.strip()]
    want_m = _mariadb(want)
    held_m = [_mariadb(h) for h in held]
    if want_m is not None and all(h is not None for h in held_m):
        best: MariaPos = {}
        for pos in held_m:
            for domain, seqno in (pos or {}).items():
                best[domain] = max(best.get(domain, 0), seqno)
        return sum(max(0, seqno - best.get(domain, 0)) for domain, seqno in want_m.items())
    want_s = _mysql(want)
    held_s = [_mysql(h) for h in held]
    if want_s is not None and all(h is not None for h in held_s):
        merged: MySQLSet = {}
        for gtid_set in held_s:
            for name, intervals in (gtid_set or {}).items():
                merged.setdefault(name, []).extend(intervals)
        return sum(_count_outside(ivs, merged.get(name, [])) for name, ivs in want_s.items())
    return None


def lacks(active_binlog: str, *held: str) -> int | None:
    """What a node holding positions ``held`` lacks of an ACTIVE whose last known binlog
    position is ``active_binlog``: None when that position is not known."""
    if not active_binlog.strip():
        return None
    return missing(active_binlog, *held)
