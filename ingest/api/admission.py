"""A small budget for expensive requests, shared by every key of an API process.

The per-key shares of guard.py keep one key from taking the whole API, but
two keys' worth of expensive requests (10,000-row pages, derived products over
a whole record, sheet imports) still take both cores of a small machine, in
the API process and in PostgreSQL, and ordinary requests queue behind them for
CPU. So at most ``api_heavy_concurrency`` expensive requests run at once per
API process; the next ones wait their turn in order of arrival (holding no
thread or connection), and beyond ``api_heavy_queue`` waiting get 429 with
Retry-After. A place rests after use in proportion to the time it was held,
so that expensive requests back to back take at most ``api_heavy_share`` of
the time (one thread rendering pages back to back would otherwise make every
ordinary request wait for the interpreter, GIL, at each step). Ordinary
requests never wait here.

What is expensive is known from the request line alone (no database needed):

* ``GET /readings`` asking more than ``api_heavy_rows`` rows (``limit``);
* the derived products of ``/research/sites/{id}/...`` computed from the
  readings (storms, dam events, retention, plot and cistern events);
* ``POST /surveys/import`` (sheets are read in worker processes, written in
  one transaction);
* exports (``/exports/...``), until their first bytes are sent: the
  database's work to start one (selecting and ordering the whole record) is
  done by then; the rest streams at the pace of its client, within
  ``SWC_EXPORT_MAX_CONCURRENT``. A NetCDF file is written whole before its
  first bytes. (An export's place does not rest: its start costs the
  database, not the API process's interpreter.)
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs

from starlette.types import Scope

from ..settings import Settings
from .errors import Problem

RETRY_AFTER_S = 2
MAX_REST_S = 5.0

_RESEARCH = re.compile(
    r"^/research/sites/[^/]+/(?:storms|dam-events|retention|plot-events|cistern-events)/?$"
)


DEFAULT_ROWS = 1000  # GET /readings without a limit (routes/readings.py)


def _rows_asked(query_string: bytes) -> int:
    """The largest ``limit`` of the query; none: the route's default; 0 when none is a
    number (the route refuses it)."""
    try:
        values = parse_qs(query_string.decode("latin-1"), max_num_fields=2000).get("limit", [])
    except ValueError:
        return 0
    if not values:
        return DEFAULT_ROWS
    return max((int(v) for v in values if v.strip().isdigit() and len(v) < 12), default=0)


WHOLE = "whole"  # the place is held until the response ends
START = "start"  # ... until the first bytes of the body are sent (exports)


def expense(scope: Scope, settings: Settings) -> str | None:
    """None for an ordinary request; else how long it holds its place (WHOLE, START)."""
    path = scope["path"]
    method = scope.get("method", "GET")
    if path in ("/readings", "/readings/"):
        big = _rows_asked(scope.get("query_string", b"")) > settings.api_heavy_rows
        return WHOLE if method == "GET" and big else None
    if path in ("/surveys/import", "/surveys/import/"):
        return WHOLE if method == "POST" else None
    if method != "GET":
        return None
    if path.startswith("/exports/"):
        return START
    return WHOLE if _RESEARCH.match(path) else None


class HeavyBudget:
    """At most ``api_heavy_concurrency`` expensive requests at once; the next ones wait in
    order of arrival, and beyond ``api_heavy_queue`` waiting get 429."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.running = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self) -> None:
        s = self.settings
        if self.running < s.api_heavy_concurrency and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= s.api_heavy_queue:
            raise Problem(
                429,
                "Too many expensive requests at once",
                f"{self.running} expensive requests (large pages of readings, derived "
                f"products, sheet imports) are running and {len(self._waiters)} waiting; "
                f"try again in a few seconds, or ask smaller pages (limit <= {s.api_heavy_rows})",
                "too-many-requests",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # its place is handed over by leave()
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif not waiter.cancelled():
                self._free()  # handed over just as it was cancelled: pass it on
            raise

    def leave(self, held_s: float = 0.0) -> None:
        """Give the place back after it was held for ``held_s``; it rests first, so that
        expensive requests back to back take at most ``api_heavy_share`` of the time."""
        share = self.settings.api_heavy_share
        rest = held_s * (1 - share) / share
        if rest >= 0.001:
            asyncio.get_running_loop().call_later(min(rest, MAX_REST_S), self._free)
        else:
            self._free()

    def _free(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)  # the place goes to the next in line
                return
        self.running -= 1
