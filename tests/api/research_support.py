"""Helpers of the researchers' API tests (readings, exports, products, surveys): a client,
keys of every role, and readings written straight to the database."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import psycopg

from tests.api.support import new_key

ROLES = ("viewer", "surveyor", "engineer", "admin")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def role_keys(dsn: str) -> dict[str, dict[str, str]]:
    """Auth headers of a new key of every role."""
    return {role: auth(new_key(dsn, role)) for role in ROLES}


def add_site(
    dsn: str, site_id: str, kind: str, params: dict | None = None, *, lat=None, lon=None
) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO sites (id, kind, name, latitude, longitude, params) "
            "VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
            (site_id, kind, f"site {site_id}", lat, lon, psycopg.types.json.Jsonb(params or {})),
        )


def add_stream(dsn: str, device: str, channel: str, site_id: str | None, unit=None) -> int:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO devices (id, site_id) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
            (device, site_id),
        )
        return conn.execute(
            "INSERT INTO streams (device_id, channel, unit) VALUES (%s, %s, %s) RETURNING id",
            (device, channel, unit),
        ).fetchone()[0]


def write(dsn: str, stream_id: int, rows: Iterable[tuple[datetime, float, int]]) -> None:
    """Readings (time, value, quality) of one stream."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (time, stream_id, value, quality, received_at) "
            "VALUES (%s, %s, %s, %s, now())",
            [(t, stream_id, v, q) for t, v, q in rows],
        )
