from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    FUTURE_TIME,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    ProtocolError,
    Telemetry,
    decode_telemetry,
    refuse_future,
    telemetry_json_schema,
)
from tests.support.payloads import MALFORMED, MINIMAL, columnar_message, row_message


def test_minimal_message_is_accepted_exactly_as_written():
    tel = decode_telemetry(MINIMAL)
    assert tel.device == "dam-017"
    assert tel.seq == 42
    assert tel.sent_at == datetime(2026, 7, 21, 3, 15, 5, tzinfo=UTC)
    t = datetime(2026, 7, 21, 3, 15, tzinfo=UTC)
    assert tel.rows == [(t, "stage_m", 2.31, None), (t, "turbidity_ntu", 1840.0, None)]


def test_offsets_are_converted_to_utc():
    msg = row_message(readings=[{"t": "2026-07-21T11:15:00+08:00", "ch": "stage_m", "v": 1}])
    ((t, _, _, _),) = decode_telemetry(json.dumps(msg).encode()).rows
    assert t == datetime(2026, 7, 21, 3, 15, tzinfo=UTC)
    assert t.utcoffset().total_seconds() == 0


def test_quality_flag_is_carried():
    msg = row_message(readings=[{"t": "2026-07-21T03:15:00Z", "ch": "stage_m", "v": 1, "q": 3}])
    assert decode_telemetry(json.dumps(msg).encode()).rows[0][3] == 3


def test_unknown_channel_is_accepted():
    msg = row_message(readings=[{"t": "2026-07-21T03:15:00Z", "ch": "soil_moisture_pct", "v": 21}])
    assert decode_telemetry(json.dumps(msg).encode()).rows[0][1] == "soil_moisture_pct"


def test_columnar_form_expands_times_and_skips_nulls():
    tel = decode_telemetry(json.dumps(columnar_message()).encode())
    times = [r[0].strftime("%H:%M") for r in tel.rows]
    assert times == ["03:00", "03:01", "03:03"]
    assert [r[2] for r in tel.rows] == [2.3, 2.31, 2.33]


def test_limits_at_the_boundary_are_accepted():
    readings = [
        {
            "t": f"2026-07-21T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "ch": "stage_m",
            "v": i,
        }
        for i in range(MAX_READINGS_PER_MESSAGE)
    ]
    payload = json.dumps(row_message(readings=readings), separators=(",", ":")).encode()
    assert len(payload) <= MAX_PAYLOAD_BYTES
    assert len(decode_telemetry(payload).rows) == MAX_READINGS_PER_MESSAGE
    assert decode_telemetry(json.dumps(row_message(seq=2**63 - 1)).encode()).seq == 2**63 - 1
    early = row_message(readings=[{"t": "2000-01-01T00:00:00Z", "ch": "stage_m", "v": 0}])
    assert decode_telemetry(json.dumps(early).encode()).rows


def test_the_malformed_suite_has_at_least_thirty_kinds():
    assert len(MALFORMED) >= 30
    assert len({name for name, _, _ in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(("name", "payload", "code"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_payload_gets_a_precise_error(name, payload, code):
    with pytest.raises(ProtocolError) as info:
        decode_telemetry(payload)
    assert info.value.code == code, str(info.value)
    assert info.value.message  # says what and where
    assert len(str(info.value)) < 2000


def test_error_message_names_the_field():
    msg = row_message(
        readings=[
            {"t": "2026-07-21T03:15:00Z", "ch": "stage_m", "v": 1},
            {"t": "2026-07-21T03:16:00", "ch": "stage_m", "v": 1},
        ]
    )
    with pytest.raises(ProtocolError, match=r"readings\[1\]\.t: .2026-07-21T03:16:00. has no zone"):
        decode_telemetry(json.dumps(msg).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_the_decoder(data):
    try:
        decode_telemetry(data)
    except ProtocolError as exc:
        assert exc.code


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["device", "seq", "sent_at", "readings", "channels", "start", "step_s", "x"]
        ),
        json_values,
        max_size=6,
    )
)
def test_arbitrary_json_objects_get_protocol_errors_only(obj):
    try:
        decode_telemetry(json.dumps(obj).encode())
    except ProtocolError as exc:
        assert exc.code


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2099, 1, 1),
                timezones=st.just(UTC),
            ),
            st.sampled_from(["stage_m", "rain_mm", "battery_v"]),
            st.floats(allow_nan=False, allow_infinity=False, width=64),
        ),
        min_size=1,
        max_size=50,
        unique_by=lambda r: (r[0], r[1]),
    )
)
def test_valid_readings_round_trip(readings):
    msg = row_message(readings=[{"t": t.isoformat(), "ch": ch, "v": v} for t, ch, v in readings])
    tel = decode_telemetry(json.dumps(msg).encode())
    assert [(t, ch, v) for t, ch, v, _ in tel.rows] == readings


def test_json_schema_is_exported_and_current():
    schema = telemetry_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    text = json.dumps(schema, indent=2) + "\n"
    from pathlib import Path

    committed = Path(__file__).parents[2] / "docs" / "telemetry.schema.json"
    assert committed.read_text() == text, (
        "regenerate: swc protocol schema > docs/telemetry.schema.json"
    )


ARRIVAL = datetime(2026, 7, 21, 3, 20, tzinfo=UTC)


def _tel(*times: str) -> Telemetry:
    readings = [{"t": t, "ch": "stage_m", "v": float(i)} for i, t in enumerate(times)]
    return decode_telemetry(json.dumps(row_message(readings=readings)).encode())


def test_readings_within_the_tolerance_pass_untouched():
    tel = _tel("2026-07-21T03:15:00Z", "2026-07-21T03:25:00Z")  # the second 300 s ahead
    kept, error = refuse_future(tel, ARRIVAL, 300.0)
    assert kept is tel and error is None


def test_a_reading_from_the_future_is_refused_and_the_others_kept():
    tel = _tel("2026-07-21T03:15:00Z", "2099-01-01T00:00:00Z", "2026-07-21T03:25:01Z")
    kept, error = refuse_future(tel, ARRIVAL, 300.0)
    assert [r[0] for r in kept.rows] == [datetime(2026, 7, 21, 3, 15, tzinfo=UTC)]
    assert (kept.device, kept.seq, kept.sent_at) == (tel.device, tel.seq, tel.sent_at)
    assert error.code == FUTURE_TIME == "future_time"
    # the reason names the reading's time, the arrival time and the tolerance
    assert "2026-07-21T03:25:01+00:00" in error.message  # the earliest refused
    assert "2099-01-01T00:00:00+00:00" in error.message  # the latest refused
    assert "2026-07-21T03:20:00+00:00" in error.message  # the arrival
    assert "2 of 3 readings" in error.message and "300 s" in error.message


def test_a_message_entirely_from_the_future_keeps_nothing():
    kept, error = refuse_future(_tel("2026-07-21T04:20:00Z"), ARRIVAL, 300.0)
    assert kept is None and error.code == "future_time"
    assert "3600 s ahead" in error.message and "No reading is kept" in error.message


def test_zero_tolerance_refuses_even_a_second_ahead():
    kept, error = refuse_future(_tel("2026-07-21T03:20:01Z"), ARRIVAL, 0.0)
    assert kept is None and error is not None
    kept, error = refuse_future(_tel("2026-07-21T03:20:00Z"), ARRIVAL, 0.0)
    assert kept is not None and error is None
