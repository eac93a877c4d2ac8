"""Alert engine pass cost: one storm-mode minute of N sites through ``AlertEngine.process``.

No broker and no API: the readings of one minute (four channels per site) are
written in SQL, and the engine evaluates them as the consumer's committed
batches (``--batch`` messages each, as the consumer batches them) would
have it do. Prints the engine's time per site, and how many sites a second
that is; storm mode needs ``sites / 60`` a second. ``--profile`` writes a
pyinstrument profile of the measured minute.

    python bench/alert_pass.py [--quick] [--sites 2000] [--minutes 2] [--profile out.html]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench._common import result_line, scratch_database
from bench.alert_scale import PERIOD_S, load_sites, write_history


def write_minute(conn: psycopg.Connection, t: float, n_sites: int, batch: int) -> list:
    """One reading per stream at ``t``; the CommittedBatch list covering them."""
    from ingest.consumer import CommittedBatch

    rows = conn.execute(
        "INSERT INTO readings (time, stream_id, value, quality, received_at) "
        "SELECT to_timestamp(%s), s.id, CASE s.channel WHEN 'stage_m' THEN 2.0 "
        "WHEN 'rain_mm' THEN 0.2 WHEN 'turbidity_ntu' THEN 120.0 ELSE 12.6 END, 1, now() "
        "FROM streams s RETURNING stream_id, (SELECT device_id FROM streams x WHERE x.id = "
        "stream_id)",
        (t,),
    ).fetchall()
    when = datetime.fromtimestamp(t, UTC)
    by_device: dict[str, list[int]] = {}
    for sid, dev in rows:
        by_device.setdefault(dev, []).append(sid)
    devices = sorted(by_device)
    out = []
    for i in range(0, len(devices), batch):
        chunk = devices[i : i + batch]
        streams = {sid: (when, when) for d in chunk for sid in by_device[d]}
        out.append(CommittedBatch(streams, frozenset(chunk), len(streams), datetime.now(UTC)))
    return out


def backend_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the server processes ``pids`` used so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def engine_backends(engine) -> list[int]:
    """The server process ids of the engine's connections (the server runs on this host)."""
    conns = [c for c in [engine._conn, *engine._conns] if c is not None and not c.closed]
    return [c.info.backend_pid for c in conns]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 sites, one minute")
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--minutes", type=int, default=2, help="measured minutes (after a warm-up)")
    ap.add_argument("--batch", type=int, default=100, help="messages per committed batch")
    ap.add_argument("--history-min", type=int, default=30)
    ap.add_argument("--threads", type=int, default=4, help="engine threads (1 to profile)")
    ap.add_argument("--no-shortcuts", action="store_true", help="evaluate every rule in full")
    ap.add_argument("--profile", help="write a pyinstrument HTML profile here")
    args = ap.parse_args()
    if args.quick:
        args.sites, args.minutes = 300, 1

    from ingest.alerting.engine import AlertEngine
    from ingest.alerting.process import collections_for_passes, freeze_long_lived
    from ingest.settings import Settings
    from ingest.store.migrate import migrate

    with scratch_database() as dsn:
        migrate(dsn, "off")
        t0 = time.time() - (args.minutes + 1) * PERIOD_S
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_sites(conn, args.sites)
            write_history(conn, args.history_min, t0)
            engine = AlertEngine(Settings(_env_file=None, database_url=dsn), dsn, args.threads)
            engine.shortcuts = not args.no_shortcuts
            # the garbage collector as in the engine's process (ingest/alerting/process.py)
            collections_for_passes()
            engine.process(write_minute(conn, t0, args.sites, args.batch))  # warm-up
            freeze_long_lived()
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler()
            seconds = cpu = db_cpu = 0.0
            pids = engine_backends(engine)
            for k in range(args.minutes):
                # each minute is written just before it is evaluated (untimed): written all
                # ahead, the warm-up's windows took the later minutes in, and every measured
                # minute was late data to the engine (re-evaluated for the record)
                batches = write_minute(conn, t0 + (k + 1) * PERIOD_S, args.sites, args.batch)
                if profiler is not None:
                    profiler.start()  # pyinstrument combines the sessions
                start = time.perf_counter()
                cpu0 = time.process_time()
                db0 = backend_cpu_s(pids)
                # the consumer hands batches over as they commit; the engine merges what queued
                for b in batches:
                    engine.process([b])
                seconds += time.perf_counter() - start
                cpu += time.process_time() - cpu0
                db_cpu += backend_cpu_s(pids) - db0
                if profiler is not None:
                    profiler.stop()
        if profiler is not None:
            Path(args.profile).write_text(profiler.output_html())
            print(profiler.output_text(unicode=False, color=False, show_all=False)[:6000])
        engine.stop()
    per_site_ms = 1000 * seconds / (args.sites * args.minutes)
    cpu_ms = 1000 * cpu / (args.sites * args.minutes)
    db_ms = 1000 * db_cpu / (args.sites * args.minutes)
    print(
        f"{args.sites} sites x {args.minutes} minutes: {per_site_ms:.2f} ms per site-minute "
        f"({cpu_ms:.2f} ms of this process's CPU, {db_ms:.2f} ms of its database "
        f"connections'); "
        f"{1000 / per_site_ms:.0f} sites/s (storm mode at 58,000 sites needs "
        f"{58000 / PERIOD_S:.0f}/s)"
    )
    print(
        result_line(
            sites=args.sites,
            ms_per_site=per_site_ms,
            cpu_ms_per_site=cpu_ms,
            db_cpu_ms_per_site=db_ms,
            load_1min=os.getloadavg()[0],
            sites_per_s=1000 / per_site_ms,
        )
    )


if __name__ == "__main__":
    main()
