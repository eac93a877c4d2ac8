"""A busy, slow or restarted database (issue 11): the API answers 503 problems with
Retry-After instead of 500s, limits each role's statements, replaces dead pooled
connections, refuses tampered cursors, and /health tells nothing to strangers."""

from __future__ import annotations

import base64
import concurrent.futures
import threading

import httpx
import psycopg

from ingest.broker import free_port
from tests.api.hostile_support import api, assert_problem, auth, keys, site
from tests.support.waiting import wait_for


def _lock_sites(db: str) -> tuple[psycopg.Connection, threading.Event]:
    """A transaction holding an exclusive lock on sites until the event is set."""
    conn = psycopg.connect(db)
    conn.execute("LOCK TABLE sites IN ACCESS EXCLUSIVE MODE")
    return conn, threading.Event()


def _waiting_on_lock(db: str) -> int:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()[0]


def test_a_slow_statement_is_cut_by_the_roles_timeout(db):
    site(db)
    k = keys(db)
    timeouts = {"viewer": 0.5, "surveyor": 0.5, "engineer": 30.0, "admin": 30.0}
    with (
        api(db, api_statement_timeout_s=timeouts) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        conn, _ = _lock_sites(db)
        try:
            r = client.get("/sites", headers=auth(k["viewer"]))
            p = assert_problem(r, 503, "statement-timeout")
            assert r.headers["Retry-After"].isdigit()
            assert "0.5 s" in p["detail"]
        finally:
            conn.rollback()
            conn.close()
        assert client.get("/sites", headers=auth(k["viewer"])).status_code == 200


def test_pool_exhaustion_answers_503_with_retry_after(db):
    site(db)
    k = keys(db)
    with (
        api(db, api_pool_size=1, api_pool_wait_s=0.3) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        conn, _ = _lock_sites(db)
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                # the pool's only connection waits on the lock ...
                blocked = ex.submit(
                    lambda: httpx.get(f"{server.url}/sites", headers=auth(k["admin"]), timeout=60)
                )
                wait_for(lambda: _waiting_on_lock(db) >= 1, 20, what="a request on the lock")
                # ... so the others get a clear 503, not a plain-text 500
                for path in ("/alerts", "/sites"):
                    r = client.get(path, headers=auth(k["viewer"]))
                    assert_problem(r, 503, "busy")
                    assert r.headers["Retry-After"].isdigit()
                # a body-carrying request is refused by the guard the same way
                r = client.post("/sites", json={"id": "x"}, headers=auth(k["admin"]))
                assert_problem(r, 503, "busy")
                conn.rollback()
                assert blocked.result().status_code == 200
        finally:
            conn.close()
        assert client.get("/alerts", headers=auth(k["viewer"])).status_code == 200


def test_dead_pooled_connections_are_replaced(db):
    site(db)
    k = keys(db)
    with (
        api(db, api_pool_size=4) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        with concurrent.futures.ThreadPoolExecutor(4) as ex:  # fill the pool
            list(ex.map(lambda _: client.get("/sites", headers=auth(k["viewer"])), range(8)))
        with psycopg.connect(db, autocommit=True) as conn:  # as a database restart does
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        assert killed >= 2
        for _ in range(8):
            assert client.get("/sites", headers=auth(k["viewer"])).status_code == 200


def _cursor(stream_id: int, micros: int, fp: str) -> str:
    return base64.urlsafe_b64encode(f"{stream_id}:{micros}:{fp}".encode()).decode().rstrip("=")


def test_tampered_cursors_are_refused(db):
    site(db)
    k = keys(db)
    q = "/readings?site_id=dam-1&start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z"
    with api(db) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.get(q + "&limit=1", headers=auth(k["viewer"]))
        assert first.status_code == 200
        from ingest.api.routes.readings import ReadingsParams, _fingerprint

        params = ReadingsParams(
            site_id=["dam-1"], start="2026-01-01T00:00:00Z", end="2026-02-01T00:00:00Z", limit=1
        )
        fp = _fingerprint(params, None, [])
        year_9999 = 253_402_300_799_000_000  # 9999-12-31T23:59:59Z [µs]
        for cursor in (
            _cursor(1, year_9999, fp),
            _cursor(1, -year_9999, fp),
            _cursor(2**70, 0, fp),
            _cursor(1, 10**30, fp),
            "AAAA",
        ):
            r = client.get(q + f"&limit=1&cursor={cursor}", headers=auth(k["viewer"]))
            assert r.status_code == 422, (cursor, r.text[:300])
            assert "cursor" in r.json()["message"]


def test_health_tells_details_only_to_a_key(db):
    k = keys(db)
    closed = f"mqtt://127.0.0.1:{free_port()}"
    with (
        api(db, mqtt_url=closed) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        anon = client.get("/health").json()
        assert anon["broker"] == {"status": "down", "detail": None}
        assert "127.0.0.1" not in client.get("/health").text
        known = client.get("/health", headers=auth(k["viewer"])).json()
        assert known["broker"]["detail"].startswith("127.0.0.1:")
    missing = psycopg.conninfo.make_conninfo(db, dbname="swct_does_not_exist")
    with (
        api(missing, api_pool_wait_s=0.5) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        r = client.get("/health")
        assert r.status_code == 503
        assert r.json()["database"] == {"status": "down", "detail": None}
        assert "does_not_exist" not in r.text


def test_one_key_cannot_take_the_whole_api(db):
    site(db)
    k = keys(db)
    with (
        api(db, api_key_concurrency=1, api_key_queue=1) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        conn, _ = _lock_sites(db)
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as ex:

                def slow():
                    return httpx.get(f"{server.url}/sites", headers=auth(k["admin"]), timeout=60)

                def refused() -> bool:
                    try:
                        r = httpx.get(f"{server.url}/alerts", headers=auth(k["admin"]), timeout=1)
                    except httpx.TimeoutException:
                        return False  # queued: the queue was not full yet
                    return r.status_code == 429

                running = ex.submit(slow)
                wait_for(lambda: _waiting_on_lock(db) >= 1, 20, what="a request on the lock")
                queued = ex.submit(slow)
                wait_for(refused, 20, what="the key's queue to fill")
                r = client.get("/alerts", headers=auth(k["admin"]))
                p = assert_problem(r, 429, "too-many-requests")
                assert r.headers["Retry-After"] == "1" and "this key" in p["detail"]
                # another key is served meanwhile
                assert client.get("/alerts", headers=auth(k["viewer"])).status_code == 200
                conn.rollback()
                assert running.result().status_code == 200
                # under load a probe above may reach the queue before this one did
                assert queued.result().status_code in (200, 429)
        finally:
            conn.close()
        # once its requests have ended (a probe that gave up may still hold a place for a
        # moment), the key is served again
        wait_for(
            lambda: client.get("/alerts", headers=auth(k["admin"])).status_code == 200,
            20,
            what="the key to be served again",
        )
