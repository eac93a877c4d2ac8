"""Reading back the dead letters (rejected messages): for GET /dead-letters and
``swc dead-letters``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

PREVIEW_CHARS = 500  # of the payload, as text


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(
    root: str,
    since: datetime | None,
    until: datetime | None,
    reasons: Sequence[str],
    device: str | None,
) -> tuple[str, list]:
    conds, params = [], []
    if since is not None:
        conds.append("received_at >= %s")
        params.append(since)
    if until is not None:
        conds.append("received_at < %s")
        params.append(until)
    if reasons:
        conds.append("error_code = ANY(%s)")
        params.append(list(reasons))
    if device is not None:  # the topic's client id: the device or the gateway that sent it
        conds.append("topic LIKE %s")
        params.append(f"{_like_escape(root)}/{_like_escape(device)}/%")
    return " AND ".join(conds) or "true", params


def list_dead_letters(
    conn: psycopg.Connection,
    root: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    reasons: Sequence[str] = (),
    device: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict]:
    """Newest first (by id); ``before_id``: the id of the last row of the previous page."""
    where, params = _where(root, since, until, reasons, device)
    if before_id is not None:
        where += " AND id < %s"
        params.append(before_id)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, received_at, topic, error_code, error, payload_size, "
            f"substring(payload FROM 1 FOR {PREVIEW_CHARS * 4}) AS head "
            f"FROM dead_letters WHERE {where} ORDER BY id DESC LIMIT %s",
            [*params, limit],
        )
        rows = cur.fetchall()
    for r in rows:
        head = bytes(r.pop("head"))
        text = head.decode("utf-8", "replace")
        r["payload_preview"] = text[:PREVIEW_CHARS]
        r["payload_truncated"] = r["payload_size"] > len(head) or len(text) > PREVIEW_CHARS
        r["sender"] = _sender(r["topic"], root)
    return rows


def count_dead_letters(
    conn: psycopg.Connection,
    root: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    reasons: Sequence[str] = (),
    device: str | None = None,
) -> int:
    where, params = _where(root, since, until, reasons, device)
    return conn.execute(f"SELECT count(*) FROM dead_letters WHERE {where}", params).fetchone()[0]


def _sender(topic: str, root: str) -> str | None:
    prefix = root + "/"
    if not topic.startswith(prefix):
        return None
    return topic[len(prefix) :].split("/", 1)[0] or None
