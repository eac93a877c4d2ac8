"""Queries of the time-series API: the streams a selection names, and one page of raw
readings or of buckets (from raw readings with ``date_bin``, or from ``readings_hourly``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

#: Origin of every bucket: a Monday at midnight UTC, so that buckets of hours,
#: days and weeks start on whole hours, at midnight UTC and on Mondays.
BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)

#: Aggregates the hourly aggregate can give (it has n, mean, min, max, sum per hour).
HOURLY_AGGREGATES = frozenset({"mean", "min", "max", "sum", "count"})
AGGREGATES = ("mean", "min", "max", "sum", "count", "first", "last")


@dataclass(frozen=True)
class StreamFilter:
    """Streams by id, site, device and channel (AND of the given ones; empty = any)."""

    stream_ids: tuple[int, ...] = ()
    site_ids: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    def where(self) -> tuple[sql.Composable, list]:
        conds: list[sql.Composable] = [sql.SQL("true")]
        params: list = []
        for column, values in (
            ("s.id", self.stream_ids),
            ("d.site_id", self.site_ids),
            ("s.device_id", self.device_ids),
            ("s.channel", self.channels),
        ):
            if values:
                conds.append(sql.SQL(column + " = ANY(%s)"))
                params.append(list(values))
        return sql.SQL(" AND ").join(conds), params


def streams(conn: psycopg.Connection, flt: StreamFilter) -> list[dict]:
    """The selected streams with their device, site, channel and unit, by id."""
    where, params = flt.where()
    query = sql.SQL(
        "SELECT s.id, s.device_id, d.site_id, s.channel, s.unit FROM streams s "
        "JOIN devices d ON d.id = s.device_id WHERE {} ORDER BY s.id"
    ).format(where)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def raw_page(
    conn: psycopg.Connection,
    stream_ids: Sequence[int],
    start: datetime,
    end: datetime,
    qualities: Sequence[int],
    after: tuple[int, datetime] | None,
    limit: int,
) -> list[dict]:
    """Readings ordered by (stream, time), strictly after the ``after`` key."""
    conds = [sql.SQL("stream_id = ANY(%s) AND time >= %s AND time < %s")]
    params: list = [list(stream_ids), start, end]
    if qualities:
        conds.append(sql.SQL("quality = ANY(%s::smallint[])"))
        params.append(list(qualities))
    if after is not None:
        conds.append(sql.SQL("(stream_id, time) > (%s, %s)"))
        params.extend(after)
    query = sql.SQL(
        "SELECT stream_id, time, value, quality FROM readings WHERE {} "
        "ORDER BY stream_id, time LIMIT %s"
    ).format(sql.SQL(" AND ").join(conds))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, [*params, limit]).fetchall()


_RAW_AGG = {
    "count": "count(*)",
    "mean": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "sum": "sum(value)",
    "first": "(array_agg(value ORDER BY time))[1]",
    "last": "(array_agg(value ORDER BY time DESC))[1]",
}
_HOURLY_AGG = {
    "count": "sum(n)::int8",
    "mean": "sum(sum) / sum(n)::float8",
    "min": "min(min)",
    "max": "max(max)",
    "sum": "sum(sum)",
}


def bucket_page(
    conn: psycopg.Connection,
    stream_ids: Sequence[int],
    start: datetime,
    end: datetime,
    interval: timedelta,
    aggregates: Sequence[str],
    qualities: Sequence[int],
    after: tuple[int, datetime] | None,
    limit: int,
    hourly: bool,
) -> list[dict]:
    """Buckets ordered by (stream, bucket start), from the first bucket after ``after``.

    ``hourly``: combine the rows of ``readings_hourly`` (whole-hour intervals,
    no quality filter, aggregates among :data:`HOURLY_AGGREGATES`; the mean
    of a bucket is the sum of the hourly sums over the sum of the counts).
    Otherwise bin the raw readings with ``date_bin``. Every bucket has a
    ``count``; empty buckets are left out.
    """
    wanted = ["count", *(a for a in aggregates if a != "count")]
    table, time_col, exprs = (
        ("readings_hourly", "bucket", _HOURLY_AGG) if hourly else ("readings", "time", _RAW_AGG)
    )
    if hourly and not set(wanted) <= HOURLY_AGGREGATES:
        raise ValueError(f"the hourly aggregate has no {sorted(set(wanted) - HOURLY_AGGREGATES)}")
    t = sql.Identifier(time_col)
    conds = [sql.SQL("stream_id = ANY(%s) AND {t} >= %s AND {t} < %s").format(t=t)]
    params: list = [list(stream_ids), start, end]
    if qualities:
        if hourly:
            raise ValueError("the hourly aggregate has no quality flags")
        conds.append(sql.SQL("quality = ANY(%s::smallint[])"))
        params.append(list(qualities))
    if after is not None:
        # the next bucket of the same stream starts one interval after the last one
        conds.append(sql.SQL("(stream_id, {t}) >= (%s, %s)").format(t=t))
        params.extend([after[0], after[1] + interval])
    where = sql.SQL(" AND ").join(conds)
    cols = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(sql.SQL(exprs[a]), sql.Identifier(a)) for a in wanted
    )
    query = sql.SQL(
        "SELECT stream_id, date_bin(%s::interval, {t}, %s) AS time, {cols} FROM {table} "
        "WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %s"
    ).format(t=t, cols=cols, table=sql.Identifier(table), where=where)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, [interval, BUCKET_ORIGIN, *params, limit]).fetchall()
