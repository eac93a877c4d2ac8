"""Time series of readings for any streams, sites and channels: raw or in buckets,
filtered by quality, paged by an opaque cursor on (stream, time)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from protocol.channels import unit_of

from ...store import timeseries as store
from ..deps import ConnDep, CurrentKey
from ..errors import errors
from ..paging import link_with_cursor
from ..render import page_json

router = APIRouter(prefix="/readings", tags=["readings"])

QUALITY_FLAGS = (1, 2, 3, 4, 9)


def _flag(q: int) -> int:
    if q not in QUALITY_FLAGS:
        raise ValueError(f"QC flag {q} is not one of 1, 2, 3, 4, 9")
    return q


Quality = Annotated[
    int, Field(ge=1, le=9, description="QARTOD flag: 1, 2, 3, 4 or 9"), AfterValidator(_flag)
]
Aggregate = Literal["mean", "min", "max", "sum", "count", "first", "last"]
StreamId = Annotated[int, Field(ge=1, le=2**31 - 1)]
IdText = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
ChannelName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]

MAX_LIMIT = 10_000
MAX_BUCKETS = 50_000  # per stream and request
MAX_INTERVAL = timedelta(days=3660)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_INTERVAL_RE = r"^(?:[0-9]{1,7}[smhdw]){1,5}$"


def parse_interval(text: str) -> timedelta:
    """``5m``, ``1h``, ``1d``, ``2w``, ``1h30m`` (s, m, h, d, w) to a timedelta."""
    parts = re.findall(r"([0-9]+)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"interval {text!r} is not like 5m, 1h, 1d or 1h30m")
    return timedelta(seconds=sum(int(n) * _UNIT_S[u] for n, u in parts))


def format_interval(td: timedelta) -> str:
    s = int(td.total_seconds())
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        n, s = divmod(s, _UNIT_S[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


class SelectionParams(BaseModel):
    """Which readings: streams, sites, devices and channels (each repeatable; the given
    ones must all match), a time range and a quality filter."""

    model_config = ConfigDict(extra="forbid")
    stream_id: list[StreamId] = Field(default_factory=list, max_length=1000)
    site_id: list[IdText] = Field(default_factory=list, max_length=1000)
    device_id: list[IdText] = Field(default_factory=list, max_length=1000)
    channel: list[ChannelName] = Field(default_factory=list, max_length=100)
    start: AwareDatetime | None = Field(default=None, description="inclusive, with a zone")
    end: AwareDatetime | None = Field(default=None, description="exclusive, with a zone")
    quality: list[Quality] = Field(
        default_factory=list, max_length=5, description="keep readings with these QC flags"
    )
    max_quality: int | None = Field(
        default=None, ge=1, le=9, description="keep readings whose QC flag is at most this"
    )

    @model_validator(mode="after")
    def _range(self):
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(
                f"start ({self.start.isoformat()}) must be before end ({self.end.isoformat()})"
            )
        for name in ("start", "end"):
            t = getattr(self, name)
            if t is not None and not (2000 <= t.astimezone(UTC).year <= 2200):
                raise ValueError(f"{name} must be between the years 2000 and 2200")
        return self

    def qualities(self) -> tuple[int, ...]:
        """The flags kept, () for no quality filter."""
        if not self.quality and self.max_quality is None:
            return ()
        kept = set(self.quality) if self.quality else set(QUALITY_FLAGS)
        if self.max_quality is not None:
            kept = {q for q in kept if q <= self.max_quality}
        return tuple(sorted(kept)) or (-1,)  # (-1,): a filter nothing passes

    def stream_filter(self) -> store.StreamFilter:
        return store.StreamFilter(
            tuple(self.stream_id), tuple(self.site_id), tuple(self.device_id), tuple(self.channel)
        )


class ReadingsParams(SelectionParams):
    start: AwareDatetime = Field(description="inclusive, with a zone (e.g. 2027-07-01T00:00Z)")
    end: AwareDatetime = Field(description="exclusive, with a zone")
    interval: Annotated[str, Field(pattern=_INTERVAL_RE)] | None = Field(
        default=None, description="bucket width, e.g. 5m, 1h, 1d, 1w; unset: raw readings"
    )
    agg: list[Aggregate] = Field(
        default_factory=list, max_length=7, description="aggregates per bucket (default mean)"
    )
    limit: int = Field(default=1000, ge=1, le=MAX_LIMIT, description="rows per page")
    cursor: str | None = Field(
        default=None, max_length=200, description="the `next` of the previous page"
    )


class StreamOut(BaseModel):
    id: int
    device_id: str
    site_id: str | None
    channel: str
    unit: str | None = Field(description="the channel's unit (protocol channel registry)")


class RawReading(BaseModel):
    """A reading as stored (no `interval`)."""

    stream_id: int
    time: datetime = Field(description="sample time")
    value: float
    unit: str | None = Field(description="unit of value: the stream's channel's unit")
    quality: int = Field(description="QARTOD flag")


class BucketReading(BaseModel):
    """A bucket (with `interval`): `count` and only the aggregates asked for (`agg`)."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": False})
    stream_id: int
    time: datetime = Field(description="start of the bucket")
    unit: str | None = Field(description="unit of the aggregates (count has none)")
    count: int = Field(description="readings in the bucket")
    mean: float | None = Field(default=None, description="only when asked for (agg)")
    min: float | None = Field(default=None, description="only when asked for (agg)")
    max: float | None = Field(default=None, description="only when asked for (agg)")
    sum: float | None = Field(default=None, description="only when asked for (agg)")
    first: float | None = Field(default=None, description="only when asked for (agg)")
    last: float | None = Field(default=None, description="only when asked for (agg)")


class ReadingsPage(BaseModel):
    source: Literal["readings", "readings_hourly"] = Field(
        description="readings: raw rows (binned with date_bin when bucketed); "
        "readings_hourly: combined from the hourly aggregate"
    )
    interval: str | None = Field(description="bucket width; null for raw rows")
    aggregates: list[Aggregate]
    start: datetime
    end: datetime
    qualities: list[int] | None = Field(description="QC flags kept; null: all")
    streams: list[StreamOut]
    items: list[RawReading] | list[BucketReading] = Field(
        description="raw readings, or buckets when `interval` is given"
    )
    total: None = Field(default=None, description="not counted for readings (always null)")
    limit: int
    next: str | None = Field(
        description='link to the next page (also in the `Link: <...>; rel="next"` header); '
        "null on the last page"
    )
    next_cursor: str | None = Field(description="the cursor of the next page")


def _fingerprint(q: ReadingsParams, interval: timedelta | None, aggs: list[str]) -> str:
    f = q.stream_filter()
    text = repr(
        (
            sorted(f.stream_ids),
            sorted(f.site_ids),
            sorted(f.device_ids),
            sorted(f.channels),
            q.start.timestamp(),
            q.end.timestamp(),
            interval.total_seconds() if interval else None,
            sorted(aggs),
            q.qualities(),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_cursor(stream_id: int, t: datetime, fp: str) -> str:
    us = round(t.timestamp() * 1_000_000)
    return base64.urlsafe_b64encode(f"{stream_id}:{us}:{fp}".encode()).decode().rstrip("=")


def decode_cursor(
    text: str, fp: str, start: datetime | None = None, end: datetime | None = None
) -> tuple[int, datetime]:
    """The (stream, time) after which the page starts; a cursor that this query could
    not have given (another query, a time outside [start, end), a stream id out of
    range) is refused with 422."""
    bad = HTTPException(422, "cursor is not valid: pass the `next` of the previous page as is")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        sid, us, got = raw.split(":")
        stream_id, micros = int(sid), int(us)
        t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
        raise bad from None
    if got != fp:
        raise HTTPException(
            422, "cursor belongs to another query: repeat the parameters of the first page"
        )
    if not 1 <= stream_id <= 2**63 - 1:
        raise bad
    # a bucket may start up to one interval before ``start``
    if (start is not None and t < start - MAX_INTERVAL) or (end is not None and t >= end):
        raise bad
    return stream_id, t


def _check_interval(q: ReadingsParams) -> timedelta | None:
    if q.interval is None:
        if q.agg:
            raise HTTPException(422, "agg needs an interval (e.g. interval=1h)")
        return None
    try:
        interval = parse_interval(q.interval)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if interval <= timedelta(0) or interval > MAX_INTERVAL:
        raise HTTPException(422, f"interval must be positive and at most {MAX_INTERVAL.days}d")
    span = (q.end - q.start).total_seconds()
    buckets = math.ceil(span / interval.total_seconds())
    if buckets > MAX_BUCKETS:
        least_s = math.ceil(span / MAX_BUCKETS)
        if least_s > 60:
            least_s = math.ceil(least_s / 60) * 60
        least = format_interval(timedelta(seconds=least_s))
        raise HTTPException(
            422,
            f"interval {q.interval} gives {buckets} buckets per stream between start and end; "
            f"at most {MAX_BUCKETS}: use an interval of at least {least} or a shorter range",
        )
    return interval


def use_hourly(q: ReadingsParams, interval: timedelta | None, aggs: list[str]) -> bool:
    """The hourly aggregate serves whole-hour buckets over whole hours, all QC flags,
    and aggregates it holds."""
    if interval is None or q.qualities():
        return False
    whole = [interval.total_seconds(), q.start.timestamp(), q.end.timestamp()]
    return all(x % 3600 == 0 for x in whole) and set(aggs) <= store.HOURLY_AGGREGATES


def page_bytes(
    conn: psycopg.Connection,
    q: ReadingsParams,
    interval: timedelta | None,
    aggs: list[str],
    fp: str,
    after: tuple[int, datetime] | None,
    path: str,
    query: Sequence[tuple[str, str]],
) -> tuple[bytes, str | None]:
    """The page (JSON) of the query ``q`` checked by the route, and the link to the next
    page (``path`` and ``query``: the request's); run in the API process or in a worker
    process (offload.py), to the same bytes."""
    streams = store.streams(conn, q.stream_filter())
    ids = [s["id"] for s in streams]
    hourly = use_hourly(q, interval, aggs)
    if not ids:
        rows: list[dict] = []
    elif interval is None:
        rows = store.raw_page(conn, ids, q.start, q.end, q.qualities(), after, q.limit + 1)
    else:
        rows = store.bucket_page(
            conn, ids, q.start, q.end, interval, aggs, q.qualities(), after, q.limit + 1, hourly
        )
    nxt = None
    if len(rows) > q.limit:
        rows = rows[: q.limit]
        nxt = encode_cursor(rows[-1]["stream_id"], rows[-1]["time"], fp)
    kept = q.qualities()
    units = {s["id"]: unit_of(s["channel"]) or s["unit"] for s in streams}
    for s in streams:
        s["unit"] = units[s["id"]]
    # plain dicts in the models' field order (render.py writes them without a model each)
    items: list[dict]
    if interval is None:
        items = [
            {
                "stream_id": r["stream_id"],
                "time": r["time"],
                "value": r["value"],
                "unit": units.get(r["stream_id"]),
                "quality": r["quality"],
            }
            for r in rows
        ]
    else:
        wanted = [a for a in BucketReading.model_fields if a in aggs and a != "count"]
        items = [
            {
                "stream_id": r["stream_id"],
                "time": r["time"],
                "unit": units.get(r["stream_id"]),
                "count": r["count"],
                **{a: r.get(a) for a in wanted},
            }
            for r in rows
        ]
    link = link_with_cursor(path, query, nxt) if nxt else None
    page = ReadingsPage(
        source="readings_hourly" if hourly else "readings",
        interval=format_interval(interval) if interval else None,
        aggregates=aggs,
        start=q.start,
        end=q.end,
        qualities=list(kept) if kept and kept != (-1,) else ([] if kept else None),
        streams=[StreamOut(**s) for s in streams],
        items=[],  # put in by page_json
        total=None,
        limit=q.limit,
        next=link,
        next_cursor=nxt,
    )
    # rendered a few rows at a time (render.py): in the API process a page of 10,000
    # rows does not hold the interpreter while other clients wait; aggregates not
    # asked for are left out, not sent as nulls
    return page_json(page, "items", items, BucketReading if interval else RawReading), link


@router.get(
    "",
    response_model=ReadingsPage,
    summary="Readings of streams, sites and channels: raw or in buckets, paged by a cursor",
    responses=errors(401, 422),
)
def readings(
    request: Request, conn: ConnDep, key: CurrentKey, q: Annotated[ReadingsParams, Query()]
) -> Response:
    """Rows are ordered by stream, then time. Follow `next` until it is null.

    Bucketed rows (`interval`) carry `count` and the aggregates asked for
    (`agg`, repeatable; default `mean`). Buckets start on multiples of the
    interval from 2000-01-03T00:00Z (a Monday); empty buckets are left out.
    Whole-hour buckets over whole hours without a quality filter come from
    the hourly aggregate (`source: readings_hourly`); the others are binned
    from the raw readings.
    """
    interval = _check_interval(q)
    aggs: list[str] = list(dict.fromkeys(q.agg)) or (["mean"] if interval else [])
    fp = _fingerprint(q, interval, aggs)
    after = decode_cursor(q.cursor, fp, q.start, q.end) if q.cursor else None
    args = (q, interval, aggs, fp, after, request.url.path, request.query_params.multi_items())
    workers = getattr(request.app.state, "heavy_workers", None)
    if workers is not None and q.limit > request.app.state.settings.api_heavy_rows:
        # an expensive page (admission.py): queried and rendered in a worker process of
        # lower priority (offload.py), while this process serves ordinary requests
        body, link = workers.run(conn, request.state.statement_timeout_s, page_bytes, *args)
    else:
        body, link = page_bytes(conn, *args)
    headers = {"Link": f'<{link}>; rel="next"'} if link else None
    return Response(body, media_type="application/json", headers=headers)
