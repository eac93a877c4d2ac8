"""Field surveys: record (surveyor, engineer, admin), list, read; attachments up and down;
bulk import of survey sheets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ...store import surveys as store
from ...store.keys import ApiKey
from ...surveys import service
from ...surveys.attachments import (
    CONTENT_TYPES,
    AttachmentStore,
    AttachmentStoreError,
    AttachmentTypeError,
    make_store,
)
from ...surveys.models import (
    KINDS,
    AttachmentOut,
    ImportResult,
    SurveyDetail,
    SurveyIn,
    SurveyOut,
)
from ...surveys.sheets import SheetError, write_sheet
from ...surveys.upload import UploadError, receive
from ..deps import ConnDep, CurrentKey, StreamKey, pooled, statement_timeout
from ..errors import ErrorOut, errors
from ..paging import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, fingerprint, page

log = logging.getLogger(__name__)

router = APIRouter(prefix="/surveys", tags=["surveys"])

SurveyId = Annotated[int, Path(ge=1, le=2**63 - 1, description="survey id")]
AttachmentId = Annotated[int, Path(ge=1, le=2**63 - 1, description="attachment id")]
SiteId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
KindName = Literal[
    "inspection",
    "sediment_survey",
    "stage_storage_survey",
    "calibration_visit",
    "cistern_check",
    "plot_sample",
]
assert set(KindName.__args__) == set(KINDS)  # type: ignore[attr-defined]


def _writer(key: ApiKey) -> ApiKey:
    if not key.may("write_surveys"):
        raise HTTPException(
            403,
            "writing surveys needs the surveyor, engineer or admin role; "
            f"the key {key.prefix}… has role {key.role}",
        )
    return key


def _surveyor(key: CurrentKey) -> ApiKey:
    return _writer(key)


def _stream_surveyor(key: StreamKey) -> ApiKey:
    return _writer(key)


SurveyorKey = Annotated[ApiKey, Depends(_surveyor)]
StreamSurveyorKey = Annotated[ApiKey, Depends(_stream_surveyor)]


def _http(exc: service.SurveyError) -> HTTPException:
    return HTTPException(exc.status, exc.message)


def _files(request: Request) -> AttachmentStore:
    s = request.app.state.settings
    try:
        return make_store(s.attachments_backend, s.attachments_path, s.attachments_s3_url)
    except AttachmentStoreError as exc:
        raise HTTPException(503, f"attachment storage: {exc}") from None


def _more(*codes: int) -> dict[int | str, dict]:
    text = {
        413: "the file is larger than the limit",
        415: "not an accepted file type",
        503: "the attachment storage is not available",
    }
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}


class SurveyFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: list[SiteId] = Field(default_factory=list, max_length=1000)
    kind: list[KindName] = Field(default_factory=list, max_length=6)
    since: AwareDatetime | None = Field(default=None, description="surveyed at or after")
    until: AwareDatetime | None = Field(default=None, description="surveyed before")
    limit: int = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}"
    )
    cursor: str | None = Field(
        default=None, max_length=400, pattern=r"^[A-Za-z0-9_\-]+$", description="`next_cursor`"
    )


@router.post(
    "",
    response_model=SurveyDetail,
    status_code=201,
    summary="Record a survey (surveyor, engineer, admin)",
    responses=errors(401, 403, 409, 422),
)
def create_survey(body: SurveyIn, conn: ConnDep, key: SurveyorKey) -> SurveyDetail:
    """`data` is checked against the model of the survey's `kind`. A
    `stage_storage_survey` adds a stage-storage curve version valid from
    `surveyed_at` (used by every later computation of the dam); a
    `calibration_visit` fits a turbidity calibration valid from `surveyed_at`.
    The survey is attributed to the key (`created_by_key`)."""
    try:
        survey_id = service.create_survey(conn, body, key.id)
        conn.commit()
        return service.get_detail(conn, survey_id)
    except service.SurveyError as exc:
        raise _http(exc) from None


@router.get(
    "",
    response_model=Page[SurveyOut],
    summary="List surveys, newest first, by site, kind and time",
    responses=errors(401, 422),
)
def list_surveys(
    request: Request,
    response: Response,
    conn: ConnDep,
    key: CurrentKey,
    q: Annotated[SurveyFilter, Query()],
) -> dict:
    fp = fingerprint(request)
    filters = dict(
        site_ids=list(q.site_id) or None, kinds=list(q.kind) or None, since=q.since, until=q.until
    )
    after = None
    if q.cursor:
        at, last_id = decode_cursor(q.cursor, fp, [datetime, int])
        after = (at, last_id)
    items = service.list_surveys(conn, limit=q.limit + 1, after=after, **filters)
    total = store.count_surveys(conn, **filters)
    return page(request, response, items, q.limit, fp, lambda s: [s.surveyed_at, s.id], total)


_SHEET_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    },
}


def _sheet_format(fmt: str | None, ctype: str, filename: str | None, head: bytes) -> str:
    if fmt:
        return fmt
    if ctype in ("text/csv", "application/csv"):
        return "csv"
    if ctype == "application/json":
        return "json"
    name = (filename or "").lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".json"):
        return "json"
    return "json" if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[" else "csv"


@router.post(
    "/import",
    response_model=ImportResult,
    summary="Import a survey sheet (CSV or JSON): good rows in, bad rows reported",
    responses={**errors(401, 403, 422), **_more(413)},
    openapi_extra={"requestBody": _SHEET_BODY},
)
async def import_surveys(
    request: Request,
    key: StreamSurveyorKey,
    dry_run: Annotated[bool, Query(description="check everything, record nothing")] = False,
    format: Annotated[
        Literal["csv", "json"] | None,
        Query(description="default: from the content type, the file name or the content"),
    ] = None,
) -> ImportResult:
    """Send the sheet as the body (`text/csv`, `application/json`) or as the
    multipart part `file`. One survey per row for inspections, cistern checks
    and plot samples; one row per point for sediment surveys, stage-storage
    re-surveys and calibration visits, grouped by `survey_ref`. The good
    surveys are recorded, each bad row is listed with its line and reason,
    and the answer is 200 either way. See docs/research.md, "Field surveys"."""
    unknown = set(request.query_params) - {"dry_run", "format"}
    if unknown:
        raise HTTPException(422, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    settings = request.app.state.settings
    try:
        upload = await receive(
            request.stream(),
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            settings.survey_import_max_bytes,
        )
    except UploadError as exc:
        raise HTTPException(exc.status, exc.message) from None
    try:
        data = await run_in_threadpool(upload.file.read)
    finally:
        upload.close()
    fmt = _sheet_format(format, upload.content_type, upload.filename, data[:64])
    try:  # read and grouped in a worker process, holding no database connection
        sheet = await request.app.state.sheet_readers.read(data, fmt)
    except SheetError as exc:
        raise HTTPException(422, f"the sheet cannot be read: {exc}") from None
    del data

    def write() -> ImportResult:
        with pooled(request) as conn:
            statement_timeout(conn, settings, key.role)
            return write_sheet(conn, sheet, key.id, dry_run=dry_run)

    async with _import_slots(request):  # a few imports write at once; the rest wait
        return await run_in_threadpool(write)


def _import_slots(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    slots = getattr(state, "import_slots", None)
    if slots is None:
        slots = state.import_slots = asyncio.Semaphore(state.settings.survey_import_max_concurrent)
    return slots


@router.get(
    "/{survey_id}",
    response_model=SurveyDetail,
    summary="One survey with its attachments, its curve or calibration, and for a sediment "
    "survey its deposit volume beside the sensors' estimate",
    responses=errors(401, 404, 422),
)
def get_survey(survey_id: SurveyId, conn: ConnDep, key: CurrentKey) -> SurveyDetail:
    try:
        return service.get_detail(conn, survey_id)
    except service.SurveyError as exc:
        raise _http(exc) from None


_ATTACHMENT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        **{ct: {"schema": {"type": "string", "format": "binary"}} for ct in CONTENT_TYPES},
    },
}


@router.post(
    "/{survey_id}/attachments",
    response_model=AttachmentOut,
    status_code=201,
    summary="Attach a photo or a PDF to a survey (surveyor, engineer, admin)",
    responses={**errors(401, 403, 404, 422), **_more(413, 415, 503)},
    openapi_extra={"requestBody": _ATTACHMENT_BODY},
)
async def add_attachment(
    survey_id: SurveyId,
    request: Request,
    key: StreamSurveyorKey,
    filename: Annotated[
        str | None,
        Query(max_length=200, pattern=r"^[^\x00/\\]+$", description="name of a raw-body upload"),
    ] = None,
) -> AttachmentOut:
    """A multipart part `file` (with its file name and content type), or the
    file as the body with `Content-Type: image/jpeg`, `image/png` or
    `application/pdf`. The type is checked against the file's first bytes.
    At most `SWC_ATTACHMENT_MAX_BYTES`."""
    unknown = set(request.query_params) - {"filename"}
    if unknown:
        raise HTTPException(422, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    files = _files(request)

    def exists() -> bool:
        with pooled(request) as conn:
            return service.survey_exists(conn, survey_id)

    if not await run_in_threadpool(exists):
        raise HTTPException(404, f"survey {survey_id} does not exist")
    try:
        upload = await receive(
            request.stream(),
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.app.state.settings.attachment_max_bytes,
            filename=filename,
        )
    except UploadError as exc:
        raise HTTPException(exc.status, exc.message) from None

    def store_it() -> AttachmentOut:
        with pooled(request) as conn:
            return service.add_attachment(conn, files, survey_id, upload, key.id)

    try:
        return await run_in_threadpool(store_it)
    except AttachmentTypeError as exc:
        raise HTTPException(415, str(exc)) from None
    except AttachmentStoreError as exc:
        raise HTTPException(503, f"attachment storage: {exc}") from None
    except service.SurveyError as exc:
        raise _http(exc) from None
    finally:
        upload.close()


@router.get(
    "/{survey_id}/attachments/{attachment_id}",
    summary="Download an attachment",
    response_class=StreamingResponse,
    responses={
        200: {"content": {ct: {} for ct in CONTENT_TYPES}, "description": "the file"},
        **errors(401, 404, 422),
        **_more(503),
    },
)
def download_attachment(
    survey_id: SurveyId, attachment_id: AttachmentId, request: Request, key: StreamKey
) -> StreamingResponse:
    with pooled(request) as conn:
        row = store.get_attachment(conn, survey_id, attachment_id)
    if row is None:
        raise HTTPException(404, f"survey {survey_id} has no attachment {attachment_id}")
    files = _files(request)
    try:
        fh = files.open(row["storage_uri"])
    except AttachmentStoreError as exc:
        log.error("attachment unavailable id=%s: %s", attachment_id, exc)
        raise HTTPException(503, f"attachment storage: {exc}") from None

    def chunks() -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(1 << 16):
                yield chunk

    name = row["filename"]
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return StreamingResponse(
        chunks(),
        media_type=row["content_type"],
        headers={
            "Content-Disposition": f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{quote(name)}",
            "Content-Length": str(row["size_bytes"]),
            "ETag": f'"{row["sha256"]}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
