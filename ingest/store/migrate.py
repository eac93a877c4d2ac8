"""Versioned SQL migrations, applied in order and recorded in ``schema_migrations``.

Files in ``migrations/`` are named ``NNNN_name.sql`` (every mode) or
``NNNN_name.plain.sql`` / ``NNNN_name.timescale.sql`` (one storage mode each).
Each file runs in one transaction, sent whole (psycopg's multi-statement
execution: ``$$`` bodies, semicolons in strings and comments are the server's
business). A file whose first line is ``-- swc:no-transaction`` runs statement
by statement in autocommit instead (TimescaleDB's continuous aggregates need
that); sqlparse splits it, knowing quotes, comments and ``$tag$`` bodies.

``schema_migrations`` records the sha256 of each applied file (line endings
normalised to LF). A file changed after it was applied stops `swc migrate`,
and so every command that migrates first, with an error naming the file:
write a new migration instead. An operator who changed one on purpose (a
comment, a fix already applied by hand) passes ``accept_changed`` (`swc migrate
--accept-changed-migrations`), which records the new checksums. Rows applied
before checksums were recorded get the file's current checksum on the first
run that knows about them (there is nothing older to compare with).
"""

from __future__ import annotations

import hashlib
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

    @property
    def filename(self) -> str:
        return self.path.name

    def checksum(self) -> str:
        """sha256 (hex) of the file's text, line endings normalised to LF."""
        data = self.path.read_bytes().replace(b"\r\n", b"\n")
        return hashlib.sha256(data).hexdigest()

    def statements(self) -> list[str]:
        """The file's statements, for the statement-by-statement (no-transaction) mode."""
        import sqlparse

        out = []
        for stmt in sqlparse.split(self.path.read_text()):
            if sqlparse.format(stmt, strip_comments=True).strip().strip(";").strip():
                out.append(stmt.strip())
        return out


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name!r} is not named NNNN_name[.mode].sql")
        found.append(Migration(int(m.group(1)), m.group(2), m.group(3), path))
    return found


def plan(mode: str, directory: Path | None = None) -> list[Migration]:
    """The migrations for ``mode``, one per version, in order."""
    chosen: dict[int, Migration] = {}
    for mig in discover(directory or MIGRATIONS_DIR):
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


def migrate(
    dsn: str,
    want_timescale: str = "auto",
    *,
    accept_changed: bool = False,
    directory: Path | None = None,
) -> tuple[str, list[str]]:
    """Apply pending migrations. Returns (storage mode, names applied). Idempotent.

    Raises MigrationError when an applied file has changed since (unless
    ``accept_changed``: the new checksum is then recorded, with a warning).
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, mode text,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            # sha256 of the applied file; NULL on rows from before it was recorded
            conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS swc_meta (key text PRIMARY KEY, value text NOT NULL)"
            )
            mode = detect_mode(conn, want_timescale)
            conn.execute(
                "INSERT INTO swc_meta (key, value) VALUES ('storage_mode', %s) "
                "ON CONFLICT (key) DO NOTHING",
                (mode,),
            )
            wanted = plan(mode, directory)
            done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            _check_applied(conn, [m for m in wanted if m.version in done], done, accept_changed)
            unknown = sorted(set(done) - {m.version for m in wanted})
            if unknown:  # a newer release applied them, or their files were removed
                log.warning(
                    "applied migration version(s) %s have no file here",
                    ", ".join(f"{v:04d}" for v in unknown),
                )
            applied = []
            for mig in wanted:
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


def _check_applied(
    conn: psycopg.Connection,
    applied: list[Migration],
    recorded: dict[int, str | None],
    accept_changed: bool,
) -> None:
    """Compare the applied files with their recorded checksums (backfilling missing ones)."""
    changed = []
    for mig in applied:
        now, then = mig.checksum(), recorded[mig.version]
        if then is None:
            log.info(
                "migration %s: checksum recorded (applied before checksums were)", mig.filename
            )
        elif then == now:
            continue
        elif accept_changed:
            log.warning(
                "migration %s changed since it was applied; the new checksum is recorded "
                "(--accept-changed-migrations)",
                mig.filename,
            )
        else:
            changed.append(mig.filename)
            continue
        conn.execute(
            "UPDATE schema_migrations SET checksum = %s WHERE version = %s", (now, mig.version)
        )
    if changed:
        raise MigrationError(
            f"migration file(s) changed after they were applied to this database: "
            f"{', '.join(changed)} (in {applied[0].path.parent}). An applied migration must not "
            "change: restore the file and put the change in a new migration. If the change is "
            "deliberate and already reflected in the database, run "
            "`swc migrate --accept-changed-migrations` once to record the new checksum."
        )


def _apply(conn: psycopg.Connection, mig: Migration) -> None:
    record = "INSERT INTO schema_migrations (version, name, mode, checksum) VALUES (%s, %s, %s, %s)"
    values = (mig.version, mig.name, mig.mode, mig.checksum())
    try:
        if mig.no_transaction:
            for stmt in mig.statements():
                conn.execute(stmt)
            conn.execute(record, values)
        else:
            with conn.transaction():
                conn.execute(mig.path.read_text())  # no parameters: all statements in one go
                conn.execute(record, values)
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
