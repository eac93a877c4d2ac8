"""The API's first line: fair shares per key, and a request body refused before it is read.

A pure ASGI middleware, in front of FastAPI (which reads and parses a JSON
body before any dependency runs):

* a request with a body and no API key gets 401 without one byte of the body
  read; with a key, the key is checked first (the route then reuses it);
* each route has a body limit: a larger ``Content-Length`` gets 413 at once,
  and a chunked body is cut off with 413 as soon as it passes the limit;
* one key (or one client address without a key) has at most
  ``api_key_concurrency`` requests handled at once; the others wait their turn
  (holding no thread or connection), and beyond ``api_key_queue`` waiting get
  429: one credential cannot take the whole process from the others.
  Event streams are long-lived and do not count;
* expensive requests (large pages, derived products, sheet imports, the
  start of exports) of all keys together also have a small budget
  (admission.py): they cannot take every core from the ordinary requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic

from psycopg_pool import PoolTimeout, TooManyRequests
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings
from ..store.keys import ApiKey, authenticate
from ..surveys.upload import MULTIPART_OVERHEAD
from .admission import START, WHOLE, HeavyBudget, expense
from .deps import BAD_KEY, KEY_STATE, NO_KEY
from .errors import PROBLEM_MEDIA_TYPE, Problem, busy, problem_bytes

log = logging.getLogger(__name__)

# Paths that take a body without a key (none yet; a login form would be one).
PUBLIC_BODY_PATHS: frozenset[str] = frozenset()


class BodyTooLarge(Problem):
    def __init__(self, limit: int):
        super().__init__(
            413,
            "Request body too large",
            f"this endpoint accepts a body of at most {limit} bytes",
            "body-too-large",
        )


def body_limits(settings: Settings) -> list[tuple[re.Pattern[str], int]]:
    """(path pattern, largest body [bytes]) for the routes that take files; others:
    ``api_max_body_bytes``."""
    return [
        (re.compile(r"^/surveys/import/?$"), settings.survey_import_max_bytes + MULTIPART_OVERHEAD),
        (
            re.compile(r"^/surveys/[^/]+/attachments/?$"),
            settings.attachment_max_bytes + MULTIPART_OVERHEAD,
        ),
    ]


def _key_of(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return key or None


# Long-lived responses that would hold a key's place for long (exports have their
# own limit, SWC_EXPORT_MAX_CONCURRENT).
UNSHARED_PATHS: frozenset[str] = frozenset({"/alerts/stream"})
UNSHARED_PREFIXES: tuple[str, ...] = ("/exports/",)


@dataclass
class _Share:
    sem: asyncio.Semaphore
    users: int = 0  # running or waiting
    waiting: int = 0


def _bucket(scope: Scope, headers: dict[bytes, bytes]) -> str:
    """A key's bucket (by a hash of what was sent: no database needed), else the
    client's address."""
    key = _key_of(headers)
    if key:
        return "key:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:24]
    client = scope.get("client")
    return f"addr:{client[0] if client else '?'}"


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings, pool_of: Callable[[], object]):
        self.app = app
        self._shares: dict[str, _Share] = {}
        self.settings = settings
        self.pool_of = pool_of  # the pool is opened in the lifespan, after this is built
        self.limits = body_limits(settings)
        self.heavy = HeavyBudget(settings)  # expensive requests of every key (admission.py)

    async def take_share(self, bucket: str) -> _Share:
        """Wait for one of the bucket's places (429 when too many already wait)."""
        s = self.settings
        share = self._shares.get(bucket)
        if share is None:
            share = self._shares[bucket] = _Share(asyncio.Semaphore(s.api_key_concurrency))
        if share.sem.locked() and share.waiting >= s.api_key_queue:
            raise Problem(
                429,
                "Too many requests at once",
                f"{s.api_key_concurrency} requests of this key are running and "
                f"{share.waiting} waiting; wait for some to finish",
                "too-many-requests",
                {"Retry-After": "1"},
            )
        share.users += 1
        share.waiting += 1
        try:
            await share.sem.acquire()
        except BaseException:
            self._leave(bucket, share, acquired=False)
            raise
        finally:
            share.waiting -= 1
        return share

    def _leave(self, bucket: str, share: _Share, acquired: bool = True) -> None:
        if acquired:
            share.sem.release()
        share.users -= 1
        if share.users == 0 and self._shares.get(bucket) is share:
            del self._shares[bucket]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.limits:
            if pattern.match(path):
                return limit
        return self.settings.api_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        path = scope["path"]
        if path in UNSHARED_PATHS or path.startswith(UNSHARED_PREFIXES):
            await self._admitted(scope, receive, send, headers, path)
            return
        bucket = _bucket(scope, headers)
        try:
            share = await self.take_share(bucket)
        except Problem as p:
            await self._refuse(p, send)
            return
        try:
            await self._admitted(scope, receive, send, headers, path)
        finally:
            self._leave(bucket, share)

    async def _admitted(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], path: str
    ) -> None:
        """An expensive request waits for a place in the budget of admission.py."""
        kind = expense(scope, self.settings)
        if kind is None:
            await self._guarded(scope, receive, send, headers, path)
            return
        try:
            await self.heavy.enter()
        except Problem as p:
            await self._refuse(p, send)
            return
        held, since = True, monotonic()

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.heavy.leave(monotonic() - since if kind == WHOLE else 0.0)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.body" and (
                message.get("body") or not message.get("more_body")
            ):
                release()  # the first bytes: an export's costly start is over
            await send(message)

        try:
            await self._guarded(scope, receive, sending if kind == START else send, headers, path)
        finally:
            release()

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], path: str
    ) -> None:
        limit = self.limit_for(path)
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None
        has_body = chunked or bool(declared)
        try:
            if has_body and path not in PUBLIC_BODY_PATHS:
                scope.setdefault("state", {})[KEY_STATE] = await self._authenticate(headers)
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
        except Problem as p:
            await self._refuse(p, send)
            return
        if not has_body:
            await self.app(scope, receive, send)
            return

        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)

    async def _authenticate(self, headers: dict[bytes, bytes]) -> ApiKey:
        given = _key_of(headers)
        if not given:
            raise Problem(401, "API key required", NO_KEY, "unauthorized", _CHALLENGE)
        pool = self.pool_of()

        def check() -> ApiKey | None:
            with pool.connection(timeout=self.settings.api_pool_wait_s) as conn:
                return authenticate(conn, given)

        try:
            key = await run_in_threadpool(check)
        except (PoolTimeout, TooManyRequests):
            raise busy("every database connection is in use; try again in a few seconds") from None
        if key is None:
            raise Problem(401, "API key not valid", BAD_KEY, "unauthorized", _CHALLENGE)
        return key

    @staticmethod
    async def _refuse(p: Problem, send: Send) -> None:
        body = problem_bytes(p)
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the unread body makes the connection unusable
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in p.headers.items()]
        await send({"type": "http.response.start", "status": p.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
