"""Fixtures of the API tests: the consumer with the alert engine attached."""

from __future__ import annotations

import pytest

from tests.api.support import alerting_starter


@pytest.fixture
def start_alerting(start_consumer):
    yield from alerting_starter(start_consumer)
