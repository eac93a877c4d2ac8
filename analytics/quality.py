"""Quality control: per-reading flags in the IOOS QARTOD scheme (gross range,
spike, rate of change, flat line, gaps) for irregularly time-stamped series.

Flags: 1 pass, 2 not evaluated, 3 suspect, 4 fail, 9 missing (NaN value).

The tests follow the QARTOD manuals (U.S. IOOS 2021, *Manual for Real-Time
Quality Control of Water Level Data*, version 2.1; U.S. IOOS 2018, *Manual
for Real-Time Quality Control of Stream Flow Observations*, version 1.0; flag
values from U.S. IOOS 2020, *Manual for Real-Time Oceanographic Data Quality
Control Flags*, version 1.2). ``tests/analytics/test_quality_ioos.py``
cross-checks them against ``ioos_qc`` (a development dependency only) on
shared series and pins every intended difference, which are:

* windows and rates use real time stamps: the rate of change compares a
  reading with the previous *valid* one over the actual time between them,
  and the flat-line window is a duration, not a count of points derived from
  the median spacing;
* a test that cannot judge a reading says 2 (not evaluated) where
  ``ioos_qc`` says 1 (the first reading of the rate of change, readings
  before the first full flat-line window) or copies the next reading's flag
  (the first reading of the gap test);
* the flat line compares every reading in the window with the current one,
  ``|V_n - V_n-i| < EPS`` as the manuals write it, where ``ioos_qc`` takes
  the window's range ``max - min < tolerance``;
* the aggregate ranks 9 (missing) first where ``ioos_qc``'s
  ``qartod_compare`` ranks it last (see :func:`aggregate_flags`).

Why not use ``ioos_qc`` itself? ``analytics`` may only need numpy and
scipy, ``ioos_qc`` brings pandas, xarray and more that the ingest service
and the firmware simulator do not otherwise need, and its windows count
points while our loggers send irregular time stamps, late batches and gaps.
The tests here are vectorised (O(n log n), no Python loop over readings) and
return ``uint8`` flag arrays.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array, check_same_length, times_to_seconds

__all__ = [
    "FAIL",
    "MISSING",
    "NOT_EVALUATED",
    "PASS",
    "SUSPECT",
    "aggregate_flags",
    "find_gaps",
    "flat_line_test",
    "gap_test",
    "gross_range_test",
    "qc_flags",
    "rate_of_change_test",
    "spike_test",
]

PASS = np.uint8(1)
NOT_EVALUATED = np.uint8(2)
SUSPECT = np.uint8(3)
FAIL = np.uint8(4)
MISSING = np.uint8(9)


def _values(values) -> np.ndarray:
    return as_float_array(values, "values", ndim=1)


def _span(span, name):
    if span is None:
        return None
    lo, hi = (float(x) for x in span)
    if not lo < hi:
        raise ValueError(f"{name} must be (low, high) with low < high, got {span!r}")
    return lo, hi


def gross_range_test(values, fail_span, suspect_span=None) -> np.ndarray:
    """QARTOD gross range test.

    Parameters
    ----------
    values : array_like
        Readings (any unit).
    fail_span : (float, float)
        Sensor or physical limits; a reading outside them fails (4).
    suspect_span : (float, float), optional
        Operator limits inside ``fail_span``; outside them is suspect (3).

    Returns
    -------
    numpy.ndarray of uint8
        Flags; 9 for NaN.

    References
    ----------
    U.S. IOOS (2021) Manual for Real-Time Quality Control of Water Level
    Data, version 2.1, test 4 (gross range); see also
    https://ioos.github.io/ioos_qc/.
    """
    v = _values(values)
    lo, hi = _span(fail_span, "fail_span")
    flags = np.full(v.shape, PASS, dtype=np.uint8)
    sus = _span(suspect_span, "suspect_span")
    if sus is not None:
        if sus[0] < lo or sus[1] > hi:
            raise ValueError(
                f"suspect_span {suspect_span!r} must lie within fail_span {fail_span!r}"
            )
        flags[(v < sus[0]) | (v > sus[1])] = SUSPECT
    flags[(v < lo) | (v > hi)] = FAIL
    flags[np.isnan(v)] = MISSING
    return flags


def spike_test(values, suspect_threshold: float, fail_threshold: float) -> np.ndarray:
    """QARTOD spike test: departure from the mean of the two neighbours.

    Parameters
    ----------
    values : array_like
        Readings in time order.
    suspect_threshold, fail_threshold : float
        Limits on ``|v_i - (v_{i-1} + v_{i+1}) / 2|`` (same unit as values),
        ``0 < suspect <= fail``.

    Returns
    -------
    numpy.ndarray of uint8
        Flags; the first and last readings and readings with a missing
        neighbour are not evaluated (2); NaN readings are 9.

    Notes
    -----
    Neighbours are the adjacent readings regardless of their spacing; use it
    on series whose spacing is roughly uniform, and the rate-of-change test
    for irregular series.
    """
    v = _values(values)
    if not 0 < suspect_threshold <= fail_threshold:
        raise ValueError(
            f"need 0 < suspect_threshold <= fail_threshold, got {suspect_threshold!r}, "
            f"{fail_threshold!r}"
        )
    flags = np.full(v.shape, NOT_EVALUATED, dtype=np.uint8)
    if v.size >= 3:
        ref = np.abs(v[1:-1] - 0.5 * (v[:-2] + v[2:]))
        inner = np.where(
            np.isnan(ref),
            NOT_EVALUATED,
            np.where(ref > fail_threshold, FAIL, np.where(ref > suspect_threshold, SUSPECT, PASS)),
        )
        flags[1:-1] = inner
    flags[np.isnan(v)] = MISSING
    return flags


def _previous_valid_index(valid: np.ndarray) -> np.ndarray:
    idx = np.where(valid, np.arange(valid.size), -1)
    last = np.maximum.accumulate(idx) if idx.size else idx
    prev = np.empty_like(last)
    if prev.size:
        prev[0] = -1
        prev[1:] = last[:-1]
    return prev


def rate_of_change_test(times, values, threshold_per_s: float) -> np.ndarray:
    """QARTOD rate-of-change test on irregular time stamps.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    values : array_like
        Readings.
    threshold_per_s : float
        Largest plausible ``|dv/dt|`` [value unit per second], > 0.

    Returns
    -------
    numpy.ndarray of uint8
        3 (suspect) where the change from the previous *valid* reading,
        divided by the actual time between them, exceeds the threshold; 1
        otherwise; 2 for the first valid reading or a zero time step;
        9 for NaN.
    """
    t = times_to_seconds(times)
    v = _values(values)
    check_same_length(times=t, values=v)
    if not threshold_per_s > 0:
        raise ValueError(f"threshold_per_s must be > 0, got {threshold_per_s!r}")
    valid = ~np.isnan(v)
    prev = _previous_valid_index(valid)
    has_prev = prev >= 0
    p = np.where(has_prev, prev, 0)
    dt = t - t[p] if t.size else t
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.abs(v - v[p]) / dt if t.size else v
    flags = np.where(rate > threshold_per_s, SUSPECT, PASS).astype(np.uint8)
    flags[~has_prev | (dt <= 0)] = NOT_EVALUATED
    flags[~valid] = MISSING
    return flags


def _range_extrema(v: np.ndarray, start: np.ndarray):
    """Max and min of ``v[start[i]:i+1]`` for every i (NaN ignored), O(n log n)."""
    n = v.size
    i = np.arange(n)
    length = i - start + 1
    level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    vmax = np.full(n, np.nan)
    vmin = np.full(n, np.nan)
    tmax = np.where(np.isnan(v), -np.inf, v)
    tmin = np.where(np.isnan(v), np.inf, v)
    k = 0
    while True:
        sel = np.flatnonzero(level == k)
        if sel.size:
            a = start[sel]
            b = sel - (1 << k) + 1
            vmax[sel] = np.maximum(tmax[a], tmax[b])
            vmin[sel] = np.minimum(tmin[a], tmin[b])
        width = 1 << k
        if 2 * width > n or not np.any(level > k):
            break
        tmax = np.maximum(tmax[:-width], tmax[width:])
        tmin = np.minimum(tmin[:-width], tmin[width:])
        k += 1
    return vmax, vmin


def flat_line_test(
    times,
    values,
    tolerance: float,
    suspect_duration_s: float,
    fail_duration_s: float,
) -> np.ndarray:
    """QARTOD flat-line (stuck sensor) test with time-based windows.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    values : array_like
        Readings.
    tolerance : float
        EPS of the manuals (value unit), >= 0: readings that differ from the
        current one by *less than* this count as the same value; typically
        the sensor resolution or a little less. 0 disables the test (no
        difference is below 0), as in the manuals and ``ioos_qc``.
    suspect_duration_s, fail_duration_s : float
        The reading is suspect (3) or fails (4) when every valid reading
        ``V_{n-i}`` in ``[t_n - duration, t_n]`` has
        ``|V_n - V_{n-i}| < tolerance``, ``0 < suspect <= fail``.

    Returns
    -------
    numpy.ndarray of uint8
        Flags; 2 while the record is shorter than ``suspect_duration_s``;
        9 for NaN.

    Notes
    -----
    The window starts at the last reading at or before ``t_i - duration``,
    so it always spans the full duration. A series of one repeated value
    after a data gap still fails once the duration is covered. Window
    extrema come from a sparse table, O(n log n).

    References
    ----------
    U.S. IOOS (2021) Manual for Real-Time Quality Control of Water Level
    Data, version 2.1, test 8 (flat line): fail when
    ``|V_n - V_{n-i}| < EPS`` for every i up to the fail count.
    """
    t = times_to_seconds(times)
    v = _values(values)
    check_same_length(times=t, values=v)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    if not 0 < suspect_duration_s <= fail_duration_s:
        raise ValueError(
            f"need 0 < suspect_duration_s <= fail_duration_s, got {suspect_duration_s!r}, "
            f"{fail_duration_s!r}"
        )
    flags = np.full(v.shape, NOT_EVALUATED, dtype=np.uint8)
    for duration, flag in ((suspect_duration_s, SUSPECT), (fail_duration_s, FAIL)):
        start = np.searchsorted(t, t - duration, side="right") - 1
        covered = start >= 0
        start = np.maximum(start, 0)
        vmax, vmin = _range_extrema(v, start)
        flat = covered & (vmax - v < tolerance) & (v - vmin < tolerance)
        if flag == SUSPECT:
            flags[covered] = PASS
        flags[flat] = flag
    flags[np.isnan(v)] = MISSING
    return flags


def find_gaps(times, max_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Data gaps: spans between consecutive readings longer than ``max_gap_s``.

    Returns
    -------
    (gap_start_s, gap_end_s) : tuple of numpy.ndarray
        Time of the reading before and after each gap [s].
    """
    t = times_to_seconds(times)
    if not max_gap_s > 0:
        raise ValueError(f"max_gap_s must be > 0, got {max_gap_s!r}")
    k = np.flatnonzero(np.diff(t) > max_gap_s)
    return t[k], t[k + 1]


def gap_test(times, max_gap_s: float, values=None) -> np.ndarray:
    """Flag the first reading after a gap longer than ``max_gap_s`` as fail (4).

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    max_gap_s : float
        Longest expected spacing between readings [s] (e.g. 2.5 logging
        intervals), > 0.
    values : array_like, optional
        If given, NaN readings are flagged 9.

    Returns
    -------
    numpy.ndarray of uint8
        4 for a reading more than ``max_gap_s`` after the previous one, 1
        otherwise, 2 for the first reading (no predecessor to measure the
        gap from), 9 for NaN values. Use :func:`find_gaps` for the gap spans themselves (for
        "logger offline" alerts).

    Notes
    -----
    The manuals' timing/gap test fails (4) data that did not arrive within
    the expected interval and has no suspect level; ``ioos_qc``'s
    ``time_gap_test`` does the same between consecutive readings. Unlike it,
    the first reading is not evaluated instead of inheriting the second
    one's flag.

    References
    ----------
    U.S. IOOS (2021) Manual for Real-Time Quality Control of Water Level
    Data, version 2.1, test 1 (timing/gap).
    """
    t = times_to_seconds(times)
    if not max_gap_s > 0:
        raise ValueError(f"max_gap_s must be > 0, got {max_gap_s!r}")
    flags = np.full(t.shape, PASS, dtype=np.uint8)
    if t.size:
        flags[0] = NOT_EVALUATED
    if t.size > 1:
        flags[1:][np.diff(t) > max_gap_s] = FAIL
    if values is not None:
        v = _values(values)
        check_same_length(times=t, values=v)
        flags[np.isnan(v)] = MISSING
    return flags


# precedence: missing > fail > suspect > pass > not evaluated
_RANK = np.zeros(256, dtype=np.uint8)
_RANK[[2, 1, 3, 4, 9]] = [0, 1, 2, 3, 4]
_UNRANK = np.array([2, 1, 3, 4, 9], dtype=np.uint8)


def aggregate_flags(*flag_arrays) -> np.ndarray:
    """Combine per-test flags into one flag per reading.

    The worst evaluated result wins, with precedence
    9 (missing) > 4 > 3 > 1 > 2: a reading is "not evaluated" only if no test
    evaluated it, and one passing test outranks tests that could not run.

    **Missing first (deliberate).** ``ioos_qc``'s ``qartod_compare`` ranks
    9 lowest (9 < 2 < 1 < 3 < 4), so there any other flag overrides
    "missing". Here 9 means the reading has no value (NaN, or a logger's
    own "missing" flag); every test flags a NaN value 9, so 9 meets another
    flag only where a time-based test or the logger judged a reading that
    has no value. A value that does not exist can neither pass nor fail, and
    consumers must be told that there is nothing to use rather than that a
    value failed. Without 9 the two orderings agree exactly (tested).

    Parameters
    ----------
    *flag_arrays : array_like of int
        Flags of equal length, values in {1, 2, 3, 4, 9}.

    Returns
    -------
    numpy.ndarray of uint8
    """
    if not flag_arrays:
        raise ValueError("aggregate_flags needs at least one flag array")
    arrays = [np.asarray(f, dtype=np.uint8) for f in flag_arrays]
    check_same_length(**{f"flags_{i}": a for i, a in enumerate(arrays)})
    stacked = np.stack(arrays)
    if not np.all(np.isin(stacked, (1, 2, 3, 4, 9))):
        raise ValueError("flags must be QARTOD values 1, 2, 3, 4 or 9")
    return _UNRANK[_RANK[stacked].max(axis=0)]


def qc_flags(
    times,
    values,
    *,
    fail_span=None,
    suspect_span=None,
    spike_suspect: float | None = None,
    spike_fail: float | None = None,
    rate_threshold_per_s: float | None = None,
    flat_tolerance: float | None = None,
    flat_suspect_s: float = 3600.0,
    flat_fail_s: float = 4 * 3600.0,
    max_gap_s: float | None = None,
) -> dict[str, np.ndarray]:
    """Run the configured QARTOD tests and aggregate them.

    Each test runs only if its parameters are given (the flat line needs
    ``flat_tolerance > 0`` to flag anything). Returns a dict with one flag
    array per test run (``gross_range``, ``spike``, ``rate_of_change``,
    ``flat_line``, ``gap``) and ``aggregate`` (see :func:`aggregate_flags`);
    NaN values are 9 everywhere.
    """
    t = times_to_seconds(times)
    v = _values(values)
    check_same_length(times=t, values=v)
    out: dict[str, np.ndarray] = {}
    if fail_span is not None:
        out["gross_range"] = gross_range_test(v, fail_span, suspect_span)
    if spike_suspect is not None:
        out["spike"] = spike_test(v, spike_suspect, spike_fail or spike_suspect)
    if rate_threshold_per_s is not None:
        out["rate_of_change"] = rate_of_change_test(t, v, rate_threshold_per_s)
    if flat_tolerance is not None:
        out["flat_line"] = flat_line_test(t, v, flat_tolerance, flat_suspect_s, flat_fail_s)
    if max_gap_s is not None:
        out["gap"] = gap_test(t, max_gap_s, v)
    missing = np.where(np.isnan(v), MISSING, NOT_EVALUATED).astype(np.uint8)
    out["aggregate"] = aggregate_flags(missing, *out.values())
    return out
