"""The gateway's disk queue: SQLite in WAL mode, readings in, upstream messages out, in order.

Tables (one database file, see docs/gateway.md):

``readings``  every accepted reading, in arrival order (``id``), until it is composed
              into an upstream message;
``outbox``    composed upstream messages (one device each, with that device's next
              ``seq``), kept until the upstream broker acknowledges them;
``devices``   the per-device sequence counter of the messages the gateway sends;
``counters``  lifetime counters (received, rejected, dropped, forwarded);
``rejects``   the reject log: invalid input with the reason, never forwarded;
``line_offsets`` how far each line source has been read (same transaction as its readings).

Like Telegraf's buffer transactions: ``compose`` moves the oldest readings into
messages and ``unsent`` hands them out; ``ack`` deletes only what the broker
acknowledged; whatever is not acknowledged stays and is sent again, identically,
after a restart. On overflow of the byte budget the oldest readings are dropped
and counted.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from protocol.messages import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_MESSAGE

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
COUNTERS = (
    "received_messages",
    "received_readings",
    "rejected",
    "dropped_readings",
    "forwarded_messages",
    "forwarded_readings",
)
_LOW_WATER = 0.9  # after an overflow, drop down to this fraction of the budget

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    t      TEXT NOT NULL,
    ch     TEXT NOT NULL,
    v      REAL NOT NULL,
    q      INTEGER,
    enq    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    device   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    first_enq REAL NOT NULL,
    payload  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device   TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejects (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL NOT NULL,
    source  TEXT NOT NULL,
    topic   TEXT,
    code    TEXT NOT NULL,
    message TEXT NOT NULL,
    payload BLOB
);
CREATE TABLE IF NOT EXISTS line_offsets (
    source TEXT PRIMARY KEY,
    inode  INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
"""

# (device, time as RFC 3339 UTC text, channel, value, quality or None)
Row = tuple[str, str, str, float, int | None]


class QueueError(RuntimeError):
    """The queue database cannot be opened or is not a gateway queue."""


@dataclass(frozen=True, slots=True)
class Reject:
    """One invalid input: where it came from, why it was refused, and (the start of) it."""

    source: str
    code: str
    message: str
    payload: bytes
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class OutMessage:
    """A composed upstream message waiting for its acknowledgement."""

    id: int
    device: str
    seq: int
    n: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueueStats:
    depth: int  # readings not yet acknowledged upstream (queued + composed)
    outbox_messages: int
    oldest_enqueued_at: float | None  # unix time of the oldest unacknowledged reading
    used_bytes: int
    max_bytes: int
    counters: dict[str, int]

    def oldest_age_s(self, now: float | None = None) -> float:
        if self.oldest_enqueued_at is None:
            return 0.0
        return max(0.0, (now or time.time()) - self.oldest_enqueued_at)


def format_time(value: datetime) -> str:
    """RFC 3339 UTC text of ``value``, to the microsecond when it has one; ``Z`` suffix."""
    return value.astimezone(UTC).isoformat()[:-6] + "Z"  # isoformat ends in +00:00


def _reading_json(t: str, ch: str, v: float, q: int | None) -> str:
    # channel names match protocol.channels.CHANNEL_NAME_PATTERN: nothing to escape;
    # repr of a finite float is its shortest round-trip JSON number
    if q is None:
        return f'{{"t":"{t}","ch":"{ch}","v":{float(v)!r}}}'
    return f'{{"t":"{t}","ch":"{ch}","v":{float(v)!r},"q":{int(q)}}}'


def encode_message(device: str, seq: int, sent_at: str, readings_json: Sequence[str]) -> bytes:
    """Row-form telemetry message of the protocol, from pre-encoded readings."""
    return (
        f'{{"device":{json.dumps(device)},"seq":{seq},"sent_at":"{sent_at}",'
        f'"readings":[{",".join(readings_json)}]}}'
    ).encode()


_ENVELOPE_BYTES = 160  # device (<= 64), seq (<= 19 digits), sent_at and the JSON around them


class DiskQueue:
    """The queue database. Thread-safe: one connection, one lock; every change is a transaction."""

    def __init__(
        self,
        path: Path | str,
        max_bytes: int = 512 * 1024 * 1024,
        synchronous: str = "full",
        max_rejects: int = 10_000,
        reject_payload_bytes: int = 4096,
    ):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_rejects = max_rejects
        self.reject_payload_bytes = reject_payload_bytes
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30
            )
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA journal_size_limit=67108864")
            self._db.executescript(_SCHEMA)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise QueueError(
                    f"{path} has queue schema version {version}; this gateway uses {SCHEMA_VERSION}"
                )
            for name in COUNTERS:
                self._db.execute(
                    "INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)", (name,)
                )
        except sqlite3.DatabaseError as exc:
            raise QueueError(f"cannot open the queue database {path}: {exc}") from None
        if mode.lower() != "wal" and str(path) != ":memory:":
            log.warning("queue journal_mode=%s (WAL not available) path=%s", mode, path)
        self._page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        self._queued = self._db.execute("SELECT count(*) FROM readings").fetchone()[0]
        n, count = self._db.execute("SELECT coalesce(sum(n), 0), count(*) FROM outbox").fetchone()
        self._outbox_readings, self._outbox_messages = n, count
        self.dropped_since_open = 0

    # --- transactions -------------------------------------------------------------
    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _bump(self, **deltas: int) -> None:
        for name, delta in deltas.items():
            if delta:
                self._db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = ?", (delta, name)
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- in ---------------------------------------------------------------------------
    def append(
        self,
        rows: Sequence[Row],
        rejects: Sequence[Reject] = (),
        messages: int = 0,
        line_offset: tuple[str, int, int] | None = None,
    ) -> int:
        """Store accepted readings and rejected inputs in one committed transaction.

        ``messages`` counts the input messages the readings came in; ``line_offset``
        (source, inode, offset) records how far a line source has been read.
        Returns the number of readings dropped to stay within the byte budget.
        """
        now = time.time()
        with self._lock:
            self._begin()
            try:
                if rows:
                    self._db.executemany(
                        "INSERT INTO readings (device, t, ch, v, q, enq) VALUES (?, ?, ?, ?, ?, ?)",
                        [(*row, now) for row in rows],
                    )
                if rejects:
                    self._insert_rejects(rejects, now)
                if line_offset is not None:
                    self._db.execute(
                        "INSERT INTO line_offsets (source, inode, offset) VALUES (?, ?, ?) "
                        "ON CONFLICT (source) DO UPDATE SET inode = excluded.inode, "
                        "offset = excluded.offset",
                        line_offset,
                    )
                self._bump(
                    received_messages=messages,
                    received_readings=len(rows),
                    rejected=len(rejects),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._queued += len(rows)
            return self._enforce_budget() if rows else 0

    def _insert_rejects(self, rejects: Sequence[Reject], now: float) -> None:
        if self.max_rejects <= 0:
            return
        self._db.executemany(
            "INSERT INTO rejects (at, source, topic, code, message, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    now,
                    r.source,
                    r.topic,
                    r.code,
                    r.message[:2000],
                    bytes(r.payload[: self.reject_payload_bytes]),
                )
                for r in rejects
            ],
        )
        self._db.execute(
            "DELETE FROM rejects WHERE id <= (SELECT max(id) FROM rejects) - ?",
            (self.max_rejects,),
        )

    def line_offset(self, source: str) -> tuple[int, int] | None:
        """(inode, offset) recorded for a line source, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT inode, offset FROM line_offsets WHERE source = ?", (source,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    # --- budget -----------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes of the database's pages that hold data (free pages are reused, not counted)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size

    def _enforce_budget(self) -> int:
        """Drop the oldest queued readings while the data exceed the budget (lock held)."""
        used = self.used_bytes()
        if used <= self.max_bytes:
            return 0
        target = int(self.max_bytes * _LOW_WATER)
        dropped = 0
        for _ in range(50):
            if used <= target or self._queued == 0:
                break
            per_reading = used / max(self._queued + self._outbox_readings, 1)
            n = min(self._queued, max(int((used - target) / per_reading) + 1, 64))
            self._begin()
            try:
                cutoff = self._db.execute(
                    "SELECT id FROM readings ORDER BY id LIMIT 1 OFFSET ?", (n - 1,)
                ).fetchone()[0]
                deleted = self._db.execute("DELETE FROM readings WHERE id <= ?", (cutoff,)).rowcount
                self._bump(dropped_readings=deleted)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._queued -= deleted
            dropped += deleted
            used = self.used_bytes()
        if dropped:
            self.dropped_since_open += dropped
            log.warning(
                "queue over budget: dropped oldest readings=%d used_bytes=%d max_bytes=%d "
                "dropped_total=%d",
                dropped,
                used,
                self.max_bytes,
                self._counter("dropped_readings"),
            )
        return dropped

    # --- out --------------------------------------------------------------------------
    def compose(
        self,
        max_readings: int = 1000,
        max_age_s: float = 0.0,
        max_bytes: int = 128 * 1024,
        max_messages: int = 64,
        now: float | None = None,
    ) -> int:
        """Move the oldest readings into upstream messages, one device per message.

        Composes only when at least ``max_readings`` are queued or the oldest has waited
        ``max_age_s``. A message holds at most ``max_readings`` readings and ``max_bytes``
        bytes and never the same (time, channel) twice; each gets its device's next
        ``seq``. Returns the number of messages composed.
        """
        max_readings = min(max_readings, MAX_READINGS_PER_MESSAGE)
        max_bytes = min(max_bytes, MAX_PAYLOAD_BYTES)
        now = time.time() if now is None else now
        with self._lock:
            if self._queued == 0:
                return 0
            window = self._db.execute(
                "SELECT id, device, t, ch, v, q, enq FROM readings ORDER BY id LIMIT ?",
                (max_readings * max_messages,),
            ).fetchall()
            if not window:
                return 0
            if len(window) < max_readings and now - window[0][6] < max_age_s:
                return 0
            window_full = len(window) == max_readings * max_messages
            # group by device, keeping arrival order within each device
            groups: dict[str, list[tuple]] = {}
            for row in window:
                groups.setdefault(row[1], []).append(row)
            chunks: list[list[tuple]] = []
            for rows in groups.values():
                split = _split(rows, max_readings, max_bytes)
                if window_full and len(split) > 1 and len(split[-1]) < max_readings:
                    split.pop()  # more of this device may follow beyond the window
                chunks.extend(split)
            # messages go out in the order of their oldest reading; per device this keeps
            # a prefix of its readings, so whatever is left waits in order for the next call
            chunks.sort(key=lambda c: c[0][0])
            taken = chunks[:max_messages]
            consumed = sum(len(c) for c in taken)
            sent_at = format_time(datetime.fromtimestamp(now, UTC))
            self._begin()
            try:
                devices = sorted({c[0][1] for c in taken})
                seqs = dict(
                    self._db.execute(
                        "SELECT device, next_seq FROM devices WHERE device IN "
                        f"({','.join('?' * len(devices))})",
                        devices,
                    ).fetchall()
                )
                out = []
                readings = 0
                for chunk in taken:
                    device = chunk[0][1]
                    seq = seqs.get(device, 1)
                    seqs[device] = seq + 1
                    body = encode_message(device, seq, sent_at, [c[7] for c in chunk])
                    out.append((device, seq, len(chunk), chunk[0][6], body))
                    readings += len(chunk)
                self._db.executemany(
                    "INSERT INTO outbox (device, seq, n, first_enq, payload) VALUES (?, ?, ?, ?, ?)",
                    out,
                )
                self._db.executemany(
                    "INSERT INTO devices (device, next_seq) VALUES (?, ?) "
                    "ON CONFLICT (device) DO UPDATE SET next_seq = excluded.next_seq",
                    list(seqs.items()),
                )
                if consumed == len(window):
                    self._db.execute("DELETE FROM readings WHERE id <= ?", (window[-1][0],))
                else:
                    self._db.executemany(
                        "DELETE FROM readings WHERE id = ?", [(c[0],) for ch in taken for c in ch]
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._queued -= readings
            self._outbox_readings += readings
            self._outbox_messages += len(out)
            return len(out)

    def unsent(self, after_id: int = 0, limit: int = 64) -> list[OutMessage]:
        """Composed messages with ``id > after_id``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device, seq, n, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutMessage(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def get(self, ids: Iterable[int]) -> list[OutMessage]:
        ids = list(ids)
        if not ids:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device, seq, n, payload FROM outbox WHERE id IN "
                f"({','.join('?' * len(ids))}) ORDER BY id",
                ids,
            ).fetchall()
        return [OutMessage(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def ack(self, ids: Iterable[int]) -> int:
        """Delete acknowledged messages; return how many readings they held."""
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            self._begin()
            try:
                marks = ",".join("?" * len(ids))
                n, count = self._db.execute(
                    f"SELECT coalesce(sum(n), 0), count(*) FROM outbox WHERE id IN ({marks})", ids
                ).fetchone()
                self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", ids)
                self._bump(forwarded_messages=count, forwarded_readings=n)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._outbox_readings -= n
            self._outbox_messages -= count
            return n

    # --- inspection ---------------------------------------------------------------------
    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    @property
    def depth(self) -> int:
        return self._queued + self._outbox_readings

    @property
    def queued(self) -> int:
        """Readings not yet composed into a message."""
        return self._queued

    def stats(self) -> QueueStats:
        with self._lock:
            oldest = [
                r[0]
                for r in (
                    self._db.execute("SELECT first_enq FROM outbox ORDER BY id LIMIT 1").fetchone(),
                    self._db.execute("SELECT enq FROM readings ORDER BY id LIMIT 1").fetchone(),
                )
                if r
            ]
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            return QueueStats(
                depth=self.depth,
                outbox_messages=self._outbox_messages,
                oldest_enqueued_at=min(oldest) if oldest else None,
                used_bytes=self.used_bytes(),
                max_bytes=self.max_bytes,
                counters=counters,
            )

    def rejects(self, limit: int = 20) -> list[dict]:
        """The newest entries of the reject log, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, source, topic, code, message, payload FROM rejects "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {
                "id": r[0],
                "at": format_time(datetime.fromtimestamp(r[1], UTC)),
                "source": r[2],
                "topic": r[3],
                "code": r[4],
                "message": r[5],
                "payload": bytes(r[6] or b"").decode("utf-8", "replace"),
            }
            for r in rows
        ]

    def device_seqs(self) -> dict[str, int]:
        """The next ``seq`` the gateway will use for each device."""
        with self._lock:
            return dict(self._db.execute("SELECT device, next_seq FROM devices").fetchall())


def _split(rows: list[tuple], max_readings: int, max_bytes: int) -> list[list[tuple]]:
    """Cut one device's rows into messages by count, bytes and repeated (time, channel).

    Each returned row is the queue row with its JSON text appended at index 7.
    """
    chunks: list[list[tuple]] = []
    current: list[tuple] = []
    seen: set[tuple[str, str]] = set()
    size = _ENVELOPE_BYTES
    for row in rows:
        text = _reading_json(row[2], row[3], row[4], row[5])
        key = (row[2], row[3])
        if current and (
            len(current) >= max_readings or size + len(text) + 1 > max_bytes or key in seen
        ):
            chunks.append(current)
            current, seen, size = [], set(), _ENVELOPE_BYTES
        current.append((*row, text))
        seen.add(key)
        size += len(text) + 1
    if current:
        chunks.append(current)
    return chunks
