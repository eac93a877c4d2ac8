"""Nothing lost, nothing doubled: SIGKILLed consumers, a restarted database, SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ingest.broker import MosquittoProcess
from ingest.store.migrate import migrate
from tests.support.mqtt import Publisher
from tests.support.payloads import row_message
from tests.support.pgserver import PrivatePostgres, find_bindir
from tests.support.waiting import count_when_up, scalar, wait_for

T0 = datetime(2026, 7, 1, tzinfo=UTC)
TOTAL = 100_000
PER_MESSAGE = 60
DEVICES = 20


def _messages(root: str) -> list[tuple[str, bytes]]:
    """100,000 readings: 20 loggers, one reading a minute each, 60 per message."""
    out = []
    per_device = TOTAL // DEVICES
    for d in range(DEVICES):
        device = f"nl-{d:02d}"
        for seq, first in enumerate(range(0, per_device, PER_MESSAGE)):
            n = min(PER_MESSAGE, per_device - first)
            readings = [
                {
                    "t": (T0 + timedelta(minutes=first + i)).isoformat(),
                    "ch": "stage_m",
                    "v": first + i,
                }
                for i in range(n)
            ]
            out.append(
                (
                    f"{root}/{device}/telemetry",
                    json.dumps(row_message(device, seq, readings)).encode(),
                )
            )
    # interleave the devices as a real county would
    out.sort(key=lambda item: (json.loads(item[1])["seq"], item[0]))
    return out


def _spawn(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "swc_cli", "ingest"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).parents[2],
    )


@pytest.fixture
def private_pg():
    if find_bindir() is None:
        pytest.skip("no PostgreSQL server binaries to run a private, restartable server")
    pg = PrivatePostgres().init().start()
    yield pg
    pg.destroy()


@pytest.mark.slow
def test_100k_readings_survive_two_sigkills_and_a_database_restart(
    private_pg, tmp_path, topic_root
):
    dsn = private_pg.dsn
    migrate(dsn, "off")
    broker = MosquittoProcess(tmp_path / "broker").start()
    log = tmp_path / "ingest.log"
    env = {
        **os.environ,
        "SWC_DATABASE_URL": dsn,
        "SWC_MQTT_URL": broker.url,
        "SWC_TOPIC_ROOT": topic_root,
        "SWC_CLIENT_ID": "noloss-1",
        "SWC_METRICS_PORT": "0",
        "SWC_BATCH_MAX_LATENCY_MS": "50",
    }
    count_sql = "SELECT count(*) FROM readings r JOIN streams s ON s.id = r.stream_id WHERE s.device_id LIKE 'nl-%'"
    probe_topic = f"{topic_root}/probe/telemetry"
    consumer = _spawn(env, log)
    try:
        with Publisher(broker.url) as pub:
            # The first consumer is subscribed once a probe message is stored.
            def probe_stored() -> bool:
                pub.publish_all([(probe_topic, json.dumps(row_message("probe", 0)).encode())])
                return count_when_up(dsn, "SELECT count(*) FROM readings") > 0

            wait_for(probe_stored, timeout=30, interval=0.5, what="consumer subscribed")

            messages = _messages(topic_root)
            assert sum(len(json.loads(p)["readings"]) for _, p in messages) == TOTAL
            done = threading.Event()

            def publish() -> None:
                for i in range(0, len(messages), 20):  # about 400 messages/s
                    pub.publish_all(messages[i : i + 20])
                    time.sleep(0.05)
                done.set()

            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()

            wait_for(lambda: count_when_up(dsn, count_sql) >= 10_000, timeout=60, what="10k rows")
            consumer.send_signal(signal.SIGKILL)  # first kill, mid-stream
            consumer.wait(10)
            time.sleep(0.5)
            consumer = _spawn(env, log)

            wait_for(lambda: count_when_up(dsn, count_sql) >= 35_000, timeout=60, what="35k rows")
            private_pg.restart()  # the database goes away under the consumer and comes back

            wait_for(lambda: count_when_up(dsn, count_sql) >= 60_000, timeout=60, what="60k rows")
            consumer.send_signal(signal.SIGKILL)  # second kill
            consumer.wait(10)
            time.sleep(0.5)
            consumer = _spawn(env, log)

            publisher.join(120)
            assert done.is_set(), "publisher did not finish"
        wait_for(
            lambda: count_when_up(dsn, count_sql) == TOTAL, timeout=120, what="all 100,000 readings"
        )
        time.sleep(1.0)  # anything late would show up as an extra row
        assert scalar(dsn, count_sql) == TOTAL
        with psycopg.connect(dsn) as conn:
            per_device = conn.execute(
                "SELECT s.device_id, count(*), min(r.time), max(r.time), sum(r.value) FROM readings r "
                "JOIN streams s ON s.id = r.stream_id WHERE s.device_id LIKE 'nl-%' GROUP BY 1 ORDER BY 1"
            ).fetchall()
            dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        n = TOTAL // DEVICES
        assert len(per_device) == DEVICES
        for _device, count, first, last, total in per_device:
            assert count == n
            assert first == T0 and last == T0 + timedelta(minutes=n - 1)
            assert total == n * (n - 1) / 2
        assert dead == 0
        text = log.read_text()
        assert "database write failed; retrying" in text, "the restart was not seen by the consumer"
    finally:
        if consumer.poll() is None:
            consumer.send_signal(signal.SIGTERM)
            assert consumer.wait(30) == 0
        broker.stop()


def test_sigterm_drains_and_commits_before_exit(db, broker, topic_root, tmp_path):
    """With a 30 s batch age, only the drain can have committed the rows before exit."""
    env = {
        **os.environ,
        "SWC_DATABASE_URL": db,
        "SWC_MQTT_URL": broker.url,
        "SWC_TOPIC_ROOT": topic_root,
        "SWC_CLIENT_ID": "drain-1",
        "SWC_METRICS_PORT": "0",
        "SWC_BATCH_MAX_LATENCY_MS": "30000",
        "SWC_LOG_LEVEL": "DEBUG",
    }
    log = tmp_path / "ingest.log"
    consumer = _spawn(env, log)
    try:
        wait_for(lambda: "mqtt connected" in log.read_text(), timeout=20, what="connect")
        time.sleep(0.5)  # SUBACK
        with Publisher(broker.url) as pub:
            pub.publish_all(
                (f"{topic_root}/d{i}/telemetry", json.dumps(row_message(f"d{i}", i)).encode())
                for i in range(25)
            )
        time.sleep(0.5)
        assert scalar(db, "SELECT count(*) FROM readings") == 0  # still batching
        started = time.monotonic()
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(20) == 0
        assert time.monotonic() - started < 15
        assert scalar(db, "SELECT count(*) FROM readings") == 25
        assert "draining" in log.read_text()
    finally:
        if consumer.poll() is None:
            consumer.kill()


def test_two_worker_processes_store_everything_and_drain(db, broker, topic_root, tmp_path):
    env = {
        **os.environ,
        "SWC_DATABASE_URL": db,
        "SWC_MQTT_URL": broker.url,
        "SWC_TOPIC_ROOT": topic_root,
        "SWC_CLIENT_ID": "wk",
        "SWC_WORKERS": "2",
        "SWC_ALLOW_UNSAFE_SHARED": "true",  # no broker restart here; 2.0.11 is refused otherwise
        "SWC_METRICS_PORT": "0",
    }
    log = tmp_path / "ingest.log"
    consumer = _spawn(env, log)
    try:
        wait_for(
            lambda: all(f"mqtt connected client_id=wk-{i} " in log.read_text() for i in (1, 2)),
            timeout=30,
            what="both workers connected",
        )
        time.sleep(0.5)  # SUBACK
        with Publisher(broker.url) as pub:
            pub.publish_all(
                (f"{topic_root}/w{i}/telemetry", json.dumps(row_message(f"w{i}", i)).encode())
                for i in range(40)
            )
        wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 40, what="40 readings")
        text = log.read_text()
        assert "client_id=wk-1" in text and "client_id=wk-2" in text
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(60) == 0
    finally:
        if consumer.poll() is None:
            consumer.kill()
