"""Webhooks (admin): alert events POSTed as signed JSON, retried with backoff, logged."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response
from psycopg.rows import dict_row
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from ...alerting.notify import TargetRefused, resolve_target
from ...store.alerts import record_write
from ..deps import AdminKey, ConnDep, SettingsDep
from ..errors import errors
from ..paging import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, decode_cursor, fingerprint, page
from .sites import ID_PATTERN

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

HookId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class WebhookOut(BaseModel):
    id: int
    url: str
    site_id: str | None
    min_level: int
    active: bool
    created_at: datetime
    created_by: int | None


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl = Field(description="http(s) URL that receives POSTed JSON events")
    site_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = Field(
        default=None, description="only this site's alerts; null for every site"
    )
    min_level: int = Field(default=1, ge=0, le=4, description="events at or above this level")
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="HMAC key; generated when left out",
    )


class WebhookCreated(WebhookOut):
    secret: str = Field(description="HMAC-SHA256 key of the X-SWC-Signature header")


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    event_id: int
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


_COLS = "id, url, site_id, min_level, active, created_at, created_by"


@router.get(
    "",
    response_model=Page[WebhookOut],
    summary="Every webhook, by id (admin)",
    responses=errors(401, 403, 422),
)
def list_webhooks(
    request: Request,
    response: Response,
    conn: ConnDep,
    key: AdminKey,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> dict:
    fp = fingerprint(request)
    after = decode_cursor(cursor, fp, [int])[0] if cursor else 0
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_COLS} FROM webhooks WHERE id > %s ORDER BY id LIMIT %s", (after, limit + 1)
        )
        items = [WebhookOut(**r) for r in cur.fetchall()]
    total = conn.execute("SELECT count(*) FROM webhooks").fetchone()[0]
    return page(request, response, items, limit, fp, lambda w: [w.id], total)


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=201,
    summary="Add a webhook (admin)",
    responses=errors(401, 403, 404, 422),
)
def create_webhook(
    body: WebhookCreate, conn: ConnDep, key: AdminKey, settings: SettingsDep
) -> WebhookCreated:
    """The URL must resolve to public addresses (unless SWC_WEBHOOK_ALLOW_PRIVATE
    allows it); deliveries do not follow redirects."""
    if (
        body.site_id
        and not conn.execute("SELECT 1 FROM sites WHERE id = %s", (body.site_id,)).fetchone()
    ):
        raise HTTPException(404, f"site {body.site_id!r} does not exist")
    try:
        resolve_target(str(body.url), settings.webhook_allow_private)
    except TargetRefused as exc:
        raise HTTPException(422, str(exc)) from None
    secret = body.secret or secrets.token_urlsafe(32)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"INSERT INTO webhooks (url, secret, site_id, min_level, created_by) "
            f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLS}",
            (str(body.url), secret, body.site_id, body.min_level, key.id),
        )
        row = cur.fetchone()
    record_write(conn, key.id, "webhook.create", str(row["id"]), {"url": str(body.url)})
    return WebhookCreated(**row, secret=secret)


@router.delete(
    "/{webhook_id}",
    response_model=WebhookOut,
    summary="Remove a webhook (admin); its delivery log goes with it",
    responses=errors(401, 403, 404, 422),
)
def delete_webhook(webhook_id: HookId, conn: ConnDep, key: AdminKey) -> WebhookOut:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"DELETE FROM webhooks WHERE id = %s RETURNING {_COLS}", (webhook_id,))
        row = cur.fetchone()
    if row is None:
        raise HTTPException(404, f"webhook {webhook_id} does not exist")
    record_write(conn, key.id, "webhook.delete", str(webhook_id), {})
    return WebhookOut(**row)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryOut],
    summary="The delivery log of a webhook, newest first (admin)",
    responses=errors(401, 403, 404, 422),
)
def deliveries(
    webhook_id: HookId,
    request: Request,
    response: Response,
    conn: ConnDep,
    key: AdminKey,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> dict:
    if not conn.execute("SELECT 1 FROM webhooks WHERE id = %s", (webhook_id,)).fetchone():
        raise HTTPException(404, f"webhook {webhook_id} does not exist")
    fp = fingerprint(request)
    before = decode_cursor(cursor, fp, [int])[0] if cursor else 2**63 - 1
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, webhook_id, event_id, status, attempts, next_attempt_at, last_status, "
            "last_error, created_at, delivered_at FROM webhook_deliveries WHERE webhook_id = %s "
            "AND id < %s ORDER BY id DESC LIMIT %s",
            (webhook_id, before, limit + 1),
        )
        items = [DeliveryOut(**r) for r in cur.fetchall()]
    total = conn.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %s", (webhook_id,)
    ).fetchone()[0]
    return page(request, response, items, limit, fp, lambda d: [d.id], total)
