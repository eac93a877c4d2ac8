"""Uplink outages with two real brokers: everything queued is delivered once, in order."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import GatewayConfig
from gateway.service import Gateway

from .gwtest_support import (
    Collector,
    Logger,
    gateway_options,
    reading_key,
    row_message,
    wait_until,
)

DEVICES = [f"dam-{i:03d}" for i in range(5)]


def test_outage_of_50000_readings_all_arrive_once_in_order(tmp_path, brokers, root):
    local = brokers("local").start()
    upstream = brokers("upstream").start()
    collector = Collector(upstream.port, root)
    upstream.stop()  # uplink down; the collector's session survives in the broker's persistence

    cfg = GatewayConfig.model_validate(
        gateway_options(tmp_path, "gw-1", root, local.port, upstream.port)
    )
    gw = Gateway(cfg).start()
    try:
        wait_until(gw.local_connected.is_set, 10, "the local connection")
        logger = Logger(local.port, "loggers")
        per_message, messages = 100, 100  # 5 devices x 100 messages x 100 readings = 50,000
        for m in range(messages):
            for device in DEVICES:
                payload = row_message(device, m + 1, m * per_message, per_message)
                logger.publish(f"{root}/{device}/telemetry", payload)
            if m % 20 == 0:
                logger.flush()
        logger.close()
        total = len(DEVICES) * messages * per_message
        wait_until(lambda: gw.queue.depth == total, 60, "all readings in the disk queue")
        assert collector.count() == 0
        assert not gw.uplink_connected.is_set()
        assert gw.status().details["uplink"] == "unreachable"  # never reached since start
        assert gw.status().details["queue_depth"] == total

        upstream.start()  # uplink back, same port
        wait_until(lambda: collector.count() >= total, 120, "all readings upstream")
        wait_until(lambda: gw.queue.depth == 0, 30, "an empty queue")

        readings = list(collector.readings)
        assert len(readings) == total, "each reading arrives exactly once"
        expected = {reading_key(d, i) for d in DEVICES for i in range(messages * per_message)}
        assert set(readings) == expected
        for key, times in collector.first_arrival_order().items():
            assert times == sorted(times), f"{key} out of order"
        # one device per message, on the gateway's own topic, seq counting up by one per device
        seqs: dict[str, list[int]] = {}
        for topic, device, seq, _n in collector.messages:
            assert topic == f"{root}/gw-1/telemetry"
            seqs.setdefault(device, []).append(seq)
        for device, got in seqs.items():
            assert got == list(range(1, len(got) + 1)), device
        stats = gw.queue.stats()
        assert stats.counters["forwarded_readings"] == total
        assert stats.counters["dropped_readings"] == 0
    finally:
        gw.stop()
        collector.close()

    # clean stop: the retained status upstream says offline
    got = {}
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, msg: got.setdefault("status", json.loads(msg.payload))
    sub.connect("127.0.0.1", upstream.port)
    sub.subscribe(f"{root}/gw-1/status", qos=1)
    sub.loop_start()
    try:
        wait_until(lambda: "status" in got, 10, "the retained status")
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert got["status"]["device"] == "gw-1"
    assert got["status"]["state"] == "offline"


def test_uplink_flapping_mid_forwarding_loses_nothing_and_keeps_order(tmp_path, brokers, root):
    """The broker restarts three times while messages are in flight: paho resends them."""
    local = brokers("local").start()
    upstream = brokers("upstream").start()
    collector = Collector(upstream.port, root)
    options = gateway_options(
        tmp_path,
        "gw-flap",
        root,
        local.port,
        upstream.port,
        forward={"batch_max_readings": 20, "batch_max_age_s": 0.05},
        upstream={"max_inflight": 8},
    )
    gw = Gateway(GatewayConfig.model_validate(options)).start()
    devices = DEVICES[:3]
    per_message, messages = 20, 150  # 9,000 readings in 450 small upstream messages or more
    total = len(devices) * per_message * messages
    try:
        wait_until(gw.local_connected.is_set, 10, "the local connection")
        logger = Logger(local.port, "loggers-flap")
        for m in range(messages):
            for device in devices:
                payload = row_message(device, m + 1, m * per_message, per_message)
                logger.publish(f"{root}/{device}/telemetry", payload)
        logger.close()
        for _ in range(3):
            before = collector.count()
            wait_until(lambda b=before: collector.count() > b, 30, "forwarding to resume")
            upstream.stop()
            upstream.start()
        wait_until(lambda: collector.distinct_count() >= total, 60, "every reading upstream")
        wait_until(lambda: gw.queue.depth == 0, 30, "an empty queue")
    finally:
        gw.stop()
        collector.close()
    expected = {reading_key(d, i) for d in devices for i in range(messages * per_message)}
    assert collector.distinct() == expected
    for key, times in collector.first_arrival_order().items():
        assert times == sorted(times), f"{key} out of order"
