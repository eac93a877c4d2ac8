"""Benchmark of analytics' vectorised kernels on one year of one-minute data.

Times rolling accumulations (1/3/6/12/24 h) on irregular time stamps against a
straightforward pandas implementation of the same accumulations (time-based
``rolling(...).sum()``, which also sums over (t - window, t]), then QC flags
and the alert rules plus the episode tracker. Prints the figures and ends with
one ``RESULT key=value ...`` line.

    python bench/analytics.py           # 525,600 points (one year of 1-min data)
    python bench/analytics.py --quick   # 52,560 points, same figures
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics import alerts, quality, rainfall

WINDOWS_H = (1, 3, 6, 12, 24)


def synthetic_year(n: int, seed: int = 0):
    """Irregular 1-min time stamps, storm rain and a pond stage that follows it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * 60.0 + rng.uniform(-5.0, 5.0, n)  # logger jitter, still sorted
    t[0] = 0.0
    rain = np.zeros(n)
    n_storms = max(n // 6000, 3)
    starts = rng.integers(0, n - 600, n_storms)
    for s in starts:
        length = int(rng.integers(60, 600))
        rain[s : s + length] += rng.gamma(0.6, 0.5, length)
    stage = 4.0 + np.convolve(rain, np.exp(-np.arange(720) / 240.0), mode="full")[:n] * 0.01
    stage += rng.normal(0.0, 0.003, n)
    return t, rain, stage


def best_of(fn, repeat: int):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def pandas_rolling(t, rain):
    import pandas as pd

    s = pd.Series(rain, index=pd.to_datetime(t, unit="s"))
    return {f"acc_{w:g}h_mm": s.rolling(f"{w}h").sum().to_numpy() for w in WINDOWS_H}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of a year (< 30 s)")
    args = parser.parse_args(argv)
    n = 52_560 if args.quick else 525_600
    repeat = 3
    t, rain, stage = synthetic_year(n)
    print(f"points={n} ({'quick' if args.quick else 'one year'} of 1-min data, irregular)")

    rolling_s, ours = best_of(lambda: rainfall.rolling_accumulations_mm(t, rain, WINDOWS_H), repeat)
    try:
        pandas_s, theirs = best_of(lambda: pandas_rolling(t, rain), repeat)
        max_diff = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours)
    except ImportError:
        pandas_s, max_diff = float("nan"), float("nan")
    print(f"rolling accumulations (5 windows): analytics {rolling_s:.3f} s, pandas {pandas_s:.3f} s,"
          f" max |diff| {max_diff:.2e} mm")  # fmt: skip

    def run_qc():
        return quality.qc_flags(
            t, stage, fail_span=(0, 20), suspect_span=(1, 15), spike_suspect=0.05,
            spike_fail=0.2, rate_threshold_per_s=0.001, flat_tolerance=1e-4,
            flat_suspect_s=3600, flat_fail_s=4 * 3600, max_gap_s=180,
        )  # fmt: skip

    qc_s, flags = best_of(run_qc, repeat)
    print(f"QC (gross range, spike, rate of change, flat line, gap + aggregate): {qc_s:.3f} s")

    def run_rules():
        return (
            alerts.rainfall_alert_levels(t, rain),
            alerts.stage_alert_levels(stage, 6.0),
            alerts.rate_of_rise_levels(t, stage),
            alerts.overtopping_alert_levels(t, stage, 7.0),
        )

    alerts_s, levels = best_of(run_rules, repeat)
    print(f"alert rules (rainfall, stage, rate of rise, time to overtopping): {alerts_s:.3f} s")

    hold = alerts.stage_alert_levels(stage, 6.0, hysteresis_m=0.05)
    tracker_s, (_, events) = best_of(
        lambda: alerts.track_alerts(t, levels[1], hold, min_duration_s=1800.0), repeat
    )
    print(f"episode tracker: {tracker_s:.3f} s, {len(events)} events")
    ratio = pandas_s / rolling_s if rolling_s > 0 else float("nan")
    print(
        f"RESULT points={n} rolling_s={rolling_s:.4f} pandas_rolling_s={pandas_s:.4f} "
        f"ratio={ratio:.1f} rolling_max_diff_mm={max_diff:.1e} qc_s={qc_s:.4f} "
        f"alerts_s={alerts_s:.4f} tracker_s={tracker_s:.4f} "
        f"flags_fail={int(np.sum(flags['aggregate'] == 4))}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
