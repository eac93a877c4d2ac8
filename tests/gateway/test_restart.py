"""A clean restart, on MQTT 3.1.1: what loggers publish while the gateway is down still arrives."""

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


def test_messages_published_while_the_gateway_is_stopped_arrive_after_restart(
    tmp_path, brokers, root
):
    local = brokers("local").start()
    upstream = brokers("upstream").start()
    collector = Collector(upstream.port, root)
    options = gateway_options(
        tmp_path,
        "gw-311",
        root,
        local.port,
        upstream.port,
        local={"protocol": "3.1.1"},
        upstream={"protocol": "3.1.1"},
        upstream_topic_root=f"up{root}",
    )
    collector_up = Collector(upstream.port, f"up{root}", client_id="collector-up")
    cfg = GatewayConfig.model_validate(options)
    device = "plot-7"
    logger = Logger(local.port, "logger-311")
    try:
        gw = Gateway(cfg).start()
        wait_until(gw.local_connected.is_set, 10, "the local connection")
        for m in range(10):
            logger.publish(f"{root}/{device}/telemetry", row_message(device, m, m * 10, 10))
        logger.flush()
        wait_until(lambda: collector_up.count() == 100, 20, "the first readings upstream")
        gw.stop()
        assert retained(upstream.port, f"up{root}/gw-311/status")["state"] == "offline"
        local_status = retained(local.port, f"{root}/gw-311/status")
        assert local_status["state"] == "offline"
        assert local_status["details"]["forwarded_readings"] == 100

        for m in range(10, 20):  # the gateway is down: the local broker keeps them for it
            logger.publish(f"{root}/{device}/telemetry", row_message(device, m, m * 10, 10))
        logger.flush()
        gw = Gateway(cfg).start()
        wait_until(lambda: collector_up.count() >= 200, 20, "the readings sent during the stop")
        gw.stop()
    finally:
        logger.close()
        collector.close()
        collector_up.close()
    assert sorted(collector_up.readings) == [reading_key(device, i) for i in range(200)]
    assert collector.count() == 0  # nothing under the local root upstream
    assert [m[2] for m in collector_up.messages] == list(range(1, len(collector_up.messages) + 1))
