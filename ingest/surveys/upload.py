"""Receiving an uploaded file: the request body spooled to a temporary file with a size
limit, then either taken as is (a raw body with its Content-Type) or cut out of a
``multipart/form-data`` body (the part named ``file``), without holding it in memory.
"""

from __future__ import annotations

import email.message
import mmap
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

MULTIPART_OVERHEAD = 64 << 10  # boundaries and part headers around the file


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


def _header_params(name: str, value: str) -> email.message.Message:
    msg = email.message.Message()
    msg[name] = value
    return msg


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
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (returned to the caller)
    keep = False
    try:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_large
            spool.write(chunk)
        if size == 0:
            raise UploadError(422, "the request has no file: send it as the body or as a "
                                   f"multipart/form-data part named {field!r}")  # fmt: skip
        spool.seek(0)
        if not multipart:
            keep = True
            return Upload(spool, size, filename, ctype)
        upload = _cut_part(spool, size, content_type or "", field)
        if upload.size > max_bytes:
            upload.close()
            raise too_large
        if upload.filename is None:
            upload.filename = filename
        return upload
    finally:
        if not keep:
            spool.close()


def _cut_part(spool: BinaryIO, size: int, content_type: str, field: str) -> Upload:
    boundary = _header_params("content-type", content_type).get_param("boundary")
    if not isinstance(boundary, str) or not (1 <= len(boundary) <= 200):
        raise UploadError(422, "multipart/form-data without a valid boundary")
    delim = b"--" + boundary.encode("latin-1", "replace")
    with mmap.mmap(spool.fileno(), size, access=mmap.ACCESS_READ) as mm:
        pos = mm.find(delim)
        while pos >= 0:
            start = pos + len(delim)
            if mm[start : start + 2] == b"--":
                break  # the closing delimiter
            header_end = mm.find(b"\r\n\r\n", start)
            if header_end < 0:
                break
            nxt = mm.find(b"\r\n" + delim, header_end + 4)
            if nxt < 0:
                raise UploadError(422, "multipart body ends before its closing boundary")
            headers = _part_headers(bytes(mm[start:header_end]))
            disp = _header_params("content-disposition", headers.get("content-disposition", ""))
            if disp.get_param("name", header="content-disposition") == field:
                out = tempfile.TemporaryFile()  # noqa: SIM115 (returned)
                body_start = header_end + 4
                for k in range(body_start, nxt, 1 << 20):
                    out.write(mm[k : min(k + (1 << 20), nxt)])
                out.seek(0)
                return Upload(
                    out,
                    nxt - body_start,
                    disp.get_filename(),
                    media_type(headers.get("content-type")),
                )
            pos = nxt + 2
    raise UploadError(422, f"the multipart body has no part named {field!r}")


def _part_headers(raw: bytes) -> dict[str, str]:
    out = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        if ":" in line:
            name, value = line.split(":", 1)
            out[name.strip().lower()] = value.strip()
    return out
