"""Ground truth of a run: one Parquet table of the true state per site and step, and a
JSON summary per site (totals, balances, event times), both computed from the table.

Rows: one per site and grid point, the first at the run start (the initial
state, per-step columns 0). Per-step columns (``*_volume_m3``, ``sediment_*_t``
except the state ``sediment_suspended_t`` / ``sediment_retained_t``,
``rain_mm``, ``soil_loss_t``) are totals over the step ending at the row's time.
Rates (``*_m3_s``), concentrations and states are values at the row's time.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .physics import SimResult
from .scenario import Scenario

TRUTH_FILE = "truth.parquet"
SUMMARY_FILE = "summary.json"

FLOAT_COLUMNS = [
    "dt_s",
    "rain_mm",
    "inflow_m3_s",
    "outflow_m3_s",
    "spillway_m3_s",
    "culvert_m3_s",
    "overtopping_m3_s",
    "stage_m",
    "level_m",
    "volume_m3",
    "inflow_volume_m3",
    "local_inflow_volume_m3",
    "outflow_volume_m3",
    "loss_volume_m3",
    "use_volume_m3",
    "overflow_volume_m3",
    "inflow_ssc_kg_m3",
    "pond_ssc_kg_m3",
    "outflow_ssc_kg_m3",
    "sediment_in_t",
    "local_sediment_t",
    "sediment_out_t",
    "sediment_deposited_t",
    "sediment_suspended_t",
    "sediment_retained_t",
    "deposit_volume_m3",
    "soil_loss_t",
    "runoff_m3_s",
]
FLAG_COLUMNS = ["overtopping", "spilling", "overflowing"]


def truth_table(result: SimResult, scenario: Scenario) -> pa.Table:
    """The truth of a run as an Arrow table (times UTC, SI units in the column names)."""
    start = scenario.start
    t0_us = int(start.timestamp() * 1_000_000)
    times_us = t0_us + np.round(result.t_s * 1_000_000).astype(np.int64)
    npts = result.t_s.size
    dt_col = np.concatenate([[0.0], result.dt_s])
    dams = {d.id: d for d in scenario.check_dams}
    cols: dict[str, list[np.ndarray]] = {c: [] for c in FLOAT_COLUMNS + FLAG_COLUMNS}
    site_col: list[str] = []
    kind_col: list[str] = []
    time_col: list[np.ndarray] = []
    for sid in result.site_ids:
        truth = result.sites[sid]
        site_col.extend([sid] * npts)
        kind_col.extend([truth.kind] * npts)
        time_col.append(times_us)
        src = dict(truth.columns)
        src["dt_s"] = dt_col
        for c in FLOAT_COLUMNS:
            v = src.get(c)
            cols[c].append(np.asarray(v, dtype=float) if v is not None else np.full(npts, np.nan))
        nan_flag = np.zeros(npts, dtype=bool)
        if truth.kind == "check_dam":
            spec = dams[sid]
            cols["overtopping"].append(src["stage_m"] > spec.dam_crest_m)
            cols["spilling"].append(src["spillway_m3_s"] > 0)
            cols["overflowing"].append(nan_flag)
        elif truth.kind == "cistern":
            cols["overtopping"].append(nan_flag)
            cols["spilling"].append(nan_flag)
            cols["overflowing"].append(src["overflow_volume_m3"] > 0)
        else:
            for c in FLAG_COLUMNS:
                cols[c].append(nan_flag)
    arrays = {
        "site_id": pa.array(site_col, pa.string()).dictionary_encode(),
        "kind": pa.array(kind_col, pa.string()).dictionary_encode(),
        "time": pa.array(np.concatenate(time_col), pa.timestamp("us", tz="UTC")),
    }
    for c in FLOAT_COLUMNS:
        arrays[c] = pa.array(np.concatenate(cols[c]), pa.float64(), from_pandas=True)
    for c in FLAG_COLUMNS:
        arrays[c] = pa.array(np.concatenate(cols[c]), pa.bool_())
    meta = {
        "terminal_dams": [d.id for d in scenario.check_dams if d.downstream is None],
        "scenario": scenario.name,
        "start": start.isoformat().replace("+00:00", "Z"),
    }
    table = pa.table(arrays)
    return table.replace_schema_metadata({b"swc_truth": json.dumps(meta).encode()})


def write_truth(table: pa.Table, out_dir: Path, run_info: dict[str, Any]) -> dict[str, Any]:
    """Write ``truth.parquet`` and ``summary.json`` into ``out_dir``; return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_dir / TRUTH_FILE, compression="zstd")
    summary = summarize(table, run_info)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=_json_default))
    return summary


def read_truth(path: Path) -> pa.Table:
    p = Path(path)
    if p.is_dir():
        p = p / TRUTH_FILE
    return pq.read_table(p)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _iso(us: int) -> str:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))
    return t.isoformat().replace("+00:00", "Z")


def _rel(residual: float, scale: float) -> float:
    return abs(residual) / scale if scale > 0 else 0.0


def _starts(times: np.ndarray, flag: np.ndarray) -> list[str]:
    f = flag.astype(bool)
    rise = f & ~np.concatenate([[False], f[:-1]])
    return [_iso(t) for t in times[rise]]


def _site_summary(kind: str, times: np.ndarray, c: dict[str, np.ndarray]) -> dict[str, Any]:
    def tot(name: str) -> float:
        v = c[name]
        return float(np.nansum(v)) if not np.all(np.isnan(v)) else 0.0

    def col(name: str) -> np.ndarray:
        v = c[name]
        return np.nan_to_num(v, nan=0.0)

    out: dict[str, Any] = {"kind": kind, "overtopped": bool(c["overtopping"].any())}
    water_in = tot("inflow_volume_m3")
    water_out = tot("outflow_volume_m3") + tot("loss_volume_m3") + tot("use_volume_m3")
    vol = col("volume_m3")
    dv = float(vol[-1] - vol[0])
    scale = max(water_in, float(vol[0]), 1.0) if kind != "rain_gauge" else 0.0
    out["water_balance_rel_error"] = _rel(water_in - water_out - dv, scale)
    sed_in = tot("sediment_in_t")
    sed_out = tot("sediment_out_t")
    ret = col("sediment_retained_t")
    d_ret = float(ret[-1] - ret[0])
    out["sediment_balance_rel_error"] = _rel(sed_in - sed_out - d_ret, max(sed_in, 1e-9))
    out["sediment_retained_t"] = float(ret[-1])
    out["rain_mm"] = tot("rain_mm")
    if kind == "check_dam":
        stage = col("stage_m")
        k = int(np.argmax(stage))
        out.update(
            inflow_volume_m3=water_in,
            local_inflow_volume_m3=tot("local_inflow_volume_m3"),
            outflow_volume_m3=tot("outflow_volume_m3"),
            loss_volume_m3=tot("loss_volume_m3"),
            initial_volume_m3=float(vol[0]),
            final_volume_m3=float(vol[-1]),
            peak_stage_m=float(stage[k]),
            peak_stage_time=_iso(times[k]),
            peak_inflow_m3_s=float(col("inflow_m3_s").max()),
            peak_outflow_m3_s=float(col("outflow_m3_s").max()),
            sediment_in_t=sed_in,
            local_sediment_t=tot("local_sediment_t"),
            sediment_out_t=sed_out,
            sediment_deposited_t=tot("sediment_deposited_t"),
            sediment_suspended_end_t=float(col("sediment_suspended_t")[-1]),
            deposit_volume_m3=float(col("deposit_volume_m3")[-1]),
            trap_efficiency=(sed_in - sed_out) / sed_in if sed_in > 0 else None,
            spilled=bool(c["spilling"].any()),
            spill_start_times=_starts(times, c["spilling"]),
            overtopping_start_times=_starts(times, c["overtopping"]),
            overtopping_volume_m3=float(
                np.sum(col("overtopping_m3_s")[1:] * col("dt_s")[1:])
            ),  # approximate: rate at step end x step
        )
    elif kind == "cistern":
        out.update(
            overflowed=bool(c["overflowing"].any()),
            overflow_start_times=_starts(times, c["overflowing"]),
            inflow_volume_m3=water_in,
            overflow_volume_m3=tot("overflow_volume_m3"),
            use_volume_m3=tot("use_volume_m3"),
            initial_volume_m3=float(vol[0]),
            final_volume_m3=float(vol[-1]),
            peak_level_m=float(col("level_m").max()),
        )
    elif kind == "runoff_plot":
        out.update(
            runoff_volume_m3=water_in,
            soil_loss_t=tot("soil_loss_t"),
            peak_runoff_m3_s=float(col("runoff_m3_s").max()),
        )
    return out


def summarize(table: pa.Table, run_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-site and run-level totals, balances and event times from a truth table."""
    meta = json.loads((table.schema.metadata or {}).get(b"swc_truth", b"{}"))
    site = table.column("site_id").combine_chunks().cast(pa.string()).to_numpy(zero_copy_only=False)
    kinds = table.column("kind").combine_chunks().cast(pa.string()).to_numpy(zero_copy_only=False)
    times = table.column("time").cast(pa.int64()).to_numpy()
    data = {
        name: table.column(name).to_numpy()
        for name in FLOAT_COLUMNS + FLAG_COLUMNS
        if name in table.column_names
    }
    for name in FLOAT_COLUMNS:
        data[name] = np.asarray(data[name], dtype=float)
    order: list[str] = list(dict.fromkeys(site.tolist()))
    bounds = {}
    change = np.flatnonzero(site[1:] != site[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [site.size]])
    for s, e in zip(starts, ends, strict=True):
        bounds[site[s]] = (s, e)
    sites: dict[str, Any] = {}
    for sid in order:
        s, e = bounds[sid]
        sites[sid] = _site_summary(str(kinds[s]), times[s:e], {k: v[s:e] for k, v in data.items()})
    dams = [k for k, v in sites.items() if v["kind"] == "check_dam"]
    terminal = meta.get("terminal_dams", [])
    local_in = sum(sites[d]["local_inflow_volume_m3"] for d in dams)
    sys_out = sum(sites[d]["outflow_volume_m3"] for d in terminal)
    loss = sum(sites[d]["loss_volume_m3"] for d in dams)
    dv = sum(sites[d]["final_volume_m3"] - sites[d]["initial_volume_m3"] for d in dams)
    s_local = sum(sites[d]["local_sediment_t"] for d in dams)
    s_out = sum(sites[d]["sediment_out_t"] for d in terminal)
    s_ret = sum(sites[d]["sediment_retained_t"] for d in dams)
    run = {
        **(run_info or {}),
        "scenario": meta.get("scenario"),
        "start": _iso(times.min()) if times.size else None,
        "end": _iso(times.max()) if times.size else None,
        "rows": table.num_rows,
        "dams": len(dams),
        "dams_overtopped": sorted(d for d in dams if sites[d]["overtopped"]),
        "cisterns_overflowed": sorted(
            k for k, v in sites.items() if v["kind"] == "cistern" and v["overflowed"]
        ),
        "system_local_inflow_m3": local_in,
        "system_outflow_m3": sys_out,
        "system_loss_m3": loss,
        "system_storage_change_m3": dv,
        "water_balance_rel_error": _rel(local_in - sys_out - loss - dv, max(local_in, 1.0)),
        "sediment_in_t": s_local,
        "sediment_out_t": s_out,
        "sediment_retained_t": s_ret,
        "sediment_balance_rel_error": _rel(s_local - s_out - s_ret, max(s_local, 1e-9)),
        "max_site_water_balance_rel_error": max(
            (v["water_balance_rel_error"] for v in sites.values()), default=0.0
        ),
        "max_site_sediment_balance_rel_error": max(
            (v["sediment_balance_rel_error"] for v in sites.values()), default=0.0
        ),
    }
    return {"run": _clean(run), "sites": _clean(sites)}


def _clean(x: Any) -> Any:
    """NaN -> None, numpy -> Python, for strict JSON."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
