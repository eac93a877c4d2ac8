"""The engine's shortcut for quiet rules changes nothing: bounds, tracker clock, SQL, whole passes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import quality as Q
from analytics.alerts import AlertTracker
from ingest.alerting import quiet
from ingest.alerting.engine import AlertEngine
from ingest.alerting.rules import RULES, Context, effective_config
from ingest.consumer import CommittedBatch
from ingest.settings import Settings
from ingest.store import alert_bulk
from ingest.store.registry import RegistryFile, load_registry

DAM = Context("check_dam", {"spillway_crest_m": 5.0, "dam_crest_m": 7.0})
QUIET_RULES = ("stage", "rate_of_rise", "rainfall", "low_battery", "sensor_fault")


def _window(rng: np.random.Generator, rule: str):
    """A window of readings that is sometimes quiet, sometimes close to a threshold."""
    n = int(rng.integers(1, 50))
    gaps = rng.choice([0.5, 30.0, 60.0, 60.0, 300.0], size=n)
    t = 1.7e9 + np.cumsum(gaps)
    if rule in ("stage", "rate_of_rise"):
        base = rng.choice([1.0, 3.5, 4.2, 4.7, 5.0, 6.9, 7.0])
        v = base + np.cumsum(rng.normal(0, rng.choice([0.0, 0.001, 0.02, 0.2]), n))
    elif rule == "rainfall":
        v = np.abs(rng.normal(0, rng.choice([0.05, 1.0, 6.0]), n))
    elif rule == "low_battery":
        v = rng.choice([12.6, 12.0, 11.9, 11.6]) + rng.normal(0, 0.1, n)
    else:
        v = rng.normal(100, 10, n)
    if rng.random() < 0.2:
        v[rng.integers(0, n)] = np.nan
    q = np.full(n, 1, dtype=np.int64)
    if rng.random() < 0.3:
        q[rng.integers(0, n)] = rng.choice([Q.SUSPECT, Q.FAIL, 9])
    return t, v, q


def _config(rng: np.random.Generator, rule: str):
    override: dict = {}
    if rng.random() < 0.5 and rule not in ("rainfall", "sensor_fault"):
        base = effective_config(RULES[rule], DAM, None, 1800.0).thresholds.as_list()
        scale = float(rng.choice([0.5, 1.0, 2.0]))
        override["thresholds"] = {
            c: None if x is None else x * scale
            for c, x in zip(("blue", "yellow", "orange", "red"), base, strict=True)
        }
    if rng.random() < 0.5:
        override["hysteresis"] = float(rng.choice([0.0, 0.01, 0.5, 600.0]))
    if rule == "rate_of_rise" and rng.random() < 0.5:
        override["window_s"] = float(rng.choice([600.0, 1800.0, 7200.0]))
    if rule == "sensor_fault" and rng.random() < 0.3:
        override.update(range_min=0.0, range_max=150.0)
    return effective_config(RULES[rule], DAM, override, 1800.0)


def _check(seed: int, rule: str) -> tuple[bool, bool]:
    """(quiet, any level) for one generated case; fails if quiet but a level is raised."""
    rng = np.random.default_rng(seed)
    t, v, q = _window(rng, rule)
    cfg = _config(rng, rule)
    is_quiet = quiet.is_quiet(RULES[rule], quiet.window_stats(t, v, q), cfg, DAM)
    raw, hold, _ = RULES[rule].evaluate(t, v, q, cfg, DAM)
    levels = bool(np.any(raw) or np.any(hold))
    assert not (is_quiet and levels), (seed, rule, cfg, t, v, q, raw, hold)
    return is_quiet, levels


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(QUIET_RULES))
def test_a_quiet_window_raises_no_level_in_the_rule_itself(seed, rule):
    _check(seed, rule)


@pytest.mark.parametrize("rule", QUIET_RULES)
def test_the_bound_is_not_vacuous(rule):
    outcomes = [_check(seed, rule) for seed in range(300)]
    assert sum(qt for qt, _ in outcomes) > 30  # quiet windows are recognised
    assert sum(lv for _, lv in outcomes) > 10  # and windows with levels exist (never quiet)


def test_a_rule_without_a_bound_is_never_quiet():
    w = quiet.window_stats(np.array([1.0]), np.array([0.5]), np.array([1]))
    cistern = Context("cistern", {"overflow_level_m": 2.0})
    cfg = effective_config(RULES["cistern_overflow"], cistern, None, 1800.0)
    assert not quiet.is_quiet(RULES["cistern_overflow"], w, cfg, cistern)
    forecast = RULES["overtopping"]  # the pond forecast: evaluated in full, always
    cfg = effective_config(forecast, DAM, None, 1800.0)
    assert not quiet.is_quiet(forecast, w, cfg, DAM)


@settings(max_examples=200, deadline=None)
@given(
    up=st.one_of(st.none(), st.floats(0, 1e9)),
    up_level=st.integers(0, 4),
    escalate=st.sampled_from([0.0, 60.0, 3600.0]),
    last=st.floats(1e9, 1.5e9),
    n=st.integers(1, 5),
)
def test_rest_is_what_update_does_with_levels_zero(up, up_level, escalate, last, n):
    state = AlertTracker(
        escalate_duration_s=escalate, up_since_s=up, up_level=up_level, last_time_s=last
    ).to_dict()
    fed, rested = AlertTracker.from_dict(state), AlertTracker.from_dict(state)
    times = last + np.arange(1, n + 1) * 60.0
    assert fed.update(times, np.zeros(n, np.int8), np.zeros(n, np.int8)) == []
    quiet.rest(rested, times[-1])
    assert quiet.state(rested) == fed.to_dict()


def test_window_extremes_in_sql_equal_those_of_the_readings(db):
    spec = {"id": "d", "kind": "check_dam", "name": "d", "params": {},
            "devices": [{"id": "d", "channels": ["stage_m", "rain_mm", "battery_v"]}]}  # fmt: skip
    t0 = 1.7e9
    cases = {  # channel -> (times, values, flags)
        "stage_m": ([0, 60, 90, 150, 151.5], [2.0, np.nan, 2.5, 1.5, 2.25], [1, 1, 3, 1, 4]),
        "rain_mm": ([0, 60, 120], [0.2, -1.0, 0.4], [1, 4, 1]),
        "battery_v": ([10], [12.6], [2]),
    }
    with psycopg.connect(db, autocommit=True) as conn:
        load_registry(conn, RegistryFile.model_validate({"sites": [spec]}))
        ids = dict(conn.execute("SELECT channel, id FROM streams"))
        for ch, (t, v, q) in cases.items():
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO readings (time, stream_id, value, quality, received_at) "
                    "VALUES (to_timestamp(%s), %s, %s, %s, now())",
                    [(t0 + a, ids[ch], b, c) for a, b, c in zip(t, v, q, strict=True)],
                )
        since = datetime.fromtimestamp(t0 + 30, UTC)
        until = datetime.fromtimestamp(t0 + 151, UTC)  # the last stage reading is after it
        got = alert_bulk.window_extremes(conn, {ids[ch]: since for ch in cases}, until)
        windows = alert_bulk.read_windows(conn, {ids[ch]: since for ch in cases})
    assert set(got) == {ids["stage_m"], ids["rain_mm"]}  # battery: nothing from since on
    for ch in ("stage_m", "rain_mm"):
        t, v, q = (np.array(x, dtype=float) for x in cases[ch])
        keep = (t >= 30) & (t <= 151)
        want = quiet.window_stats(t0 + t[keep], v[keep], q[keep].astype(np.int64))
        assert quiet.from_row(got[ids[ch]]) == want
        wt, wv, wq = windows[ids[ch]]  # (no end: all from since on)
        np.testing.assert_array_equal(wt, t0 + t[t >= 30])
        np.testing.assert_array_equal(wv, v[t >= 30])
        np.testing.assert_array_equal(wq, q[t >= 30])


# ------------------------------------------------- whole passes, shortcut on and off
_EVALUATE_QUIET = AlertEngine._evaluate_quiet
SITES = ("quiet", "rising", "near", "flagged", "rainy", "battery")


def _site_values(site: str, k: int) -> dict[str, tuple[float, int]]:
    """Minute ``k`` of each site: channel -> (value, flag)."""
    stage = {"quiet": 2.0 + 0.001 * (k % 3), "rising": 2.0 + 0.06 * k,
             "near": 4.2 + 0.03 * ((-1) ** k), "flagged": 2.0, "rainy": 2.0,
             "battery": 2.0}[site]  # fmt: skip
    return {
        "stage_m": (stage, 1),
        "rain_mm": (6.0 if site == "rainy" and k > 20 else 0.1, 1),
        "turbidity_ntu": (100.0, Q.SUSPECT if site == "flagged" and k % 10 == 3 else 1),
        "battery_v": (12.6 - (0.05 * k if site == "battery" else 0.0), 1),
    }


def _run_passes(dsn: str, shortcut: bool, monkeypatch, t0: float) -> tuple[dict, list, int]:
    """Feed 55 minutes of the SITES to a fresh engine pass by pass; its state and alerts."""
    taken = 0
    real = _EVALUATE_QUIET

    def counted(self, *args):
        nonlocal taken
        done = real(self, *args)
        taken += bool(done)
        return done

    monkeypatch.setattr(AlertEngine, "_evaluate_quiet", counted)
    engine = AlertEngine(Settings(_env_file=None, database_url=dsn), dsn, threads=2)
    engine.shortcuts = shortcut
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = {(d, ch): sid for sid, d, ch in conn.execute(
            "SELECT id, device_id, channel FROM streams")}  # fmt: skip
        for k in range(55):
            when = datetime.fromtimestamp(t0 + 60 * k, UTC)
            streams = {}
            with conn.cursor() as cur:
                for site in SITES:
                    for ch, (v, q) in _site_values(site, k).items():
                        sid = ids[(site, ch)]
                        cur.execute(
                            "INSERT INTO readings (time, stream_id, value, quality, received_at)"
                            " VALUES (%s, %s, %s, %s, now())",
                            (when, sid, v, q),
                        )
                        streams[sid] = (when, when)
            # the loggers were just heard from: the offline rule runs, quiet
            conn.execute("UPDATE devices SET last_seen = now()")
            engine.process([CommittedBatch(streams, frozenset(SITES), len(streams), when)])
        states = {
            (s, r, sub): (tr, a is not None)
            for s, r, sub, tr, a in conn.execute(
                "SELECT site_id, rule, subject, tracker, alert_id FROM alert_rule_state"
            )
        }
        # offline trackers run on the wall clock: compare all but their clock
        for key, (tr, _a) in states.items():
            if key[1] == "offline":
                tr.pop("last_time_s")
        alerts = conn.execute(
            "SELECT site_id, rule, subject, state, level, peak_level, opened_at, last_data_at, "
            "late, value, resolve_reason, (SELECT array_agg(kind || e.level ORDER BY e.id) "
            "FROM alert_events e WHERE e.alert_id = a.id) FROM alerts a "
            "ORDER BY site_id, rule, subject, opened_at"
        ).fetchall()
        conn.execute(
            "TRUNCATE readings, alerts, alert_events, alert_rule_state, webhook_deliveries"
        )
    engine.stop()
    return states, alerts, taken


def test_passes_with_the_shortcut_write_what_full_evaluation_writes(db, monkeypatch):
    spec = {"sites": [
        {"id": s, "kind": "rain_gauge" if s == "rainy" else "check_dam", "name": s,
         "params": dict(DAM.params),
         "devices": [{"id": s, "channels": ["stage_m", "rain_mm", "turbidity_ntu",
                                           "battery_v"]}]} for s in SITES]}  # fmt: skip
    with psycopg.connect(db, autocommit=True) as conn:
        load_registry(conn, RegistryFile.model_validate(spec))
    # one start for both runs: trackers hold data times, and two runs that straddle a
    # minute would otherwise differ by it
    t0 = float(int(time.time() // 60 * 60)) - 56 * 60  # none late (alert_late_after_s)
    full_states, full_alerts, none_taken = _run_passes(db, False, monkeypatch, t0)
    states, alerts, taken = _run_passes(db, True, monkeypatch, t0)
    assert none_taken == 0 and taken > 500  # the shortcut did most of the work
    rules_alerted = {(a[0], a[1]) for a in full_alerts}
    assert {("rising", "rate_of_rise"), ("near", "stage"), ("flagged", "sensor_fault"),
            ("rainy", "rainfall"), ("battery", "low_battery")} <= rules_alerted  # fmt: skip
    assert not any(a[0] == "quiet" for a in full_alerts)
    assert {k[1] for k in states} >= {"offline", "stage", "rainfall", "sensor_fault"}
    assert states == full_states
    assert alerts == full_alerts


# --------------------------- settled states held in memory, and another writer
def _other_writer_scenario(dsn: str, same_engine: bool, t0: float) -> tuple[dict, list, int]:
    """A quiet dam's minute 0, then another writer (a second engine, the API) gives its
    stage rule an open episode, then minute 1: by the engine that remembered the rule as
    settled (``same_engine``), or by a fresh one that knows only the database."""
    lost = 0
    real = alert_bulk.save_rule_states_if

    def counted(conn, states, expect):
        nonlocal lost
        done = real(conn, states, expect)
        lost += len(states) - len(done)
        return done

    settings = Settings(_env_file=None, database_url=dsn)
    first = AlertEngine(settings, dsn, threads=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = {ch: sid for sid, ch in conn.execute("SELECT id, channel FROM streams")}

        def minute(engine: AlertEngine, k: int) -> None:
            when = datetime.fromtimestamp(t0 + 60 * k, UTC)
            with conn.cursor() as cur:
                for ch, (v, q) in _site_values("quiet", k).items():
                    cur.execute(
                        "INSERT INTO readings (time, stream_id, value, quality, received_at) "
                        "VALUES (%s, %s, %s, %s, now())",
                        (when, ids[ch], v, q),
                    )
            streams = {ids[ch]: (when, when) for ch in ids}
            engine.process([CommittedBatch(streams, frozenset({"quiet"}), len(streams), when)])

        minute(first, 0)
        assert ("quiet", "stage", "") in first._settled  # remembered as settled
        # the other writer: an open stage episode, as a second engine would leave it
        alert_id = conn.execute(
            "INSERT INTO alerts (site_id, rule, subject, level, peak_level, opened_at, "
            "last_data_at) VALUES ('quiet', 'stage', '', 1, 1, to_timestamp(%s), "
            "to_timestamp(%s)) RETURNING id",
            (t0, t0),
        ).fetchone()[0]
        tracker = AlertTracker(level=1, episode_start_s=t0, peak_level=1, last_time_s=t0)
        conn.execute(
            "UPDATE alert_rule_state SET tracker = %s, alert_id = %s "
            "WHERE site_id = 'quiet' AND rule = 'stage'",
            (psycopg.types.json.Jsonb(tracker.to_dict()), alert_id),
        )
        second = first if same_engine else AlertEngine(settings, dsn, threads=1)
        alert_bulk.save_rule_states_if = counted
        try:
            minute(second, 1)
        finally:
            alert_bulk.save_rule_states_if = real
        states = {
            (r, sub): (tr, a is not None)
            for r, sub, tr, a in conn.execute(
                "SELECT rule, subject, tracker, alert_id FROM alert_rule_state"
            )
        }
        alerts = conn.execute(
            "SELECT rule, state, level, (SELECT array_agg(kind || e.level ORDER BY e.id) "
            "FROM alert_events e WHERE e.alert_id = a.id) FROM alerts a ORDER BY rule"
        ).fetchall()
        conn.execute(
            "TRUNCATE readings, alerts, alert_events, alert_rule_state, webhook_deliveries"
        )
    for engine in {first, second}:
        engine.stop()
    return states, alerts, lost


def test_a_state_written_by_another_is_evaluated_again_not_overwritten(db):
    spec = {"sites": [
        {"id": "quiet", "kind": "check_dam", "name": "quiet", "params": dict(DAM.params),
         "devices": [{"id": "quiet", "channels": ["stage_m", "rain_mm", "turbidity_ntu",
                                                 "battery_v"]}]}]}  # fmt: skip
    with psycopg.connect(db, autocommit=True) as conn:
        load_registry(conn, RegistryFile.model_validate(spec))
    t0 = float(int(time.time() // 60 * 60)) - 5 * 60
    reference, ref_alerts, none_lost = _other_writer_scenario(db, False, t0)
    states, alerts, lost = _other_writer_scenario(db, True, t0)
    assert none_lost == 0 and lost == 1  # the stage row: found changed, not overwritten
    stage, open_ = states[("stage", "")]
    assert stage["level"] == 1 and open_  # the other writer's episode goes on
    assert stage["down_since_s"] == t0 + 60  # and hears the quiet minute
    assert states == reference
    assert alerts == ref_alerts
