"""Helpers for the alert and API tests: a registry, rule overrides, readings over MQTT."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import uvicorn

from ingest.broker import free_port
from ingest.store.alerts import set_rule_override
from ingest.store.keys import create_key
from ingest.store.registry import RegistryFile, load_registry
from protocol.topics import Topic
from tests.support.mqtt import Publisher


def setup_site(dsn: str, site_id: str, kind: str, params: dict, devices: dict[str, list[str]]):
    spec = RegistryFile.model_validate(
        {
            "sites": [
                {
                    "id": site_id,
                    "kind": kind,
                    "name": f"site {site_id}",
                    "params": params,
                    "devices": [{"id": d, "channels": chs} for d, chs in devices.items()],
                }
            ]
        }
    )
    with psycopg.connect(dsn) as conn:
        load_registry(conn, spec)


def set_rule(dsn: str, site_id: str, rule: str, config: dict) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction():
        set_rule_override(conn, site_id, rule, config, None, "test")


def new_key(dsn: str, role: str) -> str:
    with psycopg.connect(dsn) as conn:
        return create_key(conn, role, f"test {role}")[1]


def minutes_ago(n: float) -> datetime:
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(minutes=n)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def messages(
    device: str,
    root: str,
    readings: Iterable[tuple[datetime, str, float]],
    per_message: int = 5,
    seq0: int = 1,
    sender: str | None = None,
) -> list[tuple[str, bytes]]:
    rows = list(readings)
    out = []
    topic = str(Topic.telemetry(sender or device, root))
    for k in range(0, len(rows), per_message):
        chunk = rows[k : k + per_message]
        body = {
            "device": device,
            "seq": seq0 + k // per_message,
            "sent_at": iso(datetime.now(UTC)),
            "readings": [{"t": iso(t), "ch": ch, "v": v} for t, ch, v in chunk],
        }
        out.append((topic, json.dumps(body).encode()))
    return out


def publish(url: str, items: list[tuple[str, bytes]], each: bool = False) -> None:
    with Publisher(url) as pub:
        if each:
            for item in items:
                pub.publish_all([item])
        else:
            pub.publish_all(items)


def rows(dsn: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


class ServerThread:
    """A real uvicorn server on a free port, in a thread."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                lifespan="on",
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def insert_readings(
    dsn: str, device: str, channel: str, points: list[tuple[datetime, float]], quality: int = 2
):
    """Write readings straight to the database; returns a CommittedBatch for the engine."""
    from ingest.consumer import CommittedBatch

    with psycopg.connect(dsn) as conn:
        sid = conn.execute(
            "INSERT INTO streams (device_id, channel) VALUES (%s, %s) ON CONFLICT (device_id, "
            "channel) DO UPDATE SET unit = streams.unit RETURNING id",
            (device, channel),
        ).fetchone()[0]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (time, stream_id, value, quality, received_at) "
                "VALUES (%s, %s, %s, %s, now()) ON CONFLICT DO NOTHING",
                [(t, sid, v, quality) for t, v in points],
            )
        conn.execute("UPDATE devices SET last_seen = now() WHERE id = %s", (device,))
    times = [t for t, _ in points]
    return CommittedBatch(
        {sid: (min(times), max(times))}, frozenset([device]), len(points), datetime.now(UTC)
    )


def alerting_starter(start_consumer):
    """Body of the ``start_alerting`` fixtures: a consumer with the alert engine attached."""
    from ingest.alerting import attach

    started = []

    def start(settings, dsn):
        rc = start_consumer(settings, dsn)
        alerting = attach(rc.consumer, settings, dsn)
        started.append(alerting)
        return rc, alerting

    yield start
    for alerting in started:
        alerting.stop()


class SseReader:
    """Reads an SSE response in a thread; events land on a queue."""

    def __init__(self, url: str, key: str, headers: dict | None = None):
        self.events: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        self._headers = {"Authorization": f"Bearer {key}", **(headers or {})}
        self._url = url
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "SSE stream did not start"

    def _run(self) -> None:
        with contextlib.suppress(httpx.TransportError):  # the server went away at the end
            self._read()

    def _read(self) -> None:
        with self._client.stream("GET", self._url, headers=self._headers) as r:
            assert r.status_code == 200, r.read()
            event: dict = {}
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line == "" and event:
                    self.events.put(event)
                    event = {}

    def next(self, timeout: float = 20) -> dict:
        return self.events.get(timeout=timeout)
