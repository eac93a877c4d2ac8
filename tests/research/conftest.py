"""Fixtures of the research tests: one simulated 50-year storm (the default county) with
its noisy logger messages, and helpers to load (parts of) it into a test database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from firmware_sim.run import RunConfig, run
from ingest.research.validate import load_messages, registry_with_scenario
from ingest.store.registry import load_registry


@pytest.fixture(scope="session")
def sim50(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`swc sim run --storm 50y --write-messages` of the default county."""
    out = tmp_path_factory.mktemp("sim50")
    run(RunConfig(storm="50y", out_dir=out, write_messages=True))
    return out


def _shift(stamp: str, shift: timedelta) -> str:
    t = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + shift
    return t.isoformat().replace("+00:00", "Z")


def messages(
    sim_dir: Path,
    devices: Iterable[str] | None = None,
    shift: timedelta = timedelta(0),
    keep=None,
) -> Iterator[bytes]:
    """Payloads of the run's messages, optionally only some devices, shifted in time,
    and filtered by ``keep(payload_dict) -> bool``."""
    wanted = set(devices) if devices is not None else None
    with (sim_dir / "messages.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            p = json.loads(line)["payload"]
            if wanted is not None and p["device"] not in wanted:
                continue
            if shift:
                p["sent_at"] = _shift(p["sent_at"], shift)
                for r in p["readings"]:
                    r["t"] = _shift(r["t"], shift)
            if keep is not None and not keep(p):
                continue
            yield json.dumps(p).encode()


def load_registry_of(conn: psycopg.Connection, sim_dir: Path) -> None:
    load_registry(conn, registry_with_scenario(sim_dir))


def load(conn: psycopg.Connection, sim_dir: Path, devices=None, shift=timedelta(0), keep=None):
    return load_messages(conn, messages(sim_dir, devices, shift, keep))
