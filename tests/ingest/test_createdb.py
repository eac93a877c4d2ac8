"""``ensure_database``: what ``swc research validate`` uses to create its scratch database."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from ingest.store.createdb import CreateDatabaseError, ensure_database
from tests.conftest import drop_database, dsn_for


def test_creates_a_missing_database_once(admin_dsn):
    name = f"swct_{uuid.uuid4().hex[:12]}_scratch"
    dsn = dsn_for(name, admin_dsn)
    try:
        assert ensure_database(dsn) is True
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == name
        assert ensure_database(dsn) is False
    finally:
        drop_database(admin_dsn, name)


def test_says_why_it_cannot(admin_dsn):
    with pytest.raises(CreateDatabaseError, match="names no database"):
        ensure_database("host=127.0.0.1 port=5432 user=postgres")
    unreachable = psycopg.conninfo.make_conninfo(admin_dsn, port="1", dbname="x")
    with pytest.raises(CreateDatabaseError, match="cannot connect"):
        ensure_database(unreachable)
