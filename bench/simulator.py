"""Benchmark of the field simulator: a month (or a season) of the default county, no MQTT.

Times the stochastic rain, the physics (runoff, routing of 21 dams in series,
sediment, cisterns, plots), the truth files and the loggers' messages, and
checks the mass balance of the run. Prints the figures and ends with one
``RESULT key=value ...`` line.

    python bench/simulator.py           # 92 days (a rainy season)
    python bench/simulator.py --quick   # 30 days (the issue's month)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import result_line
from firmware_sim.run import RunConfig, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="30 simulated days instead of 92")
    ap.add_argument("--days", type=float, default=None)
    args = ap.parse_args()
    days = args.days or (30.0 if args.quick else 92.0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = run(RunConfig(storm=None, days=days, out_dir=Path(tmp), write_messages=False))
        # messages are generated too (what the loggers would send), but not published
        from firmware_sim.loggers import generate_messages

        t1 = time.perf_counter()
        loggers = generate_messages(out.scenario, out.result)
        t_msgs = time.perf_counter() - t1
        wall = time.perf_counter() - t0
    r = out.summary["run"]
    n_msgs = sum(len(o.messages) for o in loggers.values())
    n_read = sum(o.readings for o in loggers.values())
    steps = int(out.result.dt_s.size)
    sites = len(out.result.site_ids)
    base_steps = int(out.result.base_rain_mm.shape[1])
    print(f"simulated {days:g} days of {sites} sites: {out.rain.description}")
    for k, v in out.timings_s.items():
        print(f"  {k:12s} {v:8.3f} s")
    print(f"  {'messages_s':12s} {t_msgs:8.3f} s  ({n_msgs} messages, {n_read} readings)")
    print(f"  adaptive grid: {steps} steps (base grid {base_steps} x 60 s)")
    print(f"  water balance rel. error {r['water_balance_rel_error']:.2e}, "
          f"sediment {r['sediment_balance_rel_error']:.2e}")  # fmt: skip
    month_wall = wall * 30.0 / days
    print(
        result_line(
            days=days,
            wall_s=wall,
            month_wall_s=month_wall,
            physics_s=out.timings_s["physics_s"],
            truth_s=out.timings_s["truth_s"],
            messages_s=t_msgs,
            sim_steps_per_s=steps * sites / out.timings_s["physics_s"],
            sim_seconds_per_wall_s=days * 86400.0 / wall,
            messages=n_msgs,
            readings=n_read,
            water_rel_err=r["water_balance_rel_error"],
            sediment_rel_err=r["sediment_balance_rel_error"],
        )
    )


if __name__ == "__main__":
    main()
