"""Fan-out of alert events to Server-Sent-Events clients.

One thread per API process LISTENs on the database channel the engine (and
the API's own acknowledge / resolve) NOTIFY on commit, and hands each event
to every connected client's asyncio queue. Any number of API processes thus
see every event, whichever consumer raised it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, field

import psycopg

from ..store.alerts import CHANNEL

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    overflowed: bool = False

    def offer(self, event: dict) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class Broadcaster:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swc-sse", daemon=True)

    def start(self) -> Broadcaster:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def subscribe(self) -> Subscriber:
        sub = Subscriber(asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            try:
                                event = json.loads(note.payload)
                            except ValueError:
                                continue
                            with self._lock:
                                subs = list(self._subs)
                            for sub in subs:
                                try:
                                    sub.loop.call_soon_threadsafe(sub.offer, event)
                                except RuntimeError:  # its loop has closed
                                    self.unsubscribe(sub)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("alert event listener: %s; reconnecting", str(exc).strip()[:200])
                self._stop.wait(2.0)
