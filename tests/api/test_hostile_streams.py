"""Long responses and outgoing calls under attack (issue 11): exports free their slot
when the client goes away and a cut export is told from a complete one; a killed
NetCDF export leaves no file; event streams end when their key is revoked and miss
no alert while the listener reconnects; webhooks reach only public addresses and
follow no redirect."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import subprocess
import sys
import threading

import httpx
import psycopg
import pytest

from ingest.alerting.notify import Notifier
from ingest.api import create_app
from ingest.api.events import APPLICATION_NAME
from ingest.broker import free_port
from ingest.settings import Settings
from ingest.store.keys import revoke_key
from tests.api.hostile_support import api, auth, keys, raise_alert, site
from tests.api.support import ServerThread
from tests.support.waiting import wait_for


def _readings(db: str, n: int) -> None:
    """``n`` readings of dam-1's stage, one a second from 2026-01-01."""
    with psycopg.connect(db) as conn:
        sid = conn.execute(
            "INSERT INTO streams (device_id, channel) VALUES ('dam-1-d', 'stage_m') "
            "ON CONFLICT (device_id, channel) DO UPDATE SET unit = streams.unit RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO readings (time, stream_id, value, quality, received_at) "
            "SELECT timestamptz '2026-01-01' + g * interval '1 second', %s, g / 1000.0, 2, now() "
            "FROM generate_series(0, %s - 1) g",
            (sid, n),
        )


CSV = "/exports/readings.csv?site_id=dam-1"
SMALL = "&start=2026-01-01T00:00:00Z&end=2026-01-01T00:01:00Z"


def test_an_export_whose_client_went_away_frees_its_slot(db):
    site(db)
    _readings(db, 200_000)  # ~9 MB of CSV: far more than is written ahead
    k = keys(db)
    with (
        api(db, export_max_concurrent=1) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        with client.stream("GET", CSV, headers=auth(k["viewer"])) as r:
            assert r.status_code == 200
            next(r.iter_raw())
            busy = client.get(CSV + SMALL, headers=auth(k["viewer"]))
            assert busy.status_code == 429  # the one slot is taken
        # the client has gone: the slot comes back (not after 300 s)
        wait_for(
            lambda: client.get(CSV + SMALL, headers=auth(k["viewer"])).status_code == 200,
            20,
            what="the export slot to be freed",
        )


def test_a_cut_csv_export_is_told_from_a_complete_one(db):
    site(db)
    _readings(db, 200_000)
    k = keys(db)
    with api(db) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        complete = client.get(CSV + SMALL + "&end_marker=true", headers=auth(k["viewer"]))
        lines = complete.text.splitlines()
        assert lines[-1] == "# swc-export complete rows=60"
        assert len(lines) == 1 + 60 + 1  # header, rows, marker
        with client.stream("GET", CSV + "&end_marker=true", headers=auth(k["viewer"])) as r:
            chunks = r.iter_raw()
            got = next(chunks)
            with psycopg.connect(db, autocommit=True) as conn:  # the export's query dies
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'COPY%'"
                )
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in chunks:
                    got += chunk
        assert b"# swc-export complete" not in got


def test_a_netcdf_export_killed_midway_leaves_no_temporary_file(db, tmp_path):
    site(db)
    _readings(db, 300_000)
    k = keys(db)
    tmp = tmp_path / "exports"
    port = free_port()
    env = {
        **os.environ,
        "SWC_DATABASE_URL": db,
        "SWC_EXPORT_TMP_DIR": str(tmp),
        "SWC_MQTT_URL": "",
        "SWC_API_METRICS_PORT": "0",
    }

    def serve() -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swc_cli", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _up(port), 30, what="swc api")
        return proc

    proc = serve()
    try:
        t = threading.Thread(
            target=lambda: _quietly(
                httpx.get,
                f"http://127.0.0.1:{port}/exports/readings.nc?site_id=dam-1",
                headers=auth(k["viewer"]),
                timeout=120,
            ),
            daemon=True,
        )
        t.start()
        wait_for(lambda: any(tmp.glob("swc-export-*")), 60, 0.005, "the export's file")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert list(tmp.glob("swc-export-*"))  # what kill -9 leaves behind ...
        proc = serve()
        assert not list(tmp.glob("swc-export-*"))  # ... is removed when the API starts
    finally:
        proc.kill()
        proc.wait(10)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def _quietly(f, *a, **kw) -> None:
    with contextlib.suppress(httpx.HTTPError):
        f(*a, **kw)


def _collect(url: str, key: str, lines: list[str], done: threading.Event) -> threading.Thread:
    def run() -> None:
        try:
            with httpx.stream("GET", url, headers=auth(key), timeout=60) as r:
                for line in r.iter_lines():
                    lines.append(line)
        except httpx.HTTPError:  # the server stops at the end of the test
            pass
        finally:
            done.set()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_an_event_stream_ends_when_its_key_is_revoked(db):
    site(db)
    k = keys(db)
    with psycopg.connect(db) as conn:
        key_id = conn.execute("SELECT max(id) FROM api_keys WHERE role = 'viewer'").fetchone()[0]
    with api(db, api_key_recheck_s=0.3) as server:
        lines: list[str] = []
        done = threading.Event()
        _collect(f"{server.url}/alerts/stream?max_seconds=30", k["viewer"], lines, done)
        wait_for(lambda: ": connected" in lines, 20, what="the stream")
        first = raise_alert(db, "dam-1")
        wait_for(lambda: f"id: {first}" in lines, 20, what="the first event")
        with psycopg.connect(db) as conn:
            revoke_key(conn, key_id)
        assert done.wait(20), "the stream went on after its key was revoked"
        assert "event: revoked" in lines
        raise_alert(db, "dam-1", level=4, rule="rainfall")
        assert lines.count("event: alert") == 1


def test_an_alert_committed_while_the_listener_reconnects_reaches_the_stream(db):
    site(db)
    k = keys(db)
    app = create_app(Settings(_env_file=None, database_url=db))
    with ServerThread(app) as server:
        broadcaster = app.state.broadcaster
        broadcaster.reconnect_s = 3.0  # a window in which nobody listens
        wait_for(broadcaster.listening.is_set, 20, what="the listener")
        lines: list[str] = []
        done = threading.Event()
        _collect(f"{server.url}/alerts/stream?max_seconds=30", k["viewer"], lines, done)
        wait_for(lambda: ": connected" in lines, 20, what="the stream")
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                (APPLICATION_NAME,),
            )
        wait_for(lambda: not broadcaster.listening.is_set(), 20, what="the listener to drop")
        event_id = raise_alert(db, "dam-1")  # its NOTIFY reaches no listener
        assert not broadcaster.listening.is_set()
        wait_for(lambda: f"id: {event_id}" in lines, 20, what="the caught-up event")


class _Hook(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, dict]]
    redirect_to: str | None = None

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer()

    def do_GET(self):
        self._answer()

    def _answer(self) -> None:
        self.seen.append((self.path, dict(self.headers)))
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
        else:
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a) -> None:
        pass


def _hook_server(redirect_to: str | None = None):
    handler = type("H", (_Hook,), {"seen": [], "redirect_to": redirect_to})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


def test_webhooks_to_private_addresses_are_refused(db):
    k = keys(db)
    with api(db) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://10.1.2.3/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
        ):
            r = client.post("/webhooks", json={"url": url}, headers=auth(k["admin"]))
            assert r.status_code == 422, (url, r.text[:300])
            assert "public addresses only" in r.json()["message"], r.text
    with (
        api(db, webhook_allow_private=["127.0.0.0/8"]) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        r = client.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=auth(k["admin"])
        )
        assert r.status_code == 201, r.text


def test_a_webhook_redirect_is_a_failed_delivery_and_is_not_followed(db):
    site(db)
    thief, stolen = _hook_server()
    hook, answered = _hook_server(redirect_to=f"http://127.0.0.1:{thief.server_port}/steal")
    private, _ = _hook_server()
    try:
        with psycopg.connect(db) as conn:
            for port in (hook.server_port, private.server_port):
                conn.execute(
                    "INSERT INTO webhooks (url, secret, min_level) VALUES (%s, %s, 1)",
                    (f"http://127.0.0.1:{port}/hook", "s3cret-for-the-webhook-test"),
                )
        raise_alert(db, "dam-1")
        # only the first hook's address is allowed; the second is as if its name had
        # come to resolve to a private address after it was added
        settings = Settings(
            _env_file=None,
            database_url=db,
            webhook_allow_private=["127.0.0.1/32"],
            webhook_max_attempts=1,
        )
        notifier = Notifier(settings, db)
        with psycopg.connect(db, autocommit=True) as conn:
            assert notifier.deliver_due(conn) == 2
        with psycopg.connect(db) as conn:
            rows = conn.execute(
                "SELECT w.url, d.status, d.last_status, d.last_error FROM webhook_deliveries d "
                "JOIN webhooks w ON w.id = d.webhook_id ORDER BY w.id"
            ).fetchall()
        assert len(answered.seen) == 1 and not stolen.seen
        assert rows[0][1:3] == ("failed", 302) and "not followed" in rows[0][3]
        assert rows[1][1] == "delivered"  # allowed by the allow-list (127.0.0.1/32)
    finally:
        for srv in (thief, hook, private):
            srv.shutdown()


def test_a_webhook_to_a_private_address_is_not_delivered(db):
    site(db)
    private, reached = _hook_server()
    try:
        with psycopg.connect(db) as conn:
            conn.execute(
                "INSERT INTO webhooks (url, secret, min_level) VALUES (%s, %s, 1)",
                (f"http://127.0.0.1:{private.server_port}/hook", "s3cret-for-the-webhook-test"),
            )
        raise_alert(db, "dam-1")
        notifier = Notifier(Settings(_env_file=None, database_url=db, webhook_max_attempts=1), db)
        with psycopg.connect(db, autocommit=True) as conn:
            assert notifier.deliver_due(conn) == 1
            status, error = conn.execute(
                "SELECT status, last_error FROM webhook_deliveries"
            ).fetchone()
        assert status == "failed" and "public addresses only" in error
        assert not reached.seen
    finally:
        private.shutdown()
