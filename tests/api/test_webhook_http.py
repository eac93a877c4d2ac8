"""Webhook HTTP through httpx against real local servers: no redirects followed, timeouts,
the connection pinned to the checked address, TLS checked against the host name."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest

from ingest.alerting.notify import Notifier, Target, TargetRefused, post_json, resolve_target
from ingest.settings import Settings
from tests.api.support import rows, setup_site


class Recorder(http.server.BaseHTTPRequestHandler):
    """/ok 204, /fail 500, /redirect 302 to /landing, /landing 200, /slow waits 2 s."""

    seen: ClassVar[list[tuple[str, str, str | None]]] = []

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        Recorder.seen.append((self.command, self.path, self.headers.get("Host")))
        if self.path == "/slow":
            time.sleep(2.0)
        status = {"/ok": 204, "/fail": 500, "/redirect": 302, "/landing": 200}.get(self.path, 200)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/landing")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = _handle

    def log_message(self, *args) -> None:
        pass


def _serve(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hook() -> Iterator[int]:
    Recorder.seen = []
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder))


def _target(port: int, path: str, host: str = "127.0.0.1", scheme: str = "http") -> Target:
    return Target(scheme, host, port, path, "127.0.0.1")


HEADERS = {"Content-Type": "application/json"}


def test_a_redirect_is_a_failed_delivery_and_is_not_followed(hook):
    status, error = post_json(_target(hook, "/redirect"), b"{}", HEADERS, 5.0)
    assert status == 302
    assert error is not None and "redirect to '/landing' not followed" in error
    assert [(m, p) for m, p, _ in Recorder.seen] == [("POST", "/redirect")]  # no GET /landing


def test_success_and_failure_statuses(hook):
    assert post_json(_target(hook, "/ok"), b"{}", HEADERS, 5.0) == (204, None)
    assert post_json(_target(hook, "/fail"), b"{}", HEADERS, 5.0) == (500, "HTTP 500")


def test_the_timeout_comes_from_the_caller(hook):
    status, error = post_json(_target(hook, "/slow"), b"{}", HEADERS, 0.3)
    assert status is None and error is not None and error.startswith("timed out after 0.3 s")


def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(hook):
    # "hook.invalid" never resolves (RFC 6761): reaching the server proves that the
    # pinned address is used, while the Host header names the host
    status, error = post_json(_target(hook, "/ok", host="hook.invalid"), b"{}", HEADERS, 5.0)
    assert (status, error) == (204, None)
    assert Recorder.seen == [("POST", "/ok", f"hook.invalid:{hook}")]


def test_a_refused_connection_is_a_clear_error():
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        status, error = post_json(_target(port, "/ok"), b"{}", HEADERS, 2.0)
    assert status is None and error and "ConnectError" in error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:192.168.1.1]/hook",
    ],
)
def test_private_addresses_are_refused(url):
    with pytest.raises(TargetRefused, match="public addresses only"):
        resolve_target(url)


def test_the_allow_list_lets_a_private_network_through():
    t = resolve_target("http://127.0.0.1:8080/a?b=1", ["127.0.0.0/8"])
    assert (t.scheme, t.host, t.port, t.path, t.address) == (
        "http",
        "127.0.0.1",
        8080,
        "/a?b=1",
        "127.0.0.1",
    )
    with pytest.raises(TargetRefused, match="not an http"):
        resolve_target("ftp://example.org/x")


# --- TLS: the certificate is checked against the host name, not the pinned address ---


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=hook.test", "-addext",
         "subjectAltName=DNS:hook.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_hook(tls_files) -> Iterator[int]:
    Recorder.seen = []
    cert, key = tls_files
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


def test_https_checks_the_certificate_against_the_host_name(tls_files, tls_hook):
    trust = ssl.create_default_context(cafile=str(tls_files[0]))
    good = _target(tls_hook, "/ok", host="hook.test", scheme="https")
    assert post_json(good, b"{}", HEADERS, 5.0, ssl_context=trust) == (204, None)
    assert Recorder.seen == [("POST", "/ok", f"hook.test:{tls_hook}")]
    wrong = _target(tls_hook, "/ok", host="other.test", scheme="https")
    status, error = post_json(wrong, b"{}", HEADERS, 5.0, ssl_context=trust)
    assert status is None and error and "certificate" in error.lower()
    untrusted = post_json(good, b"{}", HEADERS, 5.0)  # the system store does not know it
    assert untrusted[0] is None and "certificate" in (untrusted[1] or "").lower()


# --- the delivery queue: a 3xx is never recorded as delivered ---


def test_a_redirecting_endpoint_is_never_recorded_as_delivered(db, hook):
    setup_site(db, "dam-1", "check_dam", {"dam_crest_m": 5.0}, {"dam-1": ["stage_m"]})
    now = datetime.now(UTC)
    with psycopg.connect(db) as conn:
        alert = conn.execute(
            "INSERT INTO alerts (site_id, rule, level, peak_level, opened_at, last_data_at) "
            "VALUES ('dam-1', 'stage', 2, 2, %s, %s) RETURNING id",
            (now, now),
        ).fetchone()[0]
        event = conn.execute(
            "INSERT INTO alert_events (alert_id, kind, level, previous_level, data_time) "
            "VALUES (%s, 'open', 2, 0, %s) RETURNING id",
            (alert, now),
        ).fetchone()[0]
        for path in ("/redirect", "/ok"):
            hook_id = conn.execute(
                "INSERT INTO webhooks (url, secret) VALUES (%s, 's') RETURNING id",
                (f"http://127.0.0.1:{hook}{path}",),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO webhook_deliveries (webhook_id, event_id) VALUES (%s, %s)",
                (hook_id, event),
            )
    settings = Settings(
        _env_file=None,
        database_url=db,
        webhook_max_attempts=1,
        webhook_allow_private=["127.0.0.1/32"],
    )
    with psycopg.connect(db, autocommit=True) as conn:
        assert Notifier(settings, db).deliver_due(conn) == 2
    got = rows(
        db,
        "SELECT w.url, d.status, d.last_status, d.last_error, d.delivered_at IS NULL "
        "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id ORDER BY d.id",
    )
    (_, status, code, error, undelivered), ok = got
    assert (status, code, undelivered) == ("failed", 302, True)
    assert "redirect to '/landing' not followed" in error
    assert ok[1:] == ("delivered", 204, None, False)
    assert sorted(m for m, _, _ in Recorder.seen) == ["POST", "POST"]  # no GET ever
