"""Shared pieces of the benchmarks: a scratch database, a private broker, the RESULT line."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg

ADMIN_DSN = os.environ.get(
    "SWC_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def scratch_database(admin_dsn: str = ADMIN_DSN):
    """A new database for one benchmark run, dropped afterwards."""
    name = f"swcbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def result_line(**figures: float | int | str) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return "RESULT " + " ".join(f"{k}={fmt(v)}" for k, v in figures.items())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


REPO = Path(__file__).resolve().parents[1]
