"""Data from other sites that a rule needs (``Rule.context``): the rain of a dam's
own or nearest rain stream and the stage of the dams upstream of it.

The registry part (which rain streams, by distance; which dams drain into a
dam, with their outlets) is cached per site for ``REGISTRY_TTL_S``, made from
the registry-wide lists (all rain streams, all dams naming a downstream dam)
read once per ``REGISTRY_TTL_S`` for every site; the
readings are read for each evaluation, over the window the forecast needs
before the newest stage reading.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from analytics.storage import CheckDam

from ..research.data import distance_km
from .rules import (
    FORECAST_RAIN_LOOKBACK_S,
    FORECAST_STAGE_LOOKBACK_S,
    catchment_model,
    check_dam_model,
)

log = logging.getLogger(__name__)

REGISTRY_TTL_S = 60.0
RAIN_CANDIDATES = 3  # the nearest rain streams tried, nearest first, for one with data
RAIN_MAX_DISTANCE_KM = 25.0  # farther gauges say little about a gully's storm


class SiteContext:
    """Reads ``Context.extras`` for a site; thread-safe registry cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        # every rain stream and every dam naming a downstream dam, read once per TTL for
        # all sites (per site, these reads made a pass over N dams cost N x N at scale)
        self._shared: tuple[float, list[tuple], dict[str, list[tuple]]] | None = None

    def _registry_wide(
        self, conn: psycopg.Connection
    ) -> tuple[float, list[tuple], dict[str, list]]:
        """(when read, rain streams: (stream, site, lat, lon) by stream id, downstream dam ->
        its upstream dams (id, params) by id), cached for ``REGISTRY_TTL_S``."""
        now = time.monotonic()
        with self._lock:
            shared = self._shared
        if shared is not None and now - shared[0] < REGISTRY_TTL_S:
            return shared
        rain = conn.execute(
            "SELECT s.id, si.id, si.latitude, si.longitude FROM streams s "
            "JOIN devices d ON d.id = s.device_id JOIN sites si ON si.id = d.site_id "
            "WHERE s.channel = 'rain_mm' ORDER BY s.id"
        ).fetchall()
        upstream: dict[str, list[tuple]] = {}
        for uid, down, uparams in conn.execute(
            "SELECT id, params->>'downstream_dam', params FROM sites WHERE kind = 'check_dam' "
            "AND params->>'downstream_dam' IS NOT NULL ORDER BY id"
        ).fetchall():
            upstream.setdefault(down, []).append((uid, uparams))
        with self._lock:
            self._shared = (now, rain, upstream)
        return now, rain, upstream

    def registry(self, conn: psycopg.Connection, site_id: str) -> dict[str, Any]:
        """Rain stream candidates (nearest first) and upstream dams of ``site_id``."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(site_id)
        if hit is not None and now - hit[0] < REGISTRY_TTL_S:
            return hit[1]
        fetched, info = self._read_registry(conn, site_id)
        with self._lock:  # as old as the registry-wide part it was made from
            self._cache[site_id] = (fetched, info)
        return info

    def _read_registry(
        self, conn: psycopg.Connection, site_id: str
    ) -> tuple[float, dict[str, Any]]:
        me = conn.execute(
            "SELECT latitude, longitude, params FROM sites WHERE id = %s", (site_id,)
        ).fetchone()
        lat, lon, params = me if me else (None, None, {})
        params = params or {}
        fetched, rows, upstream_of = self._registry_wide(conn)
        chosen = params.get("rain_site_id")
        cands: list[tuple[float, int, str]] = []
        for sid, rsite, rlat, rlon in rows:
            if rsite in (site_id, chosen):
                dist = 0.0
            elif None in (lat, lon, rlat, rlon):
                continue
            else:
                dist = distance_km(lat, lon, rlat, rlon)
                if dist > RAIN_MAX_DISTANCE_KM:
                    continue
            cands.append((dist, sid, rsite))
        cands.sort()
        upstream: list[tuple[int, CheckDam, Any]] = []
        for uid, uparams in upstream_of.get(site_id, ()):
            try:
                dam = check_dam_model(uparams or {})
            except (KeyError, TypeError, ValueError):
                log.info("upstream dam %s of %s has no usable outlets; left out", uid, site_id)
                continue
            stage = conn.execute(
                "SELECT s.id FROM streams s JOIN devices d ON d.id = s.device_id "
                "WHERE d.site_id = %s AND s.channel = 'stage_m' ORDER BY s.id LIMIT 1",
                (uid,),
            ).fetchone()
            if stage is not None:
                upstream.append((stage[0], dam, catchment_model(uparams or {})))
        return fetched, {"rain": [(c[1], c[0], c[2]) for c in cands[:RAIN_CANDIDATES]],
                         "upstream": upstream}  # fmt: skip

    def extras(self, conn: psycopg.Connection, site_id: str, until_s: float) -> dict[str, Any]:
        """``rain`` and ``upstream`` series up to ``until_s`` (data time) for ``site_id``."""
        info = self.registry(conn, site_id)
        out: dict[str, Any] = {"rain": None, "rain_site": None, "upstream": []}
        for sid, dist, rsite in info["rain"]:
            t, v = _series(conn, sid, until_s - FORECAST_RAIN_LOOKBACK_S, until_s)
            if t.size:
                out["rain"], out["rain_site"], out["rain_distance_km"] = (t, v), rsite, dist
                break
        for sid, dam, catchment in info["upstream"]:
            t, v = _series(conn, sid, until_s - FORECAST_STAGE_LOOKBACK_S, until_s)
            if t.size:
                out["upstream"].append((dam, catchment, t, v))
        return out


def _series(conn: psycopg.Connection, sid: int, since_s: float, until_s: float):
    rows = conn.execute(
        "SELECT extract(epoch FROM time), value FROM readings WHERE stream_id = %s "
        "AND time > %s AND time <= %s AND quality IS DISTINCT FROM 4 ORDER BY time",
        (sid, datetime.fromtimestamp(since_s, UTC), datetime.fromtimestamp(until_s, UTC)),
    ).fetchall()
    if not rows:
        return np.zeros(0), np.zeros(0)
    arr = np.array(rows, dtype=float)
    return arr[:, 0], arr[:, 1]
