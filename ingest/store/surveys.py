"""Field surveys and their attachments: rows in ``surveys`` and ``survey_attachments``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

_SURVEY_COLS = (
    "id, site_id, kind, surveyed_at, surveyor, latitude, longitude, condition, damage, notes, "
    "data, ref, curve_id, calibration_id, created_by_key, created_at"
)
_ATT_COLS = (
    "id, survey_id, filename, content_type, size_bytes, sha256, storage_uri, created_by_key, "
    "created_at"
)


def site_kind(conn: psycopg.Connection, site_id: str) -> str | None:
    row = conn.execute("SELECT kind FROM sites WHERE id = %s", (site_id,)).fetchone()
    return row[0] if row else None


def insert_survey(conn: psycopg.Connection, values: dict[str, Any], key_id: int | None) -> int:
    """Insert a survey; ``values`` has the columns site_id .. ref. Returns its id."""
    return conn.execute(
        "INSERT INTO surveys (site_id, kind, surveyed_at, surveyor, latitude, longitude, "
        "condition, damage, notes, data, ref, created_by_key) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            values["site_id"],
            values["kind"],
            values["surveyed_at"],
            values.get("surveyor", ""),
            values.get("latitude"),
            values.get("longitude"),
            values.get("condition"),
            Jsonb(values.get("damage") or []),
            values.get("notes", ""),
            Jsonb(values.get("data") or {}),
            values.get("ref"),
            key_id,
        ),
    ).fetchone()[0]


def link_survey(
    conn: psycopg.Connection,
    survey_id: int,
    *,
    curve_id: int | None = None,
    calibration_id: int | None = None,
) -> None:
    conn.execute(
        "UPDATE surveys SET curve_id = coalesce(%s, curve_id), "
        "calibration_id = coalesce(%s, calibration_id) WHERE id = %s",
        (curve_id, calibration_id, survey_id),
    )


def by_ref(conn: psycopg.Connection, site_id: str, kind: str, ref: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM surveys WHERE site_id = %s AND kind = %s AND ref = %s",
        (site_id, kind, ref),
    ).fetchone()
    return row[0] if row else None


def get_survey(conn: psycopg.Connection, survey_id: int) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_SURVEY_COLS} FROM surveys WHERE id = %s", (survey_id,)
        ).fetchone()


def list_surveys(
    conn: psycopg.Connection,
    *,
    site_ids: list[str] | None = None,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
    after: tuple[datetime, int] | None = None,
) -> list[dict]:
    """Surveys newest first (by survey time, then id); ``after``: the (surveyed_at, id)
    of the last row of the previous page."""
    conds, params = _survey_filter(site_ids, kinds, since, until)
    if after is not None:
        conds.append(sql.SQL("(surveyed_at, id) < (%s, %s)"))
        params += list(after)
    query = sql.SQL(
        "SELECT {cols} FROM surveys WHERE {where} ORDER BY surveyed_at DESC, id DESC "
        "LIMIT %s OFFSET %s"
    ).format(cols=sql.SQL(_SURVEY_COLS), where=sql.SQL(" AND ").join(conds))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, [*params, limit, offset]).fetchall()


def count_surveys(
    conn: psycopg.Connection,
    *,
    site_ids: list[str] | None = None,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    conds, params = _survey_filter(site_ids, kinds, since, until)
    query = sql.SQL("SELECT count(*) FROM surveys WHERE {where}").format(
        where=sql.SQL(" AND ").join(conds)
    )
    return conn.execute(query, params).fetchone()[0]


def _survey_filter(site_ids, kinds, since, until) -> tuple[list[sql.Composable], list]:
    conds: list[sql.Composable] = [sql.SQL("true")]
    params: list = []
    if site_ids:
        conds.append(sql.SQL("site_id = ANY(%s)"))
        params.append(site_ids)
    if kinds:
        conds.append(sql.SQL("kind = ANY(%s)"))
        params.append(kinds)
    if since is not None:
        conds.append(sql.SQL("surveyed_at >= %s"))
        params.append(since)
    if until is not None:
        conds.append(sql.SQL("surveyed_at < %s"))
        params.append(until)
    return conds, params


def insert_attachment(
    conn: psycopg.Connection,
    survey_id: int,
    filename: str,
    content_type: str,
    size_bytes: int,
    sha256: str,
    storage_uri: str,
    key_id: int | None,
) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "INSERT INTO survey_attachments (survey_id, filename, content_type, size_bytes, "
            "sha256, storage_uri, created_by_key) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            f"RETURNING {_ATT_COLS}",
            (survey_id, filename, content_type, size_bytes, sha256, storage_uri, key_id),
        ).fetchone()


def attachments(conn: psycopg.Connection, survey_ids: list[int]) -> dict[int, list[dict]]:
    """Attachments of the surveys, by survey id, oldest first."""
    out: dict[int, list[dict]] = {i: [] for i in survey_ids}
    if not survey_ids:
        return out
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(
            f"SELECT {_ATT_COLS} FROM survey_attachments WHERE survey_id = ANY(%s) ORDER BY id",
            (survey_ids,),
        ):
            out[row["survey_id"]].append(row)
    return out


def get_attachment(conn: psycopg.Connection, survey_id: int, attachment_id: int) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_ATT_COLS} FROM survey_attachments WHERE id = %s AND survey_id = %s",
            (attachment_id, survey_id),
        ).fetchone()
