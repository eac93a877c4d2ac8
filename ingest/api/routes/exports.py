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
from pathlib import Path
from typing import Annotated, BinaryIO

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from ...export import Selection, export_csv, export_netcdf, export_parquet
from ..deps import StreamKey
from ..errors import ErrorOut, errors
from .readings import SelectionParams

log = logging.getLogger(__name__)

router = APIRouter(prefix="/exports", tags=["exports"])

CHUNK = 256 << 10  # bytes per chunk sent
# chunks written ahead of the client at most: an export abandoned after its first
# bytes (issue 11) costs the API process the rows of these chunks (COPY rows are read
# one by one in Python), so few; two keep the socket fed between writes
QUEUE_CHUNKS = 2
STALL_S = 300.0  # an export whose client reads nothing for this long is abandoned
_DONE = object()
_NETCDF_LOCK = threading.Lock()  # HDF5 is not thread-safe: one NetCDF file at a time
_SLOTS_LOCK = threading.Lock()


END_MARKER = "# swc-export complete rows="


class ExportParams(SelectionParams):
    """The same selection as ``GET /readings``; no range means the whole record."""


class CsvExportParams(ExportParams):
    end_marker: bool = Field(
        default=False,
        description=f"end the file with the line `{END_MARKER}<rows>` once every row is "
        "written; a file without it was cut",
    )


def _end_line(rows: int) -> bytes:
    return f"{END_MARKER}{rows}\n".encode()


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
    trailer: Callable[[int], bytes] | None = None,
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
                result = write(conn, selection, pipe)
            if trailer is not None:
                pipe.write(trailer(getattr(result, "rows", 0)))
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
                try:
                    item = q.get(timeout=0.5)
                except queue.Empty:
                    if cancelled.is_set():
                        return
                    continue
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise ExportCut(f"export {filename} failed: {item}") from item
                yield item
        finally:
            cancelled.set()  # stops the thread at its next write

    return _ExportResponse(
        body(),
        cancelled,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


class ExportCut(RuntimeError):
    """An export failed after its first bytes: the connection is dropped without the
    end of the chunked body, so that the client sees an incomplete transfer."""


class _ExportResponse(StreamingResponse):
    """Frees the export's thread (and its slot) as soon as the response ends, whether
    it was sent, failed, or its client went away: the thread stops at its next write."""

    def __init__(self, content, cancelled: threading.Event, **kw):
        super().__init__(content, **kw)
        self._cancelled = cancelled

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cancelled.set()


TMP_PREFIX = "swc-export-"  # + "<pid>-"; the file is gone once its export is streamed


def sweep_stale_files(folder: Path) -> int:
    """Remove the temporary files of exports whose process is gone (killed during
    an export); returns how many. Run when the API starts."""
    removed = 0
    try:
        entries = list(folder.glob(f"{TMP_PREFIX}*"))
    except OSError:
        return 0
    for path in entries:
        pid_text = path.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    if removed:
        log.warning("removed %d temporary file(s) of interrupted exports in %s", removed, folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    request: Request, key: StreamKey, q: Annotated[CsvExportParams, Query()]
) -> StreamingResponse:
    """A complete file is always sent as a complete HTTP body; an export that fails
    after its first bytes drops the connection instead (curl: exit 18, httpx:
    RemoteProtocolError), so a cut file never looks complete. With
    `end_marker=true` the file also ends with a comment line
    `# swc-export complete rows=<N>` (pandas: `comment="#"`)."""
    return _stream(
        request,
        export_csv,
        _selection(q),
        "text/csv",
        _filename(q, "csv"),
        trailer=_end_line if q.end_marker else None,
    )


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
        folder = request.app.state.settings.export_tmp_path
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, path = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=".nc", dir=folder)
        os.close(fd)
        try:
            with _NETCDF_LOCK, psycopg.connect(request.app.state.settings.database_url) as conn:
                conn.read_only = True
                result = export_netcdf(
                    conn,
                    _selection(q),
                    path,
                    attributes=request.app.state.settings.export_attributes,
                )
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
            # channels CF cannot name come only when asked for (docs/research.md)
            **({"X-SWC-Channels-Left-Out": ",".join(result.left_out)} if result.left_out else {}),
        },
    )
