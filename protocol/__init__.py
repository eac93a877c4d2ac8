"""The wire contract: topics, payload models, channels and units, JSON Schema."""

from .channels import CHANNELS, Channel, is_valid_channel_name, unit_of
from .messages import (
    FUTURE_TIME,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    ColumnarTelemetry,
    DeviceConfig,
    DeviceStatus,
    ProtocolError,
    Reading,
    RowTelemetry,
    Telemetry,
    decode_telemetry,
    refuse_future,
    telemetry_json_schema,
)
from .topics import (
    DEFAULT_ROOT,
    Topic,
    TopicError,
    TopicKind,
    alerts_topic,
    shared_telemetry_filter,
    telemetry_filter,
)

__all__ = [
    "CHANNELS",
    "DEFAULT_ROOT",
    "FUTURE_TIME",
    "MAX_PAYLOAD_BYTES",
    "MAX_READINGS_PER_MESSAGE",
    "Channel",
    "ColumnarTelemetry",
    "DeviceConfig",
    "DeviceStatus",
    "ProtocolError",
    "Reading",
    "RowTelemetry",
    "Telemetry",
    "Topic",
    "TopicError",
    "TopicKind",
    "alerts_topic",
    "decode_telemetry",
    "is_valid_channel_name",
    "refuse_future",
    "shared_telemetry_filter",
    "telemetry_filter",
    "telemetry_json_schema",
    "unit_of",
]
