"""The alert engine in a process of its own, fed by the consumer's after-commit hook.

In a thread of the consumer the engine's Python work holds the GIL that the
MQTT and writer threads wait for: at plateau scale (storm mode, ~1,000
messages a second) the writer stored only part of what arrived while the
engine ran. As a process it has a core of its own; the consumer only pickles
each committed batch onto a queue (never dropped: the engine merges what has
queued, so a backlog collapses into one pass over the sites it touched).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time

from ..settings import Settings

log = logging.getLogger(__name__)


def collections_for_passes() -> None:
    """The garbage collector tuned for the engine's process.

    A pass allocates many short-lived objects, and each full collection walked every
    object of the process (numpy, scipy, pydantic, the engine's caches): a quarter to a
    third of the engine's CPU at 5,000 dams. Collections are made rarer here, and
    :func:`freeze_long_lived` (after the first pass) leaves what lives on out of them."""
    gc.set_threshold(50_000, 20, 100)


def freeze_long_lived() -> None:
    """Leave the objects that exist now (modules, warm caches) out of later collections."""
    gc.collect()
    gc.freeze()


def _process_main(settings: Settings, dsn: str, batches, busy, running, parent: int) -> None:
    import signal

    from ..logs import setup_logging
    from .engine import AlertEngine

    # Ctrl-C reaches the whole process group: the consumer stops this process itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(settings.log_level, settings.log_format)  # the same settings as the consumer's
    engine = AlertEngine(settings, dsn)
    engine._queue = batches  # fed by the consumer process; None means stop
    process = engine.process
    collections_for_passes()
    frozen = False

    def timed(items):  # the seconds spent evaluating, for the benches
        nonlocal frozen
        started = time.monotonic()  # system-wide: the consumer's process reads it too
        running.value = started
        try:
            return process(items)
        finally:
            with busy.get_lock():
                busy.value += time.monotonic() - started
                running.value = 0.0
            if not frozen:
                freeze_long_lived()
                frozen = True

    engine.process = timed

    def orphaned() -> None:  # the consumer died without stopping us: stop too
        while not engine._stop.wait(2.0):
            if os.getppid() != parent:
                log.warning("the ingest consumer is gone; the alert engine stops")
                engine._stop.set()
                batches.put(None)
                return

    threading.Thread(target=orphaned, daemon=True).start()
    try:
        engine._run()
    finally:
        engine._stop.set()
        engine.stop(timeout=5.0)


class EngineProcess:
    """An ``AlertEngine`` in a child process; ``hook`` goes on ``Consumer.after_commit``."""

    def __init__(self, settings: Settings, dsn: str):
        ctx = multiprocessing.get_context("spawn")
        self._batches: multiprocessing.Queue = ctx.Queue()
        # this process's exit must not wait for the queue's feeder thread: with the engine
        # gone (terminated, or never stopped) it can block on a full pipe forever. stop()
        # still delivers everything: the engine reads the queue to its end before it exits
        self._batches.cancel_join_thread()
        self.busy = ctx.Value("d", 0.0)  # seconds spent evaluating (finished passes)
        self.running = ctx.Value("d", 0.0)  # time.monotonic() the running pass began, or 0
        self._proc = ctx.Process(
            target=_process_main,
            args=(settings, dsn, self._batches, self.busy, self.running, os.getpid()),
            name="swc-alerts",
            daemon=True,
        )

    def start(self) -> EngineProcess:
        from ..qc import start_ignoring_sigint

        start_ignoring_sigint(self._proc)
        return self

    def hook(self, batch) -> None:
        """``Consumer.after_commit`` hook: queue the batch for the engine's process."""
        self._batches.put(batch)

    def busy_s(self) -> float:
        """Seconds spent evaluating so far, the running pass included."""
        with self.busy.get_lock():
            since = self.running.value
            return self.busy.value + (time.monotonic() - since if since else 0.0)

    def backlog(self) -> int:
        """Batches queued and not yet taken by the engine (approximate)."""
        try:
            return self._batches.qsize()
        except NotImplementedError:  # macOS
            return -1

    def stop(self, timeout: float = 30.0) -> None:
        """Evaluate what is queued, then stop (terminated after ``timeout`` seconds)."""
        self._batches.put(None)
        self._proc.join(timeout)
        if self._proc.is_alive():
            log.warning("the alert engine did not stop within %.0f s; terminated", timeout)
            self._proc.terminate()
            self._proc.join()
        self._batches.close()
