"""End-to-end validation: products computed from the noisy telemetry in PostgreSQL against
the simulator's ground truth of a 50-year storm (default county).

Must hold: the retained sediment of every dam with a stage and a turbidity sensor
within 15 % of the truth, and the total within 10 %.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import yaml

from firmware_sim.run import RunConfig, run
from firmware_sim.scenario import DEFAULT_SCENARIO
from ingest.research.validate import format_table, validate

from .conftest import load, load_registry_of

DAM_TOLERANCE = 0.15
TOTAL_TOLERANCE = 0.10


def _dams_with_sensors(sim_dir: Path) -> set[str]:
    sites = yaml.safe_load((sim_dir / "sites.yaml").read_text())["sites"]
    out = set()
    for s in sites:
        chans = {x["channel"]: x["measures"] for x in s["params"].get("sensors", [])}
        if (
            s["kind"] == "check_dam"
            and "stage" in chans.values()
            and "inflow_ssc" in chans.values()
        ):
            out.add(s["id"])
    return out


def _check(report, expected_dams: set[str]) -> None:
    print()
    print(format_table(report))
    assert {d.site_id for d in report.dams} == expected_dams
    for d in report.dams:
        assert abs(d.error_rel) <= DAM_TOLERANCE, f"{d.site_id}: {100 * d.error_rel:.1f} %"
    assert abs(report.total_error_rel) <= TOTAL_TOLERANCE


def test_retained_sediment_of_every_dam_matches_the_truth(db, sim50):
    with psycopg.connect(db) as conn:
        load_registry_of(conn, sim50)
        assert load(conn, sim50) > 100_000
        report = validate(conn, sim50)
    _check(report, _dams_with_sensors(sim50))
    assert len(report.dams) == 14
    # the other products, for information, within looser bounds
    for o in report.others:
        if o.truth and o.truth > 0.01 and o.error_rel is not None:
            assert abs(o.error_rel) < 0.15, o


def test_through_mqtt_and_the_real_consumer(
    db, broker, settings_for, start_consumer, topic_root, tmp_path
):
    """Gully C (six dams, three with turbidity) published by the simulated loggers,
    stored by `swc ingest`'s consumer, then validated."""
    data = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    data["check_dams"] = [d for d in data["check_dams"] if d["gully"] == "C"]
    data["rain_gauges"] = data["rain_gauges"][-1:]
    data["cisterns"] = data["cisterns"][:1]
    data["runoff_plots"] = data["runoff_plots"][:1]
    scen = tmp_path / "gully-c.yaml"
    scen.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    out_dir = tmp_path / "run"
    with psycopg.connect(db) as conn:
        # the registry comes from a dry run of the same scenario
        run(RunConfig(scenario=scen, storm="50y", out_dir=out_dir))
        load_registry_of(conn, out_dir)
        conn.commit()
    start_consumer(settings_for(), db)
    output = run(
        RunConfig(scenario=scen, storm="50y", out_dir=out_dir, mqtt_url=broker.url,
                  root=topic_root, speed=0)
    )  # fmt: skip
    assert output.publish["unacked_at_end"] == 0
    expected = sum(lg.readings for lg in output.loggers.values())
    with psycopg.connect(db, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        n = 0
        while time.monotonic() < deadline:
            n = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            if n >= expected:
                break
            time.sleep(0.2)
        assert n == expected
    with psycopg.connect(db) as conn:
        report = validate(conn, out_dir)
    _check(report, _dams_with_sensors(out_dir))
    assert {d.site_id for d in report.dams} == {"dam-c02", "dam-c04", "dam-c06"}
