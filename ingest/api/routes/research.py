"""Derived products over HTTP: thin wrappers over ``ingest.research`` (storms, check-dam
events and retention, runoff-plot and cistern events, curve and calibration versions).
New curves and calibrations come from surveys (``POST /surveys``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ... import research
from ...research.models import (
    CalibrationOut,
    CisternEvents,
    DamEvents,
    DamRetention,
    PlotEvents,
    StageStorageCurveOut,
    StormEvents,
)
from ..deps import ConnDep, CurrentKey
from ..errors import errors
from .readings import QUALITY_FLAGS

router = APIRouter(prefix="/research", tags=["research"])

SiteIdPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$", description="site id")
]
M = TypeVar("M")


def _flag(q: int) -> int:
    if q not in QUALITY_FLAGS:
        raise ValueError(f"QC flag {q} is not one of 1, 2, 3, 4, 9")
    return q


Flag = Annotated[int, Field(ge=1, le=9), AfterValidator(_flag)]


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: AwareDatetime | None = Field(default=None, description="with a zone")
    end: AwareDatetime | None = Field(default=None, description="with a zone")
    exclude_quality: list[Flag] = Field(
        default_factory=list, max_length=5, description="QC flags left out (default 4 and 9)"
    )
    use_cache: bool = Field(default=True, description="false: recompute")

    @model_validator(mode="after")
    def _range(self):
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start must be before end")
        return self

    def common(self) -> dict:
        return {
            "exclude_quality": tuple(self.exclude_quality) or research.DEFAULT_EXCLUDE_QUALITY,
            "use_cache": self.use_cache,
        }


class StormParams(_Window):
    min_dry_h: float = Field(default=6.0, gt=0, le=240, description="dry gap between storms")
    min_depth_mm: float = Field(default=0.0, ge=0, le=1000)


class EventParams(_Window):
    min_dry_h: float = Field(default=6.0, gt=0, le=240)
    min_storm_mm: float = Field(default=1.0, ge=0, le=1000)
    tail_h: float | None = Field(default=None, gt=0, le=240, description="hours after the rain")


class DamEventParams(EventParams):
    outflow: Literal["auto", "measured", "hydraulics"] = "auto"


class RetentionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: AwareDatetime | None = Field(default=None, description="default now")
    annual_sediment_inflow_t: float | None = Field(default=None, gt=0, le=1e9)
    exclude_quality: list[Flag] = Field(default_factory=list, max_length=5)
    use_cache: bool = True


def _call(fn: Callable[..., M], *args, **kwargs) -> M:
    try:
        return fn(*args, **kwargs)
    except research.ResearchError as exc:
        msg = str(exc)
        raise HTTPException(404 if msg.startswith("no site") else 422, msg) from None
    except ValueError as exc:  # an argument the methods cannot use
        raise HTTPException(422, f"cannot compute: {exc}") from None


def _product(conn, name: str, args: tuple, kwargs: dict):
    return _call(getattr(research, name), conn, *args, **kwargs)


def _heavy(request: Request, conn, name: str, *args, **kwargs):
    """The derived product ``research.<name>(conn, *args, **kwargs)``, computed in a
    worker process of lower priority (offload.py), or here when there is none; the
    model comes back and is answered as any other."""
    workers = getattr(request.app.state, "heavy_workers", None)
    if workers is None:
        return _product(conn, name, args, kwargs)
    timeout_s = request.state.statement_timeout_s
    return workers.run(conn, timeout_s, _product, name, args, kwargs)


def _events(q: EventParams) -> dict:
    kw = {**q.common(), "min_dry_h": q.min_dry_h, "min_storm_mm": q.min_storm_mm}
    if q.tail_h is not None:
        kw["tail_h"] = q.tail_h
    return kw


@router.get(
    "/sites/{site_id}/storms",
    response_model=StormEvents,
    summary="Storm events at a rain gauge (or the gauge serving a site): depth, I10/I30/I60, EI30",
    responses=errors(401, 404, 422),
)
def storms(
    request: Request,
    site_id: SiteIdPath,
    conn: ConnDep,
    key: CurrentKey,
    q: Annotated[StormParams, Query()],
) -> StormEvents:
    return _heavy(request, conn, "storm_events", site_id, q.start, q.end,
                  min_dry_h=q.min_dry_h, min_depth_mm=q.min_depth_mm, **q.common())  # fmt: skip


@router.get(
    "/sites/{site_id}/dam-events",
    response_model=DamEvents,
    summary="Per-storm water and sediment balance of a check dam",
    responses=errors(401, 404, 422),
)
def dam_events(
    request: Request,
    site_id: SiteIdPath,
    conn: ConnDep,
    key: CurrentKey,
    q: Annotated[DamEventParams, Query()],
) -> DamEvents:
    return _heavy(request, conn, "dam_events", site_id, q.start, q.end, outflow=q.outflow,
                  **_events(q))  # fmt: skip


@router.get(
    "/sites/{site_id}/retention",
    response_model=DamRetention,
    summary="Cumulative sediment retention, remaining storage and silting life of a check dam",
    responses=errors(401, 404, 422),
)
def retention(
    request: Request,
    site_id: SiteIdPath,
    conn: ConnDep,
    key: CurrentKey,
    q: Annotated[RetentionParams, Query()],
) -> DamRetention:
    return _heavy(request, conn, "dam_retention", site_id, q.at,
                  annual_sediment_inflow_t=q.annual_sediment_inflow_t,
                  exclude_quality=tuple(q.exclude_quality) or research.DEFAULT_EXCLUDE_QUALITY,
                  use_cache=q.use_cache)  # fmt: skip


@router.get(
    "/sites/{site_id}/plot-events",
    response_model=PlotEvents,
    summary="Runoff depth, runoff coefficient and soil loss per event of a runoff plot",
    responses=errors(401, 404, 422),
)
def plot_events(
    request: Request,
    site_id: SiteIdPath,
    conn: ConnDep,
    key: CurrentKey,
    q: Annotated[EventParams, Query()],
) -> PlotEvents:
    return _heavy(request, conn, "plot_events", site_id, q.start, q.end, **_events(q))


@router.get(
    "/sites/{site_id}/cistern-events",
    response_model=CisternEvents,
    summary="Volume harvested and overflow per event of a cistern",
    responses=errors(401, 404, 422),
)
def cistern_events(
    request: Request,
    site_id: SiteIdPath,
    conn: ConnDep,
    key: CurrentKey,
    q: Annotated[EventParams, Query()],
) -> CisternEvents:
    return _heavy(request, conn, "cistern_events", site_id, q.start, q.end, **_events(q))


@router.get(
    "/sites/{site_id}/curves",
    response_model=list[StageStorageCurveOut],
    summary="Stage-storage curves of a check dam: the design curve and each re-survey",
    responses=errors(401, 404, 422),
)
def curves(site_id: SiteIdPath, conn: ConnDep, key: CurrentKey) -> list[StageStorageCurveOut]:
    return _call(research.list_stage_storage_curves, conn, site_id)


class CalibrationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")] = "turbidity_ntu"


@router.get(
    "/sites/{site_id}/calibrations",
    response_model=list[CalibrationOut],
    summary="Turbidity calibrations of a site's channel: the params fallback and each version",
    responses=errors(401, 404, 422),
)
def calibrations(
    site_id: SiteIdPath, conn: ConnDep, key: CurrentKey, q: Annotated[CalibrationParams, Query()]
) -> list[CalibrationOut]:
    return _call(research.list_calibrations, conn, site_id, q.channel)
