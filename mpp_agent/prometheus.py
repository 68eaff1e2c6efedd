"""Prometheus' text exposition format, the parts the daemons' ``/metrics`` share. Pure."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence


def label_value(text: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**values: str) -> str:
    """``pool="a",node="b"``: the inside of a sample's braces."""
    return ",".join(f'{k}="{label_value(v)}"' for k, v in values.items())


def family(name: str, kind: str, text: str) -> list[str]:
    """The ``# HELP`` and ``# TYPE`` lines that open a metric family."""
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


class Histogram:
    """One label set's histogram: cheap to observe (a bisect and two additions, as on the
    agent's probe path), cumulative buckets when rendered."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def samples(self, name: str, at: str = "") -> list[str]:
        """``<name>_bucket{...,le}`` cumulative, then ``_sum`` and ``_count``; ``at`` is the
        inside of the braces of this label set (``labels(...)``), "" for none."""
        lines = []
        running = 0
        sep = "," if at else ""
        for bound, count in zip(
            [*(f"{b:g}" for b in self.bounds), "+Inf"], self.counts, strict=True
        ):
            running += count
            lines.append(f'{name}_bucket{{{at}{sep}le="{bound}"}} {running}')
        braces = f"{{{at}}}" if at else ""
        lines.append(f"{name}_sum{braces} {self.total:.6f}")
        lines.append(f"{name}_count{braces} {self.count}")
        return lines
