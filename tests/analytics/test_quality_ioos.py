"""Cross-check of analytics.quality against ioos_qc (IOOS's QARTOD implementation).

Both follow the QARTOD manuals (U.S. IOOS 2021, Water Level manual v2.1; flag
values from the QC Flags manual v1.2). On shared synthetic series the flags
must agree wherever both follow the manual; every intended difference is
pinned here with its reason (see the module docstring of analytics.quality).
ioos_qc is a development dependency only: analytics never imports it.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ioos_qc import qartod
from numpy.testing import assert_array_equal

from analytics import quality as qc

STEP_S = 600.0  # 10-min logging


def _stage_day(seed: int = 7):
    """One day of 10-min stage [m] with a spike, a stuck run, NaNs and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(145) * STEP_S
    v = 1.5 + 0.4 * np.sin(t / 20000.0) + rng.normal(0.0, 0.01, t.size)
    v[30] += 0.8  # spike
    v[31] -= 0.25  # smaller spike next to it
    v[60:95] = v[60]  # stuck sensor for almost 6 h
    v[70] = np.nan  # a NaN inside the stuck run
    v[100] = np.nan
    v[120] = 12.0  # out of range
    v[121] = -2.0
    return t, v


def _dt64(t_s):
    return (np.asarray(t_s) * 1000).astype("datetime64[ms]")


def _theirs(flags) -> np.ndarray:
    return np.ma.filled(np.asarray(flags, dtype=np.uint8), 9)


def test_gross_range_agrees_everywhere():
    _t, v = _stage_day()
    ours = qc.gross_range_test(v, (0.0, 10.0), (1.2, 3.0))
    theirs = _theirs(qartod.gross_range_test(v, fail_span=(0.0, 10.0), suspect_span=(1.2, 3.0)))
    assert_array_equal(ours, theirs)
    assert {1, 3, 4, 9} <= set(ours.tolist())


def test_spike_agrees_everywhere():
    # Manual test 6: |V_n - (V_n-1 + V_n+1)/2| against two thresholds; ends and
    # readings next to a missing value cannot be judged (2).
    _t, v = _stage_day()
    ours = qc.spike_test(v, 0.05, 0.5)
    theirs = _theirs(qartod.spike_test(v, suspect_threshold=0.05, fail_threshold=0.5))
    assert_array_equal(ours, theirs)
    assert {1, 2, 3, 4, 9} <= set(ours.tolist())


def test_rate_of_change_agrees_except_first_and_after_missing():
    # Manual test 7: |dV/dt| above a rate is suspect.
    t, v = _stage_day()
    rate = 1e-4  # m/s (0.06 m per 10 min)
    ours = qc.rate_of_change_test(t, v, rate)
    theirs = _theirs(qartod.rate_of_change_test(v, _dt64(t), rate))
    after_nan = np.flatnonzero(np.isnan(v[:-1])) + 1
    same = np.ones(t.size, dtype=bool)
    same[0] = False
    same[after_nan] = False
    assert_array_equal(ours[same], theirs[same])
    assert {1, 3, 9} <= set(ours[same].tolist())
    # Intended differences: the first reading has no previous one (ours 2,
    # ioos_qc 1); after a NaN we compare with the previous *valid* reading over
    # the real time between them, where ioos_qc cannot form the difference and
    # passes the reading.
    assert ours[0] == 2 and theirs[0] == 1
    assert (theirs[after_nan] == 1).all()
    tt = np.array([0.0, 600.0, 1200.0, 1800.0])
    vv = np.array([1.0, 1.0, np.nan, 1.5])  # 0.5 m in 20 min = 4.2e-4 m/s
    assert qc.rate_of_change_test(tt, vv, rate)[3] == 3
    assert _theirs(qartod.rate_of_change_test(vv, _dt64(tt), rate))[3] == 1


def test_flat_line_agrees_after_the_first_window():
    # Manual test 8: |V_n - V_n-i| < EPS over the suspect / fail durations.
    # On regular data our time window [t_n - d, t_n] holds the same count + 1
    # readings as ioos_qc's; NaNs inside the window are ignored by both.
    t, v = _stage_day()
    eps, sus, fail = 1e-6, 3600, 3 * 3600
    ours = qc.flat_line_test(t, v, eps, sus, fail)
    theirs = _theirs(qartod.flat_line_test(v, _dt64(t), sus, fail, eps))
    first = int(sus / STEP_S)  # readings before the first full suspect window
    assert_array_equal(ours[first:], theirs[first:])
    assert {1, 3, 4, 9} <= set(ours[first:].tolist())
    # Intended difference: ours says "not evaluated" (2) before the record
    # covers the suspect duration; ioos_qc passes those readings (1).
    assert (ours[:first] == 2).all() and (theirs[:first] == 1).all()
    # Tolerance 0: |V_n - V_n-i| < 0 never holds, in both.
    assert not np.isin(qc.flat_line_test(t, v, 0.0, sus, fail), (3, 4)).any()
    assert not np.isin(_theirs(qartod.flat_line_test(v, _dt64(t), sus, fail, 0.0)), (3, 4)).any()


def test_flat_line_compares_with_the_current_value_not_the_window_range():
    # Intended difference: the manual compares each V_n-i with V_n; ioos_qc
    # tests the window's range (max - min). A sensor dithering by +-0.6 EPS
    # around a stuck value is flat for the manual (every |V_n - V_n-i| is
    # 0.6 EPS < EPS) but its range is 1.2 EPS, so ioos_qc passes it.
    t = np.arange(12) * STEP_S
    eps = 0.01
    v = np.full(12, 2.0)
    v[0::3] += 0.6 * eps
    v[1::3] -= 0.6 * eps
    ours = qc.flat_line_test(t, v, eps, 1800, 3600)
    theirs = _theirs(qartod.flat_line_test(v, _dt64(t), 1800, 3600, eps))
    # current readings at 2.0 (index 2, 5, 8, 11) see neighbours within 0.6 EPS
    assert (ours[[8, 11]] == 4).all()
    assert (theirs[[8, 11]] == 1).all()


def test_gap_agrees_except_the_first_reading():
    # Manual test 1 (timing/gap): a reading after more than the expected
    # interval fails (4). ioos_qc's time_gap_test takes the span in hours.
    t = np.array([0, 600, 1200, 4800, 5400, 6000, 12000, 12600], dtype=float)
    ours = qc.gap_test(t, 1800.0)
    theirs = _theirs(qartod.time_gap_test(_dt64(t), fail_span=0.5))
    assert_array_equal(ours[1:], theirs[1:])
    assert_array_equal(ours, [2, 1, 1, 4, 1, 1, 4, 1])
    # Intended difference: the first reading has no predecessor; ioos_qc copies
    # the second reading's flag onto it.
    t2 = np.array([0.0, 4000.0, 4600.0])
    assert qc.gap_test(t2, 1800.0)[0] == 2
    assert _theirs(qartod.time_gap_test(_dt64(t2), fail_span=0.5))[0] == 4


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([1, 2, 3, 4, 9]), min_size=6, max_size=6),
        min_size=1,
        max_size=5,
    )
)
def test_aggregate_matches_qartod_compare_except_missing_first(vectors):
    # qartod_compare ranks 9 < 2 < 1 < 3 < 4; we rank 2 < 1 < 3 < 4 < 9 (a
    # reading without a value is reported missing whatever another test said).
    arrays = [np.array(v, dtype=np.uint8) for v in vectors]
    ours = qc.aggregate_flags(*arrays)
    theirs = _theirs(qartod.qartod_compare(arrays))
    stacked = np.stack(arrays)
    missing = (stacked == 9).any(axis=0)
    assert_array_equal(ours[~missing], theirs[~missing])
    assert (ours[missing] == 9).all()
    # where 9 meets another flag, ioos_qc reports the worst of the others
    order = [2, 1, 3, 4]
    for j in np.flatnonzero(missing):
        rest = [int(f) for f in stacked[:, j] if f != 9]
        if rest:
            assert theirs[j] == max(rest, key=order.index)


def test_aggregate_hand_worked_against_qartod_compare():
    # [fail from the gap test, missing value] -> ours 9, ioos_qc 4;
    # [not evaluated, missing] -> ours 9, ioos_qc 2; [pass, suspect] -> 3 in both.
    a = np.array([4, 2, 1], dtype=np.uint8)
    b = np.array([9, 9, 3], dtype=np.uint8)
    assert_array_equal(qc.aggregate_flags(a, b), [9, 9, 3])
    assert_array_equal(_theirs(qartod.qartod_compare([a, b])), [4, 2, 3])
