"""Expensive reads in worker processes of lower priority (issue 11, "stall the API"):
a large page of readings and the derived products are computed outside the API
process, to the same bytes; errors come back as the same problems; with no worker
the work is done in the API process."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from fastapi import HTTPException

from ingest.api import create_app, offload
from ingest.api.offload import HeavyWorkers
from ingest.api.routes import readings as route
from ingest.settings import Settings
from tests.api.hostile_support import assert_problem, auth, keys
from tests.api.research_support import add_site, add_stream, write
from tests.api.support import ServerThread

T0 = datetime(2027, 7, 1, tzinfo=UTC)


def _series(db: str) -> list[int]:
    add_site(db, "dam-9", "check_dam")
    sids = [
        add_stream(db, "log-9", "stage_m", "dam-9", "m"),
        add_stream(db, "log-9", "turbidity_ntu", "dam-9", None),
    ]
    for s in sids:
        write(db, s, [(T0 + timedelta(seconds=37 * i), i / 7 - 3.5e-7 * i**2, 1 + i % 4)
                      for i in range(1500)])  # fmt: skip
    return sids


def _args(query: dict) -> tuple:
    """What the route hands to page_bytes for ``query``."""
    lists = {"site_id", "stream_id", "device_id", "channel", "quality", "agg"}
    q = route.ReadingsParams.model_validate(
        {k: (v if isinstance(v, list) or k not in lists else [v]) for k, v in query.items()}
    )
    interval = route._check_interval(q)
    aggs = list(dict.fromkeys(q.agg)) or (["mean"] if interval else [])
    fp = route._fingerprint(q, interval, aggs)
    after = route.decode_cursor(q.cursor, fp, q.start, q.end) if q.cursor else None
    items = [(k, str(v)) for k, vs in query.items() for v in (vs if isinstance(vs, list) else [vs])]
    return (q, interval, aggs, fp, after, "/readings", items)


# module level: run in the workers (pickled by name)
def _worker_state(conn: psycopg.Connection) -> tuple[int, int, str]:
    timeout = conn.execute("SHOW statement_timeout").fetchone()[0]
    return os.getpid(), os.nice(0), timeout


def _too_slow(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_sleep(30)")


def _not_found(conn: psycopg.Connection) -> None:
    raise HTTPException(404, "no such thing", headers={"X-Why": "test"})


def _dies_in_a_worker(conn: psycopg.Connection, parent: int) -> str:
    if os.getpid() != parent:
        os._exit(3)
    return "in the API process"


def test_a_page_from_a_worker_has_the_bytes_of_the_page_made_in_process(db):
    _series(db)
    base = {"site_id": "dam-9", "start": "2027-07-01T00:00:00Z", "end": "2027-07-02T00:00:00Z"}
    queries = [
        {**base, "limit": 2000},  # two streams, next page
        {**base, "limit": 5000, "quality": [1, 2]},
        {**base, "limit": 1200, "interval": "5m", "agg": ["first", "max", "count"]},
        {**base, "limit": 3000, "interval": "1h"},  # the hourly aggregate
        {**base, "site_id": "nowhere", "limit": 2000},  # no stream: an empty page
    ]
    workers = HeavyWorkers(db, 1)
    try:
        with psycopg.connect(db) as conn:
            first = None
            for query in queries:
                args = _args(query)
                here = route.page_bytes(conn, *args)
                there = workers.run(conn, 10.0, route.page_bytes, *args)
                assert there == here and here[0].startswith(b"{")
                first = first or here
            # the next page, by the cursor of the first
            nxt = {**queries[0], "cursor": first[1].rsplit("cursor=", 1)[1]}
            assert workers.run(conn, 10.0, route.page_bytes, *_args(nxt)) == route.page_bytes(
                conn, *_args(nxt)
            )
            # the workers run niced, with the statement timeout asked for
            pid, nice, timeout = workers.run(conn, 2.5, _worker_state)
            assert pid != os.getpid() and nice >= min(os.nice(0) + offload.WORKER_NICE, 19)
            assert timeout == "2500ms"
    finally:
        workers.close()


def test_errors_in_a_worker_are_raised_again_as_the_same_classes(db):
    workers = HeavyWorkers(db, 1)
    try:
        with psycopg.connect(db) as conn:
            with pytest.raises(psycopg.errors.QueryCanceled):
                workers.run(conn, 0.2, _too_slow)
            with pytest.raises(HTTPException) as nf:
                workers.run(conn, 10.0, _not_found)
            assert nf.value.status_code == 404 and nf.value.headers == {"X-Why": "test"}
            # the worker's connection is usable after an error
            assert workers.run(conn, 10.0, _worker_state)[2] == "10s"
    finally:
        workers.close()


def test_without_workers_the_work_is_done_in_the_api_process(db, caplog, monkeypatch):
    _series(db)
    args = _args({"site_id": "dam-9", "start": "2027-07-01T00:00:00Z",
                  "end": "2027-07-02T00:00:00Z", "limit": 2500})  # fmt: skip

    def cannot_start(self):
        raise OSError("no processes allowed")

    with psycopg.connect(db) as conn:
        want = route.page_bytes(conn, *args)
        # a pool that cannot start: logged, done here, not tried again at once
        workers = HeavyWorkers(db, 1)
        monkeypatch.setattr(HeavyWorkers, "_start", cannot_start)
        with caplog.at_level(logging.ERROR, logger="ingest.api.offload"):
            assert workers.run(conn, 10.0, route.page_bytes, *args) == want
            assert workers.run(conn, 10.0, _worker_state)[0] == os.getpid()
        assert [r.message for r in caplog.records].count(
            "the API's worker processes could not start (no processes allowed); expensive "
            "reads are done in the API process"
        ) == 1
        monkeypatch.undo()
        # no workers asked for
        assert HeavyWorkers(db, 0).run(conn, 10.0, _worker_state)[0] == os.getpid()
        # a worker that dies during a request: that request is done here, new ones start
        workers = HeavyWorkers(db, 1)
        try:
            assert workers.run(conn, 10.0, _dies_in_a_worker, os.getpid()) == "in the API process"
            assert workers.run(conn, 10.0, _worker_state)[0] != os.getpid()
        finally:
            workers.close()


def test_the_api_answers_large_pages_and_their_errors_from_the_workers(db):
    _series(db)
    k = keys(db)
    q = {"site_id": "dam-9", "start": "2027-07-01T00:00:00Z", "end": "2027-07-02T00:00:00Z"}
    app = create_app(Settings(_env_file=None, database_url=db, api_heavy_rows=100))
    with (
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        big = client.get("/readings", params={**q, "limit": 2000}, headers=auth(k["viewer"]))
        small = client.get("/readings", params={**q, "limit": 50}, headers=auth(k["viewer"]))
        assert big.status_code == 200 and small.status_code == 200
        assert big.json()["items"][:50] == small.json()["items"]
        assert big.headers["Link"] == f'<{big.json()["next"]}>; rel="next"'
        nxt = client.get(big.json()["next"], headers=auth(k["viewer"]))
        assert nxt.status_code == 200 and nxt.json()["items"]
        assert nxt.json()["items"][0] not in big.json()["items"]
        # the same page made in the API process: the same bytes
        app.state.heavy_workers.close()
        app.state.heavy_workers = HeavyWorkers(db, 0)
        again = client.get("/readings", params={**q, "limit": 2000}, headers=auth(k["viewer"]))
        assert again.content == big.content and again.headers["Link"] == big.headers["Link"]
        # a derived product's error from a worker: the same problem document
        app.state.heavy_workers = HeavyWorkers(db, 1)
        r = client.get("/research/sites/nowhere/storms", headers=auth(k["viewer"]))
        p = assert_problem(r, 404)
        assert "no site" in p["detail"]
