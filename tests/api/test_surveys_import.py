"""POST /surveys/import: CSV and JSON sheets; the good rows are imported and each bad row is
reported with its line and reason; dry runs; grouped point lists; re-imports."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from ingest.api import create_app
from ingest.settings import Settings
from tests.api.research_support import add_site, role_keys
from tests.api.support import rows

DAM = {"spillway_crest_m": 5.0, "stage_storage": {"a": 1200.0, "b": 2.0}}

HEADER = (
    "site_id,kind,surveyed_at,surveyor,condition,damage,notes,survey_ref,"
    "water_level_m,volume_m3,stage_m,ntu,ssc_kg_m3,curve_kind\n"
)
SHEET = HEADER + (
    # 2: a good inspection
    "dam-1,inspection,2027-05-02T08:30:00+08:00,Wang,fair,crack:moderate:crest; seepage,"
    "wet toe,,,,,,,\n"
    # 3: bad condition
    "dam-1,inspection,2027-05-03T08:30:00+08:00,Wang,broken,,,,,,,,,\n"
    # 4: a good cistern check
    "cis-1,cistern_check,2027-05-02T10:00:00Z,Li,,,,,1.25,16,,,,\n"
    # 5: cistern check without a level or volume
    "cis-1,cistern_check,2027-05-02T11:00:00Z,Li,,,,,,,,,,\n"
    # 6: no zone on the time
    "cis-1,cistern_check,2027-05-02 12:00,Li,,,,,1.0,,,,,\n"
    # 7-10: a stage-storage re-survey of four points, grouped by its survey_ref
    "dam-1,stage_storage_survey,2027-04-01T00:00:00Z,team 2,,,,ss-2027,,1000,1,,,power\n"
    ",stage_storage_survey,,,,,,ss-2027,,5200,2,,,\n"
    ",stage_storage_survey,,,,,,ss-2027,,11900,3,,,\n"
    ",stage_storage_survey,,,,,,ss-2027,,21500,4,,,\n"
    # 11-12: a re-survey with a bad point (not imported; both lines reported)
    "dam-1,stage_storage_survey,2028-04-01T00:00:00Z,team 2,,,,ss-2028,,1000,1,,,\n"
    ",stage_storage_survey,,,,,,ss-2028,,lots,2,,,\n"
    # 13: unknown kind
    "dam-1,weather,2027-05-02T08:30:00Z,,,,,,,,,,,\n"
    # 14: a column that does not apply to the kind
    "cis-1,cistern_check,2027-05-04T10:00:00Z,Li,,,,,1.0,,2.0,,,\n"
    # 15: unknown site
    "dam-9,inspection,2027-05-02T08:30:00Z,Wang,good,,,,,,,,,\n"
    # 16: a wrong kind of site
    "dam-1,cistern_check,2027-05-02T10:00:00Z,Li,,,,,1.25,,,,,\n"
)


@pytest.fixture
def api(db):
    add_site(db, "dam-1", "check_dam", DAM)
    add_site(db, "cis-1", "cistern", {"capacity_m3": 30})
    with TestClient(create_app(Settings(_env_file=None, database_url=db))) as client:
        yield client


def post_sheet(api, headers, text: str, ctype="text/csv", **params):
    return api.post(
        "/surveys/import",
        content=text.encode(),
        params=params,
        headers={**headers, "Content-Type": ctype},
    )


def by_line(result) -> dict[int, str]:
    return {e["line"]: e["reason"] for e in result["errors"]}


def test_a_sheet_with_bad_rows_imports_the_good_ones_and_reports_each_bad_one(api, db):
    keys = role_keys(db)
    r = post_sheet(api, keys["surveyor"], SHEET)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["format"] == "csv" and res["rows"] == 15 and res["dry_run"] is False
    assert [(s["kind"], s["lines"]) for s in res["imported"]] == [
        ("inspection", [2]),
        ("cistern_check", [4]),
        ("stage_storage_survey", [7, 8, 9, 10]),
    ]
    errs = by_line(res)
    assert sorted(errs) == [3, 5, 6, 11, 12, 13, 14, 15, 16]
    assert "condition" in errs[3]
    assert "water_level_m or volume_m3" in errs[5]
    assert "surveyed_at" in errs[6] and "timezone" in errs[6]
    assert "ss-2028" in errs[11] and "12" in errs[11]
    assert "volume_m3" in errs[12] and "number" in errs[12]
    assert "kind must be one of" in errs[13]
    assert "stage_m" in errs[14] and "cistern_check" in errs[14]
    assert "no site 'dam-9'" in errs[15]
    assert "cistern" in errs[16]
    # recorded: three surveys by the surveyor's key, and the re-survey's curve
    me = api.get("/keys/me", headers=keys["surveyor"]).json()["id"]
    assert rows(db, "SELECT count(*), min(created_by_key), max(created_by_key) FROM surveys")[0] \
        == (3, me, me)  # fmt: skip
    insp = api.get("/surveys", params={"kind": "inspection"}, headers=keys["viewer"]).json()[
        "items"
    ][0]
    assert [(d["type"], d["severity"], d["location"]) for d in insp["damage"]] == [
        ("crack", "moderate", "crest"), ("seepage", "minor", "")]  # fmt: skip
    ss_id = res["imported"][2]["survey_id"]
    ss = api.get(f"/surveys/{ss_id}", headers=keys["viewer"]).json()
    assert ss["ref"] == "ss-2027" and len(ss["data"]["points"]) == 4
    assert ss["curve"]["survey_id"] == ss_id and ss["curve"]["valid_from"] == "2027-04-01T00:00:00Z"
    # the same sheet again: a survey with a survey_ref is not recorded twice
    # (those without one are: give survey_ref to make re-imports safe)
    again = post_sheet(api, keys["surveyor"], SHEET).json()
    assert [s["lines"] for s in again["imported"]] == [[2], [4]]
    assert f"already recorded as survey {ss_id}" in by_line(again)[7]


def test_dry_run_records_nothing(api, db):
    keys = role_keys(db)
    res = post_sheet(api, keys["engineer"], SHEET, dry_run="true").json()
    assert res["dry_run"] is True and res["surveys_imported"] == 3
    assert all(s["survey_id"] is None for s in res["imported"])
    assert len(res["errors"]) == 9
    assert rows(db, "SELECT count(*) FROM surveys")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM stage_storage_curves")[0][0] == 0


def test_json_sheet_rows_and_whole_surveys_with_their_lines(api, db):
    keys = role_keys(db)
    items = [
        {"site_id": "cis-1", "kind": "cistern_check", "surveyed_at": "2027-05-02T10:00:00Z",
         "water_level_m": 1.1, "survey_ref": "c-1"},
        {"site_id": "cis-1", "kind": "cistern_check", "surveyed_at": "2027-05-02T10:00:00Z",
         "water_level_m": -1},
        {"site_id": "dam-1", "kind": "calibration_visit", "surveyed_at": "2027-06-01T00:00:00Z",
         "data": {"samples": [{"ntu": 100, "ssc_kg_m3": 0.3}, {"ntu": 500, "ssc_kg_m3": 1.8},
                              {"ntu": 1000, "ssc_kg_m3": 3.9}, {"ntu": 2000, "ssc_kg_m3": "x"}]}},
        {"site_id": "dam-1", "kind": "calibration_visit", "surveyed_at": "2027-06-01T00:00:00Z",
         "data": {"samples": [{"ntu": 100, "ssc_kg_m3": 0.3}, {"ntu": 500, "ssc_kg_m3": 1.8},
                              {"ntu": 1000, "ssc_kg_m3": 3.9}]}},
        "not an object",
    ]  # fmt: skip
    text = "[\n" + ",\n".join(json.dumps(i, indent=1) for i in items) + "\n]\n"
    starts = [n + 1 for n, ln in enumerate(text.splitlines()) if ln in ("{", '"not an object"')]
    r = post_sheet(api, keys["surveyor"], text, ctype="application/json")
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["format"] == "json" and res["rows"] == 5
    assert [s["lines"] for s in res["imported"]] == [[starts[0]], [starts[3]]]
    errs = by_line(res)
    assert "water_level_m" in errs[starts[1]]
    assert "data.samples.3.ssc_kg_m3" in errs[starts[2]]
    assert "not an object" in errs[starts[4]]
    assert rows(db, "SELECT count(*) FROM calibrations WHERE source = 'survey'")[0][0] == 1


def test_multipart_upload_roles_and_unreadable_sheets(api, db):
    keys = role_keys(db)
    good = HEADER + "cis-1,cistern_check,2027-05-02T10:00:00Z,Li,,,,,1.25,16,,,,\n"
    r = api.post("/surveys/import", files={"file": ("sheet.csv", good.encode(), "text/plain")},
                 headers=keys["surveyor"])  # fmt: skip
    assert r.status_code == 200 and r.json()["surveys_imported"] == 1, r.text
    assert post_sheet(api, keys["viewer"], good).status_code == 403
    assert post_sheet(api, {}, good).status_code == 401
    for text, ctype, word in [
        ("", "text/csv", "no file"),
        ("name,value\nx,1\n", "text/csv", "site_id"),
        ('[{"a": 1}', "application/json", "JSON"),
        ('{"a": 1}', "application/json", "array"),
        ("\xff\xfe", "text/csv", None),
    ]:
        r = post_sheet(api, keys["surveyor"], text, ctype=ctype)
        assert r.status_code == 422, (text, r.text)
        if word:
            assert word in r.json()["message"], r.json()["message"]
    r = post_sheet(api, keys["surveyor"], good, bogus="1")
    assert r.status_code == 422 and "bogus" in r.json()["message"]
    r = api.post("/surveys/import", content=b"\xff\xfe\x00", headers={**keys["surveyor"],
                 "Content-Type": "text/csv"})  # fmt: skip
    assert r.status_code == 422 and "UTF-8" in r.json()["message"]
