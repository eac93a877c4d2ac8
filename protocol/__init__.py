"""The wire contract: topics, payload models, channels and units, JSON Schema."""

from .channels import CHANNELS, Channel, is_valid_channel_name, unit_of
from .messages import (
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
    "shared_telemetry_filter",
    "telemetry_filter",
    "telemetry_json_schema",
    "unit_of",
]
