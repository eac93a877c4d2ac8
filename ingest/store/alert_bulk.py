"""Set-based SQL for the alert engine's passes over many sites at once.

One pass of the engine reads, for all the sites a set of committed batches
touched, the sites' design and rule overrides, their primary streams, their
rule state rows (locked in one statement, in the same global order as the
row-by-row path: site, rule, subject) and the reading windows of all their
streams; and writes the rule states back in one statement. The row-by-row
functions of :mod:`.alerts` remain the reference and the fallback.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

import numpy as np
import psycopg

StateKey = tuple[str, str, str]  # site, rule, subject


def sites(conn: psycopg.Connection, site_ids: list[str]) -> dict[str, tuple[str, dict]]:
    """Kind and design parameters of each site."""
    rows = conn.execute(
        "SELECT id, kind, params FROM sites WHERE id = ANY(%s)", (site_ids,)
    ).fetchall()
    return {sid: (kind, params or {}) for sid, kind, params in rows}


def site_designs(conn: psycopg.Connection, site_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """Kind, design parameters and rule overrides of each site, the last two as jsonb text
    (canonical: equal documents give equal text), in one statement."""
    rows = conn.execute(
        "SELECT s.id, s.kind, coalesce(s.params, '{}'::jsonb)::text, coalesce(("
        "SELECT jsonb_object_agg(r.rule, r.config) FROM site_rules r WHERE r.site_id = s.id"
        "), '{}'::jsonb)::text FROM sites s WHERE s.id = ANY(%s)",
        (site_ids,),
    ).fetchall()
    return {sid: (kind, params, overrides) for sid, kind, params, overrides in rows}


def rule_overrides(conn: psycopg.Connection, site_ids: list[str]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for site, rule, config in conn.execute(
        "SELECT site_id, rule, config FROM site_rules WHERE site_id = ANY(%s)", (site_ids,)
    ):
        out[site][rule] = config
    return out


def primary_streams(conn: psycopg.Connection, site_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per site, the stream a site-scoped rule reads for each channel (the lowest id)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    # per device an index scan of its streams (LATERAL; a join read all streams at scale)
    for site, channel, sid in conn.execute(
        "SELECT d.site_id, s.channel, s.id FROM devices d CROSS JOIN LATERAL ("
        "SELECT DISTINCT ON (channel) channel, id FROM streams WHERE device_id = d.id "
        "ORDER BY channel, id OFFSET 0) AS s WHERE d.site_id = ANY(%s) "
        "ORDER BY d.site_id, s.channel, s.id",
        (site_ids,),
    ):
        if channel not in out[site]:  # the site's lowest stream id of the channel
            out[site][channel] = sid
    return out


def create_rule_states(conn: psycopg.Connection, keys: list[StateKey]) -> None:
    """Create the missing state rows of ``keys`` (an empty tracker), in key order."""
    if not keys:
        return
    keys = sorted(set(keys))
    conn.execute(
        "INSERT INTO alert_rule_state (site_id, rule, subject, tracker) "
        "SELECT s, r, sub, '{}'::jsonb FROM unnest(%s::text[], %s::text[], %s::text[]) "
        "WITH ORDINALITY AS k (s, r, sub, i) ORDER BY i ON CONFLICT DO NOTHING",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    )


def lock_rule_states(
    conn: psycopg.Connection, site_ids: list[str], rules: list[str] | None = None
) -> dict[StateKey, tuple[dict | None, int | None]]:
    """Lock the existing state rows of ``site_ids`` (of ``rules``, or all) in key order."""
    sql = "SELECT site_id, rule, subject, tracker, alert_id FROM alert_rule_state WHERE site_id = ANY(%s)"
    params: list = [site_ids]
    if rules is not None:
        sql += " AND rule = ANY(%s)"
        params.append(rules)
    rows = conn.execute(sql + " ORDER BY site_id, rule, subject FOR UPDATE", params).fetchall()
    return {(s, r, sub): (tracker or None, alert_id) for s, r, sub, tracker, alert_id in rows}


def lock_rule_state_keys(
    conn: psycopg.Connection, keys: list[StateKey]
) -> dict[StateKey, tuple[dict | None, int | None, str]]:
    """Lock the existing state rows of ``keys`` in key order: (tracker, alert id, version).

    The version is the row's ``xmin``: every write of the row, by anyone, changes it
    (see :func:`save_rule_states_if`)."""
    if not keys:
        return {}
    keys = sorted(set(keys))
    rows = conn.execute(
        "SELECT r.site_id, r.rule, r.subject, r.tracker, r.alert_id, r.xmin::text "
        "FROM alert_rule_state r JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k (s, r, sub) "
        "ON r.site_id = k.s AND r.rule = k.r AND r.subject = k.sub "
        "ORDER BY r.site_id, r.rule, r.subject FOR UPDATE OF r",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    ).fetchall()
    return {(s, r, sub): (tracker or None, a, x) for s, r, sub, tracker, a, x in rows}


_SAVE_SQL = (
    "UPDATE alert_rule_state AS r SET tracker = u.tracker, alert_id = u.alert_id, "
    "updated_at = now() FROM jsonb_to_recordset(%s::jsonb) AS u (site_id text, rule text, "
    "subject text, tracker jsonb, alert_id bigint, version text) "
    "WHERE r.site_id = u.site_id AND r.rule = u.rule AND r.subject = u.subject"
)


def _save_rows(states, expect=None) -> str:
    return json.dumps([  # one JSON document: no per-row parameter adaptation
        {"site_id": k[0], "rule": k[1], "subject": k[2], "tracker": t, "alert_id": a,
         "version": None if expect is None else expect[k]}
        for k, (t, a) in sorted(states.items())
    ])  # fmt: skip


def save_rule_states(
    conn: psycopg.Connection, states: dict[StateKey, tuple[dict, int | None]]
) -> dict[StateKey, str]:
    """Write tracker and alert id of each (site, rule, subject) row, in one statement;
    the rows' new versions."""
    if not states:
        return {}
    rows = conn.execute(
        _SAVE_SQL + " RETURNING r.site_id, r.rule, r.subject, r.xmin::text", (_save_rows(states),)
    ).fetchall()
    return {(s, r, sub): x for s, r, sub, x in rows}


def save_rule_states_if(
    conn: psycopg.Connection,
    states: dict[StateKey, tuple[dict, int | None]],
    expect: dict[StateKey, str],
) -> dict[StateKey, str]:
    """Write the rows of ``states`` that are still at the version ``expect`` names (no one
    wrote them since it was read), without locking them first; the new versions of those
    written. A row written meanwhile (or gone) is left alone and absent from the result.

    The row's ``xmin`` is the version: the transaction that wrote this version of it. An
    UPDATE that waits for a concurrent writer re-checks the condition on the row that
    writer left, so the check and the write are one step."""
    if not states:
        return {}
    rows = conn.execute(
        _SAVE_SQL + " AND r.xmin = u.version::xid "
        "RETURNING r.site_id, r.rule, r.subject, r.xmin::text",
        (_save_rows(states, expect),),
    ).fetchall()
    return {(s, r, sub): x for s, r, sub, x in rows}


def read_windows(
    conn: psycopg.Connection, since: dict[int, datetime]
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Readings of each stream from its ``since`` on, sorted by time: (t [s], value, quality)."""
    if not since:
        return {}
    ids = sorted(since)
    # each stream's window as packed big-endian arrays: one row per stream, no per-reading objects
    rows = conn.execute(
        "SELECT w.sid, a.t, a.v, a.q FROM unnest(%s::int[], %s::timestamptz[]) AS w (sid, since) "
        "CROSS JOIN LATERAL (SELECT "
        "string_agg(float8send(extract(epoch FROM r.time)::float8), '' ORDER BY r.time) AS t, "
        "string_agg(float8send(r.value), '' ORDER BY r.time) AS v, "
        "string_agg(int2send(r.quality), '' ORDER BY r.time) AS q "
        "FROM readings r WHERE r.stream_id = w.sid AND r.time >= w.since) AS a "
        "WHERE a.t IS NOT NULL",
        (ids, [since[i] for i in ids]),
        binary=True,
    ).fetchall()
    empty = (np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    out = dict.fromkeys(ids, empty)
    for sid, t, v, q in rows:
        out[sid] = (
            np.frombuffer(t, ">f8").astype(np.float64),
            np.frombuffer(v, ">f8").astype(np.float64),
            np.frombuffer(q, ">i2").astype(np.int64),
        )
    return out


# per stream, an index range scan of its window (LATERAL: never a scan of the whole table)
_STATS_SQL = """
SELECT w.sid, a.* FROM unnest(%s::int[], %s::timestamptz[]) AS w (sid, since)
CROSS JOIN LATERAL (
    SELECT count(*) AS n, count(*) FILTER (WHERE value <> 'NaN'),
           min(value) FILTER (WHERE value <> 'NaN'), max(value) FILTER (WHERE value <> 'NaN'),
           sum(CASE WHEN quality = 4 OR value = 'NaN' THEN 0 ELSE value END),
           coalesce(bool_or(quality <> 4 AND value < 0), false),
           coalesce(bool_or(quality IN (3, 4)), false),
           max(extract(epoch FROM time)::float8)
    FROM readings r WHERE r.stream_id = w.sid AND r.time >= w.since AND r.time <= coalesce(%s::timestamptz, 'infinity')
) AS a
WHERE a.n > 0
"""


def window_extremes(
    conn: psycopg.Connection, since: dict[int, datetime], until: datetime | None
) -> dict[int, tuple]:
    """Per stream with readings from its ``since`` to ``until``: (count, valid count, min,
    max, sum with failed and NaN values as 0, a negative value (failed ones aside), a suspect
    or failed flag, newest time [s]); NaN values count as missing."""
    if not since:
        return {}
    ids = sorted(since)
    rows = conn.execute(_STATS_SQL, (ids, [since[i] for i in ids], until), binary=True).fetchall()
    return {r[0]: r[1:] for r in rows}
