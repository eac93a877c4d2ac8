"""Reading sheets in worker processes: a large or hostile sheet costs the API's
process no CPU time (no GIL held while ordinary requests wait), the workers run
at a lower priority, and a worker that dies (out of memory) costs one import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Literal

from .sheets import ReadSheet, SheetError, read_sheet

log = logging.getLogger(__name__)

WORKER_NICE = 10  # below the API's own threads


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)


class SheetReaders:
    """A small pool of sheet-reading processes, started on first use."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_lower_priority,
                )
            return self._pool

    async def read(self, data: bytes, fmt: Literal["csv", "json"]) -> ReadSheet:
        """The sheet read and grouped in a worker process. Raises SheetError."""
        pool = self._get()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, read_sheet, data, fmt)
        except BrokenProcessPool:
            log.error("a sheet reader died (out of memory?); starting new ones")
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise SheetError("the sheet could not be read: its reader stopped") from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
