"""Validation benchmark of the derived products against the simulator's ground truth.

For each run (design storms of several return periods and, optionally, a
stochastic season) of the default county: simulate with the loggers' noisy
messages, load registry and messages into a scratch database, compute every
product from the database, and compare with the truth. Prints the per-dam
table of each run and ends with one ``RESULT key=value ...`` line.

    python bench/research.py                 # 2y, 10y, 50y, 100y
    python bench/research.py --season 30     # and a 30-day stochastic season
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench._common import result_line, scratch_database
from firmware_sim.run import RunConfig, run
from ingest.research.validate import format_table, load_simulation, validate
from ingest.store.migrate import migrate


def one(label: str, cfg: RunConfig) -> dict[str, float]:
    run(cfg)
    with scratch_database() as dsn:
        migrate(dsn, "off")
        with psycopg.connect(dsn) as conn:
            t0 = time.perf_counter()
            counts = load_simulation(conn, cfg.out_dir)
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = validate(conn, cfg.out_dir)
            t_first = time.perf_counter() - t0
            t0 = time.perf_counter()
            validate(conn, cfg.out_dir)
            t_cached = time.perf_counter() - t0
    print(f"\n== {label}: {counts['readings']} readings, load {t_load:.2f} s, products "
          f"{t_first:.2f} s (cached {t_cached:.2f} s)")  # fmt: skip
    print(format_table(report))
    return {
        "max_dam_err": report.max_dam_error_rel,
        "total_err": report.total_error_rel,
        "products_s": t_first,
        "cached_s": t_cached,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storms", default="2y,10y,50y,100y")
    ap.add_argument("--season", type=float, default=None, help="also a stochastic season [days]")
    args = ap.parse_args()
    figures: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for storm in [s for s in args.storms.split(",") if s]:
            cfg = RunConfig(storm=storm, out_dir=Path(tmp) / storm, write_messages=True)
            f = one(f"design storm {storm}", cfg)
            figures[f"{storm}_max_dam_err"] = abs(f["max_dam_err"])
            figures[f"{storm}_total_err"] = f["total_err"]
        if args.season:
            cfg = RunConfig(storm=None, days=args.season, out_dir=Path(tmp) / "season",
                            write_messages=True)  # fmt: skip
            f = one(f"stochastic season of {args.season:g} days", cfg)
            figures["season_max_dam_err"] = abs(f["max_dam_err"])
            figures["season_total_err"] = f["total_err"]
            figures["season_products_s"] = f["products_s"]
    print(result_line(**figures))


if __name__ == "__main__":
    main()
