"""Prometheus metrics of every process: names, labels, and what they say when idle."""

from __future__ import annotations

import socket
import time
import urllib.request
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swc_ops import metrics as ops


def samples(registry) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_metric_follows_the_naming_convention():
    import ingest.metrics
    import ingest.qc  # noqa: F401  (registers the QC collector)
    from ingest.metrics import IngestMetrics

    names = set()
    for registry in (ops.PROCESS, IngestMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
    assert names
    for name in names:
        assert name.startswith(("swc_ingest_", "swc_qc_", "swc_webhook_")), name
    assert "swc_ingest_last_commit_timestamp_seconds" in names
    assert {"swc_qc_flags_changed", "swc_webhook_attempts"} <= names


def test_served_port_shows_both_registries_and_a_busy_port_names_the_setting():
    own = CollectorRegistry()
    Counter("swc_test_things", "things", registry=own).inc(3)
    port = free_port()
    ops.serve(port, "127.0.0.1", "SWC_METRICS_PORT", own, ops.PROCESS)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "swc_test_things_total 3.0" in text
    assert "swc_webhook_attempts_total" in text
    with pytest.raises(ops.MetricsPortBusy, match=f"127.0.0.1:{port}.*SWC_METRICS_PORT"):
        ops.serve(port, "127.0.0.1", "SWC_METRICS_PORT", own)


def test_last_commit_timestamp_says_how_long_nothing_was_stored(
    db, broker, settings_for, start_consumer, topic_root
):
    """The lag gauge keeps its last value when data stops; the timestamp does not lie."""
    from tests.support.mqtt import Publisher
    from tests.support.payloads import MINIMAL
    from tests.support.waiting import scalar, wait_for

    m = start_consumer(settings_for(), db).consumer.metrics
    assert samples(m.registry)["swc_ingest_last_commit_timestamp_seconds"] == 0
    before = time.time()
    with Publisher(broker.url) as pub:
        pub.publish_all([(f"{topic_root}/dam-017/telemetry", MINIMAL)])
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2, what="the readings")
    wait_for(lambda: samples(m.registry)["swc_ingest_last_commit_timestamp_seconds"] > 0)
    got = samples(m.registry)
    assert before - 1 <= got["swc_ingest_last_commit_timestamp_seconds"] <= time.time() + 1
    assert before - 1 <= got["swc_ingest_last_message_timestamp_seconds"] <= time.time() + 1


def test_qc_counters_of_a_reevaluator_show_in_the_process_registry(db):
    from ingest.qc import QCReevaluator

    before = samples(ops.PROCESS).get("swc_qc_passes_total", 0)
    qc = QCReevaluator(db, interval_s=0.05).start()
    try:
        now = datetime.now(UTC)
        qc.hook(SimpleNamespace(streams={999_999: (now, now)}))  # no such stream: a pass
        deadline = time.monotonic() + 10
        while samples(ops.PROCESS)["swc_qc_passes_total"] <= before:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        qc.stop()
    got = samples(ops.PROCESS)
    assert got["swc_qc_last_pass_timestamp_seconds"] > time.time() - 60


def test_webhook_attempts_are_counted_by_outcome():
    from ingest import metrics

    before = samples(ops.PROCESS)
    metrics.record("retry", 0.2)
    metrics.record("delivered", 0.1)
    got = samples(ops.PROCESS)
    key = 'swc_webhook_attempts_total{outcome="%s"}'
    assert got[key % "retry"] == before[key % "retry"] + 1
    assert got[key % "delivered"] == before[key % "delivered"] + 1
    assert got["swc_webhook_last_delivered_timestamp_seconds"] > time.time() - 60


def test_api_counts_requests_by_route_template_and_status(db):
    from ingest.api import create_app
    from ingest.settings import Settings

    app = create_app(Settings(_env_file=None, database_url=db))
    with TestClient(app) as client:
        client.get("/health")
        client.get("/sites/nowhere-1")  # 401 without a key
        client.get("/sites/nowhere-2")
        client.get("/no/such/path")
    got = samples(app.state.metrics)
    sites = {k: v for k, v in got.items() if k.startswith("swc_api_http_requests_total")}
    assert any('handler="/health"' in k and 'status="200"' in k for k in sites)
    site_key = next(k for k in sites if 'handler="/sites/{site_id}"' in k)
    assert sites[site_key] == 2 and 'status="401"' in site_key
    assert not any("nowhere" in k or "/no/such" in k for k in got)
    assert any(k.startswith("swc_api_http_request_duration_seconds") for k in got)
