"""Every error of the API is an RFC 9457 problem document.

``application/problem+json`` with ``type`` (``urn:swc-monitor:problem:<slug>``,
each listed in docs/api.md), ``title`` (the same for every problem of a type),
``status``, ``detail`` (this occurrence, in words) and ``errors`` (the fields
at fault: ``[{"loc": "query.limit", "msg": ..., "type": ...}]``, empty when no
field is at fault). ``message`` (= ``detail``) is kept for older clients.

This holds for errors raised by routes (``HTTPException`` or ``Problem``), by
Starlette before a route runs (unknown path 404, method 405), by validation
(422), by the request guard (401/413/429/503, guard.py), by the database
(409/422/503) and for anything unexpected (500, logged with its traceback).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout, TooManyRequests
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:swc-monitor:problem"  # + ":<slug>"; each is listed in docs/api.md
PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_S = 2  # Retry-After of a 503 when the database is busy

# The type of an error raised with a plain status (HTTPException): one per status.
SLUGS: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-request",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}


class FieldError(BaseModel):
    loc: str = Field(description="where: `query.limit`, `body.note`, `path.site_id`, ...")
    msg: str = Field(description="what is wrong with it")
    type: str = Field(description="machine-readable kind of error (pydantic's error type)")


class ProblemOut(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(description="urn:swc-monitor:problem:<slug>; listed in docs/api.md")
    title: str = Field(description="short summary of the problem type")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="this occurrence, in words")
    errors: list[FieldError] = Field(
        default_factory=list, description="the fields at fault (empty when no field is)"
    )
    message: str = Field(description="= detail (kept for older clients)")


ErrorOut = ProblemOut  # the name the routers used before


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
        errors: list[dict] | None = None,
    ):
        super().__init__(status, detail, headers or {})
        self.status = status
        self.title = title
        self.slug = slug
        self.errors = errors or []


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int, title: str, detail: str, slug: str, errors: list[dict] | None = None
) -> dict:
    return {
        "type": f"{PROBLEM_TYPE}:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": errors or [],
        "message": detail,
    }


def problem_bytes(p: Problem) -> bytes:
    return json.dumps(problem_body(p.status, p.title, p.detail, p.slug, p.errors)).encode()


def problem_response(p: Problem) -> JSONResponse:
    return JSONResponse(
        problem_body(p.status, p.title, p.detail, p.slug, p.errors),
        status_code=p.status,
        headers=p.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def from_status(status: int, detail: Any, headers: dict[str, str] | None = None) -> Problem:
    """The problem of an ``HTTPException(status, detail)``."""
    if isinstance(detail, str):
        text, errs = detail, []
    elif isinstance(detail, list):  # FastAPI-style list of field errors
        errs = [_field_error(e) for e in detail if isinstance(e, dict)]
        text = "; ".join(f"{e['loc']}: {e['msg']}" for e in errs) or _title(status)
    else:
        text, errs = (_title(status) if detail is None else str(detail)), []
    return Problem(status, _title(status), text, SLUGS.get(status, f"http-{status}"), headers, errs)


def busy(detail: str) -> Problem:
    """503 with Retry-After: the database has no connection (or no time) for us now."""
    return Problem(503, "Service busy", detail, "busy", headers={"Retry-After": str(RETRY_AFTER_S)})


def _where(loc) -> str:
    return ".".join(str(p) for p in loc)


def _field_error(e: dict) -> dict:
    return {
        "loc": _where(e.get("loc", ())),
        "msg": str(e.get("msg", "invalid")),
        "type": str(e.get("type", "value_error")),
    }


def invalid_request(errors: list[dict]) -> Problem:
    """422 for pydantic-style errors (``loc``, ``msg``, ``type``)."""
    fields = [_field_error(e) for e in jsonable_encoder(errors)]
    parts = [f"{f['loc']}: {f['msg']}" for f in fields[:5]]
    detail = "invalid request: " + "; ".join(parts)
    if len(fields) > 5:
        detail += f"; and {len(fields) - 5} more"
    return Problem(422, "Invalid request", detail, "invalid-request", errors=fields)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(invalid_request(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, Problem):
            return problem_response(exc)
        return problem_response(
            from_status(exc.status_code, exc.detail, getattr(exc, "headers", None))
        )

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
        return problem_response(
            Problem(
                422,
                "Value refused by the database",
                f"a value was refused by the database: {_first_line(exc)}",
                "value-refused",
            )
        )

    @app.exception_handler(psycopg.errors.IntegrityError)
    async def conflict(request: Request, exc: psycopg.errors.IntegrityError) -> JSONResponse:
        return problem_response(
            from_status(409, f"conflicts with existing data: {_first_line(exc)}")
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this for any unhandled error (and
        # re-raises it afterwards, so that the server logs the traceback)
        return problem_response(
            Problem(
                500,
                "Internal Server Error",
                "the server failed on this request; the error is in its log",
                "internal-error",
            )
        )


# Documented error responses, for the routers' ``responses=``.
_TEXT = {
    400: "the request cannot be read",
    401: "no API key, or not a valid one",
    403: "the key's role does not allow this",
    404: "not found",
    409: "conflicts with the current state",
    413: "the request body is larger than this endpoint accepts",
    415: "not an accepted content type",
    422: "malformed input: unknown or invalid parameters or body fields (see `errors`)",
    429: "too many requests of this key at once (Retry-After)",
    503: "the database is busy or the query took too long (Retry-After)",
}


def problem_content() -> dict:
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}}


def errors(*codes: int, **texts: str) -> dict[int | str, dict]:
    """The ``responses=`` of a route: the given statuses as problem documents."""
    return {
        c: {
            "model": ProblemOut,
            "description": texts.get(f"e{c}", _TEXT.get(c, _title(c))),
            "content": problem_content(),
        }
        for c in codes
    }


def _own_body(resp: dict) -> bool:
    """A response that documents a body of its own (/health's 503 is its report)."""
    for media in resp.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if ref and not ref.endswith(("/ProblemOut", "/HTTPValidationError")):
            return True
    return False


def add_problem_responses(app: FastAPI) -> None:
    """Declare in the OpenAPI of every route the problems any request can meet (422 for
    unknown parameters, 429, 500, 503) and move every 4xx/5xx response to
    ``application/problem+json``."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ProblemOut" not in schemas:
            schemas["ProblemOut"] = ProblemOut.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        for defs_name, sub in list(schemas["ProblemOut"].pop("$defs", {}).items()):
            schemas.setdefault(defs_name, sub)
        for path, item in schema.get("paths", {}).items():
            for op in item.values():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                responses = op["responses"]
                always = [422, 500, 503] if path == "/health" else [422, 429, 500, 503]
                for code in always:
                    responses.setdefault(
                        str(code),
                        {"description": _TEXT.get(code, _title(code))},
                    )
                for code, resp in responses.items():
                    if code.isdigit() and int(code) >= 400 and not _own_body(resp):
                        resp["content"] = problem_content()
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
