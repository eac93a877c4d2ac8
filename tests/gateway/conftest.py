"""Fixtures of the gateway's tests: a topic root per test and private Mosquitto brokers."""

from __future__ import annotations

import os
import uuid

import pytest

from ingest.broker import MosquittoProcess, mosquitto_binary


@pytest.fixture
def root() -> str:
    return f"t{uuid.uuid4().hex[:12]}/v1"


@pytest.fixture
def brokers(tmp_path):
    """Factory of MosquittoProcess brokers in tmp_path; all are stopped at the end."""
    if mosquitto_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; the gateway tests need it in CI")
        pytest.skip("mosquitto is not installed")
    started: list[MosquittoProcess] = []

    # Run as root, mosquitto drops to the user "mosquitto", which cannot write its
    # persistence file under pytest's root-only tmp folder: a restart would then lose
    # the sessions and their queued messages. Keep root so that persistence works.
    extra = "user root" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""

    def make(name: str, port: int | None = None) -> MosquittoProcess:
        broker = MosquittoProcess(tmp_path / name, port=port, extra_conf=extra)
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop()
