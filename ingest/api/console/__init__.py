"""The web console at ``/`` and the API docs at ``/docs`` and ``/redoc``, all offline.

The console is plain hand-written HTML, CSS and JavaScript in ``static/``; it
talks to the same API with the key the user signs in with (kept in the
browser's sessionStorage). Swagger UI and ReDoc come from the installed
``fastapi-offline`` package, never from a CDN.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from ..errors import from_status, problem_response
from ..paging import reject_unknown_query
from . import api

STATIC_DIR = Path(__file__).parent / "static"
ASSETS = "/console/static"
VENDOR = "/console/vendor"

__all__ = ["STATIC_DIR", "docs_assets_dir", "install"]


def docs_assets_dir() -> Path:
    """Folder of the Swagger UI and ReDoc files shipped in the fastapi-offline wheel."""
    return Path(str(files("fastapi_offline") / "static"))


class _Static(StaticFiles):
    """Static files revalidated on every load (ETag), so an upgrade is seen at once."""

    def file_response(self, *args, **kwargs):
        resp = super().file_response(*args, **kwargs)
        resp.headers.setdefault("Cache-Control", "no-cache")
        return resp


_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _console_files() -> dict[str, tuple[bytes, str, str]]:
    """The console's own files held in memory: relative path -> (body, ETag, type).
    They are small (~100 KB in all) and served on every first paint."""
    out = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file() and path.suffix in _TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            out[path.relative_to(STATIC_DIR).as_posix()] = (body, etag, _TYPES[path.suffix])
    return out


def _serve(files_: dict[str, tuple[bytes, str, str]], rel: str, request: Request) -> Response:
    item = files_.get(rel)
    if item is None:
        return problem_response(from_status(404, f"no console file {rel!r}"))
    body, etag, ctype = item
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ctype, headers=headers)


def install(app: FastAPI) -> None:
    """Add the console page, its assets and JSON helpers, and the offline API docs.

    The app must be created with ``docs_url=None, redoc_url=None``.
    """
    app.include_router(api.router, dependencies=[Depends(reject_unknown_query)])
    app.mount(VENDOR, _Static(directory=docs_assets_dir()), name="console-vendor")
    own = _console_files()

    @app.get(ASSETS + "/{rel:path}", include_in_schema=False)
    async def asset(rel: str, request: Request) -> Response:
        return _serve(own, rel, request)

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        return _serve(own, "index.html", request)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon(request: Request) -> Response:
        return _serve(own, "favicon.svg", request)

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}{VENDOR}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{VENDOR}/swagger-ui.css",
            swagger_favicon_url=f"{root}/favicon.ico",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{VENDOR}/redoc.standalone.js",
            redoc_favicon_url=f"{root}/favicon.ico",
            with_google_fonts=False,
        )
