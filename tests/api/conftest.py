"""Fixtures of the alert and API tests: the consumer with the alert engine attached."""

from __future__ import annotations

import pytest

from ingest.alerting import attach


@pytest.fixture
def start_alerting(start_consumer):
    """Start a consumer with the alert engine and notifier; stopped after the test."""
    started = []

    def start(settings, dsn):
        rc = start_consumer(settings, dsn)
        alerting = attach(rc.consumer, settings, dsn)
        started.append(alerting)
        return rc, alerting

    yield start
    for alerting in started:
        alerting.stop()
