"""The alert engine on real PostgreSQL and Mosquitto, readings published over MQTT."""

from __future__ import annotations

import numpy as np
import pytest

from tests.api.support import (
    alerting_starter,
    messages,
    minutes_ago,
    publish,
    rows,
    set_rule,
    setup_site,
)
from tests.support.waiting import scalar, wait_for


@pytest.fixture
def start_alerting(start_consumer):
    yield from alerting_starter(start_consumer)


CREST = 5.0
DAM = {"spillway_crest_m": CREST - 1.0, "dam_crest_m": CREST}


def _stage_alerts(db, site="dam-1"):
    return rows(
        db,
        "SELECT id, state, level, peak_level, resolve_reason, late FROM alerts "
        "WHERE site_id = %s AND rule = 'stage' ORDER BY id",
        (site,),
    )


def _events(db, alert_id):
    return rows(
        db,
        "SELECT kind, level, previous_level FROM alert_events WHERE alert_id = %s ORDER BY id",
        (alert_id,),
    )


def test_rising_pond_escalates_through_one_alert_and_resolves_once(
    db, broker, settings_for, topic_root, start_alerting
):
    setup_site(db, "dam-1", "check_dam", DAM, {"dam-1": ["stage_m"]})
    set_rule(
        db,
        "dam-1",
        "stage",
        {
            "thresholds": {"blue": None, "yellow": 0.5, "orange": 0.2, "red": 0.0},
            "hysteresis": 0.05,
            "min_duration_s": 600,
        },
    )
    settings = settings_for(alert_late_after_s=86400.0)  # the whole replay counts as live
    start_alerting(settings, db)
    # 100 one-minute readings ending now: rise from 4.0 to 5.2, hold, fall to 3.5
    stage = np.concatenate(
        [np.linspace(4.0, 5.2, 40), np.full(15, 5.2), np.linspace(5.2, 3.5, 30), np.full(15, 3.5)]
    )
    start = minutes_ago(len(stage))
    readings = [(start + np.timedelta64(i, "m").item(), "stage_m", float(s)) for i, s in
                enumerate(stage)]  # fmt: skip
    publish(broker.url, messages("dam-1", topic_root, readings, per_message=4), each=True)
    wait_for(
        lambda: [a[1] for a in _stage_alerts(db)] == ["resolved"], timeout=30, what="resolution"
    )
    (alert,) = _stage_alerts(db)
    assert alert[3] == 4 and alert[4] == "condition_cleared"
    kinds = [(k, lvl) for k, lvl, _ in _events(db, alert[0])]
    assert kinds[:3] == [("open", 2), ("escalate", 3), ("escalate", 4)]
    assert kinds[-1] == ("resolve", 0)
    assert [k for k, _ in kinds].count("resolve") == 1
    assert all(k == "deescalate" for k, _ in kinds[3:-1])


def test_noisy_stage_at_a_threshold_does_not_flap(
    db, broker, settings_for, topic_root, start_alerting
):
    setup_site(db, "dam-1", "check_dam", DAM, {"dam-1": ["stage_m"]})
    set_rule(
        db,
        "dam-1",
        "stage",
        {
            "thresholds": {"blue": None, "yellow": 0.5, "orange": 0.2, "red": 0.0},
            "hysteresis": 0.05,
            "min_duration_s": 600,
        },
    )
    start_alerting(settings_for(), db)
    rng = np.random.default_rng(7)
    stage = CREST - 0.5 + rng.uniform(-0.03, 0.03, 50)  # hovering at the yellow threshold
    start = minutes_ago(len(stage))
    readings = [(start + np.timedelta64(i, "m").item(), "stage_m", float(s)) for i, s in
                enumerate(stage)]  # fmt: skip
    publish(broker.url, messages("dam-1", topic_root, readings, per_message=5), each=True)
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == len(stage), what="all readings")
    wait_for(lambda: len(_stage_alerts(db)) >= 1, what="an alert")
    import time

    time.sleep(1.0)  # let the engine finish the last batches
    alerts = _stage_alerts(db)
    assert len(alerts) == 1 and alerts[0][1] == "open" and alerts[0][2] == 2
    assert [k for k, _, _ in _events(db, alerts[0][0])] == ["open"]
