"""Every setting is a flag of the same name on the commands that take settings (issue 13):
the flags are derived from the Settings class, so a new setting cannot lack one."""

from __future__ import annotations

import json
import os
import time

import click
import pytest
from click.testing import CliRunner

from ingest.cli import apply_up_state, load_settings
from ingest.settings import Settings
from ingest.settings_cli import DATABASE_FIELDS, flag_name
from ingest.state import UpState, write_state
from swc_cli import main

SETTINGS_COMMANDS = ["up", "ingest", "api", "migrate"]
DATABASE_COMMANDS = [["keys", "create"], ["keys", "list"], ["sites", "load"], ["export"],
                     ["devices", "add"], ["alerts", "check"]]  # fmt: skip


def _command(path: list[str]) -> click.Command:
    cmd: click.Command = main
    ctx = click.Context(main)
    for name in path:  # the `swc` group loads its commands lazily
        found = cmd.get_command(ctx, name)  # type: ignore[attr-defined]
        assert found is not None, f"no command {name!r}"
        cmd = found
    return cmd


def _flags(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("name", SETTINGS_COMMANDS)
def test_every_setting_has_a_flag_of_the_same_name(name):
    flags = _flags(_command([name]))
    missing = [f for f in Settings.model_fields if flag_name(f) not in flags]
    assert not missing, f"swc {name} lacks {missing}"
    for field, info in Settings.model_fields.items():
        if info.annotation in (bool, bool | None):
            assert f"--no-{field.replace('_', '-')}" in flags


@pytest.mark.parametrize("path", DATABASE_COMMANDS, ids=" ".join)
def test_database_commands_take_the_database_settings(path):
    flags = _flags(_command(path))
    assert {flag_name(f) for f in DATABASE_FIELDS} <= flags


def test_flags_reach_the_settings(monkeypatch):
    monkeypatch.setenv("SWC_API_PORT", "8000")
    seen = {}

    @click.command()
    @click.pass_context
    def probe(ctx, **flags):
        seen["s"] = load_settings(use_state=False, **flags)

    from ingest.settings_cli import settings_options

    probe = settings_options()(probe)
    args = ["--api-port", "8001", "--no-alerts", "--webhook-allow-private", '["10.0.0.0/8"]',
            "--api-statement-timeout-s", '{"viewer": 5}', "--embedded-broker-port", "0",
            "--retain-for", "30 days"]  # fmt: skip
    result = CliRunner().invoke(probe, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    s = seen["s"]
    assert s.api_port == 8001 and s.alerts is False and s.embedded_broker_port == 0
    assert s.webhook_allow_private == ["10.0.0.0/8"]
    assert s.api_statement_timeout_s == {"viewer": 5.0}
    assert s.retain_for == "30 days"
    bad = CliRunner().invoke(probe, ["--webhook-allow-private", "[10.0"])
    assert bad.exit_code == 2 and "--webhook-allow-private" in bad.output and "JSON" in bad.output


def test_swc_up_api_port_flag_is_accepted():
    result = CliRunner().invoke(main, ["up", "--api-port", "8001", "--help"])
    assert result.exit_code == 0 and "--api-port" in result.output


def test_the_state_file_of_a_running_swc_up_fills_in_the_urls(tmp_path, capsys):
    state = UpState(pid=os.getpid(), database_url="postgresql://postgres@/swc?host=/x",
                    mqtt_url="mqtt://127.0.0.1:41883", mqtt_protocol="3.1.1")  # fmt: skip
    path = write_state(tmp_path, state)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    s = apply_up_state(Settings(_env_file=None, data_dir=tmp_path))
    assert s.database_url == state.database_url and s.mqtt_url == state.mqtt_url
    assert s.mqtt_protocol == "3.1.1"
    assert f"using swc up (pid {os.getpid()}" in capsys.readouterr().err
    # a URL given by flag or environment wins
    mine = "postgresql://me@db.local/swc"
    s = apply_up_state(Settings(_env_file=None, data_dir=tmp_path, database_url=mine))
    assert s.database_url == mine and s.mqtt_url == state.mqtt_url


def test_a_stale_state_file_is_ignored_with_a_note(tmp_path, capsys):
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    time.sleep(0.05)
    write_state(tmp_path, UpState(pid=gone.pid, database_url="postgresql://x@/y",
                                  mqtt_url="mqtt://127.0.0.1:1"))  # fmt: skip
    s = apply_up_state(Settings(_env_file=None, data_dir=tmp_path))
    assert s.database_url is None
    assert "is not running" in capsys.readouterr().err
    (tmp_path / "swc-up.json").write_text(json.dumps([1, 2]))
    s = apply_up_state(Settings(_env_file=None, data_dir=tmp_path))
    assert s.database_url is None and "not a state file" in capsys.readouterr().err


def test_every_setting_is_in_the_readme_table():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [f for f in Settings.model_fields if f"SWC_{f.upper()}" not in readme]
    assert not missing, f"README's settings table lacks {missing}"


def test_swc_ingest_next_to_swc_up_needs_its_own_client_id(tmp_path, monkeypatch):
    for k in list(os.environ):
        if k.startswith("SWC_"):
            monkeypatch.delenv(k)
    write_state(tmp_path, UpState(pid=os.getpid(), database_url="postgresql://x@/y?host=/none",
                                  mqtt_url="mqtt://127.0.0.1:1"))  # fmt: skip
    result = CliRunner().invoke(main, ["ingest", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--client-id" in result.output
