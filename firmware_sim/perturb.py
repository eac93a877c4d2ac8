"""Seeded perturbations of a county: other catchments, ponds, dam heights and sensor sets.

A perturbed county is a valid :class:`~firmware_sim.scenario.Scenario` that keeps
the layout (sites, gullies, dam systems) of its base but not its numbers:

* catchments: area × U(0.6, 1.6), curve number ± 6 (kept in 60..95), Tc × U(0.7, 1.4);
* ponds: stage-storage ``a`` × U(0.6, 1.5), ``b`` ± 0.2 (kept in 1.8..3.2), silted
  level × U(0.7, 1.3), spillway width and culvert area × U(0.7, 1.4); about one
  small dam in seven loses its culvert (no outlet at all);
* crests re-derived from design-storm runs so that the design intent holds, as in
  ``firmware_sim/scenarios/make_default.py`` but drawn per dam: the dam crest is the
  peak stage of a design flood plus a freeboard of U(0.3, 1.0) m, with the design
  return period drawn per dam (small 20, 30 or 50 years, medium 50, key 200 or
  300; about one small dam in seven is an old, silted-up one built for 10 years,
  which overtops in a 20-year flood or so); spillway crests are the peak stage (without spillway flow) of a 10-year
  (medium) or 20-year (key) flood. Dams are tuned in order of return period, so a
  dam's design flood includes what the dams upstream release or spill at it;
* sensors: each turbidity sensor is dropped with probability 0.3, each rain gauge
  and each dam's own rain sensor with probability 0.35 (one rain sensor is always
  kept), and at least one dam is left without a rain sensor within 2 km;
* faults (only with ``faults=True``): a drifting clock on one logger and stage
  dropouts on two dams.

``strength`` scales every parameter range (in log space for factors) and the
sensor-removal probabilities; the crests are re-derived at any strength. The
same ``(base, seed, strength, faults)`` always gives the same county.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .physics import simulate
from .rain import design_storm_rain
from .scenario import DEFAULT_SCENARIO, Scenario, distance_km, load_scenario

__all__ = [
    "DamDesign",
    "PerturbedCounty",
    "perturb_county",
    "perturbed_scenario",
    "perturbed_scenarios",
]

# design return periods [y] per dam class: dam crest (drawn), spillway crest
CREST_RETURN_PERIODS_Y = {"small": (20.0, 30.0, 50.0), "medium": (50.0,), "key": (200.0, 300.0)}
WEAK_RETURN_PERIOD_Y = 10.0  # old, silted-up small dams with little flood storage left
P_WEAK_SMALL = 0.15
SPILLWAY_RETURN_PERIOD_Y = {"small": 10.0, "medium": 10.0, "key": 20.0}
FREEBOARD_M = (0.3, 1.0)
MIN_SPILLWAY_CREST_M = 1.5
P_DROP_TURBIDITY = 0.3
P_DROP_RAIN = 0.35
P_NO_CULVERT_SMALL = 0.15
NO_RAIN_RADIUS_KM = 2.0
_UNSET_M = 99.0  # a crest high enough never to be reached while tuning


@dataclass(frozen=True)
class DamDesign:
    """How one dam's crests were derived.

    Attributes
    ----------
    return_period_y
        Design flood of the dam crest [y].
    freeboard_m
        Dam crest minus the peak stage of the design flood [m].
    design_peak_m
        Peak stage of the design flood (with the final county upstream) [m].
    spillway_return_period_y
        Flood whose peak stage (without spillway flow) set the spillway crest [y],
        None without a spillway.
    """

    return_period_y: float
    freeboard_m: float
    design_peak_m: float
    spillway_return_period_y: float | None


@dataclass(frozen=True)
class PerturbedCounty:
    """A perturbed scenario and the design of each of its dams (by dam id)."""

    scenario: Scenario
    design: dict[str, DamDesign]
    seed: int
    strength: float


def perturbed_scenario(
    base: Scenario | None, seed: int, *, strength: float = 1.0, faults: bool = False
) -> Scenario:
    """A seeded perturbation of ``base`` (None: the shipped county); see the module doc."""
    return perturb_county(base, seed, strength=strength, faults=faults).scenario


def perturbed_scenarios(
    n: int, seed: int, *, base: Scenario | None = None, strength: float = 1.0,
    faults: bool = False,
) -> Iterator[Scenario]:  # fmt: skip
    """``n`` perturbed counties with seeds ``seed, seed + 1, ...`` (generated lazily)."""
    for k in range(n):
        yield perturbed_scenario(base, seed + k, strength=strength, faults=faults)


def perturb_county(
    base: Scenario | None, seed: int, *, strength: float = 1.0, faults: bool = False
) -> PerturbedCounty:
    """A seeded perturbation of ``base`` with the design of every dam.

    Takes a few design-storm runs of the dams (about 1 s each for 21 dams).
    """
    if not (0.0 <= strength <= 3.0) or not math.isfinite(strength):
        raise ValueError(f"strength {strength!r}: expected a number in [0, 3]")
    if base is None:
        base = load_scenario(DEFAULT_SCENARIO)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5E1F])
    data = base.model_dump(mode="json", exclude_none=True)
    data["name"] = f"{base.name}, perturbed (seed {seed}, strength {strength:g})"
    data["description"] = (
        f"Seeded perturbation of {base.name!r} by firmware_sim.perturb "
        f"(seed {seed}, strength {strength:g}); crests re-derived from design floods."
    )
    data["seed"] = int(rng.integers(1, 2**31 - 1))
    plan = {}
    for dam in data["check_dams"]:
        plan[dam["id"]] = _perturb_dam(dam, rng, strength)
    _perturb_sensors(data, rng, strength)
    data["faults"] = [f for f in data.get("faults", []) if _fault_applies(f, data)]
    design = _tune(data, plan)
    if faults:
        data["faults"] = [*data.get("faults", []), *_faults(data, rng)]
    return PerturbedCounty(Scenario.model_validate(data), design, int(seed), float(strength))


# ----------------------------------------------------------------------------- draws
def _factor(rng: np.random.Generator, lo: float, hi: float, strength: float) -> float:
    return math.exp(strength * rng.uniform(math.log(lo), math.log(hi)))


def _shift(rng: np.random.Generator, half_width: float, strength: float) -> float:
    return strength * rng.uniform(-half_width, half_width)


def _perturb_dam(dam: dict[str, Any], rng: np.random.Generator, strength: float) -> dict:
    cls = dam.get("dam_class", "small")
    c = dam["catchment"]
    c["area_km2"] = round(c["area_km2"] * _factor(rng, 0.6, 1.6, strength), 3)
    c["curve_number"] = round(min(95.0, max(60.0, c["curve_number"] + _shift(rng, 6, strength))), 1)
    c["tc_h"] = round(max(0.1, c["tc_h"] * _factor(rng, 0.7, 1.4, strength)), 2)
    ss = dam["stage_storage"]
    ss["a"] = round(ss["a"] * _factor(rng, 0.6, 1.5, strength), 1)
    ss["b"] = round(min(3.2, max(1.8, ss["b"] + _shift(rng, 0.2, strength))), 3)
    dam["silted_level_m"] = round(dam["silted_level_m"] * _factor(rng, 0.7, 1.3, strength), 2)
    dam["initial_stage_m"] = 0.0
    if "spillway" in dam:
        sp = dam["spillway"]
        sp["width_m"] = round(sp["width_m"] * _factor(rng, 0.7, 1.4, strength), 2)
        sp["crest_m"] = _UNSET_M - 1.0
    if "culvert" in dam:
        if cls == "small" and rng.random() < P_NO_CULVERT_SMALL * strength:
            del dam["culvert"]
        else:
            cu = dam["culvert"]
            cu["area_m2"] = round(cu["area_m2"] * _factor(rng, 0.7, 1.4, strength), 3)
            cu["centre_m"] = round(
                min(1.2, max(0.2, cu["centre_m"] + _shift(rng, 0.2, strength))), 2
            )
    dam["dam_crest_m"] = _UNSET_M
    choices = CREST_RETURN_PERIODS_Y.get(cls, CREST_RETURN_PERIODS_Y["small"])
    crest_t = float(choices[int(rng.integers(len(choices)))])
    if cls == "small" and rng.random() < P_WEAK_SMALL * min(strength, 1.0):
        crest_t = WEAK_RETURN_PERIOD_Y
    return {
        "crest_t": crest_t,
        "freeboard": round(float(rng.uniform(*FREEBOARD_M)), 2),
        "spill_t": SPILLWAY_RETURN_PERIOD_Y.get(cls) if "spillway" in dam else None,
    }


def _rain_sites(data: dict[str, Any]) -> list[tuple[str, dict]]:
    kinds = ("rain_gauges", "check_dams", "cisterns", "runoff_plots")
    return [
        (k, s)
        for k in kinds
        for s in data.get(k, [])
        if any(x["measures"] == "rain" for x in s.get("sensors", []))
    ]


def _drop_rain(site_kind: str, site: dict, data: dict) -> None:
    if site_kind == "rain_gauges":
        data["rain_gauges"] = [g for g in data["rain_gauges"] if g["id"] != site["id"]]
    else:
        site["sensors"] = [x for x in site["sensors"] if x["measures"] != "rain"]


def _perturb_sensors(data: dict[str, Any], rng: np.random.Generator, strength: float) -> None:
    p_turb = min(1.0, P_DROP_TURBIDITY * strength)
    for dam in data["check_dams"]:
        keep = []
        for s in dam["sensors"]:
            if s["model"] == "turbidity" and rng.random() < p_turb:
                continue
            keep.append(s)
        dam["sensors"] = keep
    p_rain = min(1.0, P_DROP_RAIN * strength)
    candidates = [
        (k, s) for k, s in _rain_sites(data) if k in ("rain_gauges", "check_dams")
    ]  # plots and cisterns keep theirs
    for kind, site in candidates:
        if rng.random() < p_rain and len(_rain_sites(data)) > 1:
            _drop_rain(kind, site, data)
    if strength <= 0 or not data["check_dams"]:
        return
    if not _dams_without_rain(data):  # make sure some dam has no rain sensor nearby
        order = rng.permutation(len(data["check_dams"]))
        for i in order:
            dam = data["check_dams"][int(i)]
            near = [(k, s) for k, s in _rain_sites(data) if _km(dam, s) <= NO_RAIN_RADIUS_KM]
            if len(near) < len(_rain_sites(data)):  # one rain sensor stays in the county
                for kind, site in near:
                    _drop_rain(kind, site, data)
                break


def _km(a: dict, b: dict) -> float:
    return distance_km(a["latitude"], a["longitude"], b["latitude"], b["longitude"])


def _dams_without_rain(data: dict[str, Any]) -> list[str]:
    rain = [s for _, s in _rain_sites(data)]
    return [
        d["id"] for d in data["check_dams"] if not any(_km(d, s) <= NO_RAIN_RADIUS_KM for s in rain)
    ]


def _fault_applies(fault: dict[str, Any], data: dict[str, Any]) -> bool:
    """Whether a base fault's device (and channel) are still there after the perturbation."""
    for kind in ("rain_gauges", "check_dams", "cisterns", "runoff_plots"):
        for site in data.get(kind, []):
            if site["id"] == fault["device"]:
                channels = {x["channel"] for x in site.get("sensors", [])}
                return fault.get("channel") in (None, "battery_v", "rssi_dbm", *channels)
    return False


def _faults(data: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    devices = [s["id"] for k in ("check_dams", "rain_gauges") for s in data.get(k, [])]
    dams = [d["id"] for d in data["check_dams"]]
    out: list[dict[str, Any]] = [
        {
            "device": devices[int(rng.integers(len(devices)))],
            "kind": "clock_drift",
            "drift_ppm": round(float(rng.choice([-1.0, 1.0]) * rng.uniform(50, 500)), 1),
        }
    ]
    for i in rng.choice(len(dams), size=min(2, len(dams)), replace=False):
        out.append(
            {
                "device": dams[int(i)],
                "kind": "dropout",
                "channel": "stage_m",
                "start_offset_h": round(float(rng.uniform(0.5, 6.0)), 2),
                "duration_h": round(float(rng.uniform(0.25, 2.0)), 2),
            }
        )
    return out


# ----------------------------------------------------------------------------- tuning
def design_peak_stages(scenario: Scenario, storm: str | float) -> dict[str, float]:
    """Peak stage [m] of every dam in a design storm of return period ``storm``."""
    rain = design_storm_rain(scenario, storm)
    res = simulate(scenario, rain.rain_mm, rain.base_dt_s, rain.amc)
    return {d.id: float(res.sites[d.id].columns["stage_m"].max()) for d in scenario.check_dams}


def _tune(data: dict[str, Any], plan: dict[str, dict]) -> dict[str, DamDesign]:
    """Set spillway and dam crests from design floods, in order of return period."""
    dams = {d["id"]: d for d in data["check_dams"]}
    periods = sorted(
        {p["crest_t"] for p in plan.values()}
        | {p["spill_t"] for p in plan.values() if p["spill_t"]}
    )
    peaks_at: dict[str, float] = {}
    for t in periods:
        dams_only = {**data, "rain_gauges": [], "cisterns": [], "runoff_plots": [], "faults": []}
        peaks = design_peak_stages(Scenario.model_validate(dams_only), t)
        for did, p in plan.items():
            d = dams[did]
            if p["spill_t"] == t:
                d["spillway"]["crest_m"] = round(max(peaks[did], MIN_SPILLWAY_CREST_M), 2)
            if p["crest_t"] == t:
                floor = [peaks[did] + p["freeboard"]]
                if "spillway" in d:
                    floor.append(d["spillway"]["crest_m"] + p["freeboard"])
                if "culvert" in d:
                    floor.append(d["culvert"]["centre_m"] + 1.0)
                d["dam_crest_m"] = round(max(floor), 2)
                peaks_at[did] = peaks[did]
    return {
        did: DamDesign(
            return_period_y=p["crest_t"],
            freeboard_m=round(dams[did]["dam_crest_m"] - peaks_at[did], 3),
            design_peak_m=round(peaks_at[did], 3),
            spillway_return_period_y=p["spill_t"],
        )
        for did, p in plan.items()
    }
