"""The consumer against the real PostgreSQL and a real mosquitto."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.consumer import Consumer
from ingest.store.registry import load_registry, read_registry_file
from tests.support.mqtt import Publisher
from tests.support.payloads import MALFORMED, MINIMAL, future_payloads, row_message
from tests.support.waiting import scalar, wait_for

T0 = datetime(2026, 7, 21, 3, 0, tzinfo=UTC)


def telemetry(root: str, client: str) -> str:
    return f"{root}/{client}/telemetry"


def batch(device: str, seq: int, start: datetime, n: int = 60, ch: str = "stage_m") -> bytes:
    readings = [
        {"t": (start + timedelta(minutes=i)).isoformat(), "ch": ch, "v": round(1 + i * 0.01, 4)}
        for i in range(n)
    ]
    return json.dumps(row_message(device=device, seq=seq, readings=readings)).encode()


def test_minimal_message_via_mosquitto_pub_gives_two_rows(
    db, broker, settings_for, start_consumer, topic_root
):
    start_consumer(settings_for(), db)
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-q",
            "1",
            "-t",
            telemetry(topic_root, "dam-017"),
            "-m",
            MINIMAL.decode(),
        ],
        check=True,
        timeout=10,
    )
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2, what="two rows")
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT r.time, s.device_id, s.channel, s.unit, r.value, r.quality, r.received_at "
            "FROM readings r JOIN streams s ON s.id = r.stream_id ORDER BY s.channel"
        ).fetchall()
    t = datetime(2026, 7, 21, 3, 15, tzinfo=UTC)
    assert [r[:6] for r in rows] == [
        (t, "dam-017", "stage_m", "m", 2.31, 1),  # QC: gross range passed
        (t, "dam-017", "turbidity_ntu", "[NTU]", 1840.0, 1),
    ]
    received = rows[0][6]
    assert abs((datetime.now(UTC) - received).total_seconds()) < 60
    assert scalar(db, "SELECT last_seq FROM devices WHERE id = 'dam-017'") == 42


def test_every_malformed_payload_is_dead_lettered_and_consumer_keeps_running(
    db, broker, settings_for, start_consumer, topic_root
):
    rc = start_consumer(settings_for(), db)
    topic = telemetry(topic_root, "dam-017")
    with Publisher(broker.url) as pub:
        pub.publish_all((topic, payload) for _, payload, _ in MALFORMED)
        pub.publish_all([(topic, MINIMAL)])
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2, what="the valid message")
    wait_for(
        lambda: scalar(db, "SELECT count(*) FROM dead_letters") == len(MALFORMED),
        what="dead letters",
    )
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT topic, payload, error_code, error, payload_size FROM dead_letters ORDER BY id"
        ).fetchall()
    assert [r[2] for r in rows] == [code for _, _, code in MALFORMED]
    cap = rc.consumer.settings.dead_letter_max_bytes
    for (name, payload, _), (dl_topic, dl_payload, _, error, size) in zip(
        MALFORMED, rows, strict=True
    ):
        assert dl_topic == topic
        assert bytes(dl_payload) == payload[:cap], name  # the raw bytes, up to the cap
        assert size == len(payload), name
        assert error, name
    assert rc.thread.is_alive()
    assert rc.consumer.metrics.snapshot()["dead_letters{code=not_json}"] == 2


def test_readings_from_the_future_are_dead_lettered_and_the_rest_of_the_message_is_stored(
    db, broker, settings_for, start_consumer, topic_root
):
    start_consumer(settings_for(future_tolerance_s=300), db)
    now = datetime.now(UTC)
    cases = future_payloads(now)
    topic = telemetry(topic_root, "dam-017")
    with Publisher(broker.url) as pub:
        pub.publish_all((topic, payload) for _, payload, _, _ in cases)
    kept = sum(k for _, _, k, _ in cases)
    refused = [(name, payload, n) for name, payload, _, n in cases if n]
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == kept, what="kept readings")
    wait_for(
        lambda: scalar(db, "SELECT count(*) FROM dead_letters") == len(refused),
        what="dead letters",
    )
    with psycopg.connect(db) as conn:
        dead = conn.execute(
            "SELECT payload, error_code, error, received_at FROM dead_letters ORDER BY id"
        ).fetchall()
        newest = conn.execute("SELECT max(time) FROM readings").fetchone()[0]
        last_seen = conn.execute("SELECT last_seen FROM devices WHERE id = 'dam-017'").fetchone()[0]
    for (name, payload, n), (dl_payload, code, error, received) in zip(refused, dead, strict=True):
        assert code == "future_time", name
        assert bytes(dl_payload) == payload, name  # the whole message, for the record
        assert f"{n} of " in error and received.isoformat() in error, (name, error)
        assert "ahead" in error, error
    assert "2099-06-01T00:00:00+00:00" in dead[0][2]
    # nothing from the future became the stream's newest reading or the device's last contact
    assert newest <= now + timedelta(seconds=300)
    assert last_seen <= datetime.now(UTC)


def test_bad_topic_level_is_dead_lettered(db, broker, settings_for, start_consumer, topic_root):
    start_consumer(settings_for(), db)
    with Publisher(broker.url) as pub:
        pub.publish_all(
            [
                (telemetry(topic_root, "alerts"), MINIMAL),
                (telemetry(topic_root, "dam-017"), MINIMAL),
            ]
        )
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2)
    wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 1)
    assert scalar(db, "SELECT error_code FROM dead_letters") == "bad_topic"


def test_replayed_messages_create_no_duplicates(
    db, broker, settings_for, start_consumer, topic_root
):
    rc = start_consumer(settings_for(), db)
    topic = telemetry(topic_root, "dam-1")
    payloads = [batch("dam-1", i, T0 + timedelta(hours=i)) for i in range(5)]
    with Publisher(broker.url) as pub:
        pub.publish_all((topic, p) for p in payloads)
        wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 300)
        # the logger replays everything after an outage, in a different order
        pub.publish_all((topic, p) for p in reversed(payloads))
        pub.publish_all([(topic, payloads[2])])
    wait_for(lambda: rc.consumer.metrics.snapshot()["messages_received"] == 11)
    wait_for(lambda: rc.consumer.metrics.snapshot()["readings_duplicate"] == 360)
    assert scalar(db, "SELECT count(*) FROM readings") == 300
    assert scalar(db, "SELECT count(DISTINCT (stream_id, time)) FROM readings") == 300


def test_redelivery_after_commit_without_ack_creates_no_duplicates(
    db, broker, settings_for, start_consumer, topic_root
):
    """Commit happens, the consumer dies before PUBACK: the broker redelivers; nothing doubles."""
    settings = settings_for(client_id="redeliver-1")
    consumer = Consumer(settings, db)
    consumer._acknowledge = lambda batch: None  # dies between COMMIT and PUBACK
    import threading

    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    assert consumer.subscribed.wait(10)
    topic = telemetry(topic_root, "dam-2")
    with Publisher(broker.url) as pub:
        pub.publish_all((topic, batch("dam-2", i, T0 + timedelta(hours=i))) for i in range(4))
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 240)
    consumer.stop()
    thread.join(30)
    # the same session comes back and receives every unacknowledged message again
    rc = start_consumer(settings, db)
    wait_for(lambda: rc.consumer.metrics.snapshot()["readings_duplicate"] == 240, what="redelivery")
    assert rc.consumer.metrics.snapshot()["readings_written"] == 0
    assert scalar(db, "SELECT count(*) FROM readings") == 240


# Two consumers in one group on this machine's Mosquitto 2.0.11, which drops shared
# subscriptions on a restart: these tests restart no broker, so they accept that.
SHARED = {"subscription": "shared", "allow_unsafe_shared": True}


def test_two_consumers_split_the_load_and_write_each_reading_once(
    db, broker, settings_for, start_consumer, topic_root
):
    a = start_consumer(settings_for(client_id="share-a", **SHARED), db)
    b = start_consumer(settings_for(client_id="share-b", **SHARED), db)
    n_devices, n_messages = 10, 40
    items = [
        (telemetry(topic_root, f"dam-{d}"), batch(f"dam-{d}", m, T0 + timedelta(hours=m)))
        for m in range(n_messages)
        for d in range(n_devices)
    ]
    with Publisher(broker.url) as pub:
        pub.publish_all(items)
    expected = n_devices * n_messages * 60
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == expected, timeout=60)
    sa, sb = a.consumer.metrics.snapshot(), b.consumer.metrics.snapshot()
    assert sa["messages_received"] > 0 and sb["messages_received"] > 0
    assert sa["messages_received"] + sb["messages_received"] == len(items)
    assert sa["readings_written"] + sb["readings_written"] == expected
    assert sa["readings_duplicate"] + sb["readings_duplicate"] == 0


def test_unknown_device_is_dead_lettered_when_auto_register_is_off(
    db, broker, settings_for, start_consumer, topic_root
):
    start_consumer(settings_for(auto_register=False), db)
    with Publisher(broker.url) as pub:
        pub.publish_all([(telemetry(topic_root, "dam-017"), MINIMAL)])
    wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 1)
    assert scalar(db, "SELECT error_code FROM dead_letters") == "unknown_device"
    assert scalar(db, "SELECT count(*) FROM readings") == 0
    assert scalar(db, "SELECT count(*) FROM devices") == 0


def test_registered_device_is_accepted_when_auto_register_is_off(
    db, broker, settings_for, start_consumer, topic_root, tmp_path
):
    f = tmp_path / "sites.yaml"
    f.write_text(
        "sites:\n"
        "  - {id: dam-017, kind: check_dam, name: Dam 17, devices: [{id: dam-017, channels: [stage_m]}]}\n"
    )
    with psycopg.connect(db) as conn:
        load_registry(conn, read_registry_file(f))
    start_consumer(settings_for(auto_register=False), db)
    with Publisher(broker.url) as pub:
        pub.publish_all([(telemetry(topic_root, "dam-017"), MINIMAL)])
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2)
    assert scalar(db, "SELECT count(*) FROM streams") == 2  # turbidity stream added on first use
    assert scalar(db, "SELECT auto_registered FROM devices WHERE id = 'dam-017'") is False


def test_gateway_may_publish_only_for_its_own_loggers(
    db, broker, settings_for, start_consumer, topic_root, tmp_path
):
    f = tmp_path / "sites.yaml"
    f.write_text(
        "sites:\n"
        "  - {id: s1, kind: check_dam, name: S1, devices: [{id: dam-017}, {id: dam-018}]}\n"
        "gateways:\n"
        "  - {id: gw-north, loggers: [dam-017]}\n"
    )
    with psycopg.connect(db) as conn:
        load_registry(conn, read_registry_file(f))
    start_consumer(settings_for(auto_register=False), db)
    other = MINIMAL.replace(b"dam-017", b"dam-018")
    with Publisher(broker.url) as pub:
        pub.publish_all(
            [
                (telemetry(topic_root, "gw-north"), MINIMAL),  # its own logger
                (telemetry(topic_root, "gw-north"), other),  # not its logger
                (telemetry(topic_root, "dam-018"), MINIMAL),  # a logger publishing for another
            ]
        )
    wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 2)
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2)
    assert scalar(db, "SELECT array_agg(error_code ORDER BY id) FROM dead_letters") == [
        "not_owner",
        "not_owner",
    ]


def test_auto_registered_logger_behind_a_gateway(
    db, broker, settings_for, start_consumer, topic_root
):
    start_consumer(settings_for(), db)
    with Publisher(broker.url) as pub:
        pub.publish_all([(telemetry(topic_root, "gw-7"), MINIMAL)])
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2)
    with psycopg.connect(db) as conn:
        devices = conn.execute("SELECT id, kind, gateway_id FROM devices ORDER BY id").fetchall()
    assert devices == [("dam-017", "logger", "gw-7"), ("gw-7", "gateway", None)]


def test_metrics_are_served_for_prometheus(db, broker, settings_for, start_consumer, topic_root):
    from ingest.broker import free_port

    port = free_port()
    rc = start_consumer(settings_for(), db)
    rc.consumer.metrics.serve(port)
    with Publisher(broker.url) as pub:
        pub.publish_all(
            [(telemetry(topic_root, "dam-017"), MINIMAL), (telemetry(topic_root, "dam-017"), b"{")]
        )
    wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 1)
    wait_for(lambda: rc.consumer.metrics.snapshot().get("readings_written") == 2)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "swc_ingest_readings_written_total 2.0" in body
    assert 'swc_ingest_dead_letters_total{code="not_json"} 1.0' in body
    assert "swc_ingest_batch_seconds_bucket" in body


@pytest.mark.parametrize("size", [1, 7])
def test_batches_are_bounded_by_size(db, broker, settings_for, start_consumer, topic_root, size):
    rc = start_consumer(settings_for(batch_max_readings=size, batch_max_latency_ms=1000), db)
    with Publisher(broker.url) as pub:
        pub.publish_all(
            (telemetry(topic_root, "d1"), batch("d1", i, T0 + timedelta(hours=i), n=5))
            for i in range(6)
        )
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 30)
    batches = rc.consumer.metrics.batch_readings.collect()[0]
    count = next(s.value for s in batches.samples if s.name.endswith("_count"))
    # each batch closes as soon as it holds `size` readings: one message (5) or two (10)
    assert count == (6 if size == 1 else 3)


def test_after_commit_hooks_see_the_streams_and_times_of_each_batch(
    db, broker, settings_for, topic_root
):
    import threading

    seen = []
    consumer = Consumer(settings_for(), db)
    consumer.after_commit.append(seen.append)
    consumer.after_commit.append(lambda batch: 1 / 0)  # a failing hook changes nothing
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        assert consumer.subscribed.wait(10)
        with Publisher(broker.url) as pub:
            pub.publish_all([(telemetry(topic_root, "dam-9"), batch("dam-9", 1, T0, n=10))])
        wait_for(lambda: sum(b.readings for b in seen) == 10)
    finally:
        consumer.stop()
        thread.join(30)
    (only,) = seen
    sid = scalar(db, "SELECT id FROM streams WHERE device_id = 'dam-9'")
    assert only.streams == {sid: (T0, T0 + timedelta(minutes=9))}
    assert only.devices == frozenset({"dam-9"})
    assert scalar(db, "SELECT count(*) FROM readings") == 10
    # the arrival the alert engine judges late and future data against: the message's
    received = scalar(db, "SELECT max(received_at) FROM readings")
    assert only.arrived_at == only.received_at == received <= only.committed_at


def test_retiring_a_consumer_stores_its_share_and_leaves_the_group(
    db, broker, settings_for, start_consumer, topic_root
):
    """Mosquitto keeps routing an offline member's share to its session: retire empties it."""
    a = start_consumer(settings_for(client_id="keep-a", **SHARED), db)
    b = start_consumer(settings_for(client_id="gone-b", **SHARED), db)
    b.stop()  # B goes away, its persistent session stays in the group
    items = [(telemetry(topic_root, f"dev-{i}"), batch(f"dev-{i}", 1, T0, n=5)) for i in range(40)]
    with Publisher(broker.url) as pub:
        pub.publish_all(items)
    wait_for(lambda: a.consumer.metrics.snapshot()["messages_received"] > 0)
    import time

    time.sleep(0.5)
    stored = scalar(db, "SELECT count(*) FROM readings")
    assert stored < 200, "B's share should be waiting in its session"
    retiring = start_consumer(settings_for(client_id="gone-b", retire=True, retire_idle_s=1.0), db)
    retiring.thread.join(30)
    assert not retiring.thread.is_alive(), "a retiring consumer exits by itself"
    assert scalar(db, "SELECT count(*) FROM readings") == 200
    # B is no longer in the group: everything new goes to A
    more = [
        (telemetry(topic_root, f"dev-{i}"), batch(f"dev-{i}", 2, T0 + timedelta(hours=1), n=5))
        for i in range(40)
    ]
    with Publisher(broker.url) as pub:
        pub.publish_all(more)
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 400)
    assert (
        a.consumer.metrics.snapshot()["messages_received"]
        + retiring.consumer.metrics.snapshot()["messages_received"]
        == 80
    )
