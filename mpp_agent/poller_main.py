"""Entry point of mpp-poller."""

import sys


def main() -> None:
    print("mpp-poller: not yet implemented", file=sys.stderr)
    sys.exit(2)
