"""Which sites have a flood rule that can raise their warning, and why not where none does."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .rules import flood_coverage


@dataclass(frozen=True)
class Coverage:
    site_id: str
    kind: str
    flood_rules: list[str]
    reason: str | None  # why no flood rule applies; None when one does (or none is needed)


def site_coverage(conn: psycopg.Connection, site_ids: list[str] | None = None) -> list[Coverage]:
    """Flood-rule coverage of every site (or of ``site_ids``), ordered by site id."""
    sql = (
        "SELECT si.id, si.kind, si.params, "
        "coalesce(array_agg(DISTINCT s.channel) FILTER (WHERE s.channel IS NOT NULL), '{}'), "
        "coalesce((SELECT array_agg(sr.rule) FROM site_rules sr WHERE sr.site_id = si.id "
        "AND sr.config->>'enabled' = 'false'), '{}') "
        "FROM sites si LEFT JOIN devices d ON d.site_id = si.id "
        "LEFT JOIN streams s ON s.device_id = d.id"
    )
    params: tuple = ()
    if site_ids is not None:
        sql += " WHERE si.id = ANY(%s)"
        params = (site_ids,)
    sql += " GROUP BY si.id, si.kind, si.params ORDER BY si.id"
    out = []
    for sid, kind, p, channels, disabled in conn.execute(sql, params).fetchall():
        rules, reason = flood_coverage(kind, p or {}, set(channels), frozenset(disabled))
        out.append(Coverage(sid, kind, rules, reason))
    return out


def uncovered(conn: psycopg.Connection, site_ids: list[str] | None = None) -> list[Coverage]:
    """Sites left without a flood rule, with the reason."""
    return [c for c in site_coverage(conn, site_ids) if c.reason is not None]
