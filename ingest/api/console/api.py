"""What the console needs beyond the public resources: its settings, a site's rain gauge,
and the device-health summary. Read-only, any role (viewer and above)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from ...alerting.coverage import uncovered
from ...research.data import ResearchError, get_site, nearest_rain_site
from ..deps import ConnDep, CurrentKey, SettingsDep
from ..errors import errors

router = APIRouter(prefix="/console", tags=["console"])

SiteIdPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$", description="site id")
]


class ConsoleConfig(BaseModel):
    timezone: str = Field(description="IANA zone for times (a site's params.timezone overrides)")
    tile_url: str | None = Field(description="map tile URL template with {z}/{x}/{y}; null: none")
    role: str = Field(description="role of the key asking")
    key_prefix: str
    key_name: str | None
    can_act: bool = Field(description="the key may acknowledge and resolve alerts (engineer)")


class SiteContext(BaseModel):
    site_id: str
    rain_site_id: str | None = Field(
        description="the site itself if it has rain, else params.rain_site_id, else the nearest "
        "site with rain readings"
    )


class QcCounts(BaseModel):
    readings: int
    suspect: int = Field(description="QARTOD flag 3")
    fail: int = Field(description="QARTOD flag 4")


class DeviceRow(BaseModel):
    id: str
    kind: str
    site_id: str | None
    gateway_id: str | None
    firmware: str | None
    last_seen: datetime | None
    silent_s: float | None
    offline: bool = Field(description="an offline alert is active")
    battery_v: float | None
    rssi_dbm: float | None
    status_state: str | None = Field(description="state of its last status message")
    status_at: datetime | None = Field(description="the device's clock at that status")
    qc_last_day: QcCounts


class SiteWithoutRule(BaseModel):
    site_id: str
    kind: str
    name: str
    reason: str


class DeadLetterCount(BaseModel):
    error_code: str
    count: int
    last_at: datetime
    last_error: str


class DeviceHealthOut(BaseModel):
    generated_at: datetime
    devices: list[DeviceRow]
    devices_without_site: list[str]
    sites_without_flood_rule: list[SiteWithoutRule]
    dead_letters_last_day: list[DeadLetterCount]


@router.get(
    "/config",
    response_model=ConsoleConfig,
    summary="The console's settings and the caller's role",
    responses=errors(401),
)
def config(key: CurrentKey, settings: SettingsDep) -> ConsoleConfig:
    return ConsoleConfig(
        timezone=settings.console_timezone,
        tile_url=settings.console_tile_url,
        role=key.role,
        key_prefix=key.prefix,
        key_name=key.name,
        can_act=key.allows("engineer"),
    )


@router.get(
    "/sites/{site_id}/context",
    response_model=SiteContext,
    summary="The rain gauge that serves a site (for its rain bars)",
    responses=errors(401, 404, 422),
)
def site_context(site_id: SiteIdPath, conn: ConnDep, key: CurrentKey) -> SiteContext:
    try:
        rain = nearest_rain_site(conn, get_site(conn, site_id))
    except ResearchError as exc:
        raise HTTPException(404, str(exc)) from None
    return SiteContext(site_id=site_id, rain_site_id=rain.id if rain else None)


_DEVICES_SQL = """
SELECT d.id, d.kind, d.site_id, d.gateway_id, d.firmware, d.last_seen,
  d.status_state, d.status_at,
  extract(epoch FROM now() - d.last_seen)::float8 AS silent_s,
  EXISTS (SELECT 1 FROM alerts a WHERE a.rule = 'offline' AND a.subject = d.id
          AND a.state <> 'resolved') AS offline,
  -- the latest reading when there is one, else what the last status said
  coalesce((SELECT r.value FROM streams st JOIN readings r ON r.stream_id = st.id
    WHERE st.device_id = d.id AND st.channel = 'battery_v' ORDER BY r.time DESC LIMIT 1),
    d.status_battery_v) AS battery_v,
  coalesce((SELECT r.value FROM streams st JOIN readings r ON r.stream_id = st.id
    WHERE st.device_id = d.id AND st.channel = 'rssi_dbm' ORDER BY r.time DESC LIMIT 1),
    d.status_rssi_dbm) AS rssi_dbm,
  coalesce(q.n, 0) AS n, coalesce(q.suspect, 0) AS suspect, coalesce(q.fail, 0) AS fail
FROM devices d
LEFT JOIN LATERAL (
  SELECT count(*) AS n, count(*) FILTER (WHERE r.quality = 3) AS suspect,
         count(*) FILTER (WHERE r.quality = 4) AS fail
  FROM streams st JOIN readings r ON r.stream_id = st.id
  WHERE st.device_id = d.id AND r.time > now() - interval '1 day'
) q ON true
ORDER BY d.site_id NULLS FIRST, d.id
"""


@router.get(
    "/device-health",
    response_model=DeviceHealthOut,
    summary="Devices' last message, battery, signal and QC flags of the last day; gaps",
    responses=errors(401),
)
def device_health(conn: ConnDep, key: CurrentKey) -> DeviceHealthOut:
    """Every device with its latest battery and signal and the QC flags of its readings
    of the last 24 h; loggers without a site; dams and cisterns without a flood rule in
    force (and why); dead letters of the last 24 h by reason."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_DEVICES_SQL)
        devices = [
            DeviceRow(
                **{k: r[k] for k in DeviceRow.model_fields if k in r},
                qc_last_day=QcCounts(readings=r["n"], suspect=r["suspect"], fail=r["fail"]),
            )
            for r in cur.fetchall()
        ]
        names = dict(conn.execute("SELECT id, name FROM sites").fetchall())
        gaps = [
            SiteWithoutRule(site_id=c.site_id, kind=c.kind, name=names.get(c.site_id, ""),
                            reason=c.reason or "")
            for c in uncovered(conn)
        ]  # fmt: skip
        cur.execute(
            "SELECT error_code, count(*) AS count, max(received_at) AS last_at, "
            "(array_agg(error ORDER BY received_at DESC))[1] AS last_error FROM dead_letters "
            "WHERE received_at > now() - interval '1 day' GROUP BY error_code "
            "ORDER BY count(*) DESC"
        )
        dead = [DeadLetterCount(**r) for r in cur.fetchall()]
        now = conn.execute("SELECT now()").fetchone()[0]
    return DeviceHealthOut(
        generated_at=now,
        devices=devices,
        devices_without_site=[d.id for d in devices if d.site_id is None and d.kind != "gateway"],
        sites_without_flood_rule=gaps,
        dead_letters_last_day=dead,
    )
