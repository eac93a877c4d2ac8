"""The alert engine's periodic staleness check at plateau scale.

Fills a scratch database with the rule states of N check dams (five rules
each, a fraction of them in an open episode, some of those stale), then times
``AlertEngine.check_stale`` in both forms: the full check an engine runs once
after it starts (every rule state, for clocks set by future data) and the
periodic one (open episodes only, through a partial index). The full check is
the baseline measured in the same run.

    python bench/stale_check.py [--sites 58000] [--open 0.02] [--stale 0.1] [--repeat 3]

Needs PostgreSQL (SWC_BENCH_DATABASE_URL, default the local server).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench._common import result_line, scratch_database
from ingest.alerting import AlertEngine
from ingest.settings import Settings
from ingest.store.migrate import migrate

RULES = ["stage", "rate_of_rise", "overtopping", "sensor_fault", "low_battery"]


def fill(dsn: str, sites: int, open_fraction: float, stale_share: float) -> tuple[int, int]:
    """Sites, rule states and open alerts; returns (rule states, stale open episodes)."""
    now = time.time()
    every = max(1, round(1 / open_fraction)) if open_fraction > 0 else 0
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO sites (id, kind, name) SELECT 'dam-' || i, 'check_dam', 'dam ' || i "
            "FROM generate_series(1, %s) i",
            (sites,),
        )
        tracker = (
            "jsonb_build_object('min_duration_s', 1800, 'escalate_duration_s', 0, "
            "'level', {level}, 'episode_start_s', null, 'peak_level', {level}, "
            "'last_time_s', {last}, 'up_since_s', null, 'up_level', 0, "
            "'down_since_s', null, 'down_level', 0)"
        )
        conn.execute(
            "INSERT INTO alert_rule_state (site_id, rule, subject, tracker) "
            f"SELECT 'dam-' || i, r, '', {tracker.format(level=0, last='%s')} "
            "FROM generate_series(1, %s) i, unnest(%s::text[]) r",
            (now - 60, sites, RULES),
        )
        stale = 0
        if every:
            # one site in `every` has an open stage alert; `stale_share` of those are stale
            conn.execute(
                "INSERT INTO alerts (site_id, rule, level, peak_level, opened_at, last_data_at) "
                "SELECT 'dam-' || i, 'stage', 2, 2, now(), now() "
                "FROM generate_series(1, %s, %s) i",
                (sites, every),
            )
            conn.execute(
                "UPDATE alert_rule_state r SET alert_id = a.id, tracker = "
                "jsonb_set(jsonb_set(r.tracker, '{level}', '2'), '{last_time_s}', "
                "to_jsonb(CASE WHEN a.id %% %s = 0 THEN %s ELSE %s END)) "
                "FROM alerts a WHERE a.site_id = r.site_id AND a.rule = r.rule",
                (
                    max(1, round(1 / stale_share)) if stale_share > 0 else 2**62,
                    now - 7 * 3600.0,
                    now - 60,
                ),
            )
            stale = conn.execute(
                "SELECT count(*) FROM alert_rule_state WHERE (tracker->>'last_time_s')::float8 < %s",
                (now - 6 * 3600.0,),
            ).fetchone()[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return sites * len(RULES), stale


def timed(engine: AlertEngine, full: bool, repeat: int) -> float:
    """Best of ``repeat`` runs [ms]; in a transaction rolled back, so each finds the same."""
    best = float("inf")
    conn = engine._connection()
    for _ in range(repeat):
        t0 = time.perf_counter()
        with conn.transaction(force_rollback=True):
            engine.check_stale(full=full)
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=58_000)
    ap.add_argument("--open", type=float, default=0.02, help="fraction of sites in an episode")
    ap.add_argument("--stale", type=float, default=0.1, help="share of episodes gone stale")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with scratch_database() as dsn:
        migrate(dsn, "off")
        states, stale = fill(dsn, args.sites, args.open, args.stale)
        engine = AlertEngine(Settings(_env_file=None, database_url=dsn), dsn)
        try:
            full_ms = timed(engine, True, args.repeat)
            open_ms = timed(engine, False, args.repeat)
        finally:
            engine.stop()
    print(
        result_line(
            sites=args.sites,
            rule_states=states,
            stale=stale,
            full_ms=full_ms,
            periodic_ms=open_ms,
            speedup=full_ms / open_ms if open_ms > 0 else float("inf"),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
