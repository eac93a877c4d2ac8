"""The engineers' HTTP API: keys and roles, alerts, rule thresholds, sites, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from ingest.alerting import AlertEngine
from ingest.api import create_app
from ingest.settings import Settings
from tests.api.support import insert_readings, minutes_ago, new_key, rows, setup_site

DAM = {"spillway_crest_m": 4.8, "dam_crest_m": 6.0}


@pytest.fixture
def api(db):
    settings = Settings(_env_file=None, database_url=db, alert_min_duration_s=600)
    with TestClient(create_app(settings)) as client:
        yield client


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(db) -> dict[str, str]:
    return {role: new_key(db, role) for role in ("viewer", "engineer", "admin")}


def raise_alert(db) -> int:
    """A stage alert at dam-1 (yellow) through the engine; returns its id."""
    setup_site(db, "dam-1", "check_dam", DAM, {"dam-1": ["stage_m"]})
    engine = AlertEngine(Settings(_env_file=None, database_url=db), db)
    start = minutes_ago(10)
    batch = insert_readings(
        db, "dam-1", "stage_m", [(start + timedelta(minutes=i), 4.6) for i in range(5)]
    )
    engine.process([batch])
    (alert_id,) = rows(db, "SELECT id FROM alerts WHERE rule = 'stage'")[0]
    return alert_id


def test_no_key_is_401_and_a_bad_key_too(api):
    r = api.get("/alerts")
    assert r.status_code == 401
    assert "API key" in r.json()["message"]
    assert api.get("/alerts", headers=auth("swc_nope")).status_code == 401
    assert api.get("/health").status_code in (200, 503)  # /health needs no key


def test_viewer_reads_but_cannot_acknowledge(api, db, keys):
    alert_id = raise_alert(db)
    assert api.get("/alerts", headers={"X-API-Key": keys["viewer"]}).status_code == 200
    r = api.post(f"/alerts/{alert_id}/acknowledge", json={}, headers=auth(keys["viewer"]))
    assert r.status_code == 403
    assert "engineer" in r.json()["message"]


def test_engineer_acknowledges_and_resolves_with_attribution(api, db, keys):
    alert_id = raise_alert(db)
    eng = auth(keys["engineer"])
    listed = api.get("/alerts", params={"state": "open", "site_id": "dam-1"}, headers=eng).json()[
        "items"
    ]
    assert [a["id"] for a in listed] == [alert_id]
    assert listed[0]["level_name"] == "yellow"
    r = api.post(f"/alerts/{alert_id}/acknowledge", json={"note": "on my way"}, headers=eng)
    assert r.status_code == 200, r.text
    body = r.json()
    me = api.get("/keys/me", headers=eng).json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"] == me["id"]
    assert body["ack_note"] == "on my way"
    assert api.post(f"/alerts/{alert_id}/acknowledge", json={}, headers=eng).status_code == 409
    r = api.post(f"/alerts/{alert_id}/resolve", json={}, headers=eng)
    assert r.status_code == 422 and "note" in r.json()["message"]
    r = api.post(f"/alerts/{alert_id}/resolve", json={"note": "gauge checked"}, headers=eng)
    assert r.status_code == 200
    detail = r.json()
    assert detail["state"] == "resolved" and detail["resolve_reason"] == "manual"
    assert detail["resolved_by"] == me["id"]
    assert [e["kind"] for e in detail["events"]] == ["open", "acknowledge", "resolve"]
    assert detail["events"][2]["key_id"] == me["id"]
    assert (
        api.post(f"/alerts/{alert_id}/resolve", json={"note": "x"}, headers=eng).status_code == 409
    )
    assert api.get("/alerts", params={"active": "true"}, headers=eng).json()["items"] == []
    got = api.get(f"/alerts/{alert_id}", headers=auth(keys["viewer"])).json()
    assert got["state"] == "resolved"


def test_unknown_fields_and_malformed_input_are_422_with_a_message(api, db, keys):
    alert_id = raise_alert(db)
    eng = auth(keys["engineer"])
    cases = [
        ("post", f"/alerts/{alert_id}/acknowledge", {"note": "x", "who": "me"}, None),
        ("post", f"/alerts/{alert_id}/acknowledge", ["not", "an", "object"], None),
        ("post", "/alerts/0/acknowledge", {}, None),
        ("post", "/alerts/abc/resolve", {"note": "x"}, None),
        ("get", "/alerts", None, {"level": "9"}),
        ("get", "/alerts", None, {"state": "sleeping"}),
        ("get", "/alerts", None, {"since": "yesterday"}),
        ("get", "/alerts", None, {"since": "2026-07-21T03:00:00"}),  # naive time
        ("get", "/alerts", None, {"colour": "red"}),  # unknown query parameter
        ("put", "/sites/dam-1/rules/stage", {"thresholds": {"purple": 1}}, None),
        ("put", "/sites/dam-1/rules/stage", {"hysteresis": -1}, None),
        ("put", "/sites/dam-1/rules/nonsense", {}, None),
        ("put", "/sites/dam-1/rules/stage", {"thresholds": {"yellow": 0.1, "orange": 0.5}}, None),
        ("put", "/sites/dam-1/rules/stage", {"rain_thresholds": {}}, None),
        ("get", "/sites/bad%20id", None, None),
    ]
    for method, path, body, params in cases:
        r = api.request(method, path, json=body, params=params, headers=eng)
        assert r.status_code == 422, (method, path, body, params, r.status_code, r.text)
        assert r.json()["message"], r.text


def test_rule_thresholds_read_change_and_audit(api, db, keys):
    setup_site(db, "dam-1", "check_dam", DAM | {"freeboard_m": {"blue": 1.5}}, {"dam-1": []})
    view, eng = auth(keys["viewer"]), auth(keys["engineer"])
    stage = api.get("/sites/dam-1/rules/stage", headers=view).json()
    assert stage["applies"] and stage["unit"] == "m"
    assert stage["config"]["thresholds"]["blue"] == 1.5  # from the site's design values
    assert stage["override"] is None
    body = {"thresholds": {"red": -0.1}, "min_duration_s": 900, "note": "flood plan 2026"}
    assert api.put("/sites/dam-1/rules/stage", json=body, headers=view).status_code == 403
    r = api.put("/sites/dam-1/rules/stage", json=body, headers=eng)
    assert r.status_code == 200, r.text
    cfg = r.json()["config"]
    assert cfg["thresholds"] == {"blue": 1.5, "yellow": None, "orange": None, "red": -0.1}
    assert cfg["min_duration_s"] == 900
    me = api.get("/keys/me", headers=eng).json()
    audit = api.get("/sites/dam-1/rule-audit", headers=view).json()["items"]
    assert audit[0]["key_id"] == me["id"] and audit[0]["note"] == "flood plan 2026"
    assert audit[0]["old_config"] is None and audit[0]["new_config"]["min_duration_s"] == 900
    r = api.delete("/sites/dam-1/rules/stage", headers=eng)
    assert r.json()["override"] is None
    assert api.get("/sites/dam-1/rule-audit", headers=view).json()["total"] == 2
    cistern = api.get("/sites/dam-1/rules/cistern_overflow", headers=view).json()
    assert cistern["applies"] is False


def test_admin_manages_sites_devices_and_keys(api, db, keys):
    admin, eng = auth(keys["admin"]), auth(keys["engineer"])
    site = {
        "id": "cis-1",
        "kind": "cistern",
        "name": "Cistern 1",
        "params": {"overflow_level_m": 3},
    }
    assert api.post("/sites", json=site, headers=eng).status_code == 403
    r = api.post("/sites", json=site, headers=admin)
    assert r.status_code == 201, r.text
    assert api.post("/sites", json=site, headers=admin).status_code == 409
    r = api.patch("/sites/cis-1", json={"name": "Cistern one"}, headers=admin)
    assert r.json()["name"] == "Cistern one"
    r = api.post("/devices", json={"id": "cis-1", "site_id": "cis-1"}, headers=admin)
    assert r.status_code == 201 and len(r.json()["password"]) > 20
    assert (
        api.post("/devices", json={"id": "x", "site_id": "nope"}, headers=admin).status_code == 404
    )
    r = api.post("/keys", json={"role": "viewer", "name": "wall screen"}, headers=admin)
    new = r.json()
    assert r.status_code == 201 and new["key"].startswith(new["prefix"])
    assert api.get("/keys/me", headers=auth(new["key"])).json()["role"] == "viewer"
    assert api.delete(f"/keys/{new['id']}", headers=admin).json()["revoked_at"]
    assert api.get("/keys/me", headers=auth(new["key"])).status_code == 401
    writes = rows(db, "SELECT action FROM api_writes ORDER BY id")
    assert [w[0] for w in writes] == [
        "site.create",
        "site.update",
        "device.add",
        "key.create",
        "key.revoke",
    ]
    detail = api.get("/sites/cis-1", headers=auth(keys["viewer"])).json()
    assert detail["devices"] == 1 and detail["device_health"][0]["id"] == "cis-1"


def test_site_latest_readings_and_alert_level(api, db, keys):
    raise_alert(db)
    view = auth(keys["viewer"])
    sites = api.get("/sites", headers=view).json()["items"]
    assert sites[0]["id"] == "dam-1" and sites[0]["alert_level"] == 2
    latest = api.get("/sites/dam-1/latest", headers=view).json()
    assert latest[0]["channel"] == "stage_m" and latest[0]["value"] == 4.6
    assert api.get("/sites/nope", headers=view).status_code == 404


def test_openapi_lists_the_endpoints(api):
    paths = api.get("/openapi.json").json()["paths"]
    for p in (
        "/alerts",
        "/alerts/{alert_id}/acknowledge",
        "/alerts/stream",
        "/sites/{site_id}/rules/{rule}",
        "/keys",
    ):
        assert p in paths
