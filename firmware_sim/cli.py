"""``swc sim``: run the simulated county, read its ground truth, export its site registry."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from protocol.topics import DEFAULT_ROOT


def register(group: click.Group) -> None:
    group.add_command(sim)


@click.group()
def sim() -> None:
    """Simulated field sites with ground truth (firmware_sim)."""


def parse_start(text: str, now: datetime | None = None) -> datetime:
    """``now`` (the next full minute) or an RFC 3339 time with a zone, as UTC."""
    if text.strip().lower() == "now":
        now = now or datetime.now(UTC)
        floor = now.replace(second=0, microsecond=0)
        return floor if floor == now else floor + timedelta(minutes=1)
    try:
        t = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected 'now' or a time such as 2026-07-20T00:00:00Z"
        ) from None
    if t.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no zone; add Z (UTC) or an offset such as +08:00")
    return t.astimezone(UTC)


def resolve_speed(speed: float | None, end: datetime, now: datetime | None = None) -> float:
    """``--speed`` as given, else 1 (real time) for a run that ends after ``now``, else 0."""
    if speed is not None:
        return speed
    return 1.0 if end > (now or datetime.now(UTC)) else 0.0


def _hhmm(seconds: float) -> str:
    m = round(seconds / 60.0)
    return f"{m // 60:02d}:{m % 60:02d}"


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
@click.option("--start", "start_text", default=None, metavar="now|TIME",
              help="Move the run to start at this time ('now': the next full minute). "
                   "Default: now with --mqtt, else the scenario's own start.")  # fmt: skip
@click.option("--speed", type=click.FloatRange(min=0.0), default=None,
              help="Simulated seconds per wall-clock second for MQTT (1 = real time, "
                   "0 = as fast as possible). Default: 1 when the run reaches past the "
                   "present (never publishing ahead of the clock), else 0.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Publish even over an earlier run's times, "
              "marking the messages to replace the stored values.")  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("sim-out"), show_default=True, help="Output directory.")  # fmt: skip
@click.option("--mqtt", "mqtt_url", default=None, help="Publish through this broker, "
              "e.g. mqtt://127.0.0.1:1883; without it only the truth is written.")  # fmt: skip
@click.option("--root", default=DEFAULT_ROOT, show_default=True, envvar="SWC_TOPIC_ROOT",
              show_envvar=True, help="Topic root (the server's SWC_TOPIC_ROOT).")  # fmt: skip
@click.option("--seed", type=int, default=None, help="Seed (default: the scenario's).")
@click.option("--write-messages", is_flag=True, help="Also write DIR/messages.jsonl.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def run_cmd(scenario, storm, days, start_text, speed, overwrite, out_dir, mqtt_url, root, seed,
            write_messages, quiet):  # fmt: skip
    """Run SCENARIO (default: the shipped county) and write the truth into --out."""
    from .previous import RunRefused
    from .run import RunConfig, run
    from .scenario import ScenarioError, load_scenario

    if storm is not None and days is not None:
        raise click.UsageError("give either --storm or --days, not both")
    from swc_ops.logs import setup_logging

    try:  # SWC_LOG_LEVEL / SWC_LOG_FORMAT as in every process; quiet by default
        setup_logging(os.environ.get("SWC_LOG_LEVEL") or "WARNING")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        base = load_scenario(scenario)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    if start_text is None and mqtt_url:
        start_text = "now"
    start = parse_start(start_text) if start_text is not None else base.start
    cfg = RunConfig(
        scenario=scenario,
        storm=storm or ("50y" if days is None else None),
        days=days,
        out_dir=out_dir,
        mqtt_url=mqtt_url,
        root=root,
        speed=0.0,
        seed=seed,
        write_messages=write_messages,
        start=start,
        overwrite=overwrite,
    )
    if mqtt_url:
        from .run import make_rain

        rain = make_rain(base, cfg)
        end = start + timedelta(seconds=rain.rain_mm.shape[1] * rain.base_dt_s)
        reaches_future = end > datetime.now(UTC)
        cfg.speed = resolve_speed(speed, end)
        if reaches_future and (cfg.speed == 0 or cfg.speed > 1):
            click.echo(
                f"warning: --speed {cfg.speed:g} publishes readings dated up to "
                f"{end:%Y-%m-%d %H:%M} UTC ahead of the wall clock; the receiving system "
                "must accept future times (set SWC_FUTURE_TOLERANCE_S on the server high "
                "enough) or it refuses them as future_time dead letters.",
                err=True,
            )
        if not quiet:
            click.echo(
                f"run start {start:%Y-%m-%d %H:%M} UTC, ends {end:%Y-%m-%d %H:%M} UTC, "
                f"speed {cfg.speed:g}" + (" (real time)" if cfg.speed == 1 else ""),
                err=True,
            )

    progress = Progress(start, quiet=quiet, tty=sys.stderr.isatty())
    try:
        out = run(cfg, progress)
    except RunRefused as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except (ConnectionError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not quiet:
        click.echo(final_table(out, out_dir), err=True)
    click.echo(f"run id: {out.run_id}", err=True)
    if out.publish.get("interrupted"):
        click.echo(
            f"interrupted: {out.publish['published']} of {out.publish['messages']} messages "
            f"sent, data up to {out.publish['data_end'] or 'none'}",
            err=True,
        )
        sys.exit(130)


class Progress:
    """Progress on stderr in simulated time and per cent of the run: one line rewritten in
    place on a terminal, a line per tenth of the run otherwise (logs, pipes)."""

    def __init__(self, start: datetime, quiet: bool = False, tty: bool = False):
        self.start = start
        self.quiet = quiet
        self.tty = tty
        self._next_pct: dict[str, float] = {}

    def line(self, phase: str, done: float, total: float) -> str:
        pct = 100.0 * done / total if total else 100.0
        if phase == "publish":
            at = self.start + timedelta(seconds=done)
            return (
                f"publish: simulated {at:%Y-%m-%d %H:%M} UTC, +{_hhmm(done)} of "
                f"{_hhmm(total)} ({pct:3.0f} %)"
            )
        if phase == "physics":
            return "physics: done" if done >= total else "physics: simulating the county"
        return f"{phase}: {pct:3.0f} %"

    def __call__(self, phase: str, done: float, total: float) -> None:
        if self.quiet:
            return
        finished = done >= total
        text = self.line(phase, done, total)
        if self.tty:
            click.echo(f"\r\x1b[K{text}", nl=finished, err=True)
            return
        pct = 100.0 * done / total if total else 100.0
        if pct >= self._next_pct.get(phase, 0.0) or finished:
            if finished and self._next_pct.get(phase) == float("inf"):
                return  # the end was already reported
            click.echo(text, err=True)
            self._next_pct[phase] = float("inf") if finished else (pct // 10 + 1) * 10


def _ids(ids: list[str]) -> str:
    return ", ".join(ids) if ids else "none"


def final_table(out, out_dir: Path) -> str:
    """The end of a run as a small two-column table."""
    s = out.summary["run"]
    t = out.timings_s
    start = out.scenario.start
    simulated = float(s.get("simulated_s") or out.result.t_s[-1])
    rows = [
        ("rain", out.rain.description),
        (
            "simulated",
            f"{start:%Y-%m-%d %H:%M} .. {start + timedelta(seconds=simulated):%Y-%m-%d %H:%M} "
            f"UTC ({_hhmm(simulated)} h)",
        ),
        ("dams overtopped", _ids(s["dams_overtopped"])),
        ("cisterns overflowed", _ids(s["cisterns_overflowed"])),
        ("water balance", f"relative error {s['water_balance_rel_error']:.1e}"),
        ("sediment balance", f"relative error {s['sediment_balance_rel_error']:.1e}"),
        ("truth", str(out_dir)),
    ]
    p = out.publish
    if p:
        rows.append(
            (
                "messages",
                f"{p['published']} of {p['messages']} published, {p['acked']} acknowledged, "
                f"{p['unacked_at_end']} unacknowledged at the end, {p['replayed']} resent",
            )
        )
        if p.get("data_end"):
            rows.append(("data sent up to", str(p["data_end"])))
    phases = ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in t.items() if k != "total_s")
    rows.append(("wall time", f"{t.get('total_s', 0.0):.1f} s ({phases})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


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


@sim.command("perturb")
@click.argument("scenario", required=False, type=click.Path(exists=True, dir_okay=False,
                                                            path_type=Path))  # fmt: skip
@click.option("--seed", type=int, required=True, help="Seed of the perturbation.")
@click.option("--strength", type=click.FloatRange(0.0, 3.0), default=1.0, show_default=True,
              help="Scale of the parameter ranges (0: only re-derive the crests).")  # fmt: skip
@click.option("--faults", is_flag=True, help="Also inject a clock drift and stage dropouts.")
def perturb_cmd(scenario: Path | None, seed: int, strength: float, faults: bool) -> None:
    """Print a seeded perturbation of SCENARIO (default: the shipped county) as YAML."""
    import yaml

    from .perturb import perturb_county
    from .scenario import load_scenario

    county = perturb_county(load_scenario(scenario), seed, strength=strength, faults=faults)
    data = county.scenario.model_dump(mode="json", exclude_none=True)
    header = (
        f"# swc sim perturb --seed {seed} --strength {strength:g}{' --faults' if faults else ''}\n"
        "# dam: crest design flood [y], freeboard [m], spillway design flood [y]\n"
        + "".join(
            f"#   {dam}: {d.return_period_y:g} y, {d.freeboard_m:.2f} m"
            + (f", {d.spillway_return_period_y:g} y\n" if d.spillway_return_period_y else "\n")
            for dam, d in county.design.items()
        )
    )
    sys.stdout.write(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
