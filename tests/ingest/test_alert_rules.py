"""Alert rules through the engine: CMA rainstorm levels at their exact accumulations,
logger offline by the periodic check, late data, and a second engine continuing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ingest.alerting import AlertEngine
from ingest.settings import Settings
from tests.api.support import (
    alerting_starter,
    insert_readings,
    messages,
    minutes_ago,
    publish,
    rows,
    set_rule,
    setup_site,
)
from tests.support.waiting import wait_for


@pytest.fixture
def start_alerting(start_consumer):
    yield from alerting_starter(start_consumer)


def _engine(db, **over) -> AlertEngine:
    values = {"database_url": db, "alert_late_after_s": 86400.0} | over
    return AlertEngine(Settings(_env_file=None, **values), db)


# (name, spacing of the readings [min], depths [mm], CMA level reached at the last reading)
CMA_CASES = [
    ("blue: 50 mm in 12 h", 180, [12.5, 12.5, 12.5, 12.5], 1),
    ("just below blue", 180, [12.5, 12.5, 12.5, 12.4], 0),
    ("yellow: 50 mm in 6 h", 180, [25.0, 25.0], 2),
    ("just below yellow", 180, [25.0, 24.9], 1 - 1),  # 49.9 mm in 6 h and 12 h: nothing
    ("orange: 50 mm in 3 h", 60, [25.0, 25.0], 3),
    ("just below orange", 60, [25.0, 24.9], 0),
    ("red: 100 mm in 3 h", 30, [25.0, 25.0, 25.0, 25.0], 4),
    ("just below red", 30, [25.0, 25.0, 25.0, 24.9], 3),
]


@pytest.mark.parametrize(("name", "step_min", "depths", "level"), CMA_CASES,
                         ids=[c[0] for c in CMA_CASES])  # fmt: skip
def test_cma_rainstorm_levels_are_raised_at_exactly_the_documented_accumulations(
    db, name, step_min, depths, level
):
    setup_site(db, "gauge-1", "rain_gauge", {}, {"gauge-1": ["rain_mm"]})
    start = minutes_ago(step_min * len(depths))
    points = [(start + timedelta(minutes=step_min * i), d) for i, d in enumerate(depths)]
    engine = _engine(db)
    for p in points:  # one batch per reading, as they would arrive
        engine.process([insert_readings(db, "gauge-1", "rain_mm", [p])])
    got = rows(db, "SELECT peak_level FROM alerts WHERE rule = 'rainfall'")
    assert [r[0] for r in got] == ([level] if level else [])


def test_cma_levels_match_analytics(db):
    from analytics.rainfall import cma_rainstorm_level_number

    # the engine's default rainfall thresholds are the CMA signals of analytics.rainfall
    for acc3, acc6, acc12, want in [(100, 100, 100, 4), (50, 50, 50, 3), (0, 50, 50, 2),
                                    (0, 0, 50, 1), (0, 0, 49.99, 0)]:  # fmt: skip
        assert int(cma_rainstorm_level_number(acc3, acc6, acc12)) == want


def test_logger_offline_is_raised_without_new_data_and_cleared_when_data_returns(
    db, broker, settings_for, topic_root, start_alerting
):
    setup_site(
        db,
        "dam-1",
        "check_dam",
        {"spillway_crest_m": 4.0, "dam_crest_m": 5.0},
        {"dam-1": ["stage_m"]},
    )
    # sampling interval 1 s, offline after 2 intervals; checked every 0.2 s
    set_rule(db, "dam-1", "offline", {"window_s": 1.0, "thresholds": {"blue": 2.0}})
    settings = settings_for(alert_check_interval_s=0.2)
    start_alerting(settings, db)
    publish(broker.url, messages("dam-1", topic_root, [(minutes_ago(1), "stage_m", 1.0)]))

    def offline():
        return rows(db, "SELECT state, level FROM alerts WHERE rule = 'offline' ORDER BY id")

    wait_for(lambda: offline() == [("open", 1)], timeout=20, what="offline alert")
    publish(broker.url, messages("dam-1", topic_root, [(minutes_ago(0), "stage_m", 1.1)], seq0=2))
    wait_for(lambda: offline()[:1] == [("resolved", 0)], timeout=20, what="offline cleared")
    (alert_id,) = rows(db, "SELECT id FROM alerts WHERE rule = 'offline' ORDER BY id")[0]
    kinds = rows(db, "SELECT kind FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,))
    assert [k for (k,) in kinds] == ["open", "resolve"]


def _stage_site(db):
    setup_site(
        db,
        "dam-1",
        "check_dam",
        {"spillway_crest_m": 4.0, "dam_crest_m": 5.0},
        {"dam-1": ["stage_m"]},
    )
    set_rule(
        db,
        "dam-1",
        "stage",
        {"thresholds": {"blue": None, "yellow": 0.5, "orange": 0.2, "red": 0.0},
         "min_duration_s": 600},
    )  # fmt: skip


def test_old_data_arriving_late_is_recorded_but_raises_no_live_alert(db):
    _stage_site(db)
    engine = _engine(db, alert_late_after_s=3600.0)
    start = minutes_ago(3 * 24 * 60)  # a storm three days ago, replayed from a gateway's queue
    stage = [4.0, 4.6, 4.9, 5.1, 5.1, 4.0, 3.0] + [3.0] * 15
    points = [(start + timedelta(minutes=i), s) for i, s in enumerate(stage)]
    engine.process([insert_readings(db, "dam-1", "stage_m", points)])
    alerts = rows(db, "SELECT state, peak_level, late FROM alerts WHERE rule = 'stage'")
    assert alerts == [("resolved", 4, True)]
    events = rows(db, "SELECT kind, late FROM alert_events ORDER BY id")
    assert events and all(late for _, late in events)
    assert rows(db, "SELECT count(*) FROM webhook_deliveries")[0][0] == 0


def test_late_readings_for_a_past_the_engine_has_passed_are_re_evaluated_for_the_record(db):
    _stage_site(db)
    engine = _engine(db, alert_late_after_s=3600.0)
    start = minutes_ago(120)
    calm = [(start + timedelta(minutes=i), 3.0) for i in range(0, 120, 2)]  # every 2 min
    engine.process([insert_readings(db, "dam-1", "stage_m", calm)])
    assert rows(db, "SELECT count(*) FROM alerts")[0][0] == 0
    # a peak at odd minutes 60..79, arriving only now
    peak = [(start + timedelta(minutes=m), 4.8) for m in range(61, 80, 2)]
    engine.process([insert_readings(db, "dam-1", "stage_m", peak)])
    alerts = rows(
        db, "SELECT state, peak_level, late, resolve_reason FROM alerts WHERE rule = 'stage'"
    )
    assert alerts == [("resolved", 3, True, "late_data")]
    # the live state is untouched: the tracker continues at level 0
    assert rows(db, "SELECT count(*) FROM alerts WHERE state <> 'resolved'")[0][0] == 0


def test_a_second_engine_continues_the_first_ones_alert(db):
    _stage_site(db)
    start = minutes_ago(60)
    stage = [4.0] * 5 + [4.6] * 10 + [4.85] * 10 + [5.05] * 10 + [3.0] * 25
    points = [(start + timedelta(minutes=i), s) for i, s in enumerate(stage)]
    first, second = _engine(db), _engine(db)
    first.process([insert_readings(db, "dam-1", "stage_m", points[:20])])
    second.process([insert_readings(db, "dam-1", "stage_m", points[20:])])
    alerts = rows(db, "SELECT id, state, peak_level FROM alerts WHERE rule = 'stage'")
    assert [(s, p) for _, s, p in alerts] == [("resolved", 4)]
    kinds = rows(db, "SELECT kind, level FROM alert_events WHERE alert_id = %s ORDER BY id",
                 (alerts[0][0],))  # fmt: skip
    assert kinds[:3] == [("open", 2), ("escalate", 3), ("escalate", 4)]
    assert kinds[-1] == ("resolve", 0)


def test_the_engine_process_evaluates_every_batch_queued_before_it_stops(db):
    """The engine runs in a process of its own (the consumer's GIL stays free); batches
    queued by the hook are never dropped, and stop() evaluates them before it ends."""
    from ingest.alerting import EngineProcess

    _stage_site(db)
    set_rule(db, "dam-1", "stage", {
        "thresholds": {"blue": None, "yellow": 0.5, "orange": 0.2, "red": 0.0},
        "min_duration_s": 0})  # fmt: skip
    engine = EngineProcess(Settings(_env_file=None, database_url=db), db).start()
    start = minutes_ago(6)
    stage = [3.0, 3.5, 4.6, 4.7, 4.8, 5.1]  # up through yellow, orange and red, minute by minute
    for i, s in enumerate(stage):  # one committed batch a reading, queued at once
        engine.hook(insert_readings(db, "dam-1", "stage_m", [(start + timedelta(minutes=i), s)]))
    engine.stop(timeout=60)
    assert engine.busy.value > 0
    alerts = rows(db, "SELECT state, peak_level, late FROM alerts WHERE rule = 'stage'")
    assert alerts == [("open", 4, False)]
