"""Bulk, idempotent writes of readings and dead letters, and the aggregate queries.

A batch is written in one transaction. The fast path COPYs straight into
``readings`` (binary); if any row already exists the COPY fails on the primary
key, the savepoint is rolled back and the batch goes through a temporary
staging table and ``INSERT ... ON CONFLICT DO NOTHING``. Redelivered batches
come in runs, so after a conflict the staging path is kept for a while.
Rows of messages marked ``"replace": true`` are upserted instead (``ON CONFLICT
DO UPDATE``): they overwrite the value, flags and arrival time stored there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import errors

# (time, stream_id, value, quality, received_at[, logger_quality])
ReadingRow = (
    tuple[datetime, int, float, int, datetime]
    | tuple[datetime, int, float, int, datetime, int | None]
)
# (topic, payload, error_code, error, received_at)
DeadLetterRow = tuple[str, bytes, str, str, datetime]
# (device_id, last_seen, last_seq)
DeviceSeen = tuple[str, datetime, int]
# (DeviceStatus, received_at, retained replay)
StatusRow = tuple[object, datetime, bool]

_COLUMNS = "time, stream_id, value, quality, received_at"
_TYPES = ["timestamptz", "int4", "float8", "int2", "timestamptz"]
# rows of six carry the flag the logger sent (NULL when it sent none)
_COLUMNS_6 = _COLUMNS + ", logger_quality"
_TYPES_6 = [*_TYPES, "int2"]
_STAGING_RUN = 20  # batches kept on the staging path after a conflict


@dataclass(frozen=True)
class WriteResult:
    written: int
    duplicates: int
    dead_letters: int


_SENDER_CHARS = 64


def dead_letter_sender(topic: str, root: str) -> str:
    """The client id a dead letter's topic names under ``root`` ('' when it names none)."""
    prefix = root + "/"
    if not topic.startswith(prefix):
        return ""
    return topic[len(prefix) :].split("/", 1)[0][:_SENDER_CHARS]


def purge_dead_letters(conn: psycopg.Connection, retain_days: int) -> int:
    """Delete dead letters older than ``retain_days`` [days]; their counts stay."""
    cur = conn.execute(
        "DELETE FROM dead_letters WHERE received_at < now() - make_interval(days => %s)",
        (retain_days,),
    )
    return cur.rowcount


def write_status(conn: psycopg.Connection, status, received_at: datetime, replay: bool) -> bool:
    """Store a device's status (a ``protocol.messages.DeviceStatus``) as its latest.

    A retained status that the broker replays on subscribe is stored only when it
    is newer (by the device's clock) than the one stored, or none is stored yet."""
    from psycopg.types.json import Jsonb

    cur = conn.execute(
        "UPDATE devices SET status_state = %(state)s, status_at = %(at)s, "
        "status_received_at = %(received)s, status_battery_v = %(battery)s, "
        "status_rssi_dbm = %(rssi)s, status_details = %(details)s, "
        "firmware = coalesce(%(firmware)s, firmware) "
        "WHERE id = %(id)s AND (NOT %(replay)s OR status_received_at IS NULL "
        "  OR (%(at)s::timestamptz IS NOT NULL "
        "      AND (status_at IS NULL OR status_at < %(at)s::timestamptz)))",
        {
            "id": status.device,
            "state": status.state,
            "at": status.at,
            "received": received_at,
            "battery": status.battery_v,
            "rssi": status.rssi_dbm,
            "details": Jsonb(status.details),
            "firmware": status.firmware,
            "replay": replay,
        },
    )
    return cur.rowcount > 0


class ReadingWriter:
    """Writes batches on one connection (autocommit off is handled per batch).

    Dead letters keep at most ``dead_letter_max_bytes`` of their payload (the size
    that arrived goes in ``payload_size``) and are counted in ``dead_letter_counts``
    per day, sender (the topic's client id under ``root``) and code.
    """

    def __init__(self, dead_letter_max_bytes: int = 65536, root: str = "swc/v1") -> None:
        self._staging_left = 0
        self._staging_ready: set[int] = set()
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.root = root

    def write(
        self,
        conn: psycopg.Connection,
        rows: Sequence[ReadingRow],
        dead_letters: Sequence[DeadLetterRow] = (),
        devices_seen: Sequence[DeviceSeen] = (),
        replace: Sequence[ReadingRow] = (),
        statuses: Sequence[StatusRow] = (),
    ) -> WriteResult:
        """Write one batch and commit. Rows must be unique on (stream_id, time);
        ``replace`` rows (likewise unique) overwrite what is stored at their key."""
        with conn.transaction():
            written = self._write_readings(conn, rows) if rows else 0
            if replace:
                written += _upsert(conn, replace)
            if dead_letters:
                self._write_dead_letters(conn, dead_letters)
            if devices_seen:
                conn.execute(
                    "UPDATE devices d SET last_seen = GREATEST(d.last_seen, v.seen), "
                    "last_seq = GREATEST(d.last_seq, v.seq) "
                    "FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[]) AS v(id, seen, seq) "
                    "WHERE d.id = v.id",
                    (
                        [d[0] for d in devices_seen],
                        [d[1] for d in devices_seen],
                        [d[2] for d in devices_seen],
                    ),
                )
            for status, received_at, replay in statuses:
                write_status(conn, status, received_at, replay)
        return WriteResult(written, len(rows) + len(replace) - written, len(dead_letters))

    def _write_dead_letters(
        self, conn: psycopg.Connection, dead_letters: Sequence[DeadLetterRow]
    ) -> None:
        cap = self.dead_letter_max_bytes
        counts: dict[tuple[object, str, str], list[int]] = {}
        with conn.cursor().copy(
            "COPY dead_letters (topic, payload, payload_size, error_code, error, received_at) "
            "FROM STDIN"
        ) as copy:
            for topic, payload, code, error, received_at in dead_letters:
                size = len(payload)
                copy.write_row((topic, payload[:cap], size, code, error, received_at))
                key = (received_at.date(), dead_letter_sender(topic, self.root), code)
                n = counts.setdefault(key, [0, 0])
                n[0] += 1
                n[1] += size
        keys = sorted(counts, key=str)
        conn.execute(
            "INSERT INTO dead_letter_counts AS c (day, sender, error_code, messages, bytes) "
            "SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::bigint[], "
            "%s::bigint[]) ON CONFLICT (day, sender, error_code) DO UPDATE SET "
            "messages = c.messages + EXCLUDED.messages, bytes = c.bytes + EXCLUDED.bytes",
            (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [counts[k][0] for k in keys],
                [counts[k][1] for k in keys],
            ),
        )

    def _write_readings(self, conn: psycopg.Connection, rows: Sequence[ReadingRow]) -> int:
        if self._staging_left <= 0:
            try:
                with conn.transaction():  # savepoint
                    _copy_rows(conn, "readings", rows)
                return len(rows)
            except errors.UniqueViolation:
                self._staging_left = _STAGING_RUN
        self._staging_left -= 1
        return self._write_via_staging(conn, rows)

    def _write_via_staging(self, conn: psycopg.Connection, rows: Sequence[ReadingRow]) -> int:
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS readings_staging "
            "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        _copy_rows(conn, "readings_staging", rows)
        columns, _ = _layout(rows)
        cur = conn.execute(
            f"INSERT INTO readings ({columns}) SELECT {columns} FROM readings_staging "
            "ON CONFLICT (stream_id, time) DO NOTHING"
        )
        return cur.rowcount


def _upsert(conn: psycopg.Connection, rows: Sequence[ReadingRow]) -> int:
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS readings_replace "
        "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    _copy_rows(conn, "readings_replace", rows)
    columns, _ = _layout(rows)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns.split(", ")[2:])
    cur = conn.execute(
        f"INSERT INTO readings ({columns}) SELECT {columns} FROM readings_replace "
        f"ON CONFLICT (stream_id, time) DO UPDATE SET {updates}"
    )
    return cur.rowcount


def _layout(rows: Sequence[ReadingRow]) -> tuple[str, list[str]]:
    """Columns and COPY types of a batch: rows of six carry logger_quality."""
    return (_COLUMNS_6, _TYPES_6) if len(rows[0]) == 6 else (_COLUMNS, _TYPES)


def _copy_rows(conn: psycopg.Connection, table: str, rows: Sequence[ReadingRow]) -> None:
    columns, types = _layout(rows)
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def hourly_aggregates(
    conn: psycopg.Connection, stream_ids: Sequence[int], start: datetime, end: datetime
) -> list[tuple]:
    """(stream_id, bucket, n, mean, min, max, sum) per hour in [start, end), same in both modes."""
    return conn.execute(
        "SELECT stream_id, bucket, n, mean, min, max, sum FROM readings_hourly "
        "WHERE stream_id = ANY(%s) AND bucket >= %s AND bucket < %s "
        "ORDER BY stream_id, bucket",
        (list(stream_ids), start, end),
    ).fetchall()
