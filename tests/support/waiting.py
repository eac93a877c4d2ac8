from __future__ import annotations

import time
from collections.abc import Callable

import psycopg


def wait_for(
    predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.05, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def scalar(dsn: str, sql: str, params=None):
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchone()[0]


def count_when_up(dsn: str, sql: str) -> int:
    try:
        return scalar(dsn, sql)
    except psycopg.OperationalError:
        return -1
