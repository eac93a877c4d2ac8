"""The running gateway: local intake, disk queue, upstream forwarding and retained status.

Threads (each hands work to the next through a queue or an event, never a shared lock
held across network calls):

* paho's local network thread puts each received message on ``inbox``;
* the intake thread validates what is in ``inbox``, appends it to the disk queue in
  one transaction, and only then sends the PUBACKs to the local broker (manual ack);
* one thread per line source does the same for CSV lines;
* the forwarder composes queued readings into upstream messages, publishes them
  with QoS 1 (at most ``upstream.max_inflight`` unacknowledged), and deletes from the
  queue each message whose PUBACK arrived (paho's ``on_publish``, matched by mid);
* the status thread publishes the retained status on both brokers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from protocol.messages import DeviceStatus
from protocol.topics import Topic, telemetry_filter

from . import __version__
from .config import GatewayConfig
from .intake import Admission, Checked, check_message
from .linesource import LineSource
from .mqtt import connect_async, make_client
from .queue import DiskQueue, OutMessage

log = logging.getLogger(__name__)

_INTAKE_BATCH = 1000  # local messages per queue transaction at most


@dataclass(slots=True)
class _Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # local connection it came on; its PUBACK goes only to that connection


class Gateway:
    """One gateway process. ``start()`` then ``stop()``; or ``run()`` which blocks until stopped."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        q = config.queue
        self.queue = DiskQueue(
            config.queue_path,
            max_bytes=q.max_bytes,
            synchronous=q.synchronous,
            max_rejects=q.max_rejects,
            reject_payload_bytes=q.reject_payload_bytes,
        )
        self.admission = Admission(
            root=config.topic_root,
            devices=frozenset(config.devices),
            require_topic_device=config.require_topic_device,
        )
        self.uplink_topic = str(Topic.telemetry(config.gateway_id, config.uplink_root))
        self.uplink_status_topic = str(Topic.status(config.gateway_id, config.uplink_root))
        self.local_status_topic = str(Topic.status(config.gateway_id, config.topic_root))
        self.own_local_topic = str(Topic.telemetry(config.gateway_id, config.topic_root))

        self.inbox: queue.Queue[_Incoming] = queue.Queue()
        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()  # forwarder: new readings, acks or a connection
        self._status_due = threading.Event()
        self.local_connected = threading.Event()
        self.uplink_connected = threading.Event()
        self._generation = 0
        self._drain_s = 5.0
        self.started_at = time.time()
        self._last_progress = 0.0

        self.local = make_client(
            config.local,
            config.local_client_id,
            persistent=True,
            manual_ack=True,
            will=(self.local_status_topic, self._status_payload(online=False)),
        )
        self.local.on_connect = self._on_local_connect
        self.local.on_disconnect = self._on_local_disconnect
        self.local.on_message = self._on_local_message

        self.uplink = make_client(
            config.upstream,
            config.upstream_client_id,
            persistent=False,
            will=(self.uplink_status_topic, self._status_payload(online=False)),
        )
        self.uplink.max_inflight_messages_set(config.upstream.max_inflight)
        self.uplink.on_connect = self._on_uplink_connect
        self.uplink.on_disconnect = self._on_uplink_disconnect
        self.uplink.on_publish = self._on_uplink_publish
        self.uplink.on_connect_fail = self._on_uplink_connect_fail
        self.local.on_connect_fail = self._on_local_connect_fail
        # the last reason a connection could not be made (None once connected), and how often
        self.uplink_error: str | None = None
        self.uplink_failures = 0
        self.local_error: str | None = None
        self._uplink_error_logged_at = 0.0

        self.line_sources = [
            LineSource(src, self.queue, self.admission, self._stop, self._on_line_rows)
            for src in config.line_sources
        ]
        self._threads = [
            threading.Thread(target=self._intake_loop, name="intake", daemon=True),
            threading.Thread(target=self._forward_loop, name="forward", daemon=True),
            threading.Thread(target=self._status_loop, name="status", daemon=True),
        ]

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> Gateway:
        c = self.config
        stats = self.queue.stats()
        log.info(
            "gateway starting id=%s version=%s queue=%s depth=%d local=%s upstream=%s "
            "uplink_topic=%s line_sources=%d",
            c.gateway_id,
            __version__,
            c.queue_path,
            stats.depth,
            c.local.url,
            c.upstream.url,
            self.uplink_topic,
            len(self.line_sources),
        )
        for t in self._threads:
            t.start()
        for src in self.line_sources:
            src.start()
        connect_async(self.uplink, c.upstream, persistent=False)
        connect_async(
            self.local,
            c.local,
            persistent=True,
            session_expiry_s=c.local.session_expiry_s,
            receive_maximum=c.local.receive_maximum,
        )
        return self

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop taking input, wait up to ``drain_s`` for in-flight acknowledgements, disconnect.

        Nothing is lost either way: unacknowledged local messages are redelivered by the
        local broker, and unacknowledged upstream messages stay in the queue.
        """
        if self._stop.is_set():
            return
        self._drain_s = drain_s
        self._stop.set()
        self._wake.set()
        self._status_due.set()
        for t in self._threads:  # intake commits and acks what it holds before it returns
            t.join(drain_s + 5)
        for src in self.line_sources:
            src.join(2)
        # a clean disconnect sends no last will: say "offline" ourselves, with the counters
        final = self.status(online=False).model_dump_json(exclude_none=True).encode()
        targets = [(self.uplink, self.uplink_status_topic, self.uplink_connected)]
        if self.config.status.local:
            targets.append((self.local, self.local_status_topic, self.local_connected))
        for client, topic, connected in targets:
            try:
                if connected.is_set():
                    client.publish(topic, final, qos=1, retain=True).wait_for_publish(2)
            except (RuntimeError, ValueError):
                log.warning("could not publish the offline status topic=%s", topic)
        self.local.disconnect()
        self.uplink.disconnect()
        self.uplink.loop_stop()
        self.local.loop_stop()
        stats = self.queue.stats()
        log.info("gateway stopped depth=%d counters=%s", stats.depth, _fmt_counters(stats.counters))
        self.queue.close()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # --- local broker (paho network thread) ------------------------------------------
    def _on_local_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("local broker refused the connection reason=%s", reason_code)
            return
        self._generation += 1
        if self.config.local.protocol == "5":
            # do not resend retained messages for a subscription the session already holds
            options = SubscribeOptions(
                qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            client.subscribe(telemetry_filter(self.config.topic_root), options=options)
        else:
            client.subscribe(telemetry_filter(self.config.topic_root), qos=1)
        self.local_connected.set()
        self.local_error = None
        self._status_due.set()
        log.info(
            "local broker connected url=%s session_present=%s filter=%s",
            self.config.local.url,
            flags.session_present,
            telemetry_filter(self.config.topic_root),
        )

    def _on_local_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.local_connected.clear()
        if not self._stop.is_set():
            log.warning("local broker disconnected reason=%s; reconnecting", reason_code)

    def _on_local_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(_Incoming(msg.topic, msg.payload, msg.mid, msg.qos, self._generation))

    # --- intake thread ------------------------------------------------------------------
    def _intake_loop(self) -> None:
        remaining: int | None = None  # after stop: only what had arrived by then
        while True:
            if self._stop.is_set() and remaining is None:
                remaining = self.inbox.qsize()
            if remaining is not None and remaining <= 0:
                return
            try:
                first = self.inbox.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            items = [first]
            limit = _INTAKE_BATCH if remaining is None else min(_INTAKE_BATCH, remaining)
            while len(items) < limit:
                try:
                    items.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            if remaining is not None:
                remaining -= len(items)
            delay = 0.5
            while True:
                try:
                    self._take(items)
                    break
                except Exception:
                    # not committed, so not acknowledged: keep the batch and try again
                    log.exception("intake could not commit messages=%d; retrying", len(items))
                    if self._stop.wait(delay):
                        return  # unacknowledged: the local broker redelivers them
                    delay = min(delay * 2, 30.0)

    def _take(self, items: list[_Incoming]) -> None:
        checked = Checked()
        for item in items:
            if item.topic == self.own_local_topic:
                continue  # our own upstream topic seen on the local broker: never loop it
            check_message(item.topic, item.payload, self.admission, checked)
        dropped = self.queue.append(checked.rows, checked.rejects, messages=checked.messages)
        generation = self._generation
        for item in items:  # committed: now the local broker may forget them
            if item.qos > 0 and item.generation == generation:
                self.local.ack(item.mid, item.qos)
        for r in checked.rejects[:3]:
            log.warning(
                "rejected source=mqtt topic=%s code=%s reason=%s", r.topic, r.code, r.message[:200]
            )
        if len(checked.rejects) > 3:
            log.warning("rejected source=mqtt more=%d", len(checked.rejects) - 3)
        self._on_line_rows(len(checked.rows), dropped)

    def _on_line_rows(self, rows: int, dropped: int) -> None:
        if rows:
            self._wake.set()
        if dropped:
            self._status_due.set()

    # --- upstream broker (paho network thread) --------------------------------------------
    def _on_uplink_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.uplink_error = f"refused: {reason_code}"
            self.uplink_failures += 1
            log.error("upstream broker refused the connection reason=%s", reason_code)
            self._status_due.set()
            return
        self.uplink_connected.set()
        self.uplink_error = None
        self._status_due.set()
        self._wake.set()
        log.info("uplink connected url=%s depth=%d", self.config.upstream.url, self.queue.depth)

    def _on_uplink_connect_fail(self, client, userdata) -> None:
        """paho could not reach the upstream broker (DNS, refused, timeout, TLS): also on the
        very first attempt, when no disconnect will ever be reported."""
        error = _current_error()
        first = self.uplink_error is None
        changed = error != self.uplink_error
        self.uplink_error = error
        self.uplink_failures += 1
        now = time.monotonic()
        if first or changed or now - self._uplink_error_logged_at > 300:
            self._uplink_error_logged_at = now
            log.error(
                "uplink unreachable url=%s error=%s attempts=%d depth=%d; readings stay queued, "
                "retrying",
                self.config.upstream.url,
                error,
                self.uplink_failures,
                self.queue.depth,
            )
        if first or changed:
            self._status_due.set()

    def _on_local_connect_fail(self, client, userdata) -> None:
        error = _current_error()
        if error != self.local_error:
            log.error(
                "local broker unreachable url=%s error=%s; retrying", self.config.local.url, error
            )
        self.local_error = error

    def _on_uplink_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.uplink_connected.is_set()
        self.uplink_connected.clear()
        self._status_due.set()
        if was and not self._stop.is_set():
            log.warning(
                "uplink down reason=%s depth=%d; readings stay queued",
                reason_code,
                self.queue.depth,
            )

    def _on_uplink_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put((mid, reason_code.is_failure, str(reason_code)))
        self._wake.set()

    # --- forwarder thread -------------------------------------------------------------
    def _forward_loop(self) -> None:
        while True:
            try:
                self._forward()
                return
            except Exception:
                # the queue keeps everything; start over (unacknowledged messages are resent)
                log.exception("forwarder failed; restarting it in 5 s")
                if self._stop.wait(5.0):
                    return

    def _forward(self) -> None:
        fwd = self.config.forward
        window = self.config.upstream.max_inflight
        inflight: dict[int, OutMessage] = {}  # mid -> message
        sent_upto = 0  # highest outbox id published by this process
        refused: list[tuple[float, int]] = []  # (retry at, outbox id)
        while True:
            self._wake.wait(self._forward_timeout())
            self._wake.clear()
            self._handle_acks(inflight, refused)
            if self._stop.is_set():
                self._drain_inflight(inflight, refused)
                return
            if not self.uplink_connected.is_set():
                continue
            room = window - len(inflight)
            batch: list[OutMessage] = []
            now = time.monotonic()
            if refused and room > 0 and refused[0][0] <= now:
                due = [oid for at, oid in refused if at <= now][:room]
                refused[:] = [(at, oid) for at, oid in refused if oid not in due]
                batch.extend(self.queue.get(due))
            if room - len(batch) > 0:
                batch.extend(self.queue.unsent(sent_upto, room - len(batch)))
                if len(batch) < room:
                    self.queue.compose(
                        max_readings=fwd.batch_max_readings,
                        max_age_s=fwd.batch_max_age_s,
                        max_bytes=fwd.message_max_bytes,
                        max_messages=room - len(batch),
                    )
                    after = max([sent_upto, *(m.id for m in batch)])
                    batch.extend(self.queue.unsent(after, room - len(batch)))
            for m in batch:
                sent_upto = max(sent_upto, m.id)
                info = self.uplink.publish(self.uplink_topic, m.payload, qos=1)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    log.error("uplink publish failed rc=%s outbox_id=%d; retrying", info.rc, m.id)
                    refused.append((time.monotonic() + 1.0, m.id))
                    refused.sort()
                    continue
                inflight[info.mid] = m
            if batch:
                self._wake.set()  # keep the window full while there is a backlog

    def _drain_inflight(self, inflight: dict[int, OutMessage], refused: list) -> None:
        deadline = time.monotonic() + self._drain_s
        while inflight and self.uplink_connected.is_set() and time.monotonic() < deadline:
            self._wake.wait(0.1)
            self._wake.clear()
            self._handle_acks(inflight, refused)
        if inflight:
            log.info("stopping with unacknowledged messages=%d; they stay queued", len(inflight))

    def _forward_timeout(self) -> float:
        if self.queue.queued and self.uplink_connected.is_set():
            return max(0.02, min(0.5, self.config.forward.batch_max_age_s / 4))
        return 1.0

    def _handle_acks(self, inflight: dict[int, OutMessage], refused: list) -> None:
        acked: list[int] = []
        while True:
            try:
                mid, failed, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            m = inflight.pop(mid, None)
            if m is None:
                continue  # a status publish
            if failed:
                log.error(
                    "uplink refused message device=%s seq=%d reason=%s; kept, retry in %.0fs",
                    m.device,
                    m.seq,
                    reason,
                    self.config.upstream.refused_retry_s,
                )
                refused.append((time.monotonic() + self.config.upstream.refused_retry_s, m.id))
                refused.sort()
            else:
                acked.append(m.id)
        if acked:
            self.queue.ack(acked)
            now = time.monotonic()
            if now - self._last_progress > 10:
                self._last_progress = now
                log.info(
                    "forwarding depth=%d inflight=%d uplink=connected",
                    self.queue.depth,
                    len(inflight),
                )

    # --- status -------------------------------------------------------------------------
    def status(self, online: bool = True) -> DeviceStatus:
        """The gateway's status as published on ``{root}/{gateway_id}/status``."""
        stats = self.queue.stats()
        c = stats.counters
        return DeviceStatus(
            device=self.config.gateway_id,
            state="online" if online else "offline",
            at=datetime.now(UTC),
            firmware=f"swc-gateway {__version__}",
            details={
                "kind": "gateway",
                "version": __version__,
                "uplink": (
                    "connected"
                    if self.uplink_connected.is_set()
                    else "unreachable"
                    if self.uplink_error
                    else "disconnected"
                ),
                "uplink_error": self.uplink_error,
                "uplink_failed_attempts": self.uplink_failures,
                "local": "connected" if self.local_connected.is_set() else "disconnected",
                "queue_depth": stats.depth,
                "oldest_unsent_age_s": round(stats.oldest_age_s(), 3),
                "dropped": c.get("dropped_readings", 0),
                "rejected": c.get("rejected", 0),
                "received_readings": c.get("received_readings", 0),
                "forwarded_readings": c.get("forwarded_readings", 0),
                "forwarded_messages": c.get("forwarded_messages", 0),
                "queue_bytes": stats.used_bytes,
                "queue_max_bytes": stats.max_bytes,
                "uptime_s": round(time.time() - self.started_at, 1),
            },
        )

    def _status_payload(self, online: bool) -> bytes:
        if online:
            return self.status(True).model_dump_json(exclude_none=True).encode()
        return (
            DeviceStatus(
                device=self.config.gateway_id,
                state="offline",
                firmware=f"swc-gateway {__version__}",
                details={"kind": "gateway", "version": __version__},
            )
            .model_dump_json(exclude_none=True)
            .encode()
        )

    def _status_loop(self) -> None:
        interval = self.config.status.interval_s
        while not self._stop.is_set():
            self._status_due.wait(interval)
            self._status_due.clear()
            if self._stop.is_set():
                return
            try:
                self.publish_status()
            except Exception:
                log.exception("status publish failed")
            self._stop.wait(0.2)  # at most five statuses a second

    def publish_status(self) -> None:
        payload = self._status_payload(online=True)
        if self.uplink_connected.is_set():
            self.uplink.publish(self.uplink_status_topic, payload, qos=1, retain=True)
        if self.config.status.local and self.local_connected.is_set():
            self.local.publish(self.local_status_topic, payload, qos=1, retain=True)


def _current_error() -> str:
    """The exception paho is handling when it calls on_connect_fail (it passes none)."""
    import sys

    exc = sys.exc_info()[1]
    if exc is None:
        return "connection failed"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, OSError) else text


def _fmt_counters(counters: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(counters.items()))
