"""Expensive reads done in worker processes of lower priority.

A 10,000-row page of readings costs the API process some 60 ms of CPU under
its interpreter lock (the rows converted to Python objects, then rendered to
JSON), and a derived product over a whole record more: every ordinary request
of that process waits for the interpreter meanwhile. :class:`HeavyWorkers`
runs such work (the query and the rendering) in a few worker processes, each
with its own database connection, at a lower CPU priority (``os.nice``): when
both want a core, the kernel gives it to the API process first, whose request
thread only waits for the bytes and sends them.

A function run here takes a connection first and plain (picklable) arguments,
and is run in one transaction with the key's role's statement timeout, as a
pooled connection would be. Database errors and HTTP errors come back as
values and are raised again in the API process as the same classes, so that
errors.py answers them as it would the same error raised in the process.

When no worker can be started (no processes allowed, a broken install), the
work is done in the API process on the request's own connection, as before,
and this is logged; a worker that dies during a request is replaced, and that
request is done in the API process too.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from time import monotonic
from typing import Any, TypeVar

import psycopg
from fastapi import HTTPException

log = logging.getLogger(__name__)

T = TypeVar("T")

WORKER_NICE = 10  # below the API's own threads (as the sheet readers)
RETRY_START_S = 60.0  # after a pool failed to start, try again after this long

# worker process state (set by _init)
_dsn: str | None = None
_conn: psycopg.Connection | None = None


def _init(dsn: str, nice: int) -> None:
    global _dsn
    _dsn = dsn
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)


def _connection() -> psycopg.Connection:
    global _conn
    if _conn is None or _conn.closed or _conn.broken:
        if _conn is not None:
            with contextlib.suppress(Exception):
                _conn.close()
        _conn = psycopg.connect(_dsn or "", application_name="swc api worker")
    return _conn


def _error(exc: BaseException) -> tuple:
    """A database or HTTP error as a picklable value (see :func:`_raise`)."""
    if isinstance(exc, HTTPException):
        return ("http", exc.status_code, exc.detail, dict(exc.headers or {}))
    return ("db", type(exc).__name__, str(exc))


def _raise(err: tuple) -> None:
    if err[0] == "http":
        raise HTTPException(err[1], err[2], headers=err[3] or None)
    cls = getattr(psycopg.errors, err[1], None)
    if not (isinstance(cls, type) and issubclass(cls, psycopg.Error)):
        cls = psycopg.OperationalError if err[1] == "OperationalError" else psycopg.Error
    raise cls(err[2])


def _run(fn: Callable[..., Any], timeout_ms: int, args: tuple) -> tuple:
    """In a worker: ``fn(conn, *args)`` in one transaction with ``timeout_ms`` as its
    statement timeout; ("ok", result) or ("err", error value)."""
    try:
        conn = _connection()
        with conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{timeout_ms}ms",))
            return ("ok", fn(conn, *args))
    except (psycopg.Error, HTTPException) as exc:
        return ("err", _error(exc))


def _ready() -> int:
    return os.getpid()


class HeavyWorkers:
    """A few worker processes of lower priority for expensive reads, started on first
    use; ``workers=0``: none (everything in the API process)."""

    def __init__(self, dsn: str, workers: int, nice: int = WORKER_NICE):
        self.dsn = dsn
        self.workers = workers
        self.nice = nice
        self._pool: ProcessPoolExecutor | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(self.dsn, self.nice),
        )
        try:
            pool.submit(_ready).result(timeout=60)  # a worker that cannot start fails here
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        return pool

    def _get(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._pool is not None or self.workers <= 0:
                return self._pool
            if self._failed_at is not None and monotonic() - self._failed_at < RETRY_START_S:
                return None
            try:
                self._pool = self._start()
                self._failed_at = None
            except Exception as exc:
                self._failed_at = monotonic()
                log.error(
                    "the API's worker processes could not start (%s); expensive reads are "
                    "done in the API process",
                    exc,
                )
            return self._pool

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def run(
        self,
        conn: psycopg.Connection,
        statement_timeout_s: float,
        fn: Callable[..., T],
        *args: Any,
    ) -> T:
        """``fn(conn, *args)``: in a worker (with a connection of its own), else on
        ``conn`` (the request's, its statement timeout already set). From a request
        thread: blocks until done."""
        pool = self._get()
        if pool is not None:
            try:
                kind, value = pool.submit(
                    _run, fn, round(statement_timeout_s * 1000), args
                ).result()
            except BrokenProcessPool:
                log.error("an API worker process died; starting new ones")
                self._drop(pool)
            else:
                if kind == "err":
                    _raise(value)
                return value
        return fn(conn, *args)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
