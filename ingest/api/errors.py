"""Errors as JSON with a clear ``message`` (and FastAPI's ``detail``)."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    message: str
    detail: object | None = None


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
        422: "malformed input",
    }
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}
