"""Application factory: settings passed in, the database pool opened in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from ..settings import Settings
from .routes import health


def create_app(settings: Settings) -> FastAPI:
    if not settings.database_url:
        raise ValueError("the API needs a database: set SWC_DATABASE_URL")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(settings.database_url, min_size=1, max_size=8, open=False)
        pool.open(wait=False)
        app.state.pool = pool
        app.state.settings = settings
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="swc monitoring API",
        version="0.1.0",
        description="Sites, readings and alerts of soil-and-water-conservation works.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    return app
