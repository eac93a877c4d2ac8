"""Payload models of the wire contract and the decoder that turns bytes into readings.

Two forms of telemetry message are accepted, both JSON objects:

* the row form, one object per reading::

    {"device": "dam-017", "seq": 42, "sent_at": "2026-07-21T03:15:05Z",
     "readings": [{"t": "2026-07-21T03:15:00Z", "ch": "stage_m", "v": 2.31}]}

* the columnar form for long batches, one array per channel sampled every
  ``step_s`` seconds from ``start`` (``null`` marks a missing sample)::

    {"device": "dam-017", "seq": 43, "sent_at": "2026-07-21T04:15:05Z",
     "start": "2026-07-21T03:16:00Z", "step_s": 60,
     "channels": {"stage_m": [2.32, 2.33, null, 2.35]}}

``decode_telemetry`` validates either form strictly and raises
``ProtocolError`` with a stable ``code`` and a message naming the offending
field. The limits below are part of the contract (docs/protocol.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict

from .channels import CHANNEL_NAME_PATTERN
from .topics import CLIENT_ID_PATTERN

# --- limits (documented in docs/protocol.md) --------------------------------
MAX_PAYLOAD_BYTES = 512 * 1024
MAX_READINGS_PER_MESSAGE = 5000
MAX_CHANNELS_PER_MESSAGE = 64
MAX_STEP_S = 86_400.0
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)
QUALITY_FLAGS = (1, 2, 3, 4, 9)  # IOOS QARTOD: pass, not evaluated, suspect, fail, missing
MAX_SEQ = 2**63 - 1
FUTURE_TIME = "future_time"  # dead-letter code of readings dated after their arrival

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

# The message shapes are TypedDicts with declarative constraints checked in
# pydantic-core (Rust), with no Python callback per reading; times are
# checked against an RFC 3339 pattern there and converted afterwards by
# datetime.fromisoformat (C). Together about 2.5 times faster than pydantic
# models with validators, which matters at 100,000 readings/s.
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$"
TimeText = Annotated[str, Field(pattern=RFC3339_PATTERN, json_schema_extra={"format": "date-time"})]
DeviceId = Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
ChannelName = Annotated[str, Field(pattern=CHANNEL_NAME_PATTERN)]
Value = Annotated[float, Field(allow_inf_nan=False)]
Quality = Literal[1, 2, 3, 4, 9]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]


@with_config(_STRICT)
class Reading(TypedDict):
    """One sample: time, channel, value and an optional QARTOD quality flag."""

    t: Annotated[TimeText, Field(description="sample time, RFC 3339 with a zone (Z or an offset)")]
    ch: Annotated[
        ChannelName, Field(description="channel name with its unit as suffix, e.g. stage_m")
    ]
    v: Annotated[Value, Field(description="value in the channel's unit; finite")]
    q: NotRequired[Annotated[Quality, Field(description="QARTOD flag set by the logger, if any")]]


_DEVICE = Field(description="id of the device that took the readings")
_SEQ = Field(description="the device's message sequence number, increasing by one")
_SENT_AT = Field(description="device clock at sending, RFC 3339 with a zone")
_REPLACE = Field(
    description="true: the readings replace values stored at the same channel and time "
    "(only for the sender's own readings, not a gateway's; default false: kept first)"
)


@with_config(_STRICT)
class RowTelemetry(TypedDict):
    """Telemetry batch in the row form: a list of readings."""

    device: Annotated[DeviceId, _DEVICE]
    seq: Annotated[Seq, _SEQ]
    sent_at: Annotated[TimeText, _SENT_AT]
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)]
    replace: NotRequired[Annotated[bool, _REPLACE]]


@with_config(_STRICT)
class ColumnarTelemetry(TypedDict):
    """Telemetry batch in the columnar form: regular samples per channel from ``start``."""

    device: Annotated[DeviceId, _DEVICE]
    seq: Annotated[Seq, _SEQ]
    sent_at: Annotated[TimeText, _SENT_AT]
    start: Annotated[TimeText, Field(description="time of the first sample of every array")]
    step_s: Annotated[
        float,
        Field(gt=0, le=MAX_STEP_S, allow_inf_nan=False, description="seconds between samples"),
    ]
    channels: Annotated[
        dict[ChannelName, list[Value | None]],
        Field(
            min_length=1,
            max_length=MAX_CHANNELS_PER_MESSAGE,
            description="one array per channel; null marks a missing sample",
        ),
    ]
    replace: NotRequired[Annotated[bool, _REPLACE]]


def _form_of(data: Any) -> str | None:
    if isinstance(data, dict):
        has_rows, has_columns = "readings" in data, "channels" in data
        if has_rows != has_columns:
            return "rows" if has_rows else "columnar"
    return None


TelemetryMessage = Annotated[
    Annotated[RowTelemetry, Tag("rows")] | Annotated[ColumnarTelemetry, Tag("columnar")],
    Discriminator(
        _form_of,
        custom_error_type="unknown_form",
        custom_error_message=(
            "expected a JSON object with exactly one of 'readings' (row form) "
            "or 'channels' (columnar form)"
        ),
    ),
]
_TELEMETRY = TypeAdapter(TelemetryMessage)
# A callable discriminator makes pydantic materialise the JSON before
# validating it, so valid messages take a direct adapter picked by a cheap
# look at the bytes; any failure is re-validated by the tagged union above,
# which is the authority on errors (and on messages the look guessed wrong).
_ROWS = TypeAdapter(RowTelemetry)
_COLUMNS = TypeAdapter(ColumnarTelemetry)


# --- decoded result ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Telemetry:
    """A validated batch, normalised to rows of (time UTC, channel, value, quality)."""

    device: str
    seq: int
    sent_at: datetime
    rows: list[tuple[datetime, str, float, int | None]]
    replace: bool = False  # the sender asks to overwrite stored values at these times


class ProtocolError(ValueError):
    """A payload that breaks the contract. ``code`` is stable; ``str()`` says what and where."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# pydantic error type -> our stable error code
_ERROR_CODES = {
    "json_invalid": "not_json",
    "json_type": "not_json",
    "extra_forbidden": "unknown_field",
    "missing": "missing_field",
    "timezone_aware": "naive_time",
    "finite_number": "non_finite",
    "time_out_of_range": "time_out_of_range",
    "duplicate_reading": "duplicate_reading",
    "too_many_readings": "too_many_readings",
    "empty_batch": "empty_batch",
    "unknown_form": "unknown_form",
    "string_pattern_mismatch": "bad_identifier",
    "literal_error": "bad_value",
    "greater_than": "bad_value",
    "greater_than_equal": "bad_value",
    "less_than_equal": "bad_value",
}
_TYPE_ERRORS = {
    "float_type",
    "int_type",
    "string_type",
    "list_type",
    "dict_type",
    "model_type",
    "datetime_type",
    "datetime_parsing",
    "datetime_from_date_parsing",
    "int_from_float",
    "bool_type",
    "model_attributes_type",
    "union_tag_invalid",
}


_TIME_FIELDS = {"t", "sent_at", "start", "at"}


def _code_for(error: dict[str, Any]) -> str:
    etype = error["type"]
    loc = error.get("loc", ())
    if etype == "string_pattern_mismatch" and loc and loc[-1] in _TIME_FIELDS:
        return "bad_time"
    if etype == "too_short" and loc and loc[-1] in ("readings", "channels"):
        return "empty_batch"
    if etype == "too_long":
        return "too_many_readings" if loc and loc[-1] in ("readings", "channels") else "too_long"
    if etype in _TYPE_ERRORS:
        return "wrong_type"
    return _ERROR_CODES.get(etype, "invalid")


def _describe(exc: ValidationError, limit: int = 5) -> ProtocolError:
    errors = exc.errors(include_url=False, include_input=False)
    codes = [_code_for(e) for e in errors]
    # For a tagged union, drop the tag level ('rows'/'columnar') from locations.
    parts = []
    for e in errors[:limit]:
        loc = [p for p in e.get("loc", ()) if p not in ("rows", "columnar")]
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc)
        where = where.replace(".[", "[")
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return ProtocolError(codes[0], "; ".join(parts) + more)


def decode_telemetry(payload: bytes | bytearray | memoryview) -> Telemetry:
    """Validate a telemetry payload and return its readings.

    Raises
    ------
    ProtocolError
        with ``code`` one of: ``empty_payload``, ``too_large``, ``not_utf8``,
        ``not_json``, ``unknown_form``, ``unknown_field``, ``missing_field``,
        ``wrong_type``, ``bad_time``, ``naive_time``, ``time_out_of_range``, ``non_finite``,
        ``empty_batch``, ``too_many_readings``, ``duplicate_reading``,
        ``bad_identifier``, ``bad_value``, ``invalid``.
    """
    data = bytes(payload)
    if not data:
        raise ProtocolError("empty_payload", "the payload is empty; expected a JSON object")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            "too_large",
            f"the payload has {len(data)} bytes; at most {MAX_PAYLOAD_BYTES} are accepted",
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            "not_utf8", f"the payload is not UTF-8 text (byte {exc.start}); expected JSON"
        ) from None
    try:
        msg = (_ROWS if b'"readings"' in data else _COLUMNS).validate_json(data)
    except ValidationError:
        try:
            msg = _TELEMETRY.validate_json(data)
        except ValidationError as exc:
            raise _describe(exc) from None
    sent_at = _utc(msg["sent_at"], "sent_at")
    rows = _rows_of(msg["readings"]) if "readings" in msg else _columns_of(msg)
    return Telemetry(
        device=msg["device"],
        seq=msg["seq"],
        sent_at=sent_at,
        rows=rows,
        replace=msg.get("replace", False),
    )


_parse_iso = datetime.fromisoformat


def _utc(text: str, where: str) -> datetime:
    """An RFC 3339 time (already pattern-checked) as an aware UTC datetime."""
    try:
        t = _parse_iso(text)
    except ValueError:
        raise ProtocolError("bad_time", f"{where}: {text!r} is not a valid time") from None
    if t.tzinfo is None:
        raise ProtocolError(
            "naive_time", f"{where}: {text!r} has no zone; add Z (UTC) or an offset such as +08:00"
        )
    t = t.astimezone(UTC)
    if not (EARLIEST_TIME <= t < LATEST_TIME):
        raise ProtocolError(
            "time_out_of_range",
            f"{where}: {text} is outside the accepted range "
            f"[{EARLIEST_TIME.isoformat()}, {LATEST_TIME.isoformat()})",
        )
    return t


def refuse_future(
    tel: Telemetry, arrival: datetime, tolerance_s: float
) -> tuple[Telemetry | None, ProtocolError | None]:
    """Split off the readings dated more than ``tolerance_s`` after ``arrival``.

    A device clock cannot be trusted to be right (a logger that lost its RTC
    may date readings 2099): a reading from the future is refused, the other
    readings of the message are kept. Returns the message with the readings
    kept (``None`` when every reading is refused) and a ``ProtocolError`` with
    code ``future_time`` naming the refused readings and the arrival time
    (``None`` when nothing is refused).
    """
    limit = arrival + timedelta(seconds=tolerance_s)
    if max(r[0] for r in tel.rows) <= limit:
        return tel, None
    kept = [r for r in tel.rows if r[0] <= limit]
    refused = [r for r in tel.rows if r[0] > limit]
    first = min(refused, key=lambda r: r[0])
    last = max(refused, key=lambda r: r[0])
    ahead = (first[0] - arrival).total_seconds()
    what = f"channel {first[1]} at {first[0].isoformat()}"
    if len(refused) > 1:
        what += f" (and {len(refused) - 1} more up to {last[0].isoformat()})"
    error = ProtocolError(
        FUTURE_TIME,
        f"{len(refused)} of {len(tel.rows)} readings are dated after their arrival at "
        f"{arrival.astimezone(UTC).isoformat()} by more than the {tolerance_s:g} s tolerated: "
        f"{what}, {ahead:.0f} s ahead; the device clock is wrong. "
        + (f"The other {len(kept)} readings are kept." if kept else "No reading is kept."),
    )
    if not kept:
        return None, error
    return dataclasses.replace(tel, rows=kept), error


def _rows_of(readings: list[dict]) -> list[tuple[datetime, str, float, int | None]]:
    try:  # fast path: every time in UTC ("Z") and in range
        rows = [(_parse_iso(r["t"]), r["ch"], r["v"], r.get("q")) for r in readings]
        fast = all(row[0].tzinfo is UTC for row in rows)
        fast = (
            fast
            and min(r[0] for r in rows) >= EARLIEST_TIME
            and max(r[0] for r in rows) < LATEST_TIME
        )
    except ValueError:
        fast = False
    if not fast:  # offsets, or an error: this path converts and says what is wrong
        rows = [
            (_utc(r["t"], f"readings[{i}].t"), r["ch"], r["v"], r.get("q"))
            for i, r in enumerate(readings)
        ]
    if len({(t, ch) for t, ch, _, _ in rows}) != len(rows):
        seen: dict[tuple[datetime, str], int] = {}
        for i, (t, ch, _, _) in enumerate(rows):
            first = seen.setdefault((t, ch), i)
            if first != i:
                raise ProtocolError(
                    "duplicate_reading",
                    f"readings[{first}] and readings[{i}] both give channel {ch} at {t.isoformat()}",
                )
    return rows


def _columns_of(msg: dict) -> list[tuple[datetime, str, float, int | None]]:
    channels: dict[str, list[float | None]] = msg["channels"]
    total = sum(len(values) for values in channels.values())
    if total > MAX_READINGS_PER_MESSAGE:
        raise ProtocolError(
            "too_many_readings",
            f"channels: the arrays hold {total} samples; at most {MAX_READINGS_PER_MESSAGE} "
            "are accepted per message",
        )
    start = _utc(msg["start"], "start")
    step = timedelta(seconds=msg["step_s"])
    longest = max(len(values) for values in channels.values())
    last = start + step * max(longest - 1, 0)
    if last >= LATEST_TIME:
        raise ProtocolError(
            "time_out_of_range",
            f"channels: the last sample time {last.isoformat()} is at or after "
            f"{LATEST_TIME.isoformat()}",
        )
    rows = [
        (start + i * step, ch, v, None)
        for ch, values in channels.items()
        for i, v in enumerate(values)
        if v is not None
    ]
    if not rows:
        raise ProtocolError("empty_batch", "channels: the arrays hold no sample")
    return rows


# --- status and config --------------------------------------------------------
class DeviceStatus(BaseModel):
    """Retained status of a logger or gateway on ``{root}/{id}/status``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    device: DeviceId
    state: Literal["online", "offline"]
    at: AwareDatetime | None = Field(default=None, description="device clock at the status")
    firmware: str | None = Field(default=None, max_length=64)
    battery_v: Value | None = None
    rssi_dbm: Value | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="free-form extra facts (queue depth, dropped, ...)"
    )


class DeviceConfig(BaseModel):
    """Retained downlink configuration on ``{root}/{id}/config``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sample_interval_s: Annotated[int, Field(ge=1, le=86_400)] = 600
    event_interval_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    event_trigger_rain_mm: Annotated[float, Field(ge=0)] = 0.2


def telemetry_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a telemetry message, either form."""
    schema = _TELEMETRY.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "swc telemetry message"
    return schema
