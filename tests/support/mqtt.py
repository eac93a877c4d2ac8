"""A QoS 1 test publisher that waits for every PUBACK."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.settings import MqttTarget


class Publisher:
    def __init__(self, url: str, client_id: str | None = None, protocol: int = mqtt.MQTTv5):
        target = MqttTarget.from_url(url)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
        )
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect(target.host, target.port)
        self.client.loop_start()
        if not connected.wait(10):
            raise TimeoutError("publisher could not connect")

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def publish_all(
        self, items: Iterable[tuple[str, bytes]], qos: int = 1, timeout: float = 120
    ) -> int:
        infos = [self.publish(t, p, qos) for t, p in items]
        for info in infos:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise TimeoutError("a message was not acknowledged by the broker")
        return len(infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
