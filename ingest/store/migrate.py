"""Versioned SQL migrations, applied in order and recorded in ``schema_migrations``.

Files in ``migrations/`` are named ``NNNN_name.sql`` (every mode) or
``NNNN_name.plain.sql`` / ``NNNN_name.timescale.sql`` (one storage mode each).
A file whose first line is ``-- swc:no-transaction`` runs statement by
statement in autocommit (TimescaleDB's continuous aggregates need that);
its statements end with ``;`` at the end of a line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_LOCK_KEY = 0x5357_4331  # "SWC1", serialises concurrent `swc migrate`
PLAIN, TIMESCALE = "plain", "timescale"


class MigrationError(RuntimeError):
    """A migration could not be applied, or the storage mode cannot be honoured."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    mode: str | None  # None: every mode
    path: Path

    @property
    def no_transaction(self) -> bool:
        with self.path.open() as f:
            return f.readline().strip() == "-- swc:no-transaction"

    def statements(self) -> list[str]:
        text = self.path.read_text()
        lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
        body = "\n".join(lines)
        return [s.strip() for s in re.split(r";\s*$", body, flags=re.M) if s.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name!r} is not named NNNN_name[.mode].sql")
        found.append(Migration(int(m.group(1)), m.group(2), m.group(3), path))
    return found


def plan(mode: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations for ``mode``, one per version, in order."""
    chosen: dict[int, Migration] = {}
    for mig in discover(directory):
        if mig.mode in (None, mode):
            if mig.version in chosen:
                raise MigrationError(f"two migrations for version {mig.version:04d} in mode {mode}")
            chosen[mig.version] = mig
    return [chosen[v] for v in sorted(chosen)]


def detect_mode(conn: psycopg.Connection, want: str = "auto") -> str:
    """Decide plain or TimescaleDB storage (creating the extension when it can be loaded)."""
    recorded = _recorded_mode(conn)
    if recorded:
        if want == "on" and recorded == PLAIN:
            raise MigrationError(
                "this database was set up on plain PostgreSQL; TimescaleDB cannot be turned on "
                "in place (export and re-import into a new database)"
            )
        return recorded
    if want == "off":
        return PLAIN
    installed = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if installed:
        return TIMESCALE
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    if available and "timescaledb" in preload:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return TIMESCALE
    if want == "on":
        raise MigrationError(
            "SWC_TIMESCALE=on but the timescaledb extension is not available on this server "
            f"(installed: {bool(available)}, in shared_preload_libraries: {'timescaledb' in preload})"
        )
    return PLAIN


def _recorded_mode(conn: psycopg.Connection) -> str | None:
    exists = conn.execute("SELECT to_regclass('swc_meta') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    row = conn.execute("SELECT value FROM swc_meta WHERE key = 'storage_mode'").fetchone()
    return row[0] if row else None


def storage_mode(conn: psycopg.Connection) -> str:
    """The mode a migrated database was set up in."""
    mode = _recorded_mode(conn)
    if mode is None:
        raise MigrationError("the database is not migrated: run `swc migrate`")
    return mode


def migrate(dsn: str, want_timescale: str = "auto") -> tuple[str, list[str]]:
    """Apply pending migrations. Returns (storage mode, names applied). Idempotent."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, mode text,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS swc_meta (key text PRIMARY KEY, value text NOT NULL)"
            )
            mode = detect_mode(conn, want_timescale)
            conn.execute(
                "INSERT INTO swc_meta (key, value) VALUES ('storage_mode', %s) "
                "ON CONFLICT (key) DO NOTHING",
                (mode,),
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            applied = []
            for mig in plan(mode):
                if mig.version in done:
                    continue
                log.info(
                    "applying migration version=%04d name=%s mode=%s", mig.version, mig.name, mode
                )
                _apply(conn, mig)
                applied.append(f"{mig.version:04d}_{mig.name}")
            return mode, applied
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _apply(conn: psycopg.Connection, mig: Migration) -> None:
    record = "INSERT INTO schema_migrations (version, name, mode) VALUES (%s, %s, %s)"
    try:
        if mig.no_transaction:
            for stmt in mig.statements():
                conn.execute(stmt)
            conn.execute(record, (mig.version, mig.name, mig.mode))
        else:
            with conn.transaction():
                conn.execute(mig.path.read_text())
                conn.execute(record, (mig.version, mig.name, mig.mode))
    except psycopg.Error as exc:
        raise MigrationError(f"migration {mig.path.name} failed: {exc}") from exc


def apply_policies(dsn: str, compress_after: str, retain_for: str | None) -> None:
    """TimescaleDB compression and retention policies from settings (no-op on plain).

    Idempotent: a policy that already has the wanted interval is left alone, so
    running `swc migrate` (or starting `swc ingest` / `swc up`) again keeps the
    job, its id, its statistics and its schedule. Only a changed interval
    replaces the job; an unset ``retain_for`` removes the retention policy.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        if storage_mode(conn) != TIMESCALE:
            return
        if _policy_interval(conn, "policy_compression", "compress_after") != _interval(
            conn, compress_after
        ):
            conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
            conn.execute(
                "SELECT add_compression_policy('readings', compress_after => %s::interval)",
                (compress_after,),
            )
        wanted = _interval(conn, retain_for) if retain_for else None
        if _policy_interval(conn, "policy_retention", "drop_after") != wanted:
            conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
            if retain_for:
                conn.execute(
                    "SELECT add_retention_policy('readings', drop_after => %s::interval)",
                    (retain_for,),
                )
        log.info("timescaledb policies compress_after=%s retain_for=%s", compress_after, retain_for)


def _interval(conn: psycopg.Connection, value: str) -> str:
    """PostgreSQL's canonical text of an interval ('1 week' -> '7 days')."""
    return conn.execute("SELECT %s::interval::text", (value,)).fetchone()[0]


def _policy_interval(conn: psycopg.Connection, proc: str, key: str) -> str | None:
    """The canonical interval of ``readings``' policy job ``proc``, or None without one."""
    row = conn.execute(
        "SELECT (config ->> %s)::interval::text FROM timescaledb_information.jobs "
        "WHERE proc_schema = '_timescaledb_functions' AND proc_name = %s "
        "AND hypertable_name = 'readings' ORDER BY job_id LIMIT 1",
        (key, proc),
    ).fetchone()
    return row[0] if row else None
