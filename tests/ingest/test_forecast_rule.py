"""The overtopping rule's two scenarios on a pond that fills in a storm's long tail:
the rain going on warns earlier than the committed runoff alone, and a pond with room
left stays below red in either."""

from __future__ import annotations

import numpy as np

from analytics import forecast as F
from analytics import quality as Q
from ingest.alerting import rules as R

PARAMS = {
    "stage_storage": {"a": 300.0, "b": 2.4},
    "catchment_area_km2": 0.5,
    "curve_number": 80.0,
    "tc_h": 0.4,
}
T0 = 1.8e9


def storm_and_pond(crest_m: float):
    """A burst then four hours of light rain on a closed pond (no outlets): the
    minute times, the rain per minute, the stage, and when it reaches ``crest_m``."""
    rain = np.concatenate([np.zeros(10), np.full(20, 2.0), np.full(240, 0.12), np.zeros(120)])
    t = T0 + 60.0 * np.arange(1, rain.size + 1)
    cat = F.Catchment(0.5, 80.0, 0.4)
    q = F.committed_inflow_m3_s(rain, 60.0, cat)[: rain.size]
    storage = np.cumsum(q) * 60.0
    dam = R.check_dam_model({**PARAMS, "dam_crest_m": 100.0})
    stage = dam.stage_m(storage)
    over = np.flatnonzero(stage >= crest_m)
    return t, rain, stage, (t[over[0]] if over.size else None)


def first_red(crest_m: float, window_s: float | None):
    t, rain, stage, t_over = storm_and_pond(crest_m)
    ctx = R.Context("check_dam", {**PARAMS, "dam_crest_m": crest_m}, extras={"rain": (t, rain)})
    over = {} if window_s is None else {"window_s": window_s}
    cfg = R.effective_config(R.RULES["overtopping"], ctx, over, 1800.0)
    raw, _, _ = R._forecast(t, stage, np.full(t.size, Q.PASS, dtype=np.int8), cfg, ctx)
    red = np.flatnonzero(raw >= 4)
    return (t[red[0]] if red.size else None), t_over, ctx.details


def test_the_rain_going_on_warns_a_filling_pond_earlier_than_the_committed_runoff():
    _, _, stage, _ = storm_and_pond(100.0)
    crest = float(stage[200])  # the pond reaches this in the tail
    red, t_over, details = first_red(crest, None)  # default: 30 min of rain going on
    committed, _, _ = first_red(crest, 1.0)  # the rain going on for 1 s: committed alone
    assert t_over is not None and red is not None and committed is not None
    lead, lead_committed = (t_over - red) / 60.0, (t_over - committed) / 60.0
    assert lead > lead_committed
    assert 30.0 <= lead <= R.ONGOING_RAIN_S / 60.0 + 10.0  # not from the opening burst
    made = details[red]
    assert made["time_to_crest_s"] is None  # no more rain: the crest is not reached yet
    assert made["time_to_crest_ongoing_s"] <= R.ONGOING_RAIN_S
    assert abs(made["ongoing_rain_mm_h"] - 7.2) < 0.5  # the tail's 0.12 mm a minute, held
    assert made["ongoing_rain_s"] == R.ONGOING_RAIN_S


def test_a_pond_with_room_left_stays_below_red_if_the_rain_goes_on():
    _, _, stage, _ = storm_and_pond(100.0)
    crest = float(stage.max()) + 0.5  # the storm leaves half a metre
    red, t_over, details = first_red(crest, None)
    assert t_over is None and red is None
    # it was worked out while it rained, and never came within the window
    ongoing = [d["time_to_crest_ongoing_s"] for d in details.values() if "ongoing_rain_s" in d]
    assert ongoing and all(x is None or x > R.ONGOING_RAIN_S for x in ongoing)


def test_a_rain_gauge_reporting_a_storm_the_pond_does_not_see_raises_no_red():
    """A gauge with valid credentials (or a broken one) reports heavy rain that never
    reaches the pond: the observed rise corrects both scenarios down, so no red."""
    t, rain, stage, _ = storm_and_pond(100.0)
    crest = float(stage.max()) - 0.3  # the real storm would overtop this dam
    flat = np.full(t.size, 0.5)  # but the pond stays where it was
    ctx = R.Context("check_dam", {**PARAMS, "dam_crest_m": crest}, extras={"rain": (t, rain)})
    cfg = R.effective_config(R.RULES["overtopping"], ctx, None, 1800.0)
    raw, _, _ = R._forecast(t, flat, np.full(t.size, Q.PASS, dtype=np.int8), cfg, ctx)
    assert raw.max() < 4
    # the forecasts were made, with the inflow scaled down to what the pond shows
    factors = [
        d["inflow_factor"] for d in ctx.details.values() if d["method"] == "committed_runoff"
    ]
    assert factors and min(factors) < 0.2


def test_a_forecast_red_is_raised_only_when_the_next_two_minutes_confirm_it():
    """Near its threshold the rain-goes-on projection flickers (a 0.2 mm tip entering
    or leaving the 30-minute rate, the stage's noise): red forecasts in one or two
    successive minutes, then not, raise no red; in three they do, at the third."""
    from analytics.alerts import AlertTracker

    ctx = R.Context("check_dam", {**PARAMS, "dam_crest_m": 5.0})
    cfg = R.effective_config(R.RULES["overtopping"], ctx, None, 1800.0)
    assert cfg.escalate_duration_s == R.FORECAST_CONFIRM_S

    def red_at(raw_levels):
        tracker = AlertTracker(cfg.min_duration_s, cfg.escalate_duration_s)
        raw = np.asarray([3] * 10 + raw_levels)  # orange for ten minutes first
        t = T0 + 60.0 * np.arange(raw.size)
        events = tracker.update(t, raw, raw)
        assert tracker.level >= 3
        return [(e.time_s - T0) / 60.0 - 10 for e in events if e.level == 4]

    assert red_at([4, 3, 3, 4, 4, 3, 4]) == []  # flicker at the edge: orange stays
    assert red_at([4, 4, 4, 4]) == [2.0]  # confirmed by the next two minutes' forecasts
    # an engineer who wants the first forecast's red sets the duration to 0 at the site
    now = R.effective_config(R.RULES["overtopping"], ctx, {"escalate_duration_s": 0}, 1800.0)
    tracker = AlertTracker(now.min_duration_s, now.escalate_duration_s)
    assert [e.level for e in tracker.update(np.array([T0, T0 + 60]), np.array([3, 4]))] == [3, 4]
