"""GET /exports/readings.{csv,parquet,nc}: the selection, streamed bodies, file names,
roles, validation and the limit on exports running at once."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from ingest.api import create_app
from ingest.settings import Settings
from tests.api.research_support import add_site, add_stream, role_keys, write

T0 = datetime(2027, 7, 1, tzinfo=UTC)
RANGE = {"start": "2027-07-01T00:00:00Z", "end": "2027-07-02T00:00:00Z"}


@pytest.fixture
def api(db):
    with TestClient(create_app(Settings(_env_file=None, database_url=db))) as client:
        yield client


@pytest.fixture
def data(db) -> dict:
    add_site(db, "dam-1", "check_dam", lat=37.5, lon=109.1)
    add_site(db, "rg-1", "rain_gauge")
    ids = {
        "stage": add_stream(db, "log-1", "stage_m", "dam-1", "m"),
        "rain": add_stream(db, "log-2", "rain_mm", "rg-1", "mm"),
    }
    for k, sid in enumerate(ids.values()):
        write(db, sid, [(T0 + timedelta(minutes=5 * i), k + i / 100, 3 if i % 7 == 0 else 1)
                        for i in range(48 * 12)])  # fmt: skip
    return ids


def test_csv_of_a_site_and_range(api, db, data):
    h = role_keys(db)["viewer"]
    r = api.get("/exports/readings.csv", params={**RANGE, "site_id": "dam-1", "max_quality": 2},
                headers=h)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == (
        'attachment; filename="readings_dam-1_20270701T0000Z-20270702T0000Z.csv"'
    )
    got = list(csv.DictReader(io.StringIO(r.text)))
    assert len(got) == 288 - 42 and {g["site_id"] for g in got} == {"dam-1"}
    assert got[0]["time"] == "2027-07-01T00:05:00.000000Z" and got[0]["channel"] == "stage_m"
    assert {g["quality"] for g in got} == {"1"}


def test_parquet_and_netcdf_hold_the_same_readings(api, db, data, tmp_path):
    h = role_keys(db)["surveyor"]
    r = api.get("/exports/readings.parquet", params=RANGE, headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].endswith('.parquet"')
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == 2 * 288
    assert table.column("stream_id").to_pylist() == [data["stage"]] * 288 + [data["rain"]] * 288
    r = api.get("/exports/readings.nc", params={**RANGE, "channel": "rain_mm"}, headers=h)
    assert r.status_code == 200, r.text
    assert int(r.headers["content-length"]) == len(r.content)
    path = tmp_path / "x.nc"
    path.write_bytes(r.content)
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        assert ds.featureType == "timeSeries"
        assert ds.variables["rain_mm"].shape == (288,)
        assert ds.variables["rain_mm"][0] == pytest.approx(1.0)
    # nothing selected: a valid empty file
    r = api.get("/exports/readings.parquet", params={"site_id": "nowhere"}, headers=h)
    assert r.status_code == 200 and pq.read_table(io.BytesIO(r.content)).num_rows == 0


def test_a_large_csv_is_sent_in_chunks(api, db, data):
    sid = data["stage"]
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO readings (time, stream_id, value, quality, received_at) "
            "SELECT %s + g * interval '1 s', %s, g, 1, now() FROM generate_series(1, 60000) g",
            (T0 + timedelta(days=3), sid),
        )
    h = role_keys(db)["viewer"]
    chunks = 0
    total = b""
    with api.stream("GET", "/exports/readings.csv", params={"stream_id": sid}, headers=h) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            chunks += 1
            total += chunk
    assert chunks > 5
    assert total.count(b"\n") == 1 + 576 + 60000


def test_roles_validation_and_the_limit_of_exports_at_once(db, data):
    keys = role_keys(db)
    with psycopg.connect(db) as conn:  # more than the pipe holds: the export waits for us
        conn.execute(
            "INSERT INTO readings (time, stream_id, value, quality, received_at) "
            "SELECT %s + g * interval '1 s', %s, g, 1, now() FROM generate_series(1, 60000) g",
            (T0 + timedelta(days=3), data["stage"]),
        )
    settings = Settings(_env_file=None, database_url=db, export_max_concurrent=1)
    with TestClient(create_app(settings)) as api:
        assert api.get("/exports/readings.csv").status_code == 401
        for params, word in [
            ({"bogus": 1}, "bogus"),
            ({"start": "2027-07-01T00:00:00"}, "timezone"),
            ({"start": RANGE["end"], "end": RANGE["start"]}, "before end"),
            ({"quality": 7}, "QC flag"),
        ]:
            r = api.get("/exports/readings.parquet", params=params, headers=keys["viewer"])
            assert r.status_code == 422 and word in r.json()["message"], r.text
        with api.stream("GET", "/exports/readings.csv", headers=keys["viewer"]) as first:
            assert first.status_code == 200
            r = api.get("/exports/readings.nc", headers=keys["viewer"])
            assert r.status_code == 429 and "exports are running" in r.json()["message"]
            first.read()
        r = api.get("/exports/readings.csv", params=RANGE, headers=keys["viewer"])
        assert r.status_code == 200
        # a client that goes away after the first chunk frees its slot
        with api.stream("GET", "/exports/readings.csv", headers=keys["viewer"]) as first:
            next(first.iter_raw())
        for _ in range(50):
            r = api.get("/exports/readings.csv", params=RANGE, headers=keys["viewer"])
            if r.status_code != 429:
                break
            time.sleep(0.1)
        assert r.status_code == 200
