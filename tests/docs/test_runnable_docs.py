"""Docs are code: every block marked runnable in README.md and docs/*.md runs here.

A fenced block whose info string is ``sh runnable`` (or ``python runnable``)
is one test case, with the id ``FILE:LINE`` of its opening fence, so a
failure names the block. The blocks of one file run in their order, in one
temporary working folder of that file:

- ``sh``: ``bash`` with ``set -euo pipefail``. Variables a block exports are
  kept for the later blocks of the same file (``export KEY=$(swc keys
  create ...)`` in one block, ``$KEY`` in the next).
- ``python``: this venv's python, in the same folder and environment.

Every block gets this environment (docs/README say the same to readers):

- ``SWC_DATABASE_URL``: a fresh database, migrated, with the shipped county
  loaded (``swc sim registry > sites.yaml && swc sites load sites.yaml``);
- ``SWC_MQTT_URL``: the tests' private Mosquitto; ``SWC_TOPIC_ROOT``: a topic
  root of this run alone (``swc sim run --root`` reads it too);
- ``SCRATCH_URL``: the URL of a database that does not exist yet (for
  ``swc research validate``, which creates it), dropped afterwards;
- ``SWC_WEBHOOK_ALLOW_PRIVATE``: the example network of docs/api.md;
- ``SWC_API_URL``: a running ``swc api`` on a free port, and ``SWC_API_KEY``:
  an admin key of it;
- a running ``swc ingest`` (with its alert engine) on that broker and root;
- ``PATH`` with this venv's ``bin`` first, so ``swc`` is this checkout's.

``curl`` fails on an HTTP error (it runs with ``--fail-with-body``, and
``--retry 3`` for the transient 503 of a loaded machine), so an example that
answers 404 fails its block. Each command is traced on stderr with its time. A block that must fail says so in
a comment line ``# docs-test: expect-fail`` (keep that rare). Blocks that
cannot run here (``docker compose``, ``apt-get``, ``swc up``, services that
never end) stay unmarked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest

from tests.conftest import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"sh", "python"}
EXPECT_FAIL = "# docs-test: expect-fail"
BLOCK_TIMEOUT_S = 180
BIN = Path(sys.executable).parent

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\S*)\s*(.*)$")


@dataclass
class Block:
    file: str  # relative to the repository
    line: int  # of the opening fence
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def expect_fail(self) -> bool:
        return any(line.strip() == EXPECT_FAIL for line in self.code.splitlines())


def collect_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The runnable blocks of one Markdown file, in order.

    A fence opens with ``` (or ~~~) followed by the language; the word
    ``runnable`` after it marks the block. Fences may be indented (in a
    list); the block's lines lose that indentation.
    """
    blocks: list[Block] = []
    rel = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
        m = _FENCE.match(lines[i].lstrip(" "))
        if not m:
            i += 1
            continue
        fence, lang, rest = m.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1  # the closing fence
        if "runnable" in rest.split():
            if lang not in LANGUAGES:
                raise ValueError(
                    f"{rel}:{start + 1}: a runnable block must be one of {sorted(LANGUAGES)}, "
                    f"not {lang!r}"
                )
            blocks.append(Block(rel, start + 1, lang, "\n".join(body) + "\n"))
    return blocks


ALL_BLOCKS = [b for path in DOC_FILES for b in collect_blocks(path)]


def test_markers_are_found():
    """The collector sees the marked blocks (an unseen marker would silently test nothing)."""
    marked = sum(
        len(re.findall(r"^\s*```\s*\w+\s+runnable\b", p.read_text(encoding="utf-8"), re.M))
        for p in DOC_FILES
    )
    assert marked == len(ALL_BLOCKS) > 0


def test_collector_reads_indented_fences_and_rejects_unknown_languages(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n\n* item\n\n  ```sh runnable\n  echo one\n  ```\n\n```json\n{}\n```\n"
        "```python runnable\nprint(2)\n```\n"
    )
    blocks = collect_blocks(doc, tmp_path)
    assert [(b.line, b.lang, b.code) for b in blocks] == [
        (5, "sh", "echo one\n"),
        (12, "python", "print(2)\n"),
    ]
    doc.write_text("```bash runnable\necho\n```\n")
    with pytest.raises(ValueError, match=r"x\.md:1"):
        collect_blocks(doc, tmp_path)


# -- the live stack ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@dataclass
class Stack:
    env: dict[str, str]
    logs: dict[str, Path]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def log_tails(self) -> str:
        return "\n".join(f"--- {name} log (tail) ---\n{_tail(p)}" for name, p in self.logs.items())


def _run(cmd: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{cmd}"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"stack setup failed: {cmd}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _url(admin: str, database: str) -> str:
    """A postgresql:// URL (what the docs show) for DATABASE on the admin DSN's server."""
    p = psycopg.conninfo.conninfo_to_dict(admin)
    auth = quote(p.get("user", "postgres"), safe="")
    if p.get("password"):
        auth += ":" + quote(p["password"], safe="")
    return f"postgresql://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{database}"


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWC_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(BIN.parent)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def stack(admin_dsn, broker, tmp_path_factory) -> Iterator[Stack]:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the docs' examples")
    base = tmp_path_factory.mktemp("docs-stack")
    if shutil.which("jq") is None:
        pytest.fail("jq is needed to run the docs' examples (apt-get install jq)")
    name = create_database(admin_dsn)
    scratch = f"{name}_scratch"
    root = f"t{uuid.uuid4().hex[:10]}/v1"
    env = _base_env()
    env.update(
        SWC_DATABASE_URL=_url(admin_dsn, name),
        SCRATCH_URL=_url(admin_dsn, scratch),
        SWC_MQTT_URL=broker.url,
        SWC_TOPIC_ROOT=root,
        SWC_DATA_DIR=str(base / "data"),
        SWC_METRICS_PORT="0",
        SWC_API_METRICS_PORT="0",
        SWC_ALERT_CHECK_INTERVAL_S="5",
        # docs/api.md's webhook example goes to the county network, as its text says
        SWC_WEBHOOK_ALLOW_PRIVATE='["10.20.0.0/16", "duty.lan"]',
    )
    logs = {"ingest": base / "ingest.log", "api": base / "api.log"}
    st = Stack(env, logs)
    try:
        _run("swc migrate && swc sim registry > sites.yaml && swc sites load sites.yaml", env, base)
        env["SWC_API_KEY"] = _run(
            "swc keys create --role admin --name docs-test", env, base
        ).strip()
        ingest_env = dict(env, SWC_CLIENT_ID=f"docs-{uuid.uuid4().hex[:8]}")
        st.procs.append(
            subprocess.Popen(
                ["swc", "ingest"],
                env=ingest_env,
                cwd=base,
                stdout=logs["ingest"].open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        port = _free_port()
        st.procs.append(
            subprocess.Popen(
                ["swc", "api", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=base,
                stdout=logs["api"].open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        env["SWC_API_URL"] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            for p in st.procs:
                if p.poll() is not None:
                    pytest.fail(f"a service ended at start\n{st.log_tails()}")
            api_up = False
            with contextlib.suppress(httpx.HTTPError):
                api_up = httpx.get(f"{env['SWC_API_URL']}/health", timeout=2).status_code < 500
            if api_up and "mqtt connected" in _tail(logs["ingest"], 200):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the stack did not come up in 60 s\n{st.log_tails()}")
            time.sleep(0.2)
        yield st
    finally:
        for p in st.procs:
            p.terminate()
        for p in st.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        drop_database(admin_dsn, name)
        drop_database(admin_dsn, scratch)


@dataclass
class FileState:
    workdir: Path
    env: dict[str, str]
    failed: str | None = None


@pytest.fixture(scope="module")
def file_states() -> dict[str, FileState]:
    return {}


_SH_PRELUDE = """\
set -euo pipefail
PS4='+ ${EPOCHREALTIME} ' && set -x  # stderr names the command that failed, and when
trap 'env -0 > "$SWC_DOCS_TEST_STATE"' EXIT
# a busy CI machine may get a 503 (pool wait, /health's 1 s broker probe): try again then
curl() { command curl --fail-with-body --show-error --retry 3 --retry-delay 1 "$@"; }
"""
_NOT_KEPT = {"PWD", "OLDPWD", "SHLVL", "_", "SWC_DOCS_TEST_STATE"}


def _read_env(path: Path) -> dict[str, str] | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    out = {}
    for item in raw.decode("utf-8", "surrogateescape").split("\0"):
        key, sep, value = item.partition("=")
        if sep and key not in _NOT_KEPT:
            out[key] = value
    return out


@pytest.mark.timeout(BLOCK_TIMEOUT_S + 120)
@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_block(block: Block, stack: Stack, file_states: dict[str, FileState], tmp_path_factory):
    state = file_states.get(block.file)
    if state is None:
        workdir = tmp_path_factory.mktemp(re.sub(r"\W", "_", block.file))
        state = file_states[block.file] = FileState(workdir, dict(stack.env))
    if state.failed:
        pytest.skip(f"an earlier block of {block.file} failed ({state.failed})")
    state_file = state.workdir / f".env-{block.line}"
    env = dict(state.env, SWC_DOCS_TEST_STATE=str(state_file))
    if block.lang == "sh":
        cmd = ["bash", "-c", _SH_PRELUDE + block.code, f"{block.file}:{block.line}"]
    else:
        script = state.workdir / f".block-{block.line}.py"
        script.write_text(block.code)
        cmd = [sys.executable, script.name]
    try:
        done = subprocess.run(
            cmd, env=env, cwd=state.workdir, capture_output=True, text=True,
            timeout=BLOCK_TIMEOUT_S,
        )  # fmt: skip
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
    ok = (rc != 0) if block.expect_fail else (rc == 0)
    if not ok:
        state.failed = block.id
        want = "a failure" if block.expect_fail else "success"
        pytest.fail(
            f"{block.id}: expected {want}, exit {rc}\n--- block ---\n{block.code}"
            f"--- stdout (tail) ---\n{out[-3000:]}\n--- stderr (tail) ---\n{err[-3000:]}\n"
            f"{stack.log_tails()}",
            pytrace=False,
        )
    kept = _read_env(state_file) if block.lang == "sh" else None
    if kept is not None:
        state.env = kept
