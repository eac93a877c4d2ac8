"""The `swc` command: gathers the subcommands that each package owns in its own `cli.py`.

A provider module is imported only when one of its commands runs (or `swc
--help` lists them), so `swc gateway run` needs only what the gateway imports
(`pip install 'swc-monitor[gateway]'`). A command whose provider needs
dependencies that are not installed says which extra brings them.
"""

from __future__ import annotations

import importlib

import click

# Each provider module exposes `register(group: click.Group) -> None`; here, the
# commands it registers (tests/test_packaging.py checks the lists) and the extra
# that installs what it imports.
SUBCOMMAND_PROVIDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ingest.cli": (
        "server",
        (
            "alerts",
            "api",
            "broker",
            "dead-letters",
            "devices",
            "export",
            "ingest",
            "keys",
            "migrate",
            "protocol",
            "research",
            "sites",
            "up",
        ),
    ),
    "firmware_sim.cli": ("server", ("sim",)),
    "gateway.cli": ("gateway", ("gateway",)),
}
_OWN_PACKAGES = ("ingest", "firmware_sim", "gateway", "protocol", "analytics")
_COMMANDS = {
    name: provider for provider, (_, names) in SUBCOMMAND_PROVIDERS.items() for name in names
}
_loaded: dict[str, dict[str, click.Command]] = {}


def _not_installed(name: str, extra: str, missing: str) -> click.Command:
    def run(**_: object) -> None:
        raise click.ClickException(
            f"`swc {name}` needs the {extra} dependencies ({missing} is not installed): "
            f"pip install 'swc-monitor[{extra}]'"
        )

    return click.Command(
        name,
        callback=run,
        help=f"(not installed: pip install 'swc-monitor[{extra}]')",
        short_help=f"(not installed: pip install 'swc-monitor[{extra}]')",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


def _load(provider: str) -> dict[str, click.Command]:
    if provider not in _loaded:
        extra, names = SUBCOMMAND_PROVIDERS[provider]
        try:
            module = importlib.import_module(provider)
        except ModuleNotFoundError as exc:
            missing = exc.name or "a dependency"
            if missing.split(".")[0] in _OWN_PACKAGES:
                raise  # our own code is broken, not the install
            _loaded[provider] = {n: _not_installed(n, extra, missing) for n in names}
        else:
            group = click.Group()
            module.register(group)
            _loaded[provider] = dict(group.commands)
    return _loaded[provider]


class LazyGroup(click.Group):
    """Imports a provider when one of its commands is used (or all of them to list them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(self.commands)
        for provider in SUBCOMMAND_PROVIDERS:
            names.update(_load(provider))
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        provider = _COMMANDS.get(cmd_name)
        if provider is not None:
            return _load(provider).get(cmd_name)
        for provider in SUBCOMMAND_PROVIDERS:  # a command not (yet) in the table above
            if cmd_name in _load(provider):
                return _load(provider)[cmd_name]
        return None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="swc-monitor")
def main() -> None:
    """Monitoring for soil-and-water-conservation works (check dams, cisterns, plots, gauges)."""


if __name__ == "__main__":
    main()
