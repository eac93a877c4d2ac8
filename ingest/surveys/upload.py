"""Receiving an uploaded file: the request body spooled to a temporary file with a size
limit, either taken as is (a raw body with its Content-Type) or cut out of a
``multipart/form-data`` body (the part named ``file``) by python-multipart's
streaming parser, fed chunk by chunk in a worker thread: the event loop never
parses, the file is never held in memory, and a part's headers are limited in
size and number (a hostile ``Content-Disposition`` is refused, not parsed).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

MULTIPART_OVERHEAD = 64 << 10  # boundaries and part headers around the file
MAX_PART_HEADER_BYTES = 4096  # one header line of a part, at most
MAX_PART_HEADERS = 8  # header lines of a part, at most
MAX_CONTENT_TYPE_BYTES = 1024  # the request's own Content-Type header


class UploadError(Exception):
    """The upload is refused: ``status`` 413 (too large), 415 or 422, with a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    file: BinaryIO  # positioned at 0; closing it deletes it
    size: int
    filename: str | None
    content_type: str  # media type without parameters, lower case ('' if none)

    def head(self, n: int = 16) -> bytes:
        self.file.seek(0)
        data = self.file.read(n)
        self.file.seek(0)
        return data

    def close(self) -> None:
        self.file.close()


def media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


async def receive(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    max_bytes: int,
    *,
    field: str = "file",
    filename: str | None = None,
) -> Upload:
    """The uploaded file of a request body (``chunks``: ``request.stream()``)."""
    ctype = media_type(content_type)
    multipart = ctype == "multipart/form-data"
    limit = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    too_large = UploadError(413, f"the file is larger than the limit of {max_bytes} bytes")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(422, "Content-Length is not a number") from None
        if declared > limit:
            raise too_large
    cutter = _PartCutter(content_type or "", field, max_bytes) if multipart else None
    spool = None if multipart else tempfile.TemporaryFile()  # noqa: SIM115 (returned)
    keep = False
    try:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_large
            if cutter is not None:
                await run_in_threadpool(cutter.feed, chunk)
            elif spool is not None:
                spool.write(chunk)
        if size == 0:
            raise UploadError(422, "the request has no file: send it as the body or as a "
                                   f"multipart/form-data part named {field!r}")  # fmt: skip
        if cutter is None:
            assert spool is not None
            spool.seek(0)
            keep = True
            return Upload(spool, size, filename, ctype)
        upload = await run_in_threadpool(cutter.finish)
        if upload.filename is None:
            upload.filename = filename
        keep = True
        return upload
    finally:
        if not keep:
            if spool is not None:
                spool.close()
            if cutter is not None:
                cutter.close()


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: bytes = b""
    value: bytearray = field(default_factory=bytearray)


class _PartCutter:
    """Feeds a multipart body to python-multipart and keeps the part named ``field``."""

    def __init__(self, content_type: str, field: str, max_bytes: int):
        if len(content_type) > MAX_CONTENT_TYPE_BYTES:
            raise UploadError(422, f"the Content-Type header is longer than "
                                   f"{MAX_CONTENT_TYPE_BYTES} bytes")  # fmt: skip
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary", b"")
        if not (1 <= len(boundary) <= 200):
            raise UploadError(422, "multipart/form-data without a valid boundary")
        self.field = field.encode()
        self.max_bytes = max_bytes
        self.too_large = UploadError(413, f"the file is larger than the limit of {max_bytes} bytes")
        self.out: BinaryIO | None = None
        self.size = 0
        self.filename: str | None = None
        self.content_type = ""
        self.found = False  # the part was complete
        self.ended = False  # the closing boundary was read
        self._part = _Part()
        self._field_name = bytearray()
        self._field_value = bytearray()
        self._target = False
        self.parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_PART_HEADER_BYTES,
        )

    # --- the parser's callbacks
    def _begin(self) -> None:
        self._part = _Part()
        self._target = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._field_value += data[start:end]

    def _header_end(self) -> None:
        name = self._field_name.decode("latin-1").strip().lower()
        self._part.headers[name] = self._field_value.decode("utf-8", "replace").strip()
        self._field_name.clear()
        self._field_value.clear()

    def _headers_done(self) -> None:
        disposition = self._part.headers.get("content-disposition", "")
        _, params = parse_options_header(disposition.encode("utf-8"))
        if params.get(b"name") == self.field and not self.found and self.out is None:
            self._target = True
            raw_name = params.get(b"filename")
            self.filename = raw_name.decode("utf-8", "replace") if raw_name else None
            self.content_type = media_type(self._part.headers.get("content-type"))
            self.out = tempfile.TemporaryFile()  # noqa: SIM115 (returned)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._target or self.out is None:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise self.too_large
        self.out.write(data[start:end])

    def _part_end(self) -> None:
        if self._target:
            self.found = True
            self._target = False

    def _end(self) -> None:
        self.ended = True

    # --- driving it
    def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise UploadError(422, f"the multipart body is malformed: {exc}") from None

    def finish(self) -> Upload:
        try:
            self.parser.finalize()
        except MultipartParseError as exc:
            raise UploadError(422, f"the multipart body is malformed: {exc}") from None
        if self.out is None or not self.found:
            if self.out is not None or not self.ended:
                raise UploadError(422, "multipart body ends before its closing boundary")
            raise UploadError(422, f"the multipart body has no part named {self.field.decode()!r}")
        self.out.seek(0)
        upload = Upload(self.out, self.size, self.filename, self.content_type)
        self.out = None
        return upload

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
