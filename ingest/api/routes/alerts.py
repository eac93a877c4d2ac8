"""Alerts: list and filter, one with its history, acknowledge, resolve, and the live stream."""

from __future__ import annotations

import asyncio
import json
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Literal

import anyio
import psycopg
from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Request, Response
from psycopg_pool import PoolTimeout, TooManyRequests
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from ...alerting.engine import reset_tracker
from ...alerting.rules import RULES
from ...store import alerts as store
from ..deps import ConnDep, CurrentKey, EngineerKey, StreamKey, key_is_active, pooled
from ..errors import errors
from ..paging import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, fingerprint, page

log = logging.getLogger(__name__)

router = APIRouter(prefix="/alerts", tags=["alerts"])

State = Literal["open", "acknowledged", "resolved"]
LevelName = Literal["none", "blue", "yellow", "orange", "red"]
LEVELS: tuple[str, ...] = ("none", "blue", "yellow", "orange", "red")
RuleName = Literal[tuple(RULES)]  # type: ignore[valid-type]
SiteId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
Note = Annotated[str, Field(max_length=2000, pattern=r"^[^\x00]*$")]
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="alert id")]


class ForecastOut(BaseModel):
    """The pond forecast of the ``overtopping`` rule (docs/science.md, "Pond forecast")."""

    model_config = ConfigDict(extra="allow")

    time_to_crest_s: float | None = Field(
        default=None, description="expected time from made_at to the dam crest [s]; null: not"
    )
    time_to_crest_low_s: float | None = Field(
        default=None, description="early end of the band (inflow at +e) [s]"
    )
    time_to_crest_high_s: float | None = Field(
        default=None, description="late end of the band (inflow at -e) [s]; null: not reached"
    )
    crest_at: float | None = Field(default=None, description="expected crest time [epoch s]")
    peak_stage_m: float | None = Field(default=None, description="expected peak stage [m]")
    crest_m: float | None = Field(default=None, description="the dam crest [m]")
    made_at: float | None = Field(default=None, description="data time of the forecast [epoch s]")
    time_to_crest_ongoing_s: float | None = Field(
        default=None,
        description="time from made_at to the dam crest if the rain goes on at ongoing_rain_mm_h "
        "for ongoing_rain_s [s]; absent: that scenario was not needed (no event rain, or red "
        "from the committed runoff alone); null: not reached",
    )
    ongoing_rain_mm_h: float | None = Field(
        default=None, description="the sustained rain rate assumed to go on [mm/h]"
    )


class AlertOut(BaseModel):
    id: int
    site_id: str
    rule: str
    subject: str = Field(description="'' for site rules; the device (or device/channel)")
    state: State
    level: int = Field(description="current level 0..4 (0 once resolved)")
    level_name: LevelName
    peak_level: int
    peak_level_name: LevelName
    opened_at: datetime = Field(description="data time of the reading that opened it")
    last_data_at: datetime = Field(description="data time of the last transition")
    late: bool = Field(
        description="raised from late data: history only, recorded resolved (late_data) and "
        "never announced"
    )
    value: float | None = Field(description="the rule's measure at the last transition")
    unit: str | None = Field(description="unit of value (the rule's unit)")
    acknowledged_at: datetime | None
    acknowledged_by: int | None = Field(description="API key id")
    acknowledged_by_name: str | None = Field(description="that key's name")
    ack_note: str | None
    resolved_at: datetime | None
    resolved_by: int | None = Field(description="API key id, for a manual resolve")
    resolved_by_name: str | None = Field(description="that key's name")
    resolve_reason: str | None = Field(
        description="condition_cleared, manual, late_data, stale (no data for "
        "SWC_ALERT_STALE_AFTER_S), future_data (data dated after their arrival) or superseded"
    )
    resolve_note: str | None
    created_at: datetime
    updated_at: datetime
    forecast: ForecastOut | None = Field(
        default=None, description="the pond forecast behind an overtopping alert, as last evaluated"
    )


class AlertEventOut(BaseModel):
    id: int
    alert_id: int
    kind: Literal["open", "escalate", "deescalate", "resolve", "acknowledge", "live"]
    level: int
    level_name: LevelName
    previous_level: int
    data_time: datetime | None = Field(description="reading time; null for a person's action")
    late: bool
    value: float | None
    unit: str | None = Field(description="unit of value (the rule's unit)")
    key_id: int | None = Field(description="the API key of a person's action")
    key_name: str | None = Field(description="that key's name")
    note: str | None
    created_at: datetime


class AlertDetail(AlertOut):
    events: list[AlertEventOut]


class AlertAck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Note | None = None


class AlertResolve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[Note, Field(min_length=1)] = Field(description="why it is over (required)")


class AlertFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: list[State] | None = Field(default=None, description="one or more states")
    active: bool | None = Field(default=None, description="true: open or acknowledged")
    site_id: SiteId | None = None
    rule: RuleName | None = None
    level: int | None = Field(default=None, ge=0, le=4, description="current level exactly")
    min_current_level: int | None = Field(
        default=None, ge=1, le=4, description="current level at least (0 once resolved)"
    )
    min_peak_level: int | None = Field(
        default=None, ge=1, le=4, description="highest level of the episode at least"
    )
    min_level: int | None = Field(
        default=None,
        ge=1,
        le=4,
        description="deprecated alias of min_peak_level",
        json_schema_extra={"deprecated": True},
    )
    since: AwareDatetime | None = Field(default=None, description="active at or after")
    until: AwareDatetime | None = Field(default=None, description="opened at or before")
    late: bool | None = None
    limit: int = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}"
    )
    cursor: str | None = Field(
        default=None, max_length=400, pattern=r"^[A-Za-z0-9_\-]+$", description="`next_cursor`"
    )


def _unit(rule: str) -> str | None:
    r = RULES.get(rule)
    return getattr(r, "unit", None) if r is not None else None


def _alert(row: dict) -> dict:
    return {
        **row,
        "level_name": LEVELS[row["level"]],
        "peak_level_name": LEVELS[row["peak_level"]],
        "unit": _unit(row["rule"]),
    }


def _detail(conn, alert_id: int) -> AlertDetail:
    row = store.get_alert(conn, alert_id)
    if row is None:
        raise HTTPException(404, f"alert {alert_id} does not exist")
    unit = _unit(row["rule"])
    events = [
        {**e, "level_name": LEVELS[e["level"]], "unit": unit}
        for e in store.alert_events(conn, alert_id)
    ]
    return AlertDetail(**_alert(row), events=events)


@router.get(
    "",
    response_model=Page[AlertOut],
    summary="List alerts, newest first, filtered by state, level, site, rule and time",
    responses=errors(401, 422),
)
def list_alerts(
    request: Request,
    response: Response,
    conn: ConnDep,
    key: CurrentKey,
    q: Annotated[AlertFilter, Query()],
) -> dict:
    """Newest first by `opened_at` (then id). `total` counts every alert that matches."""
    states = list(q.state) if q.state else None
    if q.active is not None:
        wanted = ["open", "acknowledged"] if q.active else ["resolved"]
        states = [s for s in (states or wanted) if s in wanted] or ["-none-"]
    peak = max(q.min_peak_level or 0, q.min_level or 0) or None
    filters = dict(
        states=states,
        site_id=q.site_id,
        rule=q.rule,
        level=q.level,
        min_level=peak,
        min_current_level=q.min_current_level,
        since=q.since,
        until=q.until,
        late=q.late,
    )
    fp = fingerprint(request)
    after = None
    if q.cursor:
        opened, last_id = decode_cursor(q.cursor, fp, [datetime, int])
        after = (opened, last_id)
    rows = store.list_alerts(conn, limit=q.limit + 1, after=after, **filters)
    items = [AlertOut(**_alert(r)) for r in rows]
    total = store.count_alerts(conn, **filters)
    return page(request, response, items, q.limit, fp, lambda a: [a.opened_at, a.id], total)


HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing the stream
SHUTDOWN_GRACE_S = 2.0  # a stream's time to end cleanly when the server stops


@router.get(
    "/stream",
    summary="Live alert events (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "event stream"},
        **errors(401, 422),
    },
)
async def stream(
    request: Request,
    key: StreamKey,
    site_id: Annotated[SiteId | None, Query()] = None,
    min_level: Annotated[int, Query(ge=0, le=4, description="level or previous level")] = 0,
    max_seconds: Annotated[
        float | None, Query(gt=0, le=86400, description="end the stream after this long")
    ] = None,
    last_event_id: Annotated[
        int | None, Header(ge=0, le=2**63 - 1, description="replay events after this id")
    ] = None,
) -> EventSourceResponse:
    """Each announced alert event as ``id: <event id>``, ``event: alert``, ``data: <JSON>``.

    A reconnecting client sends ``Last-Event-ID`` and first gets the events it
    missed. A comment line is sent every 15 s to keep proxies from closing the
    connection. The key is checked again every `SWC_API_KEY_RECHECK_S`: once it
    is revoked the stream sends ``event: revoked`` and ends. When the server
    stops, the stream sends ``event: shutdown`` and ends (the client reconnects
    with ``Last-Event-ID`` to another or the restarted server).
    """
    broadcaster = request.app.state.broadcaster
    recheck_s = request.app.state.settings.api_key_recheck_s
    stopping = anyio.Event()  # set by sse-starlette when the server shuts down

    def wanted(ev: dict) -> bool:
        if site_id is not None and ev.get("site_id") != site_id:
            return False
        return max(ev.get("level", 0), ev.get("previous_level", 0)) >= min_level

    def frame(ev: dict) -> ServerSentEvent:
        return ServerSentEvent(id=str(ev["event_id"]), event="alert", data=json.dumps(ev), sep="\n")

    revoked = ServerSentEvent(
        event="revoked",
        data=json.dumps({"detail": f"the API key {key.prefix}… was revoked; the stream ends"}),
        sep="\n",
    )

    async def gen() -> AsyncIterator[ServerSentEvent]:
        # subscribed here, where the finally below unsubscribes it
        sub = broadcaster.subscribe()
        loop = asyncio.get_running_loop()
        deadline = None if max_seconds is None else loop.time() + max_seconds
        # Event ids are not in commit order (the engine's chunks commit side by side), so
        # a live event is dropped only if the client has it: at or below its
        # Last-Event-ID, or sent in the replay
        known = last_event_id or 0
        replayed: set[int] = set()
        # the server stops: sse-starlette saw uvicorn's signal, or `swc up` stops its API
        stops = {
            asyncio.ensure_future(stopping.wait()),
            asyncio.ensure_future(request.app.state.streams_stopping.wait()),
        }
        get: asyncio.Future | None = None
        try:
            yield ServerSentEvent(comment="connected", sep="\n")
            if last_event_id is not None:

                def missed() -> list[dict]:
                    with pooled(request) as conn:
                        ids = conn.execute(
                            "SELECT e.id FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
                            f"WHERE e.id > %s AND {store.ANNOUNCED} ORDER BY e.id LIMIT 1000",
                            (last_event_id,),
                        ).fetchall()
                        return [store.event_payload(conn, i) for (i,) in ids]

                for ev in await asyncio.to_thread(missed):
                    if wanted(ev):
                        yield frame(ev)
                    replayed.add(ev["event_id"])
            next_check = loop.time() + recheck_s
            while True:
                now = loop.time()
                if now >= next_check:
                    next_check = now + recheck_s
                    if not await _still_active(request, key.id):
                        yield revoked
                        return
                timeout = next_check - now
                if deadline is not None:
                    timeout = min(timeout, deadline - now)
                    if timeout <= 0:
                        return
                get = asyncio.ensure_future(sub.queue.get())
                await asyncio.wait({get, *stops}, timeout=timeout, return_when=FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    if any(f.done() for f in stops):
                        yield ServerSentEvent(event="shutdown", data="{}", sep="\n")
                        return
                    continue
                ev = get.result()
                if sub.overflowed:
                    yield ServerSentEvent(event="overflow", data="{}", sep="\n")
                    return
                if ev["event_id"] > known and ev["event_id"] not in replayed and wanted(ev):
                    yield frame(ev)
        finally:
            for f in (get, *stops):
                if f is not None:
                    f.cancel()
            broadcaster.unsubscribe(sub)

    return EventSourceResponse(
        gen(),
        headers={"Cache-Control": "no-cache"},
        sep="\n",
        ping=HEARTBEAT_S,
        ping_message_factory=lambda: ServerSentEvent(comment="keepalive", sep="\n"),
        shutdown_event=stopping,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )


async def _still_active(request: Request, key_id: int) -> bool:
    """False once the key is revoked; a busy or absent database keeps the stream going."""
    try:
        return await asyncio.to_thread(key_is_active, request, key_id)
    except (psycopg.Error, PoolTimeout, TooManyRequests) as exc:
        log.warning("event stream: key %d not re-checked: %s", key_id, str(exc)[:200])
        return True


@router.get(
    "/{alert_id}",
    response_model=AlertDetail,
    summary="One alert with its history of events",
    responses=errors(401, 404, 422),
)
def get_alert(alert_id: AlertId, conn: ConnDep, key: CurrentKey) -> AlertDetail:
    return _detail(conn, alert_id)


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertDetail,
    summary="Acknowledge an alert (engineer)",
    responses=errors(401, 403, 404, 409, 422),
)
def acknowledge(
    alert_id: AlertId,
    conn: ConnDep,
    key: EngineerKey,
    body: Annotated[AlertAck | None, Body()] = None,
) -> AlertDetail:
    """The body (`{"note": "..."}`) is optional: an empty request acknowledges."""
    note = body.note if body is not None else None
    row = store.get_alert(conn, alert_id, lock=True)
    if row is None:
        raise HTTPException(404, f"alert {alert_id} does not exist")
    if row["state"] != "open":
        raise HTTPException(
            409, f"alert {alert_id} is {row['state']}; only an open alert can be acknowledged"
        )
    conn.execute(
        "UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = %s, "
        "ack_note = %s, updated_at = now() WHERE id = %s",
        (key.id, note, alert_id),
    )
    event_id = store.insert_event(
        conn, alert_id, "acknowledge", row["level"], row["level"], key_id=key.id, note=note
    )
    if not row["late"]:
        store.announce(conn, event_id)
    return _detail(conn, alert_id)


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertDetail,
    summary="Resolve an alert by hand, with a note (engineer)",
    responses=errors(401, 403, 404, 409, 422),
)
def resolve(alert_id: AlertId, body: AlertResolve, conn: ConnDep, key: EngineerKey) -> AlertDetail:
    """The rule starts afresh: if the condition still holds, a new alert opens."""
    row = store.get_alert(conn, alert_id)
    if row is None:
        raise HTTPException(404, f"alert {alert_id} does not exist")
    # the engine's lock order: rule state first, then the alert
    saved, _ = store.lock_rule_state(conn, row["site_id"], row["rule"], row["subject"])
    row = store.get_alert(conn, alert_id, lock=True)
    if row["state"] == "resolved":
        raise HTTPException(409, f"alert {alert_id} is already resolved")
    conn.execute(
        "UPDATE alerts SET state = 'resolved', level = 0, resolved_at = now(), resolved_by = %s, "
        "resolve_reason = 'manual', resolve_note = %s, updated_at = now() WHERE id = %s",
        (key.id, body.note, alert_id),
    )
    store.save_rule_state(
        conn, row["site_id"], row["rule"], row["subject"], reset_tracker(saved), None
    )
    event_id = store.insert_event(
        conn, alert_id, "resolve", 0, row["level"], key_id=key.id, note=body.note
    )
    if not row["late"]:
        store.announce(conn, event_id)
    return _detail(conn, alert_id)
