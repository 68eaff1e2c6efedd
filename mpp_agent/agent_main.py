"""Entry point of mpp-agent."""

import sys


def main() -> None:
    print("mpp-agent: not yet implemented", file=sys.stderr)
    sys.exit(2)
