"""End-to-end validation of the derived products against the simulator's ground truth.

``load_simulation`` puts a ``swc sim run ... --write-messages`` directory into a
migrated database: the registry (``sites.yaml``) and the loggers' noisy
messages (``messages.jsonl``), decoded by :func:`protocol.decode_telemetry`
and written with the ingest writer. ``validate`` then computes the products
from the database and compares them with ``summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml
from pydantic import BaseModel, Field

from ingest.store.readings import ReadingWriter
from ingest.store.registry import RegistryFile, load_registry
from protocol.messages import decode_telemetry

from .products import cistern_events, dam_events, plot_events

__all__ = ["DamCheck", "ValidationReport", "format_table", "load_simulation", "validate"]

# Site parameters the simulator's registry (firmware_sim.scenario.site_params) leaves
# out but the products use; copied from the run's scenario.yaml when present.
_MISSING_REGISTRY_KEYS = {
    "runoff_plots": ("k_factor", "c_factor", "p_factor"),
    "cisterns": ("initial_loss_mm", "use_m3_day"),
}


def registry_with_scenario(sim_dir: Path) -> RegistryFile:
    """``sites.yaml`` of a run, with the plot and cistern parameters the registry lacks
    (K, C, P factors; initial loss and household use) taken from ``scenario.yaml``."""
    data = yaml.safe_load((sim_dir / "sites.yaml").read_text(encoding="utf-8"))
    scen_path = sim_dir / "scenario.yaml"
    if scen_path.exists():
        scen = yaml.safe_load(scen_path.read_text(encoding="utf-8")) or {}
        by_id = {}
        for group, keys in _MISSING_REGISTRY_KEYS.items():
            for s in scen.get(group) or []:
                by_id[s["id"]] = {k: s[k] for k in keys if k in s}
        for site in data.get("sites", []):
            for k, v in by_id.get(site["id"], {}).items():
                site.setdefault("params", {}).setdefault(k, v)
    return RegistryFile.model_validate(data)


def load_messages(
    conn: psycopg.Connection, payloads: Iterable[bytes], batch_readings: int = 20000
) -> int:
    """Decode telemetry payloads and write their readings; returns readings written."""
    streams = {
        (d, ch): sid for sid, d, ch in conn.execute("SELECT id, device_id, channel FROM streams")
    }
    writer = ReadingWriter()
    received = datetime.now(UTC)
    rows: list[tuple] = []
    written = 0
    for payload in payloads:
        tel = decode_telemetry(payload)
        for t, ch, v, q in tel.rows:
            sid = streams.get((tel.device, ch))
            if sid is None:
                continue
            rows.append((t, sid, v, q or 2, received))
        if len(rows) >= batch_readings:
            written += writer.write(conn, rows).written
            rows = []
    if rows:
        written += writer.write(conn, rows).written
    return written


def load_simulation(conn: psycopg.Connection, sim_dir: Path) -> dict[str, int]:
    """Load a simulator output directory (registry and messages) into the database."""
    sim_dir = Path(sim_dir)
    msgs = sim_dir / "messages.jsonl"
    if not msgs.exists():
        raise FileNotFoundError(
            f"{msgs} is missing: run `swc sim run --write-messages --out {sim_dir}`"
        )
    counts = load_registry(conn, registry_with_scenario(sim_dir))

    def payloads():
        with msgs.open(encoding="utf-8") as fh:
            for line in fh:
                yield json.dumps(json.loads(line)["payload"]).encode()

    counts["readings"] = load_messages(conn, payloads())
    return counts


class DamCheck(BaseModel):
    site_id: str
    events: int
    retained_t: float
    truth_retained_t: float
    error_rel: float
    sediment_in_t: float
    truth_sediment_in_t: float
    sediment_out_t: float
    truth_sediment_out_t: float
    inflow_volume_m3: float
    truth_inflow_volume_m3: float
    peak_stage_m: float
    truth_peak_stage_m: float
    trap_efficiency: float | None
    truth_trap_efficiency: float | None
    trap_efficiency_gill: float | None


class OtherCheck(BaseModel):
    site_id: str
    kind: str
    quantity: str
    value: float | None
    truth: float | None
    error_rel: float | None


class ValidationReport(BaseModel):
    storm: Any = None
    dams: list[DamCheck]
    total_retained_t: float
    truth_total_retained_t: float
    total_error_rel: float
    max_dam_error_rel: float
    others: list[OtherCheck] = Field(default_factory=list)


def _rel(x: float | None, y: float | None) -> float | None:
    if x is None or y is None or y == 0:
        return None
    return x / y - 1.0


def validate(conn: psycopg.Connection, sim_dir: Path, use_cache: bool = True) -> ValidationReport:
    """Compare the products computed from the database with the run's truth.

    Every check dam with a stage and an inflow turbidity channel is compared
    (retained sediment over all its events), plus runoff plots (runoff
    volume, soil loss) and cisterns (overflow volume) for information.
    """
    summary = json.loads((Path(sim_dir) / "summary.json").read_text())
    truth = summary["sites"]
    dams: list[DamCheck] = []
    others: list[OtherCheck] = []
    rows = conn.execute("SELECT id, kind FROM sites ORDER BY id").fetchall()
    for site_id, kind in rows:
        tr = truth.get(site_id)
        if tr is None:
            continue
        if kind == "check_dam":
            ev = dam_events(conn, site_id, use_cache=use_cache).events
            sed = [e for e in ev if e.sediment_in_t is not None]
            if not sed:
                continue
            ret = sum(e.sediment_retained_t for e in sed)
            s_in = sum(e.sediment_in_t for e in sed)
            s_out = sum(e.sediment_out_t for e in sed)
            gill = [e.trap_efficiency_gill for e in sed if e.trap_efficiency_gill is not None]
            dams.append(
                DamCheck(
                    site_id=site_id,
                    events=len(sed),
                    retained_t=ret,
                    truth_retained_t=tr["sediment_retained_t"],
                    error_rel=ret / tr["sediment_retained_t"] - 1.0,
                    sediment_in_t=s_in,
                    truth_sediment_in_t=tr["sediment_in_t"],
                    sediment_out_t=s_out,
                    truth_sediment_out_t=tr["sediment_out_t"],
                    inflow_volume_m3=sum(e.inflow_volume_m3 for e in sed),
                    truth_inflow_volume_m3=tr["inflow_volume_m3"],
                    peak_stage_m=max(e.peak_stage_m for e in sed),
                    truth_peak_stage_m=tr["peak_stage_m"],
                    trap_efficiency=ret / s_in if s_in > 0 else None,
                    truth_trap_efficiency=tr.get("trap_efficiency"),
                    trap_efficiency_gill=gill[0] if gill else None,
                )
            )
        elif kind == "runoff_plot":
            ev = plot_events(conn, site_id, use_cache=use_cache).events
            vol = sum(e.runoff_volume_m3 for e in ev)
            others.append(OtherCheck(site_id=site_id, kind=kind, quantity="runoff_volume_m3",
                                     value=vol, truth=tr.get("runoff_volume_m3"),
                                     error_rel=_rel(vol, tr.get("runoff_volume_m3"))))  # fmt: skip
            soil = [e.soil_loss_t for e in ev if e.soil_loss_t is not None]
            s = sum(soil) if soil else None
            others.append(OtherCheck(site_id=site_id, kind=kind, quantity="soil_loss_t", value=s,
                                     truth=tr.get("soil_loss_t"),
                                     error_rel=_rel(s, tr.get("soil_loss_t"))))  # fmt: skip
        elif kind == "cistern":
            ev = cistern_events(conn, site_id, use_cache=use_cache).events
            over = sum(e.overflow_volume_m3 for e in ev)
            others.append(OtherCheck(site_id=site_id, kind=kind, quantity="overflow_volume_m3",
                                     value=over, truth=tr.get("overflow_volume_m3"),
                                     error_rel=_rel(over, tr.get("overflow_volume_m3"))))  # fmt: skip
            harv = sum(e.harvested_volume_m3 for e in ev)
            t_h = (tr.get("inflow_volume_m3") or 0.0) - (tr.get("overflow_volume_m3") or 0.0)
            others.append(OtherCheck(site_id=site_id, kind=kind, quantity="harvested_volume_m3",
                                     value=harv, truth=t_h, error_rel=_rel(harv, t_h)))  # fmt: skip
    tot = sum(d.retained_t for d in dams)
    tot_truth = sum(d.truth_retained_t for d in dams)
    return ValidationReport(
        storm=summary["run"].get("storm") or summary["run"].get("rain"),
        dams=dams,
        total_retained_t=tot,
        truth_total_retained_t=tot_truth,
        total_error_rel=(tot / tot_truth - 1.0) if tot_truth else 0.0,
        max_dam_error_rel=max((abs(d.error_rel) for d in dams), default=0.0),
        others=others,
    )


def format_table(report: ValidationReport) -> str:
    """The per-dam table as text."""
    lines = [
        f"{'dam':9s} {'ev':>2s} {'in t':>8s} {'truth':>8s} {'out t':>7s} {'truth':>7s} "
        f"{'retained t':>10s} {'truth':>8s} {'error':>7s} {'TE':>5s} {'TE true':>7s} "
        f"{'TE Gill':>7s} {'peak m':>6s} {'truth':>6s}"
    ]
    for d in report.dams:
        lines.append(
            f"{d.site_id:9s} {d.events:2d} {d.sediment_in_t:8.1f} {d.truth_sediment_in_t:8.1f} "
            f"{d.sediment_out_t:7.1f} {d.truth_sediment_out_t:7.1f} {d.retained_t:10.1f} "
            f"{d.truth_retained_t:8.1f} {100 * d.error_rel:6.2f}% "
            f"{d.trap_efficiency or float('nan'):5.3f} {d.truth_trap_efficiency or float('nan'):7.3f} "
            f"{d.trap_efficiency_gill or float('nan'):7.3f} {d.peak_stage_m:6.2f} "
            f"{d.truth_peak_stage_m:6.2f}"
        )
    lines.append(
        f"{'total':9s} {'':2s} {'':8s} {'':8s} {'':7s} {'':7s} {report.total_retained_t:10.1f} "
        f"{report.truth_total_retained_t:8.1f} {100 * report.total_error_rel:6.2f}%"
    )
    for o in report.others:
        err = "" if o.error_rel is None else f"{100 * o.error_rel:6.1f}%"
        val = "None" if o.value is None else f"{o.value:.3f}"
        tru = "None" if o.truth is None else f"{o.truth:.3f}"
        lines.append(f"{o.site_id:9s} {o.quantity:20s} {val:>10s} truth {tru:>10s} {err}")
    return "\n".join(lines)
