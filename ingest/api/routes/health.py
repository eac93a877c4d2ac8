"""GET /health: database, broker and how far behind the consumer is."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

import psycopg
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from ...alerting.coverage import uncovered
from ...broker import port_open
from ..deps import OptionalKey, SettingsDep

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class ComponentHealth(BaseModel):
    status: Literal["ok", "down", "not_configured"]
    detail: str | None = None


class IngestHealth(BaseModel):
    last_received_at: datetime | None
    lag_s: float | None
    dead_letters_last_hour: int


class FloodRuleWarning(BaseModel):
    site_id: str
    kind: str
    reason: str


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: ComponentHealth
    broker: ComponentHealth
    ingest: IngestHealth | None
    storage_mode: str | None
    sites_without_flood_rule: list[FloodRuleWarning] = Field(
        default_factory=list,
        description="sites that can raise no flood warning, with the reason (design values missing)",
    )


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Health of the database, broker and ingest",
    responses={
        503: {"model": HealthOut, "description": "degraded: the database or the broker is down"}
    },
)
def health(
    request: Request, response: Response, settings: SettingsDep, key: OptionalKey
) -> HealthOut:
    """Without a valid key: the status of each part only. With one: also the broker's
    address and the database's error text."""
    db, ingest, mode = ComponentHealth(status="ok"), None, None
    flood: list[FloodRuleWarning] = []
    try:
        with request.app.state.pool.connection(timeout=3) as conn:
            mode = conn.execute("SELECT value FROM swc_meta WHERE key = 'storage_mode'").fetchone()
            mode = mode[0] if mode else None
            last, lag, dead = conn.execute(
                "SELECT max(received_at), extract(epoch FROM now() - max(received_at)), "
                "(SELECT count(*) FROM dead_letters WHERE received_at > now() - interval '1 hour') "
                "FROM readings WHERE received_at > now() - interval '1 day'"
            ).fetchone()
            ingest = IngestHealth(
                last_received_at=last,
                lag_s=float(lag) if lag is not None else None,
                dead_letters_last_hour=dead,
            )
            flood = [
                FloodRuleWarning(site_id=c.site_id, kind=c.kind, reason=c.reason or "")
                for c in uncovered(conn)
            ]
    except (psycopg.Error, TimeoutError) as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        log.warning("health: database down: %s", text)
        db = ComponentHealth(status="down", detail=text if key else None)
    if settings.mqtt_url:
        target = settings.mqtt
        up = port_open(target.host, target.port, timeout=1.0)
        broker = ComponentHealth(
            status="ok" if up else "down", detail=f"{target.host}:{target.port}" if key else None
        )
    else:
        broker = ComponentHealth(status="not_configured")
    healthy = db.status == "ok" and broker.status != "down"
    if not healthy:
        response.status_code = 503
    return HealthOut(
        status="ok" if healthy else "degraded",
        database=db,
        broker=broker,
        ingest=ingest,
        storage_mode=mode,
        sites_without_flood_rule=flood,
    )
