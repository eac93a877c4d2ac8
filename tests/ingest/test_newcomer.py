"""The newcomer's path (issue 13): the README's first command, `swc up`, on embedded defaults
in a fresh folder with no URLs set, then the next steps its banner prints, each run as
written in a second shell (a separate process that finds the services through the state
file), then Ctrl-C. One stack for the module: embedded PostgreSQL starts in ~5-10 s."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from ingest.broker import free_port
from ingest.state import STATE_FILE
from tests.support.waiting import count_when_up, wait_for

ROOT = Path(__file__).parents[2]
SWC = [sys.executable, "-m", "swc_cli"]
BIN = Path(sys.executable).parent


def second_shell_env() -> dict[str, str]:
    """A shell with no SWC_* variable at all, and `swc` on its PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWC_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def shell(command: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=second_shell_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Up:
    home: Path
    proc: subprocess.Popen
    out: Path
    err: Path
    api_port: int
    metrics_port: int

    @property
    def banner(self) -> str:
        return self.out.read_text()

    @property
    def state(self) -> dict:
        return json.loads((self.home / "data" / STATE_FILE).read_text())

    def next_steps(self) -> list[str]:
        """The commands under "Next, ..." (indented two spaces; notes are indented more)."""
        text = self.banner.split("Next, in another shell in this folder:\n", 1)[1]
        return [line[2:] for line in text.splitlines() if re.match(r"^  \S", line)]


@pytest.fixture(scope="module")
def up(tmp_path_factory) -> Up:
    if not (BIN / "swc").exists():
        pytest.skip("the swc command is not installed next to this Python (pip install -e .)")
    home = tmp_path_factory.mktemp("newcomer")
    out, err = home / "up.out", home / "up.err"
    api_port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            *SWC,
            "up",
            "--api-port",
            str(api_port),
            "--metrics-port",
            str(metrics_port),
            "--api-metrics-port",
            str(free_port()),
            "--embedded-broker-port",
            "0",
        ],
        cwd=home,
        env=second_shell_env(),
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        start_new_session=True,  # its own process group, as in a terminal
    )
    stack = Up(home, proc, out, err, api_port, metrics_port)
    try:
        wait_for(
            lambda: "mqtt connected" in err.read_text() or proc.poll() is not None,
            timeout=120,
            what="swc up",
        )
        assert proc.poll() is None, f"swc up ended:\n{out.read_text()}\n{err.read_text()}"
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_the_banner_is_short_and_says_where_everything_is(up):
    banner = up.banner
    assert len(banner.splitlines()) <= 20, banner
    for name in ("database", "broker", "API", "console", "metrics", "data", "logs"):
        assert re.search(rf"^  {name}\s", banner, re.M), name
    assert f"http://127.0.0.1:{up.api_port}/" in banner
    assert f"http://127.0.0.1:{up.metrics_port}/metrics" in banner
    # the embedded services' own chatter is in files, not on the terminal
    terminal = banner + up.err.read_text()
    for noise in ("Running commandline", "initdb", "pg_ctl", "XDG_RUNTIME_DIR", "Traceback"):
        assert noise not in terminal
    logs = up.home / "data" / "logs"
    assert "initdb" in (logs / "postgres.log").read_text()
    state = up.state
    assert state["pid"] == up.proc.pid
    assert state["api_url"] == f"http://127.0.0.1:{up.api_port}"
    assert state["database_url"].startswith("postgresql://")


def test_the_next_steps_work_as_written_in_a_second_shell(up):
    keys, county, sim = up.next_steps()
    assert keys == "swc keys create --role admin"
    result = shell(keys, up.home)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("swc_")
    # it says where it found the database
    assert f"using swc up (pid {up.proc.pid}" in result.stderr

    result = shell(county, up.home)
    assert result.returncode == 0, result.stderr
    assert (up.home / "county.yaml").exists()

    dsn = up.state["database_url"]
    before = count_when_up(dsn, "SELECT count(*) FROM readings")
    assert sim.startswith("swc sim run --mqtt mqtt://127.0.0.1:")
    with (up.home / "sim.err").open("wb") as sim_err:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {sim}"],
            cwd=up.home,
            env=second_shell_env(),
            stdout=subprocess.DEVNULL,
            stderr=sim_err,
        )
        try:
            wait_for(
                lambda: (
                    count_when_up(dsn, "SELECT count(*) FROM readings") > before + 100
                    or proc.poll() is not None
                ),
                timeout=120,
                interval=0.5,
                what="the simulated county's readings",
            )
            assert count_when_up(dsn, "SELECT count(*) FROM readings") > before
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            proc.wait(60)
    assert "Traceback" not in (up.home / "sim.err").read_text()

    request = urllib.request.Request(
        f"http://127.0.0.1:{up.api_port}/sites", headers={"X-API-Key": key}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode()
    assert "dam-" in body


def test_a_second_swc_up_on_the_same_folder_is_refused(up):
    result = subprocess.run(
        [*SWC, "up"], cwd=up.home, env=second_shell_env(), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "already runs" in result.stderr and str(up.proc.pid) in result.stderr
    assert "Traceback" not in result.stderr
    assert "API" not in result.stdout


@pytest.mark.parametrize(
    ("flag", "port_of"),
    [
        ("--api-port", lambda up: up.api_port),
        ("--metrics-port", lambda up: up.metrics_port),
        ("--embedded-broker-port", lambda up: int(up.state["mqtt_url"].rsplit(":", 1)[1])),
    ],
)
def test_a_busy_port_is_one_line_naming_its_setting(up, tmp_path, flag, port_of):
    port = port_of(up)
    args = ["--api-port", str(free_port()), "--metrics-port", str(free_port())]
    args += ["--api-metrics-port", str(free_port())]
    args += [flag, str(port)]
    result = subprocess.run(
        [*SWC, "up", *args],
        cwd=tmp_path,
        env=second_shell_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"port {port}" in errors[0] and flag in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no banner, no "API at ..."
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started


def test_ctrl_c_stops_everything_and_removes_the_state_file(up):
    dsn = up.state["database_url"]
    os.killpg(up.proc.pid, signal.SIGINT)  # Ctrl-C reaches every process of the group
    assert up.proc.wait(60) == 0, up.err.read_text()[-3000:]
    assert "Traceback" not in up.err.read_text()
    assert not (up.home / "data" / STATE_FILE).exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
    result = shell("swc keys list", up.home, timeout=60)
    assert result.returncode != 0
    assert "no database" in result.stderr and "Traceback" not in result.stderr
