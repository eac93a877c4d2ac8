"""Quality flags at ingest: QARTOD tests from ``analytics.quality``, per channel.

Two stages, so that the writer stays fast and the flags end up right:

1. **When written**, each reading gets the worst of the flag its logger sent
   and the gross-range test of its channel (``provisional_flags``; no
   neighbours needed, vectorised over the batch).
2. **Re-evaluated with its neighbourhood** (``QCReevaluator``, fed by the
   consumer's after-commit hook, in a process of its own, ``QCProcess``,
   paced to about a tenth of the time so that ingest keeps its throughput;
   under heavy load the spans merge and flags follow with a delay): for every stream a
   batch touched, the readings around the batch's span are read back with
   enough history for every test (spike, rate of change, flat line), all
   tests are run, and only flags that changed are updated. Late data is
   handled the same way: its neighbours, earlier and later, are re-flagged.

The thresholds per channel are ``CHANNEL_QC`` below; a site may override
them in ``sites.params.qc.<channel>`` with the same keys.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
import weakref
from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from analytics.quality import aggregate_flags, gross_range_test, qc_flags
from swc_ops.metrics import PROCESS

log = logging.getLogger(__name__)

NOT_EVALUATED = 2

# Keyword arguments of analytics.quality.qc_flags, per channel. Windows in seconds.
CHANNEL_QC: dict[str, dict[str, Any]] = {
    # A still pond can repeat a 1 mm reading for hours (evaporation moves it a
    # few mm a day): half a day of identical values is suspect, a day fails.
    # "Identical" is |V_n - V_n-i| < 1 um (QARTOD's EPS, strict: 0 would
    # disable the test). The longest flat-line window is also how far back
    # re-evaluation reads.
    "stage_m": dict(
        fail_span=(-1.0, 100.0),
        suspect_span=(-0.2, 60.0),
        spike_suspect=0.3,
        spike_fail=1.0,
        rate_threshold_per_s=0.05,
        flat_tolerance=1e-6,
        flat_suspect_s=12 * 3600.0,
        flat_fail_s=24 * 3600.0,
    ),
    "level_m": dict(
        fail_span=(-0.5, 20.0),
        suspect_span=(-0.1, 15.0),
        spike_suspect=0.2,
        spike_fail=0.5,
        rate_threshold_per_s=0.02,
    ),
    # No flat-line test: a dry inlet rightly reads 0 NTU for weeks.
    "turbidity_ntu": dict(
        fail_span=(0.0, 4500.0),
        suspect_span=(0.0, 3990.0),
        spike_suspect=1500.0,
        spike_fail=3000.0,
    ),
    "ssc_kg_m3": dict(fail_span=(0.0, 1500.0), suspect_span=(0.0, 1000.0)),
    "rain_mm": dict(fail_span=(0.0, 50.0), suspect_span=(0.0, 20.0)),
    "flow_m3_s": dict(
        fail_span=(-0.01, 5000.0), suspect_span=(0.0, 2000.0), spike_suspect=50.0, spike_fail=500.0
    ),
    "battery_v": dict(fail_span=(0.0, 30.0), suspect_span=(10.5, 15.5)),
    "rssi_dbm": dict(fail_span=(-150.0, 0.0), suspect_span=(-120.0, -20.0)),
    "temperature_c": dict(fail_span=(-50.0, 70.0), suspect_span=(-40.0, 50.0)),
    "air_temperature_c": dict(fail_span=(-50.0, 70.0), suspect_span=(-40.0, 50.0)),
    "water_temperature_c": dict(fail_span=(-5.0, 50.0), suspect_span=(-1.0, 40.0)),
}


def merge_spans(
    into: dict[int, tuple[datetime, datetime]], spans: dict[int, tuple[datetime, datetime]]
) -> None:
    """Widen ``into``'s (earliest, latest) time span per stream to cover ``spans``."""
    for sid, (lo, hi) in spans.items():
        old = into.get(sid)
        into[sid] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))


def lookback_s(config: dict[str, Any]) -> float:
    """History a reading's flag depends on (flat line), plus one neighbour's worth."""
    return float(config.get("flat_fail_s", 0.0)) if "flat_tolerance" in config else 0.0


def provisional_flags(
    values: np.ndarray, channels: list[str], logger_flags: np.ndarray
) -> np.ndarray:
    """Worst of the logger's flag and the channel's gross-range test, per reading.

    ``channels[i]`` is the channel of ``values[i]``; ``logger_flags`` holds 2
    where the logger sent no flag.
    """
    flags = logger_flags.astype(np.uint8)
    if not len(values):
        return flags
    names = np.asarray(channels, dtype=object)
    for channel in set(channels):
        cfg = CHANNEL_QC.get(channel)
        if cfg is None:
            continue
        mask = names == channel
        gross = gross_range_test(values[mask], cfg["fail_span"], cfg.get("suspect_span"))
        flags[mask] = aggregate_flags(flags[mask], gross)
    return flags


def evaluate(
    times_s: np.ndarray, values: np.ndarray, logger_flags: np.ndarray, config: dict[str, Any]
) -> np.ndarray:
    """All configured tests over one stream's sorted window, with the logger's flags."""
    tests = qc_flags(times_s, values, **config)["aggregate"]
    return aggregate_flags(tests, logger_flags)


def stream_configs(conn: psycopg.Connection, sids: list[int]) -> dict[int, dict[str, Any] | None]:
    """The QC configuration of each stream: its channel's ``CHANNEL_QC`` with the site's
    ``params.qc.<channel>`` overrides; None for a stream with no test."""
    rows = conn.execute(
        "SELECT s.id, s.channel, st.params -> 'qc' -> s.channel FROM streams s "
        "JOIN devices d ON d.id = s.device_id LEFT JOIN sites st ON st.id = d.site_id "
        "WHERE s.id = ANY(%s)",
        (list(sids),),
    ).fetchall()
    out: dict[int, dict[str, Any] | None] = {}
    for sid, channel, override in rows:
        base = CHANNEL_QC.get(channel)
        if base is None and not override:
            out[sid] = None
            continue
        cfg = dict(base or {})
        for key, value in (override or {}).items():
            cfg[key] = tuple(value) if isinstance(value, list) else value
        out[sid] = cfg
    return out


# what a re-evaluator counts (shared memory when it runs in its own process)
STAT_FIELDS = (
    "passes",
    "streams",
    "flags_changed",
    "busy_seconds",
    "errors",
    "pending_streams",
    "last_pass_timestamp",
)
_LIVE_STATS: weakref.WeakSet = weakref.WeakSet()


class _QCCollector(Collector):
    """``swc_qc_*`` metrics: the sum over the re-evaluators of this process."""

    _DOC: ClassVar[dict[str, tuple[str, str]]] = {
        "passes": ("counter", "re-evaluation passes"),
        "streams": ("counter", "streams re-evaluated"),
        "flags_changed": ("counter", "stored quality flags changed by re-evaluation"),
        "busy_seconds": ("counter", "time spent re-evaluating [s]"),
        "errors": ("counter", "failed passes (retried)"),
        "pending_streams": ("gauge", "streams waiting for re-evaluation"),
        "last_pass_timestamp": ("gauge", "Unix time of the last pass [s]"),
    }

    def collect(self):
        stats = [s.values() for s in list(_LIVE_STATS)]
        for i, name in enumerate(STAT_FIELDS):
            kind, doc = self._DOC[name]
            column = [v[i] for v in stats]
            total = max(column, default=0.0) if name == "last_pass_timestamp" else sum(column)
            full = f"swc_qc_{name}" + ("_seconds" if name == "last_pass_timestamp" else "")
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(full, doc, value=total)


PROCESS.register(_QCCollector())


class QCStats:
    """Counters of one re-evaluator, in shared memory so a parent process can read them."""

    def __init__(self, array=None):
        self._a = array if array is not None else multiprocessing.Array("d", len(STAT_FIELDS))
        _LIVE_STATS.add(self)

    @property
    def array(self):
        return self._a

    def add(self, name: str, amount: float) -> None:
        with self._a.get_lock():
            self._a[STAT_FIELDS.index(name)] += amount

    def set(self, name: str, value: float) -> None:
        self._a[STAT_FIELDS.index(name)] = value

    def values(self) -> list[float]:
        return list(self._a)


class QCReevaluator:
    """Re-flags the neighbourhood of committed batches (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        interval_s: float = 2.0,
        max_streams: int = 500,
        stats: QCStats | None = None,
    ):
        self.stats = stats or QCStats()
        self.dsn = dsn
        self.interval_s = interval_s
        self.max_streams = max_streams
        self._queue: queue.Queue = queue.Queue()
        self._pending: dict[int, tuple[datetime, datetime]] = {}
        self._configs: dict[int, dict[str, Any] | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qc-reevaluate", daemon=True)
        self._conn: psycopg.Connection | None = None
        self.updated = 0  # flags changed so far
        self.busy_factor = 9.0  # pause at least this many times the last pass's duration
        self.idle = threading.Event()

    def start(self) -> QCReevaluator:
        self._thread.start()
        return self

    def hook(self, batch) -> None:
        """Consumer.after_commit hook: only queues the batch's spans."""
        self.idle.clear()
        self._queue.put(batch.streams)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        pause = self.interval_s
        while not self._stop.is_set() or not self._queue.empty() or self._pending:
            self._absorb(timeout=pause)
            if not self._pending:
                self.idle.set()
                if self._stop.is_set():
                    return
                continue
            chosen = dict(list(self._pending.items())[: self.max_streams])
            for sid in chosen:
                del self._pending[sid]
            started = time.monotonic()
            self.stats.set("pending_streams", len(self._pending))
            try:
                changed = self._reevaluate(chosen)
                self.updated += changed
                self.stats.add("flags_changed", changed)
                self.stats.add("streams", len(chosen))
            except psycopg.Error as exc:  # the database is away: try again later
                self.stats.add("errors", 1)
                log.warning("qc re-evaluation failed, will retry: %s", str(exc).strip()[:200])
                merge_spans(self._pending, chosen)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                time.sleep(1.0)
            except Exception:
                self.stats.add("errors", 1)
                log.exception("qc re-evaluation failed for streams %s", sorted(chosen)[:10])
            self.stats.add("passes", 1)
            self.stats.add("busy_seconds", time.monotonic() - started)
            self.stats.set("last_pass_timestamp", time.time())
            # Re-evaluation must not starve ingest: it takes at most about a tenth
            # of the time; under load the spans it waits for merge into fewer reads.
            pause = max(self.interval_s, self.busy_factor * (time.monotonic() - started))

    def _absorb(self, timeout: float) -> None:
        try:
            spans = self._queue.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if spans is None:  # stop, after what is pending
                self._stop.set()
                return
            merge_spans(self._pending, spans)
            try:
                spans = self._queue.get_nowait()
            except queue.Empty:
                return

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        return self._conn

    def _config(self, conn: psycopg.Connection, sids: list[int]) -> None:
        missing = [s for s in sids if s not in self._configs]
        if missing:
            self._configs.update(stream_configs(conn, missing))

    def _reevaluate(self, spans: dict[int, tuple[datetime, datetime]]) -> int:
        conn = self._connection()
        self._config(conn, list(spans))
        work = {sid: span for sid, span in spans.items() if self._configs.get(sid)}
        if not work:
            return 0
        sids, starts, ends = [], [], []
        for sid, (lo, hi) in work.items():
            back = timedelta(seconds=lookback_s(self._configs[sid]) + 1)
            sids.append(sid)
            starts.append(lo - back)
            ends.append(hi + back)
        rows = conn.execute(
            "SELECT w.sid, r.time, r.value, r.quality, coalesce(r.logger_quality, 2) "
            "FROM unnest(%s::int[], %s::timestamptz[], %s::timestamptz[]) AS w(sid, lo, hi) "
            "JOIN LATERAL (SELECT time, value, quality, logger_quality FROM readings "
            "  WHERE stream_id = w.sid AND time >= w.lo AND time <= w.hi ORDER BY time) r ON true "
            "ORDER BY w.sid, r.time",
            (sids, starts, ends),
        ).fetchall()
        changes: list[tuple[int, datetime, int]] = []
        by_stream: dict[int, list] = {}
        for row in rows:
            by_stream.setdefault(row[0], []).append(row[1:])
        for sid, data in by_stream.items():
            lo, hi = work[sid]
            times = np.array([r[0].timestamp() for r in data])
            values = np.array([r[1] for r in data], dtype=float)
            stored = np.array([r[2] for r in data], dtype=np.uint8)
            logger = np.array([r[3] for r in data], dtype=np.uint8)
            new = evaluate(times, values, logger, self._configs[sid])
            # rows whose flag can depend on the new data: from the neighbour before
            # the span to the end of the span plus the lookback after it
            first = max(int(np.searchsorted(times, lo.timestamp())) - 1, 0)
            last = int(
                np.searchsorted(
                    times, hi.timestamp() + lookback_s(self._configs[sid]), side="right"
                )
            )
            for i in np.nonzero(new[first:last] != stored[first:last])[0] + first:
                changes.append((sid, data[i][0], int(new[i])))
        if changes:
            conn.execute(
                "UPDATE readings r SET quality = c.q FROM unnest(%s::int[], %s::timestamptz[], "
                "%s::smallint[]) AS c(sid, t, q) WHERE r.stream_id = c.sid AND r.time = c.t",
                ([c[0] for c in changes], [c[1] for c in changes], [c[2] for c in changes]),
            )
        return len(changes)


def _process_main(
    dsn: str, spans: multiprocessing.Queue, stats, log_level: str | None, log_format: str | None
) -> None:
    import signal

    from .logs import setup_logging

    # Ctrl-C reaches the whole process group: the consumer stops this process itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    setup_logging(log_level, log_format)  # the same settings as the consumer's
    reevaluator = QCReevaluator(dsn, stats=QCStats(stats))
    reevaluator._queue = spans  # fed by the consumer process; None means stop
    reevaluator._run()


def start_ignoring_sigint(proc) -> None:
    """Start a child process of the consumer with SIGINT ignored from its first moment.

    Ctrl-C reaches the whole process group, also while the child still imports: it
    starts with SIGINT ignored (inherited), and the consumer stops it itself."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            proc.start()
        finally:
            signal.signal(signal.SIGINT, previous)
    else:
        proc.start()


class QCProcess:
    """A re-evaluator in a process of its own, fed with the spans of committed batches.

    In a thread of the consumer it would halve ingest throughput: its Python
    work holds the GIL that the MQTT and writer threads wait for.
    """

    def __init__(self, dsn: str, log_level: str | None = None, log_format: str | None = None):
        ctx = multiprocessing.get_context("spawn")
        self._spans: multiprocessing.Queue = ctx.Queue(maxsize=10_000)
        # the child counts, this process serves them (swc_qc_* on SWC_METRICS_PORT)
        self.stats = QCStats(ctx.Array("d", len(STAT_FIELDS)))
        self._proc = ctx.Process(
            target=_process_main,
            args=(dsn, self._spans, self.stats.array, log_level, log_format),
            name="swc-qc",
        )

    def start(self) -> QCProcess:
        start_ignoring_sigint(self._proc)
        return self

    def hook(self, batch) -> None:
        try:
            self._spans.put_nowait(batch.streams)
        except queue.Full:  # far behind: these spans are re-checked with later ones' windows
            log.warning("qc re-evaluation is behind; a batch's spans were dropped")

    def stop(self, timeout: float = 30.0) -> None:
        self._spans.put(None)
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()


def attach(
    consumer, dsn: str, log_level: str | None = None, log_format: str | None = None
) -> QCProcess:
    """Start a re-evaluation process and hook it onto ``consumer`` (stop it afterwards)."""
    reevaluator = QCProcess(dsn, log_level, log_format).start()
    consumer.after_commit.append(reevaluator.hook)
    return reevaluator
