"""Disk budget exceeded during an outage: the oldest readings go, are counted, the newest arrive."""

from __future__ import annotations

from gateway.config import GatewayConfig
from gateway.service import Gateway

from .gwtest_support import (
    Collector,
    Logger,
    gateway_options,
    reading_key,
    retained,
    row_message,
    wait_until,
)


def test_budget_drops_the_oldest_counts_them_and_keeps_the_newest(tmp_path, brokers, root):
    local = brokers("local").start()
    upstream = brokers("upstream").start()
    collector = Collector(upstream.port, root)
    upstream.stop()

    options = gateway_options(
        tmp_path,
        "gw-budget",
        root,
        local.port,
        upstream.port,
        queue={"max_bytes": 1024 * 1024},
        upstream={"max_inflight": 4},
        forward={"message_max_bytes": 64 * 1024},
        status={"interval_s": 0.5},
    )
    gw = Gateway(GatewayConfig.model_validate(options)).start()
    device, per_message, messages = "dam-201", 200, 200  # 40,000 readings, ~2 MiB queued
    total = per_message * messages
    try:
        wait_until(gw.local_connected.is_set, 10, "the local connection")
        logger = Logger(local.port, "logger-budget")
        for m in range(messages):
            logger.publish(
                f"{root}/{device}/telemetry", row_message(device, m, m * per_message, per_message)
            )
            logger.flush()  # one logger, in order
        logger.close()
        wait_until(
            lambda: gw.queue.stats().counters["received_readings"] == total,
            60,
            "every reading received",
        )
        stats = gw.queue.stats()
        dropped = stats.counters["dropped_readings"]
        assert 0 < dropped < total
        assert stats.depth == total - dropped
        assert stats.used_bytes <= 1024 * 1024
        # reported on the status topic (local broker; the uplink is down)
        wait_until(
            lambda: (
                retained(local.port, f"{root}/gw-budget/status")["details"]["dropped"] == dropped
            ),
            10,
            "the dropped count in the status",
        )

        upstream.start()
        wait_until(lambda: gw.queue.depth == 0, 60, "the queue to drain")
        wait_until(lambda: collector.count() >= total - dropped, 30, "the survivors upstream")
    finally:
        gw.stop()
        collector.close()

    # exactly the newest readings survived: the last (total - dropped), each once, in order
    assert sorted(collector.readings) == [reading_key(device, i) for i in range(dropped, total)]
    times = collector.first_arrival_order()[f"{device}/stage_m"]
    assert times == sorted(times)
    status = retained(upstream.port, f"{root}/gw-budget/status")
    assert status["details"]["dropped"] == dropped
