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
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from protocol.topics import alerts_topic

from .. import metrics as webhook_metrics
from ..settings import Settings
from ..store import alerts as store

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-SWC-Signature"
TIMESTAMP_HEADER = "X-SWC-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``{timestamp}.{body}``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class TargetRefused(ValueError):
    """A webhook URL that may not be called: not http(s), or a non-public address."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # with the query
    address: str  # the checked IP address the connection goes to


def _allowed(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str, allow) -> bool:
    for item in allow:
        if "/" in item:
            if addr in ipaddress.ip_network(item, strict=False):
                return True
        elif item.lower() in (host.lower(), str(addr)):
            return True
    return False


def resolve_target(url: str, allow: list[str] | tuple[str, ...] = ()) -> Target:
    """Where a webhook goes, checked: every address the host resolves to must be
    public (not loopback, private, link-local, multicast, reserved) unless
    ``allow`` (SWC_WEBHOOK_ALLOW_PRIVATE: networks or host names) lets it.
    The connection is then made to the checked address (no second lookup)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"webhook URL {url[:200]!r} is not an http(s) URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("webhook URL has an invalid port") from None
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"webhook host {host!r} does not resolve: {exc}") from None
    addresses = []
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if not addr.is_global and not _allowed(addr, host, allow):
            raise TargetRefused(
                f"webhook host {host!r} is {addr}, a loopback, private or reserved address; "
                "webhooks go to public addresses only (allow one with SWC_WEBHOOK_ALLOW_PRIVATE)"
            )
        addresses.append(str(addr))
    if not addresses:
        raise TargetRefused(f"webhook host {host!r} has no address")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, addresses[0])


_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """The system's trust store (as before httpx), built once and shared by every post."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


def post_json(
    target: Target,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int | None, str | None]:
    """POST ``body`` through httpx to the checked address of ``target``.

    The connection goes to ``target.address`` (no second DNS lookup, so a name
    that resolves to a private address on the next lookup cannot be reached);
    the ``Host`` header, TLS SNI and certificate check use the host name.
    Redirects are not followed: a 3xx is a failed delivery with the reason.
    No proxy or netrc from the environment. ``timeout`` bounds each of connect,
    write and read. Returns (HTTP status or None, error or None).
    """
    address = f"[{target.address}]" if ":" in target.address else target.address
    url = f"{target.scheme}://{address}:{target.port}{target.path}"
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    headers = {
        **headers,
        "Host": host if target.port == default_port else f"{host}:{target.port}",
    }
    try:
        with (
            httpx.Client(
                verify=ssl_context or _ssl_context(),
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
                trust_env=False,
            ) as client,
            client.stream(
                "POST",
                url,
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.host},
            ) as resp,
        ):
            status = resp.status_code
            if resp.is_redirect or 300 <= status < 400:
                where = resp.headers.get("Location", "")[:200]
                return status, (
                    f"HTTP {status}: redirect to {where!r} not followed "
                    "(webhooks do not follow redirects; register the final URL)"
                )
            if not resp.is_success:
                return status, f"HTTP {status}"
            return status, None
    except httpx.TimeoutException as exc:
        return None, f"timed out after {timeout:g} s ({type(exc).__name__})"
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        return None, (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:500]


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
            started = time.monotonic()
            status, error = self._post(url, secret, body, delivery_id)
            final = attempts >= s.webhook_max_attempts
            ok = status is not None and 200 <= status < 300
            webhook_metrics.record(
                "delivered" if ok else "failed" if final else "retry", time.monotonic() - started
            )
            if ok:
                conn.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), "
                    "last_status = %s, last_error = NULL WHERE id = %s",
                    (status, delivery_id),
                )
                continue
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
        try:
            target = resolve_target(url, self.settings.webhook_allow_private)
        except TargetRefused as exc:
            return None, str(exc)[:500]
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "swc-alerts/1",
            "X-SWC-Delivery": str(delivery_id),
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(secret, ts, body),
        }
        return post_json(target, body, headers, self.settings.webhook_timeout_s)
