"""Build and tune the shipped default county (firmware_sim/scenarios/default.yaml).

Run ``python -m firmware_sim.scenarios.make_default`` to regenerate it. The
geometry of each dam is drawn from plausible Loess Plateau ranges with a fixed
seed; the spillway crests and dam crests are then set from design-storm runs
so that, as in SL/T 804-2020, small dams hold a 20-30-year flood, medium dams
a 50-year flood and key dams a 200-300-year flood with freeboard. One small
dam (b05, heavily silted, little flood storage left) is given a lower crest:
it is the weak point of the county.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).parent
LAT0, LON0 = 37.52, 110.25

# gully, id, class, downstream, (dx_km, dy_km)
LAYOUT = [
    ("A", "dam-a01", "small", "dam-a03", (-3.0, 4.0)),
    ("A", "dam-a02", "small", "dam-a03", (-1.5, 4.4)),
    ("A", "dam-a03", "medium", "dam-a05", (-2.0, 3.2)),
    ("A", "dam-a04", "small", "dam-a05", (-0.6, 3.0)),
    ("A", "dam-a05", "medium", "dam-a08", (-1.5, 2.2)),
    ("A", "dam-a06", "small", "dam-a07", (-3.0, 1.8)),
    ("A", "dam-a07", "small", "dam-a08", (-2.4, 1.4)),
    ("A", "dam-a08", "key", None, (-1.6, 0.8)),
    ("B", "dam-b01", "small", "dam-b02", (1.5, 4.6)),
    ("B", "dam-b02", "small", "dam-b04", (1.8, 3.8)),
    ("B", "dam-b03", "small", "dam-b04", (2.8, 3.9)),
    ("B", "dam-b04", "medium", "dam-b06", (2.2, 3.0)),
    ("B", "dam-b05", "small", "dam-b06", (3.2, 2.6)),
    ("B", "dam-b06", "medium", "dam-b07", (2.4, 2.0)),
    ("B", "dam-b07", "key", None, (2.0, 1.0)),
    ("C", "dam-c01", "small", "dam-c02", (5.2, 1.0)),
    ("C", "dam-c02", "small", "dam-c04", (4.8, 0.2)),
    ("C", "dam-c03", "small", "dam-c04", (5.8, -0.4)),
    ("C", "dam-c04", "medium", "dam-c05", (4.4, -0.8)),
    ("C", "dam-c05", "small", "dam-c06", (4.0, -1.6)),
    ("C", "dam-c06", "key", None, (3.4, -2.4)),
]
GULLY_NAMES = {"A": "Wangjiagou 王家沟", "B": "Hanjiagou 韩家沟", "C": "Liujiagou 刘家沟"}
CLASS_NAMES = {"small": "small dam 小型坝", "medium": "medium dam 中型坝", "key": "key dam 骨干坝"}
# design return periods [y]: spillway crest, dam crest (check flood), freeboard [m]
DESIGN = {"small": (None, 50.0, 0.5), "medium": (10.0, 50.0, 0.8), "key": (20.0, 300.0, 1.0)}
WEAK = {"dam-b05": 20.0, "dam-c05": 30.0}  # silted-up dams with less margin


def ll(dx: float, dy: float) -> tuple[float, float]:
    return (round(LAT0 + dy / 110.57, 5), round(LON0 + dx / (111.32 * np.cos(np.radians(LAT0))), 5))


def sensors_dam(cls: str, with_rain: bool, idx: int) -> list[dict]:
    out = [
        {
            "channel": "stage_m",
            "measures": "stage",
            "model": "gauge",
            "kind": "radar" if cls == "key" else "pressure",
            "noise": 0.003 if cls == "key" else 0.005,
            "drift_per_day": 0.0 if cls == "key" else 0.0003,
            "resolution": 0.001,
        }
    ]
    if cls in ("key", "medium") or idx % 2 == 0:
        out.append(
            {
                "channel": "turbidity_ntu",
                "measures": "inflow_ssc",
                "model": "turbidity",
                "kind": "obs",
                "range_ntu": 4000.0,
                "scatter": 0.08,
                "noise": 2.0,
                "calibration": {"a_kg_m3": 0.12, "b": 1.02},
            }
        )
    if cls == "key":
        out.append(
            {
                "channel": "flow_m3_s",
                "measures": "outflow",
                "model": "flow",
                "kind": "v_notch",
                "noise_rel": 0.03,
            }
        )
    if with_rain:
        out.append({"channel": "rain_mm", "measures": "rain", "model": "tipping_bucket",
                    "kind": "tipping_bucket", "tip_mm": 0.2})  # fmt: skip
    return out


def base_scenario(rng: np.random.Generator) -> dict:
    dams = []
    for i, (g, did, cls, down, (dx, dy)) in enumerate(LAYOUT):
        lat, lon = ll(dx, dy)
        if cls == "small":
            area = rng.uniform(0.35, 0.9)
            a = rng.uniform(180, 450)
            tc = rng.uniform(0.3, 0.5)
            length = rng.uniform(60, 110)
        elif cls == "medium":
            area = rng.uniform(0.8, 1.6)
            a = rng.uniform(700, 1400)
            tc = rng.uniform(0.5, 0.8)
            length = rng.uniform(110, 180)
        else:
            area = rng.uniform(1.6, 3.0)
            a = rng.uniform(1800, 3500)
            tc = rng.uniform(0.8, 1.2)
            length = rng.uniform(150, 260)
        b = rng.uniform(2.3, 2.8)
        elev = round(1050 - 40 * (0 if cls == "small" else 1 if cls == "medium" else 2)
                     - rng.uniform(0, 30), 1)  # fmt: skip
        dam = {
            "id": did,
            "name": f"{GULLY_NAMES[g]} {CLASS_NAMES[cls]} {did[-2:]}",
            "gully": g,
            "dam_class": cls,
            "downstream": down,
            "latitude": lat,
            "longitude": lon,
            "elevation_m": elev,
            "silted_level_m": round(rng.uniform(3, 8) if cls != "small" else rng.uniform(2, 6), 2),
            "catchment": {
                "area_km2": round(area, 3),
                "curve_number": round(rng.uniform(78, 84), 1),
                "tc_h": round(tc, 2),
                "slope_pct": round(rng.uniform(25, 45), 1),
                "slope_length_m": round(rng.uniform(40, 90), 1),
                "k_factor": round(rng.uniform(0.040, 0.052), 4),
                "c_factor": round(rng.uniform(0.25, 0.45), 3),
                "p_factor": 1.0,
            },
            "stage_storage": {"a": round(a, 1), "b": round(b, 3)},
            "dam_crest_m": 99.0,
            "dam_crest_length_m": round(length, 1),
            "culvert": {
                "centre_m": round(rng.uniform(0.4, 1.0), 2),
                "area_m2": round(0.03 if cls == "small" else 0.08 if cls == "medium" else 0.15, 3),
                "coefficient": 0.6,
            },
            "loss_mm_day": 30.0,
            "dry_bulk_density_t_m3": round(rng.uniform(1.25, 1.45), 2),
            "settling_velocity_m_s": 4e-4,
            "sensors": sensors_dam(cls, with_rain=(cls != "small"), idx=i),
        }
        if cls != "small":
            dam["spillway"] = {"crest_m": 99.0, "width_m": 6.0 if cls == "medium" else 12.0,
                               "coefficient": 0.36}  # fmt: skip
        dams.append(dam)
    gauges = []
    for k, (dx, dy) in enumerate([(-2.5, 4.2), (-1.0, 1.2), (2.2, 4.0), (3.0, 1.6), (4.6, -1.2)]):
        lat, lon = ll(dx, dy)
        gauges.append({
            "id": f"rg-{k + 1:02d}", "name": f"rain gauge {k + 1}", "latitude": lat,
            "longitude": lon, "elevation_m": round(1100 + rng.uniform(-40, 40), 1),
            "sensors": [{"channel": "rain_mm", "measures": "rain", "model": "tipping_bucket",
                         "kind": "tipping_bucket", "tip_mm": 0.2}],
        })  # fmt: skip
    cisterns = []
    for k in range(10):
        dx, dy = rng.uniform(-3.5, 5.5), rng.uniform(-2.5, 4.5)
        lat, lon = ll(dx, dy)
        bottle = k % 3 != 2
        geom = (
            {"shape": "bottle", "body_diameter_m": round(rng.uniform(3.5, 4.5), 2),
             "body_height_m": round(rng.uniform(2.5, 3.5), 2), "neck_diameter_m": 0.8,
             "shoulder_height_m": 1.5, "neck_height_m": 0.5}
            if bottle else
            {"shape": "cylinder", "body_diameter_m": round(rng.uniform(3.0, 4.0), 2),
             "body_height_m": 4.0, "depth_m": 4.0}
        )  # fmt: skip
        cisterns.append({
            "id": f"cis-{k + 1:02d}", "name": f"village cistern 水窖 {k + 1}",
            "latitude": lat, "longitude": lon, "elevation_m": round(1120 + rng.uniform(-60, 60), 1),
            "geometry": geom,
            "catchment_area_m2": round(rng.uniform(120, 400), 0),
            "runoff_coefficient": round(rng.uniform(0.7, 0.85), 2),
            "initial_loss_mm": 2.0,
            "initial_level_m": round(rng.uniform(0.5, 2.5), 2),
            "use_m3_day": round(rng.uniform(0.08, 0.25), 3),
            "sensors": [{"channel": "level_m", "measures": "level", "model": "gauge",
                         "kind": "pressure", "noise": 0.004, "resolution": 0.001}],
        })  # fmt: skip
    covers = [("bare fallow", 1.0, 90), ("millet", 0.45, 86), ("grass", 0.12, 78),
              ("shrub (Caragana)", 0.08, 74), ("terrace, millet", 0.3, 72),
              ("apple orchard", 0.25, 80)]  # fmt: skip
    plots = []
    for k, (cover, c, cn) in enumerate(covers):
        dx, dy = 0.6 + 0.05 * k, 2.6
        lat, lon = ll(dx, dy)
        slope = 5.0 if "terrace" in cover else float(rng.choice([27.0, 36.0, 47.0]))
        plots.append({
            "id": f"plot-{k + 1:02d}", "name": f"runoff plot 径流小区 {k + 1} ({cover})",
            "latitude": lat, "longitude": lon, "elevation_m": 1130.0,
            "area_m2": 100.0, "length_m": 20.0, "slope_pct": slope, "cover": cover,
            "curve_number": cn, "k_factor": 0.046, "c_factor": c, "p_factor": 1.0,
            "sensors": [{"channel": "flow_m3_s", "measures": "inflow", "model": "flow",
                         "kind": "h_flume", "noise_rel": 0.05}],
        })  # fmt: skip
    plots[0]["sensors"].append({"channel": "rain_mm", "measures": "rain",
                                "model": "tipping_bucket", "kind": "tipping_bucket",
                                "tip_mm": 0.2})  # fmt: skip
    return {
        "name": "Suide-like county, three gullies (simulated)",
        "description": (
            "21 check dams on three gullies (dam systems 坝系 with small, medium and key dams in "
            "series), 10 cisterns, 6 runoff plots and 5 rain gauges, with Loess Plateau "
            "parameters. Generated and tuned by firmware_sim/scenarios/make_default.py."
        ),
        "start": "2026-07-20T00:00:00Z",
        "seed": 20260720,
        "rain_gauges": gauges,
        "check_dams": dams,
        "cisterns": cisterns,
        "runoff_plots": plots,
        "faults": [],
    }


def peak_stages(data: dict, storm: float) -> dict[str, float]:
    from firmware_sim.physics import simulate
    from firmware_sim.rain import design_storm_rain
    from firmware_sim.scenario import Scenario

    sc = Scenario.model_validate(data)
    rain = design_storm_rain(sc, storm)
    res = simulate(sc, rain.rain_mm, rain.base_dt_s, rain.amc)
    return {d.id: float(res.sites[d.id].columns["stage_m"].max()) for d in sc.check_dams}


def tune(data: dict) -> dict:
    data = copy.deepcopy(data)
    dams = data["check_dams"]
    # 1. spillway crests from the peak stage without spillway flow
    for d in dams:
        if "spillway" in d:
            d["spillway"]["crest_m"] = 98.0
    for t_sp in sorted({v[0] for v in DESIGN.values() if v[0]}):
        peaks = peak_stages(data, t_sp)
        for d in dams:
            if DESIGN[d["dam_class"]][0] == t_sp:
                d["spillway"]["crest_m"] = round(max(peaks[d["id"]], 1.5), 2)
    # 2. dam crests: peak at the check flood plus freeboard, top-down (order of LAYOUT
    #    is upstream first within each gully, so earlier dams are already fixed).
    for t_chk in sorted({v[1] for v in DESIGN.values()} | set(WEAK.values())):
        peaks = peak_stages(data, t_chk)
        for d in dams:
            design_t = WEAK.get(d["id"], DESIGN[d["dam_class"]][1])
            if design_t == t_chk:
                fb = DESIGN[d["dam_class"]][2]
                d["dam_crest_m"] = round(peaks[d["id"]] + fb, 2)
    return data


def plain(x):
    """numpy scalars -> Python numbers, recursively (for YAML)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def main() -> None:
    rng = np.random.default_rng(20260720)
    data = plain(tune(base_scenario(rng)))
    out = HERE / "default.yaml"
    header = "# Generated by firmware_sim/scenarios/make_default.py; see docs/simulator.md.\n"
    out.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    for t in (2.0, 10.0, 50.0, 100.0):
        peaks = peak_stages(data, t)
        over = [d["id"] for d in data["check_dams"] if peaks[d["id"]] > d["dam_crest_m"]]
        print(f"T={t:g}y overtopped: {over}", file=sys.stderr)


if __name__ == "__main__":
    main()
