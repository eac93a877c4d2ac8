"""The products one by one: storm events, retention and silting life, plots, cisterns;
the continuity kernel against analytics' level-pool routing; the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import psycopg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from analytics import rainfall
from analytics.sediment import silting_life_years
from analytics.storage import CheckDam, route_check_dam
from ingest.research import cistern_events, dam_retention, plot_events, storm_events
from ingest.research.hydro import DamDesign, StageStorage, conserving_clip, dam_balance

from .conftest import load, load_registry_of


def _truth(sim_dir, site):
    t = pq.read_table(sim_dir / "truth.parquet").to_pandas()
    return t[t.site_id == site]


def test_storm_events_at_a_gauge_match_the_true_rain(db, sim50):
    with psycopg.connect(db) as conn:
        load_registry_of(conn, sim50)
        load(conn, sim50, devices=["rg-01", "cis-01"])
        out = storm_events(conn, "rg-01")
        assert out.rain_site_id == "rg-01" and len(out.events) == 1
        ev = out.events[0]
        tr = _truth(sim50, "rg-01")
        t_s = tr.time.dt.tz_convert(None).to_numpy()  # datetime64
        ref = rainfall.storm_events(t_s, tr.rain_mm.to_numpy())
        assert ev.depth_mm == pytest.approx(float(ref["depth_mm"][0]), abs=0.2)  # 0.2 mm tips
        assert ev.i30_mm_h == pytest.approx(float(ref["i30_mm_h"][0]), rel=0.03)
        assert ev.i60_mm_h == pytest.approx(float(ref["i60_mm_h"][0]), rel=0.03)
        # unit energy is non-linear in the intensity, which 0.2-mm tips per minute quantise
        assert ev.ei30_mj_mm_ha_h == pytest.approx(float(ref["ei30_mj_mm_ha_h"][0]), rel=0.08)
        assert 5.5 < ev.duration_h < 6.5
        # a cistern without a gauge uses the nearest one
        assert storm_events(conn, "cis-01").rain_site_id.startswith(("rg-", "dam-", "plot-"))


def test_retention_remaining_storage_and_silting_life(db, sim50):
    site = "dam-c06"
    with psycopg.connect(db) as conn:
        load_registry_of(conn, sim50)
        load(conn, sim50, devices=[site])
        at = datetime(2026, 7, 23, tzinfo=UTC)
        r = dam_retention(conn, site, at=at, annual_sediment_inflow_t=5000.0)
        p = conn.execute("SELECT params FROM sites WHERE id = %s", (site,)).fetchone()[0]
        rho = p["dry_bulk_density_t_m3"]
        cap = p["stage_storage"]["a"] * p["spillway_crest_m"] ** p["stage_storage"]["b"]
        assert r.events == 1 and r.since is None
        assert r.silting_capacity_m3 == pytest.approx(cap)
        assert r.deposit_volume_m3 == pytest.approx(r.sediment_retained_t / rho)
        assert r.remaining_storage_m3 == pytest.approx(cap - r.deposit_volume_m3)
        te = r.sediment_retained_t / r.sediment_in_t
        assert r.trap_efficiency_used == pytest.approx(te)
        assert r.silting_life_years == pytest.approx(
            silting_life_years(r.remaining_storage_m3, 5000.0, rho, trap_efficiency=te)
        )
        # without an annual inflow there is no life estimate from a 2-day record
        r2 = dam_retention(conn, site, at=at)
        assert r2.silting_life_years is None and r2.notes
        # a sediment yield in the params gives one, over the whole dam system's catchment
        conn.execute(
            "UPDATE sites SET params = params || '{\"sediment_yield_t_km2_yr\": 5000}' "
            "WHERE id = %s",
            (site,),
        )
        r3 = dam_retention(conn, site, at=at)
        areas = conn.execute(
            "SELECT sum((params->>'catchment_area_km2')::float8) FROM sites "
            "WHERE kind = 'check_dam' AND params->>'gully' = 'C'"
        ).fetchone()[0]
        assert r3.annual_sediment_inflow_t == pytest.approx(5000 * areas)
        assert r3.silting_life_years > 0


def test_plot_and_cistern_events(db, sim50):
    summary = json.loads((sim50 / "summary.json").read_text())["sites"]
    with psycopg.connect(db) as conn:
        load_registry_of(conn, sim50)
        load(conn, sim50, devices=["plot-01", "cis-08", "rg-03", "rg-04", "rg-05"])
        pe = plot_events(conn, "plot-01").events
        assert len(pe) == 1
        e = pe[0]
        assert e.runoff_volume_m3 == pytest.approx(summary["plot-01"]["runoff_volume_m3"], rel=0.03)
        assert e.runoff_depth_mm == pytest.approx(e.runoff_volume_m3 / 100 * 1000)
        assert 0 < e.runoff_coefficient < 1
        assert e.soil_loss_t_ha == pytest.approx(e.soil_loss_t / 0.01)
        assert e.soil_loss_t == pytest.approx(summary["plot-01"]["soil_loss_t"], rel=0.1)
        ce = cistern_events(conn, "cis-08").events
        assert len(ce) == 1 and ce[0].reached_overflow
        assert ce[0].overflow_volume_m3 == pytest.approx(
            summary["cis-08"]["overflow_volume_m3"], rel=0.15
        )


def test_inflow_reconstruction_closes_on_level_pool_routing():
    """Route a known flood through analytics' modified Puls and get it back from the stage."""
    dam = CheckDam(1000.0, 2.4, spillway_crest_m=4.0, spillway_width_m=8.0,
                   spillway_coefficient=0.36, culvert_centre_m=0.8, culvert_area_m2=0.1,
                   dam_crest_m=6.0, dam_crest_length_m=80.0)  # fmt: skip
    dt = 60.0
    t = np.arange(0, 12 * 3600 + dt, dt)
    q_in = 25.0 * (t / 3600.0 / 1.5) ** 3 * np.exp(3 * (1 - t / 3600.0 / 1.5))
    routed = route_check_dam(q_in, dt, dam)
    design = DamDesign(spillway_crest_m=4.0, spillway_width_m=8.0, spillway_coefficient=0.36,
                       culvert_centre_m=0.8, culvert_area_m2=0.1, dam_crest_m=6.0,
                       dam_crest_length_m=80.0)  # fmt: skip
    curve = StageStorage("power", 1000.0, 2.4)
    ci = np.zeros(t.size - 1, int)
    bal = dam_balance(t, routed["stage_m"], [curve], ci, design)
    v_true = float(np.trapezoid(q_in, t))
    assert bal.inflow_m3.sum() == pytest.approx(v_true, rel=2e-3)
    assert bal.outflow_m3.sum() == pytest.approx(routed["outflow_volume_m3"].sum(), rel=2e-3)
    # with sediment, the new deposit takes pond volume: the same stage record now
    # means less water came in, by the deposit volume
    ssc = np.full(t.size, 100.0)
    bal = dam_balance(t, routed["stage_m"], [curve], ci, design, ssc)
    dep_v = bal.deposit_t.sum() / design.dry_bulk_density_t_m3
    assert bal.inflow_m3.sum() == pytest.approx(v_true - dep_v, rel=3e-3)
    # sediment: in = out + deposited + still suspended, to rounding
    s_in = bal.sediment_in_t.sum()
    assert s_in == pytest.approx(bal.inflow_m3.sum() * 0.1, rel=1e-9)
    closure = s_in - bal.sediment_out_t.sum() - bal.deposit_t.sum() - bal.suspended_t[-1]
    assert abs(closure) < 1e-9 * s_in


def test_conserving_clip_keeps_the_total():
    raw = np.array([1.0, -0.5, 0.2, 0.6, -2.0, 1.0, 3.0])
    out = conserving_clip(raw)
    assert (out >= 0).all() and out.sum() == pytest.approx(raw.sum())
    reset = np.zeros(raw.size, bool)
    reset[5] = True  # a deficit is not carried into the next event
    assert conserving_clip(raw, reset)[5:].sum() == pytest.approx(4.0)


def test_cli_dam_events_and_validate(db, sim50):
    from swc_cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["research", "validate", str(sim50), "--database-url", db])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert abs(report["total_error_rel"]) < 0.1 and len(report["dams"]) == 14
    res = runner.invoke(main, ["research", "dam-events", "dam-a08", "--database-url", db])
    assert res.exit_code == 0, res.output
    events = json.loads(res.stdout)["events"]
    assert len(events) == 1 and events[0]["outflow_source"] == "measured"
    res = runner.invoke(main, ["research", "storms", "rg-02", "--database-url", db])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["events"]) == 1
    res = runner.invoke(main, ["research", "add-curve", "dam-a08", "--valid-from",
                               "2026-08-01T00:00:00Z", "--points", "1:1300,2:6500,3:16000,4:31000",
                               "--database-url", db])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["kind"] == "power"
    res = runner.invoke(main, ["research", "dam-events", "nope", "--database-url", db])
    assert res.exit_code != 0 and "no site" in res.output


def test_dams_without_turbidity_get_water_balances_only(db, sim50):
    from ingest.research import dam_events

    summary = json.loads((sim50 / "summary.json").read_text())["sites"]
    with psycopg.connect(db) as conn:
        load_registry_of(conn, sim50)
        load(conn, sim50, devices=["dam-a02", "dam-c02", "dam-a03"])
        ev = dam_events(conn, "dam-a02").events[0]  # no turbidity sensor at all
        assert ev.sediment_in_t is None and ev.trap_efficiency_measured is None
        assert any("no inflow turbidity" in w for w in ev.warnings)
        assert ev.inflow_volume_m3 == pytest.approx(
            summary["dam-a02"]["inflow_volume_m3"], rel=0.05
        )
        conn.execute(
            "DELETE FROM readings WHERE stream_id IN (SELECT id FROM streams "
            "WHERE device_id = 'dam-c02' AND channel = 'turbidity_ntu')"
        )
        ev = dam_events(conn, "dam-c02").events[0]  # a sensor that sent nothing
        assert ev.sediment_retained_t is None
        assert any("no turbidity_ntu readings" in w for w in ev.warnings)
