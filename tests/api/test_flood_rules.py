"""Issue 10, item 1: a flood rule for every kind of structure; a site left without one
is reported with the reason by `swc sites load`, the rules endpoint, /sites and /health;
a small dam without a spillway gets a red before its crest is overtopped."""

from __future__ import annotations

from datetime import timedelta

import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from ingest.alerting import AlertEngine
from ingest.settings import Settings
from swc_cli import main as swc
from tests.api.support import insert_readings, minutes_ago, new_key, rows

CURVE = {"a": 300.0, "b": 2.4}
SITES = [
    {"id": "dam-small", "kind": "check_dam", "name": "small dam, no spillway",
     "params": {"dam_class": "small", "dam_crest_m": 5.0, "stage_storage": CURVE,
                "culvert_centre_m": 0.8, "culvert_area_m2": 0.03},
     "devices": [{"id": "dam-small", "channels": ["stage_m"]}]},
    {"id": "dam-key", "kind": "check_dam", "name": "key dam",
     "params": {"dam_class": "key", "dam_crest_m": 6.0, "spillway_crest_m": 4.5,
                "spillway_width_m": 12.0, "stage_storage": CURVE},
     "devices": [{"id": "dam-key", "channels": ["stage_m", "rain_mm"]}]},
    {"id": "dam-nocrest", "kind": "check_dam", "name": "no crest surveyed",
     "params": {"spillway_crest_m": 4.0},
     "devices": [{"id": "dam-nocrest", "channels": ["stage_m"]}]},
    {"id": "dam-nosensor", "kind": "check_dam", "name": "no stage sensor",
     "params": {"dam_crest_m": 5.0, "stage_storage": CURVE},
     "devices": [{"id": "dam-nosensor", "channels": ["battery_v"]}]},
    {"id": "dam-badoutlet", "kind": "check_dam", "name": "culvert area mistyped",
     "params": {"dam_crest_m": 5.0, "stage_storage": CURVE, "culvert_centre_m": 0.5,
                "culvert_area_m2": -0.03},
     "devices": [{"id": "dam-badoutlet", "channels": ["stage_m"]}]},
    {"id": "cis-1", "kind": "cistern", "name": "cistern", "params": {"overflow_level_m": 3.0},
     "devices": [{"id": "cis-1", "channels": ["level_m"]}]},
    {"id": "cis-2", "kind": "cistern", "name": "cistern without overflow level", "params": {},
     "devices": [{"id": "cis-2", "channels": ["level_m"]}]},
    {"id": "plot-1", "kind": "runoff_plot", "name": "plot", "params": {"tank_capacity_m3": 2.0},
     "devices": [{"id": "plot-1", "channels": ["flow_m3_s"]}]},
    {"id": "rg-1", "kind": "rain_gauge", "name": "gauge", "params": {},
     "devices": [{"id": "rg-1", "channels": ["rain_mm"]}]},
]  # fmt: skip
UNCOVERED = {"dam-nocrest", "dam-nosensor", "cis-2"}


def _load(db, tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump({"sites": SITES}))
    return CliRunner().invoke(swc, ["sites", "load", str(path), "--database-url", db])


def test_sites_load_warns_about_every_site_without_a_flood_rule(db, tmp_path):
    result = _load(db, tmp_path)
    assert result.exit_code == 0, result.output
    warned = {line.split()[2] for line in result.output.splitlines()
              if line.startswith("warning: site ")}  # fmt: skip
    assert warned == UNCOVERED
    assert "dam_crest_m not set" in result.output
    assert "no device measures stage_m" in result.output
    assert "overflow_level_m not set" in result.output


def test_rules_sites_and_health_say_why_a_site_has_no_flood_rule(db, tmp_path):
    assert _load(db, tmp_path).exit_code == 0
    key = {"X-API-Key": new_key(db, "viewer")}
    with TestClient(__import__("ingest.api", fromlist=["create_app"]).create_app(
        Settings(_env_file=None, database_url=db)
    )) as api:  # fmt: skip
        rules = {r["rule"]: r for r in api.get("/sites/dam-nocrest/rules", headers=key).json()}
        assert rules["stage"]["applies"] is False and rules["stage"]["flood"] is True
        assert "dam_crest_m" in rules["stage"]["reason"]
        small = {r["rule"]: r for r in api.get("/sites/dam-small/rules", headers=key).json()}
        assert small["stage"]["applies"] and small["overtopping"]["applies"]
        assert small["stage"]["reason"] is None
        bad = {r["rule"]: r for r in api.get("/sites/dam-badoutlet/rules", headers=key).json()}
        assert bad["overtopping"]["applies"] is False and bad["stage"]["applies"]
        assert "culvert_area_m2" in bad["overtopping"]["reason"]
        # a dam without spillway: orange at the design freeboard (small: 0.5 m), red 0.01 m
        assert small["stage"]["config"]["thresholds"]["orange"] == 0.5
        assert small["stage"]["config"]["thresholds"]["red"] == 0.01
        key_dam = {r["rule"]: r for r in api.get("/sites/dam-key/rules", headers=key).json()}
        assert key_dam["stage"]["config"]["thresholds"]["orange"] == 1.5  # spillway flows
        assert key_dam["rainfall"]["applies"] is False  # rain at a dam feeds its forecast
        sites = {s["id"]: s for s in api.get("/sites", headers=key).json()["items"]}
        assert {s for s, v in sites.items() if v["flood_warning"]} == UNCOVERED
        assert sites["plot-1"]["flood_rules"] == ["plot_tank"]
        assert sites["cis-1"]["flood_rules"] == ["cistern_overflow"]
        assert sorted(sites["dam-small"]["flood_rules"]) == ["overtopping", "stage"]
        health = api.get("/health").json()
        assert {w["site_id"] for w in health["sites_without_flood_rule"]} == UNCOVERED


def test_small_dam_without_spillway_gets_red_before_its_crest(db, tmp_path):
    assert _load(db, tmp_path).exit_code == 0
    engine = AlertEngine(Settings(_env_file=None, database_url=db), db)
    start = minutes_ago(60)
    # the pond fills steadily (3.5 m3/s) towards its crest at 5.0 m, all below the crest
    vols = [CURVE["a"] * 3.0 ** CURVE["b"] + 3.5 * 60 * i for i in range(45)]
    stage = [(v / CURVE["a"]) ** (1 / CURVE["b"]) for v in vols]
    assert max(stage) < 5.0
    points = [(start + timedelta(minutes=i), s) for i, s in enumerate(stage)]
    engine.process([insert_readings(db, "dam-small", "stage_m", points)])
    reds = rows(db, "SELECT rule, min(e.data_time) FROM alerts a JOIN alert_events e "
                    "ON e.alert_id = a.id WHERE a.site_id = 'dam-small' AND e.level = 4 "
                    "GROUP BY rule")  # fmt: skip
    assert [r[0] for r in reds] == ["overtopping"]  # the forecast, not the stage: ahead of it
    (forecast,) = rows(db, "SELECT forecast FROM alerts WHERE site_id = 'dam-small' "
                           "AND rule = 'overtopping'")[0]  # fmt: skip
    assert forecast["crest_m"] == 5.0 and forecast["method"] == "persistence"
    assert 0 < forecast["time_to_crest_s"] < 3 * 3600
