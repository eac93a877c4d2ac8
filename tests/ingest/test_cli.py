"""The `swc` command line: settings from the environment and flags, migrate, sites load."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ingest.settings import MqttTarget, Settings
from swc_cli import main


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("SWC_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("SWC_MQTT_URL", "mqtt://dev%40x:p%3Ass@broker.example:1884")
    monkeypatch.setenv("SWC_TOPIC_ROOT", "county7/v1")
    monkeypatch.setenv("SWC_AUTO_REGISTER", "false")
    s = Settings()
    assert s.database_url == "postgresql://u@h/db"
    assert s.topic_root == "county7/v1"
    assert s.auto_register is False
    assert s.mqtt == MqttTarget(host="broker.example", port=1884, username="dev@x", password="p:ss")
    assert "p:ss" not in s.mqtt.url()


def test_defaults():
    s = Settings(_env_file=None)
    assert s.topic_root == "swc/v1" and s.auto_register is True and s.database_url is None


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("SWC_MQTT_URL", "http://broker:1883", "expected mqtt://"),
        ("SWC_MQTT_URL", "mqtt://broker:99999", "invalid port"),
        ("SWC_TOPIC_ROOT", "swc/#", "topic root"),
        ("SWC_DATABASE_URL", "mysql://h/db", "database URL is not valid"),
        ("SWC_AUTO_REGISTER", "maybe", "auto_register"),
        ("SWC_BATCH_MAX_READINGS", "0", "batch_max_readings"),
    ],
)
def test_bad_settings_give_clear_errors(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 2
    assert "invalid settings" in result.output
    assert message in result.output


def test_flags_override_environment(monkeypatch, empty_db):
    monkeypatch.setenv("SWC_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(main, ["migrate", "--database-url", empty_db, "--timescale", "off"])
    assert result.exit_code == 0, result.output
    assert "migrated (plain)" in result.output


def test_sites_load_command(db, tmp_path):
    f = tmp_path / "sites.json"
    f.write_text(
        json.dumps(
            {
                "sites": [
                    {
                        "id": "c-1",
                        "kind": "cistern",
                        "name": "Cistern 1",
                        "devices": [{"id": "c-1", "channels": ["level_m"]}],
                    }
                ]
            }
        )
    )
    result = CliRunner().invoke(main, ["sites", "load", str(f), "--database-url", db])
    assert result.exit_code == 0, result.output
    assert "1 sites, 1 devices, 1 streams" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: [{id: c-1, kind: pond}]")
    result = CliRunner().invoke(main, ["sites", "load", str(bad), "--database-url", db])
    assert result.exit_code == 1
    assert "sites.0.kind" in result.output and "sites.0.name" in result.output


def test_protocol_schema_command():
    result = CliRunner().invoke(main, ["protocol", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "swc telemetry message"


def test_unreachable_database_is_a_clear_error():
    result = CliRunner().invoke(
        main, ["migrate", "--database-url", "postgresql://nobody@127.0.0.1:1/none"]
    )
    assert result.exit_code == 1
    assert "cannot connect to the database" in result.output


@pytest.mark.parametrize("role", ["viewer", "surveyor", "engineer", "admin"])
def test_keys_create_accepts_every_role(db, role):
    result = CliRunner().invoke(main, ["keys", "create", "--role", role, "--database-url", db])
    assert result.exit_code == 0, result.output
    assert f"role={role}" in result.output
