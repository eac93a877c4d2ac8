"""Application factory: settings passed in, the database pool opened in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from ..settings import Settings
from . import console, errors
from .events import Broadcaster
from .routes import (
    alerts,
    devices,
    exports,
    health,
    keys,
    readings,
    research,
    rules,
    sites,
    surveys,
    webhooks,
)

DESCRIPTION = """Sites, readings and alerts of soil-and-water-conservation works.

Every endpoint but `/health` needs an API key (`swc keys create --role ROLE`),
sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Roles: `viewer`
reads; `engineer` also acknowledges and resolves alerts and edits rule
thresholds; `admin` also manages sites, devices, keys and webhooks. Errors are
JSON objects with a `message`. See docs/api.md.

Researchers' data (docs/research.md): `/readings` (time series, raw or bucketed,
cursor-paged), `/exports` (CSV, Parquet, NetCDF), `/research` (derived products)
and `/surveys` (field surveys, attachments, sheet import; role `surveyor`, also
engineer and admin, writes them).
"""


def create_app(settings: Settings) -> FastAPI:
    if not settings.database_url:
        raise ValueError("the API needs a database: set SWC_DATABASE_URL")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(settings.database_url, min_size=1, max_size=8, open=False)
        pool.open(wait=False)
        app.state.pool = pool
        app.state.settings = settings
        app.state.broadcaster = Broadcaster(settings.database_url).start()
        try:
            yield
        finally:
            app.state.broadcaster.stop()
            pool.close()

    app = FastAPI(
        title="swc monitoring API",
        version="0.2.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # console.install serves /docs and /redoc from local files
        redoc_url=None,
    )
    errors.install(app)
    for module in (health, sites, rules, alerts, devices, keys, webhooks):
        app.include_router(module.router)
    for module in (readings, exports, research, surveys):  # researchers' data
        app.include_router(module.router)
    console.install(app)  # the web console at /, offline API docs
    return app
