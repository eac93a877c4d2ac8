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

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

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

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _in_time_range(value: datetime) -> datetime:
    if not (EARLIEST_TIME <= value < LATEST_TIME):
        raise PydanticCustomError(
            "time_out_of_range",
            "time {value} is outside the accepted range [{lo}, {hi})",
            {
                "value": value.isoformat(),
                "lo": EARLIEST_TIME.isoformat(),
                "hi": LATEST_TIME.isoformat(),
            },
        )
    return value.astimezone(UTC)


UtcTime = Annotated[AwareDatetime, AfterValidator(_in_time_range)]
DeviceId = Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
ChannelName = Annotated[str, Field(pattern=CHANNEL_NAME_PATTERN)]
Value = Annotated[float, Field(allow_inf_nan=False)]
Quality = Literal[1, 2, 3, 4, 9]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]


class Reading(BaseModel):
    """One sample: time, channel, value and an optional QARTOD quality flag."""

    model_config = _STRICT

    t: UtcTime = Field(description="sample time, RFC 3339 with a zone (Z or an offset)")
    ch: ChannelName = Field(description="channel name with its unit as suffix, e.g. stage_m")
    v: Value = Field(description="value in the channel's unit; finite")
    q: Quality | None = Field(default=None, description="QARTOD flag set by the logger, if any")


class _Envelope(BaseModel):
    model_config = _STRICT

    device: DeviceId = Field(description="id of the device that took the readings")
    seq: Seq = Field(description="the device's message sequence number, increasing by one")
    sent_at: UtcTime = Field(description="device clock at sending, RFC 3339 with a zone")


class RowTelemetry(_Envelope):
    """Telemetry batch in the row form: a list of readings."""

    readings: list[Reading] = Field(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)

    @model_validator(mode="after")
    def _no_duplicates(self) -> RowTelemetry:
        seen: dict[tuple[datetime, str], int] = {}
        for i, r in enumerate(self.readings):
            key = (r.t, r.ch)
            first = seen.setdefault(key, i)
            if first != i:
                raise PydanticCustomError(
                    "duplicate_reading",
                    "readings[{first}] and readings[{second}] both give channel {ch} at {t}",
                    {"first": first, "second": i, "ch": r.ch, "t": r.t.isoformat()},
                )
        return self


class ColumnarTelemetry(_Envelope):
    """Telemetry batch in the columnar form: regular samples per channel from ``start``."""

    start: UtcTime = Field(description="time of the first sample of every array")
    step_s: Annotated[float, Field(gt=0, le=MAX_STEP_S, allow_inf_nan=False)] = Field(
        description="seconds between consecutive samples"
    )
    channels: Annotated[
        dict[ChannelName, list[Value | None]],
        Field(min_length=1, max_length=MAX_CHANNELS_PER_MESSAGE),
    ]

    @model_validator(mode="after")
    def _check_sizes(self) -> ColumnarTelemetry:
        total = sum(len(values) for values in self.channels.values())
        if total > MAX_READINGS_PER_MESSAGE:
            raise PydanticCustomError(
                "too_many_readings",
                "the channels hold {total} samples; at most {limit} are accepted per message",
                {"total": total, "limit": MAX_READINGS_PER_MESSAGE},
            )
        if not any(v is not None for values in self.channels.values() for v in values):
            raise PydanticCustomError("empty_batch", "the channels hold no sample", {})
        longest = max(len(values) for values in self.channels.values())
        last = self.start + timedelta(seconds=self.step_s * (longest - 1))
        if last >= LATEST_TIME:
            raise PydanticCustomError(
                "time_out_of_range",
                "the last sample time {last} is outside the accepted range",
                {"last": last.isoformat()},
            )
        return self


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


# --- decoded result ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Telemetry:
    """A validated batch, normalised to rows of (time UTC, channel, value, quality)."""

    device: str
    seq: int
    sent_at: datetime
    rows: list[tuple[datetime, str, float, int | None]]


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


def _code_for(error: dict[str, Any]) -> str:
    etype = error["type"]
    loc = error.get("loc", ())
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
        ``wrong_type``, ``naive_time``, ``time_out_of_range``, ``non_finite``,
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
        msg = _TELEMETRY.validate_json(data)
    except ValidationError as exc:
        raise _describe(exc) from None
    if isinstance(msg, RowTelemetry):
        rows = [(r.t, r.ch, r.v, r.q) for r in msg.readings]
    else:
        step = timedelta(seconds=msg.step_s)
        rows = [
            (msg.start + i * step, ch, v, None)
            for ch, values in msg.channels.items()
            for i, v in enumerate(values)
            if v is not None
        ]
    return Telemetry(device=msg.device, seq=msg.seq, sent_at=msg.sent_at, rows=rows)


# --- status and config --------------------------------------------------------
class DeviceStatus(BaseModel):
    """Retained status of a logger or gateway on ``{root}/{id}/status``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    device: DeviceId
    state: Literal["online", "offline"]
    at: UtcTime | None = Field(default=None, description="device clock when the status was made")
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
