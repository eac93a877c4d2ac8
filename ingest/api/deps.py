"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request

from ..settings import Settings


def _conn(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.pool.connection(timeout=5) as conn:
        yield conn


def _settings(request: Request) -> Settings:
    return request.app.state.settings


ConnDep = Annotated[psycopg.Connection, Depends(_conn)]
SettingsDep = Annotated[Settings, Depends(_settings)]
