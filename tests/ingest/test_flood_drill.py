"""Issue 10's drill, end to end: the shipped county's loggers (the simulator) publish a
design storm shifted to the present (`swc sim run --start now`) through Mosquitto
into the consumer with the alert engine; every dam that overtops gets an announced
red of a flood rule before its first overtopping, and a 2-year storm gives no red.

The storm is published as fast as possible, so its readings are dated up to a few
hours after they arrive: the server accepts them (``future_tolerance_s``) as it
would a real-time drill's. The run is cut 3 h after the storm (``after_h``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from firmware_sim.scenario import DEFAULT_SCENARIO, load_scenario, registry
from ingest.alerting.rules import RULES
from ingest.store.registry import RegistryFile, load_registry
from swc_cli import main as swc
from tests.api.support import alerting_starter, rows
from tests.support.waiting import wait_for

FLOOD = sorted(name for name, r in RULES.items() if r.flood)


@pytest.fixture
def start_alerting(start_consumer):
    yield from alerting_starter(start_consumer)


def _short_county(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_SCENARIO.read_text(encoding="utf-8"))
    data.setdefault("rainfall", {}).setdefault("design", {})["after_h"] = 3.0
    path = tmp_path / "county.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _drill(db, broker, settings_for, topic_root, start_alerting, tmp_path, storm):
    scen = _short_county(tmp_path)
    with psycopg.connect(db) as conn:
        load_registry(conn, RegistryFile.model_validate(registry(load_scenario(scen))))
        conn.execute(  # every announced event gets a delivery row
            "INSERT INTO webhooks (url, secret, min_level) VALUES ('http://192.0.2.1/', 's', 0)"
        )
    start_alerting(settings_for(future_tolerance_s=86400.0, alert_min_duration_s=1800.0), db)
    out = tmp_path / "sim"
    res = CliRunner().invoke(
        swc,
        ["sim", "run", str(scen), "--storm", storm, "--mqtt", broker.url, "--root", topic_root,
         "--start", "now", "--speed", "0", "--out", str(out), "-q"],
        catch_exceptions=False,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    sent = json.loads((out / "run.json").read_text())["publish"]["acked"]

    # the publisher saw every message acknowledged, so every reading is stored; wait
    # until the alert engine has evaluated each dam's newest stage reading
    wait_for(lambda: _behind(db) == 0, timeout=600, what="the alert engine to catch up")
    assert sent > 0 and rows(db, "SELECT count(*) FROM dead_letters")[0][0] == 0
    return summary


def _behind(db) -> int:
    """Dams whose forecast rule has not yet seen their newest stage reading."""
    return rows(
        db,
        "SELECT count(*) FROM (SELECT d.site_id, max(r.time) AS newest FROM readings r "
        "JOIN streams s ON s.id = r.stream_id JOIN devices d ON d.id = s.device_id "
        "WHERE s.channel = 'stage_m' GROUP BY d.site_id) x "
        "LEFT JOIN alert_rule_state st ON st.site_id = x.site_id AND st.rule = 'overtopping' "
        "WHERE st.tracker IS NULL "
        "OR (st.tracker->>'last_time_s')::float8 < extract(epoch FROM x.newest) - 1",
    )[0][0]


def _reds(db) -> dict[str, float]:
    """First announced red of a flood rule per site [epoch s of the data]."""
    got = rows(
        db,
        "SELECT a.site_id, min(e.data_time) FROM alert_events e JOIN alerts a "
        "ON a.id = e.alert_id JOIN webhook_deliveries w ON w.event_id = e.id "
        "WHERE a.rule = ANY(%s) AND e.level = 4 AND e.kind IN ('open', 'escalate') "
        "GROUP BY a.site_id",
        (FLOOD,),
    )
    return {site: t.timestamp() for site, t in got}


def test_hundred_year_storm_every_overtopping_dam_gets_an_announced_red_first(
    db, broker, settings_for, topic_root, start_alerting, tmp_path
):
    summary = _drill(db, broker, settings_for, topic_root, start_alerting, tmp_path, "100y")
    overtopped = {
        sid: datetime.fromisoformat(v["overtopping_start_times"][0]).timestamp()
        for sid, v in summary["sites"].items()
        if v.get("overtopping_start_times")
    }
    assert len(overtopped) >= 5  # the shipped county: small dams without a spillway among them
    reds = _reds(db)
    late = {s: (reds.get(s), t) for s, t in overtopped.items() if s not in reds or reds[s] > t}
    assert not late, f"no announced red before overtopping: {late}"
    leads_min = sorted((t - reds[s]) / 60 for s, t in overtopped.items())
    assert all(x > 0 for x in leads_min), leads_min
    # the pond forecast's lead, not only the stage rule's last minutes at the crest: the
    # drill stores hours of stage before the engine gets to them, and the forecast must
    # see the rain that fell meanwhile (it saw it stop at each batch's end: 2-4 min)
    assert min(leads_min) >= 15, leads_min


def test_two_year_storm_raises_no_red(db, broker, settings_for, topic_root, start_alerting,
                                      tmp_path):  # fmt: skip
    summary = _drill(db, broker, settings_for, topic_root, start_alerting, tmp_path, "2y")
    assert not summary["run"]["dams_overtopped"]
    assert rows(db, "SELECT count(*) FROM alerts WHERE peak_level = 4")[0][0] == 0
    # every dam's forecast ran over the storm (the absence of red is not an idle engine)
    dams = rows(db, "SELECT count(*) FROM sites WHERE kind = 'check_dam'")[0][0]
    assert (
        rows(db, "SELECT count(*) FROM alert_rule_state WHERE rule = 'overtopping'")[0][0] == dams
    )
