"""The true state of the county: runoff, routing through dams in series, sediment,
cisterns and plots, computed with the forward models of :mod:`analytics`.

Two time grids are used. Rain, curve-number runoff, unit-hydrograph inflow and
MUSLE sediment are computed vectorised on a regular *base* grid (60 s). Dams,
cisterns and plots are then stepped on an *adaptive* grid: base steps while it
rains or water runs anywhere in the county (and for two hours after rain),
and 600 s steps otherwise. Every quantity per step is a volume or a mass, so
the water and sediment balances close to rounding error on either grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analytics.runoff import curve_number_amc, scs_hydrograph_m3_s, scs_runoff_mm
from analytics.sediment import ls_factor, musle_sediment_t
from analytics.storage import (
    CheckDam,
    bottle_cistern_level_m,
    bottle_cistern_volume_m3,
    cylinder_cistern_level_m,
    cylinder_cistern_volume_m3,
    level_pool_step,
)

from .scenario import CheckDamSpec, CisternSpec, Scenario, kind_of

__all__ = ["SimResult", "SiteTruth", "simulate"]

EVENT_GAP_S = 6 * 3600.0  # dry time that separates two rain events (curve number)
ANTECEDENT_S = 5 * 86400.0  # antecedent-moisture window
AMC_DRY_MM, AMC_WET_MM = 36.0, 53.0  # NEH-4 growing-season limits of 5-day rain
ACTIVE_AFTER_RAIN_S = 2 * 3600.0
COARSE_FACTOR = 10  # dry-weather step = 10 base steps


@dataclass
class SiteTruth:
    """True series of one site at the grid points (index 0 = the initial state).

    Per-step quantities (volumes, masses, rain) at index i refer to the step
    ending at point i and are 0 at index 0.
    """

    site_id: str
    kind: str
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    events: dict[str, list[float]] = field(default_factory=dict)  # name -> start times [s]
    constants: dict[str, float] = field(default_factory=dict)


@dataclass
class SimResult:
    t_s: np.ndarray  # grid points, seconds from the run start (n + 1)
    dt_s: np.ndarray  # step lengths (n)
    base_dt_s: float
    base_rain_mm: np.ndarray  # (sites, base steps) rain at each site
    site_ids: list[str]
    sites: dict[str, SiteTruth]
    run: dict[str, float]


# ----------------------------------------------------------------------------- helpers
def _event_ids(active: np.ndarray, gap_steps: int) -> np.ndarray:
    """Event number of each step: steps from one active step to the next active step
    separated by more than ``gap_steps`` belong to one event; -1 before the first."""
    n = active.size
    idx = np.flatnonzero(active)
    ev = np.full(n, -1, dtype=np.int64)
    if idx.size == 0:
        return ev
    new = np.ones(idx.size, dtype=bool)
    new[1:] = np.diff(idx) > gap_steps
    ids = np.cumsum(new) - 1
    ev[idx] = ids
    # carry the last event id forward through dry steps
    marker = np.full(n, -1, dtype=np.int64)
    marker[idx] = ids
    return np.maximum.accumulate(marker)


def _segment_cumsum(x: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """Cumulative sum of x restarting at each change of the (non-decreasing) event id."""
    c = np.cumsum(x)
    start = np.ones(ev.size, dtype=bool)
    start[1:] = ev[1:] != ev[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(ev.size), 0))
    return c - (c - x)[first]


def _segment_runmax(x: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """Running maximum of non-negative x restarting at each new event id."""
    big = float(x.max()) + 1.0 if x.size else 1.0
    shifted = x + (ev - ev.min() if ev.size else 0) * big
    return np.maximum.accumulate(shifted) - (ev - ev.min() if ev.size else 0) * big


def _segment_diff(cum: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """Per-step increments of a cumulative series that restarts with each event."""
    d = np.diff(cum, prepend=0.0)
    start = np.ones(ev.size, dtype=bool)
    start[1:] = ev[1:] != ev[:-1]
    return np.where(start, cum, d)


def amc_curve_number(cn2: float, rain_mm: np.ndarray, base_dt_s: float, amc: str | None,
                     initial_antecedent_mm: float = 40.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per-step curve number and event ids for a rain series.

    ``amc`` fixes the antecedent condition ("I", "II", "III"); None derives it
    per event from the 5-day antecedent rain (NEH-4 growing season: < 36 mm
    dry, > 53 mm wet).
    """
    gap = round(EVENT_GAP_S / base_dt_s)
    ev = _event_ids(rain_mm > 0, gap)
    cn = np.full(rain_mm.size, cn2, dtype=float)
    if amc is not None:
        cn[:] = float(curve_number_amc(cn2, amc)) if amc != "II" else cn2
        return cn, ev
    cum = np.concatenate([[0.0], np.cumsum(rain_mm)])
    win = round(ANTECEDENT_S / base_dt_s)
    starts = np.flatnonzero(np.diff(ev, prepend=-1) > 0)
    cn_i, cn_iii = float(curve_number_amc(cn2, "I")), float(curve_number_amc(cn2, "III"))
    for s in starts:
        lo = s - win
        ante = cum[s] - cum[max(lo, 0)] + (initial_antecedent_mm if lo < 0 else 0.0)
        value = cn_i if ante < AMC_DRY_MM else (cn_iii if ante > AMC_WET_MM else cn2)
        cn[s:] = value
    return cn, ev


def event_runoff_mm(rain_mm: np.ndarray, cn: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """Curve-number excess per step from the cumulative event rain (NEH-630 ch. 10)."""
    p_event = _segment_cumsum(rain_mm, ev)
    q = scs_runoff_mm(p_event, cn)
    q = np.where(ev < 0, 0.0, q)
    return np.maximum(_segment_diff(q, ev), 0.0)


def incremental_musle_t(vol_m3: np.ndarray, q_m3_s: np.ndarray, k: float, ls: float, c: float,
                        p: float, max_ssc_kg_m3: float) -> np.ndarray:  # fmt: skip
    """Sediment per step [t] by MUSLE applied to the event so far.

    ``sed(V, qp) = 11.8 (V qp)^0.56 K LS C P`` is evaluated with V the event's
    runoff volume so far and qp its peak discharge so far, and each step
    receives the increase; the event total is exactly Williams' MUSLE of the
    event. An event is a run of steps with flow. A concentration cap
    (hyperconcentrated-flow limit) defers load to later steps of the same
    event; load still deferred when the event ends is not delivered.

    Parameters
    ----------
    vol_m3 : runoff volume in each step [m3]
    q_m3_s : discharge at the end of each step (or its mean) [m3/s]
    """
    active = vol_m3 > 0
    if not active.any():
        return np.zeros(vol_m3.size)
    ev = np.maximum(_event_ids(active, 1), 0)
    vcum = _segment_cumsum(vol_m3, ev)
    qpk = _segment_runmax(np.where(active, q_m3_s, 0.0), ev)
    f = musle_sediment_t(vcum, qpk, k, ls, c, p)
    sed = np.where(active, np.maximum(_segment_diff(f, ev), 0.0), 0.0)
    cap = max_ssc_kg_m3 * vol_m3 / 1000.0
    if np.all(sed <= cap):
        return sed
    out = np.zeros_like(sed)
    carry = 0.0
    prev = -1
    for i in np.flatnonzero(active):
        if ev[i] != prev:
            carry = 0.0
            prev = ev[i]
        want = sed[i] + carry
        out[i] = min(want, cap[i])
        carry = want - out[i]
    return out


def build_grid(active: np.ndarray, base_dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive grid over the base steps: returns (base index of each grid step start,
    number of base steps in each grid step)."""
    n = active.size
    nb = n // COARSE_FACTOR
    starts: list[np.ndarray] = []
    lens: list[np.ndarray] = []
    blocks_active = active[: nb * COARSE_FACTOR].reshape(nb, COARSE_FACTOR).any(axis=1)
    block_start = np.arange(nb) * COARSE_FACTOR
    # coarse blocks: one step; active blocks: COARSE_FACTOR base steps
    fine = np.repeat(blocks_active, COARSE_FACTOR)
    s_all = np.where(
        fine,
        np.arange(nb * COARSE_FACTOR),
        np.repeat(block_start, COARSE_FACTOR),
    )
    keep = fine | (np.arange(nb * COARSE_FACTOR) % COARSE_FACTOR == 0)
    starts.append(s_all[keep])
    lens.append(np.where(fine[keep], 1, COARSE_FACTOR))
    if n > nb * COARSE_FACTOR:
        starts.append(np.arange(nb * COARSE_FACTOR, n))
        lens.append(np.ones(n - nb * COARSE_FACTOR, dtype=np.int64))
    return np.concatenate(starts).astype(np.int64), np.concatenate(lens).astype(np.int64)


def _agg(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(x, starts) if x.size else x


# ----------------------------------------------------------------------------- sites
def _check_dam(spec: CheckDamSpec) -> CheckDam:
    return CheckDam(
        storage_a=spec.stage_storage.a,
        storage_b=spec.stage_storage.b,
        spillway_crest_m=spec.spillway.crest_m if spec.spillway else spec.dam_crest_m,
        spillway_width_m=spec.spillway.width_m if spec.spillway else 0.0,
        spillway_coefficient=spec.spillway.coefficient if spec.spillway else 0.385,
        culvert_centre_m=spec.culvert.centre_m if spec.culvert else None,
        culvert_area_m2=spec.culvert.area_m2 if spec.culvert else 0.0,
        culvert_coefficient=spec.culvert.coefficient if spec.culvert else 0.6,
        dam_crest_m=spec.dam_crest_m,
        dam_crest_length_m=spec.dam_crest_length_m,
    )


def _route_dam(spec: CheckDamSpec, dam: CheckDam, t_pts: np.ndarray, dt: np.ndarray,
               vin: np.ndarray, sin_t: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """Step one dam through the grid. vin [m3] and sin_t [t] per step."""
    n = dt.size
    a, b = spec.stage_storage.a, spec.stage_storage.b
    inv_b = 1.0 / b
    loss_m_s = spec.loss_mm_day / 1000.0 / 86400.0
    ws = spec.settling_velocity_m_s
    rho = spec.dry_bulk_density_t_m3
    reduce = spec.deposit_reduces_storage
    s = float(dam.storage_m3(spec.initial_stage_m))
    susp = 0.0
    vdep = 0.0
    dep_total = 0.0
    stor = np.zeros(n + 1)
    h_tot = np.zeros(n + 1)
    released = np.zeros(n)
    loss = np.zeros(n)
    sout = np.zeros(n)
    dep = np.zeros(n)
    susp_a = np.zeros(n + 1)
    dep_cum = np.zeros(n + 1)
    pond_ssc = np.zeros(n + 1)
    out_ssc = np.zeros(n + 1)
    stor[0] = s
    h_tot[0] = (s / a) ** inv_b if s > 0 else 0.0
    outflow_of = dam.outflow_of_storage

    for j in range(n):
        d = float(dt[j])
        v_in = float(vin[j])
        if s == 0.0 and v_in == 0.0 and susp == 0.0:
            stor[j + 1] = 0.0
            h_tot[j + 1] = (vdep / a) ** inv_b if vdep > 0 else 0.0
            susp_a[j + 1] = 0.0
            dep_cum[j + 1] = dep_total
            continue
        q_in = v_in / d
        if vdep > 0.0:
            vd = vdep

            def o_of(x: float, vd=vd) -> float:
                return outflow_of(x + vd)
        else:
            o_of = outflow_of
        step = level_pool_step(s, q_in, q_in, d, o_of)
        s2, rel = step.storage_m3, step.outflow_volume_m3
        h2 = ((s2 + vdep) / a) ** inv_b if (s2 + vdep) > 0 else 0.0
        lo = 0.0
        if s2 > 0.0 and loss_m_s > 0.0 and h2 > 0.0:
            area = a * b * h2 ** (b - 1.0)
            lo = min(s2, loss_m_s * area * d)
            s2 -= lo
        # sediment: fully mixed pond, outflow at the mixed concentration, then settling
        m_tot = susp + float(sin_t[j])
        w_tot = s + v_in
        conc = m_tot / w_tot if w_tot > 0 else 0.0  # t/m3
        so = min(m_tot, conc * rel)
        m_left = m_tot - so
        if s2 <= 1e-9:
            de = m_left
        else:
            h_w = ((s2 + vdep) / a) ** inv_b
            mean_depth = max(h_w * inv_b, 0.02)
            de = m_left * (1.0 - math.exp(-ws * d / mean_depth))
        susp = m_left - de
        dep_total += de
        if reduce and de > 0:
            vdep += de / rho
        s = s2
        stor[j + 1] = s
        h_tot[j + 1] = ((s + vdep) / a) ** inv_b if (s + vdep) > 0 else 0.0
        released[j] = rel
        loss[j] = lo
        sout[j] = so
        dep[j] = de
        susp_a[j + 1] = susp
        dep_cum[j + 1] = dep_total
        pond_ssc[j + 1] = susp / s * 1000.0 if s > 1e-6 else 0.0
        out_ssc[j] = conc * 1000.0
    comps = dam.outflow_components_m3_s(h_tot)
    out_ssc_pts = np.concatenate([[0.0], out_ssc[:n]])
    return {
        "volume_m3": stor,
        "stage_m": h_tot,
        "outflow_volume_m3": np.concatenate([[0.0], released]),
        "loss_volume_m3": np.concatenate([[0.0], loss]),
        "sediment_out_t": np.concatenate([[0.0], sout]),
        "sediment_deposited_t": np.concatenate([[0.0], dep]),
        "sediment_suspended_t": susp_a,
        "deposit_t": dep_cum,
        "deposit_volume_m3": dep_cum / rho,
        "pond_ssc_kg_m3": pond_ssc,
        "outflow_ssc_kg_m3": out_ssc_pts,
        "spillway_m3_s": comps["spillway_m3_s"],
        "culvert_m3_s": comps["culvert_m3_s"],
        "overtopping_m3_s": comps["overtopping_m3_s"],
    }


def _crossings(t: np.ndarray, flag: np.ndarray) -> list[float]:
    """Times at which ``flag`` turns true."""
    f = flag.astype(bool)
    rise = f & ~np.concatenate([[False], f[:-1]])
    return [float(x) for x in t[rise]]


# ----------------------------------------------------------------------------- main
def simulate(scenario: Scenario, base_rain_mm: np.ndarray, base_dt_s: float = 60.0,
             amc: str | None = "II") -> SimResult:  # fmt: skip
    """Compute the true state of every site.

    Parameters
    ----------
    scenario : Scenario
    base_rain_mm : array (n_sites, n_base)
        Rain per base step at each site, rows in ``scenario.sites()`` order.
    base_dt_s : float
        Base step [s].
    amc : {"I", "II", "III"} or None
        Antecedent moisture condition for every event, or None to derive it
        from the 5-day antecedent rain of each event.
    """
    sites = scenario.sites()
    ids = [s.id for s in sites]
    row = {i: k for k, i in enumerate(ids)}
    n_base = base_rain_mm.shape[1]
    dams = {d.id: d for d in scenario.check_dams}

    # --- base-grid hydrology of each dam's own catchment and of each plot --------
    local_q: dict[str, np.ndarray] = {}
    local_sed: dict[str, np.ndarray] = {}
    excess_total_m3 = 0.0
    for d in scenario.check_dams:
        r = base_rain_mm[row[d.id]]
        cn, ev = amc_curve_number(d.catchment.curve_number, r, base_dt_s, amc)
        excess = event_runoff_mm(r, cn, ev)
        excess_total_m3 += float(excess.sum()) * d.catchment.area_km2 * 1000.0
        conv = scs_hydrograph_m3_s(excess, base_dt_s, d.catchment.area_km2, d.catchment.tc_h)
        q = np.zeros(n_base + 1)
        m = min(n_base, conv.size)
        q[1 : m + 1] = conv[:m]
        local_q[d.id] = q
        c = d.catchment
        ls = float(ls_factor(c.slope_length_m, math.atan(c.slope_pct / 100.0), method="csle"))
        vol = 0.5 * (q[:-1] + q[1:]) * base_dt_s
        local_sed[d.id] = incremental_musle_t(
            vol, q[1:], c.k_factor, ls, c.c_factor, c.p_factor, d.max_ssc_kg_m3
        )
    plot_q: dict[str, np.ndarray] = {}
    plot_sed: dict[str, np.ndarray] = {}
    for p in scenario.runoff_plots:
        r = base_rain_mm[row[p.id]]
        cn, ev = amc_curve_number(p.curve_number, r, base_dt_s, amc)
        excess = event_runoff_mm(r, cn, ev)
        qm = excess / 1000.0 * p.area_m2 / base_dt_s  # mean over each step
        q = np.concatenate([[0.0], qm])
        plot_q[p.id] = q
        ls = float(ls_factor(p.length_m, math.atan(p.slope_pct / 100.0), method="csle"))
        plot_sed[p.id] = incremental_musle_t(
            qm * base_dt_s, qm, p.k_factor, ls, p.c_factor, p.p_factor, 1e9
        )
    cistern_in: dict[str, np.ndarray] = {}
    for cs in scenario.cisterns:
        r = base_rain_mm[row[cs.id]]
        ev = _event_ids(r > 0, round(EVENT_GAP_S / base_dt_s))
        p_ev = _segment_cumsum(r, ev)
        eff = np.where(ev < 0, 0.0, np.maximum(p_ev - cs.initial_loss_mm, 0.0))
        inc = np.maximum(_segment_diff(eff, ev), 0.0)
        cistern_in[cs.id] = inc / 1000.0 * cs.catchment_area_m2 * cs.runoff_coefficient

    # --- adaptive grid --------------------------------------------------------------
    wet = (base_rain_mm > 0).any(axis=0)
    after = round(ACTIVE_AFTER_RAIN_S / base_dt_s)
    wet_recent = np.convolve(wet.astype(float), np.ones(after + 1))[:n_base] > 0
    flowing = np.zeros(n_base, dtype=bool)
    for q in local_q.values():
        flowing |= (q[:-1] > 0) | (q[1:] > 0)
    starts, lens = build_grid(wet_recent | flowing, base_dt_s)
    dt = lens * base_dt_s
    t_pts = np.concatenate([[0.0], np.cumsum(dt)])
    end_idx = starts + lens  # base point index of each grid point (after index 0)
    pt_idx = np.concatenate([[0], end_idx])
    n = dt.size

    truths: dict[str, SiteTruth] = {}

    def rain_col(site_id: str) -> np.ndarray:
        return np.concatenate([[0.0], _agg(base_rain_mm[row[site_id]], starts)])

    # --- dams, top down -------------------------------------------------------------
    routed: dict[str, dict[str, np.ndarray]] = {}
    for dam_id in scenario.dam_order():
        spec = dams[dam_id]
        dam = _check_dam(spec)
        q = local_q[dam_id]
        local_vol = _agg(0.5 * (q[:-1] + q[1:]) * base_dt_s, starts)
        local_s = _agg(local_sed[dam_id], starts)
        vin = local_vol.copy()
        sin_t = local_s.copy()
        q_in_pts = q[pt_idx].copy()
        for up in scenario.upstream_of(dam_id):
            vin += routed[up]["outflow_volume_m3"][1:]
            sin_t += routed[up]["sediment_out_t"][1:]
            q_in_pts += routed[up]["outflow_m3_s"]
        res = _route_dam(spec, dam, t_pts, dt, vin, sin_t)
        res["outflow_m3_s"] = res["spillway_m3_s"] + res["culvert_m3_s"] + res["overtopping_m3_s"]
        res["inflow_m3_s"] = q_in_pts
        res["inflow_volume_m3"] = np.concatenate([[0.0], vin])
        res["local_inflow_volume_m3"] = np.concatenate([[0.0], local_vol])
        res["sediment_in_t"] = np.concatenate([[0.0], sin_t])
        res["local_sediment_t"] = np.concatenate([[0.0], local_s])
        with np.errstate(divide="ignore", invalid="ignore"):
            res["inflow_ssc_kg_m3"] = np.where(
                res["inflow_volume_m3"] > 0,
                res["sediment_in_t"] * 1000.0 / np.where(res["inflow_volume_m3"] > 0,
                                                         res["inflow_volume_m3"], 1.0),
                0.0,
            )  # fmt: skip
        res["sediment_retained_t"] = res["deposit_t"] + res["sediment_suspended_t"]
        res["rain_mm"] = rain_col(dam_id)
        routed[dam_id] = res
        truth = SiteTruth(dam_id, "check_dam", res)
        truth.events["overtopping"] = _crossings(t_pts, res["stage_m"] > spec.dam_crest_m)
        if spec.spillway:
            truth.events["spillway_flow"] = _crossings(t_pts, res["spillway_m3_s"] > 0)
        truth.constants = {
            "dam_crest_m": spec.dam_crest_m,
            "spillway_crest_m": spec.spillway.crest_m if spec.spillway else float("nan"),
        }
        truths[dam_id] = truth

    # --- cisterns -------------------------------------------------------------------
    for cs in scenario.cisterns:
        truths[cs.id] = _cistern(cs, cistern_in[cs.id], starts, dt, t_pts)
        truths[cs.id].columns["rain_mm"] = rain_col(cs.id)

    # --- runoff plots ---------------------------------------------------------------
    for p in scenario.runoff_plots:
        q = plot_q[p.id]
        vol = _agg(q[1:] * base_dt_s, starts)
        sed = _agg(plot_sed[p.id], starts)
        zero = np.zeros(n + 1)
        cols = {
            "rain_mm": rain_col(p.id),
            "inflow_m3_s": q[pt_idx],
            "runoff_m3_s": q[pt_idx],
            "inflow_volume_m3": np.concatenate([[0.0], vol]),
            "outflow_volume_m3": np.concatenate([[0.0], vol]),  # to the collecting tank
            "volume_m3": zero,
            "soil_loss_t": np.concatenate([[0.0], sed]),
            "sediment_in_t": np.concatenate([[0.0], sed]),
            "sediment_out_t": np.concatenate([[0.0], sed]),
            "sediment_retained_t": zero,
            "tank_volume_m3": np.concatenate([[0.0], np.cumsum(vol)]),
            "tank_sediment_t": np.concatenate([[0.0], np.cumsum(sed)]),
        }
        truths[p.id] = SiteTruth(p.id, "runoff_plot", cols)

    for g in scenario.rain_gauges:
        truths[g.id] = SiteTruth(g.id, "rain_gauge", {"rain_mm": rain_col(g.id)})

    # --- run-level balance of the dam systems -----------------------------------
    terminal = [d.id for d in scenario.check_dams if d.downstream is None]
    tot_local = sum(float(r["local_inflow_volume_m3"].sum()) for r in routed.values())
    tot_out = sum(float(routed[t]["outflow_volume_m3"].sum()) for t in terminal)
    tot_loss = sum(float(r["loss_volume_m3"].sum()) for r in routed.values())
    d_store = sum(float(r["volume_m3"][-1] - r["volume_m3"][0]) for r in routed.values())
    s_local = sum(float(r["local_sediment_t"].sum()) for r in routed.values())
    s_out = sum(float(routed[t]["sediment_out_t"].sum()) for t in terminal)
    s_ret = sum(float(r["sediment_retained_t"][-1]) for r in routed.values())
    run = {
        "catchment_excess_m3": excess_total_m3,
        "local_inflow_m3": tot_local,
        "runoff_still_arriving_m3": excess_total_m3 - tot_local,
        "system_outflow_m3": tot_out,
        "system_loss_m3": tot_loss,
        "system_storage_change_m3": d_store,
        "water_balance_rel_error": abs(tot_local - tot_out - tot_loss - d_store)
        / max(tot_local, 1e-9),
        "sediment_in_t": s_local,
        "sediment_out_t": s_out,
        "sediment_retained_t": s_ret,
        "sediment_balance_rel_error": abs(s_local - s_out - s_ret) / max(s_local, 1e-12),
    }
    return SimResult(t_pts, dt, base_dt_s, base_rain_mm, ids, truths, run)


def _cistern(cs: CisternSpec, inflow_base: np.ndarray, starts: np.ndarray, dt: np.ndarray,
             t_pts: np.ndarray) -> SiteTruth:  # fmt: skip
    g = cs.geometry
    if g.shape == "bottle":
        args = (g.body_diameter_m, g.body_height_m, g.neck_diameter_m, g.shoulder_height_m,
                g.neck_height_m, g.bottom_diameter_m)  # fmt: skip
        height = g.body_height_m + g.shoulder_height_m + g.neck_height_m

        def vol_of(h):
            return bottle_cistern_volume_m3(h, *args)

        def level_of(v):
            return bottle_cistern_level_m(v, *args)
    else:
        height = g.depth_m or g.body_height_m

        def vol_of(h):
            return cylinder_cistern_volume_m3(h, g.body_diameter_m, height)

        def level_of(v):
            return cylinder_cistern_level_m(v, g.body_diameter_m)

    top = cs.overflow_level_m if cs.overflow_level_m is not None else height
    cap = float(vol_of(min(top, height)))
    v = min(float(vol_of(cs.initial_level_m)), cap)
    vin = _agg(inflow_base, starts)
    n = dt.size
    vol = np.empty(n + 1)
    over = np.zeros(n)
    use = np.zeros(n)
    vol[0] = v
    use_rate = cs.use_m3_day / 86400.0
    for j in range(n):
        v += float(vin[j])
        u = min(v, use_rate * float(dt[j]))
        v -= u
        o = v - cap if v > cap else 0.0
        v -= o
        vol[j + 1] = v
        over[j] = o
        use[j] = u
    level = np.asarray(level_of(np.minimum(vol, cap)), dtype=float)
    over_pts = np.concatenate([[0.0], over])
    cols = {
        "volume_m3": vol,
        "level_m": level,
        "inflow_volume_m3": np.concatenate([[0.0], vin]),
        "outflow_volume_m3": over_pts,
        "overflow_volume_m3": over_pts,
        "use_volume_m3": np.concatenate([[0.0], use]),
        "inflow_m3_s": np.concatenate([[0.0], vin / dt]),
        "outflow_m3_s": np.concatenate([[0.0], over / dt]),
    }
    truth = SiteTruth(cs.id, "cistern", cols)
    truth.events["overflow"] = _crossings(t_pts, over_pts > 0)
    truth.constants = {"capacity_m3": cap, "overflow_level_m": float(top)}
    return truth


def site_kinds(scenario: Scenario) -> dict[str, str]:
    return {s.id: kind_of(s) for s in scenario.sites()}
