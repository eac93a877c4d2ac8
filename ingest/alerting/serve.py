"""The HTTP API in a thread of `swc up` (uvicorn, no signal handlers of its own)."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from ..settings import Settings

log = logging.getLogger(__name__)


class ApiThread:
    """The API on a socket bound at once, so a taken port fails here (PortInUse), in the
    caller's thread, before anything says where the API is."""

    def __init__(self, settings: Settings):
        from ..api import create_app
        from ..ports import bind

        self.sock = bind(settings.api_host, settings.api_port, "HTTP API", "api_port", "0: no API")
        self.settings = settings

        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            timeout_graceful_shutdown=2,  # a safety net: stop() ends the event streams first
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="swc-api", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except SystemExit:  # uvicorn exits when it cannot start
            log.error("the HTTP API could not start")

    def start(self) -> ApiThread:
        serve_api_metrics(self.settings, self.app)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            self.stop()
            raise RuntimeError("the HTTP API did not start; its error is logged above")
        return self

    def stop(self) -> None:
        from ..api.app import stop_streams

        stop_streams(self.app)  # event streams end cleanly, not cut at the timeout
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(10)
        self.sock.close()


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
