"""The alert engine: evaluates the rules of the sites a committed batch touched.

``AlertEngine.hook`` is registered on ``Consumer.after_commit``; it only
queues the batch. The engine's own thread merges queued batches, maps their
streams to sites (devices without a site raise no alerts), and evaluates
each site in one transaction: for every (rule, subject) it locks the rule's
state row (``alert_rule_state``, FOR UPDATE, in a fixed order), reads the
window the rule needs from ``readings``, feeds the new readings to the
persisted ``AlertTracker`` and writes the resulting transitions to
``alerts`` and ``alert_events``. A second consumer, or a restarted one,
continues from the same state.

Time. Every judgement is made against the arrival time of the batch
(``CommittedBatch.arrived_at``: when its newest message was received), never
against a device clock nor against when the engine got to the batch.
Readings dated after the arrival (beyond ``future_tolerance_s``; the consumer
refuses them, and any stored anyway are ignored here) never advance a rule's
clock. A replay that sets each message's receive time gets the same
judgements as the live system did.

Late data. A reading older than ``alert_late_after_s`` on arrival is late.
Late data is history: an episode it opens is recorded as an alert that is
resolved from the start (``late = true``, ``resolve_reason = 'late_data'``)
and never announced, so an open alert is always a live, announced one and
``/sites``, ``/alerts``, the retained MQTT state and SSE agree. When live
data follows while the tracker is still in a late episode, the rule starts
afresh on the live readings: an alert opens (announced) only if the live
readings themselves show the condition. Readings that arrive for a time the
tracker has already passed are re-evaluated for the record by a fresh
tracker; episodes found there that no alert covers are stored the same way.

Stale data. When a stream has had no data for ``alert_stale_after_s``, its
open alert no longer says anything about now: it is resolved with
``resolve_reason = 'stale'`` (announced), and the rule starts afresh on the
next readings. The periodic check does this without new data (e.g. after a
restart); new readings after such a gap do it before they are evaluated.

A periodic check (every ``alert_check_interval_s``) evaluates the offline
rule and the staleness of open alerts with no new data; a batch from a device
clears its offline alert at once.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from analytics.alerts import AlertEvent, AlertTracker, threshold_levels, track_alerts

from ..settings import Settings
from ..store import alerts as store
from .context import SiteContext
from .rules import RULES, Context, Rule, RuleConfig, effective_config

log = logging.getLogger(__name__)

_MAX_CATCHUP_S = 2 * 86400.0  # at most this much data before a batch is re-read to catch up


def _ts(x: float) -> datetime:
    return datetime.fromtimestamp(x, UTC)


def subject_of(rule: Rule, device_id: str, channel: str) -> str:
    if rule.scope == "site":
        return ""
    if rule.scope == "device":
        return device_id
    return f"{device_id}/{channel}"


class AlertEngine:
    """Evaluate alert rules after each committed batch, and periodically for offline loggers."""

    def __init__(self, settings: Settings, dsn: str, threads: int = 4):
        self.settings = settings
        self.dsn = dsn
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self.batches = 0
        self.events = 0
        self._local = threading.local()  # per-thread: connection, window memo
        self._threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._conns: list[psycopg.Connection] = []
        self._site_context = SiteContext()
        # wall clock in seconds; a replay (bench/warning_skill.py) sets the data's own clock
        self.clock = time.time

    # --- the consumer's hook -------------------------------------------------------
    def hook(self, batch) -> None:
        """``Consumer.after_commit`` hook: queue the batch for the engine's thread."""
        self._queue.put(batch)

    # --- thread --------------------------------------------------------------------
    def start(self) -> AlertEngine:
        self._thread = threading.Thread(target=self._run, name="swc-alerts", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._conn is not None:
            self._conn.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for conn in self._conns:
            conn.close()

    def _run(self) -> None:
        interval = self.settings.alert_check_interval_s
        # staleness is a matter of hours: a tenth of the limit, at most every 5 min
        stale_interval = max(interval, min(self._stale_s / 10, 300.0))
        next_check = next_stale = started = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_check - time.monotonic())
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                first = None
            if self._stop.is_set():
                break
            items = [first] if first is not None else []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    items.append(item)
            try:
                if items:
                    self.process(items)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + interval
                    self.check_offline()
                if time.monotonic() >= next_stale:
                    self.check_stale(full=next_stale == started)
                    next_stale = time.monotonic() + stale_interval
            except psycopg.Error as exc:
                log.warning("alert evaluation failed, retrying: %s", str(exc).strip()[:300])
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if items:  # evaluate them again (the tracker state was rolled back)
                    for item in items:
                        self._queue.put(item)
                self._stop.wait(1.0)
            except Exception:
                log.exception("alert evaluation failed; batch skipped")

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        return self._conn

    # --- evaluation ----------------------------------------------------------------
    def process(self, batches: list) -> int:
        """Evaluate the rules for everything ``batches`` (CommittedBatch) touched; events count."""
        spans: dict[int, tuple[datetime, datetime]] = {}
        devices: set[str] = set()
        for b in batches:
            devices |= set(b.devices)
            for sid, (lo, hi) in b.streams.items():
                old = spans.get(sid)
                spans[sid] = (lo, hi) if old is None else (min(lo, old[0]), max(hi, old[1]))
        conn = self._connection()
        now = self.clock()
        # data are judged against their arrival, not against when the engine got to them
        arrival = max((b.arrived_at.timestamp() for b in batches), default=now)
        n = 0
        if spans:
            rows = conn.execute(
                "SELECT s.id, s.device_id, s.channel, d.site_id FROM streams s "
                "JOIN devices d ON d.id = s.device_id "
                "WHERE s.id = ANY(%s) AND d.site_id IS NOT NULL",
                (list(spans),),
            ).fetchall()
            by_site: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
            for sid, dev, ch, site in rows:
                by_site[site].append((sid, dev, ch))
            sites = sorted(by_site)
            if len(sites) > 1 and self._threads > 1:
                # sites are independent: evaluate them side by side, one connection each
                futures = [
                    self._executor().submit(
                        self._evaluate_site_pooled, s, by_site[s], spans, arrival
                    )
                    for s in sites
                ]
                n += sum(f.result() for f in futures)
            else:
                for site in sites:
                    n += self._evaluate_site(conn, site, by_site[site], spans, arrival)
        if devices:
            n += self.check_offline(devices=devices, now=now)
        self.batches += len(batches)
        self.events += n
        return n

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="swc-alerts-site")
        return self._pool

    def _evaluate_site_pooled(self, site_id, streams, spans, now) -> int:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._local.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            self._conns.append(conn)
        return self._evaluate_site(conn, site_id, streams, spans, now)

    def _site(self, conn: psycopg.Connection, site_id: str) -> tuple[Context, dict] | None:
        row = conn.execute("SELECT kind, params FROM sites WHERE id = %s", (site_id,)).fetchone()
        if row is None:
            return None
        return Context(row[0], row[1] or {}), store.rule_overrides(conn, site_id)

    def _config(self, rule: Rule, ctx: Context, overrides: dict) -> RuleConfig | None:
        try:
            cfg = effective_config(
                rule, ctx, overrides.get(rule.name), self.settings.alert_min_duration_s
            )
        except ValueError as exc:
            log.warning("rule %s has an invalid configuration: %s", rule.name, exc)
            return None
        return cfg if cfg.enabled else None

    def _evaluate_site(
        self,
        conn: psycopg.Connection,
        site_id: str,
        streams: list[tuple[int, str, str]],
        spans: dict[int, tuple[datetime, datetime]],
        now: float,
    ) -> int:
        n = 0
        self._local.memo = {}
        with conn.transaction():
            found = self._site(conn, site_id)
            if found is None:
                return 0
            ctx, overrides = found
            primary = dict(
                conn.execute(
                    "SELECT DISTINCT ON (s.channel) s.channel, s.id FROM streams s "
                    "JOIN devices d ON d.id = s.device_id WHERE d.site_id = %s "
                    "ORDER BY s.channel, s.id",
                    (site_id,),
                ).fetchall()
            )
            tasks = []
            for sid, dev, ch in streams:
                for rule in RULES.values():
                    if ch not in rule.channels or not rule.applies(ctx):
                        continue
                    if rule.scope == "site" and primary.get(ch) != sid:
                        continue
                    tasks.append((rule.name, subject_of(rule, dev, ch), sid))
            extras: dict | None = None
            for name, subject, sid in sorted(tasks):  # one lock order for every consumer
                rule = RULES[name]
                cfg = self._config(rule, ctx, overrides)
                if cfg is None:
                    continue
                rctx = ctx
                if rule.context:
                    if extras is None:  # other sites' data, read once per site evaluation
                        until = spans[sid][1].timestamp()
                        extras = self._site_context.extras(conn, site_id, until)
                    rctx = dataclasses.replace(ctx, extras=extras)
                n += self._evaluate_rule(conn, site_id, rule, subject, sid, cfg, rctx, spans, now)
        return n

    def _evaluate_rule(
        self,
        conn: psycopg.Connection,
        site_id: str,
        rule: Rule,
        subject: str,
        sid: int,
        cfg: RuleConfig,
        ctx: Context,
        spans: dict[int, tuple[datetime, datetime]],
        now: float,
    ) -> int:
        """Feed the rule's new readings to its tracker; ``now`` is the batch's arrival [s]."""
        saved, alert_id = store.lock_rule_state(conn, site_id, rule.name, subject)
        tracker = self._tracker(saved, cfg)
        horizon = now + self.settings.future_tolerance_s
        n = 0
        if tracker.last_time_s is not None and tracker.last_time_s > horizon:
            # its clock was set by a reading from the future (stored before they were refused)
            n += self._resolve_open(
                conn, site_id, rule.name, subject, "future_data",
                f"its data were dated up to {_ts(tracker.last_time_s).isoformat()}, after their "
                "arrival; the rule starts afresh", now,
            )  # fmt: skip
            tracker, alert_id = _restarted(tracker, None), None
        earliest = spans[sid][0].timestamp()
        last = tracker.last_time_s
        lookback = rule.lookback(cfg)
        start = earliest if last is None else max(min(last, earliest), earliest - _MAX_CATCHUP_S)
        t, v, q = self._window(conn, sid, start - lookback)
        cut = int(np.searchsorted(t, horizon, side="right"))  # never a reading from the future
        t, v, q = t[:cut], v[:cut], q[:cut]
        if t.size == 0:
            if n:
                store.save_rule_state(conn, site_id, rule.name, subject, tracker.to_dict(), None)
            return n
        first_new = earliest if last is None else float(np.nextafter(last, np.inf))
        ectx = dataclasses.replace(ctx, from_s=max(first_new, start), details={})
        raw, hold, value = rule.evaluate(t, v, q, cfg, ectx)
        new = t >= earliest if last is None else t > last
        if last is None:
            new &= t >= start
        if np.any(new):
            idx = np.flatnonzero(new)
            if last is not None and t[idx[0]] - last > self._stale_s:
                # a gap: what the tracker knew says nothing about the data after it
                n += self._resolve_open(
                    conn, site_id, rule.name, subject, "stale",
                    f"no data from {_ts(last).isoformat()} to {_ts(t[idx[0]]).isoformat()}; "
                    "the rule starts afresh", t[idx[0]],
                )  # fmt: skip
                tracker, alert_id = _restarted(tracker, last), None
            # late readings come first (times are sorted); they only make history
            split = int(np.searchsorted(t[idx], now - self._late_s, side="left"))
            for part, live in ((idx[:split], False), (idx[split:], True)):
                if part.size == 0:
                    continue
                if live and tracker.level > 0 and not _is_live(conn, alert_id):
                    # the episode so far is late data: judge the live readings on their own
                    tracker, alert_id = _restarted(tracker, tracker.last_time_s), None
                events = tracker.update(t[part], raw[part], hold[part])
                alert_id, k = self._apply(
                    conn, site_id, rule, subject, alert_id, events, t, value, now, tracker
                )
                n += k
            if alert_id is not None and ectx.details:
                store.set_forecast(conn, alert_id, ectx.details[max(ectx.details)])
        if last is not None and earliest <= last:
            n += self._record_late(conn, site_id, rule, subject, sid, cfg, ctx, earliest, last)
        store.save_rule_state(conn, site_id, rule.name, subject, tracker.to_dict(), alert_id)
        return n

    @property
    def _stale_s(self) -> float:
        return self.settings.alert_stale_after_s

    @property
    def _late_s(self) -> float:
        return self.settings.alert_late_after_s

    @staticmethod
    def _tracker(saved: dict | None, cfg: RuleConfig) -> AlertTracker:
        if saved:
            tracker = AlertTracker.from_dict(saved)
            tracker.min_duration_s = cfg.min_duration_s
            tracker.escalate_duration_s = cfg.escalate_duration_s
            return tracker
        return AlertTracker(
            min_duration_s=cfg.min_duration_s, escalate_duration_s=cfg.escalate_duration_s
        )

    def _window(self, conn: psycopg.Connection, sid: int, since_s: float):
        """Readings of ``sid`` from ``since_s`` on, read once per site evaluation."""
        memos = self._local.memo
        memo = memos.get(sid)
        if memo is None or since_s < memo[0]:
            memo = (since_s, *self._readings(conn, sid, since_s))
            memos[sid] = memo
        _, t, v, q = memo
        i = int(np.searchsorted(t, since_s, side="left"))
        return t[i:], v[i:], q[i:]

    @staticmethod
    def _readings(conn: psycopg.Connection, sid: int, since_s: float, until_s: float | None = None):
        sql = "SELECT time, value, quality FROM readings WHERE stream_id = %s AND time >= %s"
        params: list[Any] = [sid, _ts(since_s)]
        if until_s is not None:
            sql += " AND time <= %s"
            params.append(_ts(until_s))
        rows = conn.execute(sql + " ORDER BY time", params).fetchall()
        t = np.array([r[0].timestamp() for r in rows], dtype=float)
        v = np.array([r[1] for r in rows], dtype=float)
        q = np.array([r[2] for r in rows], dtype=np.int64)
        return t, v, q

    def _apply(
        self,
        conn: psycopg.Connection,
        site_id: str,
        rule: Rule,
        subject: str,
        alert_id: int | None,
        events: list[AlertEvent],
        t: np.ndarray,
        value: np.ndarray,
        now: float,
        tracker: AlertTracker,
    ) -> tuple[int | None, int]:
        """Write the tracker's transitions; announce those of live alerts.

        An episode opened by late data is recorded resolved (``late_data``)
        from the start; its later transitions are added to its history and
        never announced. Transitions of a live alert are announced, also when
        they come from late data (the live view must hear that it is over).
        """
        n = 0
        for ev in events:
            i = min(int(np.searchsorted(t, ev.time_s)), t.size - 1)
            val = float(value[i]) if np.isfinite(value[i]) else None
            late = ev.time_s < now - self._late_s
            when = _ts(ev.time_s)
            if ev.kind == "open":
                n += self._resolve_open(
                    conn, site_id, rule.name, subject, "superseded",
                    "a new episode of the same rule opened", ev.time_s,
                )  # fmt: skip
                if late:
                    alert_id = conn.execute(
                        "INSERT INTO alerts (site_id, rule, subject, state, level, peak_level, "
                        "opened_at, last_data_at, late, value, resolved_at, resolve_reason, "
                        "resolve_note) VALUES (%s, %s, %s, 'resolved', 0, %s, %s, %s, true, %s, "
                        "now(), 'late_data', %s) RETURNING id",
                        (site_id, rule.name, subject, ev.level, when, when, val, _LATE_NOTE),
                    ).fetchone()[0]
                else:
                    alert_id = conn.execute(
                        "INSERT INTO alerts (site_id, rule, subject, level, peak_level, "
                        "opened_at, last_data_at, value) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                        "RETURNING id",
                        (site_id, rule.name, subject, ev.level, ev.level, when, when, val),
                    ).fetchone()[0]
                alert_late = late
            else:
                if alert_id is None:
                    continue
                resolve = ev.kind == "resolve"
                # a late record keeps state and level (resolved, 0) and gains history
                row = conn.execute(
                    "UPDATE alerts SET level = CASE WHEN late THEN 0 ELSE %s END, "
                    "peak_level = greatest(peak_level, %s), last_data_at = %s, value = %s, "
                    "updated_at = now(), state = CASE WHEN late THEN state WHEN %s THEN "
                    "'resolved' WHEN %s THEN 'open' ELSE state END, "
                    "resolved_at = CASE WHEN %s AND NOT late THEN now() ELSE resolved_at END, "
                    "resolve_reason = CASE WHEN %s AND NOT late THEN 'condition_cleared' "
                    "ELSE resolve_reason END "
                    "WHERE id = %s AND (late OR state <> 'resolved') RETURNING late",
                    (
                        ev.level,
                        ev.level,
                        when,
                        val,
                        resolve,
                        ev.kind == "escalate",
                        resolve,
                        resolve,
                        alert_id,
                    ),
                ).fetchone()
                if row is None:  # resolved by hand meanwhile
                    alert_id = None
                    continue
                alert_late = row[0]
            event_id = store.insert_event(
                conn,
                alert_id,
                ev.kind,
                ev.level,
                ev.previous_level,
                data_time=when,
                late=late,
                value=val,
            )
            if not alert_late:
                store.announce(conn, event_id)
            n += 1
            log.info(
                "alert %s site=%s rule=%s subject=%s level=%d late=%s",
                ev.kind,
                site_id,
                rule.name,
                subject,
                ev.level,
                late,
            )
            if ev.kind == "resolve":
                alert_id = None
        return alert_id, n

    @staticmethod
    def _resolve_open(
        conn: psycopg.Connection,
        site_id: str,
        rule: str,
        subject: str,
        reason: str,
        note: str,
        data_time: float,
    ) -> int:
        """Resolve the open alert of (site, rule, subject), if any, and announce it."""
        row = conn.execute(
            "UPDATE alerts a SET state = 'resolved', level = 0, resolved_at = now(), "
            "resolve_reason = %s, resolve_note = %s, updated_at = now() "
            "FROM (SELECT id, level FROM alerts WHERE site_id = %s AND rule = %s "
            "AND subject = %s AND state <> 'resolved' FOR UPDATE) old "
            "WHERE a.id = old.id RETURNING a.id, old.level, a.late",
            (reason, note, site_id, rule, subject),
        ).fetchone()
        if row is None:
            return 0
        alert_id, level, late = row
        event_id = store.insert_event(
            conn, alert_id, "resolve", 0, level, data_time=_ts(data_time), late=late, note=note
        )
        if not late:  # an open late alert exists only in a database from before 0035
            store.announce(conn, event_id)
        log.info(
            "alert resolve site=%s rule=%s subject=%s reason=%s: %s",
            site_id,
            rule,
            subject,
            reason,
            note,
        )
        return 1

    def _record_late(
        self,
        conn: psycopg.Connection,
        site_id: str,
        rule: Rule,
        subject: str,
        sid: int,
        cfg: RuleConfig,
        ctx: Context,
        earliest: float,
        last: float,
    ) -> int:
        """Re-evaluate the past that late readings changed, for the record only."""
        context = rule.lookback(cfg) + cfg.min_duration_s + cfg.escalate_duration_s
        t, v, q = self._readings(conn, sid, earliest - context, last)
        if t.size == 0:
            return 0
        raw, hold, value = rule.evaluate(t, v, q, cfg, ctx)
        _, events = track_alerts(
            t,
            raw,
            hold,
            min_duration_s=cfg.min_duration_s,
            escalate_duration_s=cfg.escalate_duration_s,
        )
        episodes: dict[float, list[AlertEvent]] = defaultdict(list)
        for ev in events:
            episodes[ev.episode_start_s].append(ev)
        n = 0
        for start, evs in episodes.items():
            end = evs[-1].time_s if evs[-1].kind == "resolve" else last
            if end < earliest:
                continue
            covered = conn.execute(
                "SELECT 1 FROM alerts WHERE site_id = %s AND rule = %s AND subject = %s "
                "AND opened_at <= %s AND (state <> 'resolved' OR last_data_at >= %s) LIMIT 1",
                (site_id, rule.name, subject, _ts(end), _ts(start)),
            ).fetchone()
            if covered:
                continue
            peak = max(ev.level for ev in evs)
            first = evs[0]
            alert_id = conn.execute(
                "INSERT INTO alerts (site_id, rule, subject, state, level, peak_level, opened_at, "
                "last_data_at, late, resolved_at, resolve_reason, resolve_note) "
                "VALUES (%s, %s, %s, 'resolved', 0, %s, %s, %s, true, now(), 'late_data', "
                "'episode found when late data was re-evaluated; never live') RETURNING id",
                (site_id, rule.name, subject, peak, _ts(start), _ts(end)),
            ).fetchone()[0]
            for ev in evs:
                i = min(int(np.searchsorted(t, ev.time_s)), t.size - 1)
                store.insert_event(
                    conn,
                    alert_id,
                    ev.kind,
                    ev.level,
                    ev.previous_level,
                    data_time=_ts(ev.time_s),
                    late=True,
                    value=float(value[i]) if np.isfinite(value[i]) else None,
                )
            if evs[-1].kind != "resolve":
                store.insert_event(
                    conn,
                    alert_id,
                    "resolve",
                    0,
                    evs[-1].level,
                    data_time=_ts(end),
                    late=True,
                    note="closed for the record: the live state continues from newer data",
                )
            n += 1
            log.info(
                "late data re-evaluated site=%s rule=%s subject=%s episode_start=%s peak=%d",
                site_id,
                rule.name,
                subject,
                _ts(start).isoformat(),
                peak,
                extra={"first_kind": first.kind},
            )
        return n

    # --- offline ---------------------------------------------------------------------
    def check_offline(self, devices: set[str] | None = None, now: float | None = None) -> int:
        """Evaluate the offline rule for loggers with a site (all, or ``devices``)."""
        conn = self._connection()
        now = self.clock() if now is None else now
        sql = (
            "SELECT d.site_id, d.id, extract(epoch FROM d.last_seen) FROM devices d "
            "WHERE d.kind = 'logger' AND d.site_id IS NOT NULL AND d.last_seen IS NOT NULL"
        )
        params: tuple = ()
        if devices is not None:
            sql += " AND d.id = ANY(%s)"
            params = (list(devices),)
        by_site: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for site, dev, seen in conn.execute(sql, params).fetchall():
            by_site[site].append((dev, float(seen)))
        rule = RULES["offline"]
        n = 0
        for site_id in sorted(by_site):
            with conn.transaction():
                found = self._site(conn, site_id)
                if found is None:
                    continue
                ctx, overrides = found
                cfg = self._config(rule, ctx, overrides)
                if cfg is None or cfg.thresholds is None:
                    continue
                interval = cfg.window_s or 600.0
                thr = cfg.thresholds.as_list()
                for dev, seen in sorted(by_site[site_id]):
                    saved, alert_id = store.lock_rule_state(conn, site_id, rule.name, dev)
                    tracker = self._tracker(saved, cfg)
                    if tracker.last_time_s is not None and now <= tracker.last_time_s:
                        continue
                    silence = np.array([max(0.0, now - seen) / interval])
                    raw = threshold_levels(silence, thr, "above")
                    band = [None if x is None else max(x - cfg.hysteresis, 0.0) for x in thr]
                    hold = threshold_levels(silence, band, "above")
                    events = tracker.update(np.array([now]), raw, hold)
                    alert_id, k = self._apply(
                        conn, site_id, rule, dev, alert_id, events, np.array([now]), silence,
                        now, tracker,
                    )  # fmt: skip
                    n += k
                    store.save_rule_state(
                        conn, site_id, rule.name, dev, tracker.to_dict(), alert_id
                    )
        return n

    # --- stale ---------------------------------------------------------------------
    def check_stale(self, now: float | None = None, full: bool = True) -> int:
        """Resolve as ``stale`` the episodes whose stream has had no data for too long.

        With ``full`` (the engine's first check after a start) it also
        restarts every rule whose clock a reading from the future had set
        (readings stored before they were refused); later checks look only at
        open episodes (``alert_id`` set, a partial index). Offline alerts are
        not concerned: their rule is evaluated on the wall clock.
        """
        conn = self._connection()
        now = self.clock() if now is None else now
        old, future = now - self._stale_s, now + self.settings.future_tolerance_s
        stale = (
            "rule <> 'offline' AND (tracker->>'level')::int > 0 "
            "AND (tracker->>'last_time_s')::float8 < %s"
        )
        if full:
            sql = f"({stale}) OR (tracker->>'last_time_s')::float8 > %s"
            params: tuple = (old, future)
        else:
            sql, params = f"alert_id IS NOT NULL AND {stale}", (old,)
        found = conn.execute(
            f"SELECT site_id, rule, subject FROM alert_rule_state WHERE {sql} ORDER BY 1, 2, 3",
            params,
        ).fetchall()
        n = 0
        for site_id, rule, subject in found:
            with conn.transaction():
                saved, _ = store.lock_rule_state(conn, site_id, rule, subject)
                if not saved or saved.get("last_time_s") is None:
                    continue
                tracker = AlertTracker.from_dict(saved)
                last = float(tracker.last_time_s)
                if last > future:
                    reason, clock, when = "future_data", None, now
                    note = (
                        f"its data were dated up to {_ts(last).isoformat()}, after their arrival; "
                        "the rule starts afresh"
                    )
                elif tracker.level > 0 and last < old:
                    reason, clock, when = "stale", last, last
                    note = (
                        f"no data since {_ts(last).isoformat()} "
                        f"(more than {self._stale_s:g} s); the condition is no longer known"
                    )
                else:
                    continue  # changed meanwhile
                n += self._resolve_open(conn, site_id, rule, subject, reason, note, when)
                store.save_rule_state(
                    conn, site_id, rule, subject, _restarted(tracker, clock).to_dict(), None
                )
        return n


_LATE_NOTE = "raised from late data: recorded for the history, never announced"


def _restarted(tracker: AlertTracker, clock: float | None) -> AlertTracker:
    """A tracker at level 0 with the same durations, its clock at ``clock``."""
    return AlertTracker(
        min_duration_s=tracker.min_duration_s,
        escalate_duration_s=tracker.escalate_duration_s,
        last_time_s=clock,
    )


def _is_live(conn: psycopg.Connection, alert_id: int | None) -> bool:
    """Whether ``alert_id`` is an open (announced) alert."""
    if alert_id is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM alerts WHERE id = %s AND state <> 'resolved' AND NOT late", (alert_id,)
    ).fetchone()
    return row is not None


def reset_tracker(saved: dict | None) -> dict:
    """A tracker state back at level 0 that keeps its clock (after a manual resolve)."""
    if not saved:
        return {}
    tracker = AlertTracker.from_dict(saved)
    return _restarted(tracker, tracker.last_time_s).to_dict()
