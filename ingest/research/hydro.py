"""Array-level methods of the derived products: stage-storage curves, check-dam
outlet hydraulics, inflow reconstruction from stage, the mixed-pond sediment
model, and smoothing. Pure numpy; the database layer is in :mod:`.products`.

Times are float seconds (any origin), sorted and unique.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from analytics.hydraulics import broad_crested_weir_m3_s, orifice_m3_s
from analytics.storage import power_storage_m3, table_storage_m3

__all__ = [
    "DEFAULT_SETTLING_VELOCITY_M_S",
    "DamBalance",
    "DamDesign",
    "StageStorage",
    "conserving_clip",
    "dam_balance",
    "moving_average",
]

#: Stokes settling velocity of a ~20 um loess silt grain in water at 20 C [m/s]
#: (g d^2 (rho_s - rho) / (18 mu) = 9.81 * (20e-6)^2 * 1650 / 0.018 = 3.6e-4).
DEFAULT_SETTLING_VELOCITY_M_S = 4e-4
#: Dry bulk density of a check-dam deposit when a site gives none [t/m3]
#: (Lara and Pemberton type 4, silt-dominated loess: about 1.2-1.4).
DEFAULT_DRY_BULK_DENSITY_T_M3 = 1.35
_OVERTOPPING_COEFFICIENT = 0.32


@dataclass(frozen=True)
class StageStorage:
    """One version of a dam's stage-storage curve (stages in the gauge datum).

    ``kind="power"``: ``V = a h^b``; ``kind="table"``: PCHIP through the survey
    table (:func:`analytics.storage.table_storage_m3`), extended above the last
    surveyed stage with the slope of the last segment (counted in the
    products as ``stage_above_curve_share``).
    """

    kind: str
    a: float | None = None
    b: float | None = None
    stages_m: tuple[float, ...] = ()
    volumes_m3: tuple[float, ...] = ()
    id: int | None = None  # None: the design curve from sites.params
    valid_from: datetime | None = None
    source: str = "design"

    def volume_m3(self, stage_m) -> np.ndarray:
        h = np.asarray(stage_m, dtype=float)
        if self.kind == "power":
            return power_storage_m3(h, self.a, self.b)
        th = np.asarray(self.stages_m, dtype=float)
        tv = np.asarray(self.volumes_m3, dtype=float)
        inside = table_storage_m3(np.minimum(h, th[-1]), th, tv)
        slope = (tv[-1] - tv[-2]) / (th[-1] - th[-2])
        return np.where(h > th[-1], tv[-1] + slope * (h - th[-1]), inside)

    def area_m2(self, stage_m) -> np.ndarray:
        """Water-surface area dV/dh [m2] at a stage."""
        h = np.asarray(stage_m, dtype=float)
        if self.kind == "power":
            hp = np.where(h > 0, h, 0.0)
            return np.where(h > 0, self.a * self.b * hp ** (self.b - 1.0), 0.0)
        d = 1e-3
        lo = np.maximum(h - d, self.stages_m[0])
        return (self.volume_m3(h + d) - self.volume_m3(lo)) / (h + d - lo)

    def max_stage_m(self) -> float:
        return float(self.stages_m[-1]) if self.kind == "table" else math.inf

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "a": self.a,
            "b": self.b,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "source": self.source,
        }


@dataclass(frozen=True)
class DamDesign:
    """Outlets and pond parameters of a check dam, read from ``sites.params``.

    Keys (the simulator's registry conventions, docs/simulator.md): ``spillway_crest_m``,
    ``spillway_width_m``, ``spillway_coefficient`` (0.36), ``culvert_centre_m``,
    ``culvert_area_m2``, ``culvert_coefficient`` (0.6), ``dam_crest_m``,
    ``dam_crest_length_m``, ``loss_mm_day`` (0), ``dry_bulk_density_t_m3`` (1.35),
    ``settling_velocity_m_s`` (4e-4). All stages are in the gauge datum.
    """

    spillway_crest_m: float | None = None
    spillway_width_m: float = 0.0
    spillway_coefficient: float = 0.36
    culvert_centre_m: float | None = None
    culvert_area_m2: float = 0.0
    culvert_coefficient: float = 0.6
    dam_crest_m: float | None = None
    dam_crest_length_m: float = 0.0
    loss_mm_day: float = 0.0
    dry_bulk_density_t_m3: float = DEFAULT_DRY_BULK_DENSITY_T_M3
    settling_velocity_m_s: float = DEFAULT_SETTLING_VELOCITY_M_S
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DamDesign:
        def f(key: str, default=None):
            v = params.get(key, default)
            return None if v is None else float(v)

        return cls(
            spillway_crest_m=f("spillway_crest_m"),
            spillway_width_m=f("spillway_width_m", 0.0),
            spillway_coefficient=f("spillway_coefficient", 0.36),
            culvert_centre_m=f("culvert_centre_m"),
            culvert_area_m2=f("culvert_area_m2", 0.0),
            culvert_coefficient=f("culvert_coefficient", 0.6),
            dam_crest_m=f("dam_crest_m"),
            dam_crest_length_m=f("dam_crest_length_m", 0.0),
            loss_mm_day=f("loss_mm_day", 0.0),
            dry_bulk_density_t_m3=f("dry_bulk_density_t_m3", DEFAULT_DRY_BULK_DENSITY_T_M3),
            settling_velocity_m_s=f("settling_velocity_m_s", DEFAULT_SETTLING_VELOCITY_M_S),
        )

    def outflow_components_m3_s(self, stage_m) -> dict[str, np.ndarray]:
        """Spillway (broad-crested weir), culvert (orifice) and crest overtopping [m3/s]."""
        h = np.nan_to_num(np.asarray(stage_m, dtype=float), nan=0.0)
        zero = np.zeros_like(h)
        spill = zero
        if self.spillway_crest_m is not None and self.spillway_width_m > 0:
            spill = broad_crested_weir_m3_s(
                h - self.spillway_crest_m, self.spillway_width_m, self.spillway_coefficient
            )
        culvert = zero
        if self.culvert_centre_m is not None and self.culvert_area_m2 > 0:
            culvert = orifice_m3_s(
                h - self.culvert_centre_m, self.culvert_area_m2, self.culvert_coefficient
            )
        over = zero
        if self.dam_crest_m is not None and self.dam_crest_length_m > 0:
            over = broad_crested_weir_m3_s(
                h - self.dam_crest_m, self.dam_crest_length_m, _OVERTOPPING_COEFFICIENT
            )
        return {"spillway_m3_s": spill, "culvert_m3_s": culvert, "overtopping_m3_s": over}

    def outflow_m3_s(self, stage_m) -> np.ndarray:
        c = self.outflow_components_m3_s(stage_m)
        return c["spillway_m3_s"] + c["culvert_m3_s"] + c["overtopping_m3_s"]


def moving_average(t_s: np.ndarray, x: np.ndarray, window_s: float) -> np.ndarray:
    """Centred moving average over ``[t - w/2, t + w/2]`` (irregular times, O(n log n))."""
    t = np.asarray(t_s, dtype=float)
    v = np.asarray(x, dtype=float)
    if window_s <= 0 or v.size < 3:
        return v.copy()
    c = np.concatenate([[0.0], np.cumsum(v)])
    lo = np.searchsorted(t, t - window_s / 2.0, side="left")
    hi = np.searchsorted(t, t + window_s / 2.0, side="right")
    return (c[hi] - c[lo]) / (hi - lo)


def conserving_clip(raw: np.ndarray, reset: np.ndarray | None = None) -> np.ndarray:
    """Non-negative series with the same running total where possible.

    A negative value (stage noise makes the reconstructed inflow of an interval
    negative) is set to 0 and its deficit is taken from the following positive
    values, so that the total volume is kept and no interval carries a negative
    sediment flux. ``reset[k]`` drops any deficit still carried at ``k`` (event
    starts), so noise in a dry spell never eats into the next flood.
    """
    out = np.empty_like(raw)
    carry = 0.0
    for k, x in enumerate(raw.tolist()):
        if reset is not None and reset[k]:
            carry = 0.0
        y = x + carry
        if y < 0.0:
            out[k] = 0.0
            carry = y
        else:
            out[k] = y
            carry = 0.0
    return out


@dataclass
class DamBalance:
    """Per-interval water and sediment balance of a check dam (interval k = t[k]..t[k+1])."""

    t_s: np.ndarray  # points (n)
    stage_m: np.ndarray  # smoothed stage at the points (n)
    inflow_m3: np.ndarray  # (n-1)
    outflow_m3: np.ndarray
    spill_m3: np.ndarray  # over the spillway and the crest
    loss_m3: np.ndarray
    sediment_in_t: np.ndarray
    sediment_out_t: np.ndarray
    deposit_t: np.ndarray
    suspended_t: np.ndarray  # at the points (n)
    outflow_source: str
    sediment_out_method: str


def dam_balance(
    t_s: np.ndarray,
    stage_m: np.ndarray,
    curves: list[StageStorage],
    curve_index: np.ndarray,
    design: DamDesign,
    inflow_ssc_kg_m3: np.ndarray | None = None,
    outflow_m3_s: np.ndarray | None = None,
    outflow_ssc_kg_m3: np.ndarray | None = None,
    reset: np.ndarray | None = None,
    iterations: int = 3,
) -> DamBalance:
    """Water and sediment balance of a check dam from its stage record.

    Parameters
    ----------
    t_s : times [s] of the (smoothed) stage samples, sorted, unique.
    stage_m : stage above the gauge datum [m].
    curves, curve_index : the stage-storage curve used for each interval
        (``curves[curve_index[k]]`` for interval k), so a re-survey never
        produces a storage jump inside an interval.
    design : outlets, seepage/evaporation loss, deposit density, settling velocity.
    inflow_ssc_kg_m3 : SSC of the inflow at the points [kg/m3], or None.
    outflow_m3_s : measured total outflow at the points [m3/s]; None uses the
        outlet hydraulics of ``design`` at the measured stage.
    outflow_ssc_kg_m3 : measured SSC of the outflow (a pond or outflow turbidity
        sensor) at the points; None uses the mixed-pond model.
    reset : interval flags at the event starts: there the inflow deficit carry
        is dropped, the deposit count restarts and the pond is taken as clear
        of suspended sediment, so each event's numbers depend on its own
        window only (deposits of earlier events belong to the curve's next
        survey; what was still suspended at the end of an event counted as
        retained in it).

    Notes
    -----
    Continuity per interval: ``I = dS + O + L`` with ``S = V(h) - V_dep``,
    ``O`` the outflow (trapezoid of the rates at both ends), ``L`` the
    seepage/evaporation ``loss_mm_day`` over the wetted area ``dV/dh``. The
    new deposit occupies pond volume (the stage is the surface of water over
    deposit), so ``V_dep`` (deposited mass / dry bulk density) is taken out;
    it comes from the sediment model and is iterated to a fixed point.
    Sediment in per interval = inflow volume x mean inflow SSC. Sediment out:
    outflow volume x measured outflow SSC, or the fully mixed pond (the
    outflow carries the pond concentration ``M / (S + I)``) with first-order
    settling ``1 - exp(-w_s dt / d)`` of the suspended mass over the mean
    depth ``d = V / A`` (``h / b`` for a power curve); a pond that empties
    deposits what it holds.
    """
    t = np.asarray(t_s, dtype=float)
    h = np.asarray(stage_m, dtype=float)
    n = t.size
    m = max(n - 1, 0)
    dt = np.diff(t)
    ci = np.asarray(curve_index, dtype=np.int64)
    v0 = np.empty(m)
    v1 = np.empty(m)
    area = np.zeros(n)
    vol_pt = np.zeros(n)
    for j, cv in enumerate(curves):
        sel = ci == j
        if not sel.any():
            continue
        idx = np.flatnonzero(sel)
        v0[idx] = cv.volume_m3(h[idx])
        v1[idx] = cv.volume_m3(h[idx + 1])
        pts = np.unique(np.concatenate([idx, idx + 1]))
        area[pts] = cv.area_m2(h[pts])
        vol_pt[pts] = cv.volume_m3(h[pts])
    comps = design.outflow_components_m3_s(h)
    if outflow_m3_s is not None:
        q_out = np.maximum(np.nan_to_num(np.asarray(outflow_m3_s, dtype=float)), 0.0)
        source = "measured"
    else:
        q_out = comps["spillway_m3_s"] + comps["culvert_m3_s"] + comps["overtopping_m3_s"]
        source = "hydraulics"
    q_spill = comps["spillway_m3_s"] + comps["overtopping_m3_s"]
    loss_rate = design.loss_mm_day / 1000.0 / 86400.0 * np.where(h > 0, area, 0.0)
    v_out = 0.5 * (q_out[:-1] + q_out[1:]) * dt
    v_spill = 0.5 * (q_spill[:-1] + q_spill[1:]) * dt
    v_loss = 0.5 * (loss_rate[:-1] + loss_rate[1:]) * dt
    dv = v1 - v0
    c_in = None if inflow_ssc_kg_m3 is None else np.maximum(np.nan_to_num(inflow_ssc_kg_m3), 0.0)
    c_out = None
    if outflow_ssc_kg_m3 is not None:
        c_out = np.maximum(np.nan_to_num(outflow_ssc_kg_m3), 0.0)
    rho = design.dry_bulk_density_t_m3
    dep_v = np.zeros(m)
    sed_in = np.zeros(m)
    sed_out = np.zeros(m)
    dep = np.zeros(m)
    susp = np.zeros(n)
    v_in = conserving_clip(dv + v_out + v_loss, reset)
    for _ in range(max(iterations, 1) if c_in is not None else 0):
        v_in = conserving_clip(dv - dep_v + v_out + v_loss, reset)
        sed_in = v_in * 0.5 * (c_in[:-1] + c_in[1:]) / 1000.0
        if c_out is not None:
            sed_out = v_out * 0.5 * (c_out[:-1] + c_out[1:]) / 1000.0
        water = np.maximum(vol_pt - _segment_cumsum(dep_v, reset), 0.0)
        sed_out, dep, susp = _mixed_pond(
            dt, water, vol_pt, area, v_in, v_out, sed_in, sed_out if c_out is not None else None,
            design.settling_velocity_m_s, reset,
        )  # fmt: skip
        dep_v = dep / rho
    return DamBalance(
        t_s=t,
        stage_m=h,
        inflow_m3=v_in,
        outflow_m3=v_out,
        spill_m3=v_spill,
        loss_m3=v_loss,
        sediment_in_t=sed_in,
        sediment_out_t=sed_out,
        deposit_t=dep,
        suspended_t=susp,
        outflow_source=source,
        sediment_out_method="outflow turbidity" if c_out is not None else "mixed pond model",
    )


def _segment_cumsum(x: np.ndarray, reset: np.ndarray | None) -> np.ndarray:
    """Cumulative sum at the points (length n) of interval values, restarting at resets."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    if reset is None or not reset.any():
        return c
    base = np.zeros(c.size)
    idx = np.flatnonzero(reset)
    base[idx] = c[idx]
    base = np.maximum.accumulate(np.where(np.isin(np.arange(c.size), idx), base, -np.inf))
    return c - np.where(np.isfinite(base), base, 0.0)


def _mixed_pond(dt, water, vol_total, area, v_in, v_out, sed_in, sed_out_measured, ws, reset):
    m = dt.size
    sed_out = np.zeros(m)
    dep = np.zeros(m)
    susp = np.zeros(m + 1)
    mass = 0.0
    water_l = water.tolist()
    for k in range(m):
        if reset is not None and reset[k]:
            mass = 0.0  # each event starts with a clear pond (see dam_balance)
        mass += float(sed_in[k])
        if sed_out_measured is not None:
            so = min(mass, float(sed_out_measured[k]))
        else:
            w = water_l[k] + float(v_in[k])
            so = min(mass, mass / w * float(v_out[k])) if w > 0 else 0.0
        mass -= so
        w_end = water_l[k + 1]
        if w_end <= 1e-6:
            de = mass
        else:
            mean_depth = max(float(vol_total[k + 1]) / max(float(area[k + 1]), 1e-9), 0.02)
            de = mass * (1.0 - math.exp(-ws * float(dt[k]) / mean_depth))
        mass -= de
        sed_out[k] = so
        dep[k] = de
        susp[k + 1] = mass
    return sed_out, dep, susp
