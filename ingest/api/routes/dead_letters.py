"""Dead letters (engineer): the messages ingest rejected, with the reason, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi import Query as Q
from pydantic import AwareDatetime, BaseModel, Field

from ...store import dead_letters as store
from ..deps import ConnDep, EngineerKey, SettingsDep
from ..errors import errors
from ..paging import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, decode_cursor, fingerprint, page
from .sites import ID_PATTERN

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])

Reason = Annotated[str, Q(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class DeadLetterOut(BaseModel):
    id: int
    received_at: datetime
    topic: str
    sender: str | None = Field(description="the topic's client id (device or gateway)")
    reason: str = Field(description="error code: bad_json, unknown_device, future_time, ...")
    error: str = Field(description="what was wrong, in words")
    payload_size: int = Field(description="bytes that arrived")
    payload_preview: str = Field(
        description=f"the payload's first {store.PREVIEW_CHARS} characters as UTF-8 "
        "(undecodable bytes replaced)"
    )
    payload_truncated: bool


@router.get(
    "",
    response_model=Page[DeadLetterOut],
    summary="Rejected messages, newest first (engineer)",
    responses=errors(401, 403, 422),
)
def list_dead_letters(
    request: Request,
    response: Response,
    conn: ConnDep,
    key: EngineerKey,
    settings: SettingsDep,
    since: Annotated[AwareDatetime | None, Q(description="received at or after")] = None,
    until: Annotated[AwareDatetime | None, Q(description="received before")] = None,
    reason: Annotated[
        list[Reason] | None, Q(max_length=20, description="error codes (repeatable)")
    ] = None,
    device: Annotated[
        str | None, Q(pattern=ID_PATTERN, description="sent on this client's topic")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> dict:
    """Kept for `SWC_DEAD_LETTER_RETAIN_DAYS`; counts per day stay longer (docs/api.md)."""
    fp = fingerprint(request)
    filters = dict(since=since, until=until, reasons=list(reason or ()), device=device)
    before = decode_cursor(cursor, fp, [int])[0] if cursor else None
    root = settings.topic_root
    rows = store.list_dead_letters(conn, root, limit=limit + 1, before_id=before, **filters)
    items = [DeadLetterOut(**{**r, "reason": r["error_code"]}) for r in rows]
    total = store.count_dead_letters(conn, root, **filters)
    return page(request, response, items, limit, fp, lambda d: [d.id], total)
