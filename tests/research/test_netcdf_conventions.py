"""The NetCDF export of the shipped county passes IOOS compliance-checker's CF-1.8 and
ACDD-1.3 checks, and holds every QC flag (each QARTOD test and the aggregate)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import netCDF4
import numpy as np
import psycopg
import pytest

from analytics.quality import qc_flags
from ingest.export import QC_TESTS, Selection, _StreamFlags, export
from ingest.qc import CHANNEL_QC
from ingest.store.readings import ReadingWriter
from ingest.store.registry import load_registry, read_registry_file

from .conftest import load, load_registry_of

# one of each kind of site of the default county, and a lab logger for the channels the
# simulator does not send (SSC and temperatures)
DEVICES = ("dam-a01", "rg-01", "cis-01", "plot-01")
LAB = """
sites:
  - {id: lab-1, kind: rain_gauge, name: Lab, latitude: 37.61, longitude: 110.31,
     elevation_m: 1010,
     devices: [{id: lab-1, channels: [ssc_kg_m3, air_temperature_c, water_temperature_c,
                                      temperature_c]}]}
"""


@pytest.fixture(scope="module")
def county_db(sim50, admin_dsn, tmp_path_factory):
    from ingest.store.migrate import migrate
    from tests.conftest import create_database, drop_database, dsn_for

    name = create_database(admin_dsn)
    dsn = dsn_for(name, admin_dsn)
    tmp = tmp_path_factory.mktemp("nc")
    try:
        migrate(dsn, "off")
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_registry_of(conn, sim50)
            (tmp / "lab.yaml").write_text(LAB)
            load_registry(conn, read_registry_file(tmp / "lab.yaml"))
            load(conn, sim50, devices=DEVICES)
            ids = dict(
                conn.execute("SELECT channel, id FROM streams WHERE device_id = 'lab-1'").fetchall()
            )
            t0 = datetime(2026, 7, 20, tzinfo=UTC)
            rows = [
                (t0 + timedelta(minutes=10 * i), ids[ch], v + i / 10, 1, t0)
                for i in range(50)
                for ch, v in (
                    ("ssc_kg_m3", 3.0),
                    ("air_temperature_c", 21.0),
                    ("water_temperature_c", 17.0),
                    ("temperature_c", 19.0),
                )
            ]
            ReadingWriter().write(conn, rows)
        yield dsn
    finally:
        drop_database(admin_dsn, name)


@pytest.fixture(scope="module")
def county_nc(county_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("nc") / "county.nc"
    with psycopg.connect(county_db) as conn:
        result = export(conn, Selection(device_ids=(*DEVICES, "lab-1")), "netcdf", path)
    assert set(result.left_out) == {"battery_v", "rssi_dbm", "temperature_c"}
    return path


@pytest.fixture(scope="module")
def reports(county_nc, tmp_path_factory) -> dict:
    """compliance-checker's reports (JSON) of the export, by checker."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    out = tmp_path_factory.mktemp("cc") / "report.json"
    ComplianceChecker.run_checker(
        str(county_nc),
        ["cf:1.8", "acdd"],
        0,
        "normal",
        output_filename=str(out),
        output_format="json",
    )
    return json.loads(out.read_text())


def _failed(report: dict, priority: str) -> list[tuple[str, list[str]]]:
    return [(r["name"], r["msgs"]) for r in report[priority] if r["value"][0] != r["value"][1]]


def test_cf_18_passes(reports):
    report = reports["cf:1.8"]
    assert _failed(report, "high_priorities") == []
    assert _failed(report, "medium_priorities") == []


def test_acdd_13_high_priority_passes(reports):
    assert _failed(reports["acdd"], "high_priorities") == []


def test_the_file_says_what_it_holds(county_nc):
    with netCDF4.Dataset(county_nc) as ds:
        for attr in (
            "title",
            "summary",
            "keywords",
            "id",
            "naming_authority",
            "license",
            "creator_name",
            "date_created",
            "time_coverage_start",
            "geospatial_lat_min",
            "geospatial_vertical_max",
        ):
            assert getattr(ds, attr), attr
        assert ds.Conventions == "CF-1.8, ACDD-1.3"
        assert ds.time_coverage_start.startswith("2026-07-20T")
        v = ds.variables
        assert v["time_stage_m"].dtype == np.float64
        assert v["time_stage_m"].units.startswith("seconds since 1970-01-01")
        assert v["rain_mm"].cell_methods == "time: sum"
        assert v["stage_m"].cell_methods == "time: point"
        assert v["turbidity_ntu"].units == "1" and v["turbidity_ntu"].ucum_units == "[NTU]"
        assert v["ssc_kg_m3"].units == "kg m-3"
        # fresh water under CF's sea_water names, and said so
        for name, std in (
            ("turbidity_ntu", "sea_water_turbidity"),
            ("ssc_kg_m3", "mass_concentration_of_suspended_matter_in_sea_water"),
            ("water_temperature_c", "sea_water_temperature"),
        ):
            assert v[name].standard_name == std
            assert "fresh" in v[name].comment
        assert v["air_temperature_c"].standard_name == "air_temperature"
        assert v["air_temperature_c"].units == "degC"
        # what CF cannot name is left out when no channel is asked for, and the file says so
        for name in ("battery_v", "rssi_dbm", "temperature_c"):
            assert name not in v and name in ds.comment
        # every QC flag: the aggregate and each test configured for the channel
        stage_tests = [t for t in QC_TESTS if f"stage_m_qc_{t}" in v]
        assert stage_tests == ["gross_range", "spike", "rate_of_change", "flat_line"]
        ancillary = v["stage_m"].ancillary_variables.split()
        assert ancillary == ["stage_m_qc", "stage_m_qc_logger"] + [
            f"stage_m_qc_{t}" for t in stage_tests
        ]
        assert v["stage_m_qc_logger"].standard_name == "quality_flag"
        assert set(np.unique(v["stage_m_qc_logger"][:])) <= {1, 2, 3, 4, 9}
        for name in ancillary:
            assert list(v[name].flag_values) == [1, 2, 3, 4, 9]
            assert v[name].flag_meanings.split()[0] == "pass"
        assert v["stage_m_qc"].standard_name == "aggregate_quality_flag"
        assert v["stage_m_qc_spike"].standard_name == "spike_test_quality_flag"
        # the per-test flags are those of the tests on the stream's whole series
        t = v["time_stage_m"][:]
        stage = v["stage_m"][:]
        got = qc_flags(t, stage, **CHANNEL_QC["stage_m"])
        for test in stage_tests:
            assert (v[f"stage_m_qc_{test}"][:] == got[test]).all(), test


def test_channels_cf_cannot_name_come_when_asked_for(county_db, tmp_path):
    with psycopg.connect(county_db) as conn:
        path = tmp_path / "health.nc"
        selection = Selection(device_ids=("dam-a01", "lab-1"),
                              channels=("rssi_dbm", "temperature_c", "stage_m"))  # fmt: skip
        result = export(conn, selection, "netcdf", path)
    assert result.left_out == ()
    with netCDF4.Dataset(path) as ds:
        v = ds.variables
        assert v["rssi_dbm"].units == "dBm" and v["rssi_dbm"].ucum_units == "dB[mW]"
        for name in ("rssi_dbm", "temperature_c"):
            assert "standard_name" not in v[name].ncattrs()
            assert "no standard_name" in v[name].comment
        assert v["stage_m"].standard_name == "water_surface_height_above_reference_datum"
        assert "left out" not in getattr(ds, "comment", "")


def test_flags_computed_in_windows_equal_those_of_the_whole_series():
    rng = np.random.default_rng(7)
    n = 5000
    times_us = np.cumsum(rng.integers(30, 900, n)).astype(np.int64) * 1_000_000
    values = np.where(rng.random(n) < 0.3, 2.0, 2.0 + rng.normal(0, 0.3, n).cumsum() / 10)
    cfg = dict(CHANNEL_QC["stage_m"], flat_suspect_s=3000.0, flat_fail_s=6000.0)
    written: dict[str, list] = {t: [] for t in QC_TESTS}
    times_out: list = []

    def write(sid, t, v, q, tests):
        times_out.append(t)
        for k, arr in tests.items():
            written[k].append(arr)

    flags = _StreamFlags({1: cfg}, write, flush_rows=97)
    for a in range(0, n, 61):
        flags.add(1, times_us[a : a + 61], values[a : a + 61], np.ones(61, np.int8))
    flags.close()
    assert (np.concatenate(times_out) == times_us).all()
    whole = qc_flags(times_us / 1e6, values, **cfg)
    for test in ("gross_range", "spike", "rate_of_change", "flat_line"):
        assert (np.concatenate(written[test]) == whole[test]).all(), test
