"""Signals to mpp-poller as a real process (the agent's are in test_agent_server.py): SIGHUP
is logged and changes nothing, SIGTERM still stops gracefully (exit 0, deregistered)."""

from __future__ import annotations

import signal

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.store import Store
from tests.daemons import PollerProcess, watch_ticks
from tests.servers import wait_until

pytestmark = pytest.mark.integration


def test_sighup_does_not_stop_the_poller(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    # Nodes that refuse at once: rounds are committed without any MySQL server.
    store.create_pool(parse_failoverpool("name:p1;primary:127.0.0.1:1", interval=1.0))
    poller = PollerProcess(redis_url, "p-hup").start()
    try:
        watch_ticks(store, "p1", lambda s: len(s) >= 2, 15)
        assert poller.proc is not None
        poller.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP received" in poller.output(), 5, "the SIGHUP line")
        # still polling: more rounds are committed after the signal, by the same process
        watch_ticks(store, "p1", lambda s: len(s) >= 3, 15)
        assert poller.is_running
        assert [p.poller_id for p in store.pollers() if p.alive] == ["p-hup"]
        assert poller.stop() == 0
        assert store.pollers() == []  # deregistered on the way out
        output = poller.output()
        assert "SIGHUP received: ignored (pools are re-read every cycle)" in output
        assert "stopped (SIGTERM)" in output
        assert "Traceback" not in output
    finally:
        poller.cleanup()
