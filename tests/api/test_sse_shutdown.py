"""SIGTERM to `swc api` with an event-stream client connected: the stream ends cleanly
(``event: shutdown``, a complete chunked body) and the process exits 0, logging no
ERROR (no graceful-shutdown timeout, no response cut off)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import httpx

from ingest.broker import free_port
from tests.api.hostile_support import auth, keys, site
from tests.support.waiting import wait_for


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def test_sigterm_with_a_connected_stream_ends_it_cleanly_and_exits_0(db, tmp_path):
    site(db)
    k = keys(db)
    port = free_port()
    log_path = tmp_path / "api.log"
    env = {**os.environ, "SWC_DATABASE_URL": db, "SWC_MQTT_URL": "", "SWC_LOG_LEVEL": "INFO",
           "SWC_API_METRICS_PORT": "0"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swc_cli", "api", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _up(port), 30, what="swc api")
        lines: list[str] = []
        outcome: list[BaseException | None] = []

        def read() -> None:
            try:
                url = f"http://127.0.0.1:{port}/alerts/stream"
                with httpx.stream("GET", url, headers=auth(k["viewer"]), timeout=60) as r:
                    lines.extend(r.iter_lines())
                outcome.append(None)
            except httpx.HTTPError as exc:  # e.g. the body cut off before its end
                outcome.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_for(lambda: ": connected" in lines, 20, what="the stream")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        reader.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log_text = log_path.read_text(errors="replace")
    assert outcome == [None], f"the stream did not end cleanly: {outcome}"
    assert "event: shutdown" in lines
    # it ended before the stream's first heartbeat (15 s): no wait for a timeout
    assert ": keepalive" not in lines
    assert "ERROR" not in log_text and "Traceback" not in log_text, log_text


def test_swc_up_stopping_its_api_thread_ends_streams_cleanly(db, caplog):
    import logging

    from ingest.alerting.serve import start_api
    from ingest.settings import Settings

    site(db)
    k = keys(db)
    port = free_port()
    api = start_api(Settings(_env_file=None, database_url=db, api_host="127.0.0.1", api_port=port,
                             api_metrics_port=0))
    lines: list[str] = []
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            url = f"http://127.0.0.1:{port}/alerts/stream"
            with httpx.stream("GET", url, headers=auth(k["viewer"]), timeout=60) as r:
                lines.extend(r.iter_lines())
            outcome.append(None)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: ": connected" in lines, 20, what="the stream")
    with caplog.at_level(logging.INFO):
        api.stop()
        reader.join(30)
    assert not api.thread.is_alive()
    assert outcome == [None] and "event: shutdown" in lines
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
