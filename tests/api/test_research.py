"""Derived products over HTTP (the same results as ``ingest.research``), curve and
calibration versions made by surveys, and a sediment survey beside the sensors' deposit,
on a simulated 50-year storm."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from firmware_sim.run import RunConfig, run
from ingest import research
from ingest.api import create_app
from ingest.research.validate import load_messages, registry_with_scenario
from ingest.settings import Settings
from ingest.store.registry import load_registry
from tests.api.research_support import role_keys
from tests.research.conftest import messages

AT = datetime(2026, 7, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim50api")
    run(RunConfig(storm="50y", out_dir=out, write_messages=True))
    return out


@pytest.fixture
def loaded(db, sim) -> str:
    devices = ["rg-01", "dam-c06", "plot-01", "cis-08", "rg-03", "rg-04", "rg-05"]
    with psycopg.connect(db) as conn:
        load_registry(conn, registry_with_scenario(sim))
        load_messages(conn, messages(sim, devices))
    return db


@pytest.fixture
def api(loaded):
    with TestClient(create_app(Settings(_env_file=None, database_url=loaded))) as client:
        yield client


def same(api_json: dict, model) -> None:
    want = model.model_dump(mode="json")
    api_json = {k: v for k, v in api_json.items() if k != "cached"}
    want = {k: v for k, v in want.items() if k != "cached"}
    assert api_json == want


def test_products_are_those_of_ingest_research(api, loaded):
    h = role_keys(loaded)["viewer"]
    with psycopg.connect(loaded) as conn:
        r = api.get("/research/sites/rg-01/storms", headers=h)
        assert r.status_code == 200, r.text
        assert len(r.json()["events"]) == 1 and r.json()["events"][0]["depth_mm"] > 50
        same(r.json(), research.storm_events(conn, "rg-01"))
        r = api.get("/research/sites/dam-c06/dam-events", params={"outflow": "auto"}, headers=h)
        assert r.status_code == 200, r.text
        ev = r.json()["events"]
        assert len(ev) == 1 and ev[0]["sediment_retained_t"] > 0
        same(r.json(), research.dam_events(conn, "dam-c06"))
        p = {"at": AT.isoformat(), "annual_sediment_inflow_t": 5000}
        r = api.get("/research/sites/dam-c06/retention", params=p, headers=h)
        assert r.status_code == 200, r.text
        same(r.json(), research.dam_retention(conn, "dam-c06", AT, annual_sediment_inflow_t=5000))
        r = api.get("/research/sites/plot-01/plot-events", headers=h)
        assert r.status_code == 200 and r.json()["events"], r.text
        same(r.json(), research.plot_events(conn, "plot-01"))
        r = api.get("/research/sites/cis-08/cistern-events", params={"use_cache": False},
                    headers=h)  # fmt: skip
        assert r.status_code == 200 and r.json()["events"][0]["reached_overflow"], r.text


def test_errors_of_the_products(api, loaded):
    h = role_keys(loaded)["viewer"]
    assert api.get("/research/sites/rg-01/storms").status_code == 401
    r = api.get("/research/sites/nowhere/storms", headers=h)
    assert r.status_code == 404 and "no site" in r.json()["message"]
    r = api.get("/research/sites/rg-01/dam-events", headers=h)
    assert r.status_code == 422 and "not a check_dam" in r.json()["message"]
    for url, params, word in [
        ("storms", {"min_dry_h": 0}, "min_dry_h"),
        ("storms", {"start": "2026-07-21T00:00:00"}, "timezone"),
        ("storms", {"start": "2026-07-22T00:00Z", "end": "2026-07-21T00:00Z"}, "before end"),
        ("storms", {"exclude_quality": 5}, "QC flag"),
        ("storms", {"bogus": 1}, "bogus"),
    ]:
        r = api.get(f"/research/sites/rg-01/{url}", params=params, headers=h)
        assert r.status_code == 422 and word in r.json()["message"], r.text


def test_curves_and_calibrations_from_surveys(api, loaded):
    keys = role_keys(loaded)
    h = keys["surveyor"]
    before = api.get("/research/sites/dam-c06/curves", headers=keys["viewer"]).json()
    assert [c["source"] for c in before] == ["design"]
    pts = [{"stage_m": x, "volume_m3": 800 * x**2.2} for x in (0.5, 1, 2, 3, 4, 5)]
    body = {"site_id": "dam-c06", "kind": "stage_storage_survey",
            "surveyed_at": "2026-09-01T00:00:00Z", "data": {"points": pts}}  # fmt: skip
    sid = api.post("/surveys", json=body, headers=h).json()["id"]
    after = api.get("/research/sites/dam-c06/curves", headers=keys["viewer"]).json()
    assert [c["source"] for c in after] == ["design", "survey"]
    assert after[1]["survey_id"] == sid and after[1]["b"] == pytest.approx(2.2)
    # every later computation uses it: retention after the re-survey starts from it
    r = api.get("/research/sites/dam-c06/retention", params={"at": "2026-10-01T00:00Z"},
                headers=keys["viewer"]).json()  # fmt: skip
    assert r["curve"]["id"] == after[1]["id"] and r["since"] == "2026-09-01T00:00:00Z"
    assert r["events"] == 0
    samples = [{"ntu": n, "ssc_kg_m3": 0.004 * n} for n in (100, 400, 900, 2000)]
    body = {"site_id": "dam-c06", "kind": "calibration_visit",
            "surveyed_at": "2026-09-01T00:00:00Z", "data": {"samples": samples,
                                                            "model": "linear"}}  # fmt: skip
    assert api.post("/surveys", json=body, headers=h).status_code == 201
    cals = api.get("/research/sites/dam-c06/calibrations", headers=keys["viewer"]).json()
    assert cals[-1]["source"] == "survey" and cals[-1]["slope"] == pytest.approx(0.004)
    r = api.get("/research/sites/dam-c06/calibrations", params={"channel": "Bad"},
                headers=keys["viewer"])  # fmt: skip
    assert r.status_code == 422


def test_sediment_survey_beside_the_sensor_deposit(api, loaded):
    keys = role_keys(loaded)
    with psycopg.connect(loaded) as conn:
        ret = research.dam_retention(conn, "dam-c06", AT)
        params = conn.execute("SELECT params FROM sites WHERE id = 'dam-c06'").fetchone()[0]
    pts = [{"x_m": float(i), "y_m": float(i % 3), "elevation_m": 0.3 + 0.02 * i} for i in range(8)]
    body = {"site_id": "dam-c06", "kind": "sediment_survey", "surveyed_at": AT.isoformat(),
            "data": {"points": pts}}  # fmt: skip
    r = api.post("/surveys", json=body, headers=keys["surveyor"])
    assert r.status_code == 201, r.text
    dep = r.json()["deposit"]
    rho = params["dry_bulk_density_t_m3"]
    mean = sum(p["elevation_m"] for p in pts) / len(pts)
    ss = params["stage_storage"]
    assert dep["surveyed_volume_m3"] == pytest.approx(ss["a"] * mean ** ss["b"], rel=1e-9)
    assert dep["dry_bulk_density_t_m3"] == rho and dep["sensor_events"] == 1
    assert dep["sensor_retained_t"] == pytest.approx(ret.sediment_retained_t)
    assert dep["sensor_volume_m3"] == pytest.approx(ret.sediment_retained_t / rho)
    assert dep["difference_m3"] == pytest.approx(
        dep["surveyed_volume_m3"] - dep["sensor_volume_m3"]
    )
    again = api.get(f"/surveys/{r.json()['id']}", headers=keys["viewer"]).json()["deposit"]
    assert again["sensor_volume_m3"] == pytest.approx(dep["sensor_volume_m3"])
