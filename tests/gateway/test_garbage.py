"""Garbage on the local topics or the line source never stops forwarding; it is logged and counted."""

from __future__ import annotations

import json

from gateway.config import GatewayConfig
from gateway.service import Gateway
from protocol.messages import MAX_PAYLOAD_BYTES

from .gwtest_support import (
    Collector,
    Logger,
    gateway_options,
    reading_key,
    row_message,
    wait_until,
)

GARBAGE = [
    (b"", "empty_payload"),
    (b"not json at all", "not_json"),
    (b"\xff\xfe\x00binary", "not_utf8"),
    (b'{"device": "dam-301", "seq": 1}', "unknown_form"),
    (
        b'{"device": "dam-301", "seq": 1, "sent_at": "2026-07-21T00:00:00Z", '
        b'"readings": [{"t": "2026-07-21T00:00:00", "ch": "stage_m", "v": 1}]}',
        "naive_time",
    ),
    (
        b'{"device": "dam-301", "seq": 1, "sent_at": "2026-07-21T00:00:00Z", '
        b'"readings": [{"t": "2026-07-21T00:00:00Z", "ch": "stage_m", "v": NaN}]}',
        "non_finite",
    ),
    (b"[" * (MAX_PAYLOAD_BYTES + 1), "too_large"),
]


def test_garbage_is_rejected_logged_and_counted_and_valid_data_flows(tmp_path, brokers, root):
    local = brokers("local").start()
    upstream = brokers("upstream").start()
    collector = Collector(upstream.port, root)
    lines = tmp_path / "rtu.csv"
    lines.write_text("")
    options = gateway_options(
        tmp_path,
        "gw-garbage",
        root,
        local.port,
        upstream.port,
        line_sources=[{"path": str(lines), "name": "rtu", "poll_s": 0.05}],
    )
    gw = Gateway(GatewayConfig.model_validate(options)).start()
    device = "dam-301"
    try:
        wait_until(gw.local_connected.is_set, 10, "the local connection")
        logger = Logger(local.port, "logger-garbage")
        expected_rejects = 0
        for m in range(20):
            logger.publish(f"{root}/{device}/telemetry", row_message(device, m, m * 10, 10))
            payload, _code = GARBAGE[m % len(GARBAGE)]
            logger.publish(f"{root}/{device}/telemetry", payload)
            expected_rejects += 1
        # a valid message on another logger's topic: not forwarded
        logger.publish(f"{root}/dam-999/telemetry", row_message(device, 99, 5000, 1))
        expected_rejects += 1
        logger.close()

        with lines.open("a") as f:
            f.write("device,time,channel,value,quality\n# a comment\n\n")
            f.write("rg-1,2026-07-21T00:00:00Z,rain_mm,0.2\n")
            f.write("rg-1,2026-07-21T00:05:00Z,rain_mm,oops\n")  # not a number
            f.write("rg-1,2026-07-21T00:10:00Z,rain_mm\n")  # missing field
            f.write("\x00\x01 line noise \xff\n")
            f.write("rg-1,2026-07-21T00:15:00,rain_mm,0.4\n")  # naive time
            f.write("rg 1,2026-07-21T00:20:00Z,rain_mm,0.4\n")  # bad device id
            f.write("rg-1,2026-07-21T00:25:00Z,rain_mm,0.6,3\n")
            f.write("rg-1,2026-07-21T00:30:00Z,rain_mm,0.8,7\n")  # bad quality flag
            f.write("rg-1,2026-07-21T00:35:00Z,rain_mm,1.0\r\n")
        expected_rejects += 6

        valid = 20 * 10 + 3
        wait_until(lambda: collector.count() >= valid, 30, "the valid readings upstream")
        wait_until(
            lambda: gw.queue.stats().counters["rejected"] == expected_rejects,
            10,
            "every reject counted",
        )
        assert gw.status().details["rejected"] == expected_rejects
    finally:
        gw.stop()
        collector.close()

    assert collector.count() == valid
    got = collector.distinct()
    assert {reading_key(device, i) for i in range(200)} <= got
    rain = sorted(t.minute for d, ch, t in got if d == "rg-1")
    assert rain == [0, 25, 35]

    from gateway.queue import DiskQueue

    q = DiskQueue(tmp_path / "gw" / "queue.db")
    try:
        log = q.rejects(100)
    finally:
        q.close()
    assert len(log) == expected_rejects
    codes = {entry["code"] for entry in log}
    assert {code for _p, code in GARBAGE} <= codes
    assert {"device_mismatch", "wrong_type", "bad_line", "not_utf8", "naive_time"} <= codes
    assert {"bad_identifier", "bad_value"} <= codes
    by_source = {entry["source"] for entry in log}
    assert by_source == {"mqtt", "line:rtu"}
    line_reject = next(e for e in log if "oops" in e["payload"])
    assert "oops" in line_reject["message"]
    json.dumps(log)  # the reject log is plain JSON-able data
