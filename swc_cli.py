"""The `swc` command: gathers the subcommands that each package owns in its own `cli.py`."""

from __future__ import annotations

import importlib

import click

# Each entry: module that exposes `register(group: click.Group) -> None`.
SUBCOMMAND_PROVIDERS = (
    "ingest.cli",
    "firmware_sim.cli",
    "gateway.cli",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="swc-monitor")
def main() -> None:
    """Monitoring for soil-and-water-conservation works (check dams, cisterns, plots, gauges)."""


def _gather() -> None:
    for name in SUBCOMMAND_PROVIDERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that package has no CLI yet
                continue
            raise
        module.register(main)


_gather()

if __name__ == "__main__":
    main()
