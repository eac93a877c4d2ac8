"""Fan-out of alert events to Server-Sent-Events clients.

One thread per API process LISTENs on the database channel the engine (and
the API's own acknowledge / resolve) NOTIFY on commit, and hands each event
to every connected client's asyncio queue. Any number of API processes thus
see every event, whichever consumer raised it.

A notification sent while the listener is disconnected (database restart,
network) is lost by PostgreSQL; after each reconnect the listener therefore
reads the announced events committed since the last one it handed on, by id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

import psycopg

from ..store.alerts import CHANNEL, event_payload

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


CATCH_UP_MAX = 1000  # events read back after a reconnect, at most
APPLICATION_NAME = "swc-api-events"


class Broadcaster:
    def __init__(self, dsn: str, reconnect_s: float = 2.0):
        self.dsn = dsn
        self.reconnect_s = reconnect_s
        self.last_id: int | None = None  # the newest event handed on (or seen at start)
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._recent: deque[int] = deque(maxlen=4096)  # ids handed on lately: no repeats
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

    def _hand_on(self, event: dict) -> None:
        eid = event.get("event_id")
        if isinstance(eid, int):
            if self.last_id is not None and eid <= self.last_id and eid in self._recent:
                return
            self._recent.append(eid)
            self.last_id = eid if self.last_id is None else max(self.last_id, eid)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, event)
            except RuntimeError:  # its loop has closed
                self.unsubscribe(sub)

    def _catch_up(self, conn: psycopg.Connection) -> None:
        """Hand on the announced events committed while nobody listened."""
        if self.last_id is None:
            row = conn.execute("SELECT coalesce(max(id), 0) FROM alert_events").fetchone()
            self.last_id = row[0]
            return
        ids = conn.execute(
            "SELECT e.id FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
            "WHERE e.id > %s AND NOT a.late ORDER BY e.id LIMIT %s",
            (self.last_id, CATCH_UP_MAX),
        ).fetchall()
        if ids:
            log.info("alert event listener: %d event(s) caught up after a reconnect", len(ids))
        for (event_id,) in ids:
            self._hand_on(event_payload(conn, event_id))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.dsn,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=APPLICATION_NAME,
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._catch_up(conn)  # after LISTEN: nothing falls between the two
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            try:
                                event = json.loads(note.payload)
                            except ValueError:
                                continue
                            self._hand_on(event)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("alert event listener: %s; reconnecting", str(exc).strip()[:200])
                self._stop.wait(self.reconnect_s)
