"""Storage: stage-storage curves (power law and tabulated), level-pool (modified
Puls) routing through check dams, and cistern geometry."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import interpolate, optimize

from ._validation import (
    as_float_array,
    check_nonnegative,
    check_positive,
    check_same_length,
)

__all__ = [
    "CheckDam",
    "RoutingStep",
    "bottle_cistern_level_m",
    "bottle_cistern_volume_m3",
    "cylinder_cistern_level_m",
    "cylinder_cistern_volume_m3",
    "fit_power_stage_storage",
    "level_pool_route",
    "level_pool_step",
    "power_stage_m",
    "power_storage_m3",
    "route_check_dam",
    "table_stage_m",
    "table_storage_m3",
]

_G = 9.80665
_SQRT_2G = math.sqrt(2.0 * _G)


# --------------------------------------------------------------------------- curves
def fit_power_stage_storage(stage_m, volume_m3) -> tuple[float, float]:
    """Fit the stage-storage curve ``V = a h^b`` to survey points.

    Parameters
    ----------
    stage_m : array_like
        Water depth above the curve's datum (pond bottom or silted level) [m].
        Points with ``h == 0`` and ``V == 0`` are dropped (the law passes
        through the origin); other non-positive values raise ``ValueError``.
    volume_m3 : array_like
        Storage at each stage [m3].

    Returns
    -------
    (a, b) : tuple of float
        Coefficient a [m^(3-b)] and exponent b [-].

    Notes
    -----
    Least squares on ``ln V = ln a + b ln h``, i.e. equal relative weights,
    which suits survey volumes whose error grows with size. Valley-shaped
    ponds give b between about 2 (wide flat valley) and 3 (V-shaped gully).
    Needs at least 2 distinct positive points.

    References
    ----------
    SL/T 804-2020 淤地坝技术规范 (Technical code for check dams), stage-storage
    relation for flood routing.
    """
    h = as_float_array(stage_m, "stage_m", ndim=1)
    v = as_float_array(volume_m3, "volume_m3", ndim=1)
    check_same_length(stage_m=h, volume_m3=v)
    if np.any(~np.isfinite(h)) or np.any(~np.isfinite(v)):
        raise ValueError("stage_m and volume_m3 must be finite")
    origin = (h == 0) & (v == 0)
    h, v = h[~origin], v[~origin]
    check_positive(h, "stage_m")
    check_positive(v, "volume_m3")
    if np.unique(h).size < 2:
        raise ValueError("need at least 2 distinct positive stages to fit V = a h^b")
    b, ln_a = np.polyfit(np.log(h), np.log(v), 1)
    return float(np.exp(ln_a)), float(b)


def _check_ab(a, b):
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"a must be > 0, got {a!r}")
    if not (np.isfinite(b) and b > 0):
        raise ValueError(f"b must be > 0, got {b!r}")


def power_storage_m3(stage_m, a: float, b: float) -> np.ndarray:
    """Storage from stage by ``V = a h^b``; 0 for ``h <= 0``; NaN propagates.

    Parameters
    ----------
    stage_m : array_like
        Depth above the curve's datum [m].
    a, b : float
        Curve parameters (see :func:`fit_power_stage_storage`).

    Returns
    -------
    numpy.ndarray
        Storage [m3].
    """
    _check_ab(a, b)
    h = as_float_array(stage_m, "stage_m")
    return np.where(h > 0, a * np.where(h > 0, h, 0.0) ** b, np.where(np.isnan(h), np.nan, 0.0))


def power_stage_m(volume_m3, a: float, b: float) -> np.ndarray:
    """Stage from storage, the inverse ``h = (V / a)^(1/b)``; 0 for ``V <= 0``.

    Parameters
    ----------
    volume_m3 : array_like
        Storage [m3].
    a, b : float
        Curve parameters.

    Returns
    -------
    numpy.ndarray
        Depth above the curve's datum [m].
    """
    _check_ab(a, b)
    v = as_float_array(volume_m3, "volume_m3")
    return np.where(
        v > 0, (np.where(v > 0, v, 0.0) / a) ** (1.0 / b), np.where(np.isnan(v), np.nan, 0.0)
    )


def _table(table_stage_m, table_volume_m3):
    h = as_float_array(table_stage_m, "table_stage_m", ndim=1)
    v = as_float_array(table_volume_m3, "table_volume_m3", ndim=1)
    check_same_length(table_stage_m=h, table_volume_m3=v)
    if h.size < 2:
        raise ValueError("a stage-storage table needs at least 2 rows")
    if np.any(~np.isfinite(h)) or np.any(~np.isfinite(v)):
        raise ValueError("table_stage_m and table_volume_m3 must be finite")
    if np.any(np.diff(h) <= 0):
        raise ValueError("table_stage_m must be strictly increasing")
    if np.any(np.diff(v) <= 0):
        raise ValueError("table_volume_m3 must be strictly increasing")
    check_nonnegative(v, "table_volume_m3")
    return h, v


def table_storage_m3(stage_m, table_stage_m, table_volume_m3) -> np.ndarray:
    """Storage from a tabulated stage-storage curve by monotone interpolation.

    Parameters
    ----------
    stage_m : array_like
        Stage [m] (same datum as the table).
    table_stage_m, table_volume_m3 : array_like
        Survey table, both strictly increasing.

    Returns
    -------
    numpy.ndarray
        Storage [m3] by PCHIP interpolation (shape-preserving, monotone, C1).
        Stages below the table give its first volume; stages above the survey
        give NaN (no extrapolation).

    References
    ----------
    Fritsch, F. N. and Carlson, R. E. (1980) Monotone piecewise cubic
    interpolation. SIAM J. Numer. Anal. 17(2), 238-246.
    """
    th, tv = _table(table_stage_m, table_volume_m3)
    h = as_float_array(stage_m, "stage_m")
    f = interpolate.PchipInterpolator(th, tv, extrapolate=False)
    out = f(np.clip(h, th[0], None))
    return np.where(h > th[-1], np.nan, out)


def table_stage_m(volume_m3, table_stage_m, table_volume_m3) -> np.ndarray:
    """Stage from storage: the exact inverse of :func:`table_storage_m3`.

    Parameters
    ----------
    volume_m3 : array_like
        Storage [m3].
    table_stage_m, table_volume_m3 : array_like
        Survey table, both strictly increasing.

    Returns
    -------
    numpy.ndarray
        Stage [m]; the first table stage below the first volume, NaN above
        the last volume. Found by vectorised bisection on the PCHIP curve to
        1e-12 of the table's stage range, so ``table_storage_m3(table_stage_m(V))``
        returns V to rounding.
    """
    th, tv = _table(table_stage_m, table_volume_m3)
    v = as_float_array(volume_m3, "volume_m3")
    f = interpolate.PchipInterpolator(th, tv, extrapolate=False)
    vv = np.clip(v, tv[0], tv[-1])
    k = np.clip(np.searchsorted(tv, vv, side="right") - 1, 0, th.size - 2)
    lo, hi = th[k].astype(float), th[k + 1].astype(float)
    tol = 1e-12 * (th[-1] - th[0])
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = f(mid) < vv
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
        if np.all(hi - lo <= tol):
            break
    out = 0.5 * (lo + hi)
    out = np.where(v <= tv[0], th[0], out)
    return np.where((v > tv[-1]) | np.isnan(v), np.nan, out)


# --------------------------------------------------------------------------- routing
class RoutingStep(NamedTuple):
    """Result of one level-pool step."""

    storage_m3: float
    """Storage at the end of the step [m3]."""
    outflow_m3_s: float
    """Outflow at the end of the step [m3/s]."""
    outflow_volume_m3: float
    """Volume released during the step [m3]."""


def level_pool_step(
    storage_m3: float,
    inflow_start_m3_s: float,
    inflow_end_m3_s: float,
    dt_s: float,
    outflow_of_storage: Callable[[float], float],
) -> RoutingStep:
    """Advance a level pool (reservoir, check dam) by one time step.

    Parameters
    ----------
    storage_m3 : float
        Storage at the start of the step [m3], >= 0.
    inflow_start_m3_s, inflow_end_m3_s : float
        Inflow at the start and end of the step [m3/s], >= 0.
    dt_s : float
        Step [s], > 0.
    outflow_of_storage : callable
        ``O(S)`` [m3/s] for storage S [m3]: non-decreasing, ``O(0) == 0``
        (e.g. :meth:`CheckDam.outflow_of_storage`).

    Returns
    -------
    RoutingStep
        End storage, end outflow and the volume released in the step.

    Notes
    -----
    Modified Puls (storage-indication) with the trapezoidal rule:
    ``2 S2/dt + O(S2) = I1 + I2 + 2 S1/dt - O(S1)``. The left side increases
    strictly with S2, so the root is unique; it is found by Brent's method.
    The end storage is then set from the water balance
    ``S2 = S1 + dt (I1 + I2)/2 - dt (O1 + O2)/2`` so that each step closes
    its mass balance to rounding error whatever the root tolerance. If the
    outlets would empty the pool within the step, ``S2 = 0`` and the
    released volume is what was available. For dams in series route the top
    dam first and feed its outflow to the next (SL/T 804-2020).

    References
    ----------
    Chow, V. T., Maidment, D. R. and Mays, L. W. (1988) Applied Hydrology,
    section 8.2 (level pool routing).
    """
    s1 = float(storage_m3)
    i1 = float(inflow_start_m3_s)
    i2 = float(inflow_end_m3_s)
    dt = float(dt_s)
    if not dt > 0:
        raise ValueError(f"dt_s must be > 0, got {dt_s!r}")
    if not s1 >= 0:
        raise ValueError(f"storage_m3 must be >= 0, got {storage_m3!r}")
    if not (i1 >= 0 and i2 >= 0):
        raise ValueError(f"inflows must be >= 0, got {inflow_start_m3_s!r}, {inflow_end_m3_s!r}")
    inflow_volume = 0.5 * (i1 + i2) * dt
    if s1 == 0.0 and inflow_volume == 0.0:
        return RoutingStep(0.0, float(outflow_of_storage(0.0)), 0.0)
    o1 = float(outflow_of_storage(s1))
    rhs = i1 + i2 + 2.0 * s1 / dt - o1
    o_zero = float(outflow_of_storage(0.0))
    if rhs <= o_zero:
        # Outlets drain the pool within the step: release what is available.
        return RoutingStep(0.0, o_zero, s1 + inflow_volume)

    def f(s):
        return 2.0 * s / dt + float(outflow_of_storage(s)) - rhs

    hi = 0.5 * rhs * dt  # f(hi) = O(hi) >= 0; if it is 0, hi is the root
    tol = 1e-12 * max(hi, 1.0)
    s2 = hi if f(hi) <= 0.0 else optimize.brentq(f, 0.0, hi, xtol=tol, rtol=1e-14)
    o2 = float(outflow_of_storage(s2))
    released = 0.5 * (o1 + o2) * dt
    s2 = s1 + inflow_volume - released
    if s2 < 0.0:  # rounding when the pool nearly empties
        released += s2
        s2 = 0.0
    return RoutingStep(s2, o2, released)


def level_pool_route(
    inflow_m3_s,
    dt_s: float,
    outflow_of_storage: Callable[[float], float],
    initial_storage_m3: float = 0.0,
) -> dict[str, np.ndarray]:
    """Route a whole inflow hydrograph through a level pool.

    Parameters
    ----------
    inflow_m3_s : array_like
        Inflow at ``t = 0, dt, 2 dt, ...`` [m3/s], >= 0, no NaN.
    dt_s : float
        Step [s].
    outflow_of_storage : callable
        ``O(S)``, see :func:`level_pool_step`.
    initial_storage_m3 : float
        Storage at ``t = 0`` [m3].

    Returns
    -------
    dict of numpy.ndarray
        ``storage_m3`` and ``outflow_m3_s`` at each inflow time (length n),
        and ``outflow_volume_m3`` released in each step (length n - 1).
        ``sum(inflow volume) - sum(outflow_volume_m3) - (S[-1] - S[0])`` is
        zero to rounding.
    """
    inflow = as_float_array(inflow_m3_s, "inflow_m3_s", ndim=1)
    if np.any(np.isnan(inflow)):
        raise ValueError("inflow_m3_s must not contain NaN")
    check_nonnegative(inflow, "inflow_m3_s")
    if not initial_storage_m3 >= 0:
        raise ValueError(f"initial_storage_m3 must be >= 0, got {initial_storage_m3!r}")
    n = inflow.size
    storage = np.empty(n)
    outflow = np.empty(n)
    released = np.empty(max(n - 1, 0))
    if n == 0:
        return {"storage_m3": storage, "outflow_m3_s": outflow, "outflow_volume_m3": released}
    storage[0] = float(initial_storage_m3)
    outflow[0] = float(outflow_of_storage(storage[0]))
    for k in range(n - 1):
        step = level_pool_step(storage[k], inflow[k], inflow[k + 1], dt_s, outflow_of_storage)
        storage[k + 1], outflow[k + 1], released[k] = step
    return {"storage_m3": storage, "outflow_m3_s": outflow, "outflow_volume_m3": released}


@dataclass(frozen=True)
class CheckDam:
    """A check dam (淤地坝) as a level pool with a spillway and a drainage culvert.

    Stages are depths above the stage-storage datum (the pond bottom, or the
    silted surface for a partly silted dam, from which SL/T 804-2020 starts
    flood routing).

    Attributes
    ----------
    storage_a, storage_b : float
        Stage-storage curve ``V = a h^b`` [m3], see
        :func:`fit_power_stage_storage`.
    spillway_crest_m : float
        Spillway crest stage [m].
    spillway_width_m : float
        Spillway width [m]; 0 for a dam without spillway.
    spillway_coefficient : float
        Broad-crested discharge coefficient m [-].
    culvert_centre_m : float or None
        Stage of the drainage culvert / outlet centre [m]; None for none.
    culvert_area_m2 : float
        Culvert flow area [m2].
    culvert_coefficient : float
        Culvert discharge coefficient Cd [-].
    dam_crest_m : float or None
        Dam crest stage [m]; above it the dam is overtopped and the crest acts
        as a broad-crested weir of length ``dam_crest_length_m`` with
        coefficient 0.32.
    dam_crest_length_m : float
        Crest length [m].
    """

    storage_a: float
    storage_b: float
    spillway_crest_m: float
    spillway_width_m: float
    spillway_coefficient: float = 0.385
    culvert_centre_m: float | None = None
    culvert_area_m2: float = 0.0
    culvert_coefficient: float = 0.6
    dam_crest_m: float | None = None
    dam_crest_length_m: float = 0.0

    def __post_init__(self):
        _check_ab(self.storage_a, self.storage_b)
        if not self.spillway_width_m >= 0:
            raise ValueError(f"spillway_width_m must be >= 0, got {self.spillway_width_m!r}")
        if not 0 < self.spillway_coefficient <= 0.385:
            raise ValueError(
                f"spillway_coefficient must be in (0, 0.385], got {self.spillway_coefficient!r}"
            )
        if not self.culvert_area_m2 >= 0:
            raise ValueError(f"culvert_area_m2 must be >= 0, got {self.culvert_area_m2!r}")
        if not 0 < self.culvert_coefficient <= 1:
            raise ValueError(
                f"culvert_coefficient must be in (0, 1], got {self.culvert_coefficient!r}"
            )
        if self.culvert_centre_m is not None and self.culvert_centre_m < 0:
            raise ValueError(f"culvert_centre_m must be >= 0, got {self.culvert_centre_m!r}")
        if self.spillway_crest_m < 0:
            raise ValueError(f"spillway_crest_m must be >= 0, got {self.spillway_crest_m!r}")
        if self.dam_crest_m is not None and self.dam_crest_m < self.spillway_crest_m:
            raise ValueError(
                f"dam_crest_m={self.dam_crest_m!r} must not be below "
                f"spillway_crest_m={self.spillway_crest_m!r}"
            )
        if not self.dam_crest_length_m >= 0:
            raise ValueError(f"dam_crest_length_m must be >= 0, got {self.dam_crest_length_m!r}")

    def storage_m3(self, stage_m) -> np.ndarray:
        """Storage [m3] at a stage [m]."""
        return power_storage_m3(stage_m, self.storage_a, self.storage_b)

    def stage_m(self, storage_m3) -> np.ndarray:
        """Stage [m] at a storage [m3]."""
        return power_stage_m(storage_m3, self.storage_a, self.storage_b)

    def _components(self, h: float) -> tuple[float, float, float]:
        spill = 0.0
        if self.spillway_width_m > 0 and h > self.spillway_crest_m:
            hs = h - self.spillway_crest_m
            spill = (
                self.spillway_coefficient * self.spillway_width_m * _SQRT_2G * hs * math.sqrt(hs)
            )
        culvert = 0.0
        if self.culvert_centre_m is not None and self.culvert_area_m2 > 0:
            hc = h - self.culvert_centre_m
            if hc > 0:
                culvert = self.culvert_coefficient * self.culvert_area_m2 * math.sqrt(2.0 * _G * hc)
        over = 0.0
        if self.dam_crest_m is not None and self.dam_crest_length_m > 0 and h > self.dam_crest_m:
            ho = h - self.dam_crest_m
            over = 0.32 * self.dam_crest_length_m * _SQRT_2G * ho * math.sqrt(ho)
        return spill, culvert, over

    def outflow_components_m3_s(self, stage_m) -> dict[str, np.ndarray]:
        """Spillway, culvert and overtopping discharge [m3/s] at each stage [m]."""
        h = as_float_array(stage_m, "stage_m")
        h = np.where(np.isnan(h), -np.inf, h)  # a missing stage releases nothing
        zero = np.zeros(h.shape)
        spill = zero
        if self.spillway_width_m > 0:
            hs = np.maximum(h - self.spillway_crest_m, 0.0)
            spill = self.spillway_coefficient * self.spillway_width_m * _SQRT_2G * hs**1.5
        culvert = zero
        if self.culvert_centre_m is not None and self.culvert_area_m2 > 0:
            hc = np.maximum(h - self.culvert_centre_m, 0.0)
            culvert = self.culvert_coefficient * self.culvert_area_m2 * np.sqrt(2.0 * _G * hc)
        over = zero
        if self.dam_crest_m is not None and self.dam_crest_length_m > 0:
            ho = np.maximum(h - self.dam_crest_m, 0.0)
            over = 0.32 * self.dam_crest_length_m * _SQRT_2G * ho**1.5
        return {
            "spillway_m3_s": spill + zero,
            "culvert_m3_s": culvert + zero,
            "overtopping_m3_s": over + zero,
        }

    def outflow_m3_s(self, stage_m) -> np.ndarray:
        """Total outflow [m3/s] at each stage [m]."""
        c = self.outflow_components_m3_s(stage_m)
        return c["spillway_m3_s"] + c["culvert_m3_s"] + c["overtopping_m3_s"]

    def outflow_of_storage(self, storage_m3: float) -> float:
        """Total outflow [m3/s] at a scalar storage [m3] (fast, for routing)."""
        s = float(storage_m3)
        h = (s / self.storage_a) ** (1.0 / self.storage_b) if s > 0 else 0.0
        return sum(self._components(h))


def route_check_dam(
    inflow_m3_s, dt_s: float, dam: CheckDam, initial_stage_m: float = 0.0
) -> dict[str, np.ndarray]:
    """Route an inflow hydrograph through a check dam.

    Parameters
    ----------
    inflow_m3_s : array_like
        Inflow at ``t = 0, dt, ...`` [m3/s].
    dt_s : float
        Step [s].
    dam : CheckDam
        Dam geometry and outlets.
    initial_stage_m : float
        Stage at ``t = 0`` [m] (e.g. the silted level's datum 0 or a pond).

    Returns
    -------
    dict of numpy.ndarray
        As :func:`level_pool_route` plus ``stage_m``, ``spillway_m3_s``,
        ``culvert_m3_s`` and ``overtopping_m3_s``.
    """
    s0 = float(dam.storage_m3(max(float(initial_stage_m), 0.0)))
    out = level_pool_route(inflow_m3_s, dt_s, dam.outflow_of_storage, s0)
    out["stage_m"] = dam.stage_m(out["storage_m3"])
    out.update(dam.outflow_components_m3_s(out["stage_m"]))
    return out


# --------------------------------------------------------------------------- cisterns
def cylinder_cistern_volume_m3(level_m, diameter_m: float, depth_m: float | None = None):
    """Water volume in a cylindrical cistern (水窖) at a water level.

    Parameters
    ----------
    level_m : array_like
        Water depth above the floor [m]; clipped to ``[0, depth_m]``.
    diameter_m : float
        Inside diameter [m], > 0.
    depth_m : float, optional
        Depth to the overflow [m]; no clipping above if omitted.

    Returns
    -------
    numpy.ndarray
        ``V = pi D^2 / 4 * h`` [m3].
    """
    h = as_float_array(level_m, "level_m")
    check_positive(np.asarray(diameter_m, dtype=float), "diameter_m")
    top = np.inf if depth_m is None else float(depth_m)
    if depth_m is not None and not top > 0:
        raise ValueError(f"depth_m must be > 0, got {depth_m!r}")
    return math.pi * diameter_m**2 / 4.0 * np.clip(h, 0.0, top)


def cylinder_cistern_level_m(volume_m3, diameter_m: float) -> np.ndarray:
    """Water depth [m] in a cylindrical cistern holding a volume [m3] (>= 0)."""
    v = as_float_array(volume_m3, "volume_m3")
    check_nonnegative(v, "volume_m3")
    check_positive(np.asarray(diameter_m, dtype=float), "diameter_m")
    return v / (math.pi * diameter_m**2 / 4.0)


def _frustum_volume(h, r_bottom, r_top, height):
    # Volume of a truncated cone filled to depth h (0 <= h <= height).
    k = (r_top - r_bottom) / height
    return math.pi * (r_bottom**2 * h + r_bottom * k * h**2 + k**2 * h**3 / 3.0)


def _bottle_parts(body_diameter_m, body_height_m, neck_diameter_m, shoulder_height_m,
                  neck_height_m, bottom_diameter_m):  # fmt: skip
    vals = {
        "body_diameter_m": body_diameter_m,
        "body_height_m": body_height_m,
        "neck_diameter_m": neck_diameter_m,
        "shoulder_height_m": shoulder_height_m,
    }
    for name, v in vals.items():
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be > 0, got {v!r}")
    if not (np.isfinite(neck_height_m) and neck_height_m >= 0):
        raise ValueError(f"neck_height_m must be >= 0, got {neck_height_m!r}")
    rb = body_diameter_m / 2.0 if bottom_diameter_m is None else bottom_diameter_m / 2.0
    if not (np.isfinite(rb) and rb > 0):
        raise ValueError(f"bottom_diameter_m must be > 0, got {bottom_diameter_m!r}")
    if neck_diameter_m > body_diameter_m:
        raise ValueError(
            f"neck_diameter_m={neck_diameter_m!r} must not exceed body_diameter_m={body_diameter_m!r}"
        )
    return rb, body_diameter_m / 2.0, neck_diameter_m / 2.0


def bottle_cistern_volume_m3(
    level_m,
    body_diameter_m: float,
    body_height_m: float,
    neck_diameter_m: float,
    shoulder_height_m: float,
    neck_height_m: float = 0.0,
    bottom_diameter_m: float | None = None,
) -> np.ndarray:
    """Water volume in a bottle-shaped cistern (瓶式水窖) at a water level.

    The cistern is, from the floor up: a body (cylinder, or a frustum from
    ``bottom_diameter_m`` to ``body_diameter_m``) of height ``body_height_m``;
    a conical shoulder (frustum) narrowing to ``neck_diameter_m`` over
    ``shoulder_height_m``; a cylindrical neck of ``neck_height_m``.

    Parameters
    ----------
    level_m : array_like
        Water depth above the floor [m]; clipped to ``[0, total height]``.
    body_diameter_m, body_height_m, neck_diameter_m, shoulder_height_m : float
        Geometry [m], > 0.
    neck_height_m : float
        Neck height [m], >= 0.
    bottom_diameter_m : float, optional
        Floor diameter [m] if the body tapers (defaults to ``body_diameter_m``).

    Returns
    -------
    numpy.ndarray
        Volume [m3]; frustum volume to depth h:
        ``pi (r1^2 h + r1 k h^2 + k^2 h^3 / 3)`` with ``k = (r2 - r1) / H``.

    References
    ----------
    GB/T 50596-2010 雨水集蓄利用工程技术规范 (Technical code for rainwater
    collection, storage and utilization), cistern types.
    """
    rb, r_body, r_neck = _bottle_parts(
        body_diameter_m, body_height_m, neck_diameter_m, shoulder_height_m,
        neck_height_m, bottom_diameter_m,
    )  # fmt: skip
    h = as_float_array(level_m, "level_m")
    h1, h2, h3 = body_height_m, shoulder_height_m, neck_height_m
    hb = np.clip(h, 0.0, h1)
    hs = np.clip(h - h1, 0.0, h2)
    hn = np.clip(h - h1 - h2, 0.0, h3)
    vol = (
        _frustum_volume(hb, rb, r_body, h1)
        + _frustum_volume(hs, r_body, r_neck, h2)
        + math.pi * r_neck**2 * hn
    )
    return np.where(np.isnan(h), np.nan, vol)


def bottle_cistern_level_m(
    volume_m3,
    body_diameter_m: float,
    body_height_m: float,
    neck_diameter_m: float,
    shoulder_height_m: float,
    neck_height_m: float = 0.0,
    bottom_diameter_m: float | None = None,
) -> np.ndarray:
    """Water depth [m] in a bottle-shaped cistern holding a volume [m3].

    Inverse of :func:`bottle_cistern_volume_m3` by vectorised bisection
    (to 1e-12 of the height); volumes above the full volume return NaN.
    """
    args = (body_diameter_m, body_height_m, neck_diameter_m, shoulder_height_m, neck_height_m,
            bottom_diameter_m)  # fmt: skip
    _bottle_parts(*args)
    v = as_float_array(volume_m3, "volume_m3")
    check_nonnegative(v, "volume_m3")
    total_h = body_height_m + shoulder_height_m + neck_height_m
    full = float(bottle_cistern_volume_m3(total_h, *args))
    lo = np.zeros(v.shape)
    hi = np.full(v.shape, total_h)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        below = bottle_cistern_volume_m3(mid, *args) < v
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
        if np.all(hi - lo <= 1e-12 * total_h):
            break
    out = 0.5 * (lo + hi)
    return np.where((v > full * (1 + 1e-12)) | np.isnan(v), np.nan, out)
