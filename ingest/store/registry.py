"""Sites, devices and streams: loading them from a file, and resolving them at ingest.

A registry file (YAML or JSON) lists sites with their devices and channels,
and gateways with the loggers they forward for::

    sites:
      - id: dam-017
        kind: check_dam
        name: Wangmaogou check dam 17
        latitude: 37.58
        longitude: 110.36
        params: {spillway_crest_m: 4.5}
        devices:
          - id: dam-017
            channels: [stage_m, turbidity_ntu, battery_v]
    gateways:
      - id: gw-north
        loggers: [dam-017]
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
import yaml
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.channels import CHANNEL_NAME_PATTERN, unit_of
from protocol.topics import CLIENT_ID_PATTERN

log = logging.getLogger(__name__)

Id = Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
ChannelName = Annotated[str, Field(pattern=CHANNEL_NAME_PATTERN)]
SiteKind = Literal["check_dam", "cistern", "runoff_plot", "rain_gauge", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DeviceSpec(_Strict):
    id: Id
    channels: list[ChannelName] = Field(default_factory=list)
    firmware: str | None = None


class SiteSpec(_Strict):
    id: Id
    kind: SiteKind
    name: str = Field(min_length=1, max_length=200)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    elevation_m: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    devices: list[DeviceSpec] = Field(default_factory=list)


class GatewaySpec(_Strict):
    id: Id
    loggers: list[Id] = Field(default_factory=list)


class RegistryFile(_Strict):
    sites: list[SiteSpec] = Field(default_factory=list)
    gateways: list[GatewaySpec] = Field(default_factory=list)


class RegistryFileError(ValueError):
    """A registry file that cannot be read or does not match the expected shape."""


def read_registry_file(path: Path) -> RegistryFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryFileError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RegistryFileError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from None
    try:
        spec = RegistryFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise RegistryFileError(f"{path}: {len(lines)} problem(s):\n" + "\n".join(lines)) from None
    ids = [d.id for s in spec.sites for d in s.devices]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise RegistryFileError(f"{path}: device ids listed twice: {', '.join(dupes)}")
    return spec


def load_registry(conn: psycopg.Connection, spec: RegistryFile) -> dict[str, int]:
    """Insert or update the sites, devices, streams and gateways of ``spec`` in one transaction."""
    counts = {"sites": 0, "devices": 0, "streams": 0, "gateways": 0}
    with conn.transaction():
        for gw in spec.gateways:
            conn.execute(
                "INSERT INTO devices (id, kind) VALUES (%s, 'gateway') "
                "ON CONFLICT (id) DO UPDATE SET kind = 'gateway', auto_registered = false",
                (gw.id,),
            )
            counts["gateways"] += 1
        for site in spec.sites:
            conn.execute(
                "INSERT INTO sites (id, kind, name, latitude, longitude, elevation_m, params) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "kind = EXCLUDED.kind, name = EXCLUDED.name, latitude = EXCLUDED.latitude, "
                "longitude = EXCLUDED.longitude, elevation_m = EXCLUDED.elevation_m, "
                "params = EXCLUDED.params, updated_at = now()",
                (
                    site.id,
                    site.kind,
                    site.name,
                    site.latitude,
                    site.longitude,
                    site.elevation_m,
                    Jsonb(site.params),
                ),
            )
            counts["sites"] += 1
            for dev in site.devices:
                conn.execute(
                    "INSERT INTO devices (id, site_id, firmware) VALUES (%s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET site_id = EXCLUDED.site_id, "
                    "firmware = coalesce(EXCLUDED.firmware, devices.firmware), "
                    # registering resets what auto-registration let a sender speak for;
                    # the gateways: section below gives the relation back if it is real
                    "gateway_id = CASE WHEN devices.auto_registered THEN NULL "
                    "ELSE devices.gateway_id END, auto_registered = false",
                    (dev.id, site.id, dev.firmware),
                )
                counts["devices"] += 1
                for ch in dev.channels:
                    cur = conn.execute(
                        "INSERT INTO streams (device_id, channel, unit) VALUES (%s, %s, %s) "
                        "ON CONFLICT (device_id, channel) DO NOTHING",
                        (dev.id, ch, unit_of(ch)),
                    )
                    counts["streams"] += cur.rowcount
        for gw in spec.gateways:
            for logger_id in gw.loggers:
                conn.execute(
                    "INSERT INTO devices (id, gateway_id) VALUES (%s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET gateway_id = EXCLUDED.gateway_id",
                    (logger_id, gw.id),
                )
    return counts


# --- resolution at ingest -------------------------------------------------------
class Rejected(Exception):
    """A message the registry refuses: ``code`` is the dead-letter code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Device:
    gateway_id: str | None
    fetched: float


class StreamResolver:
    """Maps (sender, device, channel) to stream ids, registering what is new.

    Device facts are cached for ``device_ttl_s`` so that a changed owner is
    seen soon; stream ids never change and are cached for good.
    """

    def __init__(self, auto_register: bool, device_ttl_s: float = 30.0):
        self.auto_register = auto_register
        self.device_ttl_s = device_ttl_s
        self._devices: dict[str, _Device] = {}
        self._streams: dict[tuple[str, str], int] = {}

    def is_registered(self, conn: psycopg.Connection, device: str) -> bool:
        return self._device(conn, device) is not None

    def refresh(self, conn: psycopg.Connection, devices: set[str]) -> None:
        """Fetch, in one query, the facts of those ``devices`` not cached or older than
        ``device_ttl_s`` (a batch's devices, before ``check_owner`` asks about each:
        one round trip per batch rather than one per message)."""
        now = time.monotonic()
        cached = self._devices
        due = [
            d
            for d in devices
            if (c := cached.get(d)) is None or now - c.fetched >= self.device_ttl_s
        ]
        if not due:
            return
        rows = conn.execute(
            "SELECT id, gateway_id FROM devices WHERE id = ANY(%s)", (due,)
        ).fetchall()
        for device in due:  # unknown ones are looked up (and registered) by check_owner
            cached.pop(device, None)
        for device, gateway in rows:
            cached[device] = _Device(gateway, now)

    def check_owner(self, conn: psycopg.Connection, sender: str, device: str) -> None:
        """Raise Rejected unless ``sender`` may publish for ``device``."""
        info = self._device(conn, device)
        if info is None:
            if not self.auto_register:
                raise Rejected(
                    "unknown_device",
                    f"device {device!r} is not registered and SWC_AUTO_REGISTER is off",
                )
            if device != sender:
                self._check_may_bring_in(conn, sender, device)
            info = self._register(conn, sender, device)
        if device != sender and info.gateway_id != sender:
            raise Rejected(
                "not_owner",
                f"{sender!r} published for device {device!r}, which "
                + (
                    f"belongs to gateway {info.gateway_id!r}"
                    if info.gateway_id
                    else "has no gateway"
                ),
            )

    def stream_ids(
        self, conn: psycopg.Connection, pairs: set[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        missing = [p for p in pairs if p not in self._streams]
        if missing:  # those registered already are read; only the rest are inserted
            missing = self._read_streams(conn, missing)
        if missing:
            conn.execute(
                "INSERT INTO streams (device_id, channel, unit) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
                "ON CONFLICT (device_id, channel) DO NOTHING",
                (
                    [d for d, _ in missing],
                    [c for _, c in missing],
                    [unit_of(c) for _, c in missing],
                ),
            )
            self._read_streams(conn, missing)
        return {p: self._streams[p] for p in pairs}

    def _read_streams(
        self, conn: psycopg.Connection, pairs: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Cache the ids of the streams of ``pairs`` that exist; return those that do not."""
        rows = conn.execute(
            "SELECT s.id, s.device_id, s.channel FROM streams s "
            "JOIN unnest(%s::text[], %s::text[]) AS m(d, c) "
            "ON s.device_id = m.d AND s.channel = m.c",
            ([d for d, _ in pairs], [c for _, c in pairs]),
        ).fetchall()
        for sid, dev, ch in rows:
            self._streams[(dev, ch)] = sid
        return [p for p in pairs if p not in self._streams]

    def _check_may_bring_in(self, conn: psycopg.Connection, sender: str, device: str) -> None:
        """Only a gateway (or, on an open development broker, a sender nobody registered)
        brings an unknown logger in behind it: a registered logger speaks only for itself,
        so it cannot claim an id that another site's device will be registered under."""
        row = conn.execute("SELECT kind FROM devices WHERE id = %s", (sender,)).fetchone()
        if row is not None and row[0] != "gateway":
            raise Rejected(
                "not_owner",
                f"{sender!r} is a logger and published for unregistered device {device!r}; "
                "a logger publishes only for itself (register the device behind a gateway "
                "to forward for it)",
            )

    def _device(self, conn: psycopg.Connection, device: str) -> _Device | None:
        now = time.monotonic()
        cached = self._devices.get(device)
        if cached is not None and now - cached.fetched < self.device_ttl_s:
            return cached
        row = conn.execute("SELECT gateway_id FROM devices WHERE id = %s", (device,)).fetchone()
        if row is None:
            self._devices.pop(device, None)
            return None
        info = _Device(row[0], now)
        self._devices[device] = info
        return info

    def _register(self, conn: psycopg.Connection, sender: str, device: str) -> _Device:
        gateway = None
        if sender != device:
            gateway = sender
            conn.execute(
                "INSERT INTO devices (id, kind, auto_registered) VALUES (%s, 'gateway', true) "
                "ON CONFLICT (id) DO NOTHING",
                (sender,),
            )
        conn.execute(
            "INSERT INTO devices (id, gateway_id, auto_registered) VALUES (%s, %s, true) "
            "ON CONFLICT (id) DO NOTHING",
            (device, gateway),
        )
        log.info("auto-registered device=%s gateway=%s", device, gateway)
        self._devices.pop(device, None)
        info = self._device(conn, device)
        assert info is not None
        return info
