"""Settings of the server side, from the environment (prefix ``SWC_``) or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.mqtt_url import MqttUrl as MqttTarget  # the broker address of SWC_MQTT_URL
from protocol.mqtt_url import parse_mqtt_url
from protocol.topics import DEFAULT_ROOT, validate_root


class Settings(BaseSettings):
    """Every setting of `swc migrate`, `swc ingest` and `swc up`; env var = SWC_ + name."""

    model_config = SettingsConfigDict(env_prefix="SWC_", extra="ignore", validate_default=True)

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; unset: `swc up` starts an embedded PostgreSQL in data_dir",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt://user:pass@host:port; unset: `swc up` starts an embedded broker",
    )
    topic_root: str = Field(default=DEFAULT_ROOT, description="root of every topic")
    auto_register: bool = Field(
        default=True,
        description="register an unknown device on its first message (else dead-letter it)",
    )
    data_dir: Path = Field(default=Path("data"), description="embedded services' data folder")
    embedded_broker: Literal["auto", "mosquitto", "amqtt"] = Field(
        default="auto", description="broker `swc up` starts: mosquitto when installed, else amqtt"
    )
    embedded_broker_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="port of the broker `swc up` starts: unset = 1883 when free, else a free "
        "one; 0 = a free one; N = exactly N (refused when taken)",
    )
    embedded_postgres_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="also let the embedded PostgreSQL listen on 127.0.0.1 at this TCP port "
        "(for psql, Grafana); unset = Unix socket only; 0 = a free port",
    )

    # consumer
    client_id: str = Field(default="swc-ingest-1", description="MQTT client id (session name)")
    mqtt_protocol: Literal["5", "3.1.1"] = Field(default="5")
    subscription: Literal["auto", "plain", "shared"] = Field(
        default="auto",
        description="auto: plain for one consumer, shared for --workers N on a broker that "
        "restores shared subscriptions after a restart (see docs/architecture.md)",
    )
    shared_group: str | None = Field(
        default="ingest",
        description="group of a shared subscription; empty: never shared",
    )
    allow_unsafe_shared: bool = Field(
        default=False,
        description="share on a broker that drops shared subscriptions on restart, accepting "
        "the loss of what arrives before the consumers subscribe again",
    )
    broker_check_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="wait this long to read the broker's version"
    )
    session_expiry_s: int = Field(default=7 * 86400, ge=0, description="broker keeps the session")
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="consumer processes (`swc ingest`)")
    retire: bool = Field(
        default=False,
        description="drain this client id's session, leave the shared group, delete the session",
    )
    retire_idle_s: float = Field(default=3.0, gt=0, description="quiet time that ends a retire")
    batch_max_readings: int = Field(default=10_000, ge=1, le=1_000_000)
    batch_max_latency_ms: int = Field(default=100, ge=1, le=60_000)
    drain_timeout_s: float = Field(default=30.0, gt=0)
    future_tolerance_s: float = Field(
        default=300.0,
        ge=0,
        le=30 * 86_400,
        description="a reading dated more than this after its arrival is refused (future_time)",
    )
    dead_letter_max_bytes: int = Field(
        default=65536,
        ge=0,
        le=1 << 20,
        description="payload bytes kept of each dead letter [bytes]; payload_size has the rest",
    )
    dead_letter_retain_days: int = Field(
        default=30,
        ge=0,
        le=36500,
        description="dead letters older than this are deleted (0 keeps them); counts stay",
    )
    metrics_port: int = Field(default=9108, ge=0, le=65535, description="0 turns metrics off")
    metrics_host: str = "127.0.0.1"

    # storage
    timescale: Literal["auto", "on", "off"] = Field(default="auto")
    compress_after: str = Field(default="7 days", description="TimescaleDB compression age")
    retain_for: str | None = Field(
        default=None, description="TimescaleDB retention of raw readings; unset keeps all"
    )

    # alerts and the HTTP API
    alerts: bool = Field(
        default=True, description="run the alert engine in `swc ingest` and `swc up`"
    )
    alert_check_interval_s: float = Field(
        default=30.0, gt=0, le=3600, description="periodic check (logger offline) every N s"
    )
    alert_late_after_s: float = Field(
        default=3600.0, ge=0, description="readings older than this on arrival are late data"
    )
    alert_stale_after_s: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="an alert whose stream has had no data for this long is resolved as stale",
    )
    alert_min_duration_s: float = Field(
        default=1800.0, ge=0, description="default time a lower level must hold to drop"
    )
    alert_mqtt: bool = Field(default=True, description="retain alert state on {root}/alerts/+")
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_s: float = Field(default=5.0, gt=0, le=3600, description="first retry delay")
    webhook_allow_private: list[str] = Field(
        default_factory=list,
        description="networks (CIDR) or host names webhooks may reach although private or "
        "loopback, e.g. 10.0.0.0/8; empty: only public addresses",
    )
    api_host: str = Field(default="127.0.0.1", description="`swc up` serves the API here")
    api_port: int = Field(default=8000, ge=0, le=65535, description="`swc up` API port; 0 = off")
    api_metrics_port: int = Field(
        default=9109, ge=0, le=65535, description="the API's Prometheus port; 0 turns it off"
    )

    # field surveys and researchers' exports
    attachments_backend: Literal["disk", "s3"] = Field(
        default="disk", description="where survey attachments are kept (s3: not implemented yet)"
    )
    attachments_dir: Path | None = Field(
        default=None, description="disk backend's folder; unset: <data_dir>/attachments"
    )
    attachments_s3_url: str | None = Field(
        default=None, description="s3://bucket/prefix for the s3 backend"
    )
    attachment_max_bytes: int = Field(
        default=25 << 20, ge=1024, le=1 << 30, description="largest survey attachment [bytes]"
    )
    survey_import_max_bytes: int = Field(
        default=10 << 20, ge=1024, le=1 << 30, description="largest survey sheet to import [bytes]"
    )
    export_max_concurrent: int = Field(
        default=4, ge=1, le=64, description="exports streamed at once by the API (more: 429)"
    )

    # the web console at /
    console_timezone: str = Field(
        default="Asia/Shanghai",
        description="IANA zone the console shows times in (a site's params.timezone overrides)",
    )
    console_tile_url: str | None = Field(
        default=None,
        description="map tiles under the overview, e.g. http://tiles.local/{z}/{x}/{y}.png; "
        "unset: a plain projected map",
    )
    # the HTTP API's limits (docs/architecture.md, "Threat model")
    api_max_body_bytes: int = Field(
        default=1 << 20, ge=1024, le=1 << 30, description="largest JSON request body [bytes]"
    )
    api_pool_size: int = Field(default=8, ge=1, le=200, description="database connections")
    api_pool_wait_s: float = Field(
        default=3.0, gt=0, le=60, description="wait for a free connection, then 503"
    )
    api_statement_timeout_s: dict[str, float] = Field(
        default_factory=lambda: {"viewer": 10.0, "surveyor": 30.0, "engineer": 30.0, "admin": 60.0},
        description="longest SQL statement per key role [s] (JSON object)",
    )
    api_key_concurrency: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="requests of one key (or one address without a "
        "key) handled at once by an API process; the others wait their turn",
    )
    api_key_queue: int = Field(
        default=32, ge=0, le=100_000, description="requests of one key waiting at most (more: 429)"
    )
    api_heavy_concurrency: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="expensive requests (pages of more than api_heavy_rows readings, derived "
        "products, sheet imports) of all keys handled at once by an API process; the others "
        "wait their turn",
    )
    api_heavy_queue: int = Field(
        default=16,
        ge=0,
        le=100_000,
        description="expensive requests waiting at most (more: 429 with Retry-After)",
    )
    api_heavy_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="share of the time that expensive requests back to back may take: a "
        "place rests after use for (1 - share) / share of the time it was held",
    )
    api_heavy_rows: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="a /readings page asking more rows is expensive",
    )
    api_key_recheck_s: float = Field(
        default=15.0, gt=0, le=3600, description="open event streams re-check their key every N s"
    )
    survey_import_max_concurrent: int = Field(
        default=2, ge=1, le=64, description="sheet imports written at once (others wait)"
    )
    export_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="ACDD global attributes of NetCDF exports (JSON object) over the defaults, "
        'e.g. {"creator_name": "...", "license": "CC-BY-4.0", "naming_authority": "org.example"}',
    )
    export_tmp_dir: Path | None = Field(
        default=None, description="NetCDF exports' temporary files; unset: <tmp>/swc-exports"
    )
    embedded_postgres_as_root: bool | None = Field(
        default=None,
        description="`swc up` as root with the embedded PostgreSQL, which then adds a system "
        "user and makes every parent folder of the data folder world-readable: unset = say so "
        "and go on, true = go on, false = refuse",
    )

    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["text", "json"] = Field(
        default="text", description="text: logfmt lines; json: one JSON object per line"
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        from swc_ops.logs import LEVELS

        if v.upper() not in LEVELS:
            raise ValueError(f"{v!r} is not a log level; use one of {', '.join(LEVELS)}")
        return v.upper()

    @field_validator("console_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone such as Asia/Shanghai") from None
        return v

    @field_validator("console_tile_url")
    @classmethod
    def _tiles(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("http://", "https://", "/")) or not all(
            f"{{{k}}}" in v for k in "zxy"
        ):
            raise ValueError(
                f"tile URL {v!r} must be http(s):// or /path with {{z}}, {{x}} and {{y}}"
            )
        return v

    @field_validator("topic_root")
    @classmethod
    def _root(cls, v: str) -> str:
        return validate_root(v)

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt(cls, v: str | None) -> str | None:
        if v:
            parse_mqtt_url(v)
        return v or None

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str | None) -> str | None:
        if not v:
            return None
        try:
            conninfo_to_dict(v)
        except psycopg.ProgrammingError as exc:
            raise ValueError(
                f"database URL is not valid ({exc}); expected postgresql://user@host:port/db"
            ) from None
        return v

    @field_validator("shared_group")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("api_statement_timeout_s")
    @classmethod
    def _timeouts(cls, v: dict[str, float]) -> dict[str, float]:
        from .store.keys import ROLES

        unknown = sorted(set(v) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
        if any(not 0 < t <= 3600 for t in v.values()):
            raise ValueError("statement timeouts are between 0 and 3600 s")
        return v

    @field_validator("webhook_allow_private")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        import ipaddress

        for item in v:
            if "/" in item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not a network (e.g. 10.0.0.0/8)") from None
        return v

    @property
    def export_tmp_path(self) -> Path:
        import tempfile

        return self.export_tmp_dir or Path(tempfile.gettempdir()) / "swc-exports"

    @property
    def attachments_path(self) -> Path:
        return self.attachments_dir or self.data_dir / "attachments"

    @property
    def mqtt(self) -> MqttTarget:
        if not self.mqtt_url:
            raise ValueError("no MQTT URL configured (SWC_MQTT_URL)")
        return parse_mqtt_url(self.mqtt_url)
