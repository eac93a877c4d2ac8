"""Subcommands of alerting and access: `swc keys`, `swc devices add`, `swc broker acl`,
`swc alerts check`; registered by ``ingest.cli.register``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import psycopg

from ..store.keys import ROLES


def _db(flags: dict[str, Any]):
    from ..cli import _require_db, load_settings

    settings = load_settings(**flags)
    return settings, _require_db(settings)


def _with_db(f):
    from ..settings_cli import DATABASE_FIELDS, settings_options

    return settings_options(DATABASE_FIELDS)(f)


@click.group("keys")
def keys() -> None:
    """API keys of the HTTP API (roles: viewer, surveyor, engineer, admin)."""


@keys.command("create")
@click.option("--role", type=click.Choice(list(ROLES)), required=True, help="role")
@click.option("--name", default="", help="who or what holds the key")
@_with_db
def keys_create(role: str, name: str, **flags: Any) -> None:
    """Create a key and print it, once (only its hash is stored)."""
    from ..store.keys import create_key

    _, dsn = _db(flags)
    with psycopg.connect(dsn) as conn:
        row, key = create_key(conn, role, name)
    click.echo(key)
    click.echo(f"key id={row.id} role={row.role} prefix={row.prefix}: store it now", err=True)


@keys.command("list")
@_with_db
def keys_list(**flags: Any) -> None:
    """List keys (id, role, prefix, name, state)."""
    from ..store.keys import list_keys

    _, dsn = _db(flags)
    with psycopg.connect(dsn) as conn:
        for k in list_keys(conn):
            state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
            click.echo(f"{k.id}\t{k.role}\t{k.prefix}…\t{state}\t{k.name}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@_with_db
def keys_revoke(key_id: int, **flags: Any) -> None:
    """Revoke key KEY_ID."""
    from ..store.keys import revoke_key

    _, dsn = _db(flags)
    with psycopg.connect(dsn) as conn:
        if revoke_key(conn, key_id) is None:
            raise click.ClickException(f"key {key_id} does not exist")
    click.echo(f"revoked key {key_id}")


@click.group("devices")
def devices() -> None:
    """Devices and gateways and their broker credentials."""


@devices.command("add")
@click.argument("device_id")
@click.option("--site", "site_id", help="site the device measures")
@click.option("--gateway", "gateway_id", help="gateway that forwards for it")
@click.option("--kind", type=click.Choice(["logger", "gateway"]), default="logger")
@_with_db
def devices_add(
    device_id: str, site_id: str | None, gateway_id: str | None, kind: str, **flags: Any
) -> None:
    """Register DEVICE_ID (or update it) and print a new broker password, once."""
    from protocol.topics import TopicError

    from ..store.credentials import add_device

    _, dsn = _db(flags)
    with psycopg.connect(dsn) as conn:
        try:
            password = add_device(
                conn, device_id, kind=kind, site_id=site_id, gateway_id=gateway_id
            )
        except (LookupError, ValueError, TopicError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(password)
    click.echo(
        f"{kind} {device_id}: password stored hashed; run `swc broker acl` to update the broker",
        err=True,
    )


@click.group("broker")
def broker() -> None:
    """The MQTT broker's access files."""


@broker.command("conf")
@click.option("--port", type=int, default=1883, show_default=True, help="listener port")
@click.option("--bind", default="127.0.0.1", show_default=True, help="listener address")
@click.option(
    "--persistence-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/mosquitto"),
    show_default=True,
    help="where mosquitto keeps sessions and queued messages (created if missing)",
)
def broker_conf(port: int, bind: str, persistence_dir: Path) -> None:
    """Print a mosquitto.conf for a mosquitto run on this host, not in a container.

    It is the shipped ingest/broker/mosquitto.conf (persistence, no queue limit)
    with its listener and persistence folder set for this machine:
    `swc broker conf > mosquitto.conf && mosquitto -c mosquitto.conf`.
    """
    import os
    import sys

    from ..broker import prepare_for_broker_user, render_mosquitto_conf

    folder = persistence_dir.resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create {folder}: {exc.strerror}") from None
    # started as root, mosquitto drops to its own user, which must be able to write there
    extra = prepare_for_broker_user(folder) if os.geteuid() == 0 else ""
    sys.stdout.write(render_mosquitto_conf(port, folder, bind=bind, extra=extra))


@broker.command("acl")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("broker"),
    show_default=True,
    help="where to write dynamic-security.json, passwd and acl",
)
@click.option("--mqtt-url", help="the service's own user:password [SWC_MQTT_URL]")
@click.option("--topic-root", help="[SWC_TOPIC_ROOT]")
@click.option("--service-user", help="user of ingest and alerts (default: from SWC_MQTT_URL)")
@click.option("--service-password", help="its password (default: from SWC_MQTT_URL)")
@_with_db
def broker_acl(
    directory: Path,
    service_user: str | None,
    service_password: str | None,
    **flags: Any,
) -> None:
    """Write the broker's access from the registry.

    dynamic-security.json (recommended) is for Mosquitto's dynamic-security
    plugin: it refuses at subscribe time what a device may not read ($share
    groups, others' topics: SUBACK 0x87) and lets each device connect only
    with its own id as client id. Each device publishes only under
    {root}/{its id}/ and reads only its config; the service user reads all
    telemetry and writes the alerts and config topics. In mosquitto.conf:
    `allow_anonymous false`, `plugin .../mosquitto_dynamic_security.so`,
    `plugin_opt_config_file DIR/dynamic-security.json`; then restart mosquitto
    (the plugin reads the file at start; the consumer's session loses
    nothing). passwd and acl are the older form (`password_file`,
    `acl_file`, reload with SIGHUP), whose subscribe checks Mosquitto 2.0
    does not implement: prefer the plugin.
    """
    from ..store.credentials import write_broker_files, write_dynsec_config

    settings, dsn = _db(flags)
    if settings.mqtt_url and not service_user:
        service_user, service_password = settings.mqtt.username, settings.mqtt.password
    if service_user and not service_password:
        raise click.UsageError("the service user needs a password (--service-password)")
    with psycopg.connect(dsn) as conn:
        files = write_broker_files(
            conn,
            directory,
            root=settings.topic_root,
            service_user=service_user,
            service_password=service_password,
        )
        dynsec = write_dynsec_config(
            conn,
            directory,
            root=settings.topic_root,
            service_user=service_user,
            service_password=service_password,
        )
    click.echo(
        f"wrote {dynsec}, {files.password_file} and {files.acl_file}: {files.devices} devices"
        + (f", service user {service_user}" if service_user else ", no service user")
    )


@click.group("alerts")
def alerts() -> None:
    """The alert engine."""


@alerts.command("check")
@_with_db
def alerts_check(**flags: Any) -> None:
    """Run the periodic check (logger offline) once, e.g. from cron when no consumer runs."""
    from .engine import AlertEngine

    settings, dsn = _db(flags)
    engine = AlertEngine(settings, dsn)
    n = engine.check_offline()
    click.echo(f"{n} alert events")


def register(group: click.Group) -> None:
    for cmd in (keys, devices, broker, alerts):
        group.add_command(cmd)
