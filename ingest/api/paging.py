"""One way to page every list, and one rule for query parameters.

A list answers ``{"items": [...], "total": n|null, "limit": n, "next": link|null,
"next_cursor": text|null}``; when there is a next page its link is also in the
``Link: <...>; rel="next"`` header. ``next`` repeats the request's own
parameters with ``cursor`` set, so a client follows it as it is.

A cursor is opaque: base64url of a small JSON array that holds a fingerprint
of the query's filters and the sort key of the last row given. It is checked
when it comes back: a cursor of another query, or one that does not decode to
the values this list sorts by, is refused with 422. It only moves the start of
the page (the filters are applied again), so an edited cursor reaches nothing
that the query itself could not.

Unknown query parameters are refused with 422 on every endpoint
(``reject_unknown_query``), so a misspelled filter is never silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # rows per page of every list but /readings (10,000)
CURSOR_MAX_CHARS = 400


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int | None = Field(
        description="rows that match the filters, on every page (null where counting is costly)"
    )
    limit: int = Field(description="the largest number of items of a page")
    next: str | None = Field(
        description="link to the next page (path and query); null on the last page. Also "
        'sent as the header `Link: <...>; rel="next"`'
    )
    next_cursor: str | None = Field(description="the cursor of the next page (inside `next`)")


LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"items per page (at most {MAX_LIMIT})")
]
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=CURSOR_MAX_CHARS,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="`next_cursor` of the previous page (or follow `next`)",
    ),
]


def fingerprint(request: Request, ignore: Sequence[str] = ()) -> str:
    """A short hash of the request's filters (every query parameter but the paging ones)."""
    skip = {"cursor", "limit", *ignore}
    items = sorted((k, v) for k, v in request.query_params.multi_items() if k not in skip)
    text = request.url.path + "?" + json.dumps(items)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_cursor(fp: str, values: Sequence[Any]) -> str:
    out = [fp]
    for v in values:
        if isinstance(v, datetime):
            out.append(round(v.timestamp() * 1_000_000))  # microseconds since 1970
        else:
            out.append(v)
    raw = json.dumps(out, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_BAD = "cursor is not valid: pass the `next_cursor` of the previous page as it is"
_OTHER = (
    "cursor belongs to another query: repeat the parameters of the first page (or follow `next`)"
)


def cursor_error(msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", "cursor"), "msg": msg}])


def decode_cursor(text: str, fp: str, kinds: Sequence[type]) -> list[Any]:
    """The sort key in a cursor, one value per kind (``int``, ``str`` or ``datetime``)."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise cursor_error(_BAD) from None
    if not isinstance(raw, list) or len(raw) != len(kinds) + 1 or not isinstance(raw[0], str):
        raise cursor_error(_BAD)
    if raw[0] != fp:
        raise cursor_error(_OTHER)
    values: list[Any] = []
    for v, kind in zip(raw[1:], kinds, strict=True):
        if kind is datetime:
            if type(v) is not int or not -(2**62) < v < 2**62:
                raise cursor_error(_BAD)
            try:
                values.append(datetime.fromtimestamp(v / 1_000_000, UTC))
            except (OverflowError, OSError, ValueError):
                raise cursor_error(_BAD) from None
        elif kind is int:
            if type(v) is not int or not -(2**63) <= v < 2**63:
                raise cursor_error(_BAD)
            values.append(v)
        elif kind is str:
            if not isinstance(v, str) or len(v) > 200 or "\x00" in v:
                raise cursor_error(_BAD)
            values.append(v)
        else:  # pragma: no cover - a programming error
            raise TypeError(kind)
    return values


def next_link(request: Request, cursor: str) -> str:
    """The request's path and query with ``cursor`` replaced."""
    return link_with_cursor(request.url.path, request.query_params.multi_items(), cursor)


def link_with_cursor(path: str, query: Sequence[tuple[str, str]], cursor: str) -> str:
    """``path`` with the query ``query`` and ``cursor`` in place of its own cursor."""
    from urllib.parse import urlencode

    params = [(k, v) for k, v in query if k != "cursor"]
    params.append(("cursor", cursor))
    return f"{path}?{urlencode(params)}"


def page(
    request: Request,
    response: Response,
    rows: list[Any],
    limit: int,
    fp: str,
    key_of: Callable[[Any], Sequence[Any]],
    total: int | None = None,
) -> dict:
    """The page of ``rows`` (fetched with ``limit + 1``: one more tells a next page exists)."""
    nxt = cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        cursor = encode_cursor(fp, key_of(rows[-1]))
        nxt = next_link(request, cursor)
        response.headers["Link"] = f'<{nxt}>; rel="next"'
    return {"items": rows, "total": total, "limit": limit, "next": nxt, "next_cursor": cursor}


# --- unknown query parameters ------------------------------------------------------
_allowed_cache: dict[tuple[int, str, str], frozenset[str]] = {}


def _allowed(request: Request) -> frozenset[str]:
    route = request.scope.get("route")
    method = "get" if request.method == "HEAD" else request.method.lower()
    path = getattr(route, "path_format", request.url.path)
    key = (id(request.app), path, method)
    got = _allowed_cache.get(key)
    if got is None:
        op = request.app.openapi().get("paths", {}).get(path, {}).get(method, {})
        got = frozenset(p["name"] for p in op.get("parameters", []) if p.get("in") == "query")
        _allowed_cache[key] = got
    return got


def reject_unknown_query(request: Request) -> None:
    """A router dependency: 422 for a query parameter the endpoint does not take."""
    if not request.query_params:
        return
    allowed = _allowed(request)
    unknown = [k for k in dict.fromkeys(request.query_params.keys()) if k not in allowed]
    if unknown:
        takes = ", ".join(sorted(allowed)) if allowed else "none"
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", k),
                    "msg": f"unknown query parameter (this endpoint takes: {takes})",
                }
                for k in unknown
            ]
        )
