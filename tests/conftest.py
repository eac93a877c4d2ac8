"""Shared fixtures: a fresh database per test, a private Mosquitto, a topic root per test.

The services are the real ones on this machine: PostgreSQL at
SWC_TEST_DATABASE_URL (default the local server) and a mosquitto started on a
free port with the repository's config. Without them the tests are skipped
with a reason on a developer's machine, and fail loudly in CI (CI=true).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ingest.broker import MosquittoProcess, mosquitto_binary
from ingest.settings import Settings

ADMIN_DSN = os.environ.get("SWC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI and is not available")
    pytest.skip(f"{what} not available")


def dsn_for(database: str, admin_dsn: str = ADMIN_DSN) -> str:
    return psycopg.conninfo.make_conninfo(admin_dsn, dbname=database)


@pytest.fixture(scope="session")
def admin_dsn() -> str:
    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        _missing(f"PostgreSQL at {ADMIN_DSN} ({exc})")
    return ADMIN_DSN


def create_database(admin: str) -> str:
    name = f"swct_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db(admin_dsn: str) -> Iterator[str]:
    """DSN of a new, empty database, dropped after the test."""
    name = create_database(admin_dsn)
    try:
        yield dsn_for(name, admin_dsn)
    finally:
        drop_database(admin_dsn, name)


@pytest.fixture
def db(empty_db: str) -> str:
    """DSN of a new, migrated database (plain PostgreSQL mode)."""
    from ingest.store.migrate import migrate

    migrate(empty_db, "off")
    return empty_db


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    """A mosquitto on a free port with the repository's config, for the whole session."""
    if mosquitto_binary() is None:
        _missing("mosquitto")
    proc = MosquittoProcess(tmp_path_factory.mktemp("mosquitto")).start()
    yield proc
    proc.stop()


@pytest.fixture
def topic_root() -> str:
    return f"t{uuid.uuid4().hex[:10]}/v1"


@pytest.fixture
def settings_for(broker: MosquittoProcess, topic_root: str, tmp_path: Path):
    """Build consumer Settings for this test's broker and topic root."""

    def make(**overrides) -> Settings:
        values = dict(
            mqtt_url=broker.url,
            topic_root=topic_root,
            client_id=f"c-{uuid.uuid4().hex[:8]}",
            metrics_port=0,
            batch_max_latency_ms=50,
            data_dir=tmp_path,
        )
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


class RunningConsumer:
    def __init__(self, consumer, thread: threading.Thread):
        self.consumer = consumer
        self.thread = thread

    def stop(self, timeout: float = 30) -> None:
        self.consumer.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "consumer did not stop"


@pytest.fixture
def start_consumer():
    """Start Consumer objects in threads; all are stopped after the test."""
    from ingest.consumer import Consumer

    running: list[RunningConsumer] = []

    def start(settings: Settings, dsn: str, wait_connected: bool = True) -> RunningConsumer:
        consumer = Consumer(settings, dsn)
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        if wait_connected:
            assert consumer.subscribed.wait(10), "consumer did not subscribe at the broker"
        rc = RunningConsumer(consumer, thread)
        running.append(rc)
        return rc

    yield start
    for rc in running:
        if rc.thread.is_alive():
            rc.stop()
