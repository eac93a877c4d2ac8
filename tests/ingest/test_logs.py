"""Log lines: valid logfmt or JSON lines, ISO times with a zone, the same settings
(SWC_LOG_LEVEL, SWC_LOG_FORMAT) in every process."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from swc_ops.logs import resolve, setup_logging

# logfmt: key=value pairs separated by spaces; a value is bare (no space, quote or =)
# or double-quoted with backslash escapes; nothing else on the line
_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s="]*)(?: |$)')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def parse_logfmt(line: str) -> dict[str, str]:
    """Parse one logfmt line strictly; AssertionError if any part of it is not logfmt."""
    out, pos = {}, 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        assert m, f"not logfmt at column {pos}: {line!r}"
        key, value = m.groups()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), value[1:-1])
        out[key] = value
        pos = m.end()
    return out


def check_lines(text: str, fmt: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        rec = json.loads(line) if fmt == "json" else parse_logfmt(line)
        assert {"ts", "level", "logger", "msg"} <= rec.keys(), line
        ts = datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
        assert ts.tzinfo is not None and rec["ts"].endswith("Z"), rec["ts"]
        records.append(rec)
    return records


TRICKY = 'pond "A" at 4.61 m = over the crest\nsecond line \\ done'


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_line_parses_with_spaces_quotes_and_tracebacks(fmt):
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("DEBUG", fmt, stream=out)
        log = logging.getLogger("swc.test")
        log.info("site %s: %s", "dam a01", TRICKY)
        log.debug("plain")
        log.warning("with extra", extra={"site": "dam a01", "level_m": 4.61})
        try:
            raise ValueError('bad "value"')
        except ValueError:
            log.exception("failed=yes")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    records = check_lines(out.getvalue(), fmt)
    assert len(records) == 4  # one line per record, line breaks escaped
    assert records[0]["msg"] == f"site dam a01: {TRICKY}"
    assert records[0]["level"] == "info" and records[0]["logger"] == "swc.test"
    assert records[2]["site"] == "dam a01"
    assert 'ValueError: bad "value"' in records[3]["exception"]
    assert records[3]["msg"] == "failed=yes"


def test_settings_are_checked_and_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SWC_LOG_LEVEL", "debug")
    monkeypatch.setenv("SWC_LOG_FORMAT", "json")
    assert resolve() == ("DEBUG", "json")
    assert resolve("warning", "text") == ("WARNING", "text")
    with pytest.raises(ValueError, match="SWC_LOG_LEVEL"):
        resolve("LOUD")
    with pytest.raises(ValueError, match="SWC_LOG_FORMAT"):
        resolve("INFO", "xml")


def test_the_qc_process_logs_with_the_consumers_settings(capfd):
    from datetime import UTC

    from ingest.qc import QCProcess

    # a database that is not there: the child logs a warning and retries
    qc = QCProcess("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", "INFO", "json")
    qc.start()
    now = datetime.now(UTC)
    try:
        qc.hook(type("Batch", (), {"streams": {1: (now, now)}})())
        deadline = time.monotonic() + 30
        err = ""
        while "qc re-evaluation failed" not in err:
            assert time.monotonic() < deadline, err
            time.sleep(0.2)
            err += capfd.readouterr().err
    finally:
        qc.stop(timeout=0.1)  # it retries forever without a database
    lines = [line for line in err.splitlines() if line.startswith("{")]
    records = check_lines("\n".join(lines), "json")
    assert any(r["logger"] == "ingest.qc" and r["level"] == "warning" for r in records)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_briefly(args: list[str], env: dict, until: str, timeout: float = 30) -> str:
    """Run `swc ARGS` until ``until`` shows on stderr, then SIGTERM; its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from swc_cli import main; main()", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **env},
        text=True,
    )
    lines = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stderr:
            lines.append(line)
            if until in line or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, rest = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, rest = proc.communicate()
    return "".join(lines) + rest


def test_gateway_follows_swc_log_format(tmp_path: Path):
    fmt = "json"
    config = tmp_path / "gw.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gateway_id": "gw-log-1",
                "data_dir": str(tmp_path / "gw"),
                "local": {"url": f"mqtt://127.0.0.1:{_free_port()}"},
                "upstream": {"url": f"mqtt://127.0.0.1:{_free_port()}"},
                "log": {"level": "ERROR", "format": "text"},  # the environment wins
            }
        )
    )
    err = _run_briefly(
        ["gateway", "run", str(config)],
        {"SWC_LOG_FORMAT": fmt, "SWC_LOG_LEVEL": "INFO"},
        until="gateway",
    )
    records = check_lines(err, fmt)
    assert records and any(r["level"] == "info" for r in records)


def test_api_logs_json_lines_uvicorns_too(db):
    port = _free_port()
    err = _run_briefly(
        ["api", "--port", str(port)],
        {
            "SWC_DATABASE_URL": db,
            "SWC_LOG_FORMAT": "json",
            "SWC_LOG_LEVEL": "INFO",
            "SWC_API_METRICS_PORT": "0",
        },
        until="Application startup complete",
    )
    records = check_lines(err, "json")
    assert any(r["logger"].startswith("uvicorn") for r in records)
    assert not any("color_message" in r for r in records)  # no terminal colours
