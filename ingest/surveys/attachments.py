"""Where survey attachments (photos, PDF sheets) are kept: a small storage interface, the
disk backend, and an object-storage (S3) backend that is not implemented yet."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CONTENT_TYPES: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "application/pdf": (b"%PDF-",),
}
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf"}


class AttachmentStoreError(RuntimeError):
    """The attachment storage is misconfigured or cannot be reached."""


class AttachmentTypeError(ValueError):
    """The file is not one of the accepted types, or its bytes do not match its type."""


@dataclass(frozen=True)
class Stored:
    uri: str
    size_bytes: int
    sha256: str


class AttachmentStore(Protocol):
    def put(self, survey_id: int, content_type: str, src: BinaryIO) -> Stored: ...

    def open(self, uri: str) -> BinaryIO: ...

    def delete(self, uri: str) -> None: ...


def check_type(content_type: str, head: bytes) -> str:
    """The accepted content type of a file, checked against its first bytes."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "image/jpg":
        ctype = "image/jpeg"
    if ctype not in CONTENT_TYPES:
        raise AttachmentTypeError(
            f"content type {ctype or '(none)'!r} is not accepted; "
            f"expected one of {', '.join(CONTENT_TYPES)}"
        )
    if not any(head.startswith(magic) for magic in CONTENT_TYPES[ctype]):
        raise AttachmentTypeError(f"the file's bytes are not those of a {ctype} file")
    return ctype


class DiskStore:
    """Files under a folder, as ``<survey id>/<random name><extension>``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, survey_id: int, content_type: str, src: BinaryIO) -> Stored:
        rel = f"{int(survey_id)}/{uuid.uuid4().hex}{EXTENSIONS.get(content_type, '')}"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 16):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Stored(f"disk:{rel}", size, digest.hexdigest())

    def _path(self, uri: str) -> Path:
        if not uri.startswith("disk:"):
            raise AttachmentStoreError(f"{uri!r} is not kept on disk")
        root = self.root.resolve()
        path = (root / uri[len("disk:") :]).resolve()
        if root not in path.parents:
            raise AttachmentStoreError(f"{uri!r} is outside the attachments folder")
        return path

    def open(self, uri: str) -> BinaryIO:
        try:
            return self._path(uri).open("rb")
        except FileNotFoundError:
            raise AttachmentStoreError(f"attachment file of {uri!r} is missing") from None

    def delete(self, uri: str) -> None:
        self._path(uri).unlink(missing_ok=True)


class S3Store:
    """Object storage (``s3://bucket/prefix``): not implemented yet.

    Selecting it fails at once with a clear error instead of losing uploads.
    An implementation would put each file under the prefix with boto3 and
    keep ``s3://bucket/key`` as the storage URI.
    """

    def __init__(self, url: str | None):
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise AttachmentStoreError(
                "SWC_ATTACHMENTS_BACKEND=s3 needs boto3, which is not installed, and the s3 "
                "backend is not implemented yet: use SWC_ATTACHMENTS_BACKEND=disk"
            ) from None
        raise AttachmentStoreError(
            f"the s3 attachments backend ({url or 'no SWC_ATTACHMENTS_S3_URL'}) is not "
            "implemented yet: use SWC_ATTACHMENTS_BACKEND=disk"
        )

    def put(self, survey_id: int, content_type: str, src: BinaryIO) -> Stored:
        raise AttachmentStoreError("s3 backend not implemented")

    def open(self, uri: str) -> BinaryIO:
        raise AttachmentStoreError("s3 backend not implemented")

    def delete(self, uri: str) -> None:
        raise AttachmentStoreError("s3 backend not implemented")


def make_store(backend: str, directory: Path, s3_url: str | None = None) -> AttachmentStore:
    if backend == "disk":
        return DiskStore(directory)
    if backend == "s3":
        return S3Store(s3_url)
    raise AttachmentStoreError(f"unknown attachments backend {backend!r}; expected disk or s3")


__all__ = [
    "CONTENT_TYPES",
    "AttachmentStore",
    "AttachmentStoreError",
    "AttachmentTypeError",
    "DiskStore",
    "S3Store",
    "Stored",
    "check_type",
    "make_store",
]
