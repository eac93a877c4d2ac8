"""Sites: list, one with its devices, latest readings and health; create and edit (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from protocol.channels import unit_of

from ...alerting.coverage import site_coverage
from ...store.alerts import ACTIVE, record_write
from ..deps import AdminKey, ConnDep, CurrentKey, SettingsDep
from ..errors import errors
from ..paging import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, decode_cursor, fingerprint, page

router = APIRouter(prefix="/sites", tags=["sites"])

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
SiteIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="site id")]
SiteKind = Literal["check_dam", "cistern", "runoff_plot", "rain_gauge", "other"]
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
Lat = Annotated[float, Field(ge=-90, le=90)]
Lon = Annotated[float, Field(ge=-180, le=180)]
Elev = Annotated[float, Field(ge=-500, le=9000, allow_inf_nan=False)]


class SiteOut(BaseModel):
    id: str
    kind: SiteKind
    name: str
    latitude: float | None
    longitude: float | None
    elevation_m: float | None
    params: dict[str, Any] = Field(description="design values: spillway_crest_m, ...")
    devices: int
    active_alerts: int = Field(description="its open or acknowledged alerts (all live)")
    alert_level: int = Field(
        description="highest level of its open or acknowledged alerts, 0..4: the level of "
        "/alerts?active=true&site_id=..., of the retained MQTT state and of the SSE events"
    )
    last_seen: datetime | None = Field(description="last message from any of its devices")
    flood_rules: list[str] = Field(
        default_factory=list, description="the flood rules that can raise its warning"
    )
    flood_warning: str | None = Field(
        default=None, description="why no flood rule applies (null: covered, or none needed)"
    )


class SiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    kind: SiteKind
    name: Text
    latitude: Lat | None = None
    longitude: Lon | None = None
    elevation_m: Elev | None = None
    params: dict[str, Any] = Field(default_factory=dict, max_length=200)


class SiteUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: Text | None = None
    latitude: Lat | None = None
    longitude: Lon | None = None
    elevation_m: Elev | None = None
    params: dict[str, Any] | None = Field(default=None, max_length=200)


class LatestReading(BaseModel):
    device_id: str
    channel: str
    unit: str | None = Field(description="the channel's unit (protocol channel registry)")
    time: datetime
    value: float
    quality: int
    received_at: datetime


class DeviceHealth(BaseModel):
    id: str
    kind: str
    last_seen: datetime | None
    silent_s: float | None = Field(description="seconds since its last message")
    offline: bool = Field(description="an offline alert is active for it")
    battery_v: float | None


class SiteDetail(SiteOut):
    device_health: list[DeviceHealth]
    latest: list[LatestReading]


_SITE_SQL = f"""
SELECT s.id, s.kind, s.name, s.latitude, s.longitude, s.elevation_m, s.params,
  (SELECT count(*) FROM devices d WHERE d.site_id = s.id) AS devices,
  (SELECT count(*) FROM alerts a WHERE a.site_id = s.id AND {ACTIVE}) AS active_alerts,
  coalesce((SELECT max(a.level) FROM alerts a WHERE a.site_id = s.id AND {ACTIVE}), 0)
    AS alert_level,
  (SELECT max(d.last_seen) FROM devices d WHERE d.site_id = s.id) AS last_seen
FROM sites s
"""


def _sites(conn, where: str = "", params: tuple = (), limit: int | None = None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        tail = " ORDER BY s.id" + (" LIMIT %s" if limit is not None else "")
        cur.execute(_SITE_SQL + where + tail, (*params, limit) if limit is not None else params)
        rows = cur.fetchall()
    cover = {c.site_id: c for c in site_coverage(conn, [r["id"] for r in rows])}
    for r in rows:
        c = cover.get(r["id"])
        if c is not None:
            r["flood_rules"], r["flood_warning"] = c.flood_rules, c.reason
    return rows


def _one(conn, site_id: str) -> dict:
    rows = _sites(conn, "WHERE s.id = %s", (site_id,))
    if not rows:
        raise HTTPException(404, f"site {site_id!r} does not exist")
    return rows[0]


# A reading dated after its arrival (beyond the tolerance) is never a stream's
# latest: ingest refuses them (future_time); this keeps out any stored before.
_PLAUSIBLE = "r.time <= r.received_at + %s * interval '1 second'"


def _latest(conn, site_id: str, tolerance_s: float) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT st.device_id, st.channel, st.unit, r.time, r.value, r.quality, r.received_at "
            "FROM streams st JOIN devices d ON d.id = st.device_id "
            "CROSS JOIN LATERAL (SELECT time, value, quality, received_at FROM readings r "
            f"  WHERE stream_id = st.id AND {_PLAUSIBLE} ORDER BY time DESC LIMIT 1) r "
            "WHERE d.site_id = %s ORDER BY st.device_id, st.channel",
            (tolerance_s, site_id),
        )
        rows = cur.fetchall()
    for r in rows:  # the registry is the one place for units (the stored one: unknown channels)
        r["unit"] = unit_of(r["channel"]) or r["unit"]
    return rows


@router.get(
    "",
    response_model=Page[SiteOut],
    summary="Sites with their alert level, by id; filtered by kind",
    responses=errors(401, 422),
)
def list_sites(
    request: Request,
    response: Response,
    conn: ConnDep,
    key: CurrentKey,
    kind: Annotated[
        list[SiteKind] | None, Query(max_length=5, description="only these kinds (repeatable)")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> dict:
    fp = fingerprint(request)
    conds, params = [], []
    if kind:
        conds.append("s.kind = ANY(%s)")
        params.append(list(kind))
    total = conn.execute(
        "SELECT count(*) FROM sites s" + (" WHERE " + " AND ".join(conds) if conds else ""),
        params,
    ).fetchone()[0]
    if cursor:
        (after,) = decode_cursor(cursor, fp, [str])
        conds.append("s.id > %s")
        params.append(after)
    where = "WHERE " + " AND ".join(conds) if conds else ""
    rows = _sites(conn, where, tuple(params), limit + 1)
    items = [SiteOut(**r) for r in rows]
    return page(request, response, items, limit, fp, lambda s: [s.id], total)


@router.post(
    "",
    response_model=SiteOut,
    status_code=201,
    summary="Register a site (admin)",
    responses=errors(401, 403, 409, 422),
)
def create_site(body: SiteCreate, conn: ConnDep, key: AdminKey) -> SiteOut:
    if conn.execute("SELECT 1 FROM sites WHERE id = %s", (body.id,)).fetchone():
        raise HTTPException(409, f"site {body.id!r} already exists")
    conn.execute(
        "INSERT INTO sites (id, kind, name, latitude, longitude, elevation_m, params) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (body.id, body.kind, body.name, body.latitude, body.longitude, body.elevation_m,
         Jsonb(body.params)),
    )  # fmt: skip
    record_write(conn, key.id, "site.create", body.id, body.model_dump())
    return SiteOut(**_one(conn, body.id))


@router.get(
    "/{site_id}",
    response_model=SiteDetail,
    summary="A site with its devices' health and latest readings",
    responses=errors(401, 404, 422),
)
def get_site(
    site_id: SiteIdPath, conn: ConnDep, key: CurrentKey, settings: SettingsDep
) -> SiteDetail:
    site = _one(conn, site_id)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT d.id, d.kind, d.last_seen, extract(epoch FROM now() - d.last_seen)::float8 "
            "AS silent_s, EXISTS (SELECT 1 FROM alerts a WHERE a.site_id = d.site_id "
            "  AND a.rule = 'offline' AND a.subject = d.id AND a.state <> 'resolved') AS offline, "
            "(SELECT r.value FROM streams st JOIN readings r ON r.stream_id = st.id "
            f"  WHERE st.device_id = d.id AND st.channel = 'battery_v' AND {_PLAUSIBLE} "
            "  ORDER BY r.time DESC LIMIT 1) AS battery_v "
            "FROM devices d WHERE d.site_id = %s ORDER BY d.id",
            (settings.future_tolerance_s, site_id),
        )
        health = cur.fetchall()
    latest = _latest(conn, site_id, settings.future_tolerance_s)
    return SiteDetail(**site, device_health=health, latest=latest)


@router.get(
    "/{site_id}/latest",
    response_model=list[LatestReading],
    summary="The latest reading of each of the site's streams",
    responses=errors(401, 404, 422),
)
def latest(
    site_id: SiteIdPath, conn: ConnDep, key: CurrentKey, settings: SettingsDep
) -> list[LatestReading]:
    _one(conn, site_id)
    return [LatestReading(**r) for r in _latest(conn, site_id, settings.future_tolerance_s)]


@router.patch(
    "/{site_id}",
    response_model=SiteOut,
    summary="Change a site's name, location or design values (admin)",
    responses=errors(401, 403, 404, 422),
)
def update_site(site_id: SiteIdPath, body: SiteUpdate, conn: ConnDep, key: AdminKey) -> SiteOut:
    _one(conn, site_id)
    changes = body.model_dump(exclude_unset=True)
    for field in ("name", "params"):
        if field in changes and changes[field] is None:
            raise HTTPException(422, f"{field} cannot be null")
    if changes:
        cols = ", ".join(f"{k} = %s" for k in changes)
        vals = [Jsonb(v) if k == "params" else v for k, v in changes.items()]
        conn.execute(f"UPDATE sites SET {cols}, updated_at = now() WHERE id = %s", [*vals, site_id])
        record_write(conn, key.id, "site.update", site_id, changes)
    return SiteOut(**_one(conn, site_id))
