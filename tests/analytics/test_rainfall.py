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
    # Wet at 0, 1 h, 8 h (7 h gap >= 6 h -> new storm), 13 h (5 h gap -> same storm).
    t = np.array([0, 1, 3, 8, 13], dtype=float) * 3600
    ids = rainfall.storm_event_ids(t, [1.0, 2.0, 0.0, 1.0, 1.0])
    assert_array_equal(ids, [0, 0, -1, 1, 1])
    assert_array_equal(rainfall.storm_event_ids(t, np.zeros(5)), -np.ones(5))


def test_storm_events_table_hand_worked():
    # Hand-worked storm on 10-min data: 2, 5, 10, 3 mm. Intensities 12, 30, 60,
    # 18 mm/h. I10 = 60 mm/h; I30 = max 30-min depth 18 mm -> 36 mm/h;
    # I60 = 20 mm/h. Brown & Foster (1987) unit energy
    # e = 0.29 (1 - 0.72 exp(-0.05 i)) MJ/ha/mm.
    t = np.arange(1, 9) * 600.0
    r = np.array([2.0, 5.0, 10.0, 3.0, 0, 0, 0, 0])
    ev = rainfall.storm_events(t, r, interval_s=600.0)
    e = 0.29 * (1 - 0.72 * np.exp(-0.05 * np.array([12.0, 30.0, 60.0, 18.0])))
    energy = float(np.sum(e * r[:4]))
    assert_allclose(energy, 4.9792, atol=1e-4)
    assert_allclose(ev["depth_mm"], [20.0])
    assert_allclose(ev["i10_mm_h"], [60.0])
    assert_allclose(ev["i30_mm_h"], [36.0])
    assert_allclose(ev["i60_mm_h"], [20.0])
    assert_allclose(ev["energy_mj_ha"], [energy])
    assert_allclose(ev["ei30_mj_mm_ha_h"], [energy * 36.0])
    assert_allclose(ev["start_s"], [0.0])
    assert_allclose(ev["duration_h"], [40 / 60])
    assert_allclose(rainfall.event_erosivity_ei30(t[:4], r[:4], interval_s=600.0), energy * 36)
    assert_allclose(rainfall.event_erosivity_ei30(t[:4], r[:4]), energy * 36)


def test_storm_events_two_storms_and_min_depth():
    t = np.arange(0, 48 * 60) * 60.0  # 48 h of 1-min data
    r = np.zeros(t.size)
    r[60:90] = 0.5  # 15 mm
    r[1500:1510] = 0.1  # 1 mm, 23 h later
    ev = rainfall.storm_events(t, r, interval_s=60.0)
    assert_allclose(ev["depth_mm"], [15.0, 1.0])
    assert_allclose(ev["i30_mm_h"], [30.0, 2.0])
    ev = rainfall.storm_events(t, r, interval_s=60.0, min_depth_mm=12.7)
    assert_allclose(ev["depth_mm"], [15.0])
    empty = rainfall.storm_events(t, np.zeros(t.size))
    assert empty["depth_mm"].size == 0


def test_unit_energy_methods():
    # Wischmeier & Smith (1978) metric: 0.119 + 0.0873 log10(i); i = 10 mm/h -> 0.2063;
    # capped at 0.283 above 76 mm/h.
    assert_allclose(rainfall.rainfall_unit_energy_mj_ha_mm(10.0, "wischmeier_smith"), 0.2063)
    assert_allclose(rainfall.rainfall_unit_energy_mj_ha_mm(100.0, "wischmeier_smith"), 0.283)
    # Brown & Foster tends to 0.29 at high intensity; 0.0812 at i = 0.
    assert_allclose(rainfall.rainfall_unit_energy_mj_ha_mm(0.0), 0.29 * 0.28)
    assert_allclose(rainfall.rainfall_unit_energy_mj_ha_mm(1e4, "mcgregor"), 0.29)
    with pytest.raises(ValueError, match="method"):
        rainfall.rainfall_unit_energy_mj_ha_mm(1.0, "nope")


def test_peak_intensity():
    t = np.arange(1, 7) * 600.0
    assert rainfall.peak_intensity_mm_h(t, [0, 1, 4, 2, 0, 0], 1800.0) == pytest.approx(14.0)
    with pytest.raises(ValueError, match="duration_s"):
        rainfall.peak_intensity_mm_h(t, [0, 1, 4, 2, 0, 0], 300.0)


# China Meteorological Administration rainstorm warning signals (CMA Order 16,
# 2007): blue 12 h >= 50 mm, yellow 6 h >= 50 mm, orange 3 h >= 50 mm,
# red 3 h >= 100 mm; "reached" means >=.
@pytest.mark.parametrize(
    ("a3", "a6", "a12", "expected"),
    [
        (0.0, 0.0, 0.0, None),
        (0.0, 0.0, 49.9, None),
        (0.0, 0.0, 50.0, "blue"),
        (0.0, 0.0, 50.1, "blue"),
        (0.0, 49.9, 49.9, None),
        (0.0, 49.9, 50.0, "blue"),
        (0.0, 50.0, 50.0, "yellow"),
        (0.0, 50.1, 60.0, "yellow"),
        (49.9, 49.9, 49.9, None),
        (49.9, 50.0, 50.0, "yellow"),
        (50.0, 50.0, 50.0, "orange"),
        (50.1, 50.1, 50.1, "orange"),
        (99.9, 99.9, 99.9, "orange"),
        (100.0, 100.0, 100.0, "red"),
        (100.1, 100.1, 100.1, "red"),
        (100.0, 0.0, 0.0, "red"),  # inconsistent inputs: each rule on its own
        (np.nan, np.nan, 50.0, "blue"),
    ],
)
def test_cma_thresholds(a3, a6, a12, expected):
    assert rainfall.cma_rainstorm_level(a3, a6, a12) == expected


def test_cma_vectorised_shape():
    a3 = np.array([[10.0, 50.0], [100.0, 0.0]])
    out = rainfall.cma_rainstorm_level(a3, a3, np.array([[50.0, 50.0], [100.0, 49.99]]))
    assert out.dtype == object and out.shape == (2, 2)
    assert out.tolist() == [["blue", "orange"], ["red", None]]
    assert rainfall.cma_rainstorm_level_number([99.9, 100.0], 0.0, 0.0).tolist() == [3, 4]
    with pytest.raises(ValueError, match="broadcast"):
        rainfall.cma_rainstorm_level([1.0, 2.0], [1.0, 2.0, 3.0], 0.0)
