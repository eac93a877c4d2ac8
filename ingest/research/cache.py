"""Derived products computed on demand and cached in ``derived_cache``.

A product's cache key names the product and its arguments; its fingerprint
summarises its inputs: for each stream read, the number of readings in the
window, their latest ``received_at`` and the sum of their quality flags (a
late reading or a re-flagged one changes it); the site's parameters; the
stage-storage curve and calibration versions; and :data:`METHOD_VERSION`. A
cached result whose fingerprint differs is recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from .data import to_datetime

log = logging.getLogger(__name__)

#: Bump when a method changes so that every cached product is recomputed.
METHOD_VERSION = "research-2"  # 2: AH 703 storm separation, Gill fine curve

M = TypeVar("M", bound=BaseModel)


def fingerprint(
    conn: psycopg.Connection,
    *,
    stream_ids: Sequence[int],
    start_s: float | None,
    end_s: float | None,
    site_ids: Sequence[str] = (),
    extra: object = None,
) -> str:
    """Hash of everything a product computed over ``[start, end]`` depends on."""
    lo = to_datetime(start_s) if start_s is not None else datetime(1970, 1, 1, tzinfo=UTC)
    hi = to_datetime(end_s) if end_s is not None else datetime(9999, 1, 1, tzinfo=UTC)
    parts: list[object] = [METHOD_VERSION, extra]
    ids = sorted(set(stream_ids))
    if ids:
        rows = conn.execute(
            "SELECT stream_id, count(*), max(received_at), sum(quality) FROM readings "
            "WHERE stream_id = ANY(%s) AND time >= %s AND time <= %s GROUP BY stream_id "
            "ORDER BY stream_id",
            (ids, lo, hi),
        ).fetchall()
        parts.append([(r[0], r[1], r[2].isoformat() if r[2] else None, r[3]) for r in rows])
    sites = sorted(set(site_ids))
    if sites:
        parts.append(
            conn.execute(
                "SELECT id, md5(params::text) FROM sites WHERE id = ANY(%s) ORDER BY id", (sites,)
            ).fetchall()
        )
        parts.append(
            conn.execute(
                "SELECT site_id, id, valid_from::text, created_at::text FROM stage_storage_curves "
                "WHERE site_id = ANY(%s) ORDER BY site_id, id",
                (sites,),
            ).fetchall()
        )
        parts.append(
            conn.execute(
                "SELECT site_id, id, valid_from::text, created_at::text FROM calibrations "
                "WHERE site_id = ANY(%s) ORDER BY site_id, id",
                (sites,),
            ).fetchall()
        )
    text = json.dumps(parts, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cached(
    conn: psycopg.Connection,
    key: str,
    fp: str,
    model: type[M],
    compute: Callable[[], M],
    use_cache: bool = True,
) -> M:
    """The cached result of ``key`` if its fingerprint is ``fp``, else compute and store it.

    The returned model has ``cached=True`` when it came from the cache.
    """
    if use_cache:
        row = conn.execute(
            "SELECT fingerprint, result FROM derived_cache WHERE key = %s", (key,)
        ).fetchone()
        if row is not None and row[0] == fp:
            out = model.model_validate(row[1])
            return out.model_copy(update={"cached": True})
    t0 = time.perf_counter()
    out = compute()
    ms = (time.perf_counter() - t0) * 1000.0
    if use_cache:
        with conn.transaction():
            conn.execute(
                "INSERT INTO derived_cache (key, fingerprint, computed_at, compute_ms, result) "
                "VALUES (%s, %s, now(), %s, %s) ON CONFLICT (key) DO UPDATE SET "
                "fingerprint = EXCLUDED.fingerprint, computed_at = EXCLUDED.computed_at, "
                "compute_ms = EXCLUDED.compute_ms, result = EXCLUDED.result",
                (key, fp, ms, Jsonb(out.model_dump(mode="json"))),
            )
        log.debug("derived product computed key=%s ms=%.1f", key, ms)
    return out


def cache_key(product: str, **args: object) -> str:
    body = json.dumps(args, default=str, sort_keys=True, separators=(",", ":"))
    return f"{product}:{body}"
