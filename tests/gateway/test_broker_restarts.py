"""Broker restarts where the order of reconnection is forced: the side that would lose
messages reconnects last, through a proxy the test holds closed.

Persistence is on (the repository's mosquitto.conf); each broker is stopped with
SIGTERM, which writes its sessions, and started again on the same port.
"""

from __future__ import annotations

from gateway.config import GatewayConfig
from gateway.service import Gateway
from ingest.settings import Settings
from tests.support.proxy import HoldingProxy
from tests.support.waiting import scalar

from .gwtest_support import Logger, gateway_options, row_message, wait_until

DEVICES = ["dam-601", "dam-602", "gauge-61"]
PER_MESSAGE = 25


def _publish(logger: Logger, root: str, messages: range) -> int:
    for m in messages:
        for device in DEVICES:
            logger.publish(
                f"{root}/{device}/telemetry",
                row_message(device, m + 1, m * PER_MESSAGE, PER_MESSAGE),
            )
    logger.flush()
    return len(messages) * len(DEVICES) * PER_MESSAGE


def _forwarded(gw: Gateway) -> int:
    return gw.queue.stats().counters.get("forwarded_readings", 0)


def test_central_broker_restart_with_the_gateway_back_before_the_consumer(
    tmp_path, brokers, root, db, start_consumer
):
    """The gateway's forwards are acknowledged by the restarted central broker while the
    consumer is still away: its persistent session keeps them, and each is stored once."""
    central = brokers("central").start()
    local = brokers("local").start()
    proxy = HoldingProxy(central.port)
    settings = Settings(
        _env_file=None,
        mqtt_url=proxy.url,
        topic_root=root,
        client_id="ingest-central",
        metrics_port=0,
        batch_max_latency_ms=50,
        data_dir=tmp_path,
    )
    consumer = start_consumer(settings, db)
    assert consumer.consumer.plan.mode == "plain"  # the default for one consumer
    gw = Gateway(
        GatewayConfig.model_validate(
            gateway_options(tmp_path, "gw-central", root, local.port, central.port)
        )
    ).start()
    logger = Logger(local.port, "loggers-central")
    try:
        wait_until(gw.local_connected.is_set, 10, "the gateway's local connection")
        first = _publish(logger, root, range(0, 10))
        wait_until(
            lambda: scalar(db, "SELECT count(*) FROM readings") == first, 30, "the first readings"
        )

        proxy.hold()  # the consumer is cut off and cannot come back yet
        wait_until(lambda: not consumer.consumer.connected.is_set(), 10, "the consumer cut off")
        central.stop()
        central.start()
        total = first + _publish(logger, root, range(10, 30))
        # the restarted broker acknowledged every forward before the consumer is back
        wait_until(lambda: _forwarded(gw) == total, 30, "the gateway to forward everything")
        assert scalar(db, "SELECT count(*) FROM readings") == first

        proxy.release()
        wait_until(
            lambda: scalar(db, "SELECT count(*) FROM readings") == total,
            30,
            "every reading in the database",
        )
        consumer.stop()
    finally:
        logger.close()
        gw.stop()
        proxy.close()
    assert scalar(db, "SELECT count(DISTINCT (stream_id, time)) FROM readings") == total
    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0
    assert consumer.consumer.metrics.readings_written._value.get() == total


def test_local_broker_restart_with_loggers_back_before_the_gateway(tmp_path, brokers, root):
    """The gateway's local intake is a plain persistent subscription: what loggers publish
    to the restarted local broker before the gateway reconnects is still forwarded."""
    local = brokers("local").start()
    upstream = brokers("upstream").start()
    proxy = HoldingProxy(local.port)
    options = gateway_options(tmp_path, "gw-local", root, proxy.port, upstream.port)
    gw = Gateway(GatewayConfig.model_validate(options)).start()
    logger = Logger(local.port, "loggers-local")
    try:
        wait_until(gw.local_connected.is_set, 10, "the gateway's local connection")
        first = _publish(logger, root, range(0, 5))
        wait_until(lambda: _forwarded(gw) == first, 30, "the first forwards")

        proxy.hold()
        wait_until(lambda: not gw.local_connected.is_set(), 10, "the gateway cut off")
        local.stop()
        local.start()
        logger.close()
        logger = Logger(local.port, "loggers-local")  # the logger is back first
        total = first + _publish(logger, root, range(5, 15))
        proxy.release()
        wait_until(lambda: _forwarded(gw) == total, 30, "every reading forwarded")
        counters = gw.queue.stats().counters
        assert counters["received_readings"] == total
        assert counters["rejected"] == 0
    finally:
        logger.close()
        gw.stop()
        proxy.close()
