"""``swc research``: derived products, curve and calibration versions, and the
validation against a simulator run, printed as JSON."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg


def register(group: click.Group) -> None:
    group.add_command(research)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _connect(database_url: str | None) -> psycopg.Connection:
    from ingest.cli import _require_db, load_settings

    settings = load_settings(database_url=database_url)
    return psycopg.connect(_require_db(settings))


def _echo(model: Any) -> None:
    if isinstance(model, list):
        click.echo(json.dumps([m.model_dump(mode="json") for m in model], indent=1))
    else:
        click.echo(model.model_dump_json(indent=1))


def _run(database_url: str | None, fn, *args, **kwargs) -> None:
    from .data import ResearchError

    try:
        with _connect(database_url) as conn:
            out = fn(conn, *args, **kwargs)
            conn.commit()
    except ResearchError as exc:
        raise click.ClickException(str(exc)) from None
    _echo(out)


_db = click.option("--database-url", help="PostgreSQL URL [SWC_DATABASE_URL]")
_start = click.option("--start", help="ISO time (UTC if no zone)")
_end = click.option("--end", help="ISO time (UTC if no zone)")
_nocache = click.option("--no-cache", is_flag=True, help="Recompute and do not store.")
_quality = click.option(
    "--exclude-quality",
    "exclude_quality",
    multiple=True,
    type=click.IntRange(1, 9),
    help="QARTOD flags to leave out (repeatable; default 4 and 9)",
)


def _q(values: tuple[int, ...]) -> tuple[int, ...]:
    from .data import DEFAULT_EXCLUDE_QUALITY

    return tuple(values) if values else DEFAULT_EXCLUDE_QUALITY


@click.group()
def research() -> None:
    """Researchers' derived products (storms, dam events, retention, plots, cisterns)."""


@research.command("storms")
@click.argument("site")
@_start
@_end
@click.option("--min-dry-h", type=float, default=6.0, show_default=True)
@click.option("--min-depth-mm", type=float, default=0.0, show_default=True)
@_quality
@_nocache
@_db
def storms_cmd(site, start, end, min_dry_h, min_depth_mm, exclude_quality, no_cache, database_url):
    """Storm events (depth, I10/I30/I60, EI30) at SITE's rain gauge."""
    from .products import storm_events

    _run(database_url, storm_events, site, _when(start), _when(end), min_dry_h=min_dry_h,
         min_depth_mm=min_depth_mm, exclude_quality=_q(exclude_quality),
         use_cache=not no_cache)  # fmt: skip


@research.command("dam-events")
@click.argument("site")
@_start
@_end
@click.option("--outflow", type=click.Choice(["auto", "measured", "hydraulics"]), default="auto",
              show_default=True, help="outflow from the flume or from the outlet hydraulics")  # fmt: skip
@click.option("--tail-h", type=float, default=24.0, show_default=True)
@_quality
@_nocache
@_db
def dam_events_cmd(site, start, end, outflow, tail_h, exclude_quality, no_cache, database_url):
    """Per-event inflow, peak stage, sediment in/out/retained and trap efficiency of a dam."""
    from .products import dam_events

    _run(database_url, dam_events, site, _when(start), _when(end), outflow=outflow,
         tail_h=tail_h, exclude_quality=_q(exclude_quality), use_cache=not no_cache)  # fmt: skip


@research.command("retention")
@click.argument("site")
@click.option("--at", help="ISO time (default now)")
@click.option("--annual-sediment-inflow-t", type=float, help="mean annual sediment inflow [t/yr]")
@_quality
@_nocache
@_db
def retention_cmd(site, at, annual_sediment_inflow_t, exclude_quality, no_cache, database_url):
    """Cumulative retention, remaining storage and silting life of a dam."""
    from .products import dam_retention

    _run(database_url, dam_retention, site, _when(at),
         annual_sediment_inflow_t=annual_sediment_inflow_t,
         exclude_quality=_q(exclude_quality), use_cache=not no_cache)  # fmt: skip


@research.command("plot-events")
@click.argument("site")
@_start
@_end
@_quality
@_nocache
@_db
def plot_events_cmd(site, start, end, exclude_quality, no_cache, database_url):
    """Runoff depth, runoff coefficient and soil loss per event of a runoff plot."""
    from .products import plot_events

    _run(database_url, plot_events, site, _when(start), _when(end),
         exclude_quality=_q(exclude_quality), use_cache=not no_cache)  # fmt: skip


@research.command("cistern-events")
@click.argument("site")
@_start
@_end
@_quality
@_nocache
@_db
def cistern_events_cmd(site, start, end, exclude_quality, no_cache, database_url):
    """Volume harvested and overflow per event of a cistern."""
    from .products import cistern_events

    _run(database_url, cistern_events, site, _when(start), _when(end),
         exclude_quality=_q(exclude_quality), use_cache=not no_cache)  # fmt: skip


@research.command("curves")
@click.argument("site")
@_db
def curves_cmd(site, database_url):
    """The design stage-storage curve and every survey version of a dam."""
    from .versions import list_stage_storage_curves

    _run(database_url, list_stage_storage_curves, site)


def _pairs(text: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            x, y = part.split(":")
            xs.append(float(x))
            ys.append(float(y))
        except ValueError:
            raise click.BadParameter(f"{part!r}: expected STAGE:VOLUME") from None
    return xs, ys


@research.command("add-curve")
@click.argument("site")
@click.option("--valid-from", required=True, help="ISO time from which the curve applies")
@click.option("--points", help="survey points 'h1:V1,h2:V2,...' [m:m3], gauge datum")
@click.option("--a", type=float, help="V = a h^b coefficient")
@click.option("--b", type=float, help="V = a h^b exponent")
@click.option("--kind", type=click.Choice(["power", "table"]), default=None)
@click.option("--source", default="survey", show_default=True)
@click.option("--survey-id", type=int)
@click.option("--note", default="")
@_db
def add_curve_cmd(site, valid_from, points, a, b, kind, source, survey_id, note, database_url):
    """Add a stage-storage curve version (a re-survey) to a dam."""
    from .versions import add_stage_storage_curve

    kw: dict[str, Any] = dict(kind=kind, source=source, survey_id=survey_id, note=note)
    if points:
        kw["stages_m"], kw["volumes_m3"] = _pairs(points)
    else:
        kw["a"], kw["b"] = a, b
    _run(database_url, add_stage_storage_curve, site, _when(valid_from), **kw)


@research.command("calibrations")
@click.argument("site")
@click.option("--channel", default="turbidity_ntu", show_default=True)
@_db
def calibrations_cmd(site, channel, database_url):
    """The params fallback and every calibration version of a site's channel."""
    from .versions import list_calibrations

    _run(database_url, list_calibrations, site, channel)


@research.command("fit-calibration")
@click.argument("site")
@click.argument("samples", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--valid-from", required=True, help="ISO time from which the calibration applies")
@click.option("--kind", type=click.Choice(["power", "linear"]), default="power", show_default=True)
@click.option("--channel", default="turbidity_ntu", show_default=True)
@click.option("--stream-id", type=int)
@click.option("--note", default="")
@_db
def fit_calibration_cmd(site, samples, valid_from, kind, channel, stream_id, note, database_url):
    """Fit a turbidity -> SSC calibration to SAMPLES (CSV with columns ntu, ssc_kg_m3)."""
    from .versions import fit_calibration

    with samples.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        ntu = [float(r["ntu"]) for r in rows]
        ssc = [float(r["ssc_kg_m3"]) for r in rows]
    except (KeyError, ValueError) as exc:
        raise click.ClickException(
            f"{samples}: need numeric columns ntu, ssc_kg_m3 ({exc})"
        ) from None
    _run(database_url, fit_calibration, site, _when(valid_from), ntu, ssc, kind=kind,
         channel=channel, stream_id=stream_id, note=note)  # fmt: skip


@research.command("validate")
@click.argument("sim_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--load/--no-load", default=True, show_default=True,
              help="load the run's registry and messages.jsonl into the database first")  # fmt: skip
@_db
def validate_cmd(sim_dir, load, database_url):
    """Compare products computed from the database with SIM_DIR's ground truth.

    SIM_DIR comes from `swc sim run --write-messages --out SIM_DIR`. The
    database should be a scratch one: it is created when it does not exist,
    migrated, and the run is loaded into it. The per-dam table goes to stderr,
    the report as JSON to stdout.
    """
    from ingest.cli import _require_db, load_settings
    from ingest.store.createdb import CreateDatabaseError, ensure_database
    from ingest.store.migrate import MigrationError, migrate

    from .validate import format_table, load_simulation, validate

    settings = load_settings(database_url=database_url)
    if settings.database_url:
        try:
            if ensure_database(settings.database_url):
                click.echo("created the database", err=True)
        except CreateDatabaseError as exc:
            raise click.ClickException(str(exc)) from None
    dsn = _require_db(settings)
    try:
        migrate(dsn, settings.timescale)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    with psycopg.connect(dsn) as conn:
        if load:
            try:
                counts = load_simulation(conn, sim_dir)
            except FileNotFoundError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"loaded {counts}", err=True)
        report = validate(conn, sim_dir)
        conn.commit()
    click.echo(format_table(report), err=True)
    sys.stdout.write(report.model_dump_json(indent=1) + "\n")
