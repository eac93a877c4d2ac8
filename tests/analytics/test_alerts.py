"""Tests for analytics.alerts (rules and the episode state machine)."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from analytics import alerts as al
from analytics.rainfall import cma_rainstorm_level_number


def test_level_names():
    assert al.LEVEL_NAMES == ("none", "blue", "yellow", "orange", "red")
    assert al.level_name(al.ORANGE) == "orange"
    with pytest.raises(ValueError, match="level"):
        al.level_name(5)


def test_threshold_levels_directions_and_order():
    assert_array_equal(
        al.threshold_levels([0, 1, 2, 3, 4, np.nan], [1, 2, 3, 4]), [0, 1, 2, 3, 4, 0]
    )
    assert_array_equal(al.threshold_levels([0.5, 0.25, 0.0], [0.3, None, 0.1, 0.0], "below"),
                       [0, 1, 4])  # fmt: skip
    with pytest.raises(ValueError, match="non-decreasing"):
        al.threshold_levels([1.0], [3, 2, 1, 0])


def test_rainfall_rule_is_cma_by_default():
    # Hourly readings; 17 mm/h for 3 h then stop. 3 h acc hits 51 mm at hour 3 ->
    # orange by CMA (50 mm in 3 h).
    t = np.arange(1, 25) * 3600.0
    r = np.zeros(24)
    r[0:3] = 17.0
    lv = al.rainfall_alert_levels(t, r)
    acc3 = np.convolve(r, np.ones(3))[:24]
    acc6 = np.convolve(r, np.ones(6))[:24]
    acc12 = np.convolve(r, np.ones(12))[:24]
    assert_array_equal(lv, cma_rainstorm_level_number(acc3, acc6, acc12))
    assert lv[2] == al.ORANGE and lv[3] == al.YELLOW and lv[8] == al.BLUE and lv[14] == 0
    # Hysteresis lowers every depth: 49 mm in one hour lies in the 3, 6 and 12 h
    # windows; below every CMA depth, but with a 2 mm band it holds orange.
    t2 = np.array([3600.0])
    assert al.rainfall_alert_levels(t2, [49.0])[0] == 0
    assert al.rainfall_alert_levels(t2, [49.0], hysteresis_mm=2.0)[0] == al.ORANGE
    # Extra local rule: 30 mm in 1 h is orange.
    assert al.rainfall_alert_levels(t2, [30.0], threshold_orange=((3, 50), (1, 30)))[0] == 3
    with pytest.raises(ValueError, match="threshold_red"):
        al.rainfall_alert_levels(t2, [1.0], threshold_red=((0, 100),))


def test_stage_rule_freeboard():
    # Crest 10 m; blue 1 m below (9.0), yellow 0.5 (9.5), orange 0.2 (9.8), red at crest.
    lv = al.stage_alert_levels([8.99, 9.0, 9.5, 9.79, 9.8, 10.0, 10.3], 10.0)
    assert_array_equal(lv, [0, 1, 2, 2, 3, 4, 4])
    hold = al.stage_alert_levels([8.96], 10.0, hysteresis_m=0.05)
    assert hold[0] == 1


def test_rate_of_rise():
    t = np.arange(0, 7) * 600.0
    h = np.array([1.0, 1.0, 1.0, 1.1, 1.4, 1.9, 2.5])
    rate = al.rate_of_rise_m_h(t, h, window_s=1800.0)
    # At 30 min: (1.1 - 1.0) / 0.5 h = 0.2 m/h; at 60 min (2.5 - 1.1) / 0.5 = 2.8.
    assert np.isnan(rate[2])
    assert_allclose(rate[3:], [0.2, 0.8, 1.8, 2.8])
    assert_array_equal(al.rate_of_rise_levels(t, h)[3:], [1, 2, 3, 4])


def test_time_to_overtopping_exact_line():
    # Hand-worked: stage rising 0.6 m/h from 8 m; crest 10 m. At t = 1 h stage is
    # 8.6 m -> 1.4 m / 0.6 m/h = 2.333 h; noise-free so the interval collapses.
    t = np.arange(0, 61) * 60.0
    h = 8.0 + 0.6 * t / 3600.0
    f = al.time_to_overtopping_s(t, h, 10.0)
    assert_allclose(f["estimate_s"][-1], 1.4 / 0.6 * 3600.0, rtol=1e-9)
    assert_allclose(f["slope_m_s"][-1], 0.6 / 3600.0, rtol=1e-9)
    assert_allclose(f["lower_s"][-1], f["upper_s"][-1], rtol=1e-5)
    assert np.isnan(f["estimate_s"][2])  # fewer than min_points
    lv = al.overtopping_alert_levels(t, h, 10.0)
    assert lv[-1] == al.YELLOW  # 2.33 h <= 3 h
    assert al.overtopping_alert_levels(t, h, 8.5)[-1] == al.RED  # already above


def test_time_to_overtopping_noise_interval_brackets():
    rng = np.random.default_rng(7)
    t = np.arange(0, 121) * 60.0
    h = 5.0 + 0.5 * t / 3600.0 + rng.normal(0, 0.01, t.size)
    f = al.time_to_overtopping_s(t, h, 7.0)
    k = -1
    assert f["lower_s"][k] < f["estimate_s"][k] < f["upper_s"][k]
    truth = (7.0 - (5.0 + 0.5 * 2.0)) / 0.5 * 3600.0
    assert f["lower_s"][k] * 0.8 < truth < f["upper_s"][k] * 1.2
    falling = al.time_to_overtopping_s(t, 9.0 - 0.5 * t / 3600.0, 10.0)
    assert np.isinf(falling["estimate_s"][-1])


def test_cistern_rules():
    lv = al.cistern_overflow_levels([1.0, 1.75, 1.9, 1.97, 2.0], 2.0)
    assert_array_equal(lv, [0, 1, 2, 3, 4])
    low = al.cistern_low_storage_levels([30.0, 25.0, 15.0, 8.0, 4.0], 100.0)
    assert_array_equal(low, [1, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="capacity_m3"):
        al.cistern_low_storage_levels([1.0], 0.0)


# ------------------------------------------------------------------ state machine
def _naive(times, raw, hold, **kw):
    """Per-reading reference: the specification, one _step per reading."""
    tr = al.AlertTracker(**kw)
    ev, out = [], []
    for t, r, h in zip(times, raw, hold, strict=True):
        tr._step(float(t), int(r), int(max(h, r)), ev)
        out.append(tr.level)
    return np.array(out), ev


def test_episode_lifecycle_hand_worked():
    # 1-min readings. Raw: 0 0 2 2 3 3 1 1 1 1 1 0 0 0 0 0; min_duration 3 min.
    t = np.arange(16) * 60.0
    raw = np.array([0, 0, 2, 2, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    levels, events = al.track_alerts(t, raw, min_duration_s=180.0)
    kinds = [(e.kind, e.level, e.time_s) for e in events]
    # open at 2 min (yellow), escalate at 4 min (orange), de-escalate to blue
    # 3 min after the drop (6 -> 9 min), resolve 3 min after 0 starts (11 -> 14).
    assert kinds == [
        ("open", 2, 120.0),
        ("escalate", 3, 240.0),
        ("deescalate", 1, 540.0),
        ("resolve", 0, 840.0),
    ]
    assert all(e.episode_start_s == 120.0 for e in events)
    assert_array_equal(levels, [0, 0, 2, 2, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 0, 0])


def test_escalate_duration_uses_sustained_level():
    t = np.arange(8) * 60.0
    raw = np.array([0, 3, 2, 4, 2, 2, 0, 0])
    _, events = al.track_alerts(t, raw, min_duration_s=600.0, escalate_duration_s=120.0)
    # Raw > 0 from 1 min; after 2 min (at 3 min) open at the lowest level held: 2.
    assert [(e.kind, e.level, e.time_s) for e in events] == [("open", 2, 180.0)]


def test_noisy_signal_at_threshold_does_not_flap():
    rng = np.random.default_rng(0)
    t = np.arange(0, 6 * 3600, 30.0)
    stage = 9.5 + rng.normal(0, 0.02, t.size)  # hovers at the yellow trigger 9.5 m
    raw = al.stage_alert_levels(stage, 10.0)
    hold = al.stage_alert_levels(stage, 10.0, hysteresis_m=0.1)
    assert np.sum(np.diff(raw) != 0) > 100  # raw rule flaps constantly
    levels, events = al.track_alerts(t, raw, hold, min_duration_s=900.0)
    assert [e.kind for e in events] == ["open"]
    assert levels[-1] == al.YELLOW
    # Without a band the duration alone still suppresses flapping.
    _, events2 = al.track_alerts(t, raw, min_duration_s=900.0)
    assert len(events2) <= 2


_levels = st.lists(st.tuples(st.integers(1, 400), st.integers(0, 4), st.integers(0, 2)),
                   min_size=1, max_size=120)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(_levels, st.sampled_from([0.0, 60.0, 300.0]), st.sampled_from([0.0, 120.0, 900.0]))
def test_fast_tracker_matches_per_reading_spec(rows, esc, mind):
    t = np.cumsum([r[0] for r in rows]).astype(float)
    raw = np.array([r[1] for r in rows])
    hold = np.minimum(raw + np.array([r[2] for r in rows]), 4)
    kw = dict(min_duration_s=mind, escalate_duration_s=esc)
    exp_levels, exp_events = _naive(t, raw, hold, **kw)
    levels, events = al.track_alerts(t, raw, hold, **kw)
    assert events == exp_events
    assert_array_equal(levels, exp_levels)


@settings(max_examples=100, deadline=None)
@given(_levels, st.lists(st.integers(1, 119), max_size=5), st.sampled_from([0.0, 120.0]))
def test_incremental_equals_batch_and_persists(rows, cuts, esc):
    t = np.cumsum([r[0] for r in rows]).astype(float)
    raw = np.array([r[1] for r in rows])
    hold = np.minimum(raw + np.array([r[2] for r in rows]), 4)
    _, batch_events = al.track_alerts(t, raw, hold, min_duration_s=300.0, escalate_duration_s=esc)
    state = al.AlertTracker(min_duration_s=300.0, escalate_duration_s=esc).to_dict()
    events = []
    bounds = [0, *sorted({c for c in cuts if c < t.size}), t.size]
    for a, b in itertools.pairwise(bounds):
        tracker = al.AlertTracker.from_dict(json.loads(json.dumps(state)))  # JSON round trip
        events += tracker.update(t[a:b], raw[a:b], hold[a:b])
        state = tracker.to_dict()
    assert events == batch_events


def test_tracker_errors():
    tr = al.AlertTracker(min_duration_s=60.0)
    tr.update([0.0, 60.0], [1, 1])
    with pytest.raises(ValueError, match="after the last time"):
        tr.update([30.0], [0])
    with pytest.raises(ValueError, match="levels must be integers"):
        tr.update([120.0], [7])
    with pytest.raises(ValueError, match="lengths differ"):
        tr.update([120.0, 180.0], [0])
    with pytest.raises(ValueError, match="min_duration_s"):
        al.AlertTracker(min_duration_s=-1.0)
