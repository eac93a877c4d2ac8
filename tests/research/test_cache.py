"""Derived products are cached, and recomputed when late data arrives in their window or
when quality flags change."""

from __future__ import annotations

import json

import psycopg
import pytest

from ingest.research import dam_events, storm_events

from .conftest import load, load_registry_of

DAM = "dam-a05"
HELD_BACK = ("2026-07-20T02:00", "2026-07-20T03:30")  # around the peak inflow


def _held(p: dict) -> bool:
    return HELD_BACK[0] <= p["sent_at"][:16] < HELD_BACK[1]


def test_recomputed_when_late_data_arrives(db, sim50):
    truth = json.loads((sim50 / "summary.json").read_text())["sites"][DAM]["sediment_retained_t"]
    with psycopg.connect(db) as conn:
        load_registry_of(conn, sim50)
        load(conn, sim50, devices=[DAM], keep=lambda p: not _held(p))
        first = dam_events(conn, DAM)
        assert not first.cached and len(first.events) == 1
        again = dam_events(conn, DAM)
        assert again.cached
        assert again.model_dump(exclude={"cached"}) == first.model_dump(exclude={"cached"})
        rows = conn.execute("SELECT count(*) FROM derived_cache WHERE key LIKE 'dam_events:%'")
        assert rows.fetchone()[0] == 1

        # the logger's backlog from the peak arrives late
        assert load(conn, sim50, devices=[DAM], keep=_held) > 0
        late = dam_events(conn, DAM)
        assert not late.cached
        fresh = dam_events(conn, DAM, use_cache=False)
        assert late.model_dump(exclude={"cached"}) == fresh.model_dump(exclude={"cached"})
        e_gap, e_full = first.events[0], late.events[0]
        assert e_full.stage_readings > e_gap.stage_readings
        assert e_full.sediment_retained_t != e_gap.sediment_retained_t
        assert abs(e_full.sediment_retained_t / truth - 1) < 0.05
        assert dam_events(conn, DAM).cached

        # a product over another window has its own entry
        rain_before = storm_events(conn, DAM)
        assert not rain_before.cached and storm_events(conn, DAM).cached


def test_quality_flags_exclude_readings_and_invalidate(db, sim50):
    with psycopg.connect(db) as conn:
        load_registry_of(conn, sim50)
        load(conn, sim50, devices=[DAM])
        clean = dam_events(conn, DAM).events[0]
        # spikes in the stage record, flagged as failed by QC
        n = conn.execute(
            "UPDATE readings r SET value = value + 1.5, quality = 4 FROM streams s "
            "WHERE s.id = r.stream_id AND s.device_id = %s AND s.channel = 'stage_m' "
            "AND r.time BETWEEN '2026-07-20T02:00Z' AND '2026-07-20T04:00Z' "
            "AND extract(minute FROM r.time)::int %% 7 = 0",
            (DAM,),
        ).rowcount
        assert n > 10
        flagged = dam_events(conn, DAM)
        assert not flagged.cached  # the flags are part of the fingerprint
        ev = flagged.events[0]
        assert ev.stage_readings == clean.stage_readings - n
        assert ev.sediment_retained_t == pytest.approx(clean.sediment_retained_t, rel=0.02)
        assert ev.peak_stage_m == pytest.approx(clean.peak_stage_m, abs=0.02)
        raw = dam_events(conn, DAM, exclude_quality=()).events[0]
        assert raw.stage_readings == clean.stage_readings
        assert raw.peak_inflow_m3_s > 2 * clean.peak_inflow_m3_s  # spikes pass as inflow
