"""The gateway killed with SIGKILL mid-forwarding and restarted: nothing is lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from .gwtest_support import (
    Collector,
    Logger,
    gateway_options,
    reading_key,
    retained,
    row_message,
    wait_until,
    write_config,
)

SWC = Path(sys.executable).with_name("swc")
DEVICES = ["dam-101", "dam-102", "cistern-7"]


def _spawn(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SWC), "gateway", "run", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def _counter(db: Path, name: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return row[0] if row else 0


def test_sigkill_mid_forwarding_loses_nothing(tmp_path, brokers, root):
    local = brokers("local").start()
    upstream = brokers("upstream").start()
    collector = Collector(upstream.port, root)
    options = gateway_options(
        tmp_path,
        "gw-kill",
        root,
        local.port,
        upstream.port,
        # small messages and a small window: many acknowledgements in flight at the kill
        forward={"batch_max_readings": 50, "batch_max_age_s": 0.1},
        upstream={"max_inflight": 4},
    )
    config = write_config(tmp_path / "gw.yaml", **options)
    log = tmp_path / "gateway.log"
    db = tmp_path / "gw" / "queue.db"

    per_message, messages = 50, 120  # 3 devices x 120 x 50 = 18,000 readings
    total = len(DEVICES) * per_message * messages
    proc = _spawn(config, log)
    try:
        # the gateway's first start creates its local session; its status says it is there
        assert retained(local.port, f"{root}/gw-kill/status")["state"] == "online"
        logger = Logger(local.port, "loggers-kill")
        published = threading.Event()

        def publish_all() -> None:
            for m in range(messages):
                for device in DEVICES:
                    payload = row_message(device, m + 1, m * per_message, per_message)
                    logger.publish(f"{root}/{device}/telemetry", payload)
                logger.flush()
                time.sleep(0.01)
            published.set()

        publisher = threading.Thread(target=publish_all)
        publisher.start()
        # kill while readings are flowing upstream and more are still arriving locally
        wait_until(lambda: collector.count() >= total // 5, 60, "forwarding to be under way")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        at_kill = collector.count()
        assert at_kill < total, "the kill came too late to test anything"
        # the last will tells upstream the gateway is gone
        wait_until(
            lambda: any(s["state"] == "offline" for _t, s in list(collector.statuses)),
            10,
            "the last will (offline status)",
        )
        time.sleep(0.5)  # loggers keep publishing to the local broker meanwhile
        proc = _spawn(config, log)
        publisher.join(60)
        assert published.is_set()
        logger.close()
        wait_until(lambda: collector.distinct_count() >= total, 90, "every reading upstream")
        wait_until(lambda: collector.statuses[-1][1]["state"] == "online", 10, "online status")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        collector.close()

    expected = {reading_key(d, i) for d in DEVICES for i in range(messages * per_message)}
    assert collector.distinct() == expected, "a reading was lost"
    duplicates = collector.count() - total
    print(f"readings={total} arrivals={collector.count()} duplicates={duplicates}")
    for key, times in collector.first_arrival_order().items():
        assert times == sorted(times), f"{key} out of order"
    # a clean stop leaves an empty queue and says so in the log
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert _counter(db, "dropped_readings") == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert os.path.getsize(log) > 0
