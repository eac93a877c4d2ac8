"""The ingest consumer: MQTT telemetry in, batched idempotent writes out, PUBACK after COMMIT.

Threads: paho's network thread only puts received messages on ``inbox``; the
writer thread (the caller of ``run``) decodes them into a batch bounded by
size and age, writes it in one transaction, and only then acknowledges its
messages. A database outage therefore stops acknowledgements: the broker
keeps the backlog (and stops sending once ``receive_maximum`` messages are
unacknowledged) while the writer retries with backoff.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from protocol.messages import DeviceStatus, ProtocolError, decode_telemetry, refuse_future
from protocol.topics import (
    Topic,
    TopicError,
    TopicKind,
    shared_telemetry_filter,
    status_filter,
    telemetry_filter,
)

from .metrics import IngestMetrics
from .qc import merge_spans, provisional_flags
from .settings import Settings
from .store.readings import DeadLetterRow, ReadingRow, ReadingWriter, purge_dead_letters
from .store.registry import Rejected, StreamResolver
from .subscription import SubscriptionPlan, plan_for

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 2000
_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 10.0
_STATUS_UNKNOWN_DEVICE = (
    "status for a device that is not registered: a status never registers a device "
    "(its first telemetry does)"
)
_REPLACE_NOT_ALLOWED = (
    '"replace": true is accepted only from the device itself (topic client = device), '
    "not for readings forwarded by a gateway"
)
_PURGE_EVERY_S = 3600.0
REJECTION_SUMMARY_S = 60.0  # at most one summary line of rejected messages per this long


@dataclass(slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime
    arrived: float  # time.monotonic() at receipt
    generation: int  # MQTT connection it came on; acks go only to the same connection
    retain: bool = False  # a retained message: deleted at the broker once stored


@dataclass
class _Batch:
    messages: list[Incoming] = field(default_factory=list)
    decoded: list[tuple[Incoming, Topic, object]] = field(default_factory=list)
    dead: list[DeadLetterRow] = field(default_factory=list)
    statuses: list[tuple[Incoming, Topic, DeviceStatus]] = field(default_factory=list)
    readings: int = 0


@dataclass(frozen=True)
class CommittedBatch:
    """What a committed batch touched, for work that follows ingest (alert rules, QC)."""

    streams: dict[int, tuple[datetime, datetime]]  # stream id -> (earliest, latest) reading time
    devices: frozenset[str]
    readings: int
    committed_at: datetime
    # when its newest message arrived: late and future data are judged against it
    # (None: the commit time)
    received_at: datetime | None = None

    @property
    def arrived_at(self) -> datetime:
        return self.received_at or self.committed_at


def _dead_letter(item: Incoming, code: str, message: str) -> DeadLetterRow:
    return (item.topic, item.payload, code, message[:_MAX_ERROR_CHARS], item.received_at)


class DrainAbandoned(RuntimeError):
    """Shutdown gave up waiting for the database; unacknowledged messages stay at the broker."""


class Consumer:
    """One ingest consumer. ``run()`` blocks until ``stop()``; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        dsn: str,
        metrics: IngestMetrics | None = None,
        plan: SubscriptionPlan | None = None,
    ):
        """``plan``: the subscription to hold; None chooses it in ``run()`` for one consumer
        (``settings.workers`` of them), reading the broker's version only if it may share."""
        self.settings = settings
        self.plan = plan
        self.dsn = dsn
        self.metrics = metrics or IngestMetrics()
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.resolver = StreamResolver(settings.auto_register)
        self.writer = ReadingWriter(settings.dead_letter_max_bytes, settings.topic_root)
        self._next_purge = 0.0  # monotonic time of the next dead-letter retention pass
        self.connected = threading.Event()
        # SUBACK (and UNSUBACK of a stale filter) received: the session holds exactly the
        # planned subscription, so messages published from now on will be delivered
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._generation = 0
        self._awaiting: set[int] = set()  # (UN)SUBSCRIBE packet ids not yet acknowledged
        self._conn: psycopg.Connection | None = None
        self._client = self._make_client()
        # Called in the writer thread after each committed batch has been
        # acknowledged. Keep them quick (hand work to your own thread); an
        # exception is logged and does not affect ingest.
        self.after_commit: list[Callable[[CommittedBatch], None]] = []
        self.max_batch_messages = max(1, min(settings.receive_maximum, 1000) // 2)
        self._rejected: Counter[str] = Counter()  # since the last summary line
        self._summary_since = time.monotonic()
        self._next_summary = self._summary_since + REJECTION_SUMMARY_S

    # --- MQTT side (network thread) ------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        v5 = s.mqtt_protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        target = s.mqtt
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def _retired_filters(self) -> list[str]:
        """Every filter a session of this consumer may hold, plain or shared."""
        root, group = self.settings.topic_root, self.settings.shared_group
        filters = [telemetry_filter(root), status_filter(root)]
        if group:
            filters.append(shared_telemetry_filter(root, group))
        return filters

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt connect refused reason=%s", reason_code)
            return
        self._generation += 1
        plan = self.plan
        log.info(
            "mqtt connected client_id=%s broker=%s session_present=%s subscription=%s",
            self.settings.client_id,
            self.settings.mqtt.url(),
            flags.session_present,
            "retire" if plan is None else f"{plan.mode}:{plan.filter}",
        )
        awaiting = set()
        if plan is None:  # retiring: no new messages; what the session holds still comes
            awaiting.add(client.unsubscribe(self._retired_filters())[1])
        else:
            if plan.warning:
                log.warning("UNSAFE SUBSCRIPTION: %s", plan.warning)
            awaiting.add(self._subscribe(client, plan))
            # every consumer hears every device status (a plain subscription: storing a
            # status twice is harmless); retained ones arrive flagged as replays
            awaiting.add(client.subscribe(status_filter(self.settings.topic_root), qos=1)[1])
            if plan.stale != plan.filter and flags.session_present:
                # a session kept from the other mode would get every message twice
                awaiting.add(client.unsubscribe(plan.stale)[1])
        self._awaiting = awaiting
        self.connected.set()

    def _subscribe(self, client: mqtt.Client, plan: SubscriptionPlan) -> int:
        """Subscribe with QoS 1; on MQTT 5 also with the retain flag as published (so retained
        telemetry is seen and deleted) and, where the protocol allows it (not on a shared
        subscription), none of our own publishes back (the empties that delete it)."""
        if self.settings.mqtt_protocol != "5":  # paho ignores options on 3.1.1
            return client.subscribe(plan.filter, qos=1)[1]
        options = SubscribeOptions(qos=1, noLocal=plan.mode == "plain", retainAsPublished=True)
        return client.subscribe(plan.filter, options=options)[1]

    def _acknowledged(self, mid: int) -> None:
        self._awaiting.discard(mid)
        if not self._awaiting:
            self.subscribed.set()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if self.plan is None:
            log.info(
                "left the subscription client_id=%s; draining its session",
                self.settings.client_id,
            )
        self._acknowledged(mid)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error(
                "mqtt subscription to %s refused reason=%s: the broker's ACL must let this "
                "user read it (swc broker acl --service-user)",
                self.plan.filter if self.plan else "?",
                failed[0],
            )
            return
        self._acknowledged(mid)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("mqtt disconnected reason=%s; reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(
            Incoming(
                msg.topic,
                msg.payload,
                msg.mid,
                msg.qos,
                datetime.now(UTC),
                time.monotonic(),
                self._generation,
                bool(msg.retain),
            )
        )

    # --- lifecycle -----------------------------------------------------------------
    def start_mqtt(self) -> None:
        s = self.settings
        props = None
        if s.mqtt_protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.session_expiry_s
            props.ReceiveMaximum = s.receive_maximum
        target = s.mqtt
        kwargs = {"clean_start": False, "properties": props} if props else {}
        self._client.connect_async(target.host, target.port, keepalive=30, **kwargs)
        self._client.loop_start()

    def stop(self) -> None:
        """Ask ``run`` to drain what it has received, commit, acknowledge and return."""
        self._stop.set()

    def run(self) -> None:
        """Consume until ``stop()``; then drain and disconnect.

        Raises ``SubscriptionRefused`` before connecting when the subscription this
        consumer would need can lose messages on a broker restart."""
        if self.plan is None and not self.settings.retire:
            self.plan = plan_for(self.settings, self.settings.workers)
        if self.plan is not None:
            self.plan.log()
        self.start_mqtt()
        log.info(
            "ingest consumer started client_id=%s batch_max_readings=%d batch_max_latency_ms=%d",
            self.settings.client_id,
            self.settings.batch_max_readings,
            self.settings.batch_max_latency_ms,
        )
        retire = self.settings.retire
        if retire and self.settings.mqtt_protocol != "5":
            raise ValueError("retiring a session needs MQTT 5")
        quiet_since = None
        try:
            while not self._stop.is_set():
                self._purge_when_due()
                self._summarize_rejections()
                batch = self._collect()
                if batch.messages:
                    self._commit(batch)
                    quiet_since = None
                elif retire and self.subscribed.is_set():
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > self.settings.retire_idle_s:
                        break
            self._drain()
            self._summarize_rejections(force=True)
        finally:
            if retire:
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = 0  # the broker deletes the session
                self._client.disconnect(properties=props)
                log.info("session retired client_id=%s", self.settings.client_id)
            else:
                self._client.disconnect()
            self._client.loop_stop()
            if self._conn is not None:
                self._conn.close()
            log.info("ingest consumer stopped counters=%s", self.metrics.snapshot())

    def _purge_when_due(self) -> None:
        """Delete dead letters past their retention, once an hour (and at start)."""
        days = self.settings.dead_letter_retain_days
        if not days or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + _PURGE_EVERY_S
        try:
            deleted = purge_dead_letters(self._connection(), days)
        except psycopg.Error as exc:
            log.warning("dead-letter retention failed (next try in an hour): %s", exc)
            return
        if deleted:
            log.info("dead letters older than %d days deleted count=%d", days, deleted)

    def _note_rejections(self, dead: list[DeadLetterRow]) -> None:
        for row in dead:
            self._rejected[row[2]] += 1
        self._summarize_rejections()

    def _summarize_rejections(self, force: bool = False) -> None:
        """One log line per REJECTION_SUMMARY_S at most: messages rejected, by reason."""
        now = time.monotonic()
        if not self._rejected or (now < self._next_summary and not force):
            return
        counts = " ".join(f"{code}={n}" for code, n in sorted(self._rejected.items()))
        log.warning(
            "messages rejected total=%d window_s=%.0f %s; see: swc dead-letters",
            sum(self._rejected.values()),
            now - self._summary_since,
            counts,
        )
        self._rejected.clear()
        self._summary_since = now
        self._next_summary = now + REJECTION_SUMMARY_S

    def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        pending = self.inbox.qsize()
        log.info("draining messages=%d", pending)
        while pending > 0:
            batch = self._collect(limit=pending, wait=False)
            if not batch.messages:
                break
            pending -= len(batch.messages)
            self._commit(batch, deadline=deadline)

    # --- writer thread -------------------------------------------------------------
    def _collect(self, limit: int | None = None, wait: bool = True) -> _Batch:
        """Take messages until the batch is full, old enough, or a stop is requested."""
        s = self.settings
        batch = _Batch()
        try:
            first = self.inbox.get(timeout=0.1) if wait else self.inbox.get_nowait()
        except queue.Empty:
            return batch
        self._add(batch, first)
        deadline = first.arrived + s.batch_max_latency_ms / 1000
        max_messages = min(limit or self.max_batch_messages, self.max_batch_messages)
        while batch.readings < s.batch_max_readings and len(batch.messages) < max_messages:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set() or not wait:
                    break
                try:
                    item = self.inbox.get(timeout=min(remaining, 0.05))
                except queue.Empty:
                    continue
            self._add(batch, item)
        self.metrics.messages_received.inc(len(batch.messages))
        if batch.messages:
            self.metrics.last_message.set_to_current_time()
        self.metrics.inbox.set(self.inbox.qsize())
        return batch

    def _add(self, batch: _Batch, item: Incoming) -> None:
        batch.messages.append(item)
        try:
            topic = Topic.parse(item.topic, self.settings.topic_root)
            if topic.kind == TopicKind.STATUS:
                self._add_status(batch, item, topic)
                return
            telemetry = decode_telemetry(item.payload)
        except (ProtocolError, TopicError) as exc:
            code = getattr(exc, "code", "bad_topic")
            batch.dead.append(_dead_letter(item, code, getattr(exc, "message", str(exc))))
            return
        # a reading from the future (a wrong device clock) is refused, the rest kept
        telemetry, refused = refuse_future(
            telemetry, item.received_at, self.settings.future_tolerance_s
        )
        if refused is not None:
            batch.dead.append(_dead_letter(item, refused.code, refused.message))
        if telemetry is None:
            return
        batch.decoded.append((item, topic, telemetry))
        batch.readings += len(telemetry.rows)

    def _add_status(self, batch: _Batch, item: Incoming, topic: Topic) -> None:
        if not item.payload:  # a retained status deleted at the broker
            return
        try:
            status = DeviceStatus.model_validate_json(item.payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
            text = f"status message is not valid: {where}: {first.get('msg', 'invalid')}"
            batch.dead.append(_dead_letter(item, "bad_status", text))
            return
        batch.statuses.append((item, topic, status))

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        return self._conn

    def _commit(self, batch: _Batch, deadline: float | None = None) -> None:
        delay = _BACKOFF_START_S
        while True:
            try:
                committed = self._write(batch)
                break
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.metrics.db_errors.inc()
                if self._conn is not None:
                    self._conn.close()
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise DrainAbandoned(
                        f"database unavailable while draining; {len(batch.messages)} messages "
                        "left unacknowledged at the broker"
                    ) from exc
                log.warning(
                    "database write failed; retrying in %.1fs messages=%d error=%s",
                    delay,
                    len(batch.messages),
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                )
                time.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
        self._acknowledge(batch)
        self._clear_retained(batch)
        if committed is not None:
            for hook in self.after_commit:
                try:
                    hook(committed)
                except Exception:
                    log.exception("after-commit hook %r failed", hook)

    def _write(self, batch: _Batch) -> CommittedBatch | None:
        """Write and commit one batch; return what it touched when hooks want to know."""
        conn = self._connection()
        dead = list(batch.dead)
        rows: list[ReadingRow] = []
        devices_seen: dict[str, tuple[datetime, int]] = {}
        accepted = []
        self.resolver.refresh(
            conn,
            {tel.device for _, _, tel in batch.decoded}
            | {st.device for _, _, st in batch.statuses},
        )
        for item, topic, tel in batch.decoded:
            try:
                self.resolver.check_owner(conn, topic.client_id, tel.device)
            except Rejected as exc:
                dead.append(_dead_letter(item, exc.code, exc.message))
                continue
            if tel.replace and topic.client_id != tel.device:
                dead.append(_dead_letter(item, "replace_not_allowed", _REPLACE_NOT_ALLOWED))
                continue
            accepted.append((item, tel))
        statuses = []
        for item, topic, status in batch.statuses:
            if not self.resolver.is_registered(conn, status.device):
                # a status never registers a device: its first telemetry does, with its
                # owner (a gateway's own status would otherwise make it a logger). Its own
                # status before that is not kept; one sent for another, unknown device is
                # refused
                if status.device != topic.client_id:
                    dead.append(_dead_letter(item, "unknown_device", _STATUS_UNKNOWN_DEVICE))
                continue
            try:
                self.resolver.check_owner(conn, topic.client_id, status.device)
            except Rejected as exc:
                dead.append(_dead_letter(item, exc.code, exc.message))
                continue
            statuses.append((status, item.received_at, item.retain))
        channels = [{ch for _, ch, _, _ in tel.rows} for _, tel in accepted]
        pairs = {
            (tel.device, ch) for (_, tel), chs in zip(accepted, channels, strict=True) for ch in chs
        }
        ids = self.resolver.stream_ids(conn, pairs) if pairs else {}
        # A message never repeats (channel, time) (the protocol refuses it), so
        # only a device with several messages in this batch can repeat a reading.
        messages_per_device = Counter(tel.device for _, tel in accepted)
        seen_keys: set[tuple[int, datetime]] = set()
        within_batch_dupes = 0
        channel_of_row: list[str] = []
        replacing: set[int] = set()  # indexes of rows from messages marked "replace"
        for (item, tel), chs in zip(accepted, channels, strict=True):
            sid_of = {ch: ids[(tel.device, ch)] for ch in chs}
            received = item.received_at
            n_before = len(rows)
            if messages_per_device[tel.device] == 1:
                rows.extend([(t, sid_of[ch], v, q, received) for t, ch, v, q in tel.rows])
                channel_of_row.extend([ch for _, ch, _, _ in tel.rows])
            else:
                for t, ch, v, q in tel.rows:
                    key = (sid_of[ch], t)
                    if key in seen_keys:
                        within_batch_dupes += 1
                        continue
                    seen_keys.add(key)
                    rows.append((t, key[0], v, q, received))
                    channel_of_row.append(ch)
            if tel.replace:
                replacing.update(range(n_before, len(rows)))
            last = devices_seen.get(tel.device)
            if last is None or tel.seq > last[1]:
                devices_seen[tel.device] = (received, tel.seq)
        if rows:  # QC flag when written: the logger's flag and the gross-range test
            n = len(rows)
            flags = provisional_flags(
                np.fromiter((r[2] for r in rows), np.float64, n),
                channel_of_row,
                np.fromiter((r[3] or 2 for r in rows), np.uint8, n),
            ).tolist()
            rows = [
                (t, sid, v, f, rec, q) for (t, sid, v, q, rec), f in zip(rows, flags, strict=True)
            ]
        t0 = time.monotonic()
        try:
            result = self.writer.write(
                conn,
                [r for i, r in enumerate(rows) if i not in replacing] if replacing else rows,
                dead,
                [(d, seen, seq) for d, (seen, seq) in devices_seen.items()],
                replace=[rows[i] for i in sorted(replacing)],
                statuses=statuses,
            )
        except psycopg.DataError as exc:  # a value the database refuses: isolate the message
            log.error("batch refused by the database, writing message by message: %s", exc)
            return self._write_one_by_one(conn, batch)
        committed = None
        if self.after_commit and rows:
            spans: dict[int, tuple[datetime, datetime]] = {}
            for t, sid, *_ in rows:
                span = spans.get(sid)
                if span is None:
                    spans[sid] = (t, t)
                elif t < span[0] or t > span[1]:
                    spans[sid] = (min(t, span[0]), max(t, span[1]))
            received = max(item.received_at for item, _ in accepted)
            committed = CommittedBatch(
                spans, frozenset(devices_seen), len(rows), datetime.now(UTC), received
            )
        m = self.metrics
        m.readings_received.inc(len(rows) + within_batch_dupes)
        m.readings_written.inc(result.written)
        m.readings_duplicate.inc(result.duplicates + within_batch_dupes)
        for _, _, code, _, _ in dead:
            m.dead_letters.labels(code=code).inc()
        self._note_rejections(dead)
        m.batch_readings.observe(len(rows))
        m.batch_seconds.observe(time.monotonic() - batch.messages[0].arrived)
        m.lag_seconds.set(max(0.0, time.monotonic() - batch.messages[-1].arrived))
        m.last_commit.set_to_current_time()
        log.debug(
            "batch committed messages=%d written=%d duplicates=%d dead=%d write_ms=%.1f",
            len(batch.messages),
            result.written,
            result.duplicates + within_batch_dupes,
            len(dead),
            (time.monotonic() - t0) * 1000,
        )
        return committed

    def _write_one_by_one(self, conn: psycopg.Connection, batch: _Batch) -> CommittedBatch | None:
        spans: dict[int, tuple[datetime, datetime]] = {}
        devices: set[str] = set()
        readings = 0
        received: list[datetime] = []
        for item in batch.messages:
            single = _Batch()
            self._add(single, item)
            try:
                committed = self._write(single)
            except psycopg.DataError as exc:
                self.writer.write(conn, [], [_dead_letter(item, "store_error", str(exc))])
                self.metrics.dead_letters.labels(code="store_error").inc()
                self._rejected["store_error"] += 1
                continue
            if committed is not None:  # the hooks hear of every message that was stored
                merge_spans(spans, committed.streams)
                devices |= committed.devices
                readings += committed.readings
                received.append(committed.arrived_at)
        if not spans:
            return None
        return CommittedBatch(spans, frozenset(devices), readings, datetime.now(UTC), max(received))

    def _clear_retained(self, batch: _Batch) -> None:
        """Telemetry is not retained by the protocol: once a retained message is stored (or
        dead-lettered), delete it at the broker with an empty retained message."""
        status_end = "/" + TopicKind.STATUS.value
        topics = {
            item.topic
            for item in batch.messages
            if item.retain and item.payload and not item.topic.endswith(status_end)
        }
        for topic in sorted(topics):
            self._client.publish(topic, b"", qos=1, retain=True)
        if topics:
            self.metrics.retained_cleared.inc(len(topics))
            log.info("retained telemetry deleted at the broker topics=%d", len(topics))

    def _acknowledge(self, batch: _Batch) -> None:
        generation = self._generation
        for item in batch.messages:
            if item.qos > 0 and item.generation == generation:
                self._client.ack(item.mid, item.qos)
