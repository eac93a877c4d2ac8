"""Gateway -> upstream broker -> the real ingest consumer -> PostgreSQL: accepted, owned, idempotent."""

from __future__ import annotations

from gateway.config import GatewayConfig
from gateway.service import Gateway
from tests.support.waiting import scalar

from .gwtest_support import T0, Logger, gateway_options, row_message, wait_until

DEVICES = ["dam-501", "dam-502", "gauge-9"]


def test_forwarded_readings_land_once_in_the_database(
    tmp_path, brokers, broker, db, topic_root, settings_for, start_consumer
):
    local = brokers("local").start()
    consumer = start_consumer(settings_for(), db)
    options = gateway_options(tmp_path, "gw-e2e", topic_root, local.port, broker.port)
    gw = Gateway(GatewayConfig.model_validate(options)).start()
    per_message, messages = 50, 20
    total = len(DEVICES) * per_message * messages
    try:
        wait_until(gw.local_connected.is_set, 10, "the local connection")
        logger = Logger(local.port, "loggers-e2e")
        payloads = [
            (device, row_message(device, m + 1, m * per_message, per_message))
            for m in range(messages)
            for device in DEVICES
        ]
        for device, payload in payloads:
            logger.publish(f"{topic_root}/{device}/telemetry", payload)
        # a logger that missed its acknowledgements sends a third of them again
        for device, payload in payloads[::3]:
            logger.publish(f"{topic_root}/{device}/telemetry", payload)
        logger.close()
        wait_until(
            lambda: gw.queue.stats().counters["forwarded_readings"] == total + total // 3,
            30,
            "the gateway to forward everything, repeats included",
        )
        wait_until(
            lambda: scalar(db, "SELECT count(*) FROM readings") == total,
            30,
            "every reading in the database",
        )
    finally:
        gw.stop()
        consumer.stop()

    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0
    owners = scalar(
        db,
        "SELECT array_agg(DISTINCT gateway_id) FROM devices WHERE id = ANY(%s)",
        (DEVICES,),
    )
    assert owners == ["gw-e2e"]
    first = scalar(
        db,
        "SELECT min(r.time) FROM readings r JOIN streams s ON s.id = r.stream_id "
        "WHERE s.device_id = %s AND s.channel = 'stage_m'",
        ("dam-501",),
    )
    assert first == T0  # sample times unchanged
    last_seq = scalar(db, "SELECT last_seq FROM devices WHERE id = %s", ("dam-501",))
    assert last_seq == gw_next_seq(tmp_path, "dam-501") - 1


def gw_next_seq(tmp_path, device: str) -> int:
    from gateway.queue import DiskQueue

    q = DiskQueue(tmp_path / "gw" / "queue.db")
    try:
        return q.device_seqs()[device]
    finally:
        q.close()
