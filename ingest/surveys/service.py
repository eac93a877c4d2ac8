"""Recording surveys: the per-kind checks, the new stage-storage curve of a re-survey and
the refitted calibration of a calibration visit, attachments, and the deposit volume of
a sediment survey beside the sensors' estimate."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import psycopg

from ..research import (
    ResearchError,
    add_stage_storage_curve,
    dam_retention,
    fit_calibration,
    list_calibrations,
    list_stage_storage_curves,
)
from ..research.data import get_site
from ..research.hydro import DamDesign
from ..research.versions import curve_index_at, curve_out, curve_versions
from ..store import surveys as store
from .attachments import EXTENSIONS, AttachmentStore, check_type
from .models import (
    SITE_KINDS,
    AttachmentOut,
    DepositComparison,
    SurveyDetail,
    SurveyOut,
)
from .upload import Upload

log = logging.getLogger(__name__)


class SurveyError(Exception):
    """A survey cannot be recorded: ``status`` (404, 409, 422) and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def create_survey(conn: psycopg.Connection, body: Any, key_id: int | None) -> int:
    """Record one survey (a validated ``SurveyIn``) and what follows from it; returns its id.

    A stage-storage re-survey adds a curve version valid from the survey time;
    a calibration visit fits a calibration valid from the visit time. Either
    failing leaves nothing recorded.
    """
    kind = body.kind
    site_kind = store.site_kind(conn, body.site_id)
    if site_kind is None:
        raise SurveyError(422, f"site_id: no site {body.site_id!r}")
    allowed = SITE_KINDS.get(kind)
    if allowed and site_kind not in allowed:
        raise SurveyError(
            422, f"a {kind} is made at a {' or '.join(allowed)}; site {body.site_id!r} is a "
            f"{site_kind}"
        )  # fmt: skip
    if body.ref is not None:
        existing = store.by_ref(conn, body.site_id, kind, body.ref)
        if existing is not None:
            raise SurveyError(
                409, f"survey_ref {body.ref!r} of this {kind} at {body.site_id} is already "
                f"recorded as survey {existing}"
            )  # fmt: skip
    data = body.data.model_dump(mode="json", exclude_none=True)
    values = {
        "site_id": body.site_id,
        "kind": kind,
        "surveyed_at": body.surveyed_at,
        "surveyor": body.surveyor,
        "latitude": body.latitude,
        "longitude": body.longitude,
        "condition": getattr(body, "condition", None),
        "damage": [d.model_dump(mode="json") for d in getattr(body, "damage", [])],
        "notes": body.notes,
        "data": data,
        "ref": body.ref,
    }
    with conn.transaction():
        survey_id = store.insert_survey(conn, values, key_id)
        note = f"survey {survey_id}" + (f" by {body.surveyor}" if body.surveyor else "")
        try:
            if kind == "stage_storage_survey":
                points = sorted(body.data.points, key=lambda p: p.stage_m)
                curve = add_stage_storage_curve(
                    conn,
                    body.site_id,
                    body.surveyed_at,
                    stages_m=[p.stage_m for p in points],
                    volumes_m3=[p.volume_m3 for p in points],
                    kind=body.data.curve_kind,
                    source="survey",
                    survey_id=survey_id,
                    note=note,
                )
                store.link_survey(conn, survey_id, curve_id=curve.id)
            elif kind == "calibration_visit":
                d = body.data
                if d.stream_id is not None:
                    _check_stream(conn, body.site_id, d.channel, d.stream_id)
                cal = fit_calibration(
                    conn,
                    body.site_id,
                    body.surveyed_at,
                    [s.ntu for s in d.samples],
                    [s.ssc_kg_m3 for s in d.samples],
                    kind=d.model,
                    channel=d.channel,
                    stream_id=d.stream_id,
                    source="survey",
                    survey_id=survey_id,
                    note=note,
                )
                store.link_survey(conn, survey_id, calibration_id=cal.id)
        except ResearchError as exc:
            raise SurveyError(422, str(exc)) from None
    log.info("survey recorded id=%s site=%s kind=%s key=%s", survey_id, body.site_id, kind, key_id)
    return survey_id


def _check_stream(conn: psycopg.Connection, site_id: str, channel: str, stream_id: int) -> None:
    row = conn.execute(
        "SELECT d.site_id, s.channel FROM streams s JOIN devices d ON d.id = s.device_id "
        "WHERE s.id = %s",
        (stream_id,),
    ).fetchone()
    if row is None or row[0] != site_id or row[1] != channel:
        raise SurveyError(
            422, f"stream {stream_id} is not the {channel} stream of a device at {site_id}"
        )


def _outs(conn: psycopg.Connection, rows: list[dict]) -> list[SurveyOut]:
    atts = store.attachments(conn, [r["id"] for r in rows])
    return [SurveyOut(**r, attachments=[AttachmentOut(**a) for a in atts[r["id"]]]) for r in rows]


def list_surveys(conn: psycopg.Connection, **filters: Any) -> list[SurveyOut]:
    return _outs(conn, store.list_surveys(conn, **filters))


def get_detail(conn: psycopg.Connection, survey_id: int) -> SurveyDetail:
    row = store.get_survey(conn, survey_id)
    if row is None:
        raise SurveyError(404, f"survey {survey_id} does not exist")
    (out,) = _outs(conn, [row])
    detail = SurveyDetail(**out.model_dump())
    site_id = row["site_id"]
    if row["curve_id"] is not None:
        curves = list_stage_storage_curves(conn, site_id)
        detail.curve = next((c for c in curves if c.id == row["curve_id"]), None)
    if row["calibration_id"] is not None:
        cals = list_calibrations(conn, site_id, row["data"].get("channel", "turbidity_ntu"))
        detail.calibration = next((c for c in cals if c.id == row["calibration_id"]), None)
    if row["kind"] == "sediment_survey":
        try:
            detail.deposit = deposit_comparison(conn, row)
        except ValueError as exc:  # ResearchError, or a curve the methods cannot use
            detail.deposit_error = str(exc)
    return detail


def deposit_comparison(conn: psycopg.Connection, row: dict) -> DepositComparison:
    """The surveyed deposit volume beside the sensors' estimate for the same period.

    Surveyed: the volume below the mean deposit surface by the stage-storage
    curve valid at the survey time (the deposit since that curve's survey).
    Sensors: the sediment the dam retained since the same curve's
    ``valid_from`` (``dam_retention`` at the survey time), over the dry bulk
    density (the survey's sample, else ``params.dry_bulk_density_t_m3``).
    """
    site_id, at = row["site_id"], row["surveyed_at"]
    site = get_site(conn, site_id, "check_dam")
    curves = curve_versions(conn, site_id, site.params)
    curve = curves[int(curve_index_at(curves, np.array([at.timestamp()]))[0])]
    elevations = np.array([p["elevation_m"] for p in row["data"]["points"]], dtype=float)
    mean_m = float(elevations.mean())
    volume = float(curve.volume_m3(max(mean_m, 0.0))) if mean_m > 0 else 0.0
    sampled = row["data"].get("dry_bulk_density_t_m3")
    rho = float(sampled) if sampled else DamDesign.from_params(site.params).dry_bulk_density_t_m3
    basis = "survey sample" if sampled else "params.dry_bulk_density_t_m3 (or the default)"
    out = DepositComparison(
        points=int(elevations.size),
        mean_surface_m=mean_m,
        curve=curve_out(site_id, curve),
        surveyed_volume_m3=volume,
        since=curve.valid_from,
        dry_bulk_density_t_m3=rho,
        dry_bulk_density_basis=basis,
    )
    try:
        ret = dam_retention(conn, site_id, at)
    except ResearchError as exc:
        out.notes.append(f"no sensor estimate: {exc}")
        return out
    out.sensor_events = ret.events
    out.notes.extend(ret.notes)
    if ret.sediment_retained_t is None:
        out.notes.append("no sensor estimate: the events have no sediment data")
        return out
    out.sensor_retained_t = ret.sediment_retained_t
    out.sensor_volume_m3 = ret.sediment_retained_t / rho
    out.difference_m3 = volume - out.sensor_volume_m3
    out.ratio = volume / out.sensor_volume_m3 if out.sensor_volume_m3 > 0 else None
    return out


def survey_exists(conn: psycopg.Connection, survey_id: int) -> bool:
    return store.get_survey(conn, survey_id) is not None


def add_attachment(
    conn: psycopg.Connection,
    files: AttachmentStore,
    survey_id: int,
    upload: Upload,
    key_id: int | None,
) -> AttachmentOut:
    """Check the file's type against its bytes, keep it, and record it."""
    if not survey_exists(conn, survey_id):
        raise SurveyError(404, f"survey {survey_id} does not exist")
    ctype = check_type(upload.content_type, upload.head())
    name = _clean_filename(upload.filename) or f"attachment{EXTENSIONS[ctype]}"
    upload.file.seek(0)
    stored = files.put(survey_id, ctype, upload.file)
    try:
        row = store.insert_attachment(
            conn, survey_id, name, ctype, stored.size_bytes, stored.sha256, stored.uri, key_id
        )
        conn.commit()
    except BaseException:
        files.delete(stored.uri)
        raise
    log.info("attachment stored survey=%s id=%s bytes=%s", survey_id, row["id"], stored.size_bytes)
    return AttachmentOut(**row)


def _clean_filename(name: str | None) -> str:
    if not name:
        return ""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '"\x00')
    return base.strip()[:200]
