"""Property-based fuzzing of the OpenAPI schema with schemathesis: no input makes a 5xx.

Runs against a real uvicorn on a migrated database with a site, an alert and
keys; requests carry an admin key so that they reach every handler. The SSE
stream is left out (it does not end by itself).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from ingest.alerting import AlertEngine
from ingest.api import create_app
from ingest.settings import Settings
from ingest.store.migrate import migrate
from tests.api.support import ServerThread, insert_readings, minutes_ago, new_key, setup_site
from tests.conftest import create_database, drop_database, dsn_for


@pytest.fixture(scope="module")
def fuzz_target(admin_dsn):
    name = create_database(admin_dsn)
    dsn = dsn_for(name, admin_dsn)
    try:
        migrate(dsn, "off")
        setup_site(
            dsn,
            "dam-1",
            "check_dam",
            {"spillway_crest_m": 4.0, "dam_crest_m": 5.0},
            {"dam-1": ["stage_m"]},
        )
        engine = AlertEngine(Settings(_env_file=None, database_url=dsn), dsn)
        start = minutes_ago(10)
        pts = [(start + timedelta(minutes=i), 4.9) for i in range(5)]
        engine.process([insert_readings(dsn, "dam-1", "stage_m", pts)])
        key = new_key(dsn, "admin")
        with ServerThread(create_app(Settings(_env_file=None, database_url=dsn))) as server:
            yield server.url, key
    finally:
        with psycopg.connect(admin_dsn, autocommit=True):
            pass
        drop_database(admin_dsn, name)


def test_no_input_makes_a_server_error(fuzz_target):
    url, key = fuzz_target
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    tried = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path == "/alerts/stream":
            continue

        @given(
            case=st.one_of(
                op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)
            )
        )
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case):
            case.call_and_validate(base_url=url, headers=headers, checks=[not_a_server_error])

        fuzz()
        tried.append(f"{op.method.upper()} {op.path}")
    assert len(tried) >= 15, tried
