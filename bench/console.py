"""Console speed: first paint of the overview with the shipped county, and a site page over
a year of one-minute stage data (525,600 readings) drawn from the API's buckets.

A scratch database with the shipped county (firmware_sim's default scenario) and
the API on uvicorn run in this process; Debian's chromium (Playwright,
``executable_path``) opens the console in a fresh browser context each time.

Figures (medians over the repeats):
- ``fcp_ms``: first contentful paint of ``/`` (the signed-in overview);
- ``overview_ms``: navigation start to the map and lists drawn (app.js marks it);
- ``api_floor_ms``: the overview's three JSON requests (config, sites, alerts) done
  one after another from Python: the baseline the page cannot beat;
- ``year_page_ms``: navigation to the site page's charts drawn for range 1y;
- ``year_points``: points in that chart's line (buckets, not 525,600 readings).

    python bench/console.py [--quick] [--repeats N] [--screenshots DIR]

Needs PostgreSQL (SWC_BENCH_DATABASE_URL, default the local server) and chromium.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psycopg

from bench._common import result_line, scratch_database
from firmware_sim.scenario import load_scenario, registry
from ingest.api import create_app
from ingest.settings import Settings
from ingest.store.keys import create_key
from ingest.store.migrate import migrate
from ingest.store.registry import RegistryFile, load_registry
from tests.api.support import ServerThread
from tests.console.support import CHROMIUM_ARGS, chromium_path

YEAR_MINUTES = 525_600


def year_of_stage(dsn: str, device: str, minutes: int) -> None:
    """One reading a minute up to now, by COPY."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes)
    with psycopg.connect(dsn) as conn:
        sid = conn.execute(
            "SELECT id FROM streams WHERE device_id = %s AND channel = 'stage_m'", (device,)
        ).fetchone()[0]
        buf = io.StringIO()
        for i in range(minutes):
            t = start + timedelta(minutes=i)
            buf.write(
                f"{t.isoformat()}\t{sid}\t{2.0 + (i % 1440) / 1440:.4f}\t1\t{t.isoformat()}\n"
            )
        buf.seek(0)
        with conn.cursor().copy(
            "COPY readings (time, stream_id, value, quality, received_at) FROM STDIN"
        ) as cp:
            while chunk := buf.read(1 << 20):
                cp.write(chunk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats, a month of stage data")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--screenshots", type=Path, default=None, help="save the pages here")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    minutes = 30 * 1440 if args.quick else YEAR_MINUTES
    chromium = chromium_path()
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with scratch_database() as dsn:
        migrate(dsn, "off")
        spec = RegistryFile.model_validate(registry(load_scenario()))
        with psycopg.connect(dsn) as conn:
            load_registry(conn, spec)
            key = create_key(conn, "engineer", "bench")[1]
        dam = next(s.id for s in spec.sites if s.kind == "check_dam")
        t = time.perf_counter()
        year_of_stage(dsn, dam, minutes)
        print(f"{len(spec.sites)} sites; {minutes} stage readings at {dam} "
              f"({time.perf_counter() - t:.1f} s to load)", file=sys.stderr)  # fmt: skip
        app = create_app(Settings(_env_file=None, database_url=dsn))
        with ServerThread(app) as server, sync_playwright() as pw:
            headers = {"Authorization": f"Bearer {key}"}
            floor = []
            with httpx.Client(base_url=server.url, headers=headers) as http:
                for _ in range(repeats + 1):
                    t = time.perf_counter()
                    for path in ("/console/config", "/sites", "/alerts?active=true&late=false"):
                        http.get(path).raise_for_status()
                    floor.append((time.perf_counter() - t) * 1000)
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            fcp, overview, year, points = [], [], [], 0

            def open_page():
                ctx = browser.new_context(viewport={"width": 1280, "height": 860})
                ctx.add_init_script(f"sessionStorage.setItem('swc.key', {key!r})")
                return ctx, ctx.new_page()

            # the overviews first, then the year pages: a site page's retention keeps the
            # server busy for seconds and would slow the next overview down
            for i in range(repeats + 1):  # the first run warms the server's caches
                ctx, page = open_page()
                page.goto(f"{server.url}/")
                page.wait_for_selector("#view[data-ready='true'] g.marker", timeout=30000)
                paint = page.evaluate(
                    "Object.fromEntries(performance.getEntriesByType('paint')"
                    ".map(e => [e.name, e.startTime]))"
                )
                ready = page.evaluate(
                    "performance.getEntriesByName('swc-overview')[0].startTime"
                )  # marked by app.js once the map and lists are drawn
                if args.screenshots and i == repeats:
                    args.screenshots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(args.screenshots / "county-overview.png"))
                if i:
                    fcp.append(paint.get("first-contentful-paint", float("nan")))
                    overview.append(ready)
                ctx.close()
            for i in range(repeats + 1):
                ctx, page = open_page()
                page.goto(f"{server.url}/#/site/{dam}?range=1y")
                t = time.perf_counter()
                page.wait_for_selector(".site-page[data-ready='true']", timeout=60000)
                took = (time.perf_counter() - t) * 1000
                points = int(page.get_attribute("#main-chart path.series", "data-points") or 0)
                page.wait_for_selector(".site-page[data-info-ready='true']", timeout=120000)
                if args.screenshots and i == repeats:
                    page.screenshot(path=str(args.screenshots / "county-site-year.png"))
                if i:
                    year.append(took)
                ctx.close()
            browser.close()
    print(
        result_line(
            sites=len(spec.sites),
            fcp_ms=statistics.median(fcp),
            overview_ms=statistics.median(overview),
            api_floor_ms=statistics.median(floor[1:]),
            year_page_ms=statistics.median(year),
            year_readings=minutes,
            year_points=points,
        )
    )


if __name__ == "__main__":
    main()
