"""The console's page, assets and JSON helpers, and the offline docs, over HTTP."""

from __future__ import annotations

import re
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest.api import create_app
from ingest.api.console import STATIC_DIR
from ingest.settings import Settings
from ingest.store.registry import RegistryFile, load_registry
from tests.api.support import insert_readings, minutes_ago, new_key, set_rule


@pytest.fixture
def api(db):
    settings = Settings(_env_file=None, database_url=db, console_timezone="Asia/Urumqi")
    with TestClient(create_app(settings)) as client:
        yield client


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def load(db: str, sites: list[dict]) -> None:
    with psycopg.connect(db) as conn:
        load_registry(conn, RegistryFile.model_validate({"sites": sites}))


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


def test_the_page_and_its_assets_are_served_without_a_key_and_without_a_cdn(api):
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/console/static/js/app.js" in page.text
    assert not EXTERNAL.search(page.text)
    for path in sorted(STATIC_DIR.rglob("*.*")):
        rel = path.relative_to(STATIC_DIR).as_posix()
        r = api.get(f"/console/static/{rel}")
        assert r.status_code == 200, rel
        if rel.endswith((".js", ".css", ".html")):
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", r.text), rel
    assert api.get("/favicon.ico").status_code == 200
    assert api.get("/console/static/../app.py").status_code == 404


def test_docs_and_redoc_use_local_assets(api):
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = api.get(path).text
        assert f"/console/vendor/{asset}" in html
        assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html
        js = api.get(f"/console/vendor/{asset}")
        assert js.status_code == 200 and len(js.content) > 500_000
    assert api.get("/console/vendor/swagger-ui.css").status_code == 200
    schema = api.get("/openapi.json").json()
    assert "/console/device-health" in schema["paths"] and "/" not in schema["paths"]


def test_config_tells_the_role_and_whether_it_may_act(api, db):
    assert api.get("/console/config").status_code == 401
    viewer = api.get("/console/config", headers=auth(new_key(db, "viewer"))).json()
    assert viewer["role"] == "viewer" and viewer["can_act"] is False
    assert viewer["timezone"] == "Asia/Urumqi" and viewer["tile_url"] is None
    surveyor = api.get("/console/config", headers=auth(new_key(db, "surveyor"))).json()
    assert surveyor["can_act"] is False
    engineer = api.get("/console/config", headers=auth(new_key(db, "engineer"))).json()
    assert engineer["can_act"] is True


def test_console_settings_are_checked():
    with pytest.raises(ValueError, match="IANA time zone"):
        Settings(_env_file=None, console_timezone="China/Beijing")
    with pytest.raises(ValueError, match=r"\{z\}"):
        Settings(_env_file=None, console_tile_url="http://tiles.local/tile.png")
    ok = Settings(_env_file=None, console_tile_url="http://tiles.local/{z}/{x}/{y}.png")
    assert ok.console_tile_url.endswith("{y}.png")


def test_the_nearest_rain_gauge_serves_a_site(api, db):
    load(
        db,
        [
            {"id": "dam-1", "kind": "check_dam", "name": "d", "latitude": 37.5, "longitude": 110.2,
             "devices": [{"id": "dam-1", "channels": ["stage_m"]}]},
            {"id": "rg-near", "kind": "rain_gauge", "name": "n", "latitude": 37.51,
             "longitude": 110.21, "devices": [{"id": "rg-near", "channels": ["rain_mm"]}]},
            {"id": "rg-far", "kind": "rain_gauge", "name": "f", "latitude": 37.9,
             "longitude": 110.9, "devices": [{"id": "rg-far", "channels": ["rain_mm"]}]},
        ],
    )  # fmt: skip
    key = auth(new_key(db, "viewer"))
    ctx = api.get("/console/sites/dam-1/context", headers=key).json()
    assert ctx["rain_site_id"] is None  # no gauge has readings yet
    for gauge in ("rg-near", "rg-far"):
        insert_readings(db, gauge, "rain_mm", [(minutes_ago(5), 0.2)])
    ctx = api.get("/console/sites/dam-1/context", headers=key).json()
    assert ctx["rain_site_id"] == "rg-near"
    assert api.get("/console/sites/nope/context", headers=key).status_code == 404


def test_device_health_lists_gaps_flags_and_dead_letters(api, db):
    load(
        db,
        [
            {"id": "dam-big", "kind": "check_dam", "name": "big",
             "params": {"spillway_crest_m": 5.0, "dam_crest_m": 6.0},
             "devices": [{"id": "dam-big", "channels": ["stage_m", "battery_v", "rssi_dbm"]}]},
            {"id": "dam-small", "kind": "check_dam", "name": "small",
             "params": {"dam_crest_m": 3.0}},
            {"id": "dam-off", "kind": "check_dam", "name": "off",
             "params": {"spillway_crest_m": 5.0, "dam_crest_m": 6.0, "stage_storage": {"a": 300, "b": 2.4}},
             "devices": [{"id": "dam-off", "channels": ["stage_m"]}]},
            {"id": "cis-1", "kind": "cistern", "name": "cistern"},
            {"id": "rg-1", "kind": "rain_gauge", "name": "gauge"},
        ],
    )  # fmt: skip
    for rule in ("stage", "overtopping"):
        set_rule(db, "dam-off", rule, {"enabled": False})
    t0 = minutes_ago(30)
    insert_readings(db, "dam-big", "stage_m", [(t0 + timedelta(minutes=i), 3.0) for i in range(5)])
    insert_readings(db, "dam-big", "stage_m", [(t0 + timedelta(minutes=10), 3.2)], quality=3)
    insert_readings(db, "dam-big", "stage_m", [(t0 + timedelta(minutes=11), 99.0)], quality=4)
    insert_readings(db, "dam-big", "battery_v", [(t0, 12.6), (minutes_ago(1), 12.4)])
    insert_readings(db, "dam-big", "rssi_dbm", [(minutes_ago(1), -71.0)])
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO devices (id, kind) VALUES ('stray-7', 'logger')")
        conn.execute(
            "INSERT INTO devices (id, kind, firmware, status_state, status_at, status_battery_v, "
            "status_rssi_dbm) VALUES ('gw-1', 'gateway', '2.1.0', 'offline', now(), 11.9, -95)"
        )
        for code in ("invalid_json", "invalid_json", "unknown_device"):
            conn.execute(
                "INSERT INTO dead_letters (topic, payload, payload_size, error_code, error) "
                "VALUES (%s, %s, 1, %s, %s)",
                ("swc/v1/x/telemetry", b"{", code, f"{code}: detail"),
            )
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, payload, payload_size, error_code, "
            "error) VALUES (now() - interval '2 days', 't', 'x', 1, 'old_reason', 'old')"
        )
    key = auth(new_key(db, "viewer"))
    out = api.get("/console/device-health", headers=key).json()
    big = next(d for d in out["devices"] if d["id"] == "dam-big")
    assert big["battery_v"] == 12.4 and big["rssi_dbm"] == -71.0 and big["site_id"] == "dam-big"
    assert big["qc_last_day"] == {"readings": 10, "suspect": 1, "fail": 1}
    assert big["status_state"] is None
    # a device that sends no battery or signal readings: what its last status said
    gw = next(d for d in out["devices"] if d["id"] == "gw-1")
    assert (gw["status_state"], gw["firmware"]) == ("offline", "2.1.0")
    assert (gw["battery_v"], gw["rssi_dbm"]) == (11.9, -95.0)
    assert out["devices_without_site"] == ["stray-7"]  # a gateway needs no site
    gaps = {g["site_id"]: g["reason"] for g in out["sites_without_flood_rule"]}
    assert set(gaps) == {"dam-small", "dam-off", "cis-1"}
    assert "no device measures stage_m" in gaps["dam-small"]  # design values alone are not enough
    assert gaps["dam-off"].count("disabled at this site") == 2
    assert "overflow_level_m" in gaps["cis-1"]
    dead = {d["error_code"]: d["count"] for d in out["dead_letters_last_day"]}
    assert dead == {"invalid_json": 2, "unknown_device": 1}
    assert api.get("/console/device-health").status_code == 401
