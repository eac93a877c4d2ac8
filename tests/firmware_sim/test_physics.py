"""Physics and ground truth: mass balance closure in the truth file, tuning, the models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.runoff import scs_runoff_mm
from analytics.sediment import musle_sediment_t
from firmware_sim.physics import incremental_musle_t, simulate
from firmware_sim.rain import design_storm_rain, site_xy_km, stochastic_season_rain
from firmware_sim.run import RunConfig, run
from firmware_sim.scenario import Idf, Stochastic, load_scenario
from firmware_sim.truth import read_truth, summarize
from firmware_sim.weather import (
    chicago_cumulative_mm,
    idf_depth_mm,
    parse_return_period,
    spatial_multipliers,
)
from protocol.topics import validate_client_id

TOL = 1e-6


def _balances_from_parquet(directory: Path) -> pd.DataFrame:
    """Recompute each site's balances from the Parquet file, independently of truth.py."""
    df = pd.read_parquet(directory / "truth.parquet")
    rows = []
    for sid, g in df.groupby("site_id", observed=True, sort=False):
        g = g.sort_values("time").fillna(0.0) if g["kind"].iloc[0] != "x" else g
        w_in = g["inflow_volume_m3"].sum()
        w_out = g["outflow_volume_m3"].sum() + g["loss_volume_m3"].sum() + g["use_volume_m3"].sum()
        dv = g["volume_m3"].iloc[-1] - g["volume_m3"].iloc[0]
        s_in = g["sediment_in_t"].sum()
        s_out = g["sediment_out_t"].sum()
        ds = g["sediment_retained_t"].iloc[-1] - g["sediment_retained_t"].iloc[0]
        rows.append(
            {
                "site_id": sid,
                "kind": g["kind"].iloc[0],
                "water_rel": abs(w_in - w_out - dv) / max(w_in, g["volume_m3"].iloc[0], 1.0),
                "sed_rel": abs(s_in - s_out - ds) / max(s_in, 1e-9),
                "w_in": w_in,
                "s_in": s_in,
            }
        )
    return pd.DataFrame(rows).set_index("site_id")


@pytest.mark.parametrize("storm", ["2y", "100y"])
def test_truth_file_closes_water_and_sediment_balance_per_dam_and_run(tmp_path, storm):
    out = run(RunConfig(storm=storm, out_dir=tmp_path))
    bal = _balances_from_parquet(tmp_path)
    dams = bal[bal["kind"] == "check_dam"]
    assert len(dams) >= 20
    assert (dams["w_in"] > 0).all() and (dams["s_in"] > 0).all()
    assert dams["water_rel"].max() < TOL
    assert dams["sed_rel"].max() < TOL
    assert bal["water_rel"].max() < TOL  # cisterns and plots too
    summary = summarize(read_truth(tmp_path))
    assert summary["run"]["water_balance_rel_error"] < TOL
    assert summary["run"]["sediment_balance_rel_error"] < TOL
    for sid, v in summary["sites"].items():
        assert v["water_balance_rel_error"] < TOL, sid
        assert v["sediment_balance_rel_error"] < TOL, sid
        assert {"kind", "overtopped", "sediment_retained_t"} <= set(v)
    assert out.summary["run"]["water_balance_rel_error"] < TOL


def test_stochastic_season_closes_balances_and_derives_antecedent_moisture(tmp_path):
    out = run(RunConfig(storm=None, days=20, out_dir=tmp_path, seed=7))
    assert out.rain.amc is None and len(out.rain.storms) > 0
    bal = _balances_from_parquet(tmp_path)
    assert bal["water_rel"].max() < TOL
    assert bal["sed_rel"].max() < TOL
    assert out.summary["run"]["water_balance_rel_error"] < TOL


def test_default_scenario_overtops_at_100y_and_not_at_2y():
    sc = load_scenario()
    over = {}
    for storm in ("2y", "100y"):
        rain = design_storm_rain(sc, storm)
        res = simulate(sc, rain.rain_mm, rain.base_dt_s, rain.amc)
        over[storm] = [
            d.id for d in sc.check_dams if res.sites[d.id].columns["stage_m"].max() > d.dam_crest_m
        ]
    assert over["2y"] == []
    assert len(over["100y"]) >= 1


def test_default_scenario_is_a_county():
    sc = load_scenario()
    assert len(sc.check_dams) >= 20
    gullies = {d.gully for d in sc.check_dams}
    assert len(gullies) == 3
    for g in gullies:
        chain = [d for d in sc.check_dams if d.gully == g]
        assert any(d.downstream for d in chain), "dams in series"
        assert sum(d.downstream is None for d in chain) == 1, "one outlet dam per gully"
    assert len(sc.cisterns) >= 10 and len(sc.runoff_plots) >= 6 and len(sc.rain_gauges) >= 5
    for s in sc.sites():
        validate_client_id(s.id)
    for d in sc.check_dams:
        chans = {s.channel for s in d.sensors}
        assert "stage_m" in chans


def test_overflow_of_an_upstream_dam_enters_the_next_dam(tmp_path):
    sc = load_scenario()
    rain = design_storm_rain(sc, "100y")
    res = simulate(sc, rain.rain_mm, rain.base_dt_s, rain.amc)
    for d in sc.check_dams:
        ups = sc.upstream_of(d.id)
        if not ups:
            continue
        c = res.sites[d.id].columns
        from_up = sum(res.sites[u].columns["outflow_volume_m3"] for u in ups)
        np.testing.assert_allclose(
            c["inflow_volume_m3"], c["local_inflow_volume_m3"] + from_up, rtol=1e-12, atol=1e-9
        )
        s_up = sum(res.sites[u].columns["sediment_out_t"] for u in ups)
        np.testing.assert_allclose(
            c["sediment_in_t"], c["local_sediment_t"] + s_up, rtol=1e-12, atol=1e-12
        )


def test_catchment_runoff_volume_is_the_curve_number_runoff():
    sc = load_scenario()
    rain = design_storm_rain(sc, "50y")
    res = simulate(sc, rain.rain_mm, rain.base_dt_s, rain.amc)
    p_total = float(rain.rain_mm[0].sum())
    for d in sc.check_dams[:5]:
        q_mm = float(scs_runoff_mm(p_total, d.catchment.curve_number))
        vol = res.sites[d.id].columns["local_inflow_volume_m3"].sum()
        assert vol == pytest.approx(q_mm * d.catchment.area_km2 * 1000.0, rel=1e-9)


def test_chicago_storm_holds_the_idf_depth_for_every_duration_around_the_peak():
    idf = Idf()
    total = float(chicago_cumulative_mm(360.0, 360.0, 50.0, idf, 0.4))
    assert total == pytest.approx(float(idf_depth_mm(360.0, 50.0, idf)))
    for d in (10.0, 60.0, 180.0):
        tp = 0.4 * 360.0
        window = chicago_cumulative_mm(tp + 0.6 * d, 360.0, 50.0, idf, 0.4) - (
            chicago_cumulative_mm(tp - 0.4 * d, 360.0, 50.0, idf, 0.4)
        )
        assert float(window) == pytest.approx(float(idf_depth_mm(d, 50.0, idf)), rel=1e-9)
    assert parse_return_period("100y") == 100.0
    with pytest.raises(ValueError):
        parse_return_period("often")


def test_incremental_musle_sums_to_the_event_musle():
    t = np.arange(200)
    q = np.maximum(0.0, 5.0 * np.sin(t / 199 * math.pi)) + 0.0
    vol = q * 60.0
    sed = incremental_musle_t(vol, q, 0.045, 6.0, 0.3, 1.0, 1e9)
    assert sed.min() >= 0
    assert sed.sum() == pytest.approx(
        float(musle_sediment_t(vol.sum(), q.max(), 0.045, 6.0, 0.3, 1.0))
    )
    capped = incremental_musle_t(vol, q, 0.045, 6.0, 0.3, 1.0, 50.0)
    assert np.all(capped <= 50.0 * vol / 1000.0 + 1e-12)


def test_stochastic_rain_is_spatially_correlated():
    xy = np.array([[0.0, 0.0], [0.5, 0.0], [30.0, 0.0]])
    m = spatial_multipliers(xy, 4000, Stochastic(spatial_cv=0.5, correlation_length_km=5.0),
                            np.random.default_rng(1))  # fmt: skip
    lg = np.log(m)
    near = np.corrcoef(lg[:, 0], lg[:, 1])[0, 1]
    far = np.corrcoef(lg[:, 0], lg[:, 2])[0, 1]
    assert near > 0.8 and abs(far) < 0.1
    assert m.mean() == pytest.approx(1.0, abs=0.05)
    sc = load_scenario()
    rain = stochastic_season_rain(sc, 30, seed=3)
    assert rain.rain_mm.shape == (len(sc.sites()), 30 * 1440)
    assert site_xy_km(sc).shape == (len(sc.sites()), 2)
    again = stochastic_season_rain(sc, 30, seed=3)
    np.testing.assert_array_equal(rain.rain_mm, again.rain_mm)  # seeded


def test_sim_truth_cli_prints_the_json_summary(tmp_path, small_scenario):
    import json

    from click.testing import CliRunner

    from swc_cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["sim", "run", str(small_scenario()), "--storm", "100y", "--out",
                               str(tmp_path), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["sim", "truth", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    for v in data["sites"].values():
        for key in ("kind", "overtopped", "water_balance_rel_error",
                    "sediment_balance_rel_error", "sediment_retained_t"):  # fmt: skip
            assert key in v
    assert data["sites"]["dam-c06"]["kind"] == "check_dam"
    assert isinstance(data["sites"]["dam-c06"]["overtopped"], bool)
    assert (tmp_path / "sites.yaml").exists()
