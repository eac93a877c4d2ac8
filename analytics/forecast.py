"""Pond forecast: project a check dam's pond forward from what is known now, to warn
before its dam crest is overtopped.

The projection combines three things known at the time of the forecast:

1. the runoff *already committed* by the rain that has fallen on the dam's own
   catchment: curve-number excess of the event rain so far (NEH-630 ch. 10),
   convolved with the SCS unit hydrograph (NEH-630 ch. 16); the part of that
   hydrograph still to arrive is future inflow that no further rain is needed
   for;
2. the inflow *implied by the observed rise*: the water balance of the pond
   over the event so far (storage change from the stage-storage curve plus
   what the outlets released) corrects the modelled inflow by a factor
   ``k = (V_obs + V0) / (V_mod + V0)``; ``V0`` keeps ``k`` near 1 while the
   evidence is thin, and the observation takes over as the event grows;
3. the releases of the dams upstream (their current outflow, held), the
   outflow of this dam's spillway, culvert and crest, and the storage left
   below the dam crest, by level-pool routing of the future inflow from the
   storage now.

By default no rain that has not fallen yet is assumed: the forecast is the
pond that the water already on its way will make. A second scenario, *the
rain goes on*, adds the runoff of rain continuing at its sustained rate for a
while (:func:`ongoing_rain_steps_mm`, passed as ``continuing_rain_mm``): the
pond that a nearly full dam makes when the storm's tail keeps falling. An
uncertainty band comes from scaling
the future inflow by ``1 - e`` and ``1 + e`` (``e`` the relative error of
rain, curve number and storage curve together).

Units: stages [m] above the stage-storage datum, storage [m3], flow [m3/s],
rain [mm], times [s].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validation import as_float_array, check_same_length
from .runoff import scs_runoff_mm, scs_unit_hydrograph_m3_s
from .storage import CheckDam

__all__ = [
    "Catchment",
    "PondForecast",
    "committed_inflow_m3_s",
    "event_rain_steps_mm",
    "forecast_pond",
    "ongoing_rain_steps_mm",
    "released_volume_m3",
]

INF = math.inf
DT_S = 60.0  # the rain grid and the routing step [s]


@dataclass(frozen=True)
class Catchment:
    """The dam's own catchment for the committed-runoff model.

    Attributes
    ----------
    area_km2 : float
        Catchment area draining to the dam, excluding upstream dams' [km2].
    curve_number : float
        AMC II curve number [-].
    tc_h : float
        Time of concentration [h].
    """

    area_km2: float
    curve_number: float
    tc_h: float

    def __post_init__(self):
        for name in ("area_km2", "tc_h"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if not 0 < self.curve_number <= 100:
            raise ValueError(f"curve_number must be in (0, 100], got {self.curve_number!r}")


@dataclass(frozen=True)
class PondForecast:
    """A pond forecast made at one time.

    Times are from the forecast time [s]; ``inf`` when the level is not
    reached within the horizon; 0 when it is already reached.
    """

    time_to_crest_s: float
    """Expected time until the stage reaches the dam crest."""
    time_to_crest_early_s: float
    """The same with the inflow at the high end of its band (the prudent value)."""
    time_to_crest_late_s: float
    """The same with the inflow at the low end of its band."""
    time_to_warning_s: float
    """Expected time until the warning stage (the spillway crest by default)."""
    time_to_warning_early_s: float
    """The same with the inflow at the high end of its band."""
    peak_stage_m: float
    """Expected peak stage within the horizon [m]."""
    peak_stage_high_m: float
    """Peak stage with the inflow at the high end of its band [m]."""
    stage_m: float
    """Stage at the forecast time [m]."""
    storage_left_m3: float
    """Storage left below the dam crest now [m3]."""
    future_inflow_m3: float
    """Expected inflow volume still to arrive within the horizon [m3]."""
    inflow_factor: float
    """Correction ``k`` of the modelled inflow by the observed rise [-]."""
    method: str
    """``"committed_runoff"`` or ``"persistence"`` (no rain or catchment data)."""
    outflow_m3_s: np.ndarray | None = None
    """Expected outflow at ``now, now + dt, ...`` over the horizon (``with_outflow``)."""


def event_rain_steps_mm(
    rain_times_s, rain_mm, now_s: float, dt_s: float = DT_S, *,
    lookback_s: float = 24 * 3600.0, event_gap_s: float = 6 * 3600.0,
    event_gap_mm: float = 1.27,
) -> tuple[float, np.ndarray]:  # fmt: skip
    """Rain of the current event on a regular grid ending at ``now_s``.

    Parameters
    ----------
    rain_times_s : array_like
        Times of rain readings [s], sorted; each reading is the depth since the
        previous one (tipping-bucket interval totals).
    rain_mm : array_like
        Depth of each reading [mm].
    now_s : float
        Forecast time [s]; readings after it are ignored.
    dt_s : float
        Grid step [s].
    lookback_s : float
        How far back an event may start [s].
    event_gap_s, event_gap_mm : float
        An event starts after the last period of ``event_gap_s`` with less than
        ``event_gap_mm`` of rain (Agriculture Handbook 703: 6 h, 0.05 in).

    Returns
    -------
    start_s : float
        Start of the first step of the event grid [s] (``now_s`` when no
        event is in progress).
    steps_mm : numpy.ndarray
        Rain in each step ``[start_s + i dt, start_s + (i+1) dt)`` up to ``now_s``.
    """
    t = as_float_array(rain_times_s, "rain_times_s", ndim=1)
    r = as_float_array(rain_mm, "rain_mm", ndim=1)
    check_same_length(rain_times_s=t, rain_mm=r)
    if not dt_s > 0:
        raise ValueError(f"dt_s must be > 0, got {dt_s!r}")
    n = math.ceil(lookback_s / dt_s)
    grid0 = now_s - n * dt_s
    keep = (t > grid0) & (t <= now_s) & np.isfinite(r) & (r > 0)
    steps = np.zeros(n)
    if np.any(keep):
        idx = np.minimum(((t[keep] - grid0) // dt_s).astype(np.int64), n - 1)
        np.add.at(steps, idx, r[keep])
    wet = np.flatnonzero(steps > 0)
    if wet.size == 0:
        return float(now_s), np.zeros(0)
    # the event begins after the last window of event_gap_s holding < event_gap_mm
    gap = max(1, round(event_gap_s / dt_s))
    csum = np.concatenate([[0.0], np.cumsum(steps)])
    start = 0
    # windows [i - gap, i) that are "dry" (less than the threshold)
    i = np.arange(gap, n + 1)
    dry = (csum[i] - csum[i - gap]) < event_gap_mm
    # a dry window that ends before the last wet step, followed by rain, splits events
    dry_ends = i[dry]
    dry_ends = dry_ends[dry_ends <= wet[-1]]
    if dry_ends.size:
        after = wet[wet >= dry_ends[-1]]
        start = int(after[0]) if after.size else int(wet[-1])
    else:
        start = int(wet[0])
    return float(grid0 + start * dt_s), steps[start:]


def ongoing_rain_steps_mm(steps_mm, dt_s: float, hold_s: float, recent_s: float = 1800.0,
                          sustained_s: float = 3 * 3600.0) -> np.ndarray:  # fmt: skip
    """Rain assumed to go on after now: the *sustained* rate held for ``hold_s``.

    The sustained rate is the lowest of the mean intensities of the last
    ``recent_s``, of the event so far, and of the last ``sustained_s`` (the
    time before the event counted dry). A burst's peak intensity does not last
    (a convective cell rains hard for some tens of minutes), so holding the
    recent rate alone would flood every pond in any heavy shower; what the
    storm has kept up over hours is what may go on. A storm that opens with a
    burst has an event mean as high as the burst, hence the fixed long window
    too. Light rain that goes on for hours (a long storm's tail, what brings a
    nearly full pond over its crest) is held at about its own rate.

    Parameters
    ----------
    steps_mm : array_like
        Event rain per step up to now [mm] (:func:`event_rain_steps_mm`).
    dt_s : float
        Step [s].
    hold_s : float
        How long the rain is assumed to go on [s].
    recent_s : float
        Window of the recent rate [s].
    sustained_s : float
        Window of the rate kept up over hours [s].

    Returns
    -------
    numpy.ndarray
        Rain per step for ``hold_s`` after now [mm]; empty without event rain.
    """
    steps = as_float_array(steps_mm, "steps_mm", ndim=1)
    if steps.size == 0 or not hold_s > 0:
        return np.zeros(0)
    k = max(1, round(recent_s / dt_s))
    recent = float(steps[-k:].sum()) / k
    event = float(steps.sum()) / steps.size
    m = max(1, round(sustained_s / dt_s))
    sustained = float(steps[-m:].sum()) / m  # before the event: dry (AH 703 separation)
    rate = max(min(recent, event, sustained), 0.0)  # mm per step
    return np.full(max(1, round(hold_s / dt_s)), rate)


def committed_inflow_m3_s(
    steps_mm, dt_s: float, catchment: Catchment, ia_ratio: float = 0.2
) -> np.ndarray:
    """Inflow hydrograph from the event rain so far, with no further rain.

    Parameters
    ----------
    steps_mm : array_like
        Event rain per step [mm] (from :func:`event_rain_steps_mm`).
    dt_s : float
        Step [s].
    catchment : Catchment
    ia_ratio : float
        Initial-abstraction ratio (0.2 or 0.05).

    Returns
    -------
    numpy.ndarray
        Flow [m3/s] at the end of each step ``0 .. len(steps) + len(UH) - 2``;
        the first ``len(steps)`` values are the past, the rest is committed.

    Notes
    -----
    Excess per step ``q_k = Q(P_k) - Q(P_{k-1})`` with ``Q`` the curve-number
    runoff of the cumulative event rain, convolved with the unit hydrograph
    (NEH-630 ch. 10 and 16; the same forward model as ``firmware_sim``).
    """
    p = np.cumsum(as_float_array(steps_mm, "steps_mm", ndim=1))
    if p.size == 0:
        return np.zeros(0)
    excess = np.diff(scs_runoff_mm(p, catchment.curve_number, ia_ratio), prepend=0.0)
    uh = scs_unit_hydrograph_m3_s(catchment.area_km2, catchment.tc_h, dt_s)
    return np.convolve(np.maximum(excess, 0.0), uh[1:])


def released_volume_m3(times_s, stage_m, dam: CheckDam) -> float:
    """Volume released by a dam's outlets over a stage record (trapezoidal) [m3]."""
    t = as_float_array(times_s, "times_s", ndim=1)
    h = as_float_array(stage_m, "stage_m", ndim=1)
    check_same_length(times_s=t, stage_m=h)
    if t.size < 2:
        return 0.0
    q = dam.outflow_m3_s(np.where(np.isfinite(h), h, 0.0))
    return float(np.sum(0.5 * (q[1:] + q[:-1]) * np.diff(t)))


def _route(dam: CheckDam, s0: float, inflow: np.ndarray, dt: float,
           targets: tuple[float, float], outflow: list[float] | None = None,
           ) -> tuple[float, float, float]:  # fmt: skip
    """Explicit Heun steps of the pond from storage ``s0`` with ``inflow`` at each step
    start; (time to the first target storage, time to the second, peak storage)."""
    out = dam.outflow_of_storage
    s = s0
    times = [0.0 if s0 >= x else INF for x in targets]
    peak = s0
    o1 = out(s)
    ahead = np.maximum.accumulate(inflow[::-1])[::-1]  # the most inflow still to come
    flows = inflow.tolist()
    if outflow is not None:
        outflow.append(o1)
    for k in range(len(flows) - 1):
        if outflow is None and k > 0 and ahead[k] <= o1:  # past the peak: nothing more to see
            break
        i1, i2 = flows[k], flows[k + 1]
        pred = max(s + (i1 - o1) * dt, 0.0)
        o2 = out(pred)
        s_new = max(s + (0.5 * (i1 + i2) - 0.5 * (o1 + o2)) * dt, 0.0)
        o1 = out(s_new)
        if outflow is not None:
            outflow.append(o1)
        if s_new > peak:
            peak = s_new
        for m, x in enumerate(targets):
            if times[m] == INF and s_new >= x:
                times[m] = (k + ((x - s) / (s_new - s) if s_new > s else 1.0)) * dt
        s = s_new
        if outflow is None and times[0] != INF and times[1] != INF and ahead[k] <= o1:
            break
    return times[0], times[1], peak


def forecast_pond(
    dam: CheckDam,
    stage_times_s,
    stage_m,
    now_s: float,
    *,
    catchment: Catchment | None = None,
    rain_start_s: float | None = None,
    rain_steps_mm=None,
    dt_s: float = DT_S,
    upstream_release_m3_s: float = 0.0,
    upstream_volume_m3: float = 0.0,
    upstream_inflow_m3_s=None,
    horizon_s: float = 6 * 3600.0,
    inflow_rel_error: float = 0.25,
    prior_volume_m3: float | None = None,
    persistence_window_s: float = 900.0,
    warning_stage_m: float | None = None,
    with_outflow: bool = False,
    continuing_rain_mm=None,
) -> PondForecast:
    """Forecast the pond of a check dam from the stage record and the event rain.

    Parameters
    ----------
    dam : CheckDam
        Storage curve and outlets; ``dam.dam_crest_m`` must be set.
    stage_times_s, stage_m : array_like
        Stage record up to ``now_s`` [s], [m], covering the event so far.
    now_s : float
        Forecast time [s].
    catchment : Catchment or None
        The dam's own catchment; None: no committed-runoff model.
    rain_start_s : float or None
        Start of the event rain grid [s] (:func:`event_rain_steps_mm`).
    rain_steps_mm : array_like or None
        Event rain per ``dt_s`` step up to ``now_s`` [mm].
    dt_s : float
        Step of the rain grid and of the routing [s].
    upstream_release_m3_s : float
        Current outflow of the dams upstream [m3/s], held over the horizon.
    upstream_volume_m3 : float
        What those dams released since the event started [m3].
    upstream_inflow_m3_s : array_like or None
        Their projected outflow at ``now, now + dt, ...`` [m3/s] (e.g. the
        ``outflow_m3_s`` of their own forecasts); replaces the held release.
    horizon_s : float
        Longest projection [s].
    inflow_rel_error : float
        Relative error ``e`` of the future inflow; the band is ``(1 - e, 1 + e)`` [-].
    prior_volume_m3 : float or None
        ``V0`` of the inflow correction [m3]; default 2 % of the storage
        below the dam crest.
    warning_stage_m : float or None
        A lower level whose reaching is also forecast [m]; default the
        spillway crest (the dam crest for a dam without spillway).
    persistence_window_s : float
        Without the rain model, the observed inflow over this trailing window
        is held over ``catchment.tc_h`` (or 1 h) [s].
    continuing_rain_mm : array_like or None
        Rain assumed to fall after now, per ``dt_s`` step [mm]
        (:func:`ongoing_rain_steps_mm`); None: none (the committed runoff only).

    Returns
    -------
    PondForecast

    Notes
    -----
    Observed event inflow ``V_obs = S(h_now) - S(h_start) + released`` with
    ``S = a h^b`` and the released volume integrated from the stage record
    through the outlet formulas; modelled ``V_mod`` the committed hydrograph's
    past plus the upstream volume. The future inflow ``k I_mod(t > now) +
    Q_up`` is routed by explicit Heun steps from the storage now; the routing
    stops at the projected peak. Seepage and evaporation are neglected over
    a few hours (prudent).
    """
    if dam.dam_crest_m is None:
        raise ValueError("dam.dam_crest_m must be set for a pond forecast")
    t = as_float_array(stage_times_s, "stage_times_s", ndim=1)
    h = as_float_array(stage_m, "stage_m", ndim=1)
    check_same_length(stage_times_s=t, stage_m=h)
    if not (0 <= inflow_rel_error < 1):
        raise ValueError(f"inflow_rel_error must be in [0, 1), got {inflow_rel_error!r}")
    ok = np.isfinite(h) & (t <= now_s)
    t, h = t[ok], h[ok]
    crest = float(dam.dam_crest_m)
    crest_s = float(dam.storage_m3(crest))
    if warning_stage_m is None:
        has_spillway = dam.spillway_width_m > 0 and dam.spillway_crest_m < crest
        warning_stage_m = dam.spillway_crest_m if has_spillway else crest
    warn_s = float(dam.storage_m3(min(float(warning_stage_m), crest)))
    h_now = float(h[-1]) if h.size else 0.0
    s_now = float(dam.storage_m3(max(h_now, 0.0)))
    v0 = 0.02 * crest_s if prior_volume_m3 is None else float(prior_volume_m3)
    n_h = math.ceil(horizon_s / dt_s)

    method = "persistence"
    k = 1.0
    future = np.zeros(0)
    if catchment is not None and rain_steps_mm is not None and len(rain_steps_mm) > 0:
        method = "committed_runoff"
        m = len(rain_steps_mm)
        steps = np.asarray(rain_steps_mm, dtype=float)
        if continuing_rain_mm is not None and len(continuing_rain_mm):
            steps = np.concatenate([steps, np.asarray(continuing_rain_mm, dtype=float)])
        q = committed_inflow_m3_s(steps, dt_s, catchment)
        start = float(rain_start_s if rain_start_s is not None else now_s - m * dt_s)
        past = q[:m]
        v_mod = float(past.sum() * dt_s) + upstream_volume_m3
        sel = t >= start
        if np.count_nonzero(sel) >= 2:
            ts, hs = t[sel], h[sel]
            v_obs = float(
                dam.storage_m3(max(hs[-1], 0.0)) - dam.storage_m3(max(hs[0], 0.0))
            ) + released_volume_m3(ts, hs, dam)
            k = max((max(v_obs, 0.0) + v0) / (v_mod + v0), 0.05)
        future = k * q[m:]
    else:
        # observed inflow over the trailing window, held for tc (or 1 h)
        w = t >= now_s - persistence_window_s
        if np.count_nonzero(w) >= 2 and t[w][-1] > t[w][0]:
            tw, hw = t[w], h[w]
            dv = float(dam.storage_m3(max(hw[-1], 0.0)) - dam.storage_m3(max(hw[0], 0.0)))
            inflow = (dv + released_volume_m3(tw, hw, dam)) / (tw[-1] - tw[0])
            hold_s = (catchment.tc_h * 3600.0) if catchment is not None else 3600.0
            future = np.full(math.ceil(hold_s / dt_s), max(inflow - upstream_release_m3_s, 0))
    future = future[:n_h]
    n = max(future.size, 1)
    base = np.zeros(n + 1)
    base[1 : future.size + 1] = future
    if upstream_inflow_m3_s is not None:
        up = np.asarray(upstream_inflow_m3_s, dtype=float)[: n_h + 1]
        if up.size > base.size:
            base = np.concatenate([base, np.zeros(up.size - base.size)])
        base[: up.size] += up
    elif upstream_release_m3_s > 0:
        base = np.concatenate([base, np.zeros(max(0, n_h + 1 - base.size))])
        base = base + upstream_release_m3_s
    # inflow at the start of the first step: the model's value just before now
    base[0] = base[1] if base.size > 1 else 0.0
    future_volume = float(np.sum(base[1:]) * dt_s)

    results = []
    outflow: list[float] | None = [] if with_outflow else None
    for scale in (1.0, 1.0 + inflow_rel_error, 1.0 - inflow_rel_error):
        bound = s_now + scale * future_volume  # the storage with no outflow at all
        if bound < warn_s and s_now < warn_s and not (with_outflow and scale == 1.0):
            results.append((INF, INF, bound))  # cannot reach even the lower level
            continue
        flows = scale * base
        if with_outflow and scale == 1.0 and flows.size < n_h + 1:
            flows = np.concatenate([flows, np.zeros(n_h + 1 - flows.size)])
        tc, tw, peak = _route(dam, s_now, flows, dt_s, (crest_s, warn_s),
                              outflow if scale == 1.0 else None)  # fmt: skip
        results.append((tc, tw, peak))
    (tc, tw, peak), (tc_hi, tw_hi, peak_hi), (tc_lo, _, _) = results
    return PondForecast(
        time_to_crest_s=tc,
        time_to_crest_early_s=tc_hi,
        time_to_crest_late_s=tc_lo,
        time_to_warning_s=tw,
        time_to_warning_early_s=tw_hi,
        peak_stage_m=float(dam.stage_m(peak)),
        peak_stage_high_m=float(dam.stage_m(peak_hi)),
        stage_m=h_now,
        storage_left_m3=max(crest_s - s_now, 0.0),
        future_inflow_m3=future_volume,
        inflow_factor=k,
        method=method,
        outflow_m3_s=None if outflow is None else np.asarray(outflow),
    )
