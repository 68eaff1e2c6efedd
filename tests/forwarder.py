"""A TCP forwarder for tests: a link between two processes that a test can cut and restore.

``Forwarder(target_port).start()`` listens on a free loopback port and relays every connection
to ``127.0.0.1:target_port``. ``stop()`` closes the listener and every relayed connection (the
client sees its connection reset and new ones refused, as when a network link or a host is
lost); ``freeze()`` closes the listener and drops whatever the open connections carry
without closing them (their peers wait, as behind a link that silently drops packets);
``start()`` listens (and relays) again on the same port. ``greeting_delay`` holds what the
server sends first on each connection that long (a server slow to take logins, as on a host
short of CPU).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.servers import free_port


class Forwarder:
    def __init__(
        self, target_port: int, port: int | None = None, greeting_delay: float = 0.0
    ) -> None:
        self.target = ("127.0.0.1", target_port)
        self.greeting_delay = greeting_delay
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._frozen = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Forwarder:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._frozen = False
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def freeze(self) -> None:
        self._frozen = True
        self._close_listener()

    def stop(self) -> None:
        self._close_listener()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            for src, dst, delay in (
                (client, upstream, 0.0),
                (upstream, client, self.greeting_delay),
            ):
                threading.Thread(target=self._pump, args=(src, dst, delay), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float = 0.0) -> None:
        try:
            while data := src.recv(65536):
                if delay:
                    time.sleep(delay)
                    delay = 0.0
                if not self._frozen:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
