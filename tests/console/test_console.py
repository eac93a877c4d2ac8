"""The web console in a real browser (Debian's chromium driven by Playwright) against a
live stack: PostgreSQL, Mosquitto, the consumer with the alert engine, the API."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ingest.api import create_app
from ingest.settings import Settings
from ingest.store.registry import RegistryFile, load_registry
from tests.api.support import (
    ServerThread,
    insert_readings,
    messages,
    minutes_ago,
    publish,
    rows,
    set_rule,
)
from tests.console.support import LIVE_TIMEOUT_MS, PHONE, artifacts_dir, open_console

RED = "#d7191c"
SPILLWAY, DAM_CREST = 5.0, 6.2
SMALL_DAM_CREST = 3.4


def county(db: str) -> None:
    """A small county: a dam system of two check dams (one small, without a spillway),
    a cistern, a runoff plot and a rain gauge, with coordinates."""
    spec = {
        "sites": [
            {
                "id": "dam-up",
                "kind": "check_dam",
                "name": "Upper dam",
                "latitude": 37.560,
                "longitude": 110.250,
                "params": {"dam_crest_m": SMALL_DAM_CREST, "downstream_dam": "dam-key"},
                "devices": [{"id": "dam-up", "channels": ["stage_m", "battery_v"]}],
            },
            {
                "id": "dam-key",
                "kind": "check_dam",
                "name": "Key dam",
                "latitude": 37.540,
                "longitude": 110.270,
                "params": {"spillway_crest_m": SPILLWAY, "dam_crest_m": DAM_CREST},
                "devices": [
                    {"id": "dam-key", "channels": ["stage_m", "turbidity_ntu", "battery_v"]}
                ],
            },
            {
                "id": "cis-1",
                "kind": "cistern",
                "name": "Cistern 1",
                "latitude": 37.552,
                "longitude": 110.282,
                "params": {"overflow_level_m": 3.0},
                "devices": [{"id": "cis-1", "channels": ["level_m"]}],
            },
            {
                "id": "plot-1",
                "kind": "runoff_plot",
                "name": "Plot 1",
                "latitude": 37.548,
                "longitude": 110.236,
                "devices": [{"id": "plot-1", "channels": ["flow_m3_s"]}],
            },
            {
                "id": "rg-1",
                "kind": "rain_gauge",
                "name": "Gauge 1",
                "latitude": 37.545,
                "longitude": 110.262,
                "devices": [{"id": "rg-1", "channels": ["rain_mm"]}],
            },
        ]
    }
    with psycopg.connect(db) as conn:
        load_registry(conn, RegistryFile.model_validate(spec))
    # act at once on the key dam: no hold times
    set_rule(db, "dam-key", "stage", {"min_duration_s": 0, "escalate_duration_s": 0})


def publish_stage(stack, device: str, values: list[float], minutes: float = 1.0) -> None:
    n = len(values)
    readings = [(minutes_ago((n - i) * minutes), "stage_m", v) for i, v in enumerate(values)]
    publish(stack.mqtt_url, messages(device, stack.root, readings))


def alert_id(db: str, site: str) -> int:
    return rows(db, "SELECT id FROM alerts WHERE site_id = %s AND state <> 'resolved'", (site,))[0][
        0
    ]


def test_a_red_crossing_turns_the_marker_and_the_alert_list_red_live(stack, console):
    county(stack.db)
    page = console(stack.engineer)
    marker = page.locator("g.marker[data-site='dam-key']")
    assert marker.get_attribute("data-level") == "0"
    assert page.locator("#alert-list li").count() == 0

    publish_stage(stack, "dam-key", [DAM_CREST + 0.05])  # over the dam crest: red

    page.wait_for_selector("g.marker[data-site='dam-key'][data-level='4']", timeout=LIVE_TIMEOUT_MS)
    page.wait_for_selector(
        "#alert-list li[data-site='dam-key'][data-level='4']", timeout=LIVE_TIMEOUT_MS
    )
    assert marker.locator(".mark").get_attribute("fill") == RED
    item = page.locator("#alert-list li[data-site='dam-key']").first
    assert item.locator(".chip").get_attribute("data-level") == "4"
    assert "Red alert" in item.inner_text()
    # the site list puts it first, and nothing was reloaded
    assert page.locator("#site-list tbody tr").first.get_attribute("data-site") == "dam-key"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert page.js_errors == []


def test_acknowledge_shows_on_a_second_page_and_viewers_cannot_act(stack, console):
    county(stack.db)
    publish_stage(stack, "dam-key", [SPILLWAY + 0.2])
    from tests.support.waiting import wait_for

    wait_for(lambda: rows(stack.db, "SELECT 1 FROM alerts WHERE site_id = 'dam-key'"), 20)
    aid = alert_id(stack.db, "dam-key")

    engineer = console(stack.engineer)
    viewer = console(stack.viewer)
    item = f"#alert-list li[data-alert='{aid}']"
    engineer.wait_for_selector(f"{item}[data-state='open']")
    viewer.wait_for_selector(f"{item}[data-state='open']")
    assert viewer.locator("#role").get_attribute("data-role") == "viewer"
    assert viewer.locator(f"{item} button").count() == 0  # no controls at all
    assert viewer.locator("[data-action]").count() == 0

    # a forged request with the viewer's key is refused by the API
    status = viewer.evaluate(
        """async (id) => (await fetch(`/alerts/${id}/acknowledge`, {method: 'POST',
             headers: {Authorization: 'Bearer ' + sessionStorage.getItem('swc.key'),
                       'Content-Type': 'application/json'}, body: '{}'})).status""",
        aid,
    )
    assert status == 403
    assert rows(stack.db, "SELECT state FROM alerts WHERE id = %s", (aid,)) == [("open",)]

    engineer.click(f"{item} [data-action='acknowledge']")
    engineer.fill(f"{item} input.note", "on my way, 14:20")
    engineer.click(f"{item} [data-action='acknowledge-confirm']")
    engineer.wait_for_selector(f"{item}[data-state='acknowledged']")
    # the viewer's page learns it through the stream, without a reload
    viewer.wait_for_selector(f"{item}[data-state='acknowledged']", timeout=10000)
    assert viewer.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert rows(stack.db, "SELECT state, ack_note FROM alerts WHERE id = %s", (aid,)) == [
        ("acknowledged", "on my way, 14:20")
    ]

    # resolve needs a note; the episode shows open -> acknowledge -> resolve
    engineer.click(f"{item} [data-action='resolve']")
    engineer.click(f"{item} [data-action='resolve-confirm']")
    assert "note is required" in engineer.inner_text(f"{item} .form-error")
    engineer.fill(f"{item} input.note", "water below the crest, gauge checked")
    engineer.click(f"{item} [data-action='resolve-confirm']")
    viewer.wait_for_selector(item, state="detached", timeout=10000)
    viewer.goto(f"{stack.url}/#/alerts")
    viewer.click(f"#past-alerts tr[data-alert='{aid}'] a[href='#/alert/{aid}']")
    viewer.wait_for_selector("#view[data-ready='true'] tr[data-event='resolve']")
    kinds = viewer.eval_on_selector_all("tr[data-event]", "els => els.map(e => e.dataset.event)")
    assert kinds == ["open", "acknowledge", "resolve"]
    assert engineer.js_errors == [] and viewer.js_errors == []


def _y_of(svg, value: float) -> float:
    top, bottom = float(svg["plotTop"]), float(svg["plotBottom"])
    lo, hi = float(svg["yMin"]), float(svg["yMax"])
    return top + (hi - value) / (hi - lo) * (bottom - top)


def test_site_page_draws_crests_thresholds_flags_and_rain_from_buckets(stack, console):
    county(stack.db)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=3)
    stage = [(start + timedelta(minutes=i), 3.0 + 1.5 * i / 4320) for i in range(4320)]
    insert_readings(stack.db, "dam-key", "stage_m", stage)
    off = timedelta(seconds=30)  # between the minutes, not replacing a reading
    insert_readings(stack.db, "dam-key", "stage_m", [(now - timedelta(hours=5) + off, 9.5)], 4)
    insert_readings(stack.db, "dam-key", "stage_m", [(now - timedelta(hours=7) + off, 4.1)], 3)
    rain = [(start + timedelta(minutes=10 * i), 0.2 * (i % 7)) for i in range(432)]
    insert_readings(stack.db, "rg-1", "rain_mm", rain)
    insert_readings(stack.db, "dam-up", "stage_m", stage[-600:])

    page = console(stack.viewer, path="#/site/dam-key?range=3d")
    page.wait_for_selector(".site-page[data-ready='true']")
    assert page.get_attribute("tr[data-rule='stage']", "data-applies") == "true"
    svg = page.locator("#main-chart svg")
    data = svg.evaluate("e => ({...e.dataset})")
    lines = page.eval_on_selector_all(
        "#main-chart line[data-line]",
        "els => els.map(e => [e.dataset.line, +e.dataset.value, +e.getAttribute('y1')])",
    )
    by_key = {k: (v, y) for k, v, y in lines}
    assert by_key["spillway_crest"][0] == SPILLWAY
    assert by_key["dam_crest"][0] == DAM_CREST
    for key, (value, y) in by_key.items():
        assert abs(y - _y_of(data, value)) < 0.6, key  # drawn at its height on the axis
    # default stage thresholds (freeboard left below the dam crest): blue 0.8 m below the
    # spillway crest, orange at it, red 0.01 m below the dam crest
    assert by_key["threshold-blue"][0] == pytest.approx(SPILLWAY - 0.8)
    assert by_key["threshold-orange"][0] == pytest.approx(SPILLWAY)
    assert by_key["threshold-red"][0] == pytest.approx(DAM_CREST - 0.01)
    # bucketed, not 4320 raw points: 3 days in 10-minute buckets
    points = int(page.get_attribute("#main-chart path.series", "data-points"))
    assert 0 < points <= 600
    assert page.locator("#main-chart [data-flag='4']").count() == 1
    assert page.locator("#main-chart [data-flag='3']").count() == 1
    assert page.get_attribute(".rain-title", "data-gauge") == "rg-1"
    assert page.locator("#rain-chart rect").count() > 0
    assert page.locator(".chart-box[data-channel='turbidity_ntu']").count() == 0  # no data
    page.screenshot(path=str(artifacts_dir() / "site-dam-key.png"), full_page=True)

    # a small dam without a spillway: its dam crest and the stage rule's colours below it
    page.goto(f"{stack.url}/#/site/dam-up?range=24h")
    page.wait_for_selector(".site-page[data-site='dam-up'][data-ready='true']")
    keys = page.eval_on_selector_all(
        "#main-chart line[data-line]", "els => els.map(e => e.dataset.line)"
    )
    assert "spillway_crest" not in keys and "dam_crest" in keys
    assert sorted(k for k in keys if k.startswith("threshold-")) == [
        "threshold-blue", "threshold-orange", "threshold-red", "threshold-yellow"
    ]  # fmt: skip
    assert float(page.get_attribute("line[data-line='dam_crest']", "data-value")) == SMALL_DAM_CREST
    # no spillway: orange at the design freeboard (0.5 m), red 0.01 m below the crest
    orange = float(page.get_attribute("line[data-line='threshold-orange']", "data-value"))
    assert orange == pytest.approx(SMALL_DAM_CREST - 0.5)

    # the export form downloads through /exports with the signed-in key
    page.goto(f"{stack.url}/#/export")
    page.wait_for_selector("#view[data-ready='true'] form.export-form")
    page.select_option("select[name='site']", "dam-key")
    page.select_option("select[name='format']", "csv")
    page.select_option("select[name='quality']", "q3")  # without failed readings
    with page.expect_download() as download:
        page.click("form.export-form button[type='submit']")
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("time,") and len(lines) == 1 + 4320 + 1  # + the suspect one
    assert not any(",9.5," in line for line in lines)

    phone = console(stack.viewer, "zh-CN", PHONE, "#/site/dam-key?range=3d")
    phone.wait_for_selector(".site-page[data-ready='true']")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=str(artifacts_dir() / "phone-site-dam-key.png"), full_page=True)
    assert page.js_errors == [] and phone.js_errors == []


def _labels(page) -> dict[str, set[str]]:
    found = page.eval_on_selector_all(
        "#frame [data-i18n]",
        "els => els.filter(e => e.getClientRects().length).map(e => [e.dataset.i18n, e.textContent])",
    )
    out: dict[str, set[str]] = {}
    for key, text in found:
        out.setdefault(key, set()).add(text)
    return out


def test_the_language_switch_changes_every_label_on_the_overview(stack, console):
    county(stack.db)
    publish_stage(stack, "dam-key", [SPILLWAY - 0.3])  # a yellow alert, so the list has one
    page = console(stack.engineer)
    page.wait_for_selector("#alert-list li", timeout=10000)
    english = _labels(page)
    page.click("header .lang")
    page.wait_for_selector("html[lang='zh-CN']")
    page.wait_for_selector("#view[data-ready='true'] #alert-list li")
    chinese = _labels(page)
    assert set(english) == set(chinese)
    assert len(english) > 30
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for key in english:
        assert english[key] != chinese[key], key
        if key != "lang.switch":
            assert all(cjk.search(t) for t in chinese[key]), (key, chinese[key])
    text = page.inner_text("#frame")
    for term in ("淤地坝", "水窖", "径流小区", "雨量站", "橙色预警"):
        assert term in text
    # times in the sites' zone, UTC on hover
    t = page.locator("#alert-list time").first
    utc = datetime.fromisoformat(t.get_attribute("datetime").replace("Z", "+00:00"))
    local = utc.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert t.inner_text() == local.strftime("%Y-%m-%d %H:%M")
    assert t.get_attribute("title").endswith("UTC")
    page.screenshot(path=str(artifacts_dir() / "overview-zh.png"), full_page=True)
    assert page.js_errors == []


def test_overview_screenshots_and_phone_layout(stack, console):
    county(stack.db)
    publish_stage(stack, "dam-key", [DAM_CREST + 0.05])  # red
    page = console(stack.engineer)
    page.wait_for_selector("#alert-list li[data-level='4']", timeout=10000)
    links = page.eval_on_selector_all(
        "line.dam-link", "els => els.map(e => [e.dataset.from, e.dataset.to])"
    )
    assert links == [["dam-up", "dam-key"]]
    shapes = dict(
        page.eval_on_selector_all(
            "g.marker", "els => els.map(e => [e.dataset.site, e.querySelector('.mark').tagName])"
        )
    )
    assert shapes == {
        "dam-up": "polygon",
        "dam-key": "polygon",
        "cis-1": "circle",
        "plot-1": "rect",
        "rg-1": "polygon",
    }
    paint = page.evaluate("performance.getEntriesByType('paint').map(e => [e.name, e.startTime])")
    print("overview paint timings (ms):", json.dumps(paint))
    page.screenshot(path=str(artifacts_dir() / "overview-en.png"), full_page=True)

    phone = console(stack.engineer, "zh-CN", PHONE)
    phone.wait_for_selector("#alert-list li[data-level='4'] [data-action='acknowledge']")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # the alert list comes first on a phone, its buttons fit on the screen
    box = phone.locator("#alert-list [data-action='acknowledge']").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] and box["height"] >= 36
    map_y = phone.locator("#map").bounding_box()["y"]
    assert phone.locator(".alerts-panel").bounding_box()["y"] < map_y
    phone.screenshot(path=str(artifacts_dir() / "phone-overview-zh.png"), full_page=True)
    print("screenshots in", artifacts_dir())
    assert page.js_errors == [] and phone.js_errors == []


def test_docs_render_with_the_network_blocked(stack, browser):
    context = browser.new_context()
    page = context.new_page()
    request_context_close = context.close
    blocked: list[str] = []

    def only_local(route):
        if route.request.url.startswith(stack.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{stack.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=60000)
    assert "swc monitoring API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path")
    assert page.locator(".opblock").count() > 20
    assert blocked == []  # Swagger UI asks for nothing outside the API
    page.goto(f"{stack.url}/redoc")
    page.wait_for_selector("h1:has-text('swc monitoring API')", timeout=60000)
    assert page.locator("text=Acknowledge an alert (engineer)").count() > 0
    # ReDoc's "API docs by Redocly" footer always tries its logo; the image hides itself
    assert [u for u in blocked if not u.endswith("/redoc/logo-mini.svg")] == []
    request_context_close()


def test_time_to_crest_is_shown_and_sorts_when_alerts_carry_a_forecast(stack, console):
    """The alert engine's forecast object (nullable) is shown and orders the site list;
    its absence is tolerated (the other tests)."""
    county(stack.db)
    set_rule(stack.db, "cis-1", "cistern_overflow", {"min_duration_s": 0})
    publish_stage(stack, "dam-key", [SPILLWAY - 0.3])  # yellow: 0.3 m below the crest
    # yellow too: 0.1 m below the overflow
    publish(stack.mqtt_url, messages("cis-1", stack.root, [(minutes_ago(1), "level_m", 2.9)]))
    from tests.support.waiting import wait_for

    wait_for(lambda: len(rows(stack.db, "SELECT 1 FROM alerts WHERE state = 'open'")) == 2, 20)
    forecast = {"dam-key": 1200.0, "cis-1": 5400.0}  # not the order of the ids

    def with_forecast(route):
        body = route.fetch().json()
        for a in body["items"]:
            s = forecast[a["site_id"]]
            a["forecast"] = {"time_to_crest_s": s, "time_to_crest_low_s": s * 0.5,
                             "time_to_crest_high_s": s * 2, "crest_at": "2026-07-21T06:00:00Z",
                             "peak_stage_m": 5.4, "crest_m": 6.2}  # fmt: skip
        route.fulfill(json=body)

    page = console(stack.engineer, path="#/health")  # any page: the data is loaded at start
    # device health: the plot has no flood rule (no tank capacity), and why
    reason = page.inner_text("#no-rule tr[data-site='plot-1']")
    assert "tank_capacity_m3" in reason
    assert page.locator("#no-rule tr[data-site='dam-up']").count() == 0  # a crest is enough
    assert page.locator("tr[data-device='dam-key']").count() == 1
    page.route("**/alerts?active=true*", with_forecast)
    page.reload()
    page.wait_for_selector("#view[data-ready='true']")
    page.goto(f"{stack.url}/#/")
    page.wait_for_selector("#alert-list li[data-site='cis-1'] .forecast")
    crest = page.get_attribute("#alert-list li[data-site='cis-1'] .forecast", "data-crest-s")
    assert float(crest) == 5400.0
    assert "1 h 30 min" in page.inner_text("#alert-list li[data-site='cis-1'] .forecast")
    # same level (yellow): the sooner crest first, in the alert list and the site list
    order = page.eval_on_selector_all("#alert-list li", "els => els.map(e => e.dataset.site)")
    levels = page.eval_on_selector_all("#alert-list li", "els => els.map(e => e.dataset.level)")
    assert levels == ["2", "2"] and order == ["dam-key", "cis-1"]
    sites = page.eval_on_selector_all(
        "#site-list tbody tr", "els => els.map(e => [e.dataset.site, e.dataset.level])"
    )
    assert sites[:2] == [["dam-key", "2"], ["cis-1", "2"]]
    assert page.js_errors == []


def test_sign_in_shows_the_role_and_sign_out_forgets_the_key(stack, browser):
    context = browser.new_context(locale="en-US")
    context.add_init_script("localStorage.setItem('swc.lang', 'en')")
    page = context.new_page()
    page.goto(stack.url + "/")
    page.wait_for_selector("#signin-form")
    page.fill("#key", "swc_not-a-key")
    page.click("#signin-form button[type='submit']")
    page.wait_for_selector("#signin-error:has-text('not valid')")
    page.fill("#key", stack.engineer)
    page.click("#signin-form button[type='submit']")
    page.wait_for_selector("#view[data-ready='true']")
    assert page.inner_text("#role") == "Engineer"
    assert page.evaluate("sessionStorage.getItem('swc.key')") == stack.engineer
    assert page.evaluate("localStorage.getItem('swc.key')") is None
    page.click("#signout")
    page.wait_for_selector("#signin-form")
    assert page.evaluate("sessionStorage.getItem('swc.key')") is None
    page.reload()
    page.wait_for_selector("#signin-form")  # still signed out
    context.close()


def test_map_tiles_come_from_the_tile_url_setting(stack, browser):
    county(stack.db)
    tiles = "/favicon.ico?z={z}&x={x}&y={y}"  # any local URL with {z}, {x} and {y}
    settings = Settings(_env_file=None, database_url=stack.db, console_tile_url=tiles)
    with ServerThread(create_app(settings)) as server:
        page = open_console(browser, server.url, stack.viewer)
        try:
            hrefs = page.eval_on_selector_all(
                "g.tiles image", "els => els.map(e => e.getAttribute('href'))"
            )
            assert page.js_errors == []
        finally:
            page.context.close()
    found = [re.fullmatch(r"/favicon\.ico\?z=(\d+)&x=(\d+)&y=(\d+)", h) for h in hrefs]
    assert hrefs and all(found)
    zooms = {int(m[1]) for m in found}
    assert len(zooms) == 1
    z = zooms.pop()
    xs = {int(m[2]) for m in found}
    ys = {int(m[3]) for m in found}
    # every site's tile is among those drawn
    for lat, lon in ((37.560, 110.250), (37.540, 110.270), (37.548, 110.236)):
        n = 2**z
        tx = int((lon + 180) / 360 * n)
        s = math.sin(math.radians(lat))
        ty = int((0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * n)
        assert tx in xs and ty in ys
