"""The embedded services' ports (issue 13): a TCP port for the embedded PostgreSQL, for psql
and Grafana; a host-ready broker config from `swc broker conf`."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from click.testing import CliRunner

from ingest.broker import free_port, mosquitto_binary, port_open
from ingest.embedded import EmbeddedBroker, EmbeddedPostgres
from ingest.ports import PortInUse, bind
from swc_cli import main
from tests.support.waiting import wait_for


def test_embedded_postgres_on_a_tcp_port(tmp_path):
    port = free_port()
    pg = EmbeddedPostgres(tmp_path / "postgres", log_path=tmp_path / "logs" / "pg.log", port=port)
    dsn = pg.start()
    try:
        assert dsn == f"postgresql://postgres@127.0.0.1:{port}/swc"
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "swc"
        assert "initdb" in (tmp_path / "logs" / "pg.log").read_text()
    finally:
        pg.stop()
    assert not port_open("127.0.0.1", port)


def test_a_pinned_broker_port_that_is_taken_is_refused(tmp_path):
    taken = bind("127.0.0.1", 0, "test", "api_port")
    try:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=rf"port {port} .*--embedded-broker-port"):
            EmbeddedBroker(tmp_path, port=port).choose_port()
        assert EmbeddedBroker(tmp_path, port=0).choose_port() != port
    finally:
        taken.close()


def test_swc_broker_conf_runs_a_host_mosquitto(tmp_path):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    port = free_port()
    folder = tmp_path / "mq"
    result = CliRunner().invoke(
        main, ["broker", "conf", "--port", str(port), "--persistence-dir", str(folder)]
    )
    assert result.exit_code == 0, result.output
    conf = result.output
    assert f"persistence_location {folder.resolve()}/" in conf
    assert "/mosquitto/data" not in conf and f"listener {port} 127.0.0.1" in conf
    assert folder.is_dir()
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(tmp_path / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=10, what="mosquitto")
    finally:
        proc.terminate()
        proc.wait(10)
    assert (folder / "mosquitto.db").exists()  # it saved its sessions where it was told
