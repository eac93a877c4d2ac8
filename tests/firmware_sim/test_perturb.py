"""Perturbed counties: valid, reproducible, and true to the design intent of their dams.

Each county takes five design-storm runs of its 21 dams to tune (about 4 s); the
storm checks add one run per storm. The default set of seeds keeps the file near
a minute; the many-county checks take ``SWC_TEST_MANY_COUNTIES`` seeds (12 by
default, to keep CI under its time budget; 50 is the issue's figure: it held when
the perturbation was written and `SWC_TEST_MANY_COUNTIES=50` runs it again).
"""

from __future__ import annotations

import os
from functools import cache

import pytest
import yaml
from click.testing import CliRunner

from firmware_sim.perturb import (
    CREST_RETURN_PERIODS_Y,
    FREEBOARD_M,
    NO_RAIN_RADIUS_KM,
    WEAK_RETURN_PERIOD_Y,
    design_peak_stages,
    perturb_county,
    perturbed_scenario,
    perturbed_scenarios,
)
from firmware_sim.scenario import Scenario, distance_km, load_scenario
from swc_cli import main as swc

BASE = load_scenario()
SEEDS = [1, 2, 3]
MANY = list(range(100, 100 + int(os.environ.get("SWC_TEST_MANY_COUNTIES", "12"))))


@cache
def _county(seed: int):
    return perturb_county(BASE, seed)


def _overtopped(sc: Scenario, storm: str) -> list[str]:
    peaks = design_peak_stages(sc, storm)
    return [d.id for d in sc.check_dams if peaks[d.id] > d.dam_crest_m]


def _rain_sites(sc: Scenario):
    return [s for s in sc.sites() if any(x.measures == "rain" for x in s.sensors)]


def _check_valid(county, base: Scenario = BASE) -> None:
    sc = county.scenario
    Scenario.model_validate(sc.model_dump())  # round trip through the strict model
    assert [d.id for d in sc.check_dams] == [d.id for d in base.check_dams]
    assert [d.downstream for d in sc.check_dams] == [d.downstream for d in base.check_dams]
    assert _rain_sites(sc), "one rain sensor stays"
    for d, b in zip(sc.check_dams, base.check_dams, strict=True):
        assert 0.6 * 0.999 <= d.catchment.area_km2 / b.catchment.area_km2 <= 1.6 * 1.001
        assert 60 <= d.catchment.curve_number <= 95
        assert abs(d.catchment.curve_number - b.catchment.curve_number) <= 6.05
        assert 0.6 * 0.999 <= d.stage_storage.a / b.stage_storage.a <= 1.5 * 1.001
        assert 1.8 <= d.stage_storage.b <= 3.2
        assert any(s.channel == "stage_m" for s in d.sensors)
        if d.spillway:
            assert d.culvert is None or d.culvert.centre_m < d.spillway.crest_m
            assert d.spillway.crest_m < d.dam_crest_m
        design = county.design[d.id]
        weak = d.dam_class == "small" and design.return_period_y == WEAK_RETURN_PERIOD_Y
        assert weak or design.return_period_y in CREST_RETURN_PERIODS_Y[d.dam_class]
        assert FREEBOARD_M[0] - 0.006 <= design.freeboard_m <= FREEBOARD_M[1] + 0.006
        assert d.dam_crest_m == pytest.approx(design.design_peak_m + design.freeboard_m, abs=0.01)


@pytest.mark.parametrize("seed", SEEDS)
def test_perturbed_county_is_valid_and_keeps_the_design_intent(seed):
    county = _county(seed)
    _check_valid(county)
    sc = county.scenario
    assert _overtopped(sc, "2y") == []  # no dam overtops in a 2-year storm
    assert _overtopped(sc, "10y") == []  # nor in a 10-year one (weak dams are built for it)
    # every dam holds the smallest design flood of its class (small 20 y, medium 50, key 200)
    period = {d: v.return_period_y for d, v in county.design.items()}
    for storm, t in (("20y", 20.0), ("50y", 50.0), ("200y", 200.0)):
        assert [d for d in _overtopped(sc, storm) if period[d] >= t] == []


def test_hundred_year_storm_overtops_some_dam_in_most_counties():
    hit = [bool(_overtopped(_county(s).scenario, "100y")) for s in SEEDS]
    assert sum(hit) >= len(SEEDS) - 1
    weak = [d for s in SEEDS for d, v in _county(s).design.items() if v.return_period_y == 10]
    assert weak, "some small dams are old ones built for a 10-year flood"


def test_same_seed_same_county_other_seed_other_county():
    a = _county(1).scenario
    assert a == perturbed_scenario(BASE, 1)  # computed afresh
    b = _county(2).scenario
    assert a != b
    assert [d.catchment.area_km2 for d in a.check_dams] != [
        d.catchment.area_km2 for d in b.check_dams
    ]
    assert next(iter(perturbed_scenarios(2, 2))).name == b.name


def test_sensor_sets_differ_some_dams_lack_turbidity_or_a_nearby_gauge():
    counties = [_county(s).scenario for s in SEEDS]
    for sc in counties:
        rain = _rain_sites(sc)
        far = [
            d.id
            for d in sc.check_dams
            if all(
                distance_km(d.latitude, d.longitude, r.latitude, r.longitude) > NO_RAIN_RADIUS_KM
                for r in rain
            )
        ]
        assert far, "some dam has no rain sensor within 2 km"
    base_turbidity = sum(1 for d in BASE.check_dams for s in d.sensors if s.model == "turbidity")
    fewer = [
        sum(1 for d in sc.check_dams for s in d.sensors if s.model == "turbidity") < base_turbidity
        for sc in counties
    ]
    assert all(fewer)


def test_strength_zero_keeps_the_parameters_and_faults_are_opt_in():
    sc = perturbed_scenario(BASE, 3, strength=0.0)
    for d, b in zip(sc.check_dams, BASE.check_dams, strict=True):
        assert d.catchment == b.catchment and d.stage_storage == b.stage_storage
        assert [s.channel for s in d.sensors] == [s.channel for s in b.sensors]
    assert sc.faults == []
    faulty = perturbed_scenario(BASE, 3, strength=0.0, faults=True)
    assert {f.kind for f in faulty.faults} == {"clock_drift", "dropout"}
    with pytest.raises(ValueError, match="strength"):
        perturbed_scenario(BASE, 3, strength=-1.0)


def test_cli_prints_a_county_that_loads(tmp_path):
    res = CliRunner().invoke(swc, ["sim", "perturb", "--seed", "3"], catch_exceptions=False)
    assert res.exit_code == 0
    path = tmp_path / "county.yaml"
    path.write_text(res.stdout)
    assert load_scenario(path) == _county(3).scenario
    assert res.stdout.startswith("# swc sim perturb --seed 3")
    assert yaml.safe_load(res.stdout)["name"].endswith("(seed 3, strength 1)")


@pytest.mark.slow
@pytest.mark.parametrize("seed", MANY)
def test_many_counties_are_valid_and_no_dam_overtops_in_a_two_year_storm(seed):
    county = _county(seed)
    _check_valid(county)
    assert _overtopped(county.scenario, "2y") == []


@pytest.mark.slow
def test_hundred_year_storm_overtops_some_dam_in_most_of_many_counties():
    hit = [bool(_overtopped(_county(s).scenario, "100y")) for s in MANY]
    assert sum(hit) >= 0.8 * len(MANY)


def test_base_faults_on_removed_sensors_are_dropped_with_them():
    data = BASE.model_dump(mode="json", exclude_none=True)
    turbid = [d["id"] for d in data["check_dams"] if any(s["model"] == "turbidity"
                                                         for s in d["sensors"])]  # fmt: skip
    data["faults"] = [
        {"device": d, "kind": "fouling", "channel": "turbidity_ntu", "magnitude": 0.1}
        for d in turbid
    ] + [{"device": g["id"], "kind": "stuck", "channel": "rain_mm"} for g in data["rain_gauges"]]
    base = Scenario.model_validate(data)
    sc = perturbed_scenario(base, 2, strength=0.5)
    for f in sc.faults:
        site = next(s for s in sc.sites() if s.id == f.device)
        assert f.channel in {s.channel for s in site.sensors}
    assert 0 < len(sc.faults) < len(base.faults)  # some sensors went, with their faults
