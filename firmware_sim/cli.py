"""``swc sim``: run the simulated county, read its ground truth, export its site registry."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from protocol.topics import DEFAULT_ROOT


def register(group: click.Group) -> None:
    group.add_command(sim)


@click.group()
def sim() -> None:
    """Simulated field sites with ground truth (firmware_sim)."""


@sim.command("run")
@click.argument("scenario", required=False, type=click.Path(exists=True, dir_okay=False,
                                                            path_type=Path))  # fmt: skip
@click.option("--storm", default=None, help="Design storm return period, e.g. 2y, 50y, 100y "
              "(default 50y unless --days is given).")  # fmt: skip
@click.option(
    "--days",
    type=float,
    default=None,
    help="Run a seeded stochastic season of this many days instead of a design storm.",
)
@click.option("--speed", type=float, default=0.0, show_default=True,
              help="Simulated seconds per wall-clock second for MQTT (1 = real time, "
                   "0 = as fast as possible).")  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("sim-out"), show_default=True, help="Output directory.")  # fmt: skip
@click.option("--mqtt", "mqtt_url", default=None, help="Publish through this broker, "
              "e.g. mqtt://127.0.0.1:1883; without it only the truth is written.")  # fmt: skip
@click.option("--root", default=DEFAULT_ROOT, show_default=True, help="Topic root.")
@click.option("--seed", type=int, default=None, help="Seed (default: the scenario's).")
@click.option("--write-messages", is_flag=True, help="Also write DIR/messages.jsonl.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def run_cmd(scenario, storm, days, speed, out_dir, mqtt_url, root, seed, write_messages, quiet):
    """Run SCENARIO (default: the shipped county) and write the truth into --out."""
    from .run import RunConfig, run

    if storm is not None and days is not None:
        raise click.UsageError("give either --storm or --days, not both")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    cfg = RunConfig(
        scenario=scenario,
        storm=storm or ("50y" if days is None else None),
        days=days,
        out_dir=out_dir,
        mqtt_url=mqtt_url,
        root=root,
        speed=speed,
        seed=seed,
        write_messages=write_messages,
    )
    bar_state: dict[str, object] = {}

    def progress(phase: str, done: float, total: float) -> None:
        if quiet:
            return
        pct = 100.0 * done / total if total else 100.0
        click.echo(f"\r{phase}: {done:.0f}/{total:.0f} ({pct:5.1f} %)", nl=False, err=True)
        if done >= total:
            click.echo("", err=True)
        bar_state[phase] = done

    out = run(cfg, progress)
    s = out.summary["run"]
    if not quiet:
        click.echo(f"rain: {out.rain.description}", err=True)
        click.echo(
            f"dams overtopped: {', '.join(s['dams_overtopped']) or 'none'}; "
            f"cisterns overflowed: {', '.join(s['cisterns_overflowed']) or 'none'}",
            err=True,
        )
        click.echo(
            f"water balance rel. error {s['water_balance_rel_error']:.2e}, sediment "
            f"{s['sediment_balance_rel_error']:.2e}; truth in {out_dir}",
            err=True,
        )
        if out.publish:
            click.echo(f"mqtt: {out.publish}", err=True)
        click.echo(f"timings: { {k: round(v, 3) for k, v in out.timings_s.items()} }", err=True)


@sim.command("truth")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def truth_cmd(directory: Path, as_json: bool) -> None:
    """Summarise the ground truth in DIRECTORY (recomputed from truth.parquet)."""
    from .truth import read_truth, summarize

    run_info = {}
    summ_path = directory / "summary.json" if directory.is_dir() else None
    if summ_path and summ_path.exists():
        prev = json.loads(summ_path.read_text())
        run_info = {k: prev["run"].get(k) for k in ("rain", "storm", "days", "simulated_s")}
    summary = summarize(read_truth(directory), run_info)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    r = summary["run"]
    click.echo(f"{r.get('scenario')}: {r.get('rain')}  {r['start']} .. {r['end']}")
    click.echo(f"{'site':12s} {'kind':12s} {'overtop':7s} {'water err':>10s} {'sed err':>10s} "
               f"{'retained t':>11s}")  # fmt: skip
    for sid, v in summary["sites"].items():
        click.echo(
            f"{sid:12s} {v['kind']:12s} {('yes' if v['overtopped'] else 'no'):7s} "
            f"{v['water_balance_rel_error']:10.2e} {v['sediment_balance_rel_error']:10.2e} "
            f"{v['sediment_retained_t']:11.1f}"
        )


@sim.command("registry")
@click.argument("scenario", required=False, type=click.Path(exists=True, dir_okay=False,
                                                            path_type=Path))  # fmt: skip
def registry_cmd(scenario: Path | None) -> None:
    """Print the scenario's site registry (YAML for `swc sites load`)."""
    from .run import registry_text

    sys.stdout.write(registry_text(scenario))
