"""Create a PostgreSQL database when it does not exist yet (for scratch databases)."""

from __future__ import annotations

import psycopg
from psycopg import sql


class CreateDatabaseError(RuntimeError):
    """The database is missing and could not be created; the message says why."""


def ensure_database(dsn: str, maintenance_db: str = "postgres") -> bool:
    """Create the database named in ``dsn`` unless it exists. Returns True when created.

    The server is reached through its maintenance database (``postgres``) with
    the same user, host and password; the user needs CREATEDB.
    """
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    name = params.get("dbname")
    if not name:
        raise CreateDatabaseError(f"the database URL names no database: {_safe(dsn)}")
    try:
        with psycopg.connect(dsn, connect_timeout=10):
            return False
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise CreateDatabaseError(f"cannot connect to the database: {exc}") from None
    admin = psycopg.conninfo.make_conninfo(dsn, dbname=maintenance_db)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        return False  # created meanwhile by someone else
    except psycopg.Error as exc:
        raise CreateDatabaseError(
            f"database {name!r} does not exist and could not be created "
            f"(through {maintenance_db!r}): {exc}".strip()
        ) from None
    return True


def _safe(dsn: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo(**params)
