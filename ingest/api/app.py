"""Application factory: settings passed in, the database pool opened in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from ..settings import Settings
from ..surveys.reader import SheetReaders
from . import console, errors
from .dbpool import CheckedPool
from .events import Broadcaster
from .guard import RequestGuard
from .offload import HeavyWorkers
from .paging import reject_unknown_query
from .routes import (
    alerts,
    dead_letters,
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
thresholds and reads dead letters; `admin` also manages sites, devices, keys
and webhooks.

Every error is an RFC 9457 problem document (`application/problem+json`:
`type`, `title`, `status`, `detail`, and `errors` for the fields at fault).
Unknown query parameters are refused (422) on every endpoint. Every list pages
the same way: `{items, total, limit, next, next_cursor}`, with the next page
also in the `Link: <...>; rel="next"` header; follow `next` until it is null.
See docs/api.md.

Researchers' data (docs/research.md): `/readings` (time series, raw or bucketed,
cursor-paged), `/exports` (CSV, Parquet, NetCDF), `/research` (derived products)
and `/surveys` (field surveys, attachments, sheet import; role `surveyor`, also
engineer and admin, writes them).
"""


SWITCH_INTERVAL_S = 0.001
MAX_HEAVY_WORKERS = 4  # worker processes for expensive reads (offload.py), at most


def _default_timeout_ms(settings: Settings) -> int:
    """Statement timeout of a pooled connection outside a key's transaction: the
    shortest of the roles' (each request then sets its key's role's own)."""
    return round(min(settings.api_statement_timeout_s.values(), default=30.0) * 1000)


def stop_streams(app: FastAPI) -> None:
    """End the open event streams cleanly (``event: shutdown``); from any thread.

    Under `swc api` sse-starlette sees uvicorn's SIGTERM by itself; a server run
    in a thread (`swc up`) has no signal handler, so its owner calls this
    before telling uvicorn to exit."""
    loop = getattr(app.state, "loop", None)
    stopping = getattr(app.state, "streams_stopping", None)
    if loop is not None and stopping is not None:
        with contextlib.suppress(RuntimeError):  # the loop has closed already
            loop.call_soon_threadsafe(stopping.set)


def instrument(app: FastAPI) -> CollectorRegistry:
    """Count requests by route template, method and status, and time them (``swc_api_*``,
    served on SWC_API_METRICS_PORT by `swc api` and `swc up`)."""
    from prometheus_fastapi_instrumentator import Instrumentator, metrics

    registry = CollectorRegistry()  # one per app: tests build many apps in one process
    Instrumentator(
        should_group_status_codes=False,
        should_group_untemplated=True,  # unknown paths count as "none", not one series each
        # no in-progress gauge: the middleware would register it again each time the
        # app's middleware stack is built (each start of a test client)
        registry=registry,
    ).add(
        metrics.default(
            metric_namespace="swc",
            metric_subsystem="api",
            should_exclude_streaming_duration=True,  # an event stream lasts hours
            registry=registry,
        )
    ).instrument(app)
    return registry


def create_app(settings: Settings) -> FastAPI:
    if not settings.database_url:
        raise ValueError("the API needs a database: set SWC_DATABASE_URL")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # CPU-bound request threads hand the interpreter back to the event loop
        # every 1 ms instead of 5 ms: ordinary requests wait less behind heavy ones
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        exports.sweep_stale_files(settings.export_tmp_path)
        pool = CheckedPool(
            settings.database_url,
            min_size=1,
            max_size=settings.api_pool_size,
            timeout=settings.api_pool_wait_s,
            max_waiting=settings.api_pool_size * 16,  # more waiting: 503 at once
            kwargs={"options": f"-c statement_timeout={_default_timeout_ms(settings)}"},
            open=False,
        )
        pool.open(wait=False)
        app.state.pool = pool
        app.state.settings = settings
        app.state.broadcaster = Broadcaster(settings.database_url).start()
        # set by stop_streams(): event streams end cleanly before the server stops
        app.state.streams_stopping = anyio.Event()
        app.state.loop = asyncio.get_running_loop()
        app.state.sheet_readers = SheetReaders(settings.survey_import_max_concurrent)
        # expensive reads (large pages, derived products) in niced worker processes
        app.state.heavy_workers = HeavyWorkers(
            settings.database_url, min(settings.api_heavy_concurrency, MAX_HEAVY_WORKERS)
        )
        try:
            yield
        finally:
            app.state.heavy_workers.close()
            app.state.sheet_readers.close()
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
    app.add_middleware(RequestGuard, settings=settings, pool_of=lambda: app.state.pool)
    app.state.metrics = instrument(app)  # outside the guard: its refusals count too
    strict = [Depends(reject_unknown_query)]  # unknown query parameters: 422 everywhere
    for module in (health, sites, rules, alerts, devices, keys, webhooks, dead_letters):
        app.include_router(module.router, dependencies=strict)
    for module in (readings, exports, research, surveys):  # researchers' data
        app.include_router(module.router, dependencies=strict)
    console.install(app)  # the web console at /, offline API docs
    errors.add_problem_responses(app)
    return app
