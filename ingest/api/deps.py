"""Dependencies shared by the routers, as Annotated aliases: connection, settings, API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..settings import Settings
from ..store.keys import ApiKey, authenticate


def _conn(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.pool.connection(timeout=5) as conn:
        yield conn


def _settings(request: Request) -> Settings:
    return request.app.state.settings


ConnDep = Annotated[psycopg.Connection, Depends(_conn)]
SettingsDep = Annotated[Settings, Depends(_settings)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: <key>`")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
HeaderDep = Annotated[str | None, Security(_header)]


def _given_key(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str:
    key = bearer.credentials if bearer is not None else header
    if not key:
        raise HTTPException(
            401,
            "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


def _check(key: ApiKey | None) -> ApiKey:
    if key is None:
        raise HTTPException(
            401, "the API key is not valid or was revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return key


def _current_key(conn: ConnDep, bearer: BearerDep, header: HeaderDep) -> ApiKey:
    return _check(authenticate(conn, _given_key(bearer, header)))


def _stream_key(request: Request, bearer: BearerDep, header: HeaderDep) -> ApiKey:
    """For long responses: checks the key on a connection returned to the pool at once."""
    key = _given_key(bearer, header)
    with request.app.state.pool.connection(timeout=5) as conn:
        return _check(authenticate(conn, key))


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
