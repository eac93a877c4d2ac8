"""Tests for analytics.quality (QARTOD flags on irregular time stamps)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from analytics import quality as qc


def test_gross_range():
    # QARTOD gross range: outside sensor span -> 4, outside operator span -> 3.
    f = qc.gross_range_test([-1.0, 0.5, 9.5, 10.5, np.nan, 5.0], (0, 10), (1, 9))
    assert_array_equal(f, [4, 3, 3, 4, 9, 1])
    with pytest.raises(ValueError, match="suspect_span"):
        qc.gross_range_test([1.0], (0, 10), (-1, 9))
    with pytest.raises(ValueError, match="fail_span"):
        qc.gross_range_test([1.0], (10, 0))


def test_spike():
    # Hand-worked: |v_i - (v_{i-1} + v_{i+1})/2| = 0, 5, 0.5 ... for 1, 1, 6, 1.5, 1, 1
    v = [1.0, 1.0, 6.0, 1.5, 1.0, np.nan, 1.0]
    f = qc.spike_test(v, suspect_threshold=0.4, fail_threshold=3.0)
    # ref: i1: |1 - 3.5| = 2.5 -> 3; i2: |6 - 1.25| = 4.75 -> 4; i3: |1.5 - 3.5| = 2 -> 3;
    # i4: neighbour NaN -> 2; i5 NaN -> 9; ends -> 2.
    assert_array_equal(f, [2, 3, 4, 3, 2, 9, 2])


def test_rate_of_change_irregular_times():
    t = np.array([0.0, 60.0, 75.0, 375.0, 400.0, 460.0])
    v = np.array([1.0, 1.1, 1.6, 1.7, np.nan, 2.5])
    f = qc.rate_of_change_test(t, v, threshold_per_s=0.01)
    # rates: 0.1/60 ok; 0.5/15 = 0.033 -> 3; 0.1/300 ok; NaN -> 9;
    # 0.8/(460 - 375) = 0.0094 (vs previous *valid* reading) -> 1.
    assert_array_equal(f, [2, 1, 3, 1, 9, 1])
    with pytest.raises(ValueError, match="times"):
        qc.rate_of_change_test([0.0, 10.0, 5.0], [1.0, 1.0, 1.0], 0.1)


def _flat_brute(t, v, tol, dur):
    out = []
    for i in range(t.size):
        before = np.flatnonzero(t <= t[i] - dur)
        if before.size == 0:
            out.append(None)
            continue
        w = v[before[-1] : i + 1]
        w = w[~np.isnan(w)]
        out.append(bool(np.all(np.abs(w - v[i]) < tol)))
    return out


def test_flat_line_hand_worked():
    t = np.arange(0, 10) * 600.0  # 10-min data
    v = np.array([1.0, 2.0, 2.0, 2.0, 2.0, 2.001, 2.0, 2.0, 3.0, 3.0])
    f = qc.flat_line_test(t, v, tolerance=0.005, suspect_duration_s=1800.0, fail_duration_s=3000.0)
    # At 30 min (i=3) the window [0, 30 min] contains 1.0 -> pass; at i=4 [10, 40] flat -> 3;
    # at i=6 [10 min, 60 min] flat over 50 min -> 4; i=8 jumps -> 1.
    assert_array_equal(f, [2, 2, 2, 1, 3, 3, 4, 4, 1, 1])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5000), st.sampled_from([0.0, 0.001, 0.5, 1.0, np.nan])),
        min_size=1,
        max_size=80,
    ),
    st.sampled_from([30.0, 300.0, 1200.0]),
)
def test_flat_line_matches_brute_force(pairs, dur):
    pairs = sorted(pairs, key=lambda p: p[0])
    t = np.array([p[0] for p in pairs], dtype=float)
    v = np.array([p[1] for p in pairs])
    f = qc.flat_line_test(t, v, 0.002, dur, dur * 2)
    exp_s = _flat_brute(t, v, 0.002, dur)
    exp_f = _flat_brute(t, v, 0.002, dur * 2)
    for i in range(t.size):
        if np.isnan(v[i]):
            assert f[i] == 9
        elif exp_f[i]:
            assert f[i] == 4
        elif exp_s[i]:
            assert f[i] == 3
        elif exp_s[i] is None:
            assert f[i] == 2
        else:
            assert f[i] == 1


def test_gaps():
    # QARTOD timing/gap test (U.S. IOOS 2021, Water Level manual v2.1, test 1):
    # late data fail (4); there is no suspect level. The first reading has no
    # predecessor: not evaluated (2).
    t = np.array([0.0, 60.0, 120.0, 900.0, 960.0, 5000.0])
    assert_array_equal(qc.gap_test(t, 300.0), [2, 1, 1, 4, 1, 4])
    start, end = qc.find_gaps(t, 300.0)
    assert_array_equal(start, [120.0, 960.0])
    assert_array_equal(end, [900.0, 5000.0])
    assert_array_equal(qc.gap_test(t, 300.0, values=[1, np.nan, 1, 1, 1, 1]), [2, 9, 1, 4, 1, 4])
    # A gap of exactly max_gap_s is not a gap.
    assert_array_equal(qc.gap_test([0.0, 300.0], 300.0), [2, 1])
    assert qc.gap_test([], 300.0).size == 0
    with pytest.raises(ValueError, match="max_gap_s"):
        qc.gap_test(t, 0.0)


def test_flat_line_tolerance_is_strict_as_in_the_manual():
    # U.S. IOOS (2021) Water Level manual v2.1, test 8: flat when
    # |V_n - V_n-i| < EPS. A difference equal to EPS is not flat, and EPS = 0
    # never flags (as ioos_qc with tolerance=0).
    t = np.arange(8) * 600.0
    stuck = np.full(8, 2.0)
    assert_array_equal(qc.flat_line_test(t, stuck, 0.0, 1800.0, 3000.0), [2, 2, 2, 1, 1, 1, 1, 1])
    assert_array_equal(qc.flat_line_test(t, stuck, 1e-6, 1800.0, 3000.0), [2, 2, 2, 3, 3, 4, 4, 4])
    step = 2.0 + 0.25 * (np.arange(8) % 2)  # alternates by exactly 0.25 (binary exact)
    assert_array_equal(qc.flat_line_test(t, step, 0.25, 1800.0, 3000.0), [2, 2, 2, 1, 1, 1, 1, 1])
    assert qc.flat_line_test(t, step, 0.2501, 1800.0, 3000.0)[-1] == 4
    with pytest.raises(ValueError, match="tolerance"):
        qc.flat_line_test(t, stuck, -1.0, 1800.0, 3000.0)


def test_aggregate_precedence():
    a = qc.aggregate_flags([1, 2, 2, 3, 1, 9], [2, 2, 1, 4, 3, 1])
    assert_array_equal(a, [1, 2, 1, 4, 3, 9])
    with pytest.raises(ValueError, match="QARTOD"):
        qc.aggregate_flags([5])
    with pytest.raises(ValueError, match="lengths differ"):
        qc.aggregate_flags([1, 1], [1])


def test_qc_flags_all_tests():
    t = np.arange(0, 200) * 60.0
    v = np.sin(t / 3000.0)
    v[50] = 5.0  # spike + out of range
    v[100:200] = v[100]  # stuck sensor
    v[20] = np.nan
    out = qc.qc_flags(
        t,
        v,
        fail_span=(-2, 2),
        spike_suspect=0.2,
        spike_fail=1.0,
        rate_threshold_per_s=0.01,
        flat_tolerance=1e-6,
        flat_suspect_s=1800,
        flat_fail_s=3600,
        max_gap_s=180,
    )
    assert set(out) == {"gross_range", "spike", "rate_of_change", "flat_line", "gap", "aggregate"}
    agg = out["aggregate"]
    assert agg[50] == 4 and agg[20] == 9 and agg[199] == 4 and agg[10] == 1
    assert agg.dtype == np.uint8
