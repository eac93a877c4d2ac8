"""QC flags at ingest: when written, then re-evaluated with the neighbourhood."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from ingest.qc import QCReevaluator, provisional_flags
from tests.support.mqtt import Publisher
from tests.support.payloads import row_message
from tests.support.waiting import scalar, wait_for

T0 = datetime(2026, 7, 21, 3, 0, tzinfo=UTC)


def test_provisional_flags_combine_logger_and_gross_range():
    values = np.array([2.0, 150.0, 70.0, 2.0, 99.0, np.nan])
    channels = ["stage_m", "stage_m", "stage_m", "stage_m", "mystery_x", "stage_m"]
    logger = np.array([2, 2, 2, 3, 2, 2], dtype=np.uint8)
    assert provisional_flags(values, channels, logger).tolist() == [1, 4, 3, 3, 2, 9]


def _message(
    device: str, seq: int, points: list[tuple[int, float]], q: dict[int, int] | None = None
):
    readings = []
    for minute, v in points:
        r = {"t": (T0 + timedelta(minutes=minute)).isoformat(), "ch": "stage_m", "v": v}
        if q and minute in q:
            r["q"] = q[minute]
        readings.append(r)
    return json.dumps(row_message(device, seq, readings)).encode()


def _flags(db: str) -> dict[int, tuple[int, int | None]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT time, quality, logger_quality FROM readings ORDER BY time"
        ).fetchall()
    return {int((t - T0).total_seconds() // 60): (q, lq) for t, q, lq in rows}


def test_flags_when_written_and_logger_flags_are_kept(
    db, broker, settings_for, start_consumer, topic_root
):
    start_consumer(settings_for(), db)
    points = [(0, 2.0), (1, 150.0), (2, 70.0), (3, 2.0)]
    with Publisher(broker.url) as pub:
        pub.publish_all([(f"{topic_root}/d1/telemetry", _message("d1", 1, points, q={3: 3}))])
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 4)
    assert _flags(db) == {0: (1, None), 1: (4, None), 2: (3, None), 3: (3, 3)}


def test_spikes_are_flagged_when_their_neighbours_arrive(
    db, broker, settings_for, start_consumer, topic_root
):
    rc = start_consumer(settings_for(), db)
    reeval = QCReevaluator(db, interval_s=0.1).start()
    rc.consumer.after_commit.append(reeval.hook)
    topic = f"{topic_root}/d1/telemetry"
    smooth = [(m, 2.0 + m * 0.001) for m in range(20)]
    first = [*smooth[:10], (10, 2.0)]
    first[5] = (5, 3.5)  # a spike inside the message
    first[10] = (10, 4.0)  # the last reading: its next neighbour is not known yet
    try:
        with Publisher(broker.url) as pub:
            pub.publish_all([(topic, _message("d1", 1, first))])
            wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 11)
            wait_for(reeval.idle.is_set, what="re-evaluation")
            flags = _flags(db)
            assert flags[5][0] == 4  # |3.5 - 2.0| > 1.0 m
            assert flags[10][0] == 1  # not judged yet: only gross range so far
            pub.publish_all([(topic, _message("d1", 2, smooth[11:]))])
            wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 20)
            wait_for(lambda: _flags(db)[10][0] == 4, what="the boundary spike")
    finally:
        reeval.stop()
    flags = _flags(db)
    assert flags[15] == (1, None)
    assert reeval.updated >= 2


def test_late_data_re_flags_its_neighbours(db, broker, settings_for, start_consumer, topic_root):
    rc = start_consumer(settings_for(), db)
    reeval = QCReevaluator(db, interval_s=0.1).start()
    rc.consumer.after_commit.append(reeval.hook)
    topic = f"{topic_root}/d1/telemetry"
    try:
        with Publisher(broker.url) as pub:
            pub.publish_all([(topic, _message("d1", 1, [(m, 1.0) for m in (0, 1, 2, 4, 5, 6)]))])
            wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 6)
            wait_for(reeval.idle.is_set)
            assert {m: f[0] for m, f in _flags(db).items()} == {0: 1, 1: 1, 2: 1, 4: 1, 5: 1, 6: 1}
            # an hour later the logger's missing reading arrives: a spike
            pub.publish_all([(topic, _message("d1", 2, [(3, 5.0)]))])
            wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 7)
            wait_for(lambda: _flags(db)[2][0] != 1, what="neighbour re-flagged")
            wait_for(reeval.idle.is_set)
    finally:
        reeval.stop()
    flags = {m: f[0] for m, f in _flags(db).items()}
    assert flags[3] == 4  # the late spike itself
    assert flags[2] == 4 and flags[4] == 4  # |1 - (1 + 5) / 2| = 2 m > 1 m: neighbours fail too
    assert flags[0] == 1 and flags[6] == 1


def test_swc_ingest_re_evaluates_in_its_own_process(db, broker, topic_root, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "SWC_DATABASE_URL": db,
        "SWC_MQTT_URL": broker.url,
        "SWC_TOPIC_ROOT": topic_root,
        "SWC_CLIENT_ID": "qc-proc",
        "SWC_METRICS_PORT": "0",
        "SWC_ALERTS": "false",
    }
    log = tmp_path / "ingest.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swc_cli", "ingest"],
        env=env,
        cwd=Path(__file__).parents[2],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: "mqtt connected" in log.read_text(), timeout=30)
        import time

        time.sleep(0.5)
        points = [(m, 2.0) for m in range(10)]
        points[4] = (4, 3.6)
        with Publisher(broker.url) as pub:
            pub.publish_all([(f"{topic_root}/d1/telemetry", _message("d1", 1, points))])
        wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 10)
        wait_for(
            lambda: _flags(db)[4][0] == 4, timeout=30, what="the spike flagged by the QC process"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
