"""The gateway's Prometheus metrics (``swc_gateway_*``), read from its queue and
connections at each scrape (docs/operations.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .service import Gateway

# queue counters (kept on disk, so they go on across restarts) -> metric, help
_COUNTERS = {
    "received_readings": ("swc_gateway_received_readings", "readings taken in and queued"),
    "forwarded_readings": (
        "swc_gateway_forwarded_readings",
        "readings acknowledged by the upstream broker",
    ),
    "forwarded_messages": (
        "swc_gateway_forwarded_messages",
        "messages acknowledged by the upstream broker",
    ),
    "rejected": ("swc_gateway_rejected", "messages or lines refused at intake"),
    "dropped_readings": ("swc_gateway_dropped_readings", "readings dropped: the queue was full"),
}


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def collect(self):
        gw = self.gateway
        stats = gw.queue.stats()
        for key, (name, doc) in _COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=stats.counters.get(key, 0))
        for name, doc, value in (
            ("swc_gateway_queue_depth", "readings not yet acknowledged upstream", stats.depth),
            ("swc_gateway_queue_bytes", "bytes used by the disk queue", stats.used_bytes),
            ("swc_gateway_queue_max_bytes", "the disk queue's limit", stats.max_bytes),
            (
                "swc_gateway_oldest_unsent_age_seconds",
                "age of the oldest reading not yet acknowledged upstream",
                stats.oldest_age_s(),
            ),
            (
                "swc_gateway_upstream_connected",
                "1 while connected to the upstream broker",
                float(gw.uplink_connected.is_set()),
            ),
            (
                "swc_gateway_local_connected",
                "1 while connected to the local broker",
                float(gw.local_connected.is_set()),
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


def registry_for(gateway: Gateway) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway))
    return registry
