"""Device status messages are stored (issue 13), and rejections are summed up in the log."""

from __future__ import annotations

import json
import logging
import subprocess

import psycopg

from tests.support.mqtt import Publisher
from tests.support.payloads import MINIMAL
from tests.support.waiting import scalar, wait_for


def status(device: str, at: str, **more) -> bytes:
    return json.dumps({"device": device, "state": "online", "at": at, **more}).encode()


def stored(db: str, device: str) -> tuple | None:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT status_state, firmware, status_battery_v, status_rssi_dbm, status_details, "
            "status_at FROM devices WHERE id = %s",
            (device,),
        ).fetchone()


def test_status_messages_are_stored_and_bad_ones_dead_lettered(
    db, broker, settings_for, start_consumer, topic_root, caplog
):
    caplog.set_level(logging.WARNING, logger="ingest.consumer")
    topic = f"{topic_root}/dam-017/status"
    with psycopg.connect(db) as conn:  # a status never registers a device (telemetry does)
        conn.execute("INSERT INTO devices (id) VALUES ('dam-017')")
    with Publisher(broker.url) as pub:  # retained before the consumer runs: a replay
        pub.client.publish(
            topic, status("dam-017", "2026-07-21T03:00:00Z", firmware="1.4.1"), qos=1, retain=True
        ).wait_for_publish(10)
    rc = start_consumer(settings_for(), db)
    wait_for(lambda: (stored(db, "dam-017") or [None])[0] == "online", what="the retained status")
    assert stored(db, "dam-017")[1] == "1.4.1"
    with Publisher(broker.url) as pub:
        live = status(
            "dam-017", "2026-07-21T03:15:05Z", firmware="1.4.2", battery_v=12.6, rssi_dbm=-87,
            details={"queued": 0},
        )  # fmt: skip
        pub.client.publish(topic, live, qos=1, retain=True).wait_for_publish(10)
        pub.publish_all(
            [
                (topic, b'{"device": "dam-017", "state": "asleep"}'),  # not a state
                (topic, status("dam-018", "2026-07-21T03:15:05Z")),  # another device's
            ]
        )
    wait_for(lambda: stored(db, "dam-017")[1] == "1.4.2", what="the live status")
    state, _, battery, rssi, details, _at = stored(db, "dam-017")
    assert (state, battery, rssi, details) == ("online", 12.6, -87, {"queued": 0})
    wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 2, what="dead letters")
    codes = scalar(db, "SELECT array_agg(error_code ORDER BY error_code) FROM dead_letters")
    assert codes[0] == "bad_status" and codes[1] in ("not_owner", "unknown_device"), codes
    # the retained status stays at the broker (only retained telemetry is deleted)
    out = subprocess.run(
        ["mosquitto_sub", "-p", str(broker.port), "-t", topic, "-C", "1", "-W", "5"],
        capture_output=True,
        timeout=15,
    )
    assert b'"1.4.2"' in out.stdout, out
    rc.stop()
    summary = [r.getMessage() for r in caplog.records if "messages rejected" in r.getMessage()]
    assert summary and "total=2" in summary[-1] and "bad_status=1" in summary[-1], summary


def test_a_status_never_registers_a_device(db, broker, settings_for, start_consumer, topic_root):
    """A gateway announces itself on {root}/{gateway}/status before it forwards anything:
    registering it then (as a logger) would refuse every reading it forwards (not_owner)."""
    rc = start_consumer(settings_for(), db)
    with Publisher(broker.url) as pub:
        pub.publish_all(
            [
                (f"{topic_root}/gw-new/status", status("gw-new", "2026-07-21T03:00:00Z")),
                (f"{topic_root}/dam-017/telemetry", MINIMAL),
            ]
        )
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") > 0, what="the telemetry")
    rc.stop()
    assert scalar(db, "SELECT count(*) FROM devices WHERE id = 'gw-new'") == 0
    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0
