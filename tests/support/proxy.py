"""A TCP proxy that a test can close, to decide which client reaches a broker first."""

from __future__ import annotations

import contextlib
import socket
import threading

from ingest.broker import free_port


class HoldingProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``.

    ``hold()`` cuts every forwarded connection and closes each new one at once,
    so the client behind the proxy keeps failing to reconnect; ``release()``
    lets the next attempt through.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._held = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def hold(self) -> None:
        self._held.set()
        with self._lock:
            for s in self._open:
                _close(s)
            self._open.clear()

    def release(self) -> None:
        self._held.clear()

    def close(self) -> None:
        self._stop.set()
        self.hold()
        self._thread.join(5)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._held.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
