"""Helpers for the gateway's tests: loggers that publish, an upstream collector, configs."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.messages import decode_telemetry

T0 = datetime(2026, 7, 21, 0, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def row_message(device: str, seq: int, start_index: int, n: int, channel: str = "stage_m") -> bytes:
    """A row-form message of ``n`` readings at minute steps from ``T0 + start_index`` minutes."""
    readings = [
        {
            "t": iso(T0 + timedelta(minutes=start_index + i)),
            "ch": channel,
            "v": (start_index + i) / 100,
        }
        for i in range(n)
    ]
    return json.dumps(
        {"device": device, "seq": seq, "sent_at": iso(datetime.now(UTC)), "readings": readings}
    ).encode()


def reading_key(device: str, index: int, channel: str = "stage_m") -> tuple[str, str, datetime]:
    return (device, channel, T0 + timedelta(minutes=index))


class Logger:
    """A field logger publishing to the local broker with QoS 1 (one paho client)."""

    def __init__(self, port: int, client_id: str):
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=qos))

    def flush(self, timeout: float = 60) -> None:
        for info in self.infos:
            info.wait_for_publish(timeout)
        self.infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


class Collector:
    """The upstream side in tests: a persistent session on telemetry and status."""

    def __init__(self, port: int, root: str, client_id: str = "collector"):
        self.root = root
        self.lock = threading.Lock()
        self.readings: list[tuple[str, str, datetime]] = []
        self.messages: list[tuple[str, str, int, int]] = []  # (topic, device, seq, n)
        self.statuses: list[tuple[str, dict]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, 10, "the collector's subscription")

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        client.subscribe([(f"{self.root}/+/telemetry", 1), (f"{self.root}/+/status", 1)])

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.endswith("/status"):
            with self.lock:
                self.statuses.append((msg.topic, json.loads(msg.payload)))
            return
        tel = decode_telemetry(msg.payload)
        with self.lock:
            self.messages.append((msg.topic, tel.device, tel.seq, len(tel.rows)))
            self.readings.extend((tel.device, ch, t) for t, ch, _v, _q in tel.rows)

    def count(self) -> int:
        with self.lock:
            return len(self.readings)

    def distinct_count(self) -> int:
        with self.lock:
            return len(set(self.readings))

    def distinct(self) -> set:
        with self.lock:
            return set(self.readings)

    def first_arrival_order(self) -> dict[str, list[datetime]]:
        """Per device and channel, the sample times in order of their first arrival."""
        seen = set()
        out: dict[str, list[datetime]] = defaultdict(list)
        with self.lock:
            for key in self.readings:
                if key not in seen:
                    seen.add(key)
                    out[f"{key[0]}/{key[1]}"].append(key[2])
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str, timeout: float = 20) -> dict:
    """The retained JSON message on ``topic``, waiting for it to appear."""
    got: dict = {}
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, msg: got.setdefault("m", json.loads(msg.payload))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until(lambda: "m" in got, timeout, f"a retained message on {topic}")
    finally:
        client.disconnect()
        client.loop_stop()
    return got["m"]


def write_config(path: Path, **options) -> Path:
    path.write_text(yaml.safe_dump(options, sort_keys=False))
    return path


def gateway_options(
    tmp_path: Path, gateway_id: str, root: str, local_port: int, upstream_port: int, **overrides
) -> dict:
    """Options of a test gateway: fast reconnects and short batch ages."""
    options: dict = {
        "gateway_id": gateway_id,
        "topic_root": root,
        "data_dir": str(tmp_path / "gw"),
        "local": {"url": f"mqtt://127.0.0.1:{local_port}", "reconnect_max_s": 1.0},
        "upstream": {
            "url": f"mqtt://127.0.0.1:{upstream_port}",
            "reconnect_max_s": 1.0,
            "max_inflight": 16,
        },
        "forward": {"batch_max_age_s": 0.2},
        "status": {"interval_s": 1.0},
        "log": {"level": "INFO"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(options.get(key), dict):
            options[key] = {**options[key], **value}
        else:
            options[key] = value
    return options
