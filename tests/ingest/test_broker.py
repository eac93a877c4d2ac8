"""The repository's mosquitto config: persistence survives a broker restart."""

from __future__ import annotations

import json
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.broker import CONF_PATH, MosquittoProcess, render_mosquitto_conf
from tests.support.mqtt import Publisher


def test_config_sets_the_limits_that_prevent_silent_loss():
    text = CONF_PATH.read_text()
    for line in ("persistence true", "max_queued_messages 0", "max_inflight_messages 1000"):
        assert f"\n{line}\n" in text
    rendered = render_mosquitto_conf(1999, "/tmp/x")
    assert "\nlistener 1999 127.0.0.1\n" in rendered
    assert "\npersistence_location /tmp/x/\n" in rendered


def _subscriber(port: int, client_id: str, received: list, ready: threading.Event) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("keep/#", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: received.append(m.payload)
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    assert ready.wait(10)
    return c


def test_a_persistent_session_backlog_survives_a_broker_restart(tmp_path):
    broker = MosquittoProcess(tmp_path / "b").start()
    cid = f"keep-{uuid.uuid4().hex[:6]}"
    try:
        received: list = []
        sub = _subscriber(broker.port, cid, received, threading.Event())
        sub.disconnect()
        sub.loop_stop()
        n = 2500  # beyond mosquitto's default max_queued_messages of 1000
        with Publisher(broker.url) as pub:
            pub.publish_all((f"keep/{i}", json.dumps(i).encode()) for i in range(n))
        broker.stop()  # clean stop writes the persistence file
        broker.start()
        received = []
        sub = _subscriber(broker.port, cid, received, threading.Event())
        deadline = threading.Event()
        for _ in range(100):
            if len(received) >= n:
                break
            deadline.wait(0.1)
        sub.disconnect()
        sub.loop_stop()
        assert sorted(json.loads(p) for p in received) == list(range(n))
    finally:
        broker.stop()
