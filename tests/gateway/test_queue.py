"""The disk queue on its own: order, seq, batching limits, restarts, budget, reject log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.queue import DiskQueue, Reject, format_time
from protocol.messages import decode_telemetry

T0 = datetime(2026, 7, 21, tzinfo=UTC)


def rows(device: str, start: int, n: int, ch: str = "stage_m") -> list:
    return [
        (device, format_time(T0 + timedelta(seconds=start + i)), ch, float(start + i), None)
        for i in range(n)
    ]


def drain(q: DiskQueue, **compose) -> list:
    """Compose and acknowledge everything; return the decoded messages in order."""
    out = []
    while q.depth:
        q.compose(**compose)
        batch = q.unsent(0, 1000)
        assert batch, "readings queued but nothing composed"
        out.extend(decode_telemetry(m.payload) for m in batch)
        q.ack(m.id for m in batch)
    return out


def test_format_time_is_rfc3339_utc():
    assert format_time(datetime(2026, 7, 21, 3, 15, tzinfo=UTC)) == "2026-07-21T03:15:00Z"
    t = datetime(2026, 7, 21, 11, 15, 0, 250000, tzinfo=UTC) + timedelta(hours=0)
    assert format_time(t) == "2026-07-21T11:15:00.250000Z"


def test_one_device_per_message_in_order_with_seq_per_device(tmp_path):
    q = DiskQueue(tmp_path / "q.db")
    q.append(rows("a", 0, 5) + rows("b", 0, 3) + rows("a", 5, 5), messages=3)
    assert q.depth == 13
    assert q.compose(max_readings=4) == 4  # a: 4+4+2, b: 3
    msgs = [decode_telemetry(m.payload) for m in q.unsent()]
    # messages go out in the order of their oldest reading
    assert [(m.device, m.seq, len(m.rows)) for m in msgs] == [
        ("a", 1, 4),
        ("a", 2, 4),
        ("b", 1, 3),
        ("a", 3, 2),
    ]
    a_values = [r[2] for m in msgs if m.device == "a" for r in m.rows]
    assert a_values == [float(i) for i in range(10)]
    assert q.ack(m.id for m in q.unsent()) == 13
    assert q.depth == 0
    stats = q.stats()
    assert stats.counters["forwarded_readings"] == 13
    assert stats.counters["received_messages"] == 3
    assert q.device_seqs() == {"a": 4, "b": 2}
    q.close()


def test_compose_waits_for_size_or_age(tmp_path):
    q = DiskQueue(tmp_path / "q.db")
    q.append(rows("a", 0, 3))
    now = q.stats().oldest_enqueued_at
    assert q.compose(max_readings=10, max_age_s=5, now=now + 1) == 0
    assert q.compose(max_readings=10, max_age_s=5, now=now + 6) == 1
    q.append(rows("a", 3, 10))
    assert q.compose(max_readings=10, max_age_s=5, now=now + 6.1) == 1  # full batch: at once
    q.close()


def test_messages_respect_count_bytes_and_never_repeat_a_reading(tmp_path):
    q = DiskQueue(tmp_path / "q.db")
    many = rows("a", 0, 3000)
    q.append(many + rows("a", 0, 2))  # a logger resent its first two readings
    msgs = drain(q, max_readings=5000, max_bytes=20_000)
    assert sum(len(m.rows) for m in msgs) == 3002
    for m in q.unsent(0):
        assert len(m.payload) <= 20_000
    for m in msgs:  # every message decodes (no duplicate (t, ch) inside one)
        assert len({(r[0], r[1]) for r in m.rows}) == len(m.rows)
    assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))
    q.close()


def test_unacknowledged_messages_are_resent_identically_after_a_restart(tmp_path):
    path = tmp_path / "q.db"
    q = DiskQueue(path)
    q.append(rows("a", 0, 10) + rows("b", 0, 10))
    q.compose(max_readings=5)
    first = q.unsent()
    q.ack([first[0].id])  # the broker acknowledged only the first
    q.close()  # power cut

    q = DiskQueue(path)
    again = q.unsent()
    assert [(m.device, m.seq, m.payload) for m in again] == [
        (m.device, m.seq, m.payload) for m in first[1:]
    ]
    assert q.depth == 15
    q.append(rows("a", 10, 1))
    q.compose(max_readings=5, max_age_s=0)
    newest = q.unsent(again[-1].id)
    assert [(m.device, m.seq) for m in newest] == [("a", 3)]
    q.close()


def test_over_budget_the_oldest_are_dropped_and_counted(tmp_path):
    q = DiskQueue(tmp_path / "q.db", max_bytes=256 * 1024)
    total = 0
    for i in range(40):
        q.append(rows("a", i * 500, 500))
        total += 500
    stats = q.stats()
    dropped = stats.counters["dropped_readings"]
    assert dropped > 0
    assert stats.used_bytes <= 256 * 1024
    assert q.depth == total - dropped
    msgs = drain(q, max_readings=1000)
    values = [r[2] for m in msgs for r in m.rows]
    assert values == [float(v) for v in range(dropped, total)]  # the newest survive, in order
    q.close()


def test_reject_log_is_capped_and_keeps_the_reason(tmp_path):
    q = DiskQueue(tmp_path / "q.db", max_rejects=5, reject_payload_bytes=10)
    for i in range(8):
        q.append([], [Reject("mqtt", "not_json", f"bad {i}", b"x" * 100, "r/v1/a/telemetry")])
    log = q.rejects(100)
    assert [e["message"] for e in log] == [f"bad {i}" for i in range(7, 2, -1)]
    assert log[0]["payload"] == "x" * 10
    assert q.stats().counters["rejected"] == 8
    json.dumps(log)
    q.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.sampled_from("abc"), st.integers(1, 40)),
            st.tuples(st.just("compose"), st.integers(1, 30), st.integers(1, 6)),
            st.tuples(st.just("ack"), st.integers(0, 5), st.booleans()),
        ),
        max_size=40,
    )
)
def test_property_every_reading_once_in_order_per_device(tmp_path_factory, ops):
    q = DiskQueue(tmp_path_factory.mktemp("prop") / "q.db")
    sent: dict[str, int] = {}
    delivered: dict[str, list[float]] = {}
    seqs: dict[str, list[int]] = {}
    for op in ops:
        if op[0] == "append":
            _, device, n = op
            start = sent.get(device, 0)
            q.append(rows(device, start, n))
            sent[device] = start + n
        elif op[0] == "compose":
            q.compose(max_readings=op[1], max_messages=op[2], max_age_s=0)
        else:
            pending = q.unsent(0, 100)[: op[1]]
            for m in pending:
                tel = decode_telemetry(m.payload)
                delivered.setdefault(tel.device, []).extend(r[2] for r in tel.rows)
                seqs.setdefault(tel.device, []).append(tel.seq)
            q.ack(m.id for m in pending)
            if op[2]:  # restart
                path = q.path
                q.close()
                q = DiskQueue(path)
    for m in drain(q, max_readings=7):
        delivered.setdefault(m.device, []).extend(r[2] for r in m.rows)
        seqs.setdefault(m.device, []).append(m.seq)
    for device, n in sent.items():
        assert delivered[device] == [float(i) for i in range(n)]
        assert seqs[device] == list(range(1, len(seqs[device]) + 1))
    q.close()


def test_not_a_queue_database_is_refused(tmp_path):
    from gateway.queue import QueueError

    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(QueueError, match="cannot open"):
        DiskQueue(bad)
