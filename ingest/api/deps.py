"""Dependencies shared by the routers, as Annotated aliases: connection, settings, API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..settings import Settings
from ..store.keys import ApiKey, authenticate

KEY_STATE = "api_key"  # request.state attribute of a key already checked (see guard.py)


def _conn(request: Request) -> Iterator[psycopg.Connection]:
    with pooled(request) as conn:
        yield conn


def pooled(request: Request):
    """A pooled connection; a pool that stays busy answers 503 (errors.py), not 500."""
    settings: Settings = request.app.state.settings
    return request.app.state.pool.connection(timeout=settings.api_pool_wait_s)


def _settings(request: Request) -> Settings:
    return request.app.state.settings


ConnDep = Annotated[psycopg.Connection, Depends(_conn)]
SettingsDep = Annotated[Settings, Depends(_settings)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: <key>`")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
HeaderDep = Annotated[str | None, Security(_header)]

NO_KEY = "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
BAD_KEY = "the API key is not valid or was revoked"


def _given_key(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str:
    key = bearer.credentials if bearer is not None else header
    if not key:
        raise HTTPException(401, NO_KEY, headers={"WWW-Authenticate": "Bearer"})
    return key


def _check(key: ApiKey | None) -> ApiKey:
    if key is None:
        raise HTTPException(401, BAD_KEY, headers={"WWW-Authenticate": "Bearer"})
    return key


def statement_timeout(conn: psycopg.Connection, settings: Settings, role: str) -> float:
    """Limit every statement of the current transaction to the role's time [s]."""
    limit = settings.api_statement_timeout_s.get(role) or min(
        settings.api_statement_timeout_s.values(), default=30.0
    )
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{round(limit * 1000)}ms",))
    return limit


def _current_key(request: Request, conn: ConnDep, bearer: BearerDep, header: HeaderDep) -> ApiKey:
    key = getattr(request.state, KEY_STATE, None)
    if key is None:
        key = _check(authenticate(conn, _given_key(bearer, header)))
    request.state.statement_timeout_s = statement_timeout(
        conn, request.app.state.settings, key.role
    )
    return key


def _stream_key(request: Request, bearer: BearerDep, header: HeaderDep) -> ApiKey:
    """For long responses: checks the key on a connection returned to the pool at once."""
    key = getattr(request.state, KEY_STATE, None)
    if key is not None:
        return key
    given = _given_key(bearer, header)
    with pooled(request) as conn:
        return _check(authenticate(conn, given))


def optional_key(request: Request, bearer: BearerDep, header: HeaderDep) -> ApiKey | None:
    """The key if one is given and valid, else None (for /health's details)."""
    given = bearer.credentials if bearer is not None else header
    if not given:
        return None
    try:
        with pooled(request) as conn:
            return authenticate(conn, given)
    except Exception:  # the database is down: /health reports it without details
        return None


def key_is_active(request: Request, key_id: int) -> bool:
    """False once the key is revoked (or deleted)."""
    with pooled(request) as conn:
        row = conn.execute(
            "SELECT revoked_at IS NULL FROM api_keys WHERE id = %s", (key_id,)
        ).fetchone()
    return bool(row and row[0])


def _require(role: str):
    def dep(key: Annotated[ApiKey, Depends(_current_key)]) -> ApiKey:
        if not key.allows(role):
            raise HTTPException(
                403, f"this needs the {role} role; the key {key.prefix}… has role {key.role}"
            )
        return key

    return dep


CurrentKey = Annotated[ApiKey, Depends(_current_key)]  # any role: viewer and above
EngineerKey = Annotated[ApiKey, Depends(_require("engineer"))]
AdminKey = Annotated[ApiKey, Depends(_require("admin"))]
StreamKey = Annotated[ApiKey, Depends(_stream_key)]
OptionalKey = Annotated[ApiKey | None, Depends(optional_key)]
