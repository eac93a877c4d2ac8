"""Devices and gateways: list and one (viewer), with their last status message;
register with a broker password (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from protocol.channels import unit_of

from ...store.alerts import record_write
from ...store.credentials import add_device
from ..deps import AdminKey, ConnDep, CurrentKey
from ..errors import errors
from ..paging import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, decode_cursor, fingerprint, page
from .sites import ID_PATTERN

router = APIRouter(prefix="/devices", tags=["devices"])

Id = Annotated[str, Field(pattern=ID_PATTERN)]
DeviceIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="device id")]
Kind = Literal["logger", "gateway"]


class DeviceStatusOut(BaseModel):
    """The device's last status message (swc/v1/{id}/status, docs/protocol.md)."""

    state: Literal["online", "offline"] = Field(description="offline: its last will")
    at: datetime | None = Field(description="the device's clock at the status")
    received_at: datetime = Field(description="when ingest received it")
    battery_v: float | None
    rssi_dbm: float | None
    units: dict[str, str | None] = Field(
        description="unit of each value, from the protocol's channel registry"
    )
    details: dict[str, Any] = Field(description="free-form facts the device sent")


class DeviceOut(BaseModel):
    id: str
    kind: Kind
    site_id: str | None
    gateway_id: str | None
    has_password: bool
    auto_registered: bool
    last_seen: datetime | None = Field(description="last telemetry message")
    firmware: str | None = Field(description="from its last status message that named one")
    status: DeviceStatusOut | None = Field(description="null: no status message yet")


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Id
    kind: Kind = "logger"
    site_id: Id | None = None
    gateway_id: Id | None = None


class DeviceCreated(DeviceOut):
    password: str = Field(description="broker password: shown this once, stored as a hash")


_SQL = (
    "SELECT id, kind, site_id, gateway_id, password_hash IS NOT NULL AS has_password, "
    "auto_registered, last_seen, firmware, status_state, status_at, status_received_at, "
    "status_battery_v, status_rssi_dbm, status_details FROM devices"
)


def _out(r: dict) -> dict:
    status = None
    if r["status_state"] is not None:
        status = DeviceStatusOut(
            state=r["status_state"],
            at=r["status_at"],
            received_at=r["status_received_at"],
            battery_v=r["status_battery_v"],
            rssi_dbm=r["status_rssi_dbm"],
            units={"battery_v": unit_of("battery_v"), "rssi_dbm": unit_of("rssi_dbm")},
            details=r["status_details"] or {},
        )
    keep = ("id", "kind", "site_id", "gateway_id", "has_password", "auto_registered")
    return {
        **{k: r[k] for k in keep},
        "last_seen": r["last_seen"],
        "firmware": r["firmware"],
        "status": status,
    }


@router.get(
    "",
    response_model=Page[DeviceOut],
    summary="Devices and gateways by id, with their last status",
    responses=errors(401, 422),
)
def list_devices(
    request: Request,
    response: Response,
    conn: ConnDep,
    key: CurrentKey,
    site_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="of this site")] = None,
    kind: Annotated[Kind | None, Query(description="logger or gateway")] = None,
    gateway_id: Annotated[
        str | None, Query(pattern=ID_PATTERN, description="behind this gateway")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> dict:
    fp = fingerprint(request)
    conds, params = [], []
    for col, val in (("site_id", site_id), ("kind", kind), ("gateway_id", gateway_id)):
        if val is not None:
            conds.append(f"{col} = %s")
            params.append(val)
    where = " AND ".join(conds) or "true"
    total = conn.execute(f"SELECT count(*) FROM devices WHERE {where}", params).fetchone()[0]
    if cursor:
        (after,) = decode_cursor(cursor, fp, [str])
        where += " AND id > %s"
        params.append(after)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"{_SQL} WHERE {where} ORDER BY id LIMIT %s", [*params, limit + 1])
        items = [DeviceOut(**_out(r)) for r in cur.fetchall()]
    return page(request, response, items, limit, fp, lambda d: [d.id], total)


@router.get(
    "/{device_id}",
    response_model=DeviceOut,
    summary="One device or gateway with its last status",
    responses=errors(401, 404, 422),
)
def get_device(device_id: DeviceIdPath, conn: ConnDep, key: CurrentKey) -> DeviceOut:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SQL + " WHERE id = %s", (device_id,))
        row = cur.fetchone()
    if row is None:
        raise HTTPException(404, f"device {device_id!r} does not exist")
    return DeviceOut(**_out(row))


@router.post(
    "",
    response_model=DeviceCreated,
    status_code=201,
    summary="Register a device or gateway and issue its broker password (admin)",
    responses=errors(401, 403, 404, 409, 422),
)
def create_device(body: DeviceCreate, conn: ConnDep, key: AdminKey) -> DeviceCreated:
    """Run `swc broker acl` afterwards to give the broker the new password and ACL."""
    if body.id == "alerts":
        raise HTTPException(422, "device id 'alerts' is reserved for the alerts topics")
    try:
        password = add_device(
            conn, body.id, kind=body.kind, site_id=body.site_id, gateway_id=body.gateway_id
        )
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    record_write(conn, key.id, "device.add", body.id, body.model_dump())
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SQL + " WHERE id = %s", (body.id,))
        return DeviceCreated(**_out(cur.fetchone()), password=password)
