"""Rainfall: tipping-bucket tips, rolling accumulations, storm events, intensities,
erosivity (EI30) and the China Meteorological Administration rainstorm signal.

Time convention (all of ``analytics``)
--------------------------------------
Time stamps are either ``numpy.datetime64`` arrays (any unit) or float
seconds (any origin, e.g. Unix epoch seconds). They are converted to float
seconds internally and must be sorted (non-decreasing); unsorted times raise
``ValueError``. A rain value ``rain_mm[i]`` is the depth that fell in the
interval *ending* at ``times[i]`` (a logger's per-interval total, or one tip
of a tipping bucket), so an accumulation over a window ``w`` at ``t`` sums the
values with time stamps in ``(t - w, t]``.
"""

from __future__ import annotations

import numpy as np

from ._validation import (
    as_float_array,
    check_nonnegative,
    check_positive,
    check_same_length,
    times_to_seconds,
)

__all__ = [
    "CMA_LEVELS",
    "STORM_BREAK_MAX_MM",
    "cma_rainstorm_level",
    "cma_rainstorm_level_number",
    "event_erosivity_ei30",
    "peak_intensity_mm_h",
    "rainfall_unit_energy_mj_ha_mm",
    "rolling_accumulation_mm",
    "rolling_accumulations_mm",
    "storm_event_ids",
    "storm_events",
    "tip_intensity_mm_h",
    "tips_to_depth_mm",
    "tips_to_series_mm",
]

#: Names of the CMA rainstorm signal levels, index = level number (0 = no signal).
CMA_LEVELS: tuple[str | None, ...] = (None, "blue", "yellow", "orange", "red")

_HOUR_S = 3600.0


def tips_to_depth_mm(tip_count, mm_per_tip: float = 0.2) -> np.ndarray:
    """Rain depth from tipping-bucket tip counts.

    Parameters
    ----------
    tip_count : array_like
        Number of tips in each interval [-], >= 0.
    mm_per_tip : float
        Bucket resolution [mm per tip], > 0 (0.1, 0.2 and 0.5 mm are usual).

    Returns
    -------
    numpy.ndarray
        Depth [mm] = ``tip_count * mm_per_tip``.

    Notes
    -----
    Tipping buckets under-catch at high intensity (water lost while the bucket
    tips); a dynamic calibration ``depth = a * n^b`` can be applied downstream.
    This function applies the static resolution only.

    References
    ----------
    WMO (2018) Guide to Instruments and Methods of Observation, WMO-No. 8,
    Vol. I, ch. 6 (measurement of precipitation).
    """
    n = as_float_array(tip_count, "tip_count")
    check_nonnegative(n, "tip_count")
    check_positive(np.asarray(mm_per_tip, dtype=float), "mm_per_tip")
    return n * float(mm_per_tip)


def tip_intensity_mm_h(tip_times, mm_per_tip: float = 0.2) -> np.ndarray:
    """Rain intensity between successive tips (inter-tip interval method).

    Parameters
    ----------
    tip_times : array_like of datetime64 or float seconds
        Time of each tip, sorted and strictly increasing.
    mm_per_tip : float
        Bucket resolution [mm per tip].

    Returns
    -------
    numpy.ndarray
        Intensity [mm/h] for the interval ending at each tip,
        ``mm_per_tip / (t_i - t_{i-1}) * 3600``; the first element is NaN
        because its interval is unknown.

    References
    ----------
    Habib, E., Krajewski, W. F. and Kruger, A. (2001) Sampling errors of
    tipping-bucket rain gauge measurements. J. Hydrol. Eng. 6(2), 159-166.
    """
    t = times_to_seconds(tip_times, "tip_times", strict=True)
    check_positive(np.asarray(mm_per_tip, dtype=float), "mm_per_tip")
    out = np.full(t.shape, np.nan)
    out[1:] = float(mm_per_tip) / np.diff(t) * _HOUR_S
    return out


def tips_to_series_mm(tip_times, start, stop, step_s: float, mm_per_tip: float = 0.2):
    """Bin tip times into a regular series of interval depths.

    Parameters
    ----------
    tip_times : array_like of datetime64 or float seconds
        Sorted tip times.
    start, stop : datetime64 or float seconds
        Series span; bins are ``(start + k*step, start + (k+1)*step]``.
    step_s : float
        Bin width [s].
    mm_per_tip : float
        Bucket resolution [mm per tip].

    Returns
    -------
    bin_end_s : numpy.ndarray
        End time of each bin [s], same origin as the converted inputs.
    rain_mm : numpy.ndarray
        Depth in each bin [mm]. Tips outside ``(start, stop]`` are ignored.
    """
    t = times_to_seconds(tip_times, "tip_times")
    t0, t1 = times_to_seconds(np.array([start, stop]), "start/stop", strict=True)
    check_positive(np.asarray(step_s, dtype=float), "step_s")
    n_bins = int(np.ceil((t1 - t0) / step_s - 1e-9))
    edges = t0 + step_s * np.arange(n_bins + 1)
    counts = np.diff(np.searchsorted(t, edges, side="right"))
    return edges[1:], counts * float(mm_per_tip)


def _rain_inputs(times, rain_mm):
    t = times_to_seconds(times)
    r = as_float_array(rain_mm, "rain_mm", ndim=1)
    check_same_length(times=t, rain_mm=r)
    check_nonnegative(r, "rain_mm")
    return t, r


def _end_index(t: np.ndarray) -> np.ndarray:
    # index one past the last reading with the same time stamp
    if t.size < 2 or np.all(t[1:] > t[:-1]):
        return np.arange(1, t.size + 1)
    return np.searchsorted(t, t, side="right")


def _window_sums(
    t: np.ndarray, cum: np.ndarray, window_s: float, end: np.ndarray | None = None
) -> np.ndarray:
    # cum[k] = sum of r[:k]; the window (t_i - w, t_i] covers indices
    # [searchsorted(t, t_i - w, 'right'), searchsorted(t, t_i, 'right')).
    start = np.searchsorted(t, t - window_s, side="right")
    if end is None:
        end = _end_index(t)
    out = cum[end] - cum[start]
    np.maximum(out, 0.0, out=out)  # remove -1e-16 from cancellation
    return out


def rolling_accumulation_mm(times, rain_mm, window_s: float) -> np.ndarray:
    """Rain accumulated over a trailing time window at each time stamp.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps (irregular spacing allowed, duplicates allowed).
    rain_mm : array_like
        Depth in the interval ending at each time stamp [mm], >= 0.
        NaN (missing) counts as 0; flag missing data with
        :mod:`analytics.quality`.
    window_s : float
        Window length [s], > 0.

    Returns
    -------
    numpy.ndarray
        ``acc[i] = sum(rain_mm[j] for t_i - window_s < t_j <= t_i)`` [mm].
        Readings sharing a time stamp all get the total of that stamp.

    Notes
    -----
    Computed with one cumulative sum and two ``searchsorted`` calls,
    O(n log n), no Python loop; round-off is bounded by the machine epsilon
    times the running total (1e-13 mm for a year of rain).
    """
    t, r = _rain_inputs(times, rain_mm)
    window_s = float(window_s)
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    cum = np.concatenate(([0.0], np.cumsum(np.nan_to_num(r, nan=0.0))))
    return _window_sums(t, cum, window_s)


def rolling_accumulations_mm(times, rain_mm, windows_h=(1, 3, 6, 12, 24)) -> dict[str, np.ndarray]:
    """Rolling accumulations over several windows (default 1/3/6/12/24 h).

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    rain_mm : array_like
        Depth in the interval ending at each time stamp [mm].
    windows_h : sequence of float
        Window lengths [h].

    Returns
    -------
    dict
        ``{"acc_1h_mm": ..., "acc_3h_mm": ..., ...}``, keys formatted with
        ``f"acc_{w:g}h_mm"``; values as in :func:`rolling_accumulation_mm`.
    """
    t, r = _rain_inputs(times, rain_mm)
    cum = np.concatenate(([0.0], np.cumsum(np.nan_to_num(r, nan=0.0))))
    end = _end_index(t)
    out = {}
    for w in windows_h:
        w = float(w)
        if not w > 0:
            raise ValueError(f"windows_h must be > 0, got {w!r}")
        out[f"acc_{w:g}h_mm"] = _window_sums(t, cum, w * _HOUR_S, end)
    return out


def peak_intensity_mm_h(times, rain_mm, duration_s: float) -> float:
    """Maximum mean intensity over any window of the given duration (e.g. I30).

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    rain_mm : array_like
        Depth in the interval ending at each time stamp [mm].
    duration_s : float
        Window length [s]: 600 for I10, 1800 for I30, 3600 for I60.

    Returns
    -------
    float
        ``max_t acc(t - d, t] / d`` [mm/h]; 0 for an empty series.

    Notes
    -----
    Windows end at a time stamp. For tip series this finds the true maximum;
    for fixed-interval data the resolution is the logging interval (a 30-min
    window on 10-min data, as in Wischmeier and Smith 1978). A window shorter
    than the logging interval is meaningless and raises ``ValueError``
    when it is detected (regular data only).
    """
    t, r = _rain_inputs(times, rain_mm)
    if t.size == 0:
        return 0.0
    if t.size > 1:
        step = np.median(np.diff(t))
        if duration_s < step - 1e-9:
            raise ValueError(
                f"duration_s={duration_s!r} is shorter than the logging interval {step!r} s"
            )
    acc = rolling_accumulation_mm(t, r, duration_s)
    return float(acc.max() / duration_s * _HOUR_S)


#: Largest depth in a storm break [mm]: AH 703 separates storms by 6 h with
#: less than 0.05 in (1.27 mm) of rain.
STORM_BREAK_MAX_MM = 1.27


def _storm_starts(
    t: np.ndarray, r: np.ndarray, wet: np.ndarray, min_dry_s: float, break_max_mm: float
) -> np.ndarray:
    """For each wet reading, whether it starts a new storm (see storm_event_ids)."""
    wi = np.flatnonzero(wet)
    tw = t[wi]
    cum = np.concatenate(([0.0], np.cumsum(r)))
    # rain in the break window (t_p, t_p + D] after every wet reading p
    after = np.searchsorted(t, tw, side="right")
    until = np.searchsorted(t, tw + min_dry_s, side="right")
    # round-off of the difference of two running totals (<= 1e-12 mm a year)
    slack = 1e-12 * max(1.0, float(cum[-1]))
    starts_break = (cum[until] - cum[after]) < break_max_mm - slack
    count = np.concatenate(([0], np.cumsum(starts_break)))
    # consecutive wet readings u < v are split when a break starting at a wet
    # reading p ends at or after u and before v: t_u - D <= t_p < t_v - D
    lo = np.searchsorted(tw, tw[:-1] - min_dry_s, side="left")
    hi = np.searchsorted(tw, tw[1:] - min_dry_s, side="left")
    starts = np.empty(wi.size, dtype=bool)
    if wi.size:
        starts[0] = True
        starts[1:] = count[hi] > count[lo]
    return starts


def storm_event_ids(
    times,
    rain_mm,
    min_dry_s: float = 6 * _HOUR_S,
    wet_threshold_mm: float = 0.0,
    break_max_mm: float = STORM_BREAK_MAX_MM,
) -> np.ndarray:
    """Label each reading with a storm-event number, -1 when dry.

    A reading is wet when ``rain_mm > wet_threshold_mm``. A *break* is the
    ``min_dry_s`` after a wet reading at ``t_p``, ``(t_p, t_p + min_dry_s]``,
    when it holds less than ``break_max_mm``. Consecutive wet readings
    ``u < v`` belong to different storms when a break ends at or after
    ``u`` and before ``v``. With the defaults this is the rule of
    Agriculture Handbook 703: storms are separated by a 6-h period with less
    than 1.27 mm (0.05 in) of rain, so a single 0.2 mm tip in a lull does not
    merge two storms.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    rain_mm : array_like
        Depth in the interval ending at each time stamp [mm]. NaN counts as 0.
    min_dry_s : float
        Length of the storm break [s], > 0; 6 h as in RUSLE.
    wet_threshold_mm : float
        Depth at or below which a reading counts as dry [mm].
    break_max_mm : float
        A break holds less than this depth [mm], > 0; 1.27 mm (0.05 in) as
        in AH 703 (1.3 mm in AH 537's metric text). A tiny value (e.g.
        1e-9) gives the older rule "``min_dry_s`` without any rain".

    Returns
    -------
    numpy.ndarray of int64
        Event number 0, 1, ... for wet readings, -1 for dry readings.

    Notes
    -----
    Rain inside a break (less than 1.27 mm in all) stays with the storm
    before it (a drizzling tail), and light rain that is not inside any break
    joins the storm after it; no rain is dropped. Breaks need not be free of
    rain, so two storms can be closer than ``min_dry_s`` (a tip just before
    the break ends). Breaks start at wet readings (a break may not reuse the
    dry time before a reading that a previous break already used).
    O(n log n): cumulative sums and ``searchsorted``, no Python loop.

    References
    ----------
    Renard, K. G. et al. (1997) Predicting soil erosion by water: a guide to
    conservation planning with RUSLE. USDA Agriculture Handbook 703, ch. 2
    (storm erosivity: 6-h periods with less than 0.05 in separate storms).
    Wischmeier, W. H. and Smith, D. D. (1978) USDA Agriculture Handbook 537
    (same rule, "less than 1.3 mm in 6 h").
    """
    t, r = _rain_inputs(times, rain_mm)
    if not min_dry_s > 0:
        raise ValueError(f"min_dry_s must be > 0, got {min_dry_s!r}")
    if not break_max_mm > 0:
        raise ValueError(f"break_max_mm must be > 0, got {break_max_mm!r}")
    r = np.nan_to_num(r, nan=0.0)
    wet = r > wet_threshold_mm
    ids = np.full(t.shape, -1, dtype=np.int64)
    wi = np.flatnonzero(wet)
    if wi.size == 0:
        return ids
    starts = _storm_starts(t, r, wet, float(min_dry_s), float(break_max_mm))
    ids[wi] = np.cumsum(starts) - 1
    return ids


def rainfall_unit_energy_mj_ha_mm(intensity_mm_h, method: str = "brown_foster") -> np.ndarray:
    """Kinetic energy of rain per unit depth as a function of intensity.

    Parameters
    ----------
    intensity_mm_h : array_like
        Rain intensity [mm/h], >= 0.
    method : {"brown_foster", "mcgregor", "wischmeier_smith"}
        ``"brown_foster"`` (RUSLE, Renard et al. 1997):
        ``e = 0.29 (1 - 0.72 exp(-0.05 i))``;
        ``"mcgregor"`` (RUSLE2, McGregor et al. 1995):
        ``e = 0.29 (1 - 0.72 exp(-0.082 i))``;
        ``"wischmeier_smith"`` (USLE, AH 537, metric):
        ``e = 0.119 + 0.0873 log10(i)`` for ``i <= 76`` mm/h, 0.283 above,
        and 0 for ``i <= 0.05`` mm/h (where the log form turns negative).

    Returns
    -------
    numpy.ndarray
        Unit energy [MJ ha^-1 mm^-1].

    References
    ----------
    Brown, L. C. and Foster, G. R. (1987) Storm erosivity using idealized
    intensity distributions. Trans. ASAE 30(2), 379-386.
    McGregor, K. C. et al. (1995) Erosivity index values for northern
    Mississippi. Trans. ASAE 38(4), 1039-1047.
    Wischmeier, W. H. and Smith, D. D. (1978) Predicting rainfall erosion
    losses. USDA Agriculture Handbook 537.
    """
    i = as_float_array(intensity_mm_h, "intensity_mm_h")
    check_nonnegative(i, "intensity_mm_h")
    if method == "brown_foster":
        return 0.29 * (1.0 - 0.72 * np.exp(-0.05 * i))
    if method == "mcgregor":
        return 0.29 * (1.0 - 0.72 * np.exp(-0.082 * i))
    if method == "wischmeier_smith":
        with np.errstate(divide="ignore"):
            e = 0.119 + 0.0873 * np.log10(i)
        e = np.where(i > 76.0, 0.283, e)
        return np.where(e > 0, e, 0.0)
    raise ValueError(
        f"method must be 'brown_foster', 'mcgregor' or 'wischmeier_smith', got {method!r}"
    )


def _intervals_s(t: np.ndarray, interval_s: float | None) -> np.ndarray:
    if interval_s is not None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        return np.full(t.shape, float(interval_s))
    if t.size < 2:
        raise ValueError("interval_s is required for a series of fewer than 2 readings")
    dt = np.empty_like(t)
    dt[1:] = np.diff(t)
    dt[0] = dt[1]
    if np.any(dt <= 0):
        raise ValueError("times must be strictly increasing to derive intervals; pass interval_s")
    return dt


def event_erosivity_ei30(
    times,
    rain_mm,
    interval_s: float | None = None,
    method: str = "brown_foster",
) -> float:
    """Storm erosivity EI30 of one storm.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps of the storm's readings.
    rain_mm : array_like
        Depth in the interval ending at each time stamp [mm].
    interval_s : float, optional
        Logging interval [s] for fixed-interval data. If omitted, the
        interval of each reading is the time since the previous one
        (breakpoint or tip data), the first reading taking the second's.
    method : str
        Unit-energy relation, see :func:`rainfall_unit_energy_mj_ha_mm`.

    Returns
    -------
    float
        EI30 [MJ mm ha^-1 h^-1].

    Notes
    -----
    ``E = sum_k e(i_k) * d_k`` with ``i_k = d_k / dt_k`` and
    ``EI30 = E * I30`` where I30 is the maximum 30-min intensity
    (:func:`peak_intensity_mm_h`). RUSLE counts only storms of at least
    12.7 mm (or with 6.35 mm in 15 min); that selection is left to the caller.

    References
    ----------
    Wischmeier, W. H. and Smith, D. D. (1978) USDA Agriculture Handbook 537.
    Renard, K. G. et al. (1997) USDA Agriculture Handbook 703, ch. 2.
    """
    t, r = _rain_inputs(times, rain_mm)
    if t.size == 0:
        return 0.0
    r = np.nan_to_num(r, nan=0.0)
    dt = _intervals_s(t, interval_s)
    energy = float(np.sum(rainfall_unit_energy_mj_ha_mm(r / dt * _HOUR_S, method) * r))
    i30 = peak_intensity_mm_h(t, r, 1800.0)
    return energy * i30


def storm_events(
    times,
    rain_mm,
    min_dry_s: float = 6 * _HOUR_S,
    interval_s: float | None = None,
    min_depth_mm: float = 0.0,
    method: str = "brown_foster",
    break_max_mm: float = STORM_BREAK_MAX_MM,
) -> dict[str, np.ndarray]:
    """Separate storms and tabulate totals, peak intensities and erosivity.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    rain_mm : array_like
        Depth in the interval ending at each time stamp [mm].
    min_dry_s : float
        Length of the storm break [s] (see :func:`storm_event_ids`),
        > 1 h (a break shorter than the I60 window is no storm break).
    interval_s : float, optional
        Logging interval [s] for fixed-interval data (see
        :func:`event_erosivity_ei30`).
    min_depth_mm : float
        Storms with a smaller total are dropped [mm].
    method : str
        Unit-energy relation for EI30.
    break_max_mm : float
        A break holds less than this depth [mm]; 1.27 mm as in AH 703 (see
        :func:`storm_event_ids`).

    Returns
    -------
    dict of numpy.ndarray, one element per storm
        ``start_s`` (time of the first wet reading minus its interval, or the
        first wet time stamp for tip data), ``end_s`` (last wet time stamp),
        ``depth_mm``, ``duration_h``, ``i10_mm_h``, ``i30_mm_h``,
        ``i60_mm_h``, ``energy_mj_ha``, ``ei30_mj_mm_ha_h``,
        ``first_index`` and ``last_index`` (into the input arrays).

    Notes
    -----
    Intensity windows are clipped at the storm's first reading, so the
    I10/I30/I60 and EI30 of a storm never include rain of the previous
    storm, even when a lull tip brings the two closer than an hour.
    """
    t, r = _rain_inputs(times, rain_mm)
    if not min_dry_s > _HOUR_S:
        raise ValueError(f"min_dry_s must be > 3600 s, got {min_dry_s!r}")
    r = np.nan_to_num(r, nan=0.0)
    ids = storm_event_ids(t, r, min_dry_s, break_max_mm=break_max_mm)
    keys = [
        "start_s",
        "end_s",
        "depth_mm",
        "duration_h",
        "i10_mm_h",
        "i30_mm_h",
        "i60_mm_h",
        "energy_mj_ha",
        "ei30_mj_mm_ha_h",
        "first_index",
        "last_index",
    ]
    wi = np.flatnonzero(ids >= 0)
    if wi.size == 0:
        return {k: np.array([], dtype=np.int64 if k.endswith("index") else float) for k in keys}
    starts = wi[np.r_[True, np.diff(ids[wi]) > 0]]
    lasts = wi[np.r_[np.diff(ids[wi]) > 0, True]]
    if interval_s is not None and not interval_s > 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
    cum = np.concatenate(([0.0], np.cumsum(r)))
    seg = np.empty(2 * starts.size, dtype=np.int64)
    seg[0::2] = starts
    seg[1::2] = lasts + 1
    depth = cum[lasts + 1] - cum[starts]
    # first index of the storm each reading belongs to (readings outside storms
    # are not reduced below): windows start no earlier than their storm
    storm_of = np.maximum(np.searchsorted(starts, np.arange(t.size), side="right") - 1, 0)
    first = starts[storm_of]
    end = _end_index(t)
    peaks = {}
    for key, d in (("i10_mm_h", 600.0), ("i30_mm_h", 1800.0), ("i60_mm_h", 3600.0)):
        begin = np.maximum(np.searchsorted(t, t - d, side="right"), first)
        acc = np.append(np.maximum(cum[end] - cum[begin], 0.0), 0.0)
        peaks[key] = np.maximum.reduceat(acc, seg)[0::2] / d * _HOUR_S
    # energy per reading: interval of a wet reading after a long dry spell is its
    # time since the previous reading (breakpoint convention), capped at min_dry_s.
    if interval_s is None:
        di = np.empty_like(t)
        di[1:] = np.diff(t)
        di[0] = di[1] if t.size > 1 else 1.0
        di = np.clip(di, 1e-9, min_dry_s)
    else:
        di = np.full(t.shape, float(interval_s))
    e = np.append(rainfall_unit_energy_mj_ha_mm(r / di * _HOUR_S, method) * r, 0.0)
    energy = np.add.reduceat(e, seg)[0::2]
    start_s = t[starts] - (0.0 if interval_s is None else float(interval_s))
    out = {
        "start_s": start_s,
        "end_s": t[lasts],
        "depth_mm": depth,
        "duration_h": (t[lasts] - start_s) / _HOUR_S,
        **peaks,
        "energy_mj_ha": energy,
        "ei30_mj_mm_ha_h": energy * peaks["i30_mm_h"],
        "first_index": starts.astype(np.int64),
        "last_index": lasts.astype(np.int64),
    }
    keep = depth >= min_depth_mm
    return {k: v[keep] for k, v in out.items()}


def cma_rainstorm_level(acc_3h_mm, acc_6h_mm, acc_12h_mm):
    """China Meteorological Administration rainstorm warning signal level.

    Parameters
    ----------
    acc_3h_mm, acc_6h_mm, acc_12h_mm : float or array_like
        Rain accumulated (observed or forecast) over the last 3, 6 and 12 h
        [mm]. Broadcast against each other. NaN never reaches a threshold.

    Returns
    -------
    None, str or numpy.ndarray of object
        For scalar inputs ``None`` (no signal) or one of ``"blue"``,
        ``"yellow"``, ``"orange"``, ``"red"``; for array inputs an object
        array of the broadcast shape holding those values.

    Notes
    -----
    A threshold is *reached* when the accumulation is greater than or equal
    to it; the highest level reached wins:

    ======  ==================  ====================
    level   condition           Chinese
    ======  ==================  ====================
    blue    12 h >= 50 mm       暴雨蓝色预警 (一般)
    yellow  6 h >= 50 mm        暴雨黄色预警 (较重)
    orange  3 h >= 50 mm        暴雨橙色预警 (严重)
    red     3 h >= 100 mm       暴雨红色预警 (特别严重)
    ======  ==================  ====================

    The CMA signals also apply when these amounts are *forecast* with rain
    continuing; pass forecast accumulations to evaluate that case.

    References
    ----------
    China Meteorological Administration (2007) 气象灾害预警信号及防御指南
    (Meteorological disaster warning signals and defence guidelines), CMA
    Order No. 16, rainstorm warning signals.
    """
    a3 = as_float_array(acc_3h_mm, "acc_3h_mm")
    a6 = as_float_array(acc_6h_mm, "acc_6h_mm")
    a12 = as_float_array(acc_12h_mm, "acc_12h_mm")
    try:
        a3, a6, a12 = np.broadcast_arrays(a3, a6, a12)
    except ValueError as exc:
        raise ValueError(
            f"acc_3h_mm, acc_6h_mm, acc_12h_mm shapes {a3.shape}, {a6.shape}, {a12.shape} "
            "do not broadcast"
        ) from exc
    level = cma_rainstorm_level_number(a3, a6, a12)
    if level.ndim == 0:
        return CMA_LEVELS[int(level)]
    return np.array(CMA_LEVELS, dtype=object)[level]


def cma_rainstorm_level_number(acc_3h_mm, acc_6h_mm, acc_12h_mm) -> np.ndarray:
    """CMA rainstorm signal as a level number 0 (none) .. 4 (red).

    Same thresholds as :func:`cma_rainstorm_level`; returns ``int8``.
    """
    a3 = np.asarray(acc_3h_mm, dtype=float)
    a6 = np.asarray(acc_6h_mm, dtype=float)
    a12 = np.asarray(acc_12h_mm, dtype=float)
    level = np.zeros(np.broadcast_shapes(a3.shape, a6.shape, a12.shape), dtype=np.int8)
    level = np.where(a12 >= 50.0, np.int8(1), level)
    level = np.where(a6 >= 50.0, np.int8(2), level)
    level = np.where(a3 >= 50.0, np.int8(3), level)
    level = np.where(a3 >= 100.0, np.int8(4), level)
    return level.astype(np.int8)
