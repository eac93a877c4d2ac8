"""Telemetry payloads for tests: the issue's minimal message and a suite of malformed ones."""

from __future__ import annotations

import json

MINIMAL = (
    b'{"device": "dam-017", "seq": 42, "sent_at": "2026-07-21T03:15:05Z",\n'
    b' "readings": [{"t": "2026-07-21T03:15:00Z", "ch": "stage_m", "v": 2.31},\n'
    b'              {"t": "2026-07-21T03:15:00Z", "ch": "turbidity_ntu", "v": 1840}]}'
)

_T = "2026-07-21T03:15:00Z"


def row_message(device: str = "dam-017", seq: int = 1, readings=None, **extra) -> dict:
    msg = {
        "device": device,
        "seq": seq,
        "sent_at": "2026-07-21T03:15:05Z",
        "readings": readings if readings is not None else [{"t": _T, "ch": "stage_m", "v": 2.31}],
    }
    msg.update(extra)
    return msg


def columnar_message(device: str = "dam-017", seq: int = 1, channels=None, **extra) -> dict:
    msg = {
        "device": device,
        "seq": seq,
        "sent_at": "2026-07-21T03:15:05Z",
        "start": "2026-07-21T03:00:00Z",
        "step_s": 60,
        "channels": channels if channels is not None else {"stage_m": [2.3, 2.31, None, 2.33]},
    }
    msg.update(extra)
    return msg


def _j(obj) -> bytes:
    return json.dumps(obj).encode()


def _reading(**over) -> dict:
    r = {"t": _T, "ch": "stage_m", "v": 2.31}
    r.update(over)
    return {k: v for k, v in r.items() if v is not _DROP}


_DROP = object()

# (name, payload bytes, expected error code)
MALFORMED: list[tuple[str, bytes, str]] = [
    ("empty payload", b"", "empty_payload"),
    ("not json", b"hello world", "not_json"),
    ("binary garbage", bytes(range(256)), "not_utf8"),
    ("invalid utf-8", b'{"device": "\xff\xfe"}', "not_utf8"),
    ("truncated json", MINIMAL[:40], "not_json"),
    ("json array", b"[1, 2, 3]", "unknown_form"),
    ("json string", b'"telemetry"', "unknown_form"),
    ("json null", b"null", "unknown_form"),
    ("object with neither form", _j({"device": "dam-017", "seq": 1}), "unknown_form"),
    ("too large", b'{"pad": "' + b"x" * (600 * 1024) + b'"}', "too_large"),
    (
        "naive reading time",
        _j(row_message(readings=[_reading(t="2026-07-21T03:15:00")])),
        "naive_time",
    ),
    ("naive sent_at", _j(row_message(sent_at="2026-07-21T03:15:05")), "naive_time"),
    ("time as epoch number", _j(row_message(readings=[_reading(t=1784603700)])), "wrong_type"),
    ("unparseable time", _j(row_message(readings=[_reading(t="yesterday")])), "bad_time"),
    ("impossible date", _j(row_message(readings=[_reading(t="2026-02-30T00:00:00Z")])), "bad_time"),
    (
        "time without seconds",
        _j(row_message(readings=[_reading(t="2026-07-21T03:15Z")])),
        "bad_time",
    ),
    (
        "time before 2000",
        _j(row_message(readings=[_reading(t="1999-12-31T23:59:59Z")])),
        "time_out_of_range",
    ),
    (
        "time after 2100",
        _j(row_message(readings=[_reading(t="2100-01-01T00:00:00Z")])),
        "time_out_of_range",
    ),
    ("NaN value", MINIMAL.replace(b"2.31", b"NaN"), "non_finite"),
    ("Infinity value", MINIMAL.replace(b"2.31", b"Infinity"), "non_finite"),
    ("overflowing value", MINIMAL.replace(b"2.31", b"1e999"), "non_finite"),
    ("value as string", _j(row_message(readings=[_reading(v="2.31")])), "wrong_type"),
    ("value as bool", _j(row_message(readings=[_reading(v=True)])), "wrong_type"),
    ("value null", _j(row_message(readings=[_reading(v=None)])), "wrong_type"),
    ("missing value", _j(row_message(readings=[_reading(v=_DROP)])), "missing_field"),
    (
        "missing device",
        _j({k: v for k, v in row_message().items() if k != "device"}),
        "missing_field",
    ),
    ("missing seq", _j({k: v for k, v in row_message().items() if k != "seq"}), "missing_field"),
    ("unknown top-level key", _j(row_message(extra_key=1)), "unknown_field"),
    ("unknown reading key", _j(row_message(readings=[_reading(unit="m")])), "unknown_field"),
    ("seq negative", _j(row_message(seq=-1)), "bad_value"),
    ("seq as string", _j(row_message(seq="42")), "wrong_type"),
    ("seq float", _j(row_message(seq=4.2)), "wrong_type"),
    ("readings not a list", _j(row_message(readings={"t": _T})), "wrong_type"),
    ("empty batch", _j(row_message(readings=[])), "empty_batch"),
    (
        "too many readings",
        _j(
            row_message(
                readings=[
                    _reading(t=f"2026-07-21T{h:02d}:{m:02d}:{s:02d}Z")
                    for h in range(2)
                    for m in range(60)
                    for s in range(0, 60, 1)
                ][:5001]
            )
        ),
        "too_many_readings",
    ),
    (
        "duplicate reading",
        _j(row_message(readings=[_reading(), _reading(v=2.5)])),
        "duplicate_reading",
    ),
    (
        "duplicate reading, other offset",
        _j(row_message(readings=[_reading(), _reading(t="2026-07-21T11:15:00+08:00")])),
        "duplicate_reading",
    ),
    ("bad channel name", _j(row_message(readings=[_reading(ch="Stage M")])), "bad_identifier"),
    ("channel with wildcard", _j(row_message(readings=[_reading(ch="stage/#")])), "bad_identifier"),
    ("bad device id", _j(row_message(device="dam 017/+")), "bad_identifier"),
    ("device id too long", _j(row_message(device="d" * 65)), "bad_identifier"),
    ("bad quality flag", _j(row_message(readings=[_reading(q=5)])), "bad_value"),
    ("columnar empty channels", _j(columnar_message(channels={})), "empty_batch"),
    (
        "columnar only nulls",
        _j(columnar_message(channels={"stage_m": [None, None]})),
        "empty_batch",
    ),
    ("columnar zero step", _j(columnar_message(step_s=0)), "bad_value"),
    ("columnar naive start", _j(columnar_message(start="2026-07-21T03:00:00")), "naive_time"),
    ("columnar NaN", _j(columnar_message()).replace(b"2.31", b"NaN"), "non_finite"),
    (
        "columnar too many samples",
        _j(columnar_message(channels={"stage_m": [1.0] * 3000, "level_m": [1.0] * 3000})),
        "too_many_readings",
    ),
    (
        "columnar runs past 2100",
        _j(
            columnar_message(
                start="2099-12-31T23:59:00Z", step_s=60, channels={"stage_m": [1.0, 2.0, 3.0]}
            )
        ),
        "time_out_of_range",
    ),
    ("both forms at once", _j({**row_message(), "channels": {"stage_m": [1.0]}}), "unknown_form"),
]


def _z(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def future_payloads(now, device: str = "dam-017") -> list[tuple[str, bytes, int, int]]:
    """Messages with readings from the future of ``now`` (their arrival), tolerance 300 s.

    Each item: (name, payload, readings kept, readings refused with ``future_time``).
    Every time is within the protocol's range: only the arrival time condemns them.
    """
    from datetime import timedelta

    def at(s: float) -> str:
        return _z(now + timedelta(seconds=s))

    past = [{"t": at(-120), "ch": "stage_m", "v": 2.1}, {"t": at(-60), "ch": "stage_m", "v": 2.2}]
    return [
        (
            "one reading dated 2099 among good ones",
            _j(row_message(device, 1, [*past, _reading(t="2099-06-01T00:00:00Z", v=9.9)])),
            2,
            1,
        ),
        (
            "every reading dated 2099",
            _j(row_message(device, 2, [_reading(t="2099-06-01T00:00:00Z", v=9.9)])),
            0,
            1,
        ),
        (
            "local time sent as UTC, eight hours ahead",
            _j(row_message(device, 3, [_reading(t=at(8 * 3600), v=2.3)])),
            0,
            1,
        ),
        (
            "columnar arrays running past the tolerance",
            _j(
                columnar_message(
                    device, 4, start=at(-180), step_s=120, channels={"level_m": [1.0] * 7}
                )
            ),
            5,  # -180, -60, 60, 180 and 300 s (not beyond) are kept; 420 and 540 s are refused
            2,
        ),
        (
            "a minute ahead: a drifting clock, tolerated",
            _j(row_message(device, 5, [_reading(t=at(60), ch="turbidity_ntu", v=10.0)])),
            1,
            0,
        ),
    ]
