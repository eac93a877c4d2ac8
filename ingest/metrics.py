"""Counters of the consumer, exposed for Prometheus on an HTTP port (``SWC_METRICS_PORT``),
with the metrics of the rest of its process (QC re-evaluation, webhooks: ``swc_ops.metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from swc_ops import metrics as ops


class IngestMetrics:
    """One set of ingest counters in its own registry (several consumers may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_received = Counter(
            "swc_ingest_messages_received", "MQTT messages received", registry=r
        )
        self.readings_received = Counter(
            "swc_ingest_readings_received", "valid readings decoded from messages", registry=r
        )
        self.readings_written = Counter(
            "swc_ingest_readings_written", "readings newly stored", registry=r
        )
        self.readings_duplicate = Counter(
            "swc_ingest_readings_duplicate", "readings already stored (redelivered)", registry=r
        )
        self.dead_letters = Counter(
            "swc_ingest_dead_letters", "messages dead-lettered, by error code", ["code"], registry=r
        )
        self.db_errors = Counter(
            "swc_ingest_db_errors", "failed batch writes (retried)", registry=r
        )
        self.retained_cleared = Counter(
            "swc_ingest_retained_cleared",
            "retained telemetry messages deleted at the broker after they were stored",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "swc_ingest_batch_seconds",
            "time from a batch's first message to its commit",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.batch_readings = Histogram(
            "swc_ingest_batch_readings",
            "readings per committed batch",
            buckets=(1, 10, 100, 1000, 5000, 10_000, 50_000),
            registry=r,
        )
        self.inbox = Gauge(
            "swc_ingest_inbox_messages", "messages received, not yet batched", registry=r
        )
        self.lag_seconds = Gauge(
            "swc_ingest_lag_seconds",
            "at the last commit: time from the batch's newest message's arrival to its commit "
            "(keeps its value while nothing arrives; see swc_ingest_last_commit_timestamp_seconds)",
            registry=r,
        )
        self.last_commit = Gauge(
            "swc_ingest_last_commit_timestamp_seconds",
            "Unix time of the last committed batch (alert on time() minus this)",
            registry=r,
        )
        self.last_message = Gauge(
            "swc_ingest_last_message_timestamp_seconds",
            "Unix time the last MQTT message was received",
            registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve these counters and the process's others (QC, webhooks) on ``port``."""
        ops.serve(port, host, "SWC_METRICS_PORT", self.registry, ops.PROCESS)

    def snapshot(self) -> dict[str, float]:
        """Current counter values by name (for logs and tests)."""
        out: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = sample.name.removeprefix("swc_ingest_").removesuffix("_total")
                    if sample.labels:
                        key += "{" + ",".join(f"{k}={v}" for k, v in sample.labels.items()) + "}"
                    out[key] = sample.value
        return out


# --- the webhook sender (ingest/alerting/notify.py), once per process --------------
_WEBHOOK_ATTEMPTS = Counter(
    "swc_webhook_attempts",
    "webhook delivery attempts by outcome: delivered, retry (failed, tried again later), "
    "failed (failed, given up)",
    ["outcome"],
    registry=ops.PROCESS,
)
_WEBHOOK_SECONDS = Histogram(
    "swc_webhook_attempt_seconds",
    "duration of one webhook delivery attempt",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=ops.PROCESS,
)
_WEBHOOK_LAST = Gauge(
    "swc_webhook_last_delivered_timestamp_seconds",
    "Unix time of the last delivered webhook",
    registry=ops.PROCESS,
)
for _outcome in ("delivered", "retry", "failed"):
    _WEBHOOK_ATTEMPTS.labels(outcome=_outcome)


def record(outcome: str, seconds: float) -> None:
    """Count one webhook delivery attempt."""
    _WEBHOOK_ATTEMPTS.labels(outcome=outcome).inc()
    _WEBHOOK_SECONDS.observe(seconds)
    if outcome == "delivered":
        _WEBHOOK_LAST.set_to_current_time()
