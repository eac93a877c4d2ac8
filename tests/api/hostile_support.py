"""Helpers of the hostile-client tests: a real uvicorn app, raw HTTP, problem checks,
and alerts written straight to the database."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import psycopg

from ingest.api import create_app
from ingest.settings import Settings
from ingest.store import alerts as store
from tests.api.support import ServerThread, new_key, setup_site

DAM = {"spillway_crest_m": 5.0, "dam_crest_m": 7.0}


def api(db: str, **settings) -> ServerThread:
    return ServerThread(create_app(Settings(_env_file=None, database_url=db, **settings)))


def site(db: str, site_id: str = "dam-1") -> None:
    setup_site(db, site_id, "check_dam", DAM, {f"{site_id}-d": ["stage_m"]})


def keys(db: str) -> dict[str, str]:
    return {role: new_key(db, role) for role in ("viewer", "surveyor", "engineer", "admin")}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(resp: httpx.Response, status: int, slug: str | None = None) -> dict:
    """An RFC 9457 problem document with a message."""
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["message"] == body["detail"]
    if slug is not None:
        assert body["type"].endswith(f":{slug}"), body
    return body


def raw_exchange(port: int, head: bytes) -> bytes:
    """Send a request head whose body is never sent, and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        data = b""
        while not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


@contextmanager
def meanwhile(client_calls: Callable[[], None], threads: int = 1):
    """Run an attack in threads while the body of the ``with`` runs other requests."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                client_calls()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield stop
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    assert not errors, errors


def raise_alert(db: str, site_id: str, level: int = 3, rule: str = "stage") -> int:
    """Open an alert and announce its event, as the engine does; returns the event id."""
    now = datetime.now(UTC)
    with psycopg.connect(db) as conn:
        alert_id = conn.execute(
            "INSERT INTO alerts (site_id, rule, subject, level, peak_level, opened_at, "
            "last_data_at, value) VALUES (%s, %s, '', %s, %s, %s, %s, 1.0) RETURNING id",
            (site_id, rule, level, level, now, now),
        ).fetchone()[0]
        event_id = store.insert_event(conn, alert_id, "open", level, 0, data_time=now, value=1.0)
        store.announce(conn, event_id)
    return event_id
