"""Validation of MQTT messages and CSV lines, and following a line file across restarts."""

from __future__ import annotations

import json
import os
import threading

from gateway.config import LineSourceConfig
from gateway.intake import Admission, Checked, check_lines, check_message
from gateway.linesource import LineSource
from gateway.queue import DiskQueue

from .gwtest_support import wait_until

ADMIT = Admission(root="swc/v1")


def _msg(device="dam-1", **extra) -> bytes:
    body = {
        "device": device,
        "seq": 7,
        "sent_at": "2026-07-21T03:15:05Z",
        "readings": [{"t": "2026-07-21T11:15:00+08:00", "ch": "stage_m", "v": 2.31, "q": 1}],
    }
    body.update(extra)
    return json.dumps(body).encode()


def test_valid_message_rows_keep_the_sample_time_in_utc():
    c = Checked()
    check_message("swc/v1/dam-1/telemetry", _msg(), ADMIT, c)
    assert c.rows == [("dam-1", "2026-07-21T03:15:00Z", "stage_m", 2.31, 1)]
    assert c.messages == 1 and not c.rejects


def test_columnar_messages_are_accepted():
    body = {
        "device": "dam-1",
        "seq": 1,
        "sent_at": "2026-07-21T04:15:05Z",
        "start": "2026-07-21T03:16:00Z",
        "step_s": 60,
        "channels": {"stage_m": [2.32, None, 2.35]},
    }
    c = Checked()
    check_message("swc/v1/dam-1/telemetry", json.dumps(body).encode(), ADMIT, c)
    assert [r[1] for r in c.rows] == ["2026-07-21T03:16:00Z", "2026-07-21T03:18:00Z"]


def test_rejections_carry_the_protocol_code():
    c = Checked()
    check_message("swc/v1/dam-2/telemetry", _msg(), ADMIT, c)  # someone else's topic
    check_message("other/dam-1/telemetry", _msg(), ADMIT, c)
    check_message("swc/v1/dam-1/telemetry", b"{", ADMIT, c)
    check_message(
        "swc/v1/dam-9/telemetry", _msg("dam-9"), Admission("swc/v1", frozenset({"dam-1"})), c
    )
    assert [r.code for r in c.rejects] == [
        "device_mismatch",
        "bad_topic",
        "not_json",
        "unknown_device",
    ]
    assert not c.rows
    relaxed = Checked()
    check_message(
        "swc/v1/rtu-1/telemetry", _msg(), Admission("swc/v1", require_topic_device=False), relaxed
    )
    assert relaxed.rows and not relaxed.rejects


def test_lines_good_and_bad_side_by_side():
    c = Checked()
    check_lines(
        [
            b"device,time,channel,value,quality",
            b"rg-1,2026-07-21T00:00:00Z,rain_mm,0.2",
            b"rg-1,2026-07-21T00:00:00Z,rain_mm,0.2",  # repeated by the RTU: both kept
            b"rg-1,2026-07-21T00:05:00Z,rain_mm,inf",
            b"rg-1,2026-07-21T00:10:00Z,Rain MM,0.2",
            b"rg-2, 2026-07-21T00:15:00+08:00 ,level_m, 1.5 ,1",
            b"  # comment",
        ],
        "line:rtu",
        ADMIT,
        c,
    )
    assert c.rows == [
        ("rg-1", "2026-07-21T00:00:00Z", "rain_mm", 0.2, None),
        ("rg-1", "2026-07-21T00:00:00Z", "rain_mm", 0.2, None),
        ("rg-2", "2026-07-20T16:15:00Z", "level_m", 1.5, 1),
    ]
    assert [r.code for r in c.rejects] == ["non_finite", "bad_identifier"]
    assert all(r.source == "line:rtu" for r in c.rejects)


def test_line_file_is_followed_and_resumed_without_repeats(tmp_path):
    path = tmp_path / "rtu.csv"
    path.write_text("rg-1,2026-07-21T00:00:00Z,rain_mm,0.2\nrg-1,2026-07-21T00:01:00Z,rain")
    q = DiskQueue(tmp_path / "q.db")
    cfg = LineSourceConfig(path=path, name="rtu", poll_s=0.02)

    def run_until(expected: int) -> None:
        stop = threading.Event()
        src = LineSource(cfg, q, ADMIT, stop)
        src.start()
        try:
            wait_until(lambda: q.depth == expected, 10, f"{expected} readings queued")
        finally:
            stop.set()
            src.join(5)

    run_until(1)  # the partial last line waits for its newline
    with path.open("a") as f:
        f.write("_mm,0.4\n")
    run_until(2)  # a restart resumes at the stored offset: nothing read twice
    with path.open("a") as f:
        f.write("rg-1,2026-07-21T00:02:00Z,rain_mm,0.6\n")
    run_until(3)
    # the file rotated: a new file at the same path is read from its start
    os.rename(path, tmp_path / "rtu.csv.1")
    path.write_text("rg-1,2026-07-21T00:03:00Z,rain_mm,0.8\n")
    run_until(4)
    q.compose(max_age_s=0)
    values = [json.loads(m.payload)["readings"] for m in q.unsent()]
    assert [r["v"] for batch in values for r in batch] == [0.2, 0.4, 0.6, 0.8]
    q.close()


def test_named_pipe_lines_are_read_as_they_come(tmp_path):
    fifo = tmp_path / "rtu.fifo"
    os.mkfifo(fifo)
    q = DiskQueue(tmp_path / "q.db")
    stop = threading.Event()
    src = LineSource(LineSourceConfig(path=fifo, poll_s=0.02), q, ADMIT, stop)
    src.start()
    try:
        for minute in range(3):  # three writers one after the other, like cron jobs
            with open(fifo, "w") as w:
                w.write(f"rg-1,2026-07-21T00:0{minute}:00Z,rain_mm,0.2\n")
            wait_until(lambda m=minute: q.depth == m + 1, 10, f"line {minute} queued")
        with open(fifo, "w") as w:
            w.write("garbage\n")
        wait_until(lambda: q.stats().counters["rejected"] == 1, 10, "the bad line rejected")
    finally:
        stop.set()
        src.join(5)
    assert q.line_offset(f"line:{fifo}") is None  # a pipe has no offset to resume from
    q.close()
