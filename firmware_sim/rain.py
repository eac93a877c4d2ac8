"""Rain at every site of a scenario for a run: a design storm or a stochastic season."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .scenario import Scenario
from .weather import chicago_hyetograph_mm, parse_return_period, stochastic_rain_mm

BASE_DT_S = 60.0


@dataclass
class RunRain:
    """Rain per base step at each site (rows in ``scenario.sites()`` order)."""

    rain_mm: np.ndarray
    base_dt_s: float
    amc: str | None  # fixed antecedent condition, or None to derive it per event
    description: str
    storms: list[dict]


def site_xy_km(scenario: Scenario) -> np.ndarray:
    """Local east/north coordinates [km] of every site (equirectangular around the mean)."""
    sites = scenario.sites()
    if not sites:
        return np.zeros((0, 2))
    lat0 = float(np.mean([s.latitude for s in sites]))
    lon0 = float(np.mean([s.longitude for s in sites]))
    kx = 111.32 * math.cos(math.radians(lat0))
    return np.array([[(s.longitude - lon0) * kx, (s.latitude - lat0) * 110.57] for s in sites])


def design_storm_rain(scenario: Scenario, storm: str | float, base_dt_s: float = BASE_DT_S,
                      total_h: float | None = None) -> RunRain:  # fmt: skip
    """A Chicago design storm of return period ``storm`` ("50y"), uniform over the county.

    The run is ``lead_h`` dry hours, the storm, then ``after_h`` hours of
    recession (or ``total_h`` hours in all).
    """
    t_y = parse_return_period(storm)
    d = scenario.rainfall.design
    hyeto = chicago_hyetograph_mm(base_dt_s, t_y, scenario.rainfall.idf, d)
    lead = round(d.lead_h * 3600.0 / base_dt_s)
    total = (
        round(total_h * 3600.0 / base_dt_s)
        if total_h is not None
        else lead + hyeto.size + round(d.after_h * 3600.0 / base_dt_s)
    )
    series = np.zeros(total)
    m = min(hyeto.size, max(total - lead, 0))
    series[lead : lead + m] = hyeto[:m]
    n_sites = len(scenario.sites())
    return RunRain(
        np.tile(series, (n_sites, 1)),
        base_dt_s,
        d.amc,
        f"Chicago design storm T={t_y:g} y, {d.duration_min:g} min, "
        f"{float(hyeto.sum()):.1f} mm, AMC {d.amc}",
        [
            {
                "start_step": lead,
                "duration_min": d.duration_min,
                "areal_depth_mm": float(hyeto.sum()),
            }
        ],
    )


def stochastic_season_rain(scenario: Scenario, days: float, seed: int | None = None,
                           base_dt_s: float = BASE_DT_S) -> RunRain:  # fmt: skip
    """``days`` of seeded stochastic storms with spatially correlated depths."""
    rng = np.random.default_rng(scenario.seed if seed is None else seed)
    n = round(days * 86400.0 / base_dt_s)
    rain, storms = stochastic_rain_mm(
        n, base_dt_s, site_xy_km(scenario), scenario.rainfall.stochastic,
        scenario.rainfall.idf, rng,
    )  # fmt: skip
    return RunRain(
        rain,
        base_dt_s,
        None,
        f"stochastic storms, {days:g} days, seed {scenario.seed if seed is None else seed}, "
        f"{len(storms)} storms",
        storms,
    )
