"""Field surveys over HTTP: roles, validation per kind, the stage-storage re-survey and
the calibration visit, attachments, listing."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest.api import create_app
from ingest.research import list_calibrations, list_stage_storage_curves
from ingest.settings import Settings
from tests.api.research_support import add_site, add_stream, role_keys
from tests.api.support import rows

DAM = {"spillway_crest_m": 5.0, "dam_crest_m": 7.0, "stage_storage": {"a": 1200.0, "b": 2.0}}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 500
PDF = b"%PDF-1.7\n" + b"x" * 300


@pytest.fixture
def api(db, tmp_path):
    settings = Settings(
        _env_file=None, database_url=db, attachments_dir=tmp_path / "att", attachment_max_bytes=4096
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def sites(db):
    add_site(db, "dam-1", "check_dam", DAM, lat=37.5, lon=109.1)
    add_site(db, "cis-1", "cistern", {"capacity_m3": 30})
    add_site(db, "plot-1", "runoff_plot", {"area_m2": 100})
    add_stream(db, "log-1", "turbidity_ntu", "dam-1")
    return db


@pytest.fixture
def keys(db):
    return role_keys(db)


def inspection(**kw) -> dict:
    body = {
        "site_id": "dam-1",
        "kind": "inspection",
        "surveyed_at": "2027-05-02T08:30:00+08:00",
        "surveyor": "Wang Li",
        "latitude": 37.51,
        "longitude": 109.12,
        "condition": "fair",
        "damage": [{"type": "crack", "severity": "moderate", "location": "crest, 20 m from left"}],
        "notes": "crack 3 mm wide",
        "data": {"spillway_clear": True},
    }
    return {**body, **kw}


def stage_survey(when="2027-04-01T00:00:00Z", **kw) -> dict:
    h = [1.0, 2.0, 3.0, 4.0, 5.0]
    return {
        "site_id": "dam-1",
        "kind": "stage_storage_survey",
        "surveyed_at": when,
        "surveyor": "survey team 2",
        "data": {"points": [{"stage_m": x, "volume_m3": 900 * x**2.1} for x in h]},
        **kw,
    }


def key_id(api, headers) -> int:
    return api.get("/keys/me", headers=headers).json()["id"]


def test_roles_viewer_reads_surveyor_writes_but_cannot_acknowledge(api, db, sites, keys):
    assert api.post("/surveys", json=inspection()).status_code == 401
    r = api.post("/surveys", json=inspection(), headers=keys["viewer"])
    assert r.status_code == 403 and "surveyor" in r.json()["message"]
    for role in ("surveyor", "engineer", "admin"):
        r = api.post("/surveys", json=inspection(), headers=keys[role])
        assert r.status_code == 201, r.text
        assert r.json()["created_by_key"] == key_id(api, keys[role])
    listed = api.get("/surveys", headers=keys["viewer"]).json()["items"]
    assert len(listed) == 3 and listed[0]["condition"] == "fair"
    assert listed[0]["damage"][0]["type"] == "crack"
    # a surveyor is no engineer: alerts and thresholds stay out of reach
    sv = keys["surveyor"]
    assert api.get("/alerts", headers=sv).status_code == 200
    r = api.post("/alerts/1/acknowledge", json={}, headers=sv)
    assert r.status_code == 403 and "engineer" in r.json()["message"]
    r = api.put("/sites/dam-1/rules/stage", json={"yellow": 4.0}, headers=sv)
    assert r.status_code == 403
    assert api.post("/keys", json={"role": "viewer"}, headers=sv).status_code == 403


def test_each_kind_is_validated(api, sites, keys):
    h = keys["surveyor"]
    bad = [
        (inspection(condition=None), "condition"),
        (inspection(condition="broken"), "condition"),
        (inspection(data={"colour": "red"}), "colour"),
        (inspection(surveyed_at="2027-05-02T08:30:00"), "timezone"),
        (inspection(latitude=95), "latitude"),
        (inspection(longitude=None), "both latitude and longitude"),
        (inspection(site_id="nowhere"), "no site"),
        (inspection(kind="weather"), "kind"),
        ({**inspection(), "who": "me"}, "who"),
        ({"site_id": "cis-1", "kind": "cistern_check", "surveyed_at": "2027-05-02T08:00Z",
          "data": {"sediment_depth_m": 0.1}}, "water_level_m or volume_m3"),
        ({"site_id": "dam-1", "kind": "cistern_check", "surveyed_at": "2027-05-02T08:00Z",
          "data": {"water_level_m": 1.0}}, "cistern"),
        ({"site_id": "plot-1", "kind": "plot_sample", "surveyed_at": "2027-05-02T08:00Z",
          "data": {"sample_dry_mass_g": 3.0}}, "runoff"),
        (stage_survey(data={"points": [{"stage_m": 1, "volume_m3": 5}]}), "at least 2"),
        ({"site_id": "dam-1", "kind": "sediment_survey", "surveyed_at": "2027-05-02T08:00Z",
          "data": {"points": [{"x_m": 1.0, "elevation_m": 2.0}]}}, "x_m and y_m"),
    ]  # fmt: skip
    for body, word in bad:
        r = api.post("/surveys", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert word in r.json()["message"], (word, r.json()["message"])
    ok = [
        {"site_id": "cis-1", "kind": "cistern_check", "surveyed_at": "2027-05-02T08:00Z",
         "data": {"water_level_m": 1.2, "volume_m3": 14.0, "inlet_clear": False}},
        {"site_id": "plot-1", "kind": "plot_sample", "surveyed_at": "2027-07-21T09:00Z",
         "data": {"runoff_depth_mm": 12.5, "sample_volume_l": 2.0, "sample_dry_mass_g": 31.0}},
    ]  # fmt: skip
    for body in ok:
        r = api.post("/surveys", json=body, headers=h)
        assert r.status_code == 201, r.text
    assert r.json()["data"]["ssc_kg_m3"] == pytest.approx(15.5)


def test_stage_storage_resurvey_adds_a_curve_version_linked_to_the_survey(api, db, sites, keys):
    h = keys["surveyor"]
    r = api.post("/surveys", json=stage_survey(), headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    curve = body["curve"]
    assert body["curve_id"] == curve["id"] and curve["survey_id"] == body["id"]
    assert curve["valid_from"] == "2027-04-01T00:00:00Z" and curve["kind"] == "power"
    assert curve["a"] == pytest.approx(900.0, rel=1e-9) and curve["b"] == pytest.approx(2.1)
    with psycopg.connect(db) as conn:
        versions = list_stage_storage_curves(conn, "dam-1")
    assert [c.source for c in versions] == ["design", "survey"]
    # a second curve from the same date is refused, and no survey is left behind
    r = api.post("/surveys", json=stage_survey(surveyor="again"), headers=h)
    assert r.status_code == 422 and "already has a curve" in r.json()["message"]
    assert rows(db, "SELECT count(*) FROM surveys")[0][0] == 1
    # a table curve from a later re-survey
    r = api.post("/surveys", json=stage_survey("2028-04-01T00:00:00Z",
                 data={"points": [{"stage_m": 0, "volume_m3": 0}, {"stage_m": 2, "volume_m3": 3000},
                                  {"stage_m": 4, "volume_m3": 15000}], "curve_kind": "table"}),
                 headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["curve"]["kind"] == "table"


def test_calibration_visit_refits_the_calibration_from_its_date(api, db, sites, keys):
    samples = [{"ntu": x, "ssc_kg_m3": 0.002 * x**1.1 * (1 + 0.03 * math.sin(x))}
               for x in (50, 120, 300, 800, 1500, 3000)]  # fmt: skip
    body = {"site_id": "dam-1", "kind": "calibration_visit", "surveyed_at": "2027-06-10T10:00Z",
            "data": {"samples": samples}}  # fmt: skip
    r = api.post("/surveys", json=body, headers=keys["engineer"])
    assert r.status_code == 201, r.text
    cal = r.json()["calibration"]
    assert cal["kind"] == "power" and cal["source"] == "survey" and cal["n"] == 6
    assert cal["slope"] == pytest.approx(1.1, abs=0.05)
    assert cal["valid_from"] == "2027-06-10T10:00:00Z"
    assert r.json()["calibration_id"] == cal["id"]
    with psycopg.connect(db) as conn:
        assert [c.id for c in list_calibrations(conn, "dam-1")] == [cal["id"]]
    sid = rows(db, "SELECT id FROM streams WHERE channel = 'turbidity_ntu'")[0][0]
    bad = {**body, "surveyed_at": "2027-06-11T10:00Z", "data": {"samples": samples,
                                                                "stream_id": sid + 100}}  # fmt: skip
    r = api.post("/surveys", json=bad, headers=keys["engineer"])
    assert r.status_code == 422 and "stream" in r.json()["message"]
    body["data"]["stream_id"] = sid
    body["surveyed_at"] = "2027-06-11T10:00Z"
    assert api.post("/surveys", json=body, headers=keys["engineer"]).status_code == 201


def test_sediment_survey_volume_by_the_curve_valid_at_its_date(api, db, sites, keys):
    h = keys["surveyor"]
    assert api.post("/surveys", json=stage_survey(), headers=h).status_code == 201
    pts = [{"x_m": float(i), "y_m": 0.0, "elevation_m": 1.8 + 0.1 * (i % 5)} for i in range(10)]
    pts.append({"latitude": 37.5, "longitude": 109.1, "elevation_m": 2.0})
    body = {"site_id": "dam-1", "kind": "sediment_survey", "surveyed_at": "2027-10-01T00:00Z",
            "data": {"points": pts, "dry_bulk_density_t_m3": 1.4}}  # fmt: skip
    r = api.post("/surveys", json=body, headers=h)
    assert r.status_code == 201, r.text
    dep = r.json()["deposit"]
    mean = sum(p["elevation_m"] for p in pts) / len(pts)
    assert dep["points"] == 11 and dep["mean_surface_m"] == pytest.approx(mean)
    assert dep["curve"]["source"] == "survey"  # the re-survey of 2027-04-01, not the design
    assert dep["surveyed_volume_m3"] == pytest.approx(900 * mean**2.1, rel=1e-6)
    assert dep["since"] == "2027-04-01T00:00:00Z" and dep["dry_bulk_density_t_m3"] == 1.4
    # no stage sensor at this dam: the survey stands alone, and says why
    assert dep["sensor_volume_m3"] is None and dep["notes"]
    # before the re-survey, the design curve applies
    body["surveyed_at"] = "2027-03-01T00:00Z"
    dep = api.post("/surveys", json=body, headers=h).json()["deposit"]
    assert dep["curve"]["source"] == "design" and dep["since"] is None
    assert dep["surveyed_volume_m3"] == pytest.approx(1200 * mean**2)


def test_list_filters_and_get(api, sites, keys):
    h = keys["surveyor"]
    for t in ("2027-05-01T00:00Z", "2027-06-01T00:00Z", "2027-07-01T00:00Z"):
        assert api.post("/surveys", json=inspection(surveyed_at=t), headers=h).status_code == 201
    cis = {"site_id": "cis-1", "kind": "cistern_check", "surveyed_at": "2027-06-15T00:00Z",
           "data": {"water_level_m": 1.0}}  # fmt: skip
    assert api.post("/surveys", json=cis, headers=h).status_code == 201
    get = lambda **p: api.get("/surveys", params=p, headers=keys["viewer"])  # noqa: E731
    assert [s["surveyed_at"][:10] for s in get().json()["items"]] == [
        "2027-07-01", "2027-06-15", "2027-06-01", "2027-05-01"]  # fmt: skip
    assert get(site_id="dam-1").json()["total"] == 3
    assert [s["kind"] for s in get(kind="cistern_check").json()["items"]] == ["cistern_check"]
    got = get(since="2027-05-15T00:00Z", until="2027-06-30T00:00Z").json()["items"]
    assert len(got) == 2
    second = get(limit=1, cursor=get(limit=1).json()["next_cursor"]).json()
    assert [s["surveyed_at"][:10] for s in second["items"]] == ["2027-06-15"]
    assert get(limit=1, offset=1).status_code == 422  # one way to page: the cursor
    assert get(bogus=1).status_code == 422
    assert get(since="2027-05-15T00:00").status_code == 422
    one = api.get(f"/surveys/{got[0]['id']}", headers=keys["viewer"])
    assert one.status_code == 200 and one.json()["attachments"] == []
    assert api.get("/surveys/999999", headers=keys["viewer"]).status_code == 404


def test_attachments_upload_and_download(api, db, sites, keys, tmp_path):
    h = keys["surveyor"]
    sid = api.post("/surveys", json=inspection(), headers=h).json()["id"]
    url = f"/surveys/{sid}/attachments"
    r = api.post(url, files={"file": ("裂缝 crack.jpg", JPEG, "image/jpeg")}, headers=h)
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["filename"] == "裂缝 crack.jpg" and att["content_type"] == "image/jpeg"
    assert att["size_bytes"] == len(JPEG) and att["sha256"] == hashlib.sha256(JPEG).hexdigest()
    assert att["created_by_key"] == key_id(api, h)
    # the file as the body, with its type in Content-Type
    r = api.post(url, params={"filename": "sheet.pdf"}, content=PDF,
                 headers={**h, "Content-Type": "application/pdf"})  # fmt: skip
    assert r.status_code == 201, r.text
    r = api.post(url, content=PNG, headers={**keys["engineer"], "Content-Type": "image/png"})
    assert r.status_code == 201 and r.json()["filename"] == "attachment.png"
    stored = list((tmp_path / "att" / str(sid)).iterdir())
    assert len(stored) == 3
    detail = api.get(f"/surveys/{sid}", headers=keys["viewer"]).json()
    assert [a["content_type"] for a in detail["attachments"]] == [
        "image/jpeg", "application/pdf", "image/png"]  # fmt: skip
    d = api.get(f"{url}/{att['id']}", headers=keys["viewer"])
    assert d.status_code == 200 and d.content == JPEG
    assert d.headers["content-type"] == "image/jpeg"
    assert "filename*=UTF-8''%E8%A3%82%E7%BC%9D%20crack.jpg" in d.headers["content-disposition"]
    assert api.get(f"{url}/{att['id'] + 99}", headers=keys["viewer"]).status_code == 404
    assert api.get(f"/surveys/{sid + 1}/attachments/{att['id']}",
                   headers=keys["viewer"]).status_code == 404  # fmt: skip
    # refused: other types, bytes of another type, too large, viewers, unknown surveys
    r = api.post(url, files={"file": ("a.txt", b"hello", "text/plain")}, headers=h)
    assert r.status_code == 415 and "not accepted" in r.json()["message"]
    r = api.post(url, files={"file": ("a.jpg", PDF, "image/jpeg")}, headers=h)
    assert r.status_code == 415 and "bytes" in r.json()["message"]
    r = api.post(url, files={"file": ("big.jpg", JPEG + b"\x00" * 4096, "image/jpeg")}, headers=h)
    assert r.status_code == 413 and "4096" in r.json()["message"]
    r = api.post(url, files={"other": ("a.jpg", JPEG, "image/jpeg")}, headers=h)
    assert r.status_code == 422 and "file" in r.json()["message"]
    r = api.post(url, files={"file": ("a.jpg", JPEG, "image/jpeg")}, headers=keys["viewer"])
    assert r.status_code == 403
    r = api.post(f"/surveys/{sid + 5}/attachments", files={"file": ("a.jpg", JPEG, "image/jpeg")},
                 headers=h)  # fmt: skip
    assert r.status_code == 404
    assert api.post(url, content=b"", headers={**h, "Content-Type": "image/png"}).status_code == 422
    assert len(list((tmp_path / "att" / str(sid)).iterdir())) == 3


def test_s3_backend_is_refused_with_a_clear_message(db, sites, keys):
    settings = Settings(_env_file=None, database_url=db, attachments_backend="s3")
    with TestClient(create_app(settings)) as api:
        h = keys["surveyor"]
        sid = api.post("/surveys", json=inspection(), headers=h).json()["id"]
        r = api.post(f"/surveys/{sid}/attachments", content=PNG,
                     headers={**h, "Content-Type": "image/png"})  # fmt: skip
        assert r.status_code == 503 and "disk" in r.json()["message"]


def test_survey_time_is_kept_with_its_zone(api, sites, keys):
    r = api.post("/surveys", json=inspection(), headers=keys["surveyor"])
    t = datetime.fromisoformat(r.json()["surveyed_at"].replace("Z", "+00:00"))
    assert t == datetime(2027, 5, 2, 0, 30, tzinfo=UTC)


def test_the_surveyor_role_is_outside_the_rank_chain(db):
    from ingest.store.keys import ROLES, create_key

    assert "surveyor" in ROLES
    with psycopg.connect(db) as conn:
        made = {role: create_key(conn, role)[0] for role in ROLES}
    assert [r for r, k in made.items() if k.may("write_surveys")] == [
        "surveyor", "engineer", "admin"]  # fmt: skip
    assert made["surveyor"].allows("viewer") and not made["surveyor"].allows("engineer")
    assert made["engineer"].allows("engineer") and made["admin"].allows("admin")
    with pytest.raises(ValueError, match="may"):
        made["viewer"].allows("surveyor")
