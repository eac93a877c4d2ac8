"""The sample config documents every option and loads; the CLI checks configs and reads the queue."""

from __future__ import annotations

import json

import click
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from gateway.cli import register
from gateway.config import SAMPLE_CONFIG_PATH, ConfigError, GatewayConfig, load_config
from gateway.queue import DiskQueue, Reject


def _option_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths = set()
    for name, field in model.model_fields.items():
        path = prefix + name
        paths.add(path)
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        for t in (ann, *args):
            if isinstance(t, type) and issubclass(t, BaseModel):
                paths |= _option_paths(t, path + ".")
    return paths


def _yaml_paths(data, prefix: str = "") -> set[str]:
    paths = set()
    if isinstance(data, dict):
        for key, value in data.items():
            paths.add(prefix + key)
            paths |= _yaml_paths(value, prefix + key + ".")
    elif isinstance(data, list) and data:
        paths |= _yaml_paths(data[0], prefix)
    return paths


def test_sample_config_has_every_option_and_loads():
    data = yaml.safe_load(SAMPLE_CONFIG_PATH.read_text())
    assert _yaml_paths(data) == _option_paths(GatewayConfig)
    cfg = load_config(SAMPLE_CONFIG_PATH)
    assert cfg.gateway_id == "gw-gully-03"
    assert cfg.upstream.tls and cfg.upstream.port == 8883
    assert cfg.local_client_id == "gw-gully-03-local"


def test_defaults_match_the_sample():
    """Apart from the examples (ids, URLs, credentials, a line source), the sample shows defaults."""
    data = yaml.safe_load(SAMPLE_CONFIG_PATH.read_text())
    minimal = GatewayConfig.model_validate(
        {"gateway_id": data["gateway_id"], "upstream": {"url": data["upstream"]["url"]}}
    ).model_dump(mode="json")
    sample = load_config(SAMPLE_CONFIG_PATH).model_dump(mode="json")
    for key in ("queue", "forward", "status", "log", "local"):
        assert minimal[key] == sample[key], key
    for key in ("max_inflight", "refused_retry_s", "keepalive_s", "protocol"):
        assert minimal["upstream"][key] == sample["upstream"][key]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gateway_id": "bad id"}, "gateway_id"),
        ({"upstream": {"url": "http://x"}}, "scheme"),
        ({"unknown_option": 1}, "unknown_option"),
        ({"queue": {"max_bytes": 300_000}}, "max_bytes"),
        ({"forward": {"batch_max_readings": 10_000}}, "batch_max_readings"),
        ({"topic_root": "a//b"}, "topic root"),
    ],
)
def test_bad_options_are_named(tmp_path, change, message):
    data = {"gateway_id": "gw-1", "upstream": {"url": "mqtt://127.0.0.1:1883"}, **change}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_and_non_yaml_configs(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "x.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "x.yaml")


def _swc() -> click.Group:
    @click.group()
    def main() -> None:
        pass

    register(main)
    return main


def test_cli_check_sample_status_and_rejects(tmp_path):
    runner = CliRunner()
    main = _swc()
    result = runner.invoke(main, ["gateway", "sample-config"])
    assert result.exit_code == 0 and "gateway_id:" in result.output

    cfg_path = tmp_path / "gw.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "gateway_id": "gw-1",
                "data_dir": str(tmp_path / "data"),
                "upstream": {"url": "mqtt://u:secret@127.0.0.1:1883", "password": "secret"},
            }
        )
    )
    result = runner.invoke(main, ["gateway", "check", str(cfg_path)])
    assert result.exit_code == 0, result.output
    assert "secret" not in result.stdout.replace("mqtt://u:secret@", "")

    result = runner.invoke(main, ["gateway", "status", str(cfg_path)])
    assert result.exit_code != 0 and "no queue database" in result.output

    q = DiskQueue(tmp_path / "data" / "queue.db")
    q.append([("dam-1", "2026-07-21T00:00:00Z", "stage_m", 1.0, None)], messages=1)
    q.append([], [Reject("line:rtu", "bad_line", "the line has 2 fields", b"a,b")])
    q.close()
    result = runner.invoke(main, ["gateway", "status", str(cfg_path)])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["queue_depth"] == 1 and status["counters"]["rejected"] == 1
    result = runner.invoke(main, ["gateway", "rejects", str(cfg_path)])
    entry = json.loads(result.output.splitlines()[0])
    assert entry["code"] == "bad_line" and entry["payload"] == "a,b"

    result = runner.invoke(main, ["gateway", "run", str(tmp_path / "missing.yaml")])
    assert result.exit_code != 0 and "cannot read" in result.output


def test_check_refuses_the_sample_placeholders_and_a_missing_line_source(tmp_path):
    """`swc gateway check` on the sample as shipped: each thing that cannot work is named."""
    main = _swc()
    result = CliRunner().invoke(main, ["gateway", "check", str(SAMPLE_CONFIG_PATH)])
    assert result.exit_code == 1
    err = result.stderr
    assert "upstream.url: broker.example.org is a placeholder" in err
    assert "line_sources[0].path: /var/spool/swc/rtu-01.csv does not exist" in err
    assert "change-me" in err
    assert "config OK" not in err and "Traceback" not in err

    rtu = tmp_path / "rtu.csv"
    rtu.touch()
    cfg_path = tmp_path / "gw.yaml"
    options = {"gateway_id": "gw-1", "data_dir": str(tmp_path / "data"),
               "upstream": {"url": "mqtt://no-such-host.invalid-tld-swc:1883"},
               "line_sources": [{"path": str(rtu)}, {"path": "-"}]}  # fmt: skip
    cfg_path.write_text(yaml.safe_dump(options))
    result = CliRunner().invoke(main, ["gateway", "check", str(cfg_path)])
    assert result.exit_code == 1
    assert "no-such-host.invalid-tld-swc does not resolve" in result.stderr
    assert "line_sources" not in result.stderr  # the file exists; '-' is stdin
    offline = CliRunner().invoke(main, ["gateway", "check", "--no-resolve", str(cfg_path)])
    assert offline.exit_code == 0, offline.stderr
    assert "config OK" in offline.stderr
