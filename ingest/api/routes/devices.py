"""Devices and gateways: list (viewer); register with a broker password (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from ...store.alerts import record_write
from ...store.credentials import add_device
from ..deps import AdminKey, ConnDep, CurrentKey
from ..errors import errors
from .sites import ID_PATTERN

router = APIRouter(prefix="/devices", tags=["devices"])

Id = Annotated[str, Field(pattern=ID_PATTERN)]


class DeviceOut(BaseModel):
    id: str
    kind: Literal["logger", "gateway"]
    site_id: str | None
    gateway_id: str | None
    has_password: bool
    auto_registered: bool
    last_seen: datetime | None
    firmware: str | None


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Id
    kind: Literal["logger", "gateway"] = "logger"
    site_id: Id | None = None
    gateway_id: Id | None = None


class DeviceCreated(DeviceOut):
    password: str = Field(description="broker password: shown this once, stored as a hash")


_SQL = (
    "SELECT id, kind, site_id, gateway_id, password_hash IS NOT NULL AS has_password, "
    "auto_registered, last_seen, firmware FROM devices"
)


@router.get("", response_model=list[DeviceOut], summary="Every device", responses=errors(401))
def list_devices(conn: ConnDep, key: CurrentKey) -> list[DeviceOut]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SQL + " ORDER BY id")
        return [DeviceOut(**r) for r in cur.fetchall()]


@router.post(
    "",
    response_model=DeviceCreated,
    status_code=201,
    summary="Register a device or gateway and issue its broker password (admin)",
    responses=errors(401, 403, 404, 422),
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
        return DeviceCreated(**cur.fetchone(), password=password)
