"""API keys (admin): create (the key is shown once), list, revoke; and the caller's own key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ...store import keys as store
from ...store.alerts import record_write
from ..deps import AdminKey, ConnDep, CurrentKey
from ..errors import errors
from ..paging import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, decode_cursor, fingerprint, page

router = APIRouter(prefix="/keys", tags=["keys"])

Role = Literal["viewer", "surveyor", "engineer", "admin"]  # = ingest.store.keys.ROLES


class KeyOut(BaseModel):
    id: int
    name: str
    role: str = Field(description="viewer, engineer, admin (or another role of the schema)")
    prefix: str = Field(description="first characters of the key, to recognise it")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    name: str = Field(default="", max_length=200, pattern=r"^[^\x00]*$")


class KeyCreated(KeyOut):
    key: str = Field(description="the key itself: shown this once, stored only as a hash")


def _out(k: store.ApiKey) -> KeyOut:
    return KeyOut(**k.__dict__)


@router.get(
    "/me", response_model=KeyOut, summary="The key making this request", responses=errors(401)
)
def me(key: CurrentKey) -> KeyOut:
    return _out(key)


@router.get(
    "",
    response_model=Page[KeyOut],
    summary="Every key, by id (admin)",
    responses=errors(401, 403, 422),
)
def list_keys(
    request: Request,
    response: Response,
    conn: ConnDep,
    key: AdminKey,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> dict:
    fp = fingerprint(request)
    after = decode_cursor(cursor, fp, [int])[0] if cursor else 0
    items = [_out(k) for k in store.list_keys(conn, after, limit + 1)]
    total = conn.execute("SELECT count(*) FROM api_keys").fetchone()[0]
    return page(request, response, items, limit, fp, lambda k: [k.id], total)


@router.post(
    "",
    response_model=KeyCreated,
    status_code=201,
    summary="Create a key (admin); the response holds the key, once",
    responses=errors(401, 403, 422),
)
def create_key(body: KeyCreate, conn: ConnDep, key: AdminKey) -> KeyCreated:
    row, secret = store.create_key(conn, body.role, body.name, created_by=key.id)
    record_write(conn, key.id, "key.create", str(row.id), {"role": body.role, "name": body.name})
    return KeyCreated(**row.__dict__, key=secret)


@router.delete(
    "/{key_id}",
    response_model=KeyOut,
    summary="Revoke a key (admin)",
    responses=errors(401, 403, 404, 422),
)
def revoke_key(
    key_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: ConnDep, key: AdminKey
) -> KeyOut:
    row = store.revoke_key(conn, key_id)
    if row is None:
        raise HTTPException(404, f"key {key_id} does not exist")
    record_write(conn, key.id, "key.revoke", str(key_id), {})
    return _out(row)
