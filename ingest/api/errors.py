"""Errors as JSON with a clear ``message`` (and FastAPI's ``detail``).

The refusals added for hostile clients (body limits, pool exhaustion, slow
statements, ...) are RFC 9457 problem documents (``application/problem+json``
with ``type``, ``title``, ``status``, ``detail``), which also carry ``message``
(= ``detail``) so that every error of the API has a ``message``.
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout, TooManyRequests
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    message: str
    detail: object | None = None


PROBLEM_TYPE = "urn:swc-monitor:problem"  # + ":<slug>"; each is listed in docs/api.md
PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_S = 2  # Retry-After of a 503 when the database is busy


class Problem(StarletteHTTPException):
    """An RFC 9457 problem, raised anywhere in a request; ``slug`` names its ``type``.

    An HTTPException, so that FastAPI passes it on as it is even from the
    reading of a body (where it turns other exceptions into a 400)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        slug: str,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(status, detail, headers or {})
        self.status = status
        self.title = title
        self.slug = slug


def problem_body(status: int, title: str, detail: str, slug: str) -> dict:
    return {
        "type": f"{PROBLEM_TYPE}:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "message": detail,
    }


def problem_response(p: Problem) -> JSONResponse:
    return JSONResponse(
        problem_body(p.status, p.title, p.detail, p.slug),
        status_code=p.status,
        headers=p.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def busy(detail: str) -> Problem:
    """503 with Retry-After: the database has no connection (or no time) for us now."""
    return Problem(503, "Service busy", detail, "busy", headers={"Retry-After": str(RETRY_AFTER_S)})


def _where(loc) -> str:
    return ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = [f"{_where(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:5]]
        message = "invalid request: " + "; ".join(parts)
        if len(errors) > 5:
            message += f"; and {len(errors) - 5} more"
        detail = jsonable_encoder(
            [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in errors]
        )
        return JSONResponse({"message": message, "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"message": str(exc.detail), "detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(TooManyRequests)
    async def pool_busy(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database pool exhausted: %s %s", request.method, request.url.path)
        return problem_response(
            busy("every database connection is in use; try again in a few seconds")
        )

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def too_slow(request: Request, exc: psycopg.errors.QueryCanceled) -> JSONResponse:
        limit = getattr(request.state, "statement_timeout_s", None)
        within = f" within the {limit:g} s allowed to this key's role" if limit else ""
        return problem_response(
            Problem(
                503,
                "Query took too long",
                f"the database did not finish this request{within}; ask for a shorter time "
                "range, fewer streams or coarser buckets",
                "statement-timeout",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        )

    @app.exception_handler(psycopg.OperationalError)
    async def db_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).strip()[:200])
        return problem_response(busy("the database is not available; try again shortly"))

    @app.exception_handler(psycopg.errors.DataError)
    async def data_error(request: Request, exc: psycopg.errors.DataError) -> JSONResponse:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return JSONResponse(
            {"message": f"a value was refused by the database: {msg}"}, status_code=422
        )

    @app.exception_handler(psycopg.errors.IntegrityError)
    async def conflict(request: Request, exc: psycopg.errors.IntegrityError) -> JSONResponse:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return JSONResponse({"message": f"conflicts with existing data: {msg}"}, status_code=409)


# Documented error responses, for the routers' ``responses=``.
def errors(*codes: int) -> dict[int | str, dict]:
    text = {
        401: "no API key, or not a valid one",
        403: "the key's role does not allow this",
        404: "not found",
        409: "conflicts with the current state",
        413: "the request body is larger than this endpoint accepts",
        422: "malformed input",
        503: "the database is busy or the query took too long (Retry-After)",
    }
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}
