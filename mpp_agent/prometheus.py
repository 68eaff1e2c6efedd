"""Prometheus' text exposition format, the parts the daemons' ``/metrics`` share. Pure."""

from __future__ import annotations


def label_value(text: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**values: str) -> str:
    """``pool="a",node="b"``: the inside of a sample's braces."""
    return ",".join(f'{k}="{label_value(v)}"' for k, v in values.items())


def family(name: str, kind: str, text: str) -> list[str]:
    """The ``# HELP`` and ``# TYPE`` lines that open a metric family."""
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
