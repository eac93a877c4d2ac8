"""The HTTP API in a thread of `swc up` (uvicorn, no signal handlers of its own)."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from ..settings import Settings

log = logging.getLogger(__name__)


class ApiThread:
    def __init__(self, settings: Settings):
        from ..api import create_app

        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            timeout_graceful_shutdown=2,  # SSE streams never end by themselves
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="swc-api", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit:  # uvicorn exits when it cannot bind
            log.error("the HTTP API could not start (port in use?)")

    def start(self) -> ApiThread:
        serve_api_metrics(self.settings, self.app)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve_api_metrics(settings: Settings, app) -> None:
    """Serve the API's metrics (and the process's) on SWC_API_METRICS_PORT, unless 0."""
    from swc_ops import metrics

    if settings.api_metrics_port:
        try:
            metrics.serve(
                settings.api_metrics_port,
                settings.metrics_host,
                "SWC_API_METRICS_PORT",
                app.state.metrics,
                metrics.PROCESS,
            )
        except metrics.MetricsPortBusy as exc:
            raise SystemExit(f"Error: {exc}") from None


def start_api(settings: Settings) -> ApiThread:
    return ApiThread(settings).start()
