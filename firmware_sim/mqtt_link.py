"""The loggers' radio link: one MQTT connection per logger (paho-mqtt 2, QoS 1), a
retained status with a last will, and an outbox on disk that keeps every
message until the broker acknowledges it and replays it after an outage.

A message is written to the outbox (SQLite, WAL) before it is handed to
paho; the PUBACK deletes it. While the link is down nothing is handed to
paho: messages pile up on disk. When the link comes back, the outbox is
replayed in sequence order; the payloads are the original bytes, so the
replayed readings keep their sample times and ``sent_at``. Messages that were
in flight when the link dropped are retransmitted by paho itself (same
packet id, DUP flag), so they are not replayed twice.

The status's ``details`` carry ``run_info`` (the run's ``run_id``,
``data_start``, ``data_end``), by which a later run sees what this one wrote
(firmware_sim/previous.py).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol.messages import DeviceStatus
from protocol.mqtt_url import MqttUrl
from protocol.topics import DEFAULT_ROOT, Topic

log = logging.getLogger(__name__)

__all__ = ["LoggerLink", "MqttUrl", "Outbox"]


class Outbox:
    """Unsent messages of one or more loggers, on disk until acknowledged."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (device TEXT NOT NULL, seq INTEGER NOT NULL, "
            "topic TEXT NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (device, seq))"
        )

    def put(self, device: str, seq: int, topic: str, payload: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?)", (device, seq, topic, payload)
            )

    def delete(self, device: str, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE device = ? AND seq = ?", (device, seq))

    def pending(self, device: str) -> list[tuple[int, str, bytes]]:
        with self._lock:
            return self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE device = ? ORDER BY seq", (device,)
            ).fetchall()

    def count(self, device: str | None = None) -> int:
        with self._lock:
            if device is None:
                return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            return self._db.execute(
                "SELECT count(*) FROM outbox WHERE device = ?", (device,)
            ).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


class LoggerLink:
    """The MQTT connection of one simulated logger."""

    def __init__(self, device: str, url: MqttUrl, outbox: Outbox, root: str = DEFAULT_ROOT,
                 firmware: str = "swc-sim 1.0", client_prefix: str = "") -> None:  # fmt: skip
        self.device = device
        self.outbox = outbox
        self.root = root
        self.firmware = firmware
        self.telemetry_topic = str(Topic.telemetry(device, root))
        self.status_topic = str(Topic.status(device, root))
        self.connected = threading.Event()
        self.needs_replay = threading.Event()
        self.sim_clock: datetime | None = None  # device clock, for status messages
        self.battery_v: float | None = None
        self.rssi_dbm: float | None = None
        # what the retained status says about the run: run_id, data_start, data_end
        self.run_info: dict[str, str] = {}
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # paho mid -> seq
        self._early: set[int] = set()  # acks that arrived before the mid was recorded
        self.published = 0
        self.acked = 0
        self.replayed = 0
        self.connects = 0
        client_id = f"{client_prefix}{device}"[:64]
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._url = url

    # -- status ----------------------------------------------------------------
    def _status(self, state: str, **details) -> bytes:
        at = self.sim_clock or datetime.now(UTC)
        st = DeviceStatus(
            device=self.device,
            state=state,
            at=at,
            firmware=self.firmware,
            battery_v=self.battery_v,
            rssi_dbm=self.rssi_dbm,
            details={"queued": self.outbox.count(self.device), **self.run_info, **details},
        )
        return st.model_dump_json(exclude_none=True).encode()

    # -- paho callbacks (network thread: hand work over, do little) ------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("device=%s connect refused reason=%s", self.device, reason_code)
            return
        self.connects += 1
        client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        self.connected.set()
        self.needs_replay.set()
        log.info("device=%s connected connects=%d", self.device, self.connects)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            log.info("device=%s link down reason=%s", self.device, reason_code)
        self.connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
                return
        self.outbox.delete(self.device, seq)
        self.acked += 1

    # -- use -------------------------------------------------------------------
    def start(self) -> None:
        self.client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        self.client.connect_async(self._url.host, self._url.port, keepalive=10)
        self.client.loop_start()

    def _hand(self, seq: int, payload: bytes) -> None:
        info = self.client.publish(self.telemetry_topic, payload, qos=1)
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                acked = True
            else:
                self._inflight[info.mid] = seq
                acked = False
        if acked:
            self.outbox.delete(self.device, seq)
            self.acked += 1
        self.published += 1

    def send(self, seq: int, payload: bytes) -> None:
        """Keep the message on disk, and publish it now if the link is up."""
        self.outbox.put(self.device, seq, self.telemetry_topic, payload)
        if self.needs_replay.is_set():
            self.replay()
        elif self.connected.is_set():
            self._hand(seq, payload)

    def replay(self) -> int:
        """Publish, in order, every message on disk that paho does not hold already."""
        if not self.connected.is_set():
            return 0
        self.needs_replay.clear()
        with self._lock:
            held = set(self._inflight.values())
        n = 0
        for seq, _topic, payload in self.outbox.pending(self.device):
            if seq in held:
                continue
            self._hand(seq, payload)
            n += 1
        if n:
            self.replayed += n
            log.info("device=%s replayed=%d", self.device, n)
        return n

    def unacked(self) -> int:
        return self.outbox.count(self.device)

    def stop(self, timeout_s: float = 10.0, reason: str = "end of run") -> None:
        """Say offline (retained), then disconnect cleanly (no last will)."""
        if self.connected.is_set():
            info = self.client.publish(
                self.status_topic, self._status("offline", reason=reason), qos=1, retain=True
            )
            deadline = time.monotonic() + timeout_s
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()
