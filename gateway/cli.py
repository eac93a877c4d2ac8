"""`swc gateway ...`: run the field gateway, check its config, inspect its queue and reject log."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import click

from .config import SAMPLE_CONFIG_PATH, ConfigError, GatewayConfig, load_config

_CONFIG = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))


def _load(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _open_queue(cfg: GatewayConfig):
    from .queue import DiskQueue

    if not cfg.queue_path.exists():
        raise click.UsageError(f"no queue database at {cfg.queue_path}; has the gateway run yet?")
    return DiskQueue(cfg.queue_path, max_bytes=cfg.queue.max_bytes)


@click.group("gateway")
def gateway() -> None:
    """The field store-and-forward gateway (see docs/gateway.md)."""


@gateway.command("run")
@_CONFIG
def run(config: Path) -> None:
    """Run the gateway with the options in CONFIG (YAML) until SIGTERM or Ctrl-C."""
    cfg = _load(config)
    from .logs import setup_logging
    from .queue import QueueError
    from .service import Gateway

    # SWC_LOG_LEVEL / SWC_LOG_FORMAT, as in every process, else the config file's
    try:
        setup_logging(
            os.environ.get("SWC_LOG_LEVEL") or cfg.log.level,
            os.environ.get("SWC_LOG_FORMAT") or cfg.log.format,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        gw = Gateway(cfg)
    except (QueueError, OSError) as exc:
        raise click.ClickException(f"cannot start the gateway: {exc}") from None
    if cfg.metrics.port:
        from swc_ops.metrics import PROCESS, MetricsPortBusy, serve

        from .metrics import registry_for

        try:
            serve(cfg.metrics.port, cfg.metrics.host, "metrics.port", registry_for(gw), PROCESS)
        except MetricsPortBusy as exc:
            raise click.ClickException(str(exc)) from None
    stop_requested = threading.Event()

    def _on_signal(signum, frame) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    gw.start()
    while not stop_requested.wait(1.0):
        pass
    gw.stop()


@gateway.command("check")
@_CONFIG
@click.option(
    "--no-resolve",
    is_flag=True,
    help="do not look up the brokers' host names (a config written away from the network)",
)
def check(config: Path, no_resolve: bool) -> None:
    """Validate CONFIG and print the effective options (passwords hidden).

    Beyond the options' form it refuses what cannot work where it runs: a broker host that
    is a placeholder (example.org ...) or does not resolve, and a line source that does not
    exist. It exits 1 and names each problem.
    """
    cfg = _load(config)
    data = cfg.model_dump(mode="json")
    for side in ("local", "upstream"):
        if data[side].get("password"):
            data[side]["password"] = "***"
    click.echo(json.dumps(data, indent=2))
    problems = find_problems(cfg, resolve=not no_resolve)
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        raise click.ClickException(
            f"the config {config} cannot work here: {len(problems)} problem(s) above"
        )
    click.echo(f"config OK: gateway {cfg.gateway_id}, queue {cfg.queue_path}", err=True)


# RFC 2606 / RFC 6761: names reserved for examples and documentation; never a real broker
_PLACEHOLDER_DOMAINS = ("example.org", "example.com", "example.net", "example", "invalid", "test")


def find_problems(cfg: GatewayConfig, resolve: bool = True) -> list[str]:
    """What in ``cfg`` cannot work on this machine, one sentence each."""
    import socket

    problems = []
    for side in ("upstream", "local"):
        broker = getattr(cfg, side)
        host = broker.host.lower().rstrip(".")
        if any(host == d or host.endswith("." + d) for d in _PLACEHOLDER_DOMAINS):
            problems.append(
                f"{side}.url: {broker.host} is a placeholder (a name reserved for examples); "
                "put your broker's host name there"
            )
            continue
        if resolve:
            try:
                socket.getaddrinfo(broker.host, broker.port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                problems.append(
                    f"{side}.url: the host {broker.host} does not resolve ({exc}); check the "
                    "name, or give --no-resolve to check the config away from the network"
                )
    for i, src in enumerate(cfg.line_sources):
        if str(src.path) == "-":
            continue
        if not src.path.exists():
            problems.append(
                f"line_sources[{i}].path: {src.path} does not exist (a file, named pipe or "
                "serial device the RTU writes to; '-' reads stdin)"
            )
    if cfg.upstream.password == "change-me":
        problems.append("upstream.password is the sample's 'change-me'; put the real one there")
    return problems


@gateway.command("sample-config")
def sample_config() -> None:
    """Print the sample config, every option documented."""
    click.echo(SAMPLE_CONFIG_PATH.read_text(), nl=False)


@gateway.command("status")
@_CONFIG
def status(config: Path) -> None:
    """Print the queue's depth, oldest reading and counters, read from its database."""
    cfg = _load(config)
    q = _open_queue(cfg)
    try:
        stats = q.stats()
        out = {
            "gateway_id": cfg.gateway_id,
            "queue": str(cfg.queue_path),
            "queue_depth": stats.depth,
            "outbox_messages": stats.outbox_messages,
            "oldest_unsent_age_s": round(stats.oldest_age_s(), 3),
            "oldest_enqueued_at": (
                datetime.fromtimestamp(stats.oldest_enqueued_at, UTC).isoformat()
                if stats.oldest_enqueued_at
                else None
            ),
            "queue_bytes": stats.used_bytes,
            "queue_max_bytes": stats.max_bytes,
            "counters": stats.counters,
            "next_seq": q.device_seqs(),
        }
    finally:
        q.close()
    click.echo(json.dumps(out, indent=2))


@gateway.command("rejects")
@_CONFIG
@click.option("--limit", default=20, show_default=True, help="how many of the newest to show")
def rejects(config: Path, limit: int) -> None:
    """Print the newest entries of the reject log, one JSON object per line."""
    cfg = _load(config)
    q = _open_queue(cfg)
    try:
        for entry in q.rejects(limit):
            sys.stdout.write(json.dumps(entry) + "\n")
    finally:
        q.close()


def register(group: click.Group) -> None:
    """Add the `gateway` subcommands to the `swc` command."""
    group.add_command(gateway)
