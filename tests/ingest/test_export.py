"""Exports: CSV, Parquet and CF NetCDF from real PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pyarrow.parquet as pq
import pytest
import xarray as xr

from ingest.export import PARQUET_SCHEMA, Selection, estimate_rows, export
from ingest.store.readings import ReadingWriter
from ingest.store.registry import load_registry, read_registry_file

T0 = datetime(2026, 7, 21, 3, 0, tzinfo=UTC)


@pytest.fixture
def loaded(db, tmp_path):
    f = tmp_path / "sites.yaml"
    f.write_text(
        """
sites:
  - {id: dam-a, kind: check_dam, name: Dam A, latitude: 37.5, longitude: 110.2, elevation_m: 950,
     devices: [{id: dam-a, channels: [stage_m, turbidity_ntu]}]}
  - {id: rg-1, kind: rain_gauge, name: Gauge 1, latitude: 37.6, longitude: 110.3,
     devices: [{id: rg-1, channels: [rain_mm]}]}
"""
    )
    now = datetime.now(UTC)
    with psycopg.connect(db, autocommit=True) as conn:
        load_registry(conn, read_registry_file(f))
        ids = dict(conn.execute("SELECT device_id || '/' || channel, id FROM streams").fetchall())
        rows = []
        for i in range(100):
            t = T0 + timedelta(minutes=i, microseconds=250)
            rows.append((t, ids["dam-a/stage_m"], 2.0 + i / 100, 1 if i != 50 else 3, now))
            rows.append((t, ids["dam-a/turbidity_ntu"], 1000.0 + i, 1, now))
            if i % 10 == 0:
                rows.append((t, ids["rg-1/rain_mm"], 0.2 * (i // 10), 2, now))
        ReadingWriter().write(conn, rows)
    return db, ids


def test_csv_export_with_filters(loaded):
    db, ids = loaded
    out = io.BytesIO()
    with psycopg.connect(db) as conn:
        sel = Selection(
            site_ids=("dam-a",),
            channels=("stage_m",),
            start=T0 + timedelta(minutes=10),
            end=T0 + timedelta(minutes=60),
            qualities=(1, 2),
        )
        result = export(conn, sel, "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert result.rows == len(rows) == 49  # minutes 10..59 minus the suspect one at 50
    first = rows[0]
    assert first == {
        "time": "2026-07-21T03:10:00.000250Z",
        "site_id": "dam-a",
        "device_id": "dam-a",
        "channel": "stage_m",
        "unit": "m",
        "stream_id": str(ids["dam-a/stage_m"]),
        "value": "2.1",
        "quality": "1",
    }
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)


def test_parquet_export_has_the_documented_schema(loaded, tmp_path):
    db, ids = loaded
    path = tmp_path / "x.parquet"
    with psycopg.connect(db) as conn:
        result = export(conn, Selection(), "parquet", path)
        assert estimate_rows(conn, Selection()) > 0
    table = pq.read_table(path)
    assert table.schema.equals(PARQUET_SCHEMA)
    assert result.rows == table.num_rows == 210
    stage = table.filter(table["stream_id"].to_numpy() == ids["dam-a/stage_m"])
    assert stage["time"][0].as_py() == T0 + timedelta(microseconds=250)
    assert stage["value"].to_pylist()[:3] == [2.0, 2.01, 2.02]
    assert stage["quality"].to_pylist()[50] == 3
    assert set(table["site_id"].to_pylist()) == {"dam-a", "rg-1"}


def test_netcdf_export_opens_in_xarray_with_units_times_and_flags(loaded, tmp_path):
    db, _ = loaded
    path = tmp_path / "x.nc"
    with psycopg.connect(db) as conn:
        export(conn, Selection(), "netcdf", path)
    ds = xr.open_dataset(path)
    try:
        assert ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3"
        assert ds.attrs["featureType"] == "timeSeries"
        stage = ds["stage_m"]
        assert stage.attrs["units"] == "m"
        assert stage.attrs["standard_name"] == "water_surface_height_above_reference_datum"
        assert ds["rain_mm"].attrs["units"] == "mm"
        assert ds["turbidity_ntu"].attrs["units"] == "1"  # UDUNITS has no NTU
        assert ds["turbidity_ntu"].attrs["ucum_units"] == "[NTU]"
        times = ds["time_stage_m"].values
        assert times.dtype.kind == "M"
        # double seconds since 1970 keep the microseconds
        assert abs(times[0] - np.datetime64("2026-07-21T03:00:00.000250")) < np.timedelta64(1, "us")
        assert float(stage.values[1]) == 2.01
        qc = ds["stage_m_qc"]
        assert list(qc.attrs["flag_values"]) == [1, 2, 3, 4, 9]
        assert qc.attrs["flag_meanings"].split() == [
            "pass",
            "not_evaluated",
            "suspect",
            "fail",
            "missing",
        ]
        assert int(qc.values[50]) == 3
        idx = ds["station_index_stage_m"].values
        station = int(idx[0])
        assert ds["station_name"].values[station] == "dam-a/stage_m"
        assert float(ds["lat"].values[station]) == 37.5
        assert ds["rain_mm"].size == 10
    finally:
        ds.close()


def test_empty_selection_gives_valid_empty_files(loaded, tmp_path):
    db, _ = loaded
    sel = Selection(site_ids=("nowhere",))
    with psycopg.connect(db) as conn:
        out = io.BytesIO()
        assert export(conn, sel, "csv", out).rows == 0
        assert out.getvalue().startswith(b"time,site_id")
        export(conn, sel, "parquet", tmp_path / "e.parquet")
        assert pq.read_table(tmp_path / "e.parquet").num_rows == 0
        export(conn, sel, "netcdf", tmp_path / "e.nc")
    xr.open_dataset(tmp_path / "e.nc").close()


def test_unknown_format_is_refused(loaded):
    db, _ = loaded
    with psycopg.connect(db) as conn, pytest.raises(ValueError, match="unknown export format"):
        export(conn, Selection(), "xlsx", io.BytesIO())


def test_swc_export_command(loaded, tmp_path):
    from click.testing import CliRunner

    from swc_cli import main

    db, _ = loaded
    out = tmp_path / "dam.parquet"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--database-url",
            db,
            "--out",
            str(out),
            "--site",
            "dam-a",
            "--start",
            "2026-07-21T03:00:00Z",
            "--quality",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows == 199
    bad = CliRunner().invoke(
        main, ["export", "--database-url", db, "--out", str(out), "--start", "yesterday"]
    )
    assert bad.exit_code == 2 and "RFC 3339" in bad.output
    naive = CliRunner().invoke(
        main, ["export", "--database-url", db, "--out", str(out), "--start", "2026-07-21T00:00:00"]
    )
    assert naive.exit_code == 2 and "no zone" in naive.output
    # "-" is CSV on standard output unless --format says otherwise (docs/research.md)
    piped = CliRunner().invoke(
        main, ["export", "--database-url", db, "--out", "-", "--site", "dam-a"]
    )
    assert piped.exit_code == 0, piped.output
    rows = list(csv.DictReader(io.StringIO(piped.stdout_bytes.decode())))
    assert len(rows) > 0 and {"time", "value", "quality"} <= set(rows[0])
    unknown = CliRunner().invoke(main, ["export", "--database-url", db, "--out", "dam.xlsx"])
    assert unknown.exit_code == 2 and "--format csv|parquet|netcdf" in unknown.output
