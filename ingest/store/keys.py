"""API keys: created once and shown once, stored as a SHA-256 hash with a display prefix."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

ROLES = ("viewer", "surveyor", "engineer", "admin")
# The rank chain is viewer < engineer < admin. A surveyor reads like a viewer
# and also writes field surveys; it ranks with the viewer, so that no check
# of the engineer role (acknowledging alerts, thresholds) lets it through.
_RANK = {"viewer": 0, "surveyor": 0, "engineer": 1, "admin": 2}
# Permissions outside the chain: the roles that hold each.
PERMISSIONS: dict[str, frozenset[str]] = {
    "write_surveys": frozenset({"surveyor", "engineer", "admin"}),
}
KEY_PREFIX = "swc_"


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def allows(self, role: str) -> bool:
        """True when this key's role is ``role`` or above (viewer < engineer < admin)."""
        if role == "surveyor":
            raise ValueError("surveyor is not a rank: ask may('write_surveys')")
        return _RANK[self.role] >= _RANK[role]

    def may(self, permission: str) -> bool:
        """True when this key's role holds ``permission`` (see :data:`PERMISSIONS`)."""
        return self.role in PERMISSIONS[permission]


_COLS = "id, name, role, prefix, created_at, last_used_at, revoked_at"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    conn: psycopg.Connection, role: str, name: str = "", created_by: int | None = None
) -> tuple[ApiKey, str]:
    """Insert a new key; returns the row and the key itself (never stored, shown once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        f"INSERT INTO api_keys (name, role, prefix, key_hash, created_by) "
        f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLS}",
        (name, role, key[: len(KEY_PREFIX) + 6], hash_key(key), created_by),
    ).fetchone()
    return ApiKey(*row), key


def authenticate(conn: psycopg.Connection, key: str) -> ApiKey | None:
    """The active key matching ``key``, or None. Marks it used (at most once a minute)."""
    if not key or len(key) > 200:
        return None
    row = conn.execute(
        f"UPDATE api_keys SET last_used_at = now() WHERE key_hash = %s AND revoked_at IS NULL "
        f"AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') "
        f"RETURNING {_COLS}",
        (hash_key(key),),
    ).fetchone()
    if row is None:
        row = conn.execute(
            f"SELECT {_COLS} FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
            (hash_key(key),),
        ).fetchone()
    return ApiKey(*row) if row else None


def list_keys(
    conn: psycopg.Connection, after_id: int = 0, limit: int | None = None
) -> list[ApiKey]:
    """Keys by id, after ``after_id``."""
    return [
        ApiKey(*r)
        for r in conn.execute(
            f"SELECT {_COLS} FROM api_keys WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit)
        )
    ]


def revoke_key(conn: psycopg.Connection, key_id: int) -> ApiKey | None:
    row = conn.execute(
        f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s "
        f"RETURNING {_COLS}",
        (key_id,),
    ).fetchone()
    return ApiKey(*row) if row else None
