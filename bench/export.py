"""Export benchmark: CSV, Parquet and NetCDF exports of N readings in bounded memory.

Prints, in one run against the same table: a plain psycopg ``COPY TO``
baseline of the same rows (read and discarded), then each format exported by
``swc export`` in a child process, with its rate, the ratio to the baseline
and the child's peak RSS (from ``wait4``) beside its peak over the first half
of the run and the peak of a one-week export: memory is bounded when the
peak does not grow with the rows. The full run holds a year of
one-minute data for 100 streams (52.6 million rows); ``--quick`` one week.

    python bench/export.py [--quick] [--days N] [--keep-db NAME]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench._common import ADMIN_DSN, REPO, result_line, scratch_database
from ingest.export import Selection, _query
from ingest.store.migrate import migrate

STREAMS = 100
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def fill(dsn: str, days: int) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for site in range(10):
            conn.execute(
                "INSERT INTO sites (id, kind, name, latitude, longitude) VALUES (%s, 'check_dam', %s, %s, %s)",
                (f"site-{site}", f"Site {site}", 37.0 + site / 100, 110.0 + site / 100),
            )
        for s in range(STREAMS):
            device = f"bx-{s:03d}"
            conn.execute(
                "INSERT INTO devices (id, site_id) VALUES (%s, %s)", (device, f"site-{s % 10}")
            )
            conn.execute(
                "INSERT INTO streams (device_id, channel, unit) VALUES (%s, %s, %s)",
                (
                    device,
                    ("stage_m", "turbidity_ntu", "rain_mm", "battery_v")[s % 4],
                    ("m", "NTU", "mm", "V")[s % 4],
                ),
            )
        conn.execute("SET synchronous_commit = off")
        minutes = days * 1440
        step = 7 * 1440  # a week at a time keeps each transaction moderate
        for first in range(0, minutes, step):
            n = min(step, minutes - first)
            conn.execute(
                "INSERT INTO readings (time, stream_id, value, quality, received_at) "
                "SELECT %s::timestamptz + make_interval(mins => m), s.id, "
                "round((random() * 10)::numeric, 3)::float8, 1, now() "
                "FROM generate_series(%s::int, %s::int) AS m, streams s",
                (T0, first, first + n - 1),
            )
        conn.execute("VACUUM ANALYZE readings")
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]


def baseline_copy(dsn: str) -> tuple[float, int]:
    """Plain psycopg COPY TO of the same rows (same query and order), discarded."""
    query, params = _query(Selection(), "r.time")
    n = 0
    t = time.perf_counter()
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor().copy(psycopg.sql.SQL("COPY ({}) TO STDOUT").format(query), params) as copy,
    ):
        for chunk in copy:
            n += bytes(chunk).count(b"\n")
    return n / (time.perf_counter() - t), n


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_export(
    dsn: str, fmt: str, out: Path, end: str | None = None
) -> tuple[float, float, float, int]:
    """rows/s, peak RSS in MB over the first half and over the whole run, and the file size,
    of `swc export` in a child process (RSS sampled every 0.2 s; the whole-run peak from wait4)."""
    env = {**os.environ, "SWC_DATABASE_URL": dsn}
    extra = ["--end", end] if end else []
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swc_cli", "export", "--format", fmt, "--out", str(out), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = _rss_mb(proc.pid)
            if rss is not None:
                samples.append((time.perf_counter() - t, rss))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"swc export {fmt} failed: {proc.stderr.read().decode()[-2000:]}")
    tail = proc.stderr.read().decode().strip().splitlines()[-1]
    rows = int(tail.split()[0])
    first_half = max((rss for at, rss in samples if at <= elapsed / 2), default=float("nan"))
    return rows / elapsed, first_half, usage.ru_maxrss / 1024, out.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="one week of data (about 1 million rows)")
    ap.add_argument("--days", type=int, help="days of one-minute data for 100 streams")
    ap.add_argument("--keep-db", help="reuse (or create and keep) this database name")
    args = ap.parse_args()
    days = args.days or (7 if args.quick else 365)

    with tempfile.TemporaryDirectory(prefix="swc-export-") as tmp:
        tmp = Path(tmp)
        if args.keep_db:
            dsn = psycopg.conninfo.make_conninfo(ADMIN_DSN, dbname=args.keep_db)
            ctx = None
            try:
                with psycopg.connect(dsn) as conn:
                    rows = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            except psycopg.OperationalError:
                with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{args.keep_db}"')
                rows = 0
        else:
            ctx = scratch_database()
            dsn = ctx.__enter__()
            rows = 0
        try:
            if rows == 0:
                migrate(dsn, "off")
                t = time.perf_counter()
                rows = fill(dsn, days)
                print(
                    f"filled {rows:,} rows ({STREAMS} streams x {days} days of minutes) in "
                    f"{time.perf_counter() - t:.0f} s"
                )
            copy_rate, n = baseline_copy(dsn)
            assert n == rows
            print(f"baseline: psycopg COPY TO of the same rows: {copy_rate:,.0f} rows/s")
            figures = {"rows": rows, "copy_rows_per_s": round(copy_rate)}
            week_end = "2025-01-08T00:00:00Z"  # the first week: RSS of a small export
            for fmt, ext in (("csv", "csv"), ("parquet", "parquet"), ("netcdf", "nc")):
                _, _, week_rss, _ = run_export(dsn, fmt, tmp / f"week.{ext}", end=week_end)
                rate, half_rss, rss, size = run_export(dsn, fmt, tmp / f"export.{ext}")
                print(
                    f"{fmt:8s} {rate:12,.0f} rows/s  ratio {rate / copy_rate:5.2f}  "
                    f"peak RSS {rss:5.0f} MB (first half of the run: {half_rss:4.0f} MB; "
                    f"a one-week export: {week_rss:4.0f} MB)  file {size / 1e6:6.0f} MB"
                )
                figures |= {
                    f"{fmt}_rows_per_s": round(rate),
                    f"{fmt}_ratio": round(rate / copy_rate, 3),
                    f"{fmt}_peak_rss_mb": round(rss),
                    f"{fmt}_first_half_peak_rss_mb": round(half_rss),
                    f"{fmt}_week_peak_rss_mb": round(week_rss),
                }
                for name in (f"export.{ext}", f"week.{ext}"):
                    (tmp / name).unlink()
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
    print(result_line(**figures))


if __name__ == "__main__":
    main()
