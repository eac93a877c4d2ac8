"""Exports of readings over HTTP: CSV and Parquet streamed as they are written, NetCDF
written to a temporary file and then streamed. Memory stays bounded whatever the size."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, BinaryIO

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from ...export import Selection, export_csv, export_netcdf, export_parquet
from ..deps import StreamKey
from ..errors import ErrorOut, errors
from .readings import SelectionParams

log = logging.getLogger(__name__)

router = APIRouter(prefix="/exports", tags=["exports"])

CHUNK = 256 << 10  # bytes per chunk sent
QUEUE_CHUNKS = 8  # chunks written ahead of the client at most
STALL_S = 300.0  # an export whose client reads nothing for this long is abandoned
_DONE = object()
_NETCDF_LOCK = threading.Lock()  # HDF5 is not thread-safe: one NetCDF file at a time
_SLOTS_LOCK = threading.Lock()


class ExportParams(SelectionParams):
    """The same selection as ``GET /readings``; no range means the whole record."""


def _selection(q: ExportParams) -> Selection:
    return Selection(
        start=q.start,
        end=q.end,
        site_ids=tuple(q.site_id),
        device_ids=tuple(q.device_id),
        channels=tuple(q.channel),
        stream_ids=tuple(q.stream_id),
        qualities=q.qualities(),
    )


def _filename(q: ExportParams, ext: str) -> str:
    def stamp(t: datetime | None) -> str:
        return t.astimezone(UTC).strftime("%Y%m%dT%H%MZ") if t else ""

    span = f"_{stamp(q.start)}-{stamp(q.end)}" if (q.start or q.end) else ""
    sites = "_" + "-".join(q.site_id[:3]) if q.site_id else ""
    return f"readings{sites}{span}.{ext}"


def _slot(request: Request) -> threading.BoundedSemaphore:
    state = request.app.state
    with _SLOTS_LOCK:
        slots = getattr(state, "export_slots", None)
        if slots is None:
            slots = state.export_slots = threading.BoundedSemaphore(
                state.settings.export_max_concurrent
            )
    if not slots.acquire(blocking=False):
        raise HTTPException(
            429,
            f"{state.settings.export_max_concurrent} exports are running; try again shortly",
            headers={"Retry-After": "30"},
        )
    return slots


class _Pipe(io.RawIOBase):
    """A writable file whose bytes go, in chunks, into a bounded queue."""

    def __init__(self, q: queue.Queue, cancelled: threading.Event):
        self._q = q
        self._cancelled = cancelled
        self._buf = bytearray()
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self._cancelled.is_set():
            raise BrokenPipeError("the client went away")
        n = len(memoryview(b))
        self._buf += b
        self._pos += n
        if len(self._buf) >= CHUNK:
            self._send(bytes(self._buf))
            self._buf.clear()
        return n

    def tell(self) -> int:
        return self._pos

    def _send(self, item) -> None:
        waited = 0.0
        while True:
            if self._cancelled.is_set():
                raise BrokenPipeError("the client went away")
            if waited >= STALL_S:
                raise BrokenPipeError(f"the client read nothing for {STALL_S:.0f} s")
            try:
                self._q.put(item, timeout=0.5)
                return
            except queue.Full:
                waited += 0.5

    def finish(self) -> None:
        if self._buf:
            self._send(bytes(self._buf))
            self._buf.clear()

    def close(self) -> None:  # pyarrow may close its sink: the stream goes on
        pass


def _stream(
    request: Request,
    write: Callable[[psycopg.Connection, Selection, BinaryIO], object],
    selection: Selection,
    media_type: str,
    filename: str,
) -> StreamingResponse:
    """Run ``write`` in a thread on its own connection (not the pool's: an export can
    take minutes) and send what it writes as it comes. The export's slot is freed
    when the thread ends: done, failed, or abandoned by its client."""
    slots = _slot(request)
    dsn = request.app.state.settings.database_url
    q: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
    cancelled = threading.Event()
    pipe = _Pipe(q, cancelled)

    def produce() -> None:
        try:
            with psycopg.connect(dsn) as conn:
                conn.read_only = True
                write(conn, selection, pipe)
            pipe.finish()
            pipe._send(_DONE)
        except BrokenPipeError:
            log.info("export abandoned by the client file=%s", filename)
        except Exception as exc:
            log.exception("export failed file=%s", filename)
            with contextlib.suppress(BrokenPipeError):
                pipe._send(exc)
        finally:
            slots.release()

    worker = threading.Thread(target=produce, name=f"export {filename}", daemon=True)
    worker.start()

    def body() -> Iterator[bytes]:
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise RuntimeError(f"export {filename} failed: {item}") from item
                yield item
        finally:
            cancelled.set()  # stops the thread at its next write

    return StreamingResponse(
        body(),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _responses(media_type: str) -> dict[int | str, dict]:
    return {
        200: {"content": {media_type: {}}, "description": "the file, streamed"},
        **errors(401, 422),
        429: {"model": ErrorOut, "description": "too many exports running"},
    }


_DOC = (
    "Same selection as `GET /readings` (streams, sites, devices, channels, "
    "start, end, quality, max_quality); without start and end, the whole record. "
    "Rows by stream, then time. Columns and NetCDF layout: docs/research.md."
)


@router.get(
    "/readings.csv",
    summary="Readings as CSV, streamed",
    description=_DOC,
    response_class=StreamingResponse,
    responses=_responses("text/csv"),
)
def export_readings_csv(
    request: Request, key: StreamKey, q: Annotated[ExportParams, Query()]
) -> StreamingResponse:
    return _stream(request, export_csv, _selection(q), "text/csv", _filename(q, "csv"))


@router.get(
    "/readings.parquet",
    summary="Readings as Parquet (zstd), streamed one row group at a time",
    description=_DOC,
    response_class=StreamingResponse,
    responses=_responses("application/vnd.apache.parquet"),
)
def export_readings_parquet(
    request: Request, key: StreamKey, q: Annotated[ExportParams, Query()]
) -> StreamingResponse:
    return _stream(
        request,
        export_parquet,
        _selection(q),
        "application/vnd.apache.parquet",
        _filename(q, "parquet"),
    )


@router.get(
    "/readings.nc",
    summary="Readings as CF-1.8 NetCDF-4 (timeSeries), written then streamed",
    description=_DOC,
    response_class=StreamingResponse,
    responses=_responses("application/x-netcdf"),
)
def export_readings_netcdf(
    request: Request, key: StreamKey, q: Annotated[ExportParams, Query()]
) -> StreamingResponse:
    slots = _slot(request)
    try:
        fd, path = tempfile.mkstemp(prefix="swc-export-", suffix=".nc")
        os.close(fd)
        try:
            with _NETCDF_LOCK, psycopg.connect(request.app.state.settings.database_url) as conn:
                conn.read_only = True
                export_netcdf(conn, _selection(q), path)
            fh = open(path, "rb")  # noqa: SIM115 (closed by the stream)
        finally:
            os.unlink(path)  # the open handle keeps the data until it is closed
    finally:
        slots.release()
    size = os.fstat(fh.fileno()).st_size

    def body() -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    return StreamingResponse(
        body(),
        media_type="application/x-netcdf",
        headers={
            "Content-Disposition": f'attachment; filename="{_filename(q, "nc")}"',
            "Content-Length": str(size),
        },
    )
