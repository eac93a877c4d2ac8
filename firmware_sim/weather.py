"""Rain over the county: Chicago design storms from a storm-intensity formula, and a
seeded stochastic storm generator with spatially correlated depths.

Rain is produced on a regular base grid (60 s by default) as the depth that
fell in each step, one row per point (site) of the county.
"""

from __future__ import annotations

import math

import numpy as np

from .scenario import DesignStorm, Idf, Stochastic

__all__ = [
    "chicago_cumulative_mm",
    "chicago_hyetograph_mm",
    "idf_depth_mm",
    "idf_intensity_mm_min",
    "parse_return_period",
    "spatial_multipliers",
    "stochastic_rain_mm",
]


def parse_return_period(text: str | float) -> float:
    """``"50y"``, ``"50"`` or 50 -> 50.0 years."""
    if isinstance(text, (int, float)):
        t = float(text)
    else:
        s = text.strip().lower().removesuffix("yr").removesuffix("y")
        try:
            t = float(s)
        except ValueError:
            raise ValueError(f"return period {text!r}: expected e.g. '2y', '50y', '100y'") from None
    if not t >= 1.0:
        raise ValueError(f"return period must be >= 1 year, got {text!r}")
    return t


def idf_intensity_mm_min(duration_min, return_period_y: float, idf: Idf) -> np.ndarray:
    """Mean intensity over a duration: ``i = a (1 + c lg T) / (t + b)^n`` [mm/min].

    The Chinese storm-intensity formula (e.g. GB 50014), here in mm/min
    (``q [L/(s ha)] = 166.7 i``).
    """
    t = np.asarray(duration_min, dtype=float)
    factor = idf.a_mm_min * (1.0 + idf.c * math.log10(return_period_y))
    return factor / (t + idf.b_min) ** idf.n


def idf_depth_mm(duration_min, return_period_y: float, idf: Idf) -> np.ndarray:
    """Depth of the heaviest ``duration_min`` of a storm of return period T [mm]."""
    t = np.asarray(duration_min, dtype=float)
    return t * idf_intensity_mm_min(t, return_period_y, idf)


def chicago_cumulative_mm(t_min, duration_min: float, return_period_y: float, idf: Idf,
                          peak_position: float = 0.4) -> np.ndarray:  # fmt: skip
    """Cumulative depth of a Chicago storm (Keifer and Chu 1957) at times ``t_min``.

    Notes
    -----
    The Chicago hyetograph puts, for every duration d, the IDF depth P(d)
    in the window of length d around the peak, split r : (1 - r) before and
    after it (r = ``peak_position``). Its mass curve is therefore, with the
    peak at ``tp = r D``: ``C(t) = r (P(D) - P((tp - t)/r))`` before the
    peak and ``C(t) = r P(D) + (1 - r) P((t - tp)/(1 - r))`` after it, so that
    ``C(D) = P(D)`` exactly.

    References
    ----------
    Keifer, C. J. and Chu, H. H. (1957) Synthetic storm pattern for drainage
    design. J. Hydraul. Div. ASCE 83(4), 1-25.
    """
    t = np.clip(np.asarray(t_min, dtype=float), 0.0, duration_min)
    r = peak_position
    tp = r * duration_min
    total = float(idf_depth_mm(duration_min, return_period_y, idf))
    before = r * (total - idf_depth_mm(np.maximum(tp - t, 0.0) / r, return_period_y, idf))
    after = r * total + (1 - r) * idf_depth_mm(
        np.maximum(t - tp, 0.0) / (1 - r), return_period_y, idf
    )
    return np.where(t <= tp, before, after)


def chicago_hyetograph_mm(step_s: float, return_period_y: float, idf: Idf,
                          design: DesignStorm) -> np.ndarray:  # fmt: skip
    """Depth per step of a Chicago design storm [mm], from its start to its end."""
    n = math.ceil(design.duration_min * 60.0 / step_s)
    edges_min = np.arange(n + 1) * step_s / 60.0
    cum = chicago_cumulative_mm(
        edges_min, design.duration_min, return_period_y, idf, design.peak_position
    )
    return np.maximum(np.diff(cum), 0.0)


def spatial_multipliers(xy_km: np.ndarray, n: int, params: Stochastic,
                        rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """``n`` fields of storm-depth multipliers at points ``xy_km`` (shape (m, 2)).

    Lognormal with mean 1 and coefficient of variation ``spatial_cv``; the
    log-field is Gaussian with exponential correlation ``exp(-d / L)``.
    Returns shape (n, m).
    """
    m = xy_km.shape[0]
    if params.spatial_cv == 0 or m == 0:
        return np.ones((n, m))
    d = np.sqrt(((xy_km[:, None, :] - xy_km[None, :, :]) ** 2).sum(-1))
    cov = np.exp(-d / params.correlation_length_km)
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(m))
    sigma = math.sqrt(math.log(1.0 + params.spatial_cv**2))
    z = rng.standard_normal((n, m)) @ chol.T
    return np.exp(sigma * z - 0.5 * sigma**2)


def stochastic_rain_mm(n_steps: int, step_s: float, xy_km: np.ndarray, params: Stochastic,
                       idf: Idf, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:  # fmt: skip
    """Rain per step at each point for ``n_steps`` steps (shape (m, n_steps)), and the storms.

    Storms arrive as a Poisson process (``storms_per_day``); each has a
    gamma-distributed areal depth, a lognormal duration, a Chicago-shaped
    time profile with a random peak position, and a spatially correlated
    lognormal depth multiplier per point (:func:`spatial_multipliers`).
    """
    m = xy_km.shape[0]
    rain = np.zeros((m, n_steps))
    total_days = n_steps * step_s / 86400.0
    n_storms = rng.poisson(params.storms_per_day * total_days)
    starts = np.sort(rng.uniform(0.0, n_steps * step_s, n_storms))
    mult = spatial_multipliers(xy_km, n_storms, params, rng)
    storms = []
    for k, start in enumerate(starts):
        depth = min(
            rng.gamma(params.depth_shape, params.mean_depth_mm / params.depth_shape),
            params.max_depth_mm,
        )
        dur_min = float(
            np.clip(
                params.median_duration_h * 60.0 * math.exp(params.duration_sigma * rng.normal()),
                20.0,
                48 * 60.0,
            )
        )
        r = float(rng.uniform(0.25, 0.6))
        n = max(1, math.ceil(dur_min * 60.0 / step_s))
        edges = np.arange(n + 1) * step_s / 60.0
        cum = chicago_cumulative_mm(edges, dur_min, 2.0, idf, r)
        shape = np.maximum(np.diff(cum), 0.0)
        shape /= shape.sum()
        i0 = int(start // step_s)
        i1 = min(i0 + n, n_steps)
        if i1 <= i0:
            continue
        rain[:, i0:i1] += depth * mult[k][:, None] * shape[None, : i1 - i0]
        storms.append({"start_step": i0, "duration_min": dur_min, "areal_depth_mm": depth})
    return rain, storms
