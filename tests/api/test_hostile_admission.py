"""Expensive requests share a small budget (issue 11, "stall the API"): large pages,
derived products and sheet imports of every key run a few at a time, the next ones
wait in order and beyond a queue get 429, while ordinary requests are served; large
pages are rendered from the rows in small steps, to the same bytes as the models."""

from __future__ import annotations

import asyncio
import concurrent.futures
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from ingest.api.admission import START, WHOLE, HeavyBudget, expense
from ingest.api.errors import Problem
from ingest.api.render import page_json
from ingest.api.routes.readings import BucketReading, RawReading, ReadingsPage, StreamOut
from ingest.settings import Settings
from ingest.store import timeseries as store
from tests.api.hostile_support import api, assert_problem, auth, keys, site
from tests.api.research_support import add_site, add_stream, write
from tests.api.support import new_key
from tests.support.waiting import wait_for

SETTINGS = Settings(_env_file=None, api_heavy_rows=1000)


def _scope(path: str, query: str = "", method: str = "GET") -> dict:
    return {"type": "http", "path": path, "method": method, "query_string": query.encode()}


def test_what_is_expensive_is_told_by_the_request_line():
    expensive = [
        _scope("/readings", "site_id=dam-1&limit=10000"),
        _scope("/readings", "limit=5&limit=1001"),
        _scope("/surveys/import", "dry_run=true", "POST"),
        _scope("/research/sites/dam-1/dam-events", "start=2026-01-01T00:00Z"),
        _scope("/research/sites/rg-1/storms"),
    ]
    ordinary = [
        _scope("/readings", "site_id=dam-1&start=2026-01-02T00:00Z&end=2026-01-02T01:00Z"),
        _scope("/readings", "limit=1000"),
        _scope("/readings", "limit=lots"),  # refused by the route (422)
        _scope("/readings", "limit=" + "9" * 5000),
        _scope("/research/sites/dam-1/curves"),
        _scope("/sites"),
        _scope("/alerts", "limit=10000"),
        _scope("/surveys", method="POST"),
    ]
    assert all(expense(s, SETTINGS) == WHOLE for s in expensive)
    assert not any(expense(s, SETTINGS) for s in ordinary)
    # without a limit, the route's default (1,000 rows) is asked
    low = Settings(_env_file=None, api_heavy_rows=500)
    assert expense(_scope("/readings", "site_id=dam-1"), low) == WHOLE
    assert expense(_scope("/readings", "site_id=dam-1&limit=500"), low) is None
    # exports hold their place until their first bytes are sent
    for fmt in ("csv", "parquet", "nc"):
        assert expense(_scope(f"/exports/readings.{fmt}", "site_id=dam-1"), SETTINGS) == START


def test_the_budget_admits_in_order_refuses_beyond_its_queue_and_passes_places_on():
    async def scenario() -> list[str]:
        budget = HeavyBudget(Settings(_env_file=None, api_heavy_concurrency=1, api_heavy_queue=2))
        order: list[str] = []

        async def later(name: str) -> None:
            await budget.enter()
            order.append(name)
            budget.leave()

        await budget.enter()  # the first runs at once
        second = asyncio.create_task(later("second"))
        third = asyncio.create_task(later("third"))
        await asyncio.sleep(0)
        assert (budget.running, budget.waiting) == (1, 2)
        with pytest.raises(Problem) as refused:  # the queue is full
            await budget.enter()
        assert refused.value.status == 429 and refused.value.headers["Retry-After"]
        second.cancel()  # a waiter whose client went away leaves the queue
        await asyncio.sleep(0)
        assert budget.waiting == 1
        fifth = asyncio.create_task(later("fifth"))
        await asyncio.sleep(0)
        assert budget.waiting == 2
        budget.leave()  # the place goes to the next in line, in order
        await asyncio.wait_for(asyncio.gather(third, fifth), 5)
        assert order == ["third", "fifth"]
        assert (budget.running, budget.waiting) == (0, 0)

        # a waiter cancelled just as it is given the place passes it on
        await budget.enter()
        a = asyncio.create_task(later("a"))
        b = asyncio.create_task(later("b"))
        await asyncio.sleep(0)
        budget.leave()
        a.cancel()
        await asyncio.wait_for(b, 5)
        assert a.cancelled() and order[-1] == "b"
        assert (budget.running, budget.waiting) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["third", "fifth", "b"]


def test_a_place_rests_after_use_in_proportion_to_the_time_it_was_held():
    async def scenario() -> None:
        budget = HeavyBudget(Settings(_env_file=None, api_heavy_concurrency=1, api_heavy_share=0.5))
        await budget.enter()
        nxt = asyncio.create_task(budget.enter())
        await asyncio.sleep(0)
        budget.leave(held_s=0.2)  # held 0.2 s: free again after resting 0.2 s
        await asyncio.sleep(0.01)
        assert not nxt.done() and budget.running == 1
        await asyncio.wait_for(nxt, 10)
        budget.leave()  # held for no time: free at once
        assert budget.running == 0

    asyncio.run(scenario())


def test_expensive_requests_wait_their_turn_while_ordinary_ones_are_served(db):
    site(db)
    k = keys(db)
    big = {"site_id": "dam-1", "start": "2026-01-01T00:00Z", "end": "2026-02-01T00:00Z"}
    with (
        api(
            db,
            api_heavy_concurrency=1,
            api_heavy_queue=1,
            api_heavy_rows=100,
            api_heavy_share=1.0,  # no rest (tested above)
            api_statement_timeout_s=dict.fromkeys(("viewer", "surveyor", "engineer", "admin"), 120),
        ) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        lock = psycopg.connect(db)
        lock.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as ex:

                def page(key: str) -> httpx.Response:
                    return httpx.get(
                        f"{server.url}/readings",
                        params={**big, "limit": 5000},
                        headers=auth(key),
                        timeout=60,
                    )

                def refused() -> bool:
                    try:
                        r = httpx.get(
                            f"{server.url}/readings",
                            params={**big, "limit": 5000},
                            headers=auth(k["admin"]),
                            timeout=1,
                        )
                    except httpx.TimeoutException:
                        return False  # queued: the queue was not full yet
                    return r.status_code == 429

                running = ex.submit(page, k["viewer"])
                wait_for(lambda: _waiting_on_lock(db) >= 1, 20, what="a page on the lock")
                queued = ex.submit(page, k["surveyor"])
                wait_for(refused, 20, what="the expensive requests' queue to fill")
                # another key's large page: refused, with a reason and Retry-After
                r = client.get(
                    "/readings", params={**big, "limit": 5000}, headers=auth(k["engineer"])
                )
                p = assert_problem(r, 429, "too-many-requests")
                assert r.headers["Retry-After"] and "expensive" in p["detail"]
                assert "limit <= 100" in p["detail"]
                # ordinary requests of any key are served meanwhile
                assert client.get("/alerts", headers=auth(k["engineer"])).status_code == 200
                other = new_key(db, "viewer")
                assert client.get("/alerts", headers=auth(other)).status_code == 200
                assert _waiting_on_lock(db) == 1  # the queued page never reached the database
                lock.rollback()
                assert running.result().status_code == 200
                # under load a probe above may reach the queue before this one did
                assert queued.result().status_code in (200, 429)
        finally:
            lock.close()
        # once the probes queued above (their clients gone) have run, pages are served
        wait_for(
            lambda: (
                client.get(
                    "/readings", params={**big, "limit": 5000}, headers=auth(k["engineer"])
                ).status_code
                == 200
            ),
            30,
            what="a large page after the others",
        )


def _waiting_on_lock(db: str) -> int:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()[0]


T0 = datetime(2027, 7, 1, tzinfo=UTC)


def test_a_page_rendered_from_rows_has_the_bytes_of_the_models(db):
    add_site(db, "dam-9", "check_dam")
    sid = add_stream(db, "log-9", "stage_m", "dam-9", "m")
    sid2 = add_stream(db, "log-9", "turbidity_ntu", "dam-9", None)
    for s in (sid, sid2):
        write(
            db,
            s,
            [
                (T0 + timedelta(seconds=37 * i), i / 7 - 3.5e-7 * i**2, 1 + i % 4)
                for i in range(900)
            ],
        )
    end = T0 + timedelta(days=1)
    with psycopg.connect(db) as conn:
        streams = store.streams(conn, store.StreamFilter((), ("dam-9",), (), ()))
        raw = store.raw_page(conn, [sid, sid2], T0, end, (), None, 1200)
        hourly = store.bucket_page(
            conn,
            [sid, sid2],
            T0,
            end,
            timedelta(hours=1),
            ["mean", "count", "max"],
            (),
            None,
            50,
            True,
        )
        binned = store.bucket_page(
            conn,
            [sid],
            T0,
            end,
            timedelta(minutes=5),
            ["first", "last", "sum", "min"],
            (1, 2),
            None,
            80,
            False,
        )
    assert len(raw) == 1200 and hourly and binned
    aggs = [a for a in BucketReading.model_fields if a in ("first", "last", "sum", "min")]
    in_order = [{k: {**r, "unit": "m"}[k] for k in RawReading.model_fields} for r in raw]
    cases = [(RawReading, in_order)]  # the route writes the models' field order
    for rows in (hourly, binned):
        cases.append((BucketReading, [
            {"stream_id": r["stream_id"], "time": r["time"], "unit": "m", "count": r["count"],
             **{a: r.get(a) for a in aggs}}
            for r in rows
        ]))  # fmt: skip
    cases.append((RawReading, []))
    for model, items in cases:
        page = ReadingsPage(
            source="readings",
            interval=None,
            aggregates=[],
            start=T0,
            end=end,
            qualities=[1, 2],
            streams=[StreamOut(**s) for s in streams],
            items=[],
            total=None,
            limit=100,
            next="abc",
            next_cursor="abc",
        )
        full = page.model_copy(update={"items": [model(**i) for i in items]})
        slow = full.model_dump_json(exclude_unset=True)
        assert page_json(page, "items", items, model) == slow.encode()
    # a row with a column the model does not know: validated the slow way, same bytes
    odd = [{**cases[0][1][0], "extra": 1}]
    full = page.model_copy(update={"items": [RawReading(**r) for r in odd]})
    assert page_json(page, "items", odd, RawReading) == full.model_dump_json(exclude_unset=True).encode()


def test_an_export_holds_a_place_until_its_first_bytes(db):
    site(db)
    k = keys(db)
    big = {"site_id": "dam-1", "start": "2026-01-01T00:00Z", "end": "2026-02-01T00:00Z"}
    with (
        api(db, api_heavy_concurrency=1, api_heavy_queue=0, api_heavy_rows=100) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        lock = psycopg.connect(db)
        lock.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                export = ex.submit(
                    httpx.get,
                    f"{server.url}/exports/readings.csv",
                    params={"site_id": "dam-1", "end_marker": "true"},
                    headers=auth(k["viewer"]),
                    timeout=60,
                )
                wait_for(lambda: _waiting_on_lock(db) >= 1, 20, what="the export on the lock")
                r = client.get("/readings", params={**big, "limit": 500}, headers=auth(k["admin"]))
                assert_problem(r, 429, "too-many-requests")
                assert client.get("/alerts", headers=auth(k["admin"])).status_code == 200
                lock.rollback()
                r = export.result()
                assert r.status_code == 200 and r.text.endswith("# swc-export complete rows=0\n")
        finally:
            lock.close()
        r = client.get("/readings", params={**big, "limit": 500}, headers=auth(k["admin"]))
        assert r.status_code == 200, r.text[:300]
