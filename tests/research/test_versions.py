"""Versioned stage-storage curves and turbidity calibrations: a re-survey (or a new
calibration) changes the computations after its date and not those before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from ingest.research import (
    ResearchError,
    add_calibration,
    add_stage_storage_curve,
    dam_events,
    dam_retention,
    fit_calibration,
    list_calibrations,
    list_stage_storage_curves,
)

from .conftest import load, load_registry_of

DAM = "dam-a08"
SURVEY = datetime(2026, 7, 22, 12, tzinfo=UTC)  # between the two storms


def _two_storms(conn, sim_dir):
    """The 50-year storm at one dam, and the same storm again three days later."""
    load_registry_of(conn, sim_dir)
    load(conn, sim_dir, devices=[DAM])
    load(conn, sim_dir, devices=[DAM], shift=timedelta(days=3))
    conn.commit()


def _strip(event):
    return event.model_dump(exclude={"curve"})


def test_resurvey_changes_later_events_only(db, sim50):
    with psycopg.connect(db) as conn:
        _two_storms(conn, sim50)
        before = dam_events(conn, DAM)
        assert not before.cached
        assert len(before.events) == 2
        e1, e2 = before.events
        assert e1.end < SURVEY < e2.start
        assert e1.curve.id is None and e2.curve.id is None  # design curve
        # the two copies of the storm give the same numbers under one curve
        assert e2.sediment_retained_t == pytest.approx(e1.sediment_retained_t, rel=0.02)
        assert dam_events(conn, DAM).cached

        a, b = 1283.0 * 0.8, 2.346 + 0.05  # the pond lost volume to deposits
        h = np.linspace(0.25, 6.0, 12)
        curve = add_stage_storage_curve(
            conn, DAM, SURVEY, stages_m=h, volumes_m3=a * h**b, survey_id=7, note="re-survey"
        )
        assert curve.a == pytest.approx(a, rel=1e-9) and curve.b == pytest.approx(b, rel=1e-9)
        assert curve.fit_rmse_rel < 1e-9 and curve.survey_id == 7

        after = dam_events(conn, DAM)
        assert not after.cached  # a new curve version invalidates the cache
        n1, n2 = after.events
        assert _strip(n1) == _strip(e1)
        assert n1.curve.id is None
        assert n2.curve.id == curve.id
        assert n2.inflow_volume_m3 < 0.9 * e2.inflow_volume_m3
        assert n2.sediment_in_t < 0.9 * e2.sediment_in_t
        assert n2.trap_efficiency_gill != e2.trap_efficiency_gill  # smaller capacity

        # cumulative retention restarts at the survey, which measured what was there
        ret = dam_retention(conn, DAM, at=datetime(2026, 7, 25, tzinfo=UTC))
        assert ret.since == SURVEY and ret.events == 1
        assert ret.sediment_retained_t == pytest.approx(n2.sediment_retained_t)
        cap = a * 4.55**b  # storage below the spillway crest on the new curve
        assert ret.silting_capacity_m3 == pytest.approx(cap, rel=1e-6)
        rho = conn.execute(
            "SELECT (params->>'dry_bulk_density_t_m3')::float8 FROM sites WHERE id = %s", (DAM,)
        ).fetchone()[0]
        dep = n2.sediment_retained_t / rho
        assert ret.remaining_storage_m3 == pytest.approx(cap - dep, rel=1e-9)
        ret0 = dam_retention(conn, DAM, at=datetime(2026, 7, 22, tzinfo=UTC))
        assert ret0.since is None and ret0.events == 1 and ret0.curve.id is None

        curves = list_stage_storage_curves(conn, DAM)
        assert [c.id for c in curves] == [None, curve.id]
        with pytest.raises(ResearchError, match="already has a curve"):
            add_stage_storage_curve(conn, DAM, SURVEY, a=1.0, b=2.0)


def test_new_calibration_changes_later_events_only(db, sim50):
    with psycopg.connect(db) as conn:
        _two_storms(conn, sim50)
        e1, e2 = dam_events(conn, DAM).events
        # lab samples of the new sediment: SSC = 0.15 NTU^1.0, with 10 % scatter
        rng = np.random.default_rng(1)
        ntu = np.geomspace(20, 2500, 25)
        ssc = 0.15 * ntu * np.exp(rng.normal(0, 0.1, ntu.size))
        cal = fit_calibration(conn, DAM, SURVEY, ntu, ssc, kind="power")
        assert cal.kind == "power" and cal.n == 25
        assert cal.slope == pytest.approx(1.0, abs=0.05)
        assert cal.ntu_min == pytest.approx(20) and cal.ntu_max == pytest.approx(2500)
        n1, n2 = dam_events(conn, DAM).events
        assert _strip(n1) == _strip(e1)
        # only the deposit correction of the continuity equation moves the water volume
        assert n2.inflow_volume_m3 == pytest.approx(e2.inflow_volume_m3, rel=0.01)
        ratio = n2.sediment_in_t / e2.sediment_in_t
        assert 1.05 < ratio < 1.6  # 0.15 NTU vs 0.12 NTU^1.02 over 100-1500 NTU
        assert [c.id for c in list_calibrations(conn, DAM)] == [None, cal.id]
        # a stream-specific version at the same date wins over the site-wide one
        sid = conn.execute(
            "SELECT s.id FROM streams s WHERE s.device_id = %s AND s.channel = 'turbidity_ntu'",
            (DAM,),
        ).fetchone()[0]
        add_calibration(conn, DAM, SURVEY, kind="power", intercept=np.log(0.12), slope=1.02,
                        stream_id=sid)  # fmt: skip
        m1, m2 = dam_events(conn, DAM).events
        assert _strip(m1) == _strip(e1)
        assert m2.sediment_in_t == pytest.approx(e2.sediment_in_t, rel=1e-9)
        with pytest.raises(ResearchError):
            fit_calibration(conn, DAM, SURVEY, ntu, ssc)


def test_curve_from_a_table_and_bad_inputs(db, sim50):
    with psycopg.connect(db) as conn:
        load_registry_of(conn, sim50)
        h = [0.0, 1.0, 2.0, 3.0, 5.0]
        v = [0.0, 900.0, 4500.0, 12000.0, 40000.0]
        c = add_stage_storage_curve(
            conn, DAM, SURVEY, stages_m=h, volumes_m3=v, kind="table", source="survey"
        )
        assert c.kind == "table" and c.a is None and c.stages_m == h
        with pytest.raises(ResearchError, match="stages_m"):
            add_stage_storage_curve(conn, DAM, SURVEY + timedelta(1), stages_m=h)
        with pytest.raises(ResearchError, match="fit"):
            add_stage_storage_curve(
                conn, DAM, SURVEY + timedelta(1), stages_m=[1, 1], volumes_m3=[2, 3]
            )
        with pytest.raises(ResearchError, match="zone"):
            add_stage_storage_curve(conn, DAM, datetime(2026, 1, 1), a=1.0, b=2.0)
        with pytest.raises(ResearchError, match="not a check_dam"):
            add_stage_storage_curve(conn, "rg-01", SURVEY, a=1.0, b=2.0)
        with pytest.raises(ResearchError, match="no site"):
            dam_events(conn, "dam-zz")
