"""Time semantics that a bad clock cannot break (issue 10): a reading from the future is
refused and cannot poison a rule; late data is history; a stale episode is resolved and
never announced as live; /sites, /alerts, the retained MQTT state and SSE agree.

Real PostgreSQL and Mosquitto. The end-to-end tests publish over MQTT to the consumer
with the engine attached and read the API through uvicorn; the others drive the engine
with batches whose arrival time is set (a July storm arriving in July).
"""

from __future__ import annotations

import dataclasses
import json
import queue
from datetime import UTC, datetime, timedelta

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.alerting import AlertEngine
from ingest.alerting.rules import RULES
from ingest.api import create_app
from ingest.settings import Settings
from protocol.topics import alerts_topic
from tests.api.support import (
    ServerThread,
    SseReader,
    alerting_starter,
    insert_readings,
    messages,
    minutes_ago,
    new_key,
    publish,
    rows,
    set_rule,
    setup_site,
)
from tests.support.waiting import wait_for

SITE = "dam-1"
CREST = 5.0  # dam crest [m]; the stage rule is red at the crest
RED, YELLOW, CALM, EMPTY = 5.1, 4.6, 3.0, 0.4  # stage [m]


@pytest.fixture
def start_alerting(start_consumer):
    yield from alerting_starter(start_consumer)


def _dam(db: str) -> None:
    """A check dam whose only rule is the stage rule (yellow 0.5 m, orange 0.2 m, red 0)."""
    setup_site(db, SITE, "check_dam", {"spillway_crest_m": CREST - 1.0, "dam_crest_m": CREST},
               {SITE: ["stage_m"]})  # fmt: skip
    for name in RULES:
        if name != "stage":
            set_rule(db, SITE, name, {"enabled": False})
    set_rule(
        db,
        SITE,
        "stage",
        {"thresholds": {"blue": None, "yellow": 0.5, "orange": 0.2, "red": 0.0},
         "min_duration_s": 600},
    )  # fmt: skip
    with psycopg.connect(db) as conn:  # every announced event gets a delivery row
        conn.execute(
            "INSERT INTO webhooks (url, secret, min_level) VALUES ('http://127.0.0.1:9/', 's', 0)"
        )


def _engine(db: str, **over) -> AlertEngine:
    values = {"database_url": db, "alert_late_after_s": 3600.0} | over
    return AlertEngine(Settings(_env_file=None, **values), db)


def _arriving(batch, at: datetime):
    """The batch as if it had arrived (been committed) at ``at``."""
    return dataclasses.replace(batch, received_at=at)


def _series(start: datetime, values: list[float], step_min: float = 1.0):
    return [(start + timedelta(minutes=step_min * i), v) for i, v in enumerate(values)]


def _alerts(db: str):
    return rows(
        db,
        "SELECT id, state, level, peak_level, late, resolve_reason FROM alerts "
        "WHERE rule = 'stage' ORDER BY id",
    )


def _announced(db: str):
    """Announced events (one webhook delivery each): (alert id, kind, level, previous level)."""
    return rows(
        db,
        "SELECT e.alert_id, e.kind, e.level, e.previous_level FROM webhook_deliveries d "
        "JOIN alert_events e ON e.id = d.event_id ORDER BY e.id",
    )


# --- a reading from the future ----------------------------------------------------------


def test_a_reading_dated_2099_is_dead_lettered_and_a_later_crossing_raises_an_announced_red(
    db, broker, settings_for, topic_root, start_alerting
):
    """The issue's report: one reading dated 2099 from a site's own logger made every
    later alert of the site late and unannounced, for good."""
    _dam(db)
    start_alerting(settings_for(), db)
    key = new_key(db, "viewer")
    with ServerThread(create_app(Settings(_env_file=None, database_url=db))) as server:
        sse = SseReader(f"{server.url}/alerts/stream?site_id={SITE}", key)
        bad_clock = [(minutes_ago(30), "stage_m", CALM),
                     (datetime(2099, 6, 1, tzinfo=UTC), "stage_m", CALM)]  # fmt: skip
        publish(broker.url, messages(SITE, topic_root, bad_clock, per_message=2))
        wait_for(lambda: rows(db, "SELECT error_code FROM dead_letters") == [("future_time",)],
                 what="the dead letter")  # fmt: skip
        assert rows(db, "SELECT count(*), max(time) < now() FROM readings") == [(1, True)]
        # a real crossing afterwards: yellow, then red, from the same logger
        crossing = [(minutes_ago(10 - i), "stage_m", v)
                    for i, v in enumerate([CALM, YELLOW, YELLOW, RED, RED])]  # fmt: skip
        publish(broker.url, messages(SITE, topic_root, crossing, per_message=1, seq0=2), each=True)
        seen = [sse.next()["data"] for _ in range(2)]
        assert [(e["kind"], e["level"], e["late"]) for e in seen] == [
            ("open", 2, False),
            ("escalate", 4, False),
        ]
        assert _alerts(db) == [(seen[0]["alert_id"], "open", 4, 4, False, None)]
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        (site,) = [s for s in api.get("/sites").json()["items"] if s["id"] == SITE]
        assert (site["alert_level"], site["active_alerts"]) == (4, 1)
        dead = rows(db, "SELECT error FROM dead_letters")[0][0]
        assert "2099-06-01T00:00:00+00:00" in dead and "1 of 2 readings" in dead


def test_a_future_reading_already_stored_does_not_poison_the_rule(db):
    """Defence in depth: a reading from the future stored by an older version (or written
    straight to the database) is ignored by the engine, and never sets a rule's clock."""
    _dam(db)
    engine = _engine(db)
    poisoned = insert_readings(db, SITE, "stage_m", [(datetime(2099, 6, 1, tzinfo=UTC), RED)])
    engine.process([insert_readings(db, SITE, "stage_m", [(minutes_ago(20), CALM)]), poisoned])
    assert _alerts(db) == []  # the red reading of 2099 raised nothing
    (clock,) = rows(db, "SELECT (tracker->>'last_time_s')::float8 FROM alert_rule_state "
                        "WHERE rule = 'stage'")[0]  # fmt: skip
    assert clock < datetime.now(UTC).timestamp()
    later = _series(minutes_ago(10), [CALM, YELLOW, RED, RED])
    engine.process([insert_readings(db, SITE, "stage_m", later)])
    ((alert_id, state, level, _, late, _),) = _alerts(db)
    assert (state, level, late) == ("open", 4, False)
    assert _announced(db) == [(alert_id, "open", 2, 0), (alert_id, "escalate", 4, 2)]


def test_a_future_reading_already_stored_is_never_a_streams_latest(db):
    from fastapi.testclient import TestClient

    _dam(db)
    real = minutes_ago(30)
    insert_readings(db, SITE, "stage_m", [(real, CALM), (datetime(2099, 6, 1, tzinfo=UTC), RED)])
    key = new_key(db, "viewer")
    with TestClient(create_app(Settings(_env_file=None, database_url=db))) as api:
        auth = {"Authorization": f"Bearer {key}"}
        latest = api.get(f"/sites/{SITE}/latest", headers=auth).json()
        detail = api.get(f"/sites/{SITE}", headers=auth).json()
    assert [(r["channel"], r["value"]) for r in latest] == [("stage_m", CALM)]
    assert datetime.fromisoformat(latest[0]["time"]) == real
    assert detail["latest"] == latest


def test_a_rule_whose_clock_a_future_reading_set_starts_afresh(db):
    """A state left by an older version: the tracker's clock in 2099 and an open red."""
    _dam(db)
    engine = _engine(db)
    engine.process([insert_readings(db, SITE, "stage_m", _series(minutes_ago(30), [RED, RED]))])
    ((old_id, *_),) = _alerts(db)
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE alert_rule_state SET tracker = jsonb_set(tracker, '{last_time_s}', %s) "
            "WHERE rule = 'stage'",
            (json.dumps(datetime(2099, 6, 1, tzinfo=UTC).timestamp()),),
        )
    assert engine.check_stale() == 1  # the periodic check finds it without new data
    assert _alerts(db)[0][1:] == ("resolved", 0, 4, False, "future_data")
    engine.process([insert_readings(db, SITE, "stage_m", _series(minutes_ago(10), [RED, RED]))])
    alerts = _alerts(db)
    assert [a[1:3] for a in alerts] == [("resolved", 0), ("open", 4)]
    assert _announced(db)[-2:] == [(old_id, "resolve", 0, 4), (alerts[1][0], "open", 4, 0)]


# --- late data is history ---------------------------------------------------------------


def test_late_data_is_recorded_resolved_and_live_data_is_judged_on_its_own(db):
    _dam(db)
    engine = _engine(db)
    # a gateway's backlog: red from 3 h to 70 min ago, still red at its end
    backlog = _series(minutes_ago(180), [CALM] * 5 + [RED] * 106, step_min=1)
    engine.process([insert_readings(db, SITE, "stage_m", backlog)])
    ((_, state, level, peak, late, reason),) = _alerts(db)
    assert (state, level, peak, late, reason) == ("resolved", 0, 4, True, "late_data")
    assert _announced(db) == []
    # live readings: the pond has fallen to yellow; the live alert is yellow, not red
    live = _series(minutes_ago(20), [YELLOW] * 5)
    engine.process([insert_readings(db, SITE, "stage_m", live)])
    alerts = _alerts(db)
    assert [a[1:5] for a in alerts] == [("resolved", 0, 4, True), ("open", 2, 2, False)]
    assert _announced(db) == [(alerts[1][0], "open", 2, 0)]
    assert rows(db, "SELECT count(*) FROM alert_events WHERE kind = 'live'") == [(0,)]


def test_a_late_episode_followed_by_calm_live_data_announces_nothing(db):
    _dam(db)
    engine = _engine(db)
    backlog = _series(minutes_ago(150), [RED] * 60)  # red up to 90 min ago, arriving now
    engine.process([insert_readings(db, SITE, "stage_m", backlog)])
    engine.process([insert_readings(db, SITE, "stage_m", _series(minutes_ago(30), [CALM] * 5))])
    assert [a[1] for a in _alerts(db)] == ["resolved"]
    assert _announced(db) == []


# --- a stale condition is never announced as live ---------------------------------------

JULY = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


def _july_red(db: str, engine: AlertEngine) -> int:
    """A red on the pond in July, arriving as it happened (live then)."""
    storm = _series(JULY, [CALM, YELLOW, RED, RED, RED], step_min=10)
    engine.process([_arriving(insert_readings(db, SITE, "stage_m", storm), storm[-1][0])])
    ((alert_id, state, level, _, late, _),) = _alerts(db)
    assert (state, level, late) == ("open", 4, False)
    return alert_id


def test_a_july_red_is_resolved_stale_when_a_later_run_finds_the_pond_empty(db):
    _dam(db)
    july_id = _july_red(db, _engine(db))
    announced_in_july = len(_announced(db))
    restarted = _engine(db)  # months later, a new process
    run = _series(minutes_ago(30), [EMPTY] * 30)
    restarted.process([insert_readings(db, SITE, "stage_m", run)])
    assert _alerts(db) == [(july_id, "resolved", 0, 4, False, "stale")]
    after = _announced(db)[announced_in_july:]
    assert after == [(july_id, "resolve", 0, 4)]  # the end is announced; no red, no 'live'
    (note,) = rows(db, "SELECT resolve_note FROM alerts WHERE id = %s", (july_id,))[0]
    assert note.startswith("no data from 2026-07-20T08:40:00+00:00")


def test_a_later_run_with_the_pond_at_red_raises_a_new_live_red(db):
    _dam(db)
    july_id = _july_red(db, _engine(db))
    restarted = _engine(db)
    restarted.process([insert_readings(db, SITE, "stage_m", _series(minutes_ago(5), [RED] * 3))])
    alerts = _alerts(db)
    assert [(a[0] == july_id, a[1], a[5]) for a in alerts] == [
        (True, "resolved", "stale"),
        (False, "open", None),
    ]
    assert _announced(db)[-2:] == [(july_id, "resolve", 0, 4), (alerts[1][0], "open", 4, 0)]


def test_a_restart_resolves_a_stale_red_without_new_data(db):
    _dam(db)
    july_id = _july_red(db, _engine(db))
    assert _engine(db).check_stale(full=False) == 1  # the periodic check: open episodes only
    assert _alerts(db) == [(july_id, "resolved", 0, 4, False, "stale")]
    assert _announced(db)[-1] == (july_id, "resolve", 0, 4)
    assert _engine(db).check_stale() == 0  # once


def test_a_gap_shorter_than_the_stale_limit_continues_the_alert(db):
    _dam(db)
    engine = _engine(db, alert_stale_after_s=3 * 3600.0)
    first = _series(minutes_ago(150), [RED] * 3)  # live when it arrived
    engine.process([_arriving(insert_readings(db, SITE, "stage_m", first), first[-1][0])])
    engine.process([insert_readings(db, SITE, "stage_m", _series(minutes_ago(5), [RED] * 3))])
    assert [a[1:3] for a in _alerts(db)] == [("open", 4)]
    assert engine.check_stale() == 0


def test_the_simulators_july_storm_into_a_live_system_then_an_empty_pond(db):
    """The issue's report: a storm run dated July into a live system gave only late
    alerts, and a later run announced July's red on an empty pond as live."""
    _dam(db)
    engine = _engine(db)
    storm = _series(JULY, [CALM, YELLOW, RED, RED, RED], step_min=10)  # arriving now: late
    engine.process([insert_readings(db, SITE, "stage_m", storm)])
    assert [a[1:5] for a in _alerts(db)] == [("resolved", 0, 4, True)]
    engine.process([insert_readings(db, SITE, "stage_m", _series(minutes_ago(30), [EMPTY] * 30))])
    assert [a[1] for a in _alerts(db)] == ["resolved"]
    assert _announced(db) == []


# --- one truth: /sites, /alerts, the retained MQTT state and SSE ------------------------


class Views:
    """The four views of a site's alert level, read at one quiet moment."""

    def __init__(self, server: ServerThread, key: str, broker, topic_root: str):
        self.api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        self.sse = SseReader(f"{server.url}/alerts/stream?site_id={SITE}", key)
        self.sse_levels: dict[int, int] = {}  # alert id -> level, folded from the events
        self.retained: queue.Queue = queue.Queue()
        self.mqtt_level = 0
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        self.client.on_message = lambda c, u, m: self.retained.put(json.loads(m.payload))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(alerts_topic(SITE, topic_root), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.api.close()

    def _drain(self) -> None:
        while not self.sse.events.empty():
            ev = self.sse.events.get()["data"]
            if ev["kind"] == "resolve":
                self.sse_levels.pop(ev["alert_id"], None)
            else:
                self.sse_levels[ev["alert_id"]] = ev["level"]
        while not self.retained.empty():
            self.mqtt_level = self.retained.get()["level"]

    def levels(self) -> dict[str, int]:
        self._drain()
        (site,) = [s for s in self.api.get("/sites").json()["items"] if s["id"] == SITE]
        active = self.api.get("/alerts", params={"active": "true", "site_id": SITE}).json()["items"]
        return {
            "sites": site["alert_level"],
            "alerts": max((a["level"] for a in active), default=0),
            "mqtt": self.mqtt_level,
            "sse": max(self.sse_levels.values(), default=0),
        }

    def agree_on(self, level: int, what: str) -> None:
        wait_for(lambda: set(self.levels().values()) == {level}, timeout=30,
                 what=f"every view at level {level} ({what}): {self.levels()}")  # fmt: skip


def test_sites_alerts_mqtt_and_sse_agree_through_late_data_live_data_and_a_gap(
    db, broker, settings_for, topic_root, start_alerting
):
    _dam(db)
    stale_s = 2 * 3600.0
    start_alerting(settings_for(alert_stale_after_s=stale_s), db)
    key = new_key(db, "viewer")
    with ServerThread(create_app(Settings(_env_file=None, database_url=db))) as server:
        views = Views(server, key, broker, topic_root)
        try:
            seq = [1]

            def send(points):
                readings = [(t, "stage_m", v) for t, v in points]
                items = messages(SITE, topic_root, readings, per_message=10, seq0=seq[0])
                seq[0] += len(items)
                publish(broker.url, items, each=True)

            # 1. a gateway's backlog, all late, red up to 78 min ago: history only
            send(_series(minutes_ago(180), [CALM] * 3 + [RED] * 100))
            wait_for(lambda: [a[1:5] for a in _alerts(db)] == [("resolved", 0, 4, True)],
                     what="the late record")  # fmt: skip
            views.agree_on(0, "late data")
            # 2. live data at yellow: a live yellow, not the late red
            send(_series(minutes_ago(20), [YELLOW] * 3))
            views.agree_on(2, "live yellow")
            # 3. live data at red
            send(_series(minutes_ago(15), [RED] * 3))
            views.agree_on(4, "live red")
            # 4. the logger is silent; a restarted engine finds the red stale
            assert _engine(db, alert_stale_after_s=60.0).check_stale() == 1
            views.agree_on(0, "stale red resolved")
            assert [a[5] for a in _alerts(db)][-1] == "stale"
            # 5. data again, calm: nothing is announced as live
            send(_series(minutes_ago(3), [CALM] * 3))
            views.agree_on(0, "calm after the gap")
            assert rows(db, "SELECT count(*) FROM alerts WHERE state <> 'resolved'") == [(0,)]
        finally:
            views.close()
