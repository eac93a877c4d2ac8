"""Hostile request bodies against the real uvicorn and PostgreSQL (issue 11, "The HTTP
API"): a body is refused before it is read, within per-route limits, multipart parsed
by a streaming parser off the event loop, sheets read in linear time without a
database connection; other clients are answered meanwhile."""

from __future__ import annotations

import concurrent.futures
import json

import httpx

from tests.api.hostile_support import (
    api,
    assert_problem,
    auth,
    keys,
    meanwhile,
    raw_exchange,
    site,
    status_of,
)


def _ordinary(client: httpx.Client, key: str) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/sites", headers=auth(key)).status_code == 200
    assert client.get("/alerts", headers=auth(key)).status_code == 200


def test_a_body_without_a_key_is_refused_before_it_is_read(db):
    site(db)
    k = keys(db)
    with api(db) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        # 100 MB of JSON announced and none sent: the 401 comes without waiting for it
        head = (
            b"POST /sites HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        raw = raw_exchange(server.port, head)
        assert status_of(raw) == 401
        body = json.loads(raw.partition(b"\r\n\r\n")[2])
        assert body["status"] == 401 and "no API key" in body["detail"]
        # the same with a chunked body that never ends, and with a wrong key
        chunked = (
            b"POST /sites HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nX-API-Key: swc_not-a-key\r\n\r\n"
        )
        raw = raw_exchange(server.port, chunked)
        assert status_of(raw) == 401 and b"not valid" in raw
        _ordinary(client, k["viewer"])


def test_each_route_has_a_body_limit(db):
    site(db)
    k = keys(db)
    with (
        api(db, api_max_body_bytes=64 << 10) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        big = json.dumps({"id": "x", "name": "y" * (200 << 10)}).encode()
        r = client.post(
            "/sites",
            content=big,
            headers={**auth(k["admin"]), "Content-Type": "application/json"},
        )
        p = assert_problem(r, 413, "body-too-large")
        assert str(64 << 10) in p["detail"]

        def chunks():
            for _ in range(100):  # 6.4 MB unless cut off
                yield b" " * (64 << 10)

        r = client.post(
            "/sites",
            content=chunks(),
            headers={**auth(k["admin"]), "Content-Type": "application/json"},
        )
        assert_problem(r, 413, "body-too-large")
        # a survey sheet may be larger than a JSON body (its own limit)
        sheet = b"site_id,kind,surveyed_at\n" + b"dam-1,inspection,2026-07-01T00:00:00Z\n" * 2000
        assert len(sheet) > 64 << 10
        r = client.post(
            "/surveys/import?dry_run=true",
            content=sheet,
            headers={**auth(k["surveyor"]), "Content-Type": "text/csv"},
        )
        assert r.status_code == 200, r.text[:300]
        assert r.json()["rows"] == 2000
        _ordinary(client, k["viewer"])


def _hostile_multipart(n: int = 120_000) -> tuple[bytes, str]:
    boundary = "xBOUNDARYx"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"'
        + ";" * n
        + f'; filename="a.csv"\r\nContent-Type: text/csv\r\n\r\n'
        "site_id,kind,surveyed_at\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_hostile_multipart_header_is_refused_and_others_are_served(db):
    site(db)
    k = keys(db)
    body, ctype = _hostile_multipart()
    with api(db) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        refusals: list[httpx.Response] = []

        def attack() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                refusals.append(
                    c.post(
                        "/surveys/import",
                        content=body,
                        headers={**auth(k["surveyor"]), "Content-Type": ctype},
                    )
                )

        with meanwhile(attack, threads=2):
            for _ in range(20):
                _ordinary(client, k["viewer"])
        assert refusals
        for r in refusals:
            assert r.status_code == 422, r.text[:300]
            assert "header" in r.json()["message"].lower()
        # an ordinary multipart upload still works
        good = b"site_id,kind,surveyed_at\r\ndam-1,inspection,2026-07-01T00:00:00Z\r\n"
        r = client.post(
            "/surveys/import?dry_run=true",
            files={"file": ("sheet.csv", good, "text/csv")},
            headers=auth(k["surveyor"]),
        )
        assert r.status_code == 200 and r.json()["rows"] == 1, r.text[:300]


def _wide_sheet(columns: int) -> bytes:
    names = ["site_id", "kind", "surveyed_at", *(f"c{i}" for i in range(columns))]
    return (",".join(names) + "\n").encode()


def test_sheets_are_read_in_linear_time_without_holding_connections(db):
    site(db)
    k = keys(db)
    with (
        api(db, api_pool_size=4, api_pool_wait_s=2.0) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        head = {**auth(k["surveyor"]), "Content-Type": "text/csv"}
        # 40,000 columns, two of them repeated: refused at once with both names
        names = ["site_id", "kind", "surveyed_at", *(f"c{i}" for i in range(40_000)), "c7", "c9"]
        r = client.post("/surveys/import", content=",".join(names).encode() + b"\n", headers=head)
        assert r.status_code == 422 and "repeats column(s) c7, c9" in r.json()["message"]
        # 8 sheets of 128 KB at once, each with bad rows to report, while others read
        row = b"dam-1,inspection,2026-07-01T00:00:00Z" + b",x" * 3000 + b"\n"
        sheet = _wide_sheet(3000) + row * ((128 << 10) // len(row))
        answers: list[httpx.Response] = []

        def one() -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                return c.post("/surveys/import", content=sheet, headers=head)

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            futures = [ex.submit(one) for _ in range(8)]
            for _ in range(10):
                _ordinary(client, k["viewer"])
            answers = [f.result() for f in futures]
        for r in answers:
            assert r.status_code == 200, r.text[:300]
            result = r.json()
            assert result["surveys_imported"] == 0 and result["errors"]
            assert "do not apply to a inspection" in result["errors"][0]["reason"]
            assert len(result["errors"][0]["reason"]) < 2000  # long lists are cut
        _ordinary(client, k["viewer"])


def test_a_huge_integer_in_a_json_sheet_is_a_bad_sheet(db):
    site(db)
    k = keys(db)
    with api(db) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        sheet = b'[{"site_id": "dam-1", "kind": "inspection", "n": ' + b"9" * 5000 + b"}]"
        r = client.post(
            "/surveys/import",
            content=sheet,
            headers={**auth(k["surveyor"]), "Content-Type": "application/json"},
        )
        assert r.status_code == 422, r.text[:300]
        assert "line 1" in r.json()["message"]
