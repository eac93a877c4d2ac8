"""Pond forecast: mass balance of the projection, committed runoff = curve-number runoff
(NEH-630 ch. 10 and 16), the correction by the observed rise, the band and upstream dams."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from analytics import forecast as F
from analytics.runoff import scs_runoff_mm
from analytics.storage import CheckDam

CATCH = F.Catchment(area_km2=0.5, curve_number=80.0, tc_h=0.4)


def dam(**over) -> CheckDam:
    kw = dict(storage_a=300.0, storage_b=2.4, spillway_crest_m=6.0, spillway_width_m=0.0,
              dam_crest_m=6.0, dam_crest_length_m=0.0)  # fmt: skip
    kw.update(over)
    return CheckDam(**kw)


def test_event_starts_after_six_dry_hours_and_a_small_tip_in_the_lull_does_not_join():
    # AH 703: a 6 h period with < 1.27 mm separates storms
    t = np.array([0, 600, 1200, 5 * 3600, 9 * 3600, 9 * 3600 + 60]) + 1e6
    r = np.array([5.0, 5.0, 5.0, 0.2, 4.0, 4.0])
    start, steps = F.event_rain_steps_mm(t, r, now_s=1e6 + 9 * 3600 + 120)
    assert steps.sum() == pytest.approx(8.0)  # only the second storm
    assert start == pytest.approx(1e6 + 9 * 3600 - 60, abs=60)
    # a tip of 2 mm in the lull (more than 1.27 mm) keeps one event
    r2 = r.copy()
    r2[3] = 2.0
    _, steps2 = F.event_rain_steps_mm(t, r2, now_s=1e6 + 9 * 3600 + 120)
    assert steps2.sum() == pytest.approx(25.0)


def test_no_rain_gives_an_empty_event():
    start, steps = F.event_rain_steps_mm(np.zeros(0), np.zeros(0), now_s=1000.0)
    assert steps.size == 0 and start == 1000.0


def test_committed_inflow_volume_equals_the_curve_number_runoff():
    steps = np.full(60, 1.0)  # 60 mm in an hour
    q = F.committed_inflow_m3_s(steps, 60.0, CATCH)
    runoff_mm = float(scs_runoff_mm(60.0, 80.0))
    assert_allclose(q.sum() * 60.0, runoff_mm * CATCH.area_km2 * 1000.0, rtol=1e-9)


def test_projection_closes_its_mass_balance_without_outlets():
    d = dam(dam_crest_m=20.0, spillway_crest_m=20.0)
    steps = np.full(60, 1.0)
    t = np.array([0.0, 3600.0])
    h = np.array([0.0, 0.0])  # nothing arrived yet: k stays ~1 only if the model agrees
    f = F.forecast_pond(d, t, h, 3600.0, catchment=CATCH, rain_start_s=0.0,
                        rain_steps_mm=steps, prior_volume_m3=1e12)  # fmt: skip
    assert f.inflow_factor == pytest.approx(1.0, rel=1e-6)
    expected = f.future_inflow_m3  # no outflow: the pond holds all of it
    assert float(d.storage_m3(f.peak_stage_m)) == pytest.approx(expected, rel=2e-3)


def test_observed_rise_corrects_the_modelled_inflow():
    d = dam(dam_crest_m=20.0, spillway_crest_m=20.0)
    steps = np.full(30, 1.0)
    q = F.committed_inflow_m3_s(steps, 60.0, CATCH)
    v_mod = q[:30].sum() * 60.0
    # the pond rose by twice what the model says arrived so far
    h_end = float(d.stage_m(2.0 * v_mod))
    f = F.forecast_pond(d, np.array([0.0, 1800.0]), np.array([0.0, h_end]), 1800.0,
                        catchment=CATCH, rain_start_s=0.0, rain_steps_mm=steps,
                        prior_volume_m3=1e-6)  # fmt: skip
    assert f.inflow_factor == pytest.approx(2.0, rel=1e-3)
    assert f.future_inflow_m3 == pytest.approx(2.0 * q[30:].sum() * 60.0, rel=1e-3)


def test_band_is_ordered_and_ample_storage_stays_below_the_crest():
    steps = np.full(60, 1.5)
    small = dam(dam_crest_m=4.0, spillway_crest_m=4.0)
    f = F.forecast_pond(small, np.array([0.0, 3600.0]), np.array([0.0, 2.5]), 3600.0,
                        catchment=CATCH, rain_start_s=0.0, rain_steps_mm=steps,
                        prior_volume_m3=1e12)  # fmt: skip
    assert f.time_to_crest_early_s <= f.time_to_crest_s <= f.time_to_crest_late_s
    assert math.isfinite(f.time_to_crest_s) and f.time_to_crest_s > 0
    big = dam(dam_crest_m=30.0, spillway_crest_m=30.0)
    g = F.forecast_pond(big, np.array([0.0, 3600.0]), np.array([0.0, 2.5]), 3600.0,
                        catchment=CATCH, rain_start_s=0.0, rain_steps_mm=steps)  # fmt: skip
    assert math.isinf(g.time_to_crest_s) and math.isinf(g.time_to_crest_early_s)
    assert g.peak_stage_m < 30.0


def test_a_spillway_delays_or_prevents_the_crest_and_warns_first():
    steps = np.full(60, 1.5)
    args = (np.array([0.0, 3600.0]), np.array([0.0, 3.0]), 3600.0)
    kw = dict(catchment=CATCH, rain_start_s=0.0, rain_steps_mm=steps, prior_volume_m3=1e12)
    closed = F.forecast_pond(dam(dam_crest_m=4.5, spillway_crest_m=4.5), *args, **kw)
    spill = dam(
        dam_crest_m=4.5, spillway_crest_m=3.5, spillway_width_m=8.0, spillway_coefficient=0.36
    )
    opened = F.forecast_pond(spill, *args, **kw)
    assert opened.time_to_warning_s < closed.time_to_crest_s
    assert opened.time_to_crest_s > closed.time_to_crest_s  # the spillway buys time (or saves it)
    assert opened.peak_stage_m < closed.peak_stage_m


def test_upstream_release_adds_to_the_future_inflow():
    d = dam(dam_crest_m=20.0, spillway_crest_m=20.0)
    args = (np.array([0.0, 600.0]), np.array([0.0, 0.0]), 600.0)
    alone = F.forecast_pond(d, *args, catchment=None)
    fed = F.forecast_pond(d, *args, catchment=None, upstream_inflow_m3_s=np.full(61, 2.0))
    assert alone.future_inflow_m3 == 0.0
    assert fed.future_inflow_m3 == pytest.approx(2.0 * 60 * 60, rel=0.02)
    assert fed.peak_stage_m > alone.peak_stage_m


def test_ongoing_rain_holds_the_lowest_of_the_recent_the_event_and_the_3_hour_rate():
    # a burst: 60 mm in the last 30 minutes of a 4-hour event -> the event's mean rate
    burst = np.concatenate([np.full(210, 0.1), np.full(30, 2.0)])
    more = F.ongoing_rain_steps_mm(burst, 60.0, 1800.0)
    assert more.size == 30
    assert_allclose(more, burst.sum() / burst.size)
    # a storm that opens with a burst: what the last 3 hours kept up (dry before)
    opening = np.full(20, 2.0)
    assert_allclose(F.ongoing_rain_steps_mm(opening, 60.0, 1800.0), np.full(30, 40.0 / 180))
    # a long tail: light rain after a burst -> the recent rate
    tail = np.concatenate([np.full(30, 2.0), np.full(120, 0.1)])
    assert_allclose(F.ongoing_rain_steps_mm(tail, 60.0, 900.0), np.full(15, 0.1))
    assert F.ongoing_rain_steps_mm(np.zeros(0), 60.0, 1800.0).size == 0
    assert F.ongoing_rain_steps_mm(tail, 60.0, 0.0).size == 0


def test_rain_going_on_brings_a_nearly_full_pond_over_sooner_than_the_committed_runoff():
    d = dam(dam_crest_m=6.0, spillway_crest_m=6.0)
    steps = np.concatenate([np.full(20, 2.0), np.full(200, 0.12)])  # burst, then a long tail
    t = np.array([0.0, 220 * 60.0])
    crest_s = float(d.storage_m3(6.0))
    h = np.array([0.0, float(d.stage_m(crest_s - 900.0))])  # 900 m3 left below the crest
    kw = dict(catchment=CATCH, rain_start_s=0.0, rain_steps_mm=steps)
    committed = F.forecast_pond(d, t, h, t[-1], **kw)
    more = F.ongoing_rain_steps_mm(steps, 60.0, 1800.0)
    going_on = F.forecast_pond(d, t, h, t[-1], continuing_rain_mm=more, **kw)
    assert going_on.future_inflow_m3 > committed.future_inflow_m3
    assert going_on.time_to_crest_s < committed.time_to_crest_s
    assert going_on.time_to_crest_s < 1800.0
    # the same pond with ample room stays below the crest even if the rain goes on
    roomy = F.forecast_pond(d, t, np.array([0.0, 2.0]), t[-1], continuing_rain_mm=more, **kw)
    assert math.isinf(roomy.time_to_crest_s)


def test_persistence_without_rain_holds_the_observed_inflow():
    d = dam(dam_crest_m=5.0, spillway_crest_m=5.0)
    t = np.arange(0, 901, 60.0)
    h = d.stage_m(np.linspace(1000.0, 1000.0 + 900.0 * 1.5, t.size))  # 1.5 m3/s in
    f = F.forecast_pond(d, t, h, 900.0, catchment=None)
    assert f.method == "persistence"
    assert f.future_inflow_m3 == pytest.approx(1.5 * 3600.0, rel=0.05)


@pytest.mark.parametrize("bad", [{"inflow_rel_error": 1.0}, {"inflow_rel_error": -0.1}])
def test_bad_arguments_raise(bad):
    with pytest.raises(ValueError, match="inflow_rel_error"):
        F.forecast_pond(dam(), [0.0], [1.0], 0.0, **bad)


def test_catchment_validates():
    with pytest.raises(ValueError, match="curve_number"):
        F.Catchment(1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="area_km2"):
        F.Catchment(-1.0, 80.0, 1.0)
