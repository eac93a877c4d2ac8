"""The alert engine: evaluates the rules of the sites a committed batch touched.

``AlertEngine.hook`` is registered on ``Consumer.after_commit``; it only
queues the batch (``swc ingest`` runs the engine in a process of its own,
``.process.EngineProcess``, whose hook does the same across processes).
The engine's own thread merges queued batches, maps their
streams to sites (devices without a site raise no alerts), and evaluates
each site in one transaction: for every (rule, subject) it locks the rule's
state row (``alert_rule_state``, FOR UPDATE, in a fixed order), reads the
window the rule needs from ``readings``, feeds the new readings to the
persisted ``AlertTracker`` and writes the resulting transitions to
``alerts`` and ``alert_events``. A second consumer, or a restarted one,
continues from the same state.

The engine is not the only writer of that state (each consumer of ``swc ingest
--workers N`` runs an engine, the API's manual resolve resets a tracker, ``swc
alerts check`` runs the offline rule), so the database stays the one copy that
counts. What the engine keeps in memory is a shortcut: the rows it last saw
settled (level 0, no alert), with their version (``xmin``). A rule settled from
such a row (``.quiet``) is not locked; its new state is written only if the row
is still at that version, and a row someone else wrote meanwhile is locked and
the rule evaluated again on what they left. A restarted engine starts with an
empty memory and locks what it uses, as before.

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

A periodic check (every ``alert_check_interval_s``, on a thread and connection of
its own so passes never wait for it) evaluates the offline rule and the
staleness of open alerts with no new data; a batch from a device clears its
offline alert at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from analytics.alerts import AlertEvent, AlertTracker, threshold_levels, track_alerts

from ..settings import Settings
from ..store import alert_bulk as bulk
from ..store import alerts as store
from . import quiet
from .context import SiteContext
from .rules import RULES, Context, Rule, RuleConfig, effective_config

log = logging.getLogger(__name__)

_MAX_CATCHUP_S = 2 * 86400.0  # at most this much data before a batch is re-read to catch up
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FRESH = AlertTracker().to_dict()
_TRACKER_FIELDS = frozenset(_FRESH)
_MIN_CHUNK = 20  # sites: a pass is split over the threads in chunks of at least this many
_MAX_CHUNK = 1000  # sites in one transaction of a pass
_MAX_SETTLED = 2_000_000  # rule states remembered as settled (~0.5 KB each); then forgotten


def connect(dsn: str) -> psycopg.Connection:
    """A connection for the engine's statements: autocommit, and no JIT compilation.

    The passes' statements are many short index scans whose estimated cost (a site list
    of a thousand, streams read before they were analyzed) passes ``jit_above_cost``:
    PostgreSQL then compiled each execution, ~100 ms for a 5 ms read of a chunk's
    primary streams, which was the largest part of a pass at 58,000 dams."""
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    conn.execute("SET jit = off")
    return conn


def _settled(tracker: dict | None, alert_id: int | None) -> bool:
    """A state .quiet may settle: level 0, no alert, a complete tracker."""
    return (
        alert_id is None
        and tracker is not None
        and tracker.get("level") == 0
        and tracker.keys() == _TRACKER_FIELDS
    )


def _ts(x: float) -> datetime:
    return datetime.fromtimestamp(x, UTC)


@dataclass
class _Pass:
    """What a pass over a chunk of sites read up front, and the rule states it will write."""

    sites: dict[str, tuple[str, dict]]  # site -> (kind, params)
    overrides: dict[str, dict[str, dict]]  # site -> rule -> override
    # the rows the pass uses: locked (``locked``), or settled ones from the engine's memory
    states: dict[bulk.StateKey, tuple[dict | None, int | None]]
    horizon: float | None = None  # newest data time the rules see (arrival + tolerance) [s]
    # site -> (its context, overrides, design key), shared by sites of one design
    designs: dict[str, tuple[Context, dict, Any]] = field(default_factory=dict)
    primary: dict[str, dict[str, int]] | None = None  # site -> channel -> stream
    windows: dict[int, tuple] = field(default_factory=dict)  # stream -> (since, t, v, q)
    saves: dict[bulk.StateKey, tuple[dict, int | None]] = field(default_factory=dict)
    contexts: dict[str, tuple[Context, dict]] = field(default_factory=dict)
    stats: dict[int, tuple[float, quiet.WindowStats] | None] = field(default_factory=dict)
    design: dict[int, str] = field(default_factory=dict)  # id(Context) -> kind, params, overrides
    # site -> (its streams list, its tasks): worked out for the locks, used again to evaluate
    tasks: dict[str, tuple[list, list]] = field(default_factory=dict)
    locked: set[bulk.StateKey] = field(default_factory=set)  # rows this transaction locked
    versions: dict[bulk.StateKey, str] = field(default_factory=dict)  # xmin as read
    # settled rows from memory, written unlocked if still at this version, and how to
    # evaluate each again (locked) when another writer changed it meanwhile
    expect: dict[bulk.StateKey, str] = field(default_factory=dict)
    redo: dict[bulk.StateKey, Callable[[], int]] = field(default_factory=dict)
    events: int = 0  # events of rules evaluated again at the end of the pass
    remember: dict[bulk.StateKey, tuple[dict, str] | None] = field(default_factory=dict)

    def stats_of(self, sid: int) -> tuple[float, quiet.WindowStats] | None:
        """(since, extremes) of the prefetched window of stream ``sid``."""
        if sid not in self.stats:
            memo = self.windows.get(sid)
            ok = memo is not None and memo[1].size > 0
            self.stats[sid] = (memo[0], quiet.window_stats(*memo[1:])) if ok else None
        return self.stats[sid]

    def context(self, site_id: str) -> tuple[Context, dict]:
        """The site's rule context and overrides: one object per site for the whole pass."""
        found = self.contexts.get(site_id)
        if found is None and site_id in self.designs:
            ctx, overrides, design = self.designs[site_id]
            found = self.contexts[site_id] = (ctx, overrides)
            self.design[id(ctx)] = design
        if found is None:
            kind, params = self.sites[site_id]
            overrides = self.overrides.get(site_id, {})
            found = self.contexts[site_id] = (Context(kind, params), overrides)
            self.design[id(found[0])] = json.dumps([kind, params, overrides], sort_keys=True)
        return found


@dataclass(frozen=True, slots=True)
class _Plan:
    """A site's tasks for some of its streams, and the lookbacks of their rules."""

    tasks: list[tuple[str, str, int, RuleConfig]]  # rule, subject, stream, configuration
    lookbacks: dict[int, list[tuple[str, float]]]  # stream -> (rule, lookback [s])


def _offline_bound(cfg: RuleConfig) -> tuple[float, float]:
    """(sampling interval [s], the silence in intervals below which the offline rule stays
    at level 0: the lowest threshold or its hold band; -inf when thresholds are unordered)."""
    interval = cfg.window_s or 600.0
    given = [x for x in cfg.thresholds.as_list() if x is not None]
    lowest = min([*given, np.inf])
    lowest = min(lowest, max(lowest - cfg.hysteresis, 0.0))  # the hold band's too
    if given != sorted(given):  # threshold_levels refuses them: let it say so
        lowest = -np.inf
    return interval, lowest


def _chunks(sites: list[str], threads: int) -> list[list[str]]:
    """``sites`` split for ``threads`` workers: chunks of _MIN_CHUNK.._MAX_CHUNK sites."""
    if not sites:
        return []
    size = max(_MIN_CHUNK, -(-len(sites) // max(1, threads)))
    size = min(size, _MAX_CHUNK)
    return [sites[i : i + size] for i in range(0, len(sites), size)]


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
        self._periodic: threading.Thread | None = None  # the periodic checks' thread
        self._conn: psycopg.Connection | None = None
        self.batches = 0
        self.events = 0
        self._local = threading.local()  # per-thread: connection, window memo
        self._threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._conns: list[psycopg.Connection] = []
        # settle rules that provably stay at level 0 without evaluating them (.quiet);
        # False evaluates everything (the reference the shortcut is tested against)
        self.shortcuts = True
        # (site, rule, subject) -> (tracker, xmin) of rows settled at level 0 without an
        # alert, as this engine last wrote or read them (committed). A pass settles such a
        # rule from here without locking its row, and writes it only if the row is still at
        # that version (another engine, the API or a restart's predecessor may write it too)
        self._settled: dict[bulk.StateKey, tuple[dict, str]] = {}
        self._designs: dict[tuple[str, str, str], tuple[Context, dict, Any]] = {}
        self._plans: dict[tuple, _Plan] = {}
        # effective rule configurations by (rule, default duration, site design) for passes
        self._configs: dict[tuple[str, float, str], RuleConfig | None] = {}
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
        # the periodic checks run on a thread and connection of their own: at plateau scale
        # the offline check over every logger takes seconds, and passes must not wait for it
        done = threading.Event()
        periodic = threading.Thread(
            target=self._run_periodic, args=(done,), name="swc-alerts-periodic", daemon=True
        )
        self._periodic = periodic
        periodic.start()
        try:
            self._run_passes()
        finally:
            done.set()
            periodic.join(30.0)

    def _run_passes(self) -> None:
        # None queued: stop once what was queued before it is evaluated (stop() sets
        # _stop first and so stops at once; the engine's process drains)
        ending = False
        while not self._stop.is_set() and not ending:
            try:
                first = self._queue.get(timeout=1.0)
                ending = first is None
            except queue.Empty:
                continue
            if self._stop.is_set():
                break
            # the whole queue: a backlog collapses into one pass
            items = [first] if first is not None else []
            while not ending:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    ending = True
                else:
                    items.append(item)
            if not items:
                continue
            try:
                self.process(items)
            except psycopg.Error as exc:
                log.warning("alert evaluation failed, retrying: %s", str(exc).strip()[:300])
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                for item in items:  # evaluate them again (the tracker state was rolled back)
                    self._queue.put(item)
                self._stop.wait(1.0)
            except Exception:
                log.exception("alert evaluation failed; batch skipped")

    def _run_periodic(self, done: threading.Event) -> None:
        """The offline check every ``alert_check_interval_s`` and the staleness check."""
        interval = self.settings.alert_check_interval_s
        # staleness is a matter of hours: a tenth of the limit, at most every 5 min
        stale_interval = max(interval, min(self._stale_s / 10, 300.0))
        next_check = next_stale = started = time.monotonic()
        while not self._stop.is_set() and not done.is_set():
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + interval
                    self.check_offline()
                if time.monotonic() >= next_stale:
                    self.check_stale(full=next_stale == started)
                    next_stale = time.monotonic() + stale_interval
            except psycopg.Error as exc:
                log.warning("periodic alert check failed, retrying: %s", str(exc).strip()[:300])
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    conn.close()
                self._local.conn = None
                done.wait(1.0)
            except Exception:
                log.exception("periodic alert check failed")
            done.wait(max(0.0, min(next_check, next_stale) - time.monotonic()))

    def _connection(self) -> psycopg.Connection:
        """The calling thread's connection: the engine's own, or the periodic checks'."""
        if threading.current_thread() is self._periodic:
            return self._thread_connection()
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.dsn)
        return self._conn

    def _thread_connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._local.conn = connect(self.dsn)
            self._conns.append(conn)
        return conn

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
        # the loggers that sent: their offline rule is evaluated in the same pass as the
        # rules of their site's streams (one read and one write of the site's state rows)
        offline = self._last_seen(conn, devices) if devices else {}
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
            chunks = _chunks(sorted(by_site), self._threads)
            work = (by_site, spans, arrival, offline, now)
            if len(chunks) > 1:
                # sites are independent: evaluate chunks side by side, one connection each
                futures = [
                    self._executor().submit(self._evaluate_chunk_pooled, c, *work) for c in chunks
                ]
                n += sum(f.result() for f in futures)
            else:
                for chunk in chunks:
                    n += self._evaluate_chunk(conn, chunk, *work)
            offline = {site: devs for site, devs in offline.items() if site not in by_site}
        if offline:  # loggers whose site had no stream data in these batches
            n += self.check_offline(
                devices={d for devs in offline.values() for d, _ in devs}, now=now
            )
        self.batches += len(batches)
        self.events += n
        return n

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="swc-alerts-site")
        return self._pool

    def _evaluate_chunk_pooled(self, sites, *work) -> int:
        return self._evaluate_chunk(self._thread_connection(), sites, *work)

    # --- a pass over many sites: set-based reads and writes -------------------------
    def _evaluate_chunk(
        self,
        conn: psycopg.Connection,
        sites: list[str],
        by_site: dict[str, list[tuple[int, str, str]]],
        spans: dict[int, tuple[datetime, datetime]],
        now: float,
        offline: dict[str, list[tuple[str, float]]] | None = None,
        wall: float | None = None,
    ) -> int:
        """Evaluate ``sites`` in one transaction, their data read and state written in bulk;
        with ``offline`` (site -> its loggers that sent, last seen [s]) also the offline
        rule of those loggers, judged at ``wall`` (the wall clock, as ``check_offline``)."""
        n = 0
        horizon = now + self.settings.future_tolerance_s
        offline = {site: offline[site] for site in sites if site in offline} if offline else {}
        rule = RULES["offline"]
        keys = rules = None
        if offline:
            rules = [r.name for r in RULES.values() if r.channels] + [rule.name]

            def keys(p: _Pass) -> list[bulk.StateKey]:
                return self._expected_keys(p, by_site) + self._offline_keys(p, offline)

        with self._pass(conn, sites, by_site, spans, rules=rules, keys=keys, horizon=horizon) as p:
            for site in sites:
                n += self._evaluate_site(conn, site, by_site[site], spans, now)
                if site in offline:
                    n += self._check_offline_site(conn, site, offline[site], rule, wall)
        return n + p.events

    @contextmanager
    def _pass(
        self,
        conn: psycopg.Connection,
        sites: list[str],
        by_site: dict[str, list[tuple[int, str, str]]] | None = None,
        spans: dict[int, tuple[datetime, datetime]] | None = None,
        rules: list[str] | None = None,
        keys: Callable[[_Pass], list[bulk.StateKey]] | None = None,
        horizon: float | None = None,
    ) -> Iterator[_Pass]:
        """Prefetch what evaluating ``sites`` reads, in a transaction; on success write the
        rule states back.

        The state rows the pass will use (``keys``, or those of the sites' tasks) are locked
        in key order, those missing created first, except the rows this engine holds in
        memory as settled (level 0, no alert: what .quiet may settle without evaluating):
        those are read from memory and not locked. A rule settled from such a row is written
        at the end only if the row is still at the version remembered; one that another
        writer changed meanwhile is locked then and evaluated again on what that writer
        left. Rows the pass did not foresee are locked one by one as before; a locked row
        whose state did not change is not written. Without ``keys`` all the sites' rows (of
        ``rules``) are locked.
        """
        with conn.transaction():
            p = self._designed_pass(conn, sites)
            p.horizon = horizon
            self._local.pass_ = p
            try:
                if by_site is not None and spans is not None:
                    p.primary = bulk.primary_streams(conn, sites)
                    keys = keys or (lambda p: self._expected_keys(p, by_site))
                rules = rules or [r.name for r in RULES.values() if r.channels]
                if keys is None:
                    self._lock(p, bulk.lock_rule_states(conn, sites, rules))
                else:
                    wanted = sorted(set(keys(p)))
                    memory = self._settled if self.shortcuts else {}
                    for k in wanted:
                        found = memory.get(k)
                        if found is not None:
                            p.states[k], p.expect[k] = (found[0], None), found[1]
                    lock = [k for k in wanted if k not in p.expect]
                    rows = bulk.lock_rule_state_keys(conn, lock)
                    missing = [k for k in lock if k not in rows]
                    if missing:  # first data of a rule: create its rows (once), lock them too
                        bulk.create_rule_states(conn, missing)
                        rows.update(bulk.lock_rule_state_keys(conn, missing))
                    self._lock(p, rows)
                if by_site is not None and spans is not None:
                    p.windows = self._prefetch_windows(conn, p, by_site, spans)
                yield p
                self._write_states(conn, p)
            finally:
                self._local.pass_ = None
        for k, found in p.remember.items():  # committed: what this engine knows now
            if found is None:
                self._settled.pop(k, None)
            else:
                self._settled[k] = found
        if len(self._settled) > _MAX_SETTLED:
            self._settled.clear()

    def _designed_pass(self, conn: psycopg.Connection, sites: list[str]) -> _Pass:
        """A pass's sites, their context and overrides parsed once per design (at plateau
        scale most dams share one) and kept while the design's text stays the same."""
        p = _Pass(sites={}, overrides={}, states={})
        for site, key in bulk.site_designs(conn, sites).items():
            found = self._designs.get(key)
            if found is None:
                if len(self._designs) > 10000:
                    self._designs.clear()
                kind, params, overrides = key[0], json.loads(key[1]), json.loads(key[2])
                found = self._designs[key] = (Context(kind, params), overrides, key)
            ctx, overrides, design = found
            p.sites[site] = (ctx.kind, ctx.params)
            p.overrides[site] = overrides
            # a Context of its own per site and pass (rules record details on it); the
            # parsed parameters and overrides are shared, and only ever read
            p.designs[site] = (Context(ctx.kind, ctx.params), overrides, design)
        return p

    def _plan(self, p: _Pass, site: str, streams: list[tuple[int, str, str]]) -> _Plan:
        """What evaluating new data of ``streams`` means at ``site``: its tasks (rule,
        subject, stream, configuration; enabled rules only, in lock order) and, per
        stream, the lookback of each rule reading it. Kept while the site's design,
        primary streams and streams stay the same."""
        ctx, overrides = p.context(site)
        primary = p.primary.get(site, {}) if p.primary is not None else {}
        key = (site, p.design.get(id(ctx)), tuple(sorted(primary.items())), tuple(sorted(streams)))
        plan = self._plans.get(key)
        if plan is None:
            tasks = []
            for name, subject, sid in self._tasks(ctx, primary, streams):
                cfg = self._config(RULES[name], ctx, overrides)
                if cfg is not None:
                    tasks.append((name, subject, sid, cfg))
            lookbacks: dict[int, list[tuple[str, float]]] = {}
            for sid, _dev, ch in streams:
                found = lookbacks.setdefault(sid, [])
                for rule in RULES.values():
                    if ch not in rule.channels or not rule.applies(ctx):
                        continue
                    cfg = self._config(rule, ctx, overrides)
                    if cfg is not None:
                        found.append((rule.name, rule.lookback(cfg)))
            if len(self._plans) > 200_000:
                self._plans.clear()
            plan = self._plans[key] = _Plan(tasks, lookbacks)
        return plan

    @staticmethod
    def _lock(p: _Pass, rows: dict) -> None:
        """Rows locked by this pass: (tracker, alert id, version) by key."""
        for k, (tracker, alert_id, *version) in rows.items():
            p.states[k] = (tracker, alert_id)
            p.locked.add(k)
            p.expect.pop(k, None)
            if version:
                p.versions[k] = version[0]

    def _write_states(self, conn: psycopg.Connection, p: _Pass) -> None:
        """The pass's rule states: those settled from memory if their row is unchanged
        (else evaluated again, locked), then those locked, where they changed."""
        written: dict[bulk.StateKey, tuple[tuple[dict, int | None], str]] = {}
        if p.expect:
            unlocked = {k: p.saves.pop(k) for k in list(p.expect) if k in p.saves}
            done = bulk.save_rule_states_if(conn, unlocked, p.expect)
            written.update((k, (unlocked[k], x)) for k, x in done.items())
            lost = sorted(k for k in unlocked if k not in done)
            if lost:  # written by another meanwhile: evaluate on what it left
                log.info("%d rule states changed by another writer; evaluated again", len(lost))
                for k in lost:
                    p.states.pop(k, None)
                    p.expect.pop(k, None)
                    self._settled.pop(k, None)
                self._lock(p, bulk.lock_rule_state_keys(conn, lost))
                for k in lost:
                    p.events += p.redo[k]()
        changed = {
            k: v
            for k, v in p.saves.items()
            if k not in p.locked or p.states.get(k) != (v[0] or None, v[1])
        }
        for k, x in bulk.save_rule_states(conn, changed).items():
            written[k] = (changed[k], x)
        for k in p.locked:  # unchanged rows keep the version read
            if k not in written and k in p.versions:
                tracker, alert_id = p.states[k]
                written[k] = ((tracker or {}, alert_id), p.versions[k])
        for k, ((tracker, alert_id), version) in written.items():
            p.remember[k] = (tracker, version) if _settled(tracker, alert_id) else None
        for k in p.locked:
            p.remember.setdefault(k, None)  # written elsewhere (version unknown): forget

    def _expected_keys(self, p: _Pass, by_site) -> list[bulk.StateKey]:
        """The state rows the tasks of these sites lock (enabled rules only)."""
        keys = []
        for site, streams in by_site.items():
            if site not in p.sites:
                continue
            plan = self._plan(p, site, streams)
            p.tasks[site] = (streams, plan)
            keys.extend((site, name, subject) for name, subject, _sid, _cfg in plan.tasks)
        return keys

    def _prefetch_windows(self, conn, p: _Pass, by_site, spans) -> dict:
        """One read of the windows the rules of these streams will most likely ask for."""
        oldest: dict[tuple[str, str], float] = {}  # (site, rule) -> the oldest tracker clock
        for (site, rule, _subject), (saved, _) in p.states.items():
            last = (saved or {}).get("last_time_s")
            if last is not None:
                oldest[site, rule] = min(last, oldest.get((site, rule), last))
        since: dict[int, float] = {}
        for site, streams in by_site.items():
            if site not in p.sites:
                continue
            lookbacks = self._plan(p, site, streams).lookbacks
            for sid, _dev, _ch in streams:
                earliest = spans[sid][0].timestamp()
                start, lookback = earliest, 0.0
                for name, back in lookbacks[sid]:
                    lookback = max(lookback, back)
                    last = oldest.get((site, name))
                    if last is not None:
                        start = min(start, max(last, earliest - _MAX_CATCHUP_S))
                since[sid] = start - lookback
        # The extremes of every window (what .quiet needs); the readings themselves only
        # for sites with a rule above level 0, the others read on demand by _window.
        # readings up to the horizon, to the microsecond the full path's cut keeps
        until = (
            None
            if p.horizon is None
            else _EPOCH + timedelta(microseconds=int(np.floor(p.horizon * 1e6)))
        )
        stats = bulk.window_extremes(conn, {sid: _ts(x) for sid, x in since.items()}, until)
        for sid, x in since.items():
            row = stats.get(sid)
            p.stats[sid] = None if row is None else (x, quiet.from_row(row))
        active = {
            site for (site, _r, _s), (saved, _) in p.states.items() if (saved or {}).get("level")
        }
        wanted = {
            sid: _ts(since[sid])
            for site in active
            for sid, _dev, _ch in by_site.get(site, ())
            if sid in since
        }
        windows = bulk.read_windows(conn, wanted)
        return {sid: (since[sid], *w) for sid, w in windows.items()}

    def _pass_now(self) -> _Pass | None:
        return getattr(self._local, "pass_", None)

    def _transaction(self, conn: psycopg.Connection):
        """A site's own transaction, or none inside a pass (the pass has one)."""
        return nullcontext() if self._pass_now() is not None else conn.transaction()

    def _primary(self, conn: psycopg.Connection, site_id: str) -> dict[str, int]:
        p = self._pass_now()
        if p is not None and p.primary is not None:
            return p.primary.get(site_id, {})
        return dict(
            conn.execute(
                "SELECT DISTINCT ON (s.channel) s.channel, s.id FROM streams s "
                "JOIN devices d ON d.id = s.device_id WHERE d.site_id = %s "
                "ORDER BY s.channel, s.id",
                (site_id,),
            ).fetchall()
        )

    def _lock_state(
        self, conn: psycopg.Connection, site_id: str, rule: str, subject: str
    ) -> tuple[dict | None, int | None]:
        p = self._pass_now()
        key = (site_id, rule, subject)
        if p is not None and key in p.locked:
            return p.states[key]
        found = store.lock_rule_state(conn, site_id, rule, subject)
        if p is not None:  # locked now (that upsert writes the row: its version is unknown)
            p.states[key] = found
            p.locked.add(key)
            p.expect.pop(key, None)
            p.versions.pop(key, None)
        return found

    def _peek_state(
        self, site_id: str, rule: str, subject: str
    ) -> tuple[tuple[dict | None, int | None] | None, bool]:
        """In a pass, the row as the pass knows it (locked, or settled from memory) without
        a round trip, and whether it is locked; (None, False) when the pass does not know it."""
        p = self._pass_now()
        key = (site_id, rule, subject)
        if p is None or key not in p.states:
            return None, False
        return p.states[key], key in p.locked

    def _save_state(
        self,
        conn: psycopg.Connection,
        site_id: str,
        rule: str,
        subject: str,
        tracker: dict,
        alert_id: int | None,
    ) -> None:
        p = self._pass_now()
        if p is not None:
            key = (site_id, rule, subject)
            if key not in p.locked and key not in p.expect:  # never so: a row is locked first
                raise RuntimeError(f"rule state {key} written without its lock")
            p.saves[key] = (tracker, alert_id)
        else:
            store.save_rule_state(conn, site_id, rule, subject, tracker, alert_id)

    def _site(self, conn: psycopg.Connection, site_id: str) -> tuple[Context, dict] | None:
        p = self._pass_now()
        if p is not None and site_id in p.sites:
            return p.context(site_id)
        row = conn.execute("SELECT kind, params FROM sites WHERE id = %s", (site_id,)).fetchone()
        if row is None:
            return None
        return Context(row[0], row[1] or {}), store.rule_overrides(conn, site_id)

    def _config(self, rule: Rule, ctx: Context, overrides: dict) -> RuleConfig | None:
        p = self._pass_now()
        design = p.design.get(id(ctx)) if p is not None else None
        if design is None:
            return self._config_of(rule, ctx, overrides)
        key = (rule.name, self.settings.alert_min_duration_s, design)
        if key not in self._configs:
            if len(self._configs) > 20000:
                self._configs.clear()
            self._configs[key] = self._config_of(rule, ctx, overrides)
        return self._configs[key]

    def _config_of(self, rule: Rule, ctx: Context, overrides: dict) -> RuleConfig | None:
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
        p = self._pass_now()
        self._local.memo = p.windows if p is not None else {}
        with self._transaction(conn):
            found = self._site(conn, site_id)
            if found is None:
                return 0
            ctx, overrides = found
            primary = self._primary(conn, site_id)
            extras: dict | None = None
            known = p.tasks.get(site_id) if p is not None and p.primary is not None else None
            if known is not None and known[0] is streams:  # the same site and streams
                tasks = known[1].tasks
            else:
                tasks = [
                    (name, subject, sid, self._config(RULES[name], ctx, overrides))
                    for name, subject, sid in self._tasks(ctx, primary, streams)
                ]
            for name, subject, sid, cfg in tasks:
                rule = RULES[name]
                if cfg is None:
                    continue
                rctx = ctx
                if rule.context:
                    if extras is None:  # other sites' data, read once per site evaluation
                        until = self._newest(conn, sid, spans[sid], now)
                        extras = self._site_context.extras(conn, site_id, until)
                    rctx = dataclasses.replace(ctx, extras=extras)
                n += self._evaluate_rule(conn, site_id, rule, subject, sid, cfg, rctx, spans, now)
        return n

    def _newest(
        self, conn: psycopg.Connection, sid: int, span: tuple[datetime, datetime], now: float
    ) -> float:
        """The newest reading of ``sid`` the rules will see [s]: the batch's newest, or a
        later one already stored (up to the arrival horizon). A rule is fed every stored
        reading after its clock, not only the batch's, so the other sites' data it needs
        (rain, the dams upstream) must reach as far: a drill published faster than real
        time, or a logger's backlog, stores hours of stage before the engine gets to them,
        and forecasts made with the rain cut at the batch's end saw the rain stop there."""
        horizon = _ts(now + self.settings.future_tolerance_s)
        row = conn.execute(
            "SELECT max(time) FROM readings WHERE stream_id = %s AND time <= %s",
            (sid, horizon),
        ).fetchone()
        newest = row[0] if row and row[0] is not None else span[1]
        return max(span[1], newest).timestamp()

    @staticmethod
    def _tasks(
        ctx: Context, primary: dict[str, int], streams: list[tuple[int, str, str]]
    ) -> list[tuple[str, str, int]]:
        """(rule, subject, stream) to evaluate for new data of ``streams``, in lock order."""
        tasks = []
        for sid, dev, ch in streams:
            for rule in RULES.values():
                if ch not in rule.channels or not rule.applies(ctx):
                    continue
                if rule.scope == "site" and primary.get(ch) != sid:
                    continue
                tasks.append((rule.name, subject_of(rule, dev, ch), sid))
        return sorted(tasks)  # one lock order for every consumer

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
        if self._evaluate_quiet(site_id, rule, subject, sid, cfg, ctx, spans, now):
            p = self._pass_now()
            key = (site_id, rule.name, subject)
            if key in p.expect:  # settled from memory: if the row changed, evaluate it again
                p.redo[key] = lambda: self._evaluate_rule(
                    conn, site_id, rule, subject, sid, cfg, ctx, spans, now
                )
            return 0
        saved, alert_id = self._lock_state(conn, site_id, rule.name, subject)
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
                self._save_state(conn, site_id, rule.name, subject, tracker.to_dict(), None)
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
        self._save_state(conn, site_id, rule.name, subject, tracker.to_dict(), alert_id)
        return n

    def _evaluate_quiet(
        self,
        site_id: str,
        rule: Rule,
        subject: str,
        sid: int,
        cfg: RuleConfig,
        ctx: Context,
        spans: dict[int, tuple[datetime, datetime]],
        now: float,
    ) -> bool:
        """In a pass: settle a rule that provably stays at level 0 without evaluating it.

        It applies to a tracker at level 0 without an alert, whose clock is neither in the
        future nor (with the new data) past the stale limit, fed only data newer than its
        clock, when the extremes of the prefetched window (which starts no later than the
        rule's own and ends at the arrival horizon, as the rule's does) keep every reading
        at raw and hold level 0 (:mod:`.quiet`). Feeding those readings to the tracker
        would only move its clock; this writes the same state as :meth:`_evaluate_rule`
        would, at a fraction of the cost.
        """
        p = self._pass_now()
        if p is None or not self.shortcuts or p.horizon is None:
            return False
        found = p.states.get((site_id, rule.name, subject))
        if found is None or found[1] is not None:
            return False
        saved, alert_id = found
        saved = saved or _FRESH  # a new row: a fresh tracker
        last = saved.get("last_time_s")
        if saved.get("level") != 0 or saved.keys() != _TRACKER_FIELDS:
            return False
        if p.horizon != now + self.settings.future_tolerance_s:
            return False  # prefetched for another arrival time
        earliest = spans[sid][0].timestamp()
        if last is None:
            start = earliest  # a fresh tracker is fed the readings from the earliest new one
        elif earliest <= last or last > p.horizon or earliest - last > self._stale_s:
            return False  # late data, a clock from the future, or a gap: the full path
        else:
            start = max(last, earliest - _MAX_CATCHUP_S)
        since = start - rule.lookback(cfg)
        stats = p.stats_of(sid)
        if stats is None or stats[0] > since or stats[1].last_t < since:
            return False  # the window was not prefetched this deep, or the rule sees nothing
        w = stats[1]
        if not quiet.is_quiet(rule, w, cfg, ctx):
            return False
        state = dict(saved)
        state["min_duration_s"] = cfg.min_duration_s
        state["escalate_duration_s"] = cfg.escalate_duration_s
        if w.last_t >= start if last is None else w.last_t > last:
            # what AlertTracker.update does at level 0 with levels 0: move the clock
            state.update(up_since_s=None, down_since_s=None, last_time_s=w.last_t)
        p.saves[(site_id, rule.name, subject)] = (state, alert_id)
        return True

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
        by_site = self._last_seen(conn, devices)
        rule = RULES["offline"]
        n = 0
        if devices is None and self.shortcuts:
            by_site = self._offline_due(conn, by_site, now)

        def keys(p: _Pass) -> list[bulk.StateKey]:
            return self._offline_keys(p, by_site)

        for chunk in _chunks(sorted(by_site), 1):
            with self._pass(conn, chunk, rules=[rule.name], keys=keys) as p:
                for site_id in chunk:
                    n += self._check_offline_site(conn, site_id, by_site[site_id], rule, now)
            n += p.events
        return n

    def _offline_due(
        self, conn: psycopg.Connection, by_site: dict[str, list[tuple[str, float]]], now: float
    ) -> dict[str, list[tuple[str, float]]]:
        """The loggers of ``by_site`` that the periodic check must evaluate: all but those
        heard from too recently to reach any level whose tracker is settled (level 0, no
        alert). For those, evaluating would only move the tracker's clock (the shortcut
        of ``_check_offline_site``); read without locks, so a tracker that changes
        meanwhile is evaluated at the next check. At plateau scale this check was
        a pass over every logger every ``alert_check_interval_s``."""
        if not by_site:
            return by_site
        sites = sorted(by_site)
        settled = {
            (site, dev)
            for site, dev in conn.execute(
                "SELECT site_id, subject FROM alert_rule_state WHERE rule = 'offline' "
                "AND site_id = ANY(%s) AND alert_id IS NULL AND tracker->>'level' = '0' "
                "AND tracker ?& %s AND (SELECT count(*) FROM jsonb_object_keys(tracker)) = %s",
                (sites, sorted(_TRACKER_FIELDS), len(_TRACKER_FIELDS)),
            ).fetchall()
        }
        # designs as jsonb text, parsed once per design (json.dumps of every site's was
        # most of this check's time at 58,000 loggers)
        designs = bulk.site_designs(conn, sites)
        rule = RULES["offline"]
        bounds: dict[tuple[str, str, str], tuple[float, float] | None] = {}
        due: dict[str, list[tuple[str, float]]] = {}
        for site in sites:
            key = designs.get(site)
            if key is None:
                continue
            if key not in bounds:
                kind, params, over = key[0], json.loads(key[1]), json.loads(key[2])
                cfg = self._config_of(rule, Context(kind, params), over)
                bounds[key] = None if cfg is None or cfg.thresholds is None else _offline_bound(cfg)
            bound = bounds[key]
            if bound is None:
                continue  # the rule does not run here (as _check_offline_site finds)
            interval, lowest = bound
            keep = [
                (dev, seen)
                for dev, seen in by_site[site]
                if (site, dev) not in settled or max(0.0, now - seen) / interval >= lowest
            ]
            if keep:
                due[site] = keep
        return due

    @staticmethod
    def _last_seen(
        conn: psycopg.Connection, devices: set[str] | None
    ) -> dict[str, list[tuple[str, float]]]:
        """Site -> its loggers (all, or those of ``devices``) that were seen: (id, when [s])."""
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
        return by_site

    def _offline_keys(
        self, p: _Pass, by_site: dict[str, list[tuple[str, float]]]
    ) -> list[bulk.StateKey]:
        """The offline rule's state rows of these loggers, where the rule is enabled."""
        rule = RULES["offline"]
        out = []
        for site in p.sites:
            if site not in by_site:
                continue
            cfg = self._config(rule, *p.context(site))
            if cfg is not None and cfg.thresholds is not None:
                out.extend((site, rule.name, dev) for dev, _ in by_site[site])
        return out

    def _check_offline_site(
        self,
        conn: psycopg.Connection,
        site_id: str,
        devices: list[tuple[str, float]],
        rule: Rule,
        now: float,
    ) -> int:
        n = 0
        with self._transaction(conn):
            found = self._site(conn, site_id)
            if found is None:
                return 0
            ctx, overrides = found
            cfg = self._config(rule, ctx, overrides)
            if cfg is None or cfg.thresholds is None:
                return 0
            interval, lowest = _offline_bound(cfg)
            thr = cfg.thresholds.as_list()
            for dev, seen in sorted(devices):
                # a settled row the pass holds from memory is not locked for the shortcut
                known, locked = self._peek_state(site_id, rule.name, dev)
                if known is None:
                    known, locked = self._lock_state(conn, site_id, rule.name, dev), True
                saved, alert_id = known
                state = saved or _FRESH
                if (
                    self.shortcuts
                    and max(0.0, now - seen) / interval < lowest
                    and state.get("level") == 0
                    and state.keys() == _TRACKER_FIELDS
                ):  # below every threshold at level 0: only the clock moves (as update does)
                    last = state.get("last_time_s")
                    if last is None or now > last:
                        state = dict(state, up_since_s=None, down_since_s=None, last_time_s=now)
                        state["min_duration_s"] = cfg.min_duration_s
                        state["escalate_duration_s"] = cfg.escalate_duration_s
                        self._save_state(conn, site_id, rule.name, dev, state, alert_id)
                        if not locked:  # written only if unchanged, else evaluated again
                            self._pass_now().redo[site_id, rule.name, dev] = lambda d=(dev, seen): (
                                self._check_offline_site(conn, site_id, [d], rule, now)
                            )
                        continue
                    if locked:
                        continue
                if not locked:  # from memory: judged on the row itself, locked
                    saved, alert_id = self._lock_state(conn, site_id, rule.name, dev)
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
                self._save_state(conn, site_id, rule.name, dev, tracker.to_dict(), alert_id)
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
