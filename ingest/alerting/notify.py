"""Notifications of announced alert events: the retained MQTT state per site, and webhooks.

Both run in the ingest process next to the engine and are driven by the
database, not by the engine's memory: the ``swc_alerts`` NOTIFY (sent on
commit by the engine and by the API's acknowledge / resolve) tells which
sites to republish, and ``webhook_deliveries`` rows are the work queue of
the webhook sender (claimed with ``FOR UPDATE SKIP LOCKED``, so several
ingest processes never send one delivery twice).

The retained state is published again for every site each time the MQTT
connection is (re)made, so a broker that restarted without its last
retained messages (a crash between two autosaves, a lost data folder) is
brought back to the database's state. The notifier only publishes; it holds
no subscription that a broker restart could lose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from protocol.topics import alerts_topic

from ..settings import Settings
from ..store import alerts as store

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-SWC-Signature"
TIMESTAMP_HEADER = "X-SWC-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``{timestamp}.{body}``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def site_state(conn: psycopg.Connection, site_id: str) -> dict:
    """The retained message of a site: its announced alerts that are not resolved."""
    active = store.active_site_alerts(conn, site_id)
    return {
        "site_id": site_id,
        "level": max((a["level"] for a in active), default=0),
        "updated_at": datetime.now(UTC).isoformat(),
        "alerts": [
            {
                "id": a["id"],
                "rule": a["rule"],
                "subject": a["subject"],
                "state": a["state"],
                "level": a["level"],
                "peak_level": a["peak_level"],
                "opened_at": a["opened_at"].isoformat(),
                "value": a["value"],
            }
            for a in active
        ],
    }


class Notifier:
    """Threads: one LISTENs and republishes sites' retained state; one sends webhooks."""

    def __init__(self, settings: Settings, dsn: str):
        self.settings = settings
        self.dsn = dsn
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._resync = threading.Event()  # set on each MQTT connect: republish every site
        self._threads: list[threading.Thread] = []
        self._client: mqtt.Client | None = None

    def start(self) -> Notifier:
        if self.settings.alert_mqtt and self.settings.mqtt_url:
            self._client = self._mqtt_client()
        for target, name in ((self._listen, "swc-alert-listen"), (self._send, "swc-webhooks")):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for th in self._threads:
            th.join(timeout)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    # --- MQTT retained state -----------------------------------------------------
    def _mqtt_client(self) -> mqtt.Client:
        s = self.settings
        target = s.mqtt
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{s.client_id}-alerts",
            protocol=mqtt.MQTTv5 if s.mqtt_protocol == "5" else mqtt.MQTTv311,
        )
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set()
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.connect_async(target.host, target.port, keepalive=30)
        client.loop_start()
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("alert state publisher: broker refused the connection reason=%s", reason_code)
            return
        self._resync.set()

    def publish_all_sites(self, conn: psycopg.Connection) -> int:
        """Publish the retained state of every site; returns how many."""
        sites = [r[0] for r in conn.execute("SELECT id FROM sites ORDER BY id").fetchall()]
        for site in sites:
            self.publish_site(conn, site)
        return len(sites)

    def publish_site(self, conn: psycopg.Connection, site_id: str) -> None:
        if self._client is None:
            return
        state = site_state(conn, site_id)
        topic = alerts_topic(site_id, self.settings.topic_root)
        self._client.publish(topic, json.dumps(state).encode(), qos=1, retain=True)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {store.CHANNEL}")
                    self._resync.set()  # anything announced while not listening
                    while not self._stop.is_set():
                        if self._resync.is_set() and self._client is not None:
                            self._resync.clear()
                            n = self.publish_all_sites(conn)
                            log.info("alert state republished for %d sites", n)
                        sites = set()
                        for note in conn.notifies(timeout=0.5, stop_after=200):
                            try:
                                sites.add(json.loads(note.payload)["site_id"])
                            except (ValueError, KeyError):
                                continue
                        if sites:
                            self._wake.set()
                            for site in sorted(sites):
                                self.publish_site(conn, site)
            except psycopg.Error as exc:
                log.warning("alert listener: %s; reconnecting", str(exc).strip()[:200])
                self._stop.wait(2.0)

    # --- webhooks ----------------------------------------------------------------
    def _send(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    while not self._stop.is_set():
                        if not self.deliver_due(conn):
                            self._wake.wait(0.5)
                            self._wake.clear()
            except psycopg.Error as exc:
                log.warning("webhook sender: %s; reconnecting", str(exc).strip()[:200])
                self._stop.wait(2.0)

    def deliver_due(self, conn: psycopg.Connection, limit: int = 20) -> int:
        """Send the deliveries that are due; returns how many were attempted."""
        s = self.settings
        lease = s.webhook_timeout_s * 2 + 5
        rows = conn.execute(
            "UPDATE webhook_deliveries d SET next_attempt_at = now() + %s * interval '1 second', "
            "attempts = d.attempts + 1 FROM webhooks w WHERE w.id = d.webhook_id AND d.id IN ("
            "  SELECT id FROM webhook_deliveries WHERE status = 'pending' "
            "  AND next_attempt_at <= now() ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
            "RETURNING d.id, d.event_id, d.attempts, w.url, w.secret",
            (lease, limit),
        ).fetchall()
        for delivery_id, event_id, attempts, url, secret in rows:
            body = json.dumps(store.event_payload(conn, event_id)).encode()
            status, error = self._post(url, secret, body, delivery_id)
            if status is not None and 200 <= status < 300:
                conn.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), "
                    "last_status = %s, last_error = NULL WHERE id = %s",
                    (status, delivery_id),
                )
                continue
            final = attempts >= s.webhook_max_attempts
            delay = min(s.webhook_backoff_s * 2 ** (attempts - 1), 3600.0)
            conn.execute(
                "UPDATE webhook_deliveries SET status = %s, last_status = %s, last_error = %s, "
                "next_attempt_at = now() + %s * interval '1 second' WHERE id = %s",
                ("failed" if final else "pending", status, error, delay, delivery_id),
            )
            log.warning(
                "webhook delivery=%d attempt=%d failed status=%s error=%s%s",
                delivery_id,
                attempts,
                status,
                error,
                " (giving up)" if final else f" (retry in {delay:.1f}s)",
            )
        return len(rows)

    def _post(
        self, url: str, secret: str, body: bytes, delivery_id: int
    ) -> tuple[int | None, str | None]:
        ts = str(int(time.time()))
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "swc-alerts/1",
                "X-SWC-Delivery": str(delivery_id),
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: sign(secret, ts, body),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.settings.webhook_timeout_s) as resp:
                return resp.status, None
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return None, str(getattr(exc, "reason", exc))[:500]
