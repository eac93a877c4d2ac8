"""SQL of alerts, their events, rule overrides and webhooks: shared by the engine and the API."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

CHANNEL = "swc_alerts"  # LISTEN/NOTIFY channel carrying every announced alert event

# An active alert: open or acknowledged. The engine records an episode raised
# from late data resolved from the start (late = true, 'late_data'), so every
# active alert is live and announced: /sites, /alerts?active=true, the
# retained MQTT state and the SSE stream all count the same alerts.
ACTIVE = "a.state <> 'resolved'"
# The events that were announced (NOTIFY, webhooks): every event of an alert
# that is not late; an SSE client replaying after Last-Event-ID gets these.
ANNOUNCED = "NOT a.late"

ALERT_COLS = (
    "a.id, a.site_id, a.rule, a.subject, a.state, a.level, a.peak_level, a.opened_at, "
    "a.last_data_at, a.late, a.value, a.acknowledged_at, a.acknowledged_by, a.ack_note, "
    "a.resolved_at, a.resolved_by, a.resolve_reason, a.resolve_note, a.created_at, a.updated_at, "
    "a.forecast, "
    "(SELECT k.name FROM api_keys k WHERE k.id = a.acknowledged_by) AS acknowledged_by_name, "
    "(SELECT k.name FROM api_keys k WHERE k.id = a.resolved_by) AS resolved_by_name"
)
EVENT_COLS = (
    "e.id, e.alert_id, e.kind, e.level, e.previous_level, e.data_time, e.late, e.value, "
    "e.key_id, e.note, e.created_at, "
    "(SELECT k.name FROM api_keys k WHERE k.id = e.key_id) AS key_name"
)


def _dict(conn: psycopg.Connection, sql: str, params: Any = None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def get_alert(conn: psycopg.Connection, alert_id: int, lock: bool = False) -> dict | None:
    rows = _dict(
        conn,
        f"SELECT {ALERT_COLS} FROM alerts a WHERE a.id = %s" + (" FOR UPDATE" if lock else ""),
        (alert_id,),
    )
    return rows[0] if rows else None


def alert_events(conn: psycopg.Connection, alert_id: int) -> list[dict]:
    return _dict(
        conn,
        f"SELECT {EVENT_COLS} FROM alert_events e WHERE e.alert_id = %s ORDER BY e.id",
        (alert_id,),
    )


def _alert_where(
    *,
    states: list[str] | None = None,
    site_id: str | None = None,
    rule: str | None = None,
    min_level: int | None = None,
    min_current_level: int | None = None,
    level: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    late: bool | None = None,
) -> tuple[str, list]:
    where, params = [], []
    if states:
        where.append("a.state = ANY(%s)")
        params.append(states)
    for col, val in (("a.site_id", site_id), ("a.rule", rule), ("a.level", level)):
        if val is not None:
            where.append(f"{col} = %s")
            params.append(val)
    if min_level is not None:  # the peak level of the episode
        where.append("a.peak_level >= %s")
        params.append(min_level)
    if min_current_level is not None:
        where.append("a.level >= %s")
        params.append(min_current_level)
    if since is not None:  # alerts whose episode reaches into [since, until]
        where.append("(a.state <> 'resolved' OR a.last_data_at >= %s)")
        params.append(since)
    if until is not None:
        where.append("a.opened_at <= %s")
        params.append(until)
    if late is not None:
        where.append("a.late = %s")
        params.append(late)
    return " AND ".join(where) or "true", params


def list_alerts(
    conn: psycopg.Connection,
    *,
    limit: int = 100,
    offset: int = 0,
    after: tuple[datetime, int] | None = None,
    **filters: Any,
) -> list[dict]:
    """Alerts newest first (opened_at, then id); ``after``: the (opened_at, id) of the
    last row of the previous page."""
    where, params = _alert_where(**filters)
    if after is not None:
        where += " AND (a.opened_at, a.id) < (%s, %s)"
        params += list(after)
    sql = (
        f"SELECT {ALERT_COLS} FROM alerts a WHERE {where} "
        "ORDER BY a.opened_at DESC, a.id DESC LIMIT %s OFFSET %s"
    )
    return _dict(conn, sql, [*params, limit, offset])


def count_alerts(conn: psycopg.Connection, **filters: Any) -> int:
    where, params = _alert_where(**filters)
    return conn.execute(f"SELECT count(*) FROM alerts a WHERE {where}", params).fetchone()[0]


def event_payload(conn: psycopg.Connection, event_id: int) -> dict:
    """The JSON an alert event is announced with (SSE, webhooks)."""
    row = _dict(
        conn,
        "SELECT e.id AS event_id, e.kind, e.level, e.previous_level, e.data_time, e.late, "
        "e.value, e.key_id, e.note, e.created_at, a.id AS alert_id, a.site_id, a.rule, "
        "a.subject, a.state, a.peak_level, a.opened_at, a.forecast "
        "FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.id = %s",
        (event_id,),
    )[0]
    return json.loads(json.dumps(row, default=_json_default))


def _json_default(x: Any) -> Any:
    if isinstance(x, datetime):
        return x.isoformat()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def announce(conn: psycopg.Connection, event_id: int) -> dict:
    """NOTIFY every API process (delivered on commit) and queue webhook deliveries."""
    payload = event_payload(conn, event_id)
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(payload)))
    conn.execute(
        "INSERT INTO webhook_deliveries (webhook_id, event_id) "
        "SELECT w.id, %s FROM webhooks w WHERE w.active "
        "AND (w.site_id IS NULL OR w.site_id = %s) AND w.min_level <= greatest(%s, %s)",
        (event_id, payload["site_id"], payload["level"], payload["previous_level"]),
    )
    return payload


def set_forecast(conn: psycopg.Connection, alert_id: int, forecast: dict) -> None:
    """Record the latest pond forecast behind an alert (see ingest.alerting.rules)."""
    conn.execute("UPDATE alerts SET forecast = %s WHERE id = %s", (Jsonb(forecast), alert_id))


def insert_event(
    conn: psycopg.Connection,
    alert_id: int,
    kind: str,
    level: int,
    previous_level: int,
    *,
    data_time: datetime | None = None,
    late: bool = False,
    value: float | None = None,
    key_id: int | None = None,
    note: str | None = None,
) -> int:
    return conn.execute(
        "INSERT INTO alert_events (alert_id, kind, level, previous_level, data_time, late, value, "
        "key_id, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (alert_id, kind, level, previous_level, data_time, late, value, key_id, note),
    ).fetchone()[0]


def lock_rule_state(
    conn: psycopg.Connection, site_id: str, rule: str, subject: str
) -> tuple[dict | None, int | None]:
    """Lock the engine's state row of (site, rule, subject), creating it; (tracker, alert id)."""
    # an upsert that always updates takes the row lock in one round trip
    tracker, alert_id = conn.execute(
        "INSERT INTO alert_rule_state AS r (site_id, rule, subject, tracker) "
        "VALUES (%s, %s, %s, '{}'::jsonb) ON CONFLICT (site_id, rule, subject) "
        "DO UPDATE SET tracker = r.tracker RETURNING r.tracker, r.alert_id",
        (site_id, rule, subject),
    ).fetchone()
    return (tracker or None), alert_id


def save_rule_state(
    conn: psycopg.Connection,
    site_id: str,
    rule: str,
    subject: str,
    tracker: dict,
    alert_id: int | None,
) -> None:
    conn.execute(
        "UPDATE alert_rule_state SET tracker = %s, alert_id = %s, updated_at = now() "
        "WHERE site_id = %s AND rule = %s AND subject = %s",
        (Jsonb(tracker), alert_id, site_id, rule, subject),
    )


def rule_overrides(conn: psycopg.Connection, site_id: str) -> dict[str, dict]:
    return dict(conn.execute("SELECT rule, config FROM site_rules WHERE site_id = %s", (site_id,)))


def set_rule_override(
    conn: psycopg.Connection,
    site_id: str,
    rule: str,
    config: dict | None,
    key_id: int | None,
    note: str | None = None,
) -> None:
    """Set (or with ``config=None`` remove) an override, with an audit record."""
    old = conn.execute(
        "SELECT config FROM site_rules WHERE site_id = %s AND rule = %s FOR UPDATE",
        (site_id, rule),
    ).fetchone()
    if config is None:
        conn.execute("DELETE FROM site_rules WHERE site_id = %s AND rule = %s", (site_id, rule))
    else:
        conn.execute(
            "INSERT INTO site_rules (site_id, rule, config, updated_by) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (site_id, rule) DO UPDATE SET config = EXCLUDED.config, "
            "updated_by = EXCLUDED.updated_by, updated_at = now()",
            (site_id, rule, Jsonb(config), key_id),
        )
    conn.execute(
        "INSERT INTO site_rule_audit (site_id, rule, old_config, new_config, note, key_id) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (
            site_id,
            rule,
            Jsonb(old[0]) if old else None,
            Jsonb(config) if config is not None else None,
            note,
            key_id,
        ),
    )


def record_write(
    conn: psycopg.Connection, key_id: int | None, action: str, target: str, detail: dict
) -> None:
    conn.execute(
        "INSERT INTO api_writes (key_id, action, target, detail) VALUES (%s, %s, %s, %s)",
        (key_id, action, target, Jsonb(detail)),
    )


def active_site_alerts(conn: psycopg.Connection, site_id: str) -> list[dict]:
    """Active alerts of a site (see ``ACTIVE``), highest level first."""
    return _dict(
        conn,
        f"SELECT {ALERT_COLS} FROM alerts a WHERE a.site_id = %s AND {ACTIVE} "
        "ORDER BY a.level DESC, a.id",
        (site_id,),
    )
