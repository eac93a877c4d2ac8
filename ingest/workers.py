"""`swc ingest --workers N`: N consumer processes on the shared subscription, supervised.

One Python consumer is bound to one core (JSON decoding and COPY formatting
hold the GIL). Several processes in the same shared-subscription group split
the messages between them; each has its own persistent session
(``{client_id}-{i}``) and metrics port (``metrics_port + i``). A worker that
dies is restarted; SIGTERM or SIGINT drains every worker before exit.

The supervisor decides the subscription once, before any worker starts
(``ingest.subscription``): on a broker that drops shared subscriptions when
it restarts, several workers are refused with the fix in the message.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import threading
import time
from typing import Any

from .settings import Settings

log = logging.getLogger(__name__)


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s settings: its own session and port, in the shared group."""
    return settings.model_copy(
        update={
            "client_id": f"{settings.client_id}-{index}",
            "metrics_port": settings.metrics_port + index if settings.metrics_port else 0,
            "workers": 1,
            "subscription": "shared",
        }
    )


def run_one(settings: Settings, dsn: str) -> None:
    """One consumer in this process, with its QC re-evaluation and alert engine, until
    SIGTERM or SIGINT; then it drains. Exits 1 if the drain had to give up."""
    from . import qc
    from .consumer import Consumer, DrainAbandoned
    from .subscription import plan_for

    # decided before anything starts: raises SubscriptionRefused with the fix
    plan = None if settings.retire else plan_for(settings, settings.workers)
    consumer = Consumer(settings, dsn, plan=plan)
    if settings.metrics_port:
        from swc_ops.metrics import MetricsPortBusy

        try:
            consumer.metrics.serve(settings.metrics_port, settings.metrics_host)
        except MetricsPortBusy as exc:
            raise SystemExit(f"Error: {exc}") from None

    def on_signal(signum, frame):
        log.info("signal %s: draining", signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # QC flags re-evaluated with their neighbours, in a process logging as this one does
    extras = [qc.attach(consumer, dsn, settings.log_level, settings.log_format)]
    if settings.alerts:  # the alert engine on the consumer's after-commit hook
        from .alerting import attach

        extras.append(attach(consumer, settings, dsn))
    try:
        consumer.run()
    except DrainAbandoned as exc:
        log.error("%s", exc)
        sys.exit(1)
    finally:
        for extra in extras:
            extra.stop()


def _worker_main(settings_data: dict[str, Any], dsn: str) -> None:
    from .logs import setup_logging

    settings = Settings.model_validate(settings_data)
    setup_logging(settings.log_level, settings.log_format)
    run_one(settings, dsn)


def run_workers(settings: Settings, dsn: str) -> int:
    """Run ``settings.workers`` consumers until a signal; return the exit code.

    Raises ``SubscriptionRefused`` (a ValueError) before starting any worker when
    their shared subscription could lose messages on a broker restart."""
    from .subscription import plan_for

    plan = plan_for(settings, settings.workers)  # refuses, or logs the mode and why
    plan.log()
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    procs: dict[int, multiprocessing.process.BaseProcess] = {}

    def spawn(i: int) -> None:
        s = worker_settings(settings, i)
        p = ctx.Process(target=_worker_main, args=(s.model_dump(), dsn), name=f"swc-ingest-{i}")
        p.start()
        procs[i] = p
        log.info("worker started index=%d pid=%d client_id=%s", i, p.pid, s.client_id)

    def on_signal(signum, frame):
        log.info("signal %s: draining %d workers", signal.Signals(signum).name, len(procs))
        stopping.set()
        for p in procs.values():
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker drains and commits

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(1, settings.workers + 1):
        spawn(i)
    while not stopping.is_set():
        time.sleep(0.5)
        for i, p in list(procs.items()):
            if not p.is_alive() and not stopping.is_set():
                log.error("worker exited index=%d code=%s; restarting", i, p.exitcode)
                time.sleep(1.0)
                spawn(i)
    codes = []
    for p in procs.values():
        p.join(settings.drain_timeout_s + 10)
        if p.is_alive():
            p.kill()
            p.join()
        codes.append(p.exitcode)
    return 0 if all(c == 0 for c in codes) else 1
