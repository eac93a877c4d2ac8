"""The API's connection pool: every connection is checked when it is handed out."""

from __future__ import annotations

from time import monotonic

import psycopg
from psycopg_pool import ConnectionPool


class CheckedPool(ConnectionPool):
    """A pool whose connections are checked (one round trip) before use.

    After a database restart every idle connection is dead; each is dropped
    (the pool opens a new one) and the next is tried, so no request gets a
    dead connection. psycopg_pool's own ``check=`` option is not used: with
    every connection dead, its first waiter timed out in our tests.
    """

    def getconn(self, timeout: float | None = None) -> psycopg.Connection:
        wait = self.timeout if timeout is None else timeout
        deadline = monotonic() + wait
        for _ in range(self.max_size):
            conn = super().getconn(timeout=max(deadline - monotonic(), 0.001))
            try:
                ConnectionPool.check_connection(conn)
                return conn
            except psycopg.Error:
                self.putconn(conn)  # broken: discarded and replaced
        return super().getconn(timeout=max(deadline - monotonic(), 0.001))
