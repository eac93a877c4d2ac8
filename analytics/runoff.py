"""Runoff: SCS curve number (with Ia = 0.05 S and antecedent-moisture conversions),
runoff coefficient, SCS dimensionless unit hydrograph and baseflow separation."""

from __future__ import annotations

import numpy as np

from ._validation import (
    as_float_array,
    check_in_range,
    check_nonnegative,
    check_same_length,
    times_to_seconds,
)

__all__ = [
    "SCS_DIMENSIONLESS_UH",
    "curve_number_amc",
    "event_runoff_volume_m3",
    "incremental_runoff_mm",
    "runoff_coefficient",
    "scs_hydrograph_m3_s",
    "scs_retention_mm",
    "scs_runoff_mm",
    "scs_unit_hydrograph_m3_s",
]

_MM_PER_IN = 25.4


def _check_cn(curve_number) -> np.ndarray:
    cn = as_float_array(curve_number, "curve_number")
    if np.any(np.isnan(cn)):
        raise ValueError("curve_number must not be NaN")
    check_in_range(cn, "curve_number", 0.0, 100.0, low_inclusive=False)
    return cn


def scs_retention_mm(curve_number, ia_ratio: float = 0.2) -> np.ndarray:
    """Potential maximum retention S of the curve-number method.

    Parameters
    ----------
    curve_number : array_like
        Curve number for Ia = 0.2 S (the tabulated CN), 0 < CN <= 100 [-].
    ia_ratio : {0.2, 0.05}
        Initial-abstraction ratio lambda. With 0.05 the retention is converted
        by Hawkins et al. (2002): ``S0.05 = 1.33 S0.2^1.15`` with S in inches.

    Returns
    -------
    numpy.ndarray
        S [mm]: ``S0.2 = 25400 / CN - 254``.

    References
    ----------
    USDA NRCS (2004) National Engineering Handbook Part 630 Hydrology, ch. 10.
    Hawkins, R. H., Jiang, R., Woodward, D. E., Hjelmfelt, A. T. and Van Mullem,
    J. A. (2002) Runoff curve number method: examination of the initial
    abstraction ratio. Proc. 2nd Federal Interagency Hydrologic Modeling Conf.
    """
    cn = _check_cn(curve_number)
    s02_mm = 25400.0 / cn - 254.0
    if ia_ratio == 0.2:
        return s02_mm
    if ia_ratio == 0.05:
        s02_in = s02_mm / _MM_PER_IN
        return 1.33 * s02_in**1.15 * _MM_PER_IN
    raise ValueError(f"ia_ratio must be 0.2 or 0.05, got {ia_ratio!r}")


def scs_runoff_mm(rain_mm, curve_number, ia_ratio: float = 0.2) -> np.ndarray:
    """Direct runoff depth by the SCS (NRCS) curve-number method.

    Parameters
    ----------
    rain_mm : array_like
        Cumulative event rainfall P [mm], >= 0. NaN propagates.
    curve_number : array_like
        Curve number for the usual Ia = 0.2 S convention, 0 < CN <= 100 [-];
        broadcast against ``rain_mm``. Use :func:`curve_number_amc` first for
        dry (I) or wet (III) antecedent conditions.
    ia_ratio : {0.2, 0.05}
        Initial-abstraction ratio lambda. With 0.05 the curve number is first
        converted (Hawkins et al. 2002), see :func:`scs_retention_mm`.

    Returns
    -------
    numpy.ndarray
        Runoff depth Q [mm].

    Notes
    -----
    ``Q = (P - Ia)^2 / (P - Ia + S)`` for ``P > Ia``, else 0, with
    ``Ia = lambda S`` and ``S = 25400 / CN - 254`` mm. With lambda = 0.05:
    ``S0.05 = 1.33 S0.2^1.15`` (inches) and
    ``Q = (P - 0.05 S0.05)^2 / (P + 0.95 S0.05)``. CN = 100 gives Q = P.

    The method was built for daily/event totals on small agricultural
    catchments; it is not an infiltration model and does not resolve
    intensity.

    References
    ----------
    USDA NRCS (2004) National Engineering Handbook Part 630 Hydrology, ch. 10.
    USDA SCS (1986) Urban hydrology for small watersheds, TR-55, Table 2-1.
    Hawkins, R. H. et al. (2002), see :func:`scs_retention_mm`.
    """
    p = as_float_array(rain_mm, "rain_mm")
    check_nonnegative(p, "rain_mm")
    s = scs_retention_mm(curve_number, ia_ratio)
    ia = ia_ratio * s
    excess = np.maximum(p - ia, 0.0)
    denom = excess + s
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(denom > 0, excess**2 / np.where(denom > 0, denom, 1.0), 0.0)
    return np.where(np.isnan(p), np.nan, q)


def incremental_runoff_mm(cumulative_rain_mm, curve_number, ia_ratio: float = 0.2) -> np.ndarray:
    """Runoff excess per time step from a cumulative rain series.

    Parameters
    ----------
    cumulative_rain_mm : array_like
        Non-decreasing cumulative event rainfall [mm], one value per step end.
    curve_number : float
        Curve number [-].
    ia_ratio : {0.2, 0.05}
        Initial-abstraction ratio.

    Returns
    -------
    numpy.ndarray
        Excess in each step [mm]; ``sum == scs_runoff_mm(P_total)``. The
        first step's excess is measured from P = 0.

    Notes
    -----
    ``q_k = Q(P_k) - Q(P_{k-1})`` (NEH-630 ch. 10 and ch. 16, example 16-2).
    """
    p = as_float_array(cumulative_rain_mm, "cumulative_rain_mm", ndim=1)
    if np.any(np.diff(p) < 0):
        raise ValueError("cumulative_rain_mm must be non-decreasing")
    q = scs_runoff_mm(p, curve_number, ia_ratio)
    return np.diff(q, prepend=0.0)


def curve_number_amc(curve_number, amc: str = "III", method: str = "chow") -> np.ndarray:
    """Convert an average-condition (AMC II) curve number to dry or wet condition.

    Parameters
    ----------
    curve_number : array_like
        AMC II curve number, 0 < CN <= 100 [-].
    amc : {"I", "II", "III"}
        Target antecedent moisture condition (I dry, II average, III wet).
    method : {"chow", "hawkins"}
        ``"chow"`` (Chow, Maidment and Mays 1988, eqs. 5.5.4-5.5.5):
        ``CN_I = 4.2 CN / (10 - 0.058 CN)``, ``CN_III = 23 CN / (10 + 0.13 CN)``;
        ``"hawkins"`` (Hawkins, Hjelmfelt and Zevenbergen 1985):
        ``CN_I = CN / (2.281 - 0.01281 CN)``, ``CN_III = CN / (0.427 + 0.00573 CN)``.

    Returns
    -------
    numpy.ndarray
        Converted curve number [-].

    Notes
    -----
    Both fits reproduce NEH-630 ch. 10 Table 10-1 within about 1 CN unit.
    NRCS now prefers "antecedent runoff condition" and warns against AMC
    tables for design; they remain useful for simulation.

    References
    ----------
    Chow, V. T., Maidment, D. R. and Mays, L. W. (1988) Applied Hydrology.
    McGraw-Hill, section 5.5.
    Hawkins, R. H., Hjelmfelt, A. T. and Zevenbergen, A. W. (1985) Runoff
    probability, storm depth, and curve numbers. J. Irrig. Drain. Eng.
    111(4), 330-340.
    """
    cn = _check_cn(curve_number)
    if amc == "II":
        return cn.copy()
    if method == "chow":
        if amc == "I":
            return 4.2 * cn / (10.0 - 0.058 * cn)
        if amc == "III":
            return 23.0 * cn / (10.0 + 0.13 * cn)
    elif method == "hawkins":
        if amc == "I":
            return cn / (2.281 - 0.01281 * cn)
        if amc == "III":
            return cn / (0.427 + 0.00573 * cn)
    else:
        raise ValueError(f"method must be 'chow' or 'hawkins', got {method!r}")
    raise ValueError(f"amc must be 'I', 'II' or 'III', got {amc!r}")


def runoff_coefficient(runoff_mm, rain_mm) -> np.ndarray:
    """Event runoff coefficient ``C = Q / P``.

    Parameters
    ----------
    runoff_mm : array_like
        Runoff depth [mm], >= 0 (volume / catchment area).
    rain_mm : array_like
        Rain depth [mm], >= 0.

    Returns
    -------
    numpy.ndarray
        ``Q / P`` [-]; NaN where ``P == 0``.
    """
    q = as_float_array(runoff_mm, "runoff_mm")
    p = as_float_array(rain_mm, "rain_mm")
    check_nonnegative(q, "runoff_mm")
    check_nonnegative(p, "rain_mm")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p > 0, q / np.where(p > 0, p, 1.0), np.nan)


#: NEH-630 ch. 16 Table 16-1: SCS dimensionless unit hydrograph (t/Tp, q/qp).
SCS_DIMENSIONLESS_UH = np.array(
    [
        [0.0, 0.000], [0.1, 0.030], [0.2, 0.100], [0.3, 0.190], [0.4, 0.310],
        [0.5, 0.470], [0.6, 0.660], [0.7, 0.820], [0.8, 0.930], [0.9, 0.990],
        [1.0, 1.000], [1.1, 0.990], [1.2, 0.930], [1.3, 0.860], [1.4, 0.780],
        [1.5, 0.680], [1.6, 0.560], [1.7, 0.460], [1.8, 0.390], [1.9, 0.330],
        [2.0, 0.280], [2.2, 0.207], [2.4, 0.147], [2.6, 0.107], [2.8, 0.077],
        [3.0, 0.055], [3.2, 0.040], [3.4, 0.029], [3.6, 0.021], [3.8, 0.015],
        [4.0, 0.011], [4.5, 0.005], [5.0, 0.000],
    ]
)  # fmt: skip


def scs_unit_hydrograph_m3_s(area_km2: float, tc_h: float, dt_s: float) -> np.ndarray:
    """SCS curvilinear unit hydrograph for 1 mm of excess in one step.

    Parameters
    ----------
    area_km2 : float
        Catchment area [km2], > 0.
    tc_h : float
        Time of concentration [h], > 0.
    dt_s : float
        Time step, also the unit-excess duration D [s], > 0;
        NEH-630 advises ``D <= 0.25 Tp`` (about ``0.133 Tc``).

    Returns
    -------
    numpy.ndarray
        Ordinates [m3/s per mm of excess] at ``t = 0, dt, 2 dt, ...`` up to
        ``5 Tp``. They are rescaled so that their sum times ``dt_s`` equals
        exactly ``1 mm x area`` (1000 * area_km2 m3): the convolution
        conserves volume.

    Notes
    -----
    ``Tlag = 0.6 Tc``, ``Tp = D/2 + Tlag`` and, before rescaling,
    ``qp = 0.208 A Q / Tp`` (qp in m3/s, A in km2, Q in mm, Tp in h; the SI
    form of peak rate factor 484). Ordinates come from NEH-630 Table 16-1
    by linear interpolation.

    References
    ----------
    USDA NRCS (2007) National Engineering Handbook Part 630 Hydrology, ch. 16,
    Hydrographs, Table 16-1.
    """
    for name, v in (("area_km2", area_km2), ("tc_h", tc_h), ("dt_s", dt_s)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be > 0, got {v!r}")
    tp_h = dt_s / 3600.0 / 2.0 + 0.6 * tc_h
    qp = 0.208 * area_km2 * 1.0 / tp_h
    n = int(np.ceil(5.0 * tp_h * 3600.0 / dt_s)) + 1
    t_h = np.arange(n) * dt_s / 3600.0
    uh = qp * np.interp(t_h / tp_h, SCS_DIMENSIONLESS_UH[:, 0], SCS_DIMENSIONLESS_UH[:, 1])
    volume = uh.sum() * dt_s
    return uh * (1000.0 * area_km2 / volume)


def scs_hydrograph_m3_s(excess_mm, dt_s: float, area_km2: float, tc_h: float) -> np.ndarray:
    """Direct-runoff hydrograph by convolving excess with the SCS unit hydrograph.

    Parameters
    ----------
    excess_mm : array_like
        Runoff excess in each step [mm] (e.g. from :func:`incremental_runoff_mm`).
    dt_s : float
        Step [s].
    area_km2 : float
        Catchment area [km2].
    tc_h : float
        Time of concentration [h].

    Returns
    -------
    numpy.ndarray
        Discharge [m3/s] at ``t = (k + 1) dt`` for ``k = 0 .. len(excess) +
        len(uh) - 2``, i.e. the first value is the flow at the end of the first
        step. ``sum(Q) * dt == sum(excess) * area * 1000`` to rounding.

    References
    ----------
    USDA NRCS (2007) NEH Part 630, ch. 16.
    """
    q = as_float_array(excess_mm, "excess_mm", ndim=1)
    check_nonnegative(q, "excess_mm")
    uh = scs_unit_hydrograph_m3_s(area_km2, tc_h, dt_s)
    # uh[0] == 0; shift so that output k is at the end of step k.
    return np.convolve(q, uh[1:])


def event_runoff_volume_m3(
    times, discharge_m3_s, method: str = "straight_line"
) -> tuple[float, np.ndarray]:
    """Direct (quick-flow) runoff volume of one event after baseflow separation.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted, strictly increasing time stamps spanning the event, from the
        start of the rise to the end of the recession.
    discharge_m3_s : array_like
        Discharge [m3/s], >= 0, no NaN.
    method : {"straight_line", "constant"}
        ``"straight_line"``: baseflow is the line joining the first and last
        points (Linsley et al. 1975); ``"constant"``: baseflow is the first
        (pre-event) discharge.

    Returns
    -------
    volume_m3 : float
        Direct-runoff volume [m3], trapezoidal integral of
        ``max(Q - Qb, 0)``.
    baseflow_m3_s : numpy.ndarray
        The baseflow line, capped at the discharge [m3/s].

    Notes
    -----
    Both are graphical separations: simple, reproducible and adequate for
    ephemeral Loess Plateau gullies where baseflow is small. Choose the event
    window with :func:`analytics.rainfall.storm_events` and the recession end
    where the hydrograph flattens.

    References
    ----------
    Linsley, R. K., Kohler, M. A. and Paulhus, J. L. H. (1975) Hydrology for
    Engineers, 2nd ed., McGraw-Hill, section 8-3.
    """
    t = times_to_seconds(times, strict=True)
    q = as_float_array(discharge_m3_s, "discharge_m3_s", ndim=1)
    check_same_length(times=t, discharge_m3_s=q)
    if t.size < 2:
        raise ValueError("an event needs at least 2 readings")
    if np.any(np.isnan(q)):
        raise ValueError("discharge_m3_s must not contain NaN")
    check_nonnegative(q, "discharge_m3_s")
    if method == "straight_line":
        base = q[0] + (q[-1] - q[0]) * (t - t[0]) / (t[-1] - t[0])
    elif method == "constant":
        base = np.full_like(q, q[0])
    else:
        raise ValueError(f"method must be 'straight_line' or 'constant', got {method!r}")
    direct = np.maximum(q - base, 0.0)
    return float(np.trapezoid(direct, t)), np.minimum(base, q)
