"""Tests for analytics.rainfall."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from analytics import rainfall


def test_tips_to_depth_and_intensity():
    assert_allclose(rainfall.tips_to_depth_mm([0, 1, 5]), [0.0, 0.2, 1.0])
    assert_allclose(rainfall.tips_to_depth_mm(3, mm_per_tip=0.5), 1.5)
    # 0.2 mm tips 36 s apart -> 0.2 mm / 0.01 h = 20 mm/h (hand-worked).
    i = rainfall.tip_intensity_mm_h([0.0, 36.0, 108.0])
    assert np.isnan(i[0])
    assert_allclose(i[1:], [20.0, 10.0])
    with pytest.raises(ValueError, match="tip_count"):
        rainfall.tips_to_depth_mm([-1])
    with pytest.raises(ValueError, match="tip_times"):
        rainfall.tip_intensity_mm_h([0.0, 36.0, 30.0])


def test_tips_to_series():
    ends, depth = rainfall.tips_to_series_mm([10.0, 20.0, 60.0, 61.0, 250.0], 0.0, 180.0, 60.0)
    assert_allclose(ends, [60.0, 120.0, 180.0])
    assert_allclose(depth, [0.6, 0.2, 0.0])  # tip at 250 s lies outside (0, 180]


def test_rolling_accumulation_window_is_half_open():
    # Hand-worked: values at 0, 1800, 3600, 5400 s; a 1 h window at 3600 s
    # covers (0, 3600] -> 2 + 3 = 5 (the reading at t = 0 falls out).
    t = np.array([0.0, 1800.0, 3600.0, 5400.0])
    acc = rainfall.rolling_accumulation_mm(t, [1.0, 2.0, 3.0, 4.0], 3600.0)
    assert_allclose(acc, [1.0, 3.0, 5.0, 7.0])


def test_rolling_accumulation_datetime64_and_duplicates():
    t = np.array(
        ["2024-07-01T00:00", "2024-07-01T00:30", "2024-07-01T00:30", "2024-07-01T02:00"],
        dtype="datetime64[ns]",
    )
    acc = rainfall.rolling_accumulations_mm(t, [1.0, 2.0, 0.5, 4.0], windows_h=(1, 3))
    assert_allclose(acc["acc_1h_mm"], [1.0, 3.5, 3.5, 4.0])
    assert_allclose(acc["acc_3h_mm"], [1.0, 3.5, 3.5, 7.5])


def test_rolling_accumulation_nan_counts_as_zero():
    acc = rainfall.rolling_accumulation_mm([0.0, 60.0, 120.0], [1.0, np.nan, 2.0], 3600.0)
    assert_allclose(acc, [1.0, 1.0, 3.0])


def test_rolling_accumulation_errors():
    with pytest.raises(ValueError, match="times must be sorted"):
        rainfall.rolling_accumulation_mm([0.0, 10.0, 5.0], [1.0, 1.0, 1.0], 60.0)
    with pytest.raises(ValueError, match="lengths differ"):
        rainfall.rolling_accumulation_mm([0.0, 10.0], [1.0, 1.0, 1.0], 60.0)
    with pytest.raises(ValueError, match="rain_mm"):
        rainfall.rolling_accumulation_mm([0.0, 10.0], [1.0, -1.0], 60.0)
    with pytest.raises(ValueError, match="window_s"):
        rainfall.rolling_accumulation_mm([0.0, 10.0], [1.0, 1.0], 0.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20000), st.floats(0, 30, allow_nan=False)),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([60.0, 600.0, 3600.0, 7200.0]),
)
def test_rolling_accumulation_matches_brute_force(pairs, window):
    pairs = sorted(pairs)
    t = np.array([p[0] for p in pairs], dtype=float)
    r = np.array([p[1] for p in pairs])
    expected = np.array([r[(t > ti - window) & (t <= ti)].sum() for ti in t])
    assert_allclose(rainfall.rolling_accumulation_mm(t, r, window), expected, atol=1e-9)


def test_storm_event_ids_min_dry_time():
    # Wet at 0, 1 h, 8 h (7 h gap: a 6-h period without rain -> new storm) and
    # 13 h (5 h gap: no 6-h period fits between 8 h and 13 h -> same storm).
    t = np.array([0, 1, 3, 8, 13], dtype=float) * 3600
    r = [1.0, 2.0, 0.0, 1.0, 1.0]
    assert_array_equal(rainfall.storm_event_ids(t, r), [0, 0, -1, 1, 1])
    assert_array_equal(rainfall.storm_event_ids(t, r, break_max_mm=1e-9), [0, 0, -1, 1, 1])
    # AH 703: 1.0 mm at 4 h leaves (1 h, 7 h] with 1.0 mm < 1.27 mm, still a break;
    # 1.27 mm there is not (a break holds *less than* 1.27 mm) and joins the storms.
    t2 = np.array([0, 1, 4, 8], dtype=float) * 3600
    assert_array_equal(rainfall.storm_event_ids(t2, [1, 2, 1.0, 1]), [0, 0, 0, 1])
    assert_array_equal(rainfall.storm_event_ids(t2, [1, 2, 1.27, 1]), [0, 0, 0, 0])
    # The older rule (any rain ends a break) merges them.
    assert_array_equal(
        rainfall.storm_event_ids(t2, [1, 2, 1.0, 1], break_max_mm=1e-9), [0, 0, 0, 0]
    )
    assert_array_equal(rainfall.storm_event_ids(t, np.zeros(5)), -np.ones(5))
    with pytest.raises(ValueError, match="break_max_mm"):
        rainfall.storm_event_ids(t, r, break_max_mm=0.0)


def _storm_ids_brute(t, r, dry_s, break_mm):
    """AH 703 storm separation, pair by pair (reference for the vectorised rule).

    Consecutive wet readings u < v split when some wet reading p starts a break,
    (t_p, t_p + dry_s] holding < break_mm, that ends at or after u and before v.
    """
    wet = np.flatnonzero(r > 0)
    ids = np.full(t.size, -1)
    current = 0
    for k, v in enumerate(wet):
        if k:
            u = wet[k - 1]
            for p in wet:
                ends = t[p] + dry_s
                lull = r[(t > t[p]) & (t <= ends)].sum()
                if t[u] <= ends < t[v] and lull < break_mm:
                    current += 1
                    break
        ids[v] = current
    return ids


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from([0.0, 0.2, 0.2, 0.4, 1.0, 5.0])),
        min_size=1,
        max_size=60,
    )
)
def test_storm_event_ids_match_reading_by_reading_rule(pairs):
    # Time stamps on a 30-min grid (duplicates allowed) over 20 h.
    pairs = sorted(pairs, key=lambda p: p[0])
    t = np.array([p[0] for p in pairs], dtype=float) * 1800.0
    r = np.array([p[1] for p in pairs])
    got = rainfall.storm_event_ids(t, r)
    assert_array_equal(got, _storm_ids_brute(t, r, 6 * 3600.0, 1.27))


def test_ah703_tip_in_the_lull_does_not_merge_storms():
    # Agriculture Handbook 703 (Renard et al. 1997, ch. 2): storms are separated
    # by 6 h with less than 1.27 mm (0.05 in). Storm A: 10-min data, 4, 8, 6 mm
    # ending 00:30; one 0.2 mm tip at 04:00; storm B: 2, 3, 1 mm from 08:10.
    # Under the old rule (no rain for 6 h) the tip bridges A and B (3.5 h and
    # 4 h gaps) and EI30 is computed on the merged storm.
    step = 600.0
    t = np.arange(0, 12 * 3600 + step, step)
    r = np.zeros(t.size)
    r[1:4] = [4.0, 8.0, 6.0]  # 00:10-00:30
    r[24] = 0.2  # 04:00
    r[49:52] = [2.0, 3.0, 1.0]  # 08:10-08:30
    merged = rainfall.storm_events(t, r, interval_s=step, break_max_mm=1e-9)
    assert merged["depth_mm"].size == 1
    ev = rainfall.storm_events(t, r, interval_s=step)
    # The 6 h after A's last reading hold only the tip (0.2 mm < 1.27 mm) and end
    # before B: a break. The tip is inside it and stays with A (a drizzling tail).
    assert_allclose(ev["depth_mm"], [18.2, 6.0])
    assert_array_equal(ev["first_index"], [1, 49])
    assert_array_equal(ev["last_index"], [24, 51])
    # Each storm's EI30 is that of its own readings alone (hand-checkable with
    # event_erosivity_ei30). Merged, B's energy was multiplied by A's I30 (36 mm/h,
    # 18 mm in 30 min) instead of its own (12 mm/h, 6 mm in 30 min): the merged
    # EI30 exceeds the sum of the two by E_B * (36 - 12).
    ei_a = rainfall.event_erosivity_ei30(t[1:25], r[1:25], interval_s=step)
    ei_b = rainfall.event_erosivity_ei30(t[49:52], r[49:52], interval_s=step)
    assert_allclose(ev["ei30_mj_mm_ha_h"], [ei_a, ei_b])
    assert_allclose(ev["i30_mm_h"], [36.0, 12.0])
    inflation = merged["ei30_mj_mm_ha_h"][0] - ev["ei30_mj_mm_ha_h"].sum()
    assert_allclose(inflation, ev["energy_mj_ha"][1] * (36.0 - 12.0))
    # The merged storm overstates the erosivity by twice storm B's own EI30.
    assert_allclose(inflation / ev["ei30_mj_mm_ha_h"][1], 2.0, rtol=1e-12)
    # A tip 7 h after A (outside A's break) and 1 h before B joins B instead.
    r2 = r.copy()
    r2[24], r2[43] = 0.0, 0.2  # 07:10
    ev2 = rainfall.storm_events(t, r2, interval_s=step)
    assert_allclose(ev2["depth_mm"], [18.0, 6.2])
    # RUSLE's 12.7 mm rule then keeps A only.
    assert_allclose(rainfall.storm_events(t, r2, min_depth_mm=12.7)["depth_mm"], [18.0])


def test_storm_intensity_windows_stay_inside_their_storm():
    # Storm A: 10 mm at 00:00 and a 0.5 mm tip at 05:50, inside A's break
    # (00:00, 06:00] (0.5 mm < 1.27 mm). Storm B: 2 mm at 06:10, just after the
    # break, 20 min after the tip. B's I60 window (05:10, 06:10] must not count
    # A's tip: I60_B = 2 mm/h, not 2.5.
    t = np.array([0.0, 5 * 3600 + 3000.0, 6 * 3600 + 600.0])
    r = np.array([10.0, 0.5, 2.0])
    ev = rainfall.storm_events(t, r)
    assert_allclose(ev["depth_mm"], [10.5, 2.0])
    assert_allclose(ev["i60_mm_h"], [10.0, 2.0])
    assert_allclose(ev["i10_mm_h"], [60.0, 12.0])
