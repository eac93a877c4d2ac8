"""Migration files: $$ bodies, statement-by-statement files, checksums of applied files."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from ingest.store.migrate import MIGRATIONS_DIR, Migration, MigrationError, migrate

FUNCTION = """\
-- a plpgsql body with semicolons, a ';' in a string and a comment
CREATE TABLE gauge (id int PRIMARY KEY, depth_mm double precision NOT NULL);

CREATE FUNCTION depth_class(d double precision) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    label text;  -- one; two
BEGIN
    IF d > 50 THEN
        label := 'heavy; storm';
    ELSE
        label := 'light';
    END IF;
    RETURN label;
END;
$$;

INSERT INTO gauge VALUES (1, 80.0), (2, 3.0);
"""

NO_TX = """\
-- swc:no-transaction
-- statement by statement in autocommit, like the TimescaleDB file
CREATE INDEX CONCURRENTLY gauge_depth ON gauge (depth_mm);

DO $body$
BEGIN
    -- a semicolon at the end of a line inside a dollar-quoted body;
    UPDATE gauge SET depth_mm = depth_mm + 0 WHERE id = 1;
    PERFORM depth_class(1.0);
END
$body$;

CREATE FUNCTION gauge_count() RETURNS bigint LANGUAGE sql AS $f$
    SELECT count(*) FROM gauge;
$f$;
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_dollar_bodies_in_transactional_and_statement_by_statement_files(empty_db, tmp_path):
    _write(tmp_path, "0001_gauge.sql", FUNCTION)
    _write(tmp_path, "0002_index.sql", NO_TX)
    stmts = Migration(2, "index", None, tmp_path / "0002_index.sql").statements()
    assert len(stmts) == 3  # the semicolons inside $body$ and $f$ do not split
    assert "CREATE INDEX CONCURRENTLY" in stmts[0]
    assert stmts[1].startswith("DO $body$") and stmts[1].endswith("$body$;")
    assert stmts[2].startswith("CREATE FUNCTION gauge_count()")
    mode, applied = migrate(empty_db, "off", directory=tmp_path)
    assert (mode, applied) == ("plain", ["0001_gauge", "0002_index"])
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT depth_class(80), depth_class(1)").fetchone() == (
            "heavy; storm",
            "light",
        )
        assert conn.execute("SELECT gauge_count()").fetchone()[0] == 2
        assert conn.execute("SELECT to_regclass('gauge_depth')").fetchone()[0] == "gauge_depth"
        rows = conn.execute(
            "SELECT version, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert [v for v, _ in rows] == [1, 2]
    assert rows[0][1] == Migration(1, "gauge", None, tmp_path / "0001_gauge.sql").checksum()
    assert all(len(c) == 64 for _, c in rows)


def test_a_failing_file_is_rolled_back_whole(empty_db, tmp_path):
    _write(tmp_path, "0001_bad.sql", "CREATE TABLE t1 (a int);\nSELECT no_such_function();\n")
    with pytest.raises(MigrationError, match=r"0001_bad\.sql failed"):
        migrate(empty_db, "off", directory=tmp_path)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('t1')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == 0


def test_a_changed_applied_file_is_refused_unless_accepted(empty_db, tmp_path):
    path = _write(tmp_path, "0001_gauge.sql", FUNCTION)
    migrate(empty_db, "off", directory=tmp_path)
    path.write_text(FUNCTION.replace("'light'", "'drizzle'"))
    with pytest.raises(MigrationError) as err:
        migrate(empty_db, "off", directory=tmp_path)
    assert "0001_gauge.sql" in str(err.value) and "--accept-changed-migrations" in str(err.value)
    # nothing else is applied while a changed file stands
    _write(tmp_path, "0002_more.sql", "CREATE TABLE more (a int);")
    with pytest.raises(MigrationError):
        migrate(empty_db, "off", directory=tmp_path)
    # the operator's override records the new checksum; later runs are clean
    assert migrate(empty_db, "off", directory=tmp_path, accept_changed=True) == (
        "plain",
        ["0002_more"],
    )
    assert migrate(empty_db, "off", directory=tmp_path) == ("plain", [])
    # line endings alone are no change
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert migrate(empty_db, "off", directory=tmp_path) == ("plain", [])


def test_rows_without_a_checksum_are_backfilled_then_checked(empty_db, tmp_path):
    path = _write(tmp_path, "0001_gauge.sql", FUNCTION)
    migrate(empty_db, "off", directory=tmp_path)
    with psycopg.connect(empty_db) as conn:  # a database from before checksums
        conn.execute("ALTER TABLE schema_migrations DROP COLUMN checksum")
    assert migrate(empty_db, "off", directory=tmp_path) == ("plain", [])
    with psycopg.connect(empty_db) as conn:
        (checksum,) = conn.execute("SELECT checksum FROM schema_migrations").fetchone()
    assert checksum == Migration(1, "gauge", None, path).checksum()
    path.write_text(FUNCTION + "\n-- changed\n")
    with pytest.raises(MigrationError, match=r"0001_gauge\.sql"):
        migrate(empty_db, "off", directory=tmp_path)


def test_swc_migrate_refuses_a_changed_file_with_a_clear_error(empty_db, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import ingest.store.migrate as m
    from swc_cli import main

    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    monkeypatch.setattr(m, "MIGRATIONS_DIR", folder)
    env = {"SWC_DATABASE_URL": empty_db, "SWC_TIMESCALE": "off"}
    assert CliRunner().invoke(main, ["migrate"], env=env).exit_code == 0
    core = folder / "0001_core.sql"
    core.write_text(core.read_text() + "\n-- edited after release\n")
    res = CliRunner().invoke(main, ["migrate"], env=env)
    assert res.exit_code == 1 and "0001_core.sql" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["migrate", "--accept-changed-migrations"], env=env)
    assert res.exit_code == 0, res.output
    assert CliRunner().invoke(main, ["migrate"], env=env).exit_code == 0
