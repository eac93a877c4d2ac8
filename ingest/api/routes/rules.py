"""Rule thresholds per site: read the effective configuration, change it (engineer), audit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, Response
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from ...alerting.rules import RULES, Context, RuleConfig, effective_config, validate_config
from ...store import alerts as store
from ..deps import ConnDep, CurrentKey, EngineerKey, SettingsDep
from ..errors import errors
from ..paging import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, decode_cursor, fingerprint, page
from .sites import SiteIdPath

router = APIRouter(prefix="/sites/{site_id}", tags=["rules"])

RuleName = Literal[tuple(RULES)]  # type: ignore[valid-type]
RulePath = Annotated[RuleName, Path(description="rule name")]
Note = Annotated[str, Field(max_length=2000, pattern=r"^[^\x00]*$")]


class RuleOut(BaseModel):
    rule: str
    description: str
    unit: str = Field(description="unit of thresholds and hysteresis")
    scope: Literal["site", "device", "stream"]
    applies: bool = Field(description="the site's kind and design values allow this rule")
    reason: str | None = Field(description="why it does not apply (null when it does)")
    flood: bool = Field(description="a flood rule: its red means the structure fails")
    config: RuleConfig = Field(description="effective: defaults, then the override")
    override: dict[str, Any] | None = Field(description="what engineers set at this site")
    updated_at: datetime | None
    updated_by: int | None


class RuleUpdate(RuleConfig):
    """Fields to override (those left out keep their default); ``note`` goes to the audit."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    note: Note | None = None


class RuleAuditOut(BaseModel):
    id: int
    site_id: str
    rule: str
    old_config: dict[str, Any] | None
    new_config: dict[str, Any] | None
    note: str | None
    key_id: int | None
    key_name: str | None = Field(description="that key's name")
    changed_at: datetime


def _context(conn, site_id: str) -> Context:
    row = conn.execute("SELECT kind, params FROM sites WHERE id = %s", (site_id,)).fetchone()
    if row is None:
        raise HTTPException(404, f"site {site_id!r} does not exist")
    return Context(row[0], row[1] if isinstance(row[1], dict) else {})


def _rules(conn, site_id: str, settings, only: str | None = None) -> list[RuleOut]:
    ctx = _context(conn, site_id)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT rule, config, updated_at, updated_by FROM site_rules WHERE site_id = %s",
            (site_id,),
        )
        saved = {r["rule"]: r for r in cur.fetchall()}
    out = []
    for name, rule in RULES.items():
        if only is not None and name != only:
            continue
        row = saved.get(name) or {}
        override = row.get("config")
        try:
            cfg = effective_config(rule, ctx, override, settings.alert_min_duration_s)
        except ValueError:  # design values that do not validate: show the plain defaults
            cfg = effective_config(rule, Context(ctx.kind, {}), None, settings.alert_min_duration_s)
        out.append(
            RuleOut(
                rule=name,
                description=rule.description,
                unit=rule.unit,
                scope=rule.scope,
                applies=rule.applies(ctx),
                reason=rule.why_not(ctx),
                flood=rule.flood,
                config=cfg,
                override=override,
                updated_at=row.get("updated_at"),
                updated_by=row.get("updated_by"),
            )
        )
    return out


@router.get(
    "/rules",
    response_model=list[RuleOut],
    summary="The alert rules of a site with their effective thresholds",
    responses=errors(401, 404, 422),
)
def list_rules(
    site_id: SiteIdPath, conn: ConnDep, key: CurrentKey, settings: SettingsDep
) -> list[RuleOut]:
    return _rules(conn, site_id, settings)


@router.get(
    "/rules/{rule}",
    response_model=RuleOut,
    summary="One rule of a site",
    responses=errors(401, 404, 422),
)
def get_rule(
    site_id: SiteIdPath, rule: RulePath, conn: ConnDep, key: CurrentKey, settings: SettingsDep
) -> RuleOut:
    return _rules(conn, site_id, settings, rule)[0]


@router.put(
    "/rules/{rule}",
    response_model=RuleOut,
    summary="Change a rule's thresholds at a site (engineer; audited)",
    responses=errors(401, 403, 404, 422),
)
def put_rule(
    site_id: SiteIdPath,
    rule: RulePath,
    body: RuleUpdate,
    conn: ConnDep,
    key: EngineerKey,
    settings: SettingsDep,
) -> RuleOut:
    """Fields sent replace the site's override; fields left out fall back to the defaults."""
    ctx = _context(conn, site_id)
    override = body.model_dump(exclude_unset=True, exclude={"note"})
    try:
        cfg = effective_config(RULES[rule], ctx, override, settings.alert_min_duration_s)
        validate_config(RULES[rule], cfg)
    except ValueError as exc:
        raise HTTPException(422, f"rule {rule!r}: {exc}") from None
    store.set_rule_override(conn, site_id, rule, override, key.id, body.note)
    return _rules(conn, site_id, settings, rule)[0]


@router.delete(
    "/rules/{rule}",
    response_model=RuleOut,
    summary="Return a rule to its defaults at a site (engineer; audited)",
    responses=errors(401, 403, 404, 422),
)
def reset_rule(
    site_id: SiteIdPath, rule: RulePath, conn: ConnDep, key: EngineerKey, settings: SettingsDep
) -> RuleOut:
    _context(conn, site_id)
    store.set_rule_override(conn, site_id, rule, None, key.id, "reset to defaults")
    return _rules(conn, site_id, settings, rule)[0]


@router.get(
    "/rule-audit",
    response_model=Page[RuleAuditOut],
    summary="Who changed which thresholds of a site, newest first",
    responses=errors(401, 404, 422),
)
def rule_audit(
    site_id: SiteIdPath,
    request: Request,
    response: Response,
    conn: ConnDep,
    key: CurrentKey,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> dict:
    _context(conn, site_id)
    fp = fingerprint(request)
    before = decode_cursor(cursor, fp, [int])[0] if cursor else 2**63 - 1
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, site_id, rule, old_config, new_config, note, key_id, "
            "(SELECT k.name FROM api_keys k WHERE k.id = key_id) AS key_name, changed_at "
            "FROM site_rule_audit WHERE site_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            (site_id, before, limit + 1),
        )
        items = [RuleAuditOut(**r) for r in cur.fetchall()]
    total = conn.execute(
        "SELECT count(*) FROM site_rule_audit WHERE site_id = %s", (site_id,)
    ).fetchone()[0]
    return page(request, response, items, limit, fp, lambda a: [a.id], total)
