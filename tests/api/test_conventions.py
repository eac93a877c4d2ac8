"""The API's conventions (issue 13): every error is an RFC 9457 problem document,
unknown query parameters are refused everywhere, every list pages the same way;
filters, units, key names, dead letters and device status.

One database and one app for the module (quick)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import jsonschema
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from ingest.alerting import AlertEngine
from ingest.api import create_app
from ingest.settings import Settings
from ingest.store.migrate import migrate
from ingest.store.readings import ReadingWriter, write_status
from protocol.channels import unit_of
from protocol.messages import DeviceStatus
from tests.api.support import insert_readings, minutes_ago, new_key, setup_site
from tests.conftest import create_database, drop_database, dsn_for

DAM = {"spillway_crest_m": 4.8, "dam_crest_m": 6.0}
PROBLEM_MEDIA = "application/problem+json"


@pytest.fixture(scope="module")
def world(admin_dsn):
    name = create_database(admin_dsn)
    dsn = dsn_for(name, admin_dsn)
    try:
        migrate(dsn, "off")
        setup_site(dsn, "dam-1", "check_dam", DAM, {"dam-1": ["stage_m"]})
        for i in range(2, 6):
            setup_site(dsn, f"dam-{i}", "check_dam", DAM, {f"dam-{i}": ["stage_m"]})
        setup_site(dsn, "cis-1", "cistern", {"overflow_level_m": 3}, {"cis-1": ["level_m"]})
        # an alert at dam-1 that went higher, now back at blue; one at dam-2 still yellow
        engine = AlertEngine(Settings(_env_file=None, database_url=dsn), dsn)
        t0 = minutes_ago(40)
        pts = [(t0 + timedelta(minutes=i), 4.6) for i in range(5)]
        engine.process([insert_readings(dsn, "dam-2", "stage_m", pts)])
        engine.process([insert_readings(dsn, "dam-1", "stage_m", pts)])
        pts = [(t0 + timedelta(minutes=10 + i), 5.9) for i in range(12)]
        engine.process([insert_readings(dsn, "dam-1", "stage_m", pts)])
        with psycopg.connect(dsn) as conn:  # as if it had come down again since
            conn.execute("UPDATE alerts SET level = 1 WHERE site_id = 'dam-1'")
        keys = {r: new_key(dsn, r) for r in ("viewer", "engineer", "admin")}
        with psycopg.connect(dsn) as conn:
            writer = ReadingWriter(root="swc/v1")
            now = datetime.now(UTC)
            writer.write(
                conn,
                [],
                [
                    ("swc/v1/dam-1/telemetry", b"{not json", "bad_json", "not JSON", now),
                    ("swc/v1/dam-9/telemetry", b"{}", "unknown_device", "not registered", now),
                    ("swc/v1/dam-9/telemetry", b"{}", "unknown_device", "not registered", now),
                ],
            )
            status = DeviceStatus(
                device="dam-1", state="online", at=now, firmware="1.4.2", battery_v=12.6,
                rssi_dbm=-87, details={"queued": 0},
            )  # fmt: skip
            with conn.transaction():
                write_status(conn, status, now, replay=False)
        settings = Settings(_env_file=None, database_url=dsn, api_max_body_bytes=4096)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client, keys, dsn
    finally:
        drop_database(admin_dsn, name)


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def problem_schema(client) -> dict:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    return {**schemas["ProblemOut"], "components": {"schemas": schemas}}


def check_problem(r, status: int, schema: dict) -> dict:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM_MEDIA), (r.request.url, r.headers)
    body = r.json()
    jsonschema.validate(body, schema)
    assert body["status"] == status and body["type"].startswith("urn:swc-monitor:problem:")
    assert body["detail"] and body["title"]
    return body


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "dam-1" if "site" in m.group(0) else "1", path)


def test_every_route_answers_bad_input_with_a_problem_document(world):
    client, keys, _ = world
    spec = client.get("/openapi.json").json()
    schema = problem_schema(client)
    viewer, admin = auth(keys["viewer"]), auth(keys["admin"])
    tried = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            # every operation documents its problems as problem+json
            for code in ("422", "500"):
                assert PROBLEM_MEDIA in op["responses"][code]["content"], (method, path, code)
            url = _fill(path)
            if path != "/health" and not path.startswith("/console/"):
                check_problem(client.request(method, url), 401, schema)  # no key
            # an unknown query parameter, with a key that may do everything
            r = client.request(method, url, params={"zzz": "1"}, headers=admin)
            body = check_problem(r, 422, schema)
            assert any(e["loc"] == "query.zzz" for e in body["errors"]), (path, body)
            tried += 1
            if method in ("post", "put", "patch", "delete") and path not in (
                "/surveys",
                "/surveys/import",
                "/surveys/{survey_id}/attachments",
            ):
                check_problem(client.request(method, url, headers=viewer), 403, schema)
    assert tried >= 30
    check_problem(client.get("/no-such-thing", headers=viewer), 404, schema)
    check_problem(client.get("/alerts/999999", headers=viewer), 404, schema)
    check_problem(client.delete("/sites", headers=admin), 405, schema)
    body = check_problem(client.get("/alerts?limit=0", headers=viewer), 422, schema)
    assert body["errors"][0]["loc"] == "query.limit"
    body = check_problem(client.post("/sites", json={"id": "x"}, headers=admin), 422, schema)
    assert {e["loc"] for e in body["errors"]} >= {"body.kind", "body.name"}
    site = {"id": "dam-1", "kind": "check_dam", "name": "again"}
    check_problem(client.post("/sites", json=site, headers=admin), 409, schema)
    big = b'{"note": "' + b"x" * 5000 + b'"}'
    r = client.post("/alerts/1/acknowledge", content=big, headers=admin)
    check_problem(r, 413, schema)
    r = client.post(
        "/surveys/1/attachments",
        content=b"hello",
        headers={**admin, "content-type": "text/plain"},
    )
    assert r.status_code in (404, 415)
    check_problem(r, r.status_code, schema)
    check_problem(client.get("/console/static/nope.js"), 404, schema)


def test_an_unexpected_failure_is_a_problem_too(world):
    client = world[0]

    @client.app.get("/boom-test-only", include_in_schema=False)
    def boom():
        raise RuntimeError("kaput")

    r = client.get("/boom-test-only")
    body = check_problem(r, 500, problem_schema(client))
    assert "kaput" not in r.text and body["type"].endswith(":internal-error")


def _walk(client, url: str, headers: dict) -> tuple[list[dict], list[dict]]:
    items, pages = [], []
    while url:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body)
        items += body["items"]
        if body["next"]:
            assert r.headers["link"] == f'<{body["next"]}>; rel="next"'
            assert body["next_cursor"] in body["next"]
        else:
            assert "link" not in r.headers and body["next_cursor"] is None
        url = body["next"]
    return items, pages


@pytest.mark.parametrize(
    "path,role",
    [
        ("/sites", "viewer"),
        ("/devices", "viewer"),
        ("/alerts", "viewer"),
        ("/keys", "admin"),
        ("/dead-letters", "engineer"),
        ("/webhooks", "admin"),
        ("/surveys", "viewer"),
        ("/sites/dam-1/rule-audit", "viewer"),
    ],
)
def test_every_list_pages_the_same_way(world, path, role):
    client, keys, _ = world
    h = auth(keys[role])
    whole = client.get(path, headers=h, params={"limit": 1000}).json()
    assert set(whole) == {"items", "total", "limit", "next", "next_cursor"}
    assert whole["total"] == len(whole["items"]) and whole["next"] is None
    items, pages = _walk(client, f"{path}?limit=2", h)
    assert items == whole["items"]
    assert len(pages) == max(1, -(-len(items) // 2))
    assert all(p["total"] == whole["total"] and p["limit"] == 2 for p in pages)


def test_cursors_are_checked(world):
    client, keys, _ = world
    h = auth(keys["viewer"])
    first = client.get("/sites", params={"limit": 2}, headers=h).json()
    cursor = first["next_cursor"]
    # another query's cursor, a forged one, garbage: 422 with the field at fault
    for params in (
        {"limit": 2, "kind": "cistern", "cursor": cursor},
        {"limit": 2, "cursor": cursor[:-2] + "zz"},
        {"limit": 2, "cursor": "bm90LWpzb24"},
        {"limit": 2, "cursor": "WyJ4Il0"},
    ):
        r = client.get("/sites", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["errors"][0]["loc"] == "query.cursor"
    # the limit may change between pages
    r = client.get("/sites", params={"limit": 3, "cursor": cursor}, headers=h)
    assert r.status_code == 200 and r.json()["items"][0]["id"] == "dam-2"


def test_sites_and_devices_filter_by_kind(world):
    client, keys, _ = world
    h = auth(keys["viewer"])
    r = client.get("/sites", params={"kind": "cistern"}, headers=h).json()
    assert [s["id"] for s in r["items"]] == ["cis-1"] and r["total"] == 1
    r = client.get("/sites", params=[("kind", "cistern"), ("kind", "check_dam")], headers=h)
    assert r.json()["total"] == 6
    assert client.get("/sites", params={"kind": "castle"}, headers=h).status_code == 422
    r = client.get("/devices", params={"site_id": "cis-1"}, headers=h).json()
    assert [d["id"] for d in r["items"]] == ["cis-1"]
    assert client.get("/devices", params={"kind": "gateway"}, headers=h).json()["total"] == 0


def test_alert_levels_peak_and_current_are_separate_filters(world):
    client, keys, _ = world
    h = auth(keys["viewer"])
    every = client.get("/alerts", headers=h).json()["items"]
    by_site = {a["site_id"]: a for a in every if a["rule"] == "stage"}
    dam1 = by_site["dam-1"]
    assert dam1["peak_level"] > dam1["level"] >= 1, dam1

    def ids(**params) -> set[int]:
        r = client.get("/alerts", params={"rule": "stage", **params}, headers=h)
        assert r.status_code == 200, r.text
        return {a["id"] for a in r.json()["items"]}

    peak = dam1["peak_level"]
    assert ids(min_peak_level=peak) == {dam1["id"]}
    assert ids(min_level=peak) == {dam1["id"]}  # the documented alias
    assert dam1["id"] not in ids(min_current_level=peak)
    assert ids(min_current_level=dam1["level"]) == {dam1["id"], by_site["dam-2"]["id"]}
    assert dam1["unit"] == "m" and dam1["value"] is not None


def test_acknowledge_without_a_body_names_the_key(world):
    client, keys, _ = world
    eng = auth(keys["engineer"])
    alert = client.get("/alerts", params={"site_id": "dam-2"}, headers=eng).json()["items"][0]
    r = client.post(f"/alerts/{alert['id']}/acknowledge", headers=eng)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "acknowledged" and body["ack_note"] is None
    assert body["acknowledged_by_name"] == "test engineer"
    assert body["events"][-1]["key_name"] == "test engineer"
    assert body["events"][-1]["unit"] == "m"


def test_raw_and_bucketed_readings_have_their_own_shapes(world):
    client, keys, _ = world
    h = auth(keys["viewer"])
    span = {
        "site_id": "dam-1",
        "start": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "end": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
    }
    raw = client.get("/readings", params={**span, "limit": 5}, headers=h)
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert set(body["items"][0]) == {"stream_id", "time", "value", "unit", "quality"}
    assert body["items"][0]["unit"] == unit_of("stage_m")
    assert body["streams"][0]["unit"] == unit_of("stage_m")
    assert raw.headers["link"] == f'<{body["next"]}>; rel="next"'
    nxt = client.get(body["next"], headers=h)
    assert nxt.status_code == 200 and nxt.json()["items"][0]["time"] > body["items"][-1]["time"]
    r = client.get("/readings", params={**span, "interval": "1h", "agg": "max"}, headers=h).json()
    assert set(r["items"][0]) == {"stream_id", "time", "unit", "count", "max"}
    assert r["next"] is None and r["total"] is None
    latest = client.get("/sites/dam-1/latest", headers=h).json()
    assert latest[0]["channel"] == "stage_m" and latest[0]["unit"] == unit_of("stage_m")


def test_dead_letters_for_engineers_with_filters_and_the_cli(world):
    client, keys, dsn = world
    assert client.get("/dead-letters", headers=auth(keys["viewer"])).status_code == 403
    h = auth(keys["engineer"])
    every = client.get("/dead-letters", headers=h).json()
    assert every["total"] == 3
    assert every["items"][0]["reason"] == "unknown_device"  # newest first
    first = every["items"][-1]
    assert first["sender"] == "dam-1" and first["payload_preview"] == "{not json"
    r = client.get("/dead-letters", params={"reason": "bad_json"}, headers=h).json()
    assert [d["reason"] for d in r["items"]] == ["bad_json"]
    r = client.get("/dead-letters", params={"device": "dam-9"}, headers=h).json()
    assert r["total"] == 2
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/dead-letters", params={"since": later}, headers=h).json()["total"] == 0

    from swc_cli import main

    env = {"SWC_DATABASE_URL": dsn, "SWC_TOPIC_ROOT": "swc/v1"}
    out = CliRunner().invoke(main, ["dead-letters", "--since", "1h", "--reason", "unknown_device"],
                             env=env)  # fmt: skip
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["RECEIVED", "(UTC)", "REASON"]
    assert len(lines) == 3 and all(
        "unknown_device" in line and "dam-9" in line for line in lines[1:]
    )
    out = CliRunner().invoke(main, ["dead-letters", "--since", "soon"], env=env)
    assert out.exit_code == 2 and "30m" in out.output


def test_devices_show_their_last_status(world):
    client, keys, _ = world
    h = auth(keys["viewer"])
    dev = client.get("/devices/dam-1", headers=h).json()
    assert dev["firmware"] == "1.4.2"
    status = dev["status"]
    assert status["state"] == "online" and status["battery_v"] == 12.6
    assert status["rssi_dbm"] == -87 and status["details"] == {"queued": 0}
    assert status["units"] == {"battery_v": unit_of("battery_v"), "rssi_dbm": unit_of("rssi_dbm")}
    listed = {d["id"]: d for d in client.get("/devices", headers=h).json()["items"]}
    assert listed["dam-1"]["status"] == status and listed["dam-2"]["status"] is None
    assert client.get("/devices/nope", headers=h).status_code == 404
