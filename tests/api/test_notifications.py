"""Notifications of alert events: SSE stream through a real uvicorn, retained MQTT state,
signed webhooks with retries; readings published over MQTT to the real consumer."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import queue
import threading
import time
from typing import ClassVar

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from ingest.api import create_app
from ingest.broker import free_port
from ingest.settings import Settings
from protocol.topics import alerts_topic
from tests.api.support import (
    ServerThread,
    SseReader,
    messages,
    minutes_ago,
    new_key,
    publish,
    rows,
    set_rule,
    setup_site,
)
from tests.support.waiting import wait_for

DAM = {"dam_crest_m": 5.0, "design_freeboard_m": 0.3}


def _dam(db):
    setup_site(db, "dam-1", "check_dam", DAM, {"dam-1": ["stage_m"]})
    set_rule(
        db, "dam-1", "stage", {"thresholds": {"blue": 1.0, "yellow": 0.5}, "min_duration_s": 0}
    )


def test_alert_events_reach_the_sse_stream_and_the_retained_mqtt_state(
    db, broker, settings_for, topic_root, start_alerting
):
    _dam(db)
    settings = settings_for()
    start_alerting(settings, db)
    key = new_key(db, "viewer")
    with ServerThread(create_app(Settings(_env_file=None, database_url=db))) as server:
        wait_for(lambda: server.server.started, what="api")
        time.sleep(0.3)  # the listener thread LISTENs
        sse = SseReader(f"{server.url}/alerts/stream?site_id=dam-1", key)
        publish(broker.url, messages("dam-1", topic_root, [(minutes_ago(2), "stage_m", 4.1)]))
        ev = sse.next()
        assert ev["data"]["kind"] == "open" and ev["data"]["level"] == 1
        assert ev["data"]["site_id"] == "dam-1" and ev["data"]["rule"] == "stage"
        publish(
            broker.url, messages("dam-1", topic_root, [(minutes_ago(1), "stage_m", 4.6)], seq0=2)
        )
        ev2 = sse.next()
        assert (ev2["data"]["kind"], ev2["data"]["level"]) == ("escalate", 2)
        assert ev2["id"] > ev["id"]
        # a reconnecting client gets what it missed after Last-Event-ID
        again = SseReader(
            f"{server.url}/alerts/stream?max_seconds=2", key, {"Last-Event-ID": str(ev["id"])}
        )
        assert again.next()["id"] == ev2["id"]

    # the retained state of the site on swc/v1/alerts/{site}
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, u, m: got.put((m.topic, json.loads(m.payload), m.retain))

    def retained_level():
        topic, state, retained = got.get(timeout=10)
        return topic, state, retained

    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.subscribe(alerts_topic("dam-1", topic_root), qos=1)
    topic, state, retained = retained_level()
    c.loop_stop()
    c.disconnect()
    assert topic == f"{topic_root}/alerts/dam-1" and retained
    assert state["level"] == 2 and state["alerts"][0]["rule"] == "stage"


class Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list] = []
    fail_first = 2

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((self.headers, body))
        status = 500 if len(Hook.received) <= Hook.fail_first else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_are_signed_retried_with_backoff_and_logged(
    db, broker, settings_for, topic_root, start_alerting
):
    _dam(db)
    Hook.received = []
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    secret = "s3cret-for-the-webhook-test"
    with psycopg.connect(db) as conn:
        hook_id = conn.execute(
            "INSERT INTO webhooks (url, secret, min_level) VALUES (%s, %s, 1) RETURNING id",
            (f"http://127.0.0.1:{port}/alerts", secret),
        ).fetchone()[0]
    settings = settings_for(webhook_backoff_s=0.2, webhook_allow_private=["127.0.0.1/32"])
    start_alerting(settings, db)
    try:
        publish(broker.url, messages("dam-1", topic_root, [(minutes_ago(2), "stage_m", 4.6)]))
        wait_for(
            lambda: rows(db, "SELECT status FROM webhook_deliveries") == [("delivered",)],
            timeout=30,
            what="delivery",
        )
    finally:
        srv.shutdown()
    (attempts, last_status) = rows(
        db, "SELECT attempts, last_status FROM webhook_deliveries WHERE webhook_id = %s", (hook_id,)
    )[0]
    assert attempts == 3 and last_status == 204
    headers, body = Hook.received[-1]
    ts = headers["X-SWC-Timestamp"]
    want = (
        "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    assert headers["X-SWC-Signature"] == want
    payload = json.loads(body)
    assert payload["kind"] == "open" and payload["site_id"] == "dam-1" and payload["level"] == 2
    # the delivery log through the API
    admin = new_key(db, "admin")
    from fastapi.testclient import TestClient

    with TestClient(create_app(Settings(_env_file=None, database_url=db))) as api:
        log = api.get(
            f"/webhooks/{hook_id}/deliveries", headers={"Authorization": f"Bearer {admin}"}
        ).json()["items"]
    assert log[0]["status"] == "delivered" and log[0]["attempts"] == 3
