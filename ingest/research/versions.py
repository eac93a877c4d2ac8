"""Versioned stage-storage curves and turbidity calibrations.

A version is valid from its ``valid_from`` until the next version of the same
site (and channel); the version valid at time t is the one with the latest
``valid_from <= t``. Before the first version, the design values in
``sites.params`` apply:

* ``params.stage_storage``: ``{a, b}`` (``V [m3] = a h^b``, h above the gauge
  datum) or ``{stages_m: [...], volumes_m3: [...]}`` (a table);
* ``params.turbidity_calibration``: ``{a_kg_m3, b}`` for
  ``ssc_kg_m3 = a_kg_m3 * ntu ** b`` (the simulator's registry convention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from analytics.sediment import SscCalibration, fit_turbidity_ssc
from analytics.storage import fit_power_stage_storage

from .data import ResearchError, get_site
from .hydro import StageStorage
from .models import CalibrationOut, StageStorageCurveOut

__all__ = [
    "Calibration",
    "add_calibration",
    "add_stage_storage_curve",
    "calibration_versions",
    "curve_versions",
    "design_curve",
    "fit_calibration",
    "list_calibrations",
    "list_stage_storage_curves",
]

_CURVE_COLS = "id, valid_from, kind, a, b, stages_m, volumes_m3, source, survey_id, note"
_CAL_COLS = (
    "id, stream_id, channel, valid_from, kind, intercept, slope, smearing, residual_std, n, "
    "x_mean, sxx, ntu_min, ntu_max, source, note"
)


def _aware(t: datetime, name: str) -> datetime:
    if t.tzinfo is None:
        raise ResearchError(f"{name} {t.isoformat()} has no zone; give a UTC time")
    return t


# ---------------------------------------------------------------------------- curves
def design_curve(site_id: str, params: dict[str, Any]) -> StageStorage | None:
    """The design curve from ``sites.params.stage_storage``, or None."""
    ss = params.get("stage_storage")
    if not isinstance(ss, dict):
        return None
    if "a" in ss and "b" in ss:
        return StageStorage("power", float(ss["a"]), float(ss["b"]), source="design")
    if "stages_m" in ss and "volumes_m3" in ss:
        return StageStorage(
            "table",
            stages_m=tuple(float(x) for x in ss["stages_m"]),
            volumes_m3=tuple(float(x) for x in ss["volumes_m3"]),
            source="design",
        )
    return None


def _curve_of_row(r) -> StageStorage:
    return StageStorage(
        r[2], r[3], r[4], tuple(r[5] or ()), tuple(r[6] or ()), id=r[0], valid_from=r[1],
        source=r[7],
    )  # fmt: skip


def curve_versions(
    conn: psycopg.Connection, site_id: str, params: dict[str, Any]
) -> list[StageStorage]:
    """The site's curves in order: the design curve (if any, valid from the beginning)
    followed by the stored versions by ``valid_from``."""
    rows = conn.execute(
        f"SELECT {_CURVE_COLS} FROM stage_storage_curves WHERE site_id = %s ORDER BY valid_from",
        (site_id,),
    ).fetchall()
    out = []
    d = design_curve(site_id, params)
    if d is not None:
        out.append(d)
    out.extend(_curve_of_row(r) for r in rows)
    if not out:
        raise ResearchError(
            f"site {site_id!r} has no stage-storage curve: add one, or set "
            "params.stage_storage {a, b} or {stages_m, volumes_m3}"
        )
    return out


def curve_index_at(curves: Sequence[StageStorage], t_s: np.ndarray) -> np.ndarray:
    """Index into ``curves`` of the version valid at each time (design before the first)."""
    starts = np.array(
        [-np.inf if c.valid_from is None else c.valid_from.timestamp() for c in curves]
    )
    idx = np.searchsorted(starts, np.asarray(t_s, dtype=float), side="right") - 1
    if np.any(idx < 0):  # no design curve and a time before the first survey
        idx = np.maximum(idx, 0)
    return idx


def curve_out(site_id: str, c: StageStorage, extra: dict[str, Any] | None = None):
    row = (extra or {}).copy()
    return StageStorageCurveOut(
        id=c.id,
        site_id=site_id,
        valid_from=c.valid_from,
        kind=c.kind,
        a=c.a,
        b=c.b,
        stages_m=list(c.stages_m),
        volumes_m3=list(c.volumes_m3),
        source=c.source,
        survey_id=row.get("survey_id"),
        note=row.get("note", ""),
        fit_rmse_rel=row.get("fit_rmse_rel"),
    )


def add_stage_storage_curve(
    conn: psycopg.Connection,
    site_id: str,
    valid_from: datetime,
    *,
    stages_m: Sequence[float] | None = None,
    volumes_m3: Sequence[float] | None = None,
    a: float | None = None,
    b: float | None = None,
    kind: str | None = None,
    source: str = "survey",
    survey_id: int | None = None,
    note: str = "",
) -> StageStorageCurveOut:
    """Store a new stage-storage curve version valid from ``valid_from``.

    Give either survey points (``stages_m``, ``volumes_m3``; stages in the
    gauge datum) or the power-law coefficients ``a``, ``b``. With points,
    ``kind="power"`` (the default) fits ``V = a h^b`` by least squares on
    logarithms (:func:`analytics.storage.fit_power_stage_storage`) and keeps
    the points; ``kind="table"`` uses the points themselves (PCHIP).
    Every later computation of the site uses the new curve from
    ``valid_from`` on; earlier ones are unchanged. A second version with the
    same ``valid_from`` is an error.
    """
    _aware(valid_from, "valid_from")
    get_site(conn, site_id, "check_dam")
    fit_rmse = None
    if stages_m is not None or volumes_m3 is not None:
        if stages_m is None or volumes_m3 is None:
            raise ResearchError("give both stages_m and volumes_m3")
        h = np.asarray(stages_m, dtype=float)
        v = np.asarray(volumes_m3, dtype=float)
        kind = kind or "power"
        if kind == "power":
            try:
                a, b = fit_power_stage_storage(h, v)
            except ValueError as exc:
                raise ResearchError(f"cannot fit V = a h^b: {exc}") from None
            pos = h > 0
            fit_rmse = float(np.sqrt(np.mean((a * h[pos] ** b / v[pos] - 1.0) ** 2)))
        elif kind == "table":
            try:
                StageStorage("table", stages_m=tuple(h), volumes_m3=tuple(v)).volume_m3(h)
            except ValueError as exc:
                raise ResearchError(f"bad stage-storage table: {exc}") from None
        else:
            raise ResearchError(f"kind must be 'power' or 'table', got {kind!r}")
        pts_h, pts_v = h.tolist(), v.tolist()
    else:
        if a is None or b is None:
            raise ResearchError("give survey points (stages_m, volumes_m3) or both a and b")
        if kind not in (None, "power"):
            raise ResearchError("coefficients a, b describe a power curve")
        kind = "power"
        pts_h = pts_v = None
    if kind == "power" and not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise ResearchError(f"a and b must be > 0, got a={a!r}, b={b!r}")
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO stage_storage_curves (site_id, valid_from, kind, a, b, stages_m, "
                "volumes_m3, source, survey_id, note) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                f"RETURNING {_CURVE_COLS}",
                (site_id, valid_from, kind, a if kind == "power" else None,
                 b if kind == "power" else None, pts_h, pts_v, source, survey_id, note),
            ).fetchone()  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise ResearchError(
            f"site {site_id!r} already has a curve valid from {valid_from.isoformat()}"
        ) from None
    return curve_out(
        site_id, _curve_of_row(row), {"survey_id": row[8], "note": row[9], "fit_rmse_rel": fit_rmse}
    )


def list_stage_storage_curves(conn: psycopg.Connection, site_id: str) -> list[StageStorageCurveOut]:
    """The design curve (id None) and every stored version, oldest first."""
    site = get_site(conn, site_id, "check_dam")
    out = []
    d = design_curve(site_id, site.params)
    if d is not None:
        out.append(curve_out(site_id, d))
    for r in conn.execute(
        f"SELECT {_CURVE_COLS} FROM stage_storage_curves WHERE site_id = %s ORDER BY valid_from",
        (site_id,),
    ):
        out.append(curve_out(site_id, _curve_of_row(r), {"survey_id": r[8], "note": r[9]}))
    return out


# ---------------------------------------------------------------------- calibrations
class Calibration:
    """One turbidity -> SSC calibration version (wraps :class:`SscCalibration`)."""

    def __init__(self, out: CalibrationOut):
        self.out = out
        self.valid_from_s = out.valid_from.timestamp() if out.valid_from else -math.inf
        self.fit = SscCalibration(
            out.kind,
            out.intercept,
            out.slope,
            out.residual_std if out.residual_std is not None else 0.0,
            out.n if out.n is not None else 3,
            out.x_mean if out.x_mean is not None else 0.0,
            out.sxx if out.sxx is not None else 1.0,
            out.smearing,
        )

    def ssc_kg_m3(self, ntu: np.ndarray) -> np.ndarray:
        x = np.asarray(ntu, dtype=float)
        if self.out.kind == "power":
            # T = 0 gives SSC 0 (the power law through the origin), not NaN
            pos = x > 0
            y = np.zeros_like(x)
            y[pos] = self.fit.ssc_kg_m3(x[pos])
            return np.where(np.isnan(x), np.nan, y)
        return np.maximum(self.fit.ssc_kg_m3(x), 0.0)

    def outside(self, ntu: np.ndarray) -> np.ndarray:
        lo, hi = self.out.ntu_min, self.out.ntu_max
        x = np.asarray(ntu, dtype=float)
        bad = np.zeros(x.shape, dtype=bool)
        if hi is not None:
            bad |= x > hi
        if lo is not None:
            bad |= x < lo
        return bad


def _cal_of_row(site_id: str, r) -> CalibrationOut:
    keys = _CAL_COLS.replace(" ", "").split(",")
    d = dict(zip(keys, r, strict=True))
    return CalibrationOut(site_id=site_id, **d)


def params_calibration(site_id: str, params: dict[str, Any], channel: str) -> CalibrationOut | None:
    tc = params.get("turbidity_calibration")
    if not isinstance(tc, dict) or "a_kg_m3" not in tc or "b" not in tc:
        return None
    return CalibrationOut(
        id=None,
        site_id=site_id,
        channel=channel,
        valid_from=None,
        kind="power",
        intercept=math.log(float(tc["a_kg_m3"])),
        slope=float(tc["b"]),
        smearing=1.0,
        source="params",
        note="sites.params.turbidity_calibration: ssc_kg_m3 = a_kg_m3 * ntu ** b",
    )


def calibration_versions(
    conn: psycopg.Connection,
    site_id: str,
    params: dict[str, Any],
    channel: str = "turbidity_ntu",
    stream_id: int | None = None,
) -> list[Calibration]:
    """The calibrations that apply to a stream, in order of validity (fallback first).

    At equal ``valid_from`` a stream-specific row wins over a site-wide one.
    """
    rows = conn.execute(
        f"SELECT {_CAL_COLS} FROM calibrations WHERE site_id = %s AND channel = %s "
        "AND (stream_id IS NULL OR stream_id = %s) ORDER BY valid_from, stream_id NULLS FIRST",
        (site_id, channel, stream_id),
    ).fetchall()
    out: list[Calibration] = []
    fb = params_calibration(site_id, params, channel)
    if fb is not None:
        out.append(Calibration(fb))
    for r in rows:
        c = Calibration(_cal_of_row(site_id, r))
        if out and out[-1].valid_from_s == c.valid_from_s:
            out[-1] = c  # the stream-specific row (sorted after the site-wide one)
        else:
            out.append(c)
    return out


def apply_calibrations(
    cals: Sequence[Calibration], t_s: np.ndarray, ntu: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[int | None]]:
    """SSC [kg/m3] of each reading by the version valid at its time; also a flag of
    readings outside the version's sampled range and the version ids used."""
    if not cals:
        raise ResearchError("no turbidity calibration: fit one or set params.turbidity_calibration")
    starts = np.array([c.valid_from_s for c in cals])
    idx = np.maximum(np.searchsorted(starts, t_s, side="right") - 1, 0)
    ssc = np.empty(ntu.shape)
    outside = np.zeros(ntu.shape, dtype=bool)
    used = []
    for j in np.unique(idx):
        sel = idx == j
        ssc[sel] = cals[j].ssc_kg_m3(ntu[sel])
        outside[sel] = cals[j].outside(ntu[sel])
        used.append(cals[j].out.id)
    return ssc, outside, used


def fit_calibration(
    conn: psycopg.Connection,
    site_id: str,
    valid_from: datetime,
    ntu: Sequence[float],
    ssc_kg_m3: Sequence[float],
    *,
    kind: str = "power",
    channel: str = "turbidity_ntu",
    stream_id: int | None = None,
    smearing: bool = True,
    source: str = "samples",
    survey_id: int | None = None,
    note: str = "",
) -> CalibrationOut:
    """Fit a turbidity -> SSC calibration to paired samples and store it as a version.

    ``kind="power"`` fits ``ln SSC = a + b ln NTU`` with Duan's smearing;
    ``kind="linear"`` fits ``SSC = a + b NTU`` (both by
    :func:`analytics.sediment.fit_turbidity_ssc`, USGS TM 3-C4). The
    residual standard deviation, n, mean and Sxx of the regressor are kept
    for prediction intervals, and the sampled NTU range for the
    extrapolation warning of the products.
    """
    _aware(valid_from, "valid_from")
    get_site(conn, site_id)
    try:
        fit = fit_turbidity_ssc(ntu, ssc_kg_m3, model=kind, smearing=smearing)
    except ValueError as exc:
        raise ResearchError(f"cannot fit the calibration: {exc}") from None
    x = np.asarray(ntu, dtype=float)
    y = np.asarray(ssc_kg_m3, dtype=float)
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO calibrations (site_id, stream_id, channel, valid_from, kind, "
                "intercept, slope, smearing, residual_std, n, x_mean, sxx, ntu_min, ntu_max, "
                "samples_ntu, samples_ssc_kg_m3, source, survey_id, note) VALUES "
                "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                f"RETURNING {_CAL_COLS}",
                (site_id, stream_id, channel, valid_from, fit.model, fit.intercept, fit.slope,
                 fit.smearing, fit.residual_std, fit.n, fit.x_mean, fit.sxx, float(x.min()),
                 float(x.max()), x.tolist(), y.tolist(), source, survey_id, note),
            ).fetchone()  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise ResearchError(
            f"site {site_id!r} already has a {channel} calibration valid from "
            f"{valid_from.isoformat()}"
        ) from None
    return _cal_of_row(site_id, row)


def add_calibration(
    conn: psycopg.Connection,
    site_id: str,
    valid_from: datetime,
    *,
    kind: str,
    intercept: float,
    slope: float,
    smearing: float = 1.0,
    channel: str = "turbidity_ntu",
    stream_id: int | None = None,
    source: str = "coefficients",
    note: str = "",
) -> CalibrationOut:
    """Store a calibration given as coefficients (no samples, no prediction interval).

    For the simulator's form ``SSC = a NTU^b`` pass ``kind="power"``,
    ``intercept=ln(a)``, ``slope=b``.
    """
    _aware(valid_from, "valid_from")
    if kind not in ("linear", "power"):
        raise ResearchError(f"kind must be 'linear' or 'power', got {kind!r}")
    get_site(conn, site_id)
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO calibrations (site_id, stream_id, channel, valid_from, kind, "
                "intercept, slope, smearing, source, note) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                f"RETURNING {_CAL_COLS}",
                (site_id, stream_id, channel, valid_from, kind, intercept, slope, smearing,
                 source, note),
            ).fetchone()  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise ResearchError(
            f"site {site_id!r} already has a {channel} calibration valid from "
            f"{valid_from.isoformat()}"
        ) from None
    return _cal_of_row(site_id, row)


def list_calibrations(
    conn: psycopg.Connection, site_id: str, channel: str = "turbidity_ntu"
) -> list[CalibrationOut]:
    """The params fallback (id None) and every stored version, oldest first."""
    site = get_site(conn, site_id)
    out = []
    fb = params_calibration(site_id, site.params, channel)
    if fb is not None:
        out.append(fb)
    for r in conn.execute(
        f"SELECT {_CAL_COLS} FROM calibrations WHERE site_id = %s AND channel = %s "
        "ORDER BY valid_from, stream_id NULLS FIRST",
        (site_id, channel),
    ):
        out.append(_cal_of_row(site_id, r))
    return out
