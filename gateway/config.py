"""The gateway's configuration: one YAML file, validated by pydantic (see sample-config.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol.messages import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_MESSAGE
from protocol.mqtt_url import MqttUrl, parse_mqtt_url
from protocol.topics import DEFAULT_ROOT, validate_client_id, validate_root

SAMPLE_CONFIG_PATH = Path(__file__).parent / "sample-config.yaml"

_STRICT = ConfigDict(extra="forbid")


class ConfigError(ValueError):
    """The configuration file is missing, not YAML, or has a wrong or unknown option."""


class BrokerConfig(BaseModel):
    """How to reach one MQTT broker."""

    model_config = _STRICT

    url: str = Field(description="mqtt://host:port or mqtts://host:port (TLS)")
    username: str | None = None
    password: str | None = None
    client_id: str | None = Field(default=None, description="MQTT client id; a default is derived")
    protocol: Literal["5", "3.1.1"] = "5"
    ca_file: Path | None = Field(default=None, description="CA bundle for mqtts://")
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_min_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parse_mqtt_url(url)
        return url

    @property
    def parsed(self) -> MqttUrl:
        return parse_mqtt_url(self.url)

    @property
    def host(self) -> str:
        return self.parsed.host

    @property
    def port(self) -> int:
        return self.parsed.port

    @property
    def tls(self) -> bool:
        return self.parsed.tls

    def credentials(self) -> tuple[str | None, str | None]:
        """Username and password: explicit options win over those in the URL."""
        parsed = self.parsed
        return self.username or parsed.username, self.password or parsed.password


class LocalConfig(BrokerConfig):
    """The broker on the gateway's own machine that the loggers publish to."""

    url: str = "mqtt://127.0.0.1:1883"
    session_expiry_s: Annotated[int, Field(ge=0)] = 14 * 86_400
    receive_maximum: Annotated[int, Field(ge=1, le=65_535)] = 1000


class UpstreamConfig(BrokerConfig):
    """The central broker that the ingest service consumes from."""

    max_inflight: Annotated[int, Field(ge=1, le=1000)] = 32
    refused_retry_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


class LineSourceConfig(BaseModel):
    """A serial-style source of CSV lines: a file that grows, a FIFO, or a tty."""

    model_config = _STRICT

    path: Path = Field(description="file, named pipe or serial device to read lines from")
    name: str | None = Field(default=None, description="label in logs and the reject log")
    poll_s: Annotated[float, Field(gt=0, le=60)] = 0.5

    @property
    def label(self) -> str:
        return self.name or str(self.path)


class QueueConfig(BaseModel):
    """The disk queue (SQLite in WAL mode)."""

    model_config = _STRICT

    path: Path | None = Field(default=None, description="default: {data_dir}/queue.db")
    max_bytes: Annotated[int, Field(ge=256 * 1024)] = 512 * 1024 * 1024
    synchronous: Literal["full", "normal"] = "full"
    max_rejects: Annotated[int, Field(ge=0)] = 10_000
    reject_payload_bytes: Annotated[int, Field(ge=0, le=MAX_PAYLOAD_BYTES)] = 4096


class ForwardConfig(BaseModel):
    """How readings are batched into upstream messages."""

    model_config = _STRICT

    batch_max_readings: Annotated[int, Field(ge=1, le=MAX_READINGS_PER_MESSAGE)] = 1000
    batch_max_age_s: Annotated[float, Field(ge=0, le=3600)] = 1.0
    message_max_bytes: Annotated[int, Field(ge=1024, le=MAX_PAYLOAD_BYTES)] = 128 * 1024


class StatusConfig(BaseModel):
    model_config = _STRICT

    interval_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    local: bool = Field(default=True, description="also publish the status on the local broker")


class LogConfig(BaseModel):
    """Log lines; SWC_LOG_LEVEL and SWC_LOG_FORMAT, when set, override these."""

    model_config = _STRICT

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class MetricsConfig(BaseModel):
    """Prometheus metrics (swc_gateway_*) at http://host:port/metrics; port 0 turns them off."""

    model_config = _STRICT

    port: Annotated[int, Field(ge=0, le=65_535)] = 0
    host: str = "127.0.0.1"


class GatewayConfig(BaseModel):
    """Every option of `swc gateway run CONFIG`."""

    model_config = _STRICT

    gateway_id: str
    topic_root: str = DEFAULT_ROOT
    upstream_topic_root: str | None = None
    data_dir: Path = Path("/var/lib/swc-gateway")
    devices: list[str] = Field(default_factory=list)
    require_topic_device: bool = True
    local: LocalConfig = Field(default_factory=LocalConfig)
    upstream: UpstreamConfig
    line_sources: list[LineSourceConfig] = Field(default_factory=list)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    forward: ForwardConfig = Field(default_factory=ForwardConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @field_validator("gateway_id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return validate_client_id(value)

    @field_validator("devices")
    @classmethod
    def _check_devices(cls, value: list[str]) -> list[str]:
        return [validate_client_id(v) for v in value]

    @field_validator("topic_root", "upstream_topic_root")
    @classmethod
    def _check_root(cls, value: str | None) -> str | None:
        return None if value is None else validate_root(value)

    @model_validator(mode="after")
    def _check_budget(self) -> GatewayConfig:
        in_flight = 2 * self.upstream.max_inflight * self.forward.message_max_bytes
        if self.queue.max_bytes < in_flight:
            raise ValueError(
                f"queue.max_bytes={self.queue.max_bytes} is smaller than twice the bytes that may "
                f"be in flight upstream ({in_flight} = 2 x upstream.max_inflight x "
                "forward.message_max_bytes); raise it or lower those"
            )
        return self

    @property
    def uplink_root(self) -> str:
        return self.upstream_topic_root or self.topic_root

    @property
    def queue_path(self) -> Path:
        return self.queue.path or self.data_dir / "queue.db"

    @property
    def local_client_id(self) -> str:
        return self.local.client_id or f"{self.gateway_id}-local"

    @property
    def upstream_client_id(self) -> str:
        return self.upstream.client_id or self.gateway_id


def load_config(path: Path | str) -> GatewayConfig:
    """Read and validate a YAML config; raise ConfigError saying which option is wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"the config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the config {path} should be a YAML mapping of options")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise ConfigError(f"the config {path} is invalid:\n" + "\n".join(lines)) from None
