"""Reading what the derived products need from the database: sites, the role of each
stream (from ``sites.params.sensors[].measures``), readings as arrays, and the rain
gauge that serves a site."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

__all__ = [
    "DEFAULT_EXCLUDE_QUALITY",
    "ResearchError",
    "Series",
    "Site",
    "epoch",
    "get_site",
    "nearest_rain_site",
    "read_series",
    "to_datetime",
]

#: QARTOD flags left out by default: 4 fail, 9 missing.
DEFAULT_EXCLUDE_QUALITY: tuple[int, ...] = (4, 9)

# channel name -> role when params.sensors does not say
_ROLE_BY_CHANNEL = {
    "stage_m": "stage",
    "level_m": "level",
    "turbidity_ntu": "inflow_ssc",
    "rain_mm": "rain",
}


class ResearchError(ValueError):
    """A product cannot be computed: unknown site, wrong kind, missing curve or sensor."""


@dataclass(frozen=True)
class Site:
    id: str
    kind: str
    name: str
    latitude: float | None
    longitude: float | None
    params: dict[str, Any]
    streams: dict[str, list[int]]  # channel -> stream ids
    roles: dict[str, str]  # channel -> what it measures

    def channel_for(self, role: str) -> str | None:
        for ch, r in self.roles.items():
            if r == role and ch in self.streams:
                return ch
        return None

    def streams_for(self, role: str) -> list[int]:
        ch = self.channel_for(role)
        return self.streams.get(ch, []) if ch else []


@dataclass
class Series:
    t_s: np.ndarray  # epoch seconds, sorted, unique
    value: np.ndarray
    stream_ids: list[int]

    @property
    def empty(self) -> bool:
        return self.t_s.size == 0

    def at(self, t_s: np.ndarray) -> np.ndarray:
        """Linear interpolation at other times (NaN outside the record)."""
        if self.empty:
            return np.full(np.shape(t_s), np.nan)
        return np.interp(t_s, self.t_s, self.value, left=np.nan, right=np.nan)


def epoch(t: datetime | None) -> float | None:
    if t is None:
        return None
    if t.tzinfo is None:
        raise ResearchError(f"time {t.isoformat()} has no zone; give UTC times")
    return t.timestamp()


def to_datetime(t_s: float) -> datetime:
    return datetime.fromtimestamp(float(t_s), tz=UTC)


def get_site(conn: psycopg.Connection, site_id: str, kind: str | None = None) -> Site:
    row = conn.execute(
        "SELECT id, kind, name, latitude, longitude, params FROM sites WHERE id = %s", (site_id,)
    ).fetchone()
    if row is None:
        raise ResearchError(f"no site {site_id!r}")
    if kind is not None and row[1] != kind:
        raise ResearchError(f"site {site_id!r} is a {row[1]}, not a {kind}")
    streams: dict[str, list[int]] = {}
    for sid, ch in conn.execute(
        "SELECT s.id, s.channel FROM streams s JOIN devices d ON d.id = s.device_id "
        "WHERE d.site_id = %s ORDER BY s.id",
        (site_id,),
    ):
        streams.setdefault(ch, []).append(sid)
    params = row[5] or {}
    roles = {ch: _ROLE_BY_CHANNEL[ch] for ch in streams if ch in _ROLE_BY_CHANNEL}
    if row[1] in ("check_dam", "runoff_plot") and "flow_m3_s" in streams:
        roles["flow_m3_s"] = "outflow" if row[1] == "check_dam" else "inflow"
    for s in params.get("sensors") or []:
        if isinstance(s, dict) and s.get("channel") and s.get("measures"):
            roles[s["channel"]] = s["measures"]
    return Site(row[0], row[1], row[2], row[3], row[4], params, streams, roles)


def read_series(
    conn: psycopg.Connection,
    stream_ids: Sequence[int],
    start_s: float | None,
    end_s: float | None,
    exclude_quality: Sequence[int] = DEFAULT_EXCLUDE_QUALITY,
) -> Series:
    """Readings of the streams in ``[start, end]`` without the excluded quality flags.

    Several streams of one channel (a replaced logger) are merged; at equal
    times the first stream wins. Non-finite values are dropped.
    """
    if not stream_ids:
        return Series(np.empty(0), np.empty(0), [])
    lo = to_datetime(start_s) if start_s is not None else datetime(1970, 1, 1, tzinfo=UTC)
    hi = to_datetime(end_s) if end_s is not None else datetime(9999, 1, 1, tzinfo=UTC)
    cur = conn.cursor(binary=True)
    cur.execute(
        "SELECT extract(epoch FROM time)::float8, value FROM readings "
        "WHERE stream_id = ANY(%s) AND time >= %s AND time <= %s "
        "AND NOT (quality = ANY(%s::smallint[])) ORDER BY time, stream_id",
        (list(stream_ids), lo, hi, list(exclude_quality)),
    )
    rows = cur.fetchall()
    if not rows:
        return Series(np.empty(0), np.empty(0), list(stream_ids))
    arr = np.asarray(rows, dtype=float)
    t, v = arr[:, 0], arr[:, 1]
    keep = np.isfinite(v)
    t, v = t[keep], v[keep]
    if t.size:
        first = np.concatenate([[True], np.diff(t) > 0])
        t, v = t[first], v[first]
    return Series(t, v, list(stream_ids))


def distance_km(lat1, lon1, lat2, lon2) -> float:
    """Great-circle distance [km] (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(h, 1.0)))


def nearest_rain_site(conn: psycopg.Connection, site: Site) -> Site | None:
    """The site itself if it has a rain channel, else the nearest site whose rain
    channel has readings (``params.rain_site_id`` overrides)."""
    if site.channel_for("rain"):
        return site
    override = site.params.get("rain_site_id")
    if override:
        return get_site(conn, str(override))
    if site.latitude is None or site.longitude is None:
        return None
    best: tuple[float, str] | None = None
    for sid, lat, lon in conn.execute(
        "SELECT DISTINCT si.id, si.latitude, si.longitude FROM sites si "
        "JOIN devices d ON d.site_id = si.id JOIN streams s ON s.device_id = d.id "
        "WHERE s.channel = 'rain_mm' AND si.latitude IS NOT NULL AND si.longitude IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM readings r WHERE r.stream_id = s.id)"
    ):
        dist = distance_km(site.latitude, site.longitude, lat, lon)
        if best is None or (dist, sid) < best:
            best = (dist, sid)
    return get_site(conn, best[1]) if best else None
