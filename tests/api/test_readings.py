"""GET /readings: raw and bucketed series, the hourly aggregate, quality filter, cursor
paging, validation and roles."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from ingest.api import create_app
from ingest.settings import Settings
from tests.api.research_support import add_site, add_stream, role_keys, write

T0 = datetime(2027, 7, 1, tzinfo=UTC)


@pytest.fixture
def api(db):
    with TestClient(create_app(Settings(_env_file=None, database_url=db))) as client:
        yield client


@pytest.fixture
def series(db) -> dict:
    """Two dams and a gauge: 10-minute readings over 12 hours, some of them suspect or failed."""
    add_site(db, "dam-1", "check_dam")
    add_site(db, "dam-2", "check_dam")
    add_site(db, "rg-1", "rain_gauge")
    ids = {
        "dam-1/stage": add_stream(db, "log-1", "stage_m", "dam-1", "m"),
        "dam-1/turb": add_stream(db, "log-1", "turbidity_ntu", "dam-1", "[NTU]"),
        "dam-2/stage": add_stream(db, "log-2", "stage_m", "dam-2", "m"),
        "rg-1/rain": add_stream(db, "log-3", "rain_mm", "rg-1", "mm"),
    }
    for k, sid in enumerate(ids.values()):
        rows = []
        for i in range(72):
            q = 3 if i % 10 == 3 else 4 if i % 17 == 5 else 1
            rows.append((T0 + timedelta(minutes=10 * i), round(k + math.sin(i / 7), 6), q))
        write(db, sid, rows)
    return ids


def page_all(api, headers, params) -> tuple[list[dict], list[dict]]:
    out, pages = [], []
    cursor = None
    for _ in range(100):
        p = dict(params)
        if cursor:
            p["cursor"] = cursor
        r = api.get("/readings", params=p, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body)
        out.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out, pages
    raise AssertionError("paging did not end")


RANGE = {"start": "2027-07-01T00:00:00Z", "end": "2027-07-01T12:00:00Z"}


def test_raw_rows_page_by_cursor_in_stream_then_time_order(api, db, series):
    h = role_keys(db)["viewer"]
    rows, pages = page_all(api, h, {**RANGE, "limit": 50})
    assert len(rows) == 4 * 72 and len(pages) == 6
    keys = [(r["stream_id"], r["time"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert pages[0]["source"] == "readings" and pages[0]["interval"] is None
    assert {s["id"] for s in pages[0]["streams"]} == set(series.values())
    assert rows[0]["value"] == 0.0 and rows[0]["quality"] == 1 and "count" not in rows[0]


def test_selection_by_site_channel_stream_and_quality(api, db, series):
    h = role_keys(db)["viewer"]
    r = api.get("/readings", params={**RANGE, "site_id": ["dam-1", "dam-2"], "channel": "stage_m"},
                headers=h).json()  # fmt: skip
    assert {x["stream_id"] for x in r["items"]} == {series["dam-1/stage"], series["dam-2/stage"]}
    r = api.get("/readings", params={**RANGE, "stream_id": series["rg-1/rain"], "max_quality": 2},
                headers=h).json()  # fmt: skip
    assert r["qualities"] == [1, 2]
    assert len(r["items"]) == 72 - 7 - 4 and {x["quality"] for x in r["items"]} == {1}
    r = api.get("/readings", params={**RANGE, "stream_id": series["rg-1/rain"],
                                     "quality": [3, 4]}, headers=h).json()  # fmt: skip
    assert {x["quality"] for x in r["items"]} == {3, 4}
    r = api.get("/readings", params={**RANGE, "site_id": "nowhere"}, headers=h).json()
    assert r["streams"] == [] and r["items"] == [] and r["next"] is None


def test_hourly_aggregate_gives_what_the_raw_readings_give(api, db, series):
    h = role_keys(db)["viewer"]
    aggs = ["mean", "min", "max", "sum", "count"]
    base = {**RANGE, "interval": "3h", "agg": aggs, "limit": 3}
    hourly, pages = page_all(api, h, base)
    assert {p["source"] for p in pages} == {"readings_hourly"}
    # every flag asked for: a quality filter, so the raw readings are binned
    raw, pages = page_all(api, h, {**base, "quality": [1, 2, 3, 4, 9]})
    assert {p["source"] for p in pages} == {"readings"}
    assert len(hourly) == len(raw) == 4 * 4
    for a, b in zip(hourly, raw, strict=True):
        assert (a["stream_id"], a["time"], a["count"]) == (b["stream_id"], b["time"], b["count"])
        for k in ("mean", "min", "max", "sum"):
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12)
    first = hourly[0]
    assert first["count"] == 18 and first["time"] == "2027-07-01T00:00:00Z"
    assert first["mean"] == pytest.approx(first["sum"] / 18)


def test_first_last_partial_hours_and_quality_use_raw_readings(api, db, series):
    h = role_keys(db)["viewer"]
    sid = series["dam-1/stage"]
    r = api.get("/readings", params={**RANGE, "stream_id": sid, "interval": "1h",
                                     "agg": ["first", "last", "count"]}, headers=h).json()  # fmt: skip
    assert r["source"] == "readings" and r["aggregates"] == ["first", "last", "count"]
    row = r["items"][1]
    assert row["count"] == 6 and row["first"] == pytest.approx(math.sin(6 / 7), abs=1e-6)
    assert row["last"] == pytest.approx(math.sin(11 / 7), abs=1e-6) and "mean" not in row
    r = api.get("/readings", params={"start": "2027-07-01T00:30:00Z", "end": RANGE["end"],
                                     "stream_id": sid, "interval": "1h"}, headers=h).json()  # fmt: skip
    assert r["source"] == "readings" and r["items"][0]["count"] == 3
    r = api.get("/readings", params={**RANGE, "stream_id": sid, "interval": "1h",
                                     "max_quality": 3}, headers=h).json()  # fmt: skip
    assert r["source"] == "readings" and sum(x["count"] for x in r["items"]) == 72 - 4
    r = api.get("/readings", params={**RANGE, "stream_id": sid, "interval": "30m"},
                headers=h).json()  # fmt: skip
    assert r["source"] == "readings" and r["aggregates"] == ["mean"] and len(r["items"]) == 24
    r = api.get("/readings", params={"start": "2027-06-30T00:00:00Z", "end": "2027-07-14T00:00Z",
                                     "stream_id": sid, "interval": "1w"}, headers=h).json()  # fmt: skip
    # weeks start on Mondays: 2027-06-28 is one
    assert [x["time"] for x in r["items"]] == ["2027-06-28T00:00:00Z"]


def test_bad_requests_are_422_with_a_message(api, db, series):
    h = role_keys(db)["viewer"]
    cases = [
        ({**RANGE, "bogus": 1}, "bogus"),
        ({"start": RANGE["end"], "end": RANGE["start"]}, "before end"),
        ({"start": "2027-07-01T00:00:00", "end": RANGE["end"]}, "timezone"),
        ({"end": RANGE["end"]}, "start"),
        ({**RANGE, "interval": "5x"}, "interval"),
        ({**RANGE, "interval": "0m"}, "positive"),
        ({**RANGE, "agg": "mean"}, "needs an interval"),
        ({**RANGE, "interval": "1h", "agg": "median"}, "agg"),
        ({**RANGE, "limit": 100_000}, "limit"),
        ({**RANGE, "quality": 5}, "quality"),
        ({**RANGE, "cursor": "!!"}, "cursor"),
        ({"start": "2020-01-01T00:00Z", "end": "2027-01-01T00:00Z", "interval": "1m"},
         "at most 50000"),
    ]  # fmt: skip
    for params, word in cases:
        r = api.get("/readings", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
        assert word in r.json()["message"], (params, r.json()["message"])
    r = api.get("/readings", params={"start": "2020-01-01T00:00Z", "end": "2027-01-01T00:00Z",
                                     "interval": "1m"}, headers=h)  # fmt: skip
    assert "at least 1h14m" in r.json()["message"]
    first = api.get("/readings", params={**RANGE, "limit": 10}, headers=h).json()
    r = api.get("/readings", params={**RANGE, "limit": 10, "channel": "stage_m",
                                     "cursor": first["next_cursor"]}, headers=h)  # fmt: skip
    assert r.status_code == 422 and "another query" in r.json()["message"]


def test_every_role_reads_and_no_key_is_401(api, db, series):
    keys = role_keys(db)
    for headers in keys.values():
        assert api.get("/readings", params=RANGE, headers=headers).status_code == 200
    r = api.get("/readings", params=RANGE)
    assert r.status_code == 401 and "API key" in r.json()["message"]
