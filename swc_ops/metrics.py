"""Prometheus metrics: one naming convention and one way to serve them, for every process.

Names are ``swc_<process>_<what>[_<unit>]`` (``swc_ingest_``, ``swc_qc_``,
``swc_webhook_``, ``swc_api_``, ``swc_gateway_``), in base units (seconds,
bytes); counters end in ``_total`` (prometheus_client adds it), timestamps
are ``..._timestamp_seconds`` (Unix time). Each process serves its metrics on
its own port, a setting (docs/operations.md).

``PROCESS`` holds the metrics a process has once (the webhook sender, the QC
re-evaluation, the API, the gateway); the consumer keeps its own registry (a
test may run several consumers in one process) and serves both.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PROCESS = CollectorRegistry()


class _Union(Collector):
    def __init__(self, registries):
        self._registries = registries

    def collect(self):
        for registry in self._registries:
            yield from registry.collect()


def combined(*registries: CollectorRegistry) -> CollectorRegistry:
    """A registry that exposes the metrics of all of ``registries``."""
    out = CollectorRegistry(auto_describe=False)
    out.register(_Union(registries))
    return out


class MetricsPortBusy(OSError):
    """The metrics port is taken; the message names the setting that moves it."""


def serve(port: int, host: str, setting: str, *registries: CollectorRegistry) -> None:
    """Serve ``registries`` (default: PROCESS) at http://host:port/metrics in a thread.

    ``setting`` names what sets the port (e.g. ``SWC_METRICS_PORT``) for the error
    raised when the port is busy."""
    registry = combined(*(registries or (PROCESS,)))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsPortBusy(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
            f"choose another port with {setting} (0 turns metrics off)"
        ) from None
    log.info("metrics http://%s:%d/metrics", host, port)
