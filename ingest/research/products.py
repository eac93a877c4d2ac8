"""Derived products computed from the database: storm events per rain gauge, check-dam
event balances and cumulative retention, runoff-plot events and cistern events.

Each function takes a psycopg connection and returns a pydantic model; results
are cached in ``derived_cache`` and recomputed when their inputs change (see
:mod:`.cache`). Methods and assumptions: docs/research.md, "Derived products".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import psycopg

from analytics import rainfall
from analytics.sediment import (
    ls_factor,
    musle_sediment_t,
    silting_life_years,
    trap_efficiency_gill,
)
from analytics.storage import (
    bottle_cistern_volume_m3,
    cylinder_cistern_volume_m3,
)

from .cache import cache_key, cached, fingerprint
from .data import (
    DEFAULT_EXCLUDE_QUALITY,
    ResearchError,
    Series,
    Site,
    epoch,
    get_site,
    nearest_rain_site,
    read_series,
    to_datetime,
)
from .hydro import DamDesign, dam_balance, moving_average
from .models import (
    CisternEvent,
    CisternEvents,
    DamEvent,
    DamEvents,
    DamRetention,
    PlotEvent,
    PlotEvents,
    StormEvent,
    StormEvents,
)
from .versions import (
    apply_calibrations,
    calibration_versions,
    curve_index_at,
    curve_out,
    curve_versions,
)

__all__ = [
    "DEFAULT_ANNUAL_RUNOFF_MM",
    "cistern_events",
    "dam_events",
    "dam_retention",
    "plot_events",
    "storm_events",
]

_H = 3600.0
#: Mean annual runoff depth used for Gill's capacity/inflow ratio when a dam's
#: params give neither ``mean_annual_inflow_m3`` nor ``mean_annual_runoff_mm``
#: [mm] (hilly-gully loess region, roughly 20-60 mm).
DEFAULT_ANNUAL_RUNOFF_MM = 40.0


# ------------------------------------------------------------------------- storms
def _storms(rain: Series, min_dry_h: float, min_depth_mm: float) -> dict[str, np.ndarray]:
    if rain.t_s.size < 2:
        return {"start_s": np.empty(0), "end_s": np.empty(0), "depth_mm": np.empty(0)}
    return rainfall.storm_events(
        rain.t_s, np.maximum(rain.value, 0.0), min_dry_s=min_dry_h * _H, min_depth_mm=min_depth_mm
    )


def storm_events(
    conn: psycopg.Connection,
    site_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    min_dry_h: float = 6.0,
    min_depth_mm: float = 0.0,
    exclude_quality: Sequence[int] = DEFAULT_EXCLUDE_QUALITY,
    use_cache: bool = True,
) -> StormEvents:
    """Storm events at a rain gauge (or at the gauge nearest to a site) in ``[start, end]``.

    Storms are separated by ``min_dry_h`` with less than 1.27 mm of rain
    (RUSLE, AH 703: 6 h; see :func:`analytics.rainfall.storm_event_ids`);
    each has its depth, duration, I10/I30/I60 and EI30 (Brown and Foster
    unit energy) by :func:`analytics.rainfall.storm_events` on the
    logger's per-interval depths (breakpoint convention: each reading's
    interval is the time since the previous reading).
    """
    site = get_site(conn, site_id)
    rsite = nearest_rain_site(conn, site)
    if rsite is None:
        raise ResearchError(f"no rain gauge for site {site_id!r}")
    ids = rsite.streams_for("rain")
    s0, s1 = epoch(start), epoch(end)
    key = cache_key("storms", site=site_id, start=s0, end=s1, dry=min_dry_h, min=min_depth_mm,
                    q=list(exclude_quality))  # fmt: skip
    fp = fingerprint(conn, stream_ids=ids, start_s=s0, end_s=s1, site_ids=[rsite.id])

    def compute() -> StormEvents:
        rain = read_series(conn, ids, s0, s1, exclude_quality)
        ev = _storms(rain, min_dry_h, min_depth_mm)
        out = []
        for k in range(ev["start_s"].size):
            first, last = int(ev["first_index"][k]), int(ev["last_index"][k])
            out.append(
                StormEvent(
                    site_id=rsite.id,
                    start=to_datetime(ev["start_s"][k]),
                    end=to_datetime(ev["end_s"][k]),
                    depth_mm=float(ev["depth_mm"][k]),
                    duration_h=float(ev["duration_h"][k]),
                    i10_mm_h=float(ev["i10_mm_h"][k]),
                    i30_mm_h=float(ev["i30_mm_h"][k]),
                    i60_mm_h=float(ev["i60_mm_h"][k]),
                    energy_mj_ha=float(ev["energy_mj_ha"][k]),
                    ei30_mj_mm_ha_h=float(ev["ei30_mj_mm_ha_h"][k]),
                    readings=last - first + 1,
                )
            )
        return StormEvents(site_id=site_id, rain_site_id=rsite.id, start=start, end=end,
                           min_dry_h=min_dry_h, events=out)  # fmt: skip

    return cached(conn, key, fp, StormEvents, compute, use_cache)


def _event_windows(
    rain: Series | None,
    data_t: np.ndarray,
    min_dry_h: float,
    min_storm_mm: float,
    lead_h: float,
    tail_h: float,
) -> list[tuple[float, float, float | None]]:
    """(start, end, storm depth) of each event window.

    A window opens ``lead_h`` before a storm's first tip and closes
    ``tail_h`` after its last one, or ``lead_h`` before the next storm.
    Without a rain record the whole data record is one window.
    """
    if rain is None:
        if data_t.size < 2:
            return []
        return [(float(data_t[0]), float(data_t[-1]), None)]
    ev = _storms(rain, min_dry_h, min_storm_mm)
    starts = ev["start_s"] - lead_h * _H
    out = []
    for k in range(starts.size):
        end = ev["end_s"][k] + tail_h * _H
        if k + 1 < starts.size:
            end = min(end, starts[k + 1])
        out.append((float(starts[k]), float(end), float(ev["depth_mm"][k])))
    return out


# --------------------------------------------------------------------------- dams
def _catchment_areas(conn: psycopg.Connection, site_id: str) -> tuple[float | None, list[str]]:
    """Total catchment [km2] of a dam: its own plus that of every dam upstream of it
    (``params.downstream_dam`` links), and the upstream dam ids."""
    rows = conn.execute("SELECT id, params FROM sites WHERE kind = 'check_dam'").fetchall()
    down = {r[0]: (r[1] or {}).get("downstream_dam") for r in rows}
    area = {r[0]: (r[1] or {}).get("catchment_area_km2") for r in rows}
    ups: list[str] = []
    todo = [site_id]
    while todo:
        cur = todo.pop()
        for k, v in down.items():
            if v == cur and k not in ups:
                ups.append(k)
                todo.append(k)
    members = [site_id, *ups]
    if any(area.get(m) is None for m in members):
        return None, ups
    return float(sum(float(area[m]) for m in members)), ups


def _annual_inflow_m3(params: dict, total_area_km2: float | None) -> float | None:
    if params.get("mean_annual_inflow_m3"):
        return float(params["mean_annual_inflow_m3"])
    if total_area_km2 is None:
        return None
    depth = float(params.get("mean_annual_runoff_mm", DEFAULT_ANNUAL_RUNOFF_MM))
    return depth / 1000.0 * total_area_km2 * 1e6


def _capacity(params: dict, curve, design: DamDesign) -> tuple[float, str]:
    if curve.id is None and params.get("silting_storage_m3"):
        return float(params["silting_storage_m3"]), "params.silting_storage_m3 (design)"
    if design.spillway_crest_m is not None and design.spillway_width_m > 0:
        v = float(curve.volume_m3(design.spillway_crest_m))
        return v, "stage-storage curve at the spillway crest"
    if design.dam_crest_m is not None:
        v = float(curve.volume_m3(design.dam_crest_m))
        return v, "stage-storage curve at the dam crest (no spillway, no silting storage given)"
    raise ResearchError("cannot size the storage: no spillway_crest_m or dam_crest_m in params")


def dam_events(
    conn: psycopg.Connection,
    site_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    min_dry_h: float = 6.0,
    min_storm_mm: float = 1.0,
    lead_h: float = 0.5,
    tail_h: float = 24.0,
    smooth_s: float = 300.0,
    outflow: str = "auto",
    exclude_quality: Sequence[int] = DEFAULT_EXCLUDE_QUALITY,
    use_cache: bool = True,
) -> DamEvents:
    """Per event at a check dam: water balance, peak stage, sediment in, out, retained,
    measured trap efficiency beside Gill's.

    Events are the storms (``min_storm_mm`` or more, ``min_dry_h`` apart) at the
    dam's own rain gauge or the nearest one whose window starts in
    ``[start, end]``; a window runs from ``lead_h`` before the storm to
    ``tail_h`` after it (or to the next storm). Inflow is reconstructed from
    the stage by continuity (:func:`.hydro.dam_balance`), the outflow is the
    dam's outflow channel when it has one (``outflow="auto"`` or
    ``"measured"``) or the outlet hydraulics of its design
    (``"hydraulics"``); SSC comes from the turbidity channel through the
    calibration version valid at each reading; sediment leaving is measured
    (pond/outflow turbidity) or modelled (fully mixed pond with settling).
    """
    if outflow not in ("auto", "measured", "hydraulics"):
        raise ResearchError(f"outflow must be 'auto', 'measured' or 'hydraulics', got {outflow!r}")
    site = get_site(conn, site_id, "check_dam")
    rsite = nearest_rain_site(conn, site)
    stage_ids = site.streams_for("stage")
    if not stage_ids:
        raise ResearchError(f"check dam {site_id!r} has no stage channel")
    turb_ch = site.channel_for("inflow_ssc")
    pond_ch = site.channel_for("pond_ssc") or site.channel_for("outflow_ssc")
    flow_ids = site.streams_for("outflow") if outflow != "hydraulics" else []
    if outflow == "measured" and not flow_ids:
        raise ResearchError(f"check dam {site_id!r} has no outflow channel")
    rain_ids = rsite.streams_for("rain") if rsite else []
    ids = [*stage_ids, *rain_ids, *flow_ids]
    for ch in (turb_ch, pond_ch):
        if ch:
            ids.extend(site.streams[ch])
    s0, s1 = epoch(start), epoch(end)
    hi = None if s1 is None else s1 + tail_h * _H
    total_area, ups = _catchment_areas(conn, site_id)
    opts = dict(dry=min_dry_h, storm=min_storm_mm, lead=lead_h, tail=tail_h, smooth=smooth_s,
                outflow=outflow, q=list(exclude_quality))  # fmt: skip
    key = cache_key("dam_events", site=site_id, start=s0, end=s1, **opts)
    fp = fingerprint(conn, stream_ids=ids, start_s=s0, end_s=hi,
                     site_ids=[site_id, *([rsite.id] if rsite else []), *ups])  # fmt: skip

    def compute() -> DamEvents:
        rain = read_series(conn, rain_ids, s0, s1, exclude_quality) if rsite else None
        stage_all = read_series(conn, stage_ids, s0, hi, exclude_quality)
        windows = _event_windows(rain, stage_all.t_s, min_dry_h, min_storm_mm, lead_h, tail_h)
        if s0 is not None:
            windows = [w for w in windows if w[0] >= s0 - lead_h * _H]
        events = _dam_events_in(conn, site, windows, stage_all, total_area, turb_ch, pond_ch,
                                flow_ids, smooth_s, exclude_quality)  # fmt: skip
        return DamEvents(site_id=site_id, rain_site_id=rsite.id if rsite else None, start=start,
                         end=end, events=events)  # fmt: skip

    return cached(conn, key, fp, DamEvents, compute, use_cache)


def _dam_events_in(conn, site: Site, windows, stage_all: Series, total_area, turb_ch, pond_ch,
                   flow_ids, smooth_s, exclude_quality) -> list[DamEvent]:  # fmt: skip
    if not windows or stage_all.t_s.size < 2:
        return []
    lo, hi = windows[0][0], windows[-1][1]
    sel = (stage_all.t_s >= lo) & (stage_all.t_s <= hi)
    t = stage_all.t_s[sel]
    if t.size < 2:
        return []
    h_raw = stage_all.value[sel]
    h = moving_average(t, h_raw, smooth_s)
    params = site.params
    design = DamDesign.from_params(params)
    curves = curve_versions(conn, site.id, params)
    # curve of each interval: the one valid at the start of its event window
    wstart = np.array([w[0] for w in windows])
    wend = np.array([w[1] for w in windows])
    k_win = np.searchsorted(wstart, t[:-1], side="right") - 1
    inside = (k_win >= 0) & (t[:-1] < wend[np.maximum(k_win, 0)])
    ref_t = np.where(inside, wstart[np.maximum(k_win, 0)], t[:-1])
    cidx = curve_index_at(curves, ref_t)
    first_iv = np.searchsorted(t, wstart, side="left")
    reset = np.zeros(t.size - 1, dtype=bool)
    reset[np.clip(first_iv, 0, t.size - 2)] = True
    warnings: list[str] = []
    c_in = None
    sat = outside = None
    if turb_ch:
        c_in, sat, outside, cov_t = _ssc_at(conn, site, turb_ch, t, lo, hi, exclude_quality)
        if cov_t is None:  # the channel exists but sent nothing in these events
            c_in = sat = outside = None
            warnings.append(f"no {turb_ch} readings: sediment not computed")
    c_out = None
    if pond_ch:
        c_out = _ssc_at(conn, site, pond_ch, t, lo, hi, exclude_quality)[0]
    q_out = None
    if flow_ids:
        fl = read_series(conn, flow_ids, lo, hi, exclude_quality)
        if fl.t_s.size >= 2:
            q_out = np.interp(t, fl.t_s, np.maximum(fl.value, 0.0))
    bal = dam_balance(t, h, curves, cidx, design, c_in, q_out, c_out, reset)
    annual = _annual_inflow_m3(params, total_area)
    out = []
    dt = np.diff(t)
    for ws, we, depth in windows:
        i0 = int(np.searchsorted(t, ws, side="left"))
        i1 = int(np.searchsorted(t, we, side="right")) - 1
        if i1 - i0 < 1:
            continue
        iv = slice(i0, i1)
        curve = curves[int(curve_index_at(curves, np.array([ws]))[0])]
        vin = float(bal.inflow_m3[iv].sum())
        vout = float(bal.outflow_m3[iv].sum())
        vloss = float(bal.loss_m3[iv].sum())
        dep_v_in = float(bal.deposit_t[iv].sum()) / design.dry_bulk_density_t_m3
        dstore = float(curve.volume_m3(h[i1]) - curve.volume_m3(h[i0])) - dep_v_in
        k_pk = i0 + int(np.argmax(h[i0 : i1 + 1]))
        w_warn = list(warnings)
        if c_in is not None:
            s_in = float(bal.sediment_in_t[iv].sum())
            s_out = float(bal.sediment_out_t[iv].sum())
            ret = s_in - s_out
            te = ret / s_in if s_in > 0 else None
            cmax = float(np.nanmax(c_in[i0 : i1 + 1]))
            pts = slice(i0, i1 + 1)
            sat_share = float(np.mean(sat[pts])) if sat is not None else None
            out_share = float(np.mean(outside[pts])) if outside is not None else None
            cov = float(np.mean((t[pts] >= cov_t[0]) & (t[pts] <= cov_t[1]))) if cov_t else 0.0
            if sat_share:
                w_warn.append(f"turbidity saturated in {100 * sat_share:.1f}% of readings: "
                              "sediment is underestimated")  # fmt: skip
            if out_share:
                w_warn.append(f"{100 * out_share:.1f}% of turbidity readings outside the "
                              "calibration's sampled range")  # fmt: skip
            if cov < 0.9:
                w_warn.append(f"turbidity covers {100 * cov:.0f}% of the event: SSC filled at ends")
        else:
            s_in = s_out = ret = te = cmax = sat_share = out_share = None
            if not turb_ch:
                w_warn.append("no inflow turbidity channel: sediment not computed")
        try:
            cap, _basis = _capacity(params, curve, design)
        except ResearchError:
            cap = None
        x = cap / annual if (cap and annual) else None
        te_gill = float(trap_efficiency_gill(x)) if x is not None else None
        out.append(
            DamEvent(
                site_id=site.id,
                start=to_datetime(t[i0]),
                end=to_datetime(t[i1]),
                rain_mm=depth,
                curve=curve_out(site.id, curve),
                inflow_volume_m3=vin,
                outflow_volume_m3=vout,
                spill_volume_m3=float(bal.spill_m3[iv].sum()),
                loss_volume_m3=vloss,
                storage_change_m3=dstore,
                peak_stage_m=float(h[k_pk]),
                peak_stage_time=to_datetime(t[k_pk]),
                peak_inflow_m3_s=float(np.max(bal.inflow_m3[iv] / dt[iv])),
                spilled=bool(float(bal.spill_m3[iv].sum()) > 0),
                overtopped=bool(design.dam_crest_m is not None and h[k_pk] > design.dam_crest_m),
                sediment_in_t=s_in,
                sediment_out_t=s_out,
                sediment_retained_t=ret,
                deposit_volume_m3=None if ret is None else ret / design.dry_bulk_density_t_m3,
                trap_efficiency_measured=te,
                trap_efficiency_gill=te_gill,
                gill_capacity_inflow_ratio=x,
                max_inflow_ssc_kg_m3=cmax,
                outflow_source=bal.outflow_source,
                sediment_out_method=bal.sediment_out_method,
                turbidity_saturated_share=sat_share,
                turbidity_outside_calibration_share=out_share,
                stage_readings=i1 - i0 + 1,
                warnings=w_warn,
            )
        )
    return out


def _ssc_at(conn, site: Site, channel: str, t: np.ndarray, lo: float, hi: float, exclude_quality):
    """SSC [kg/m3] at the stage times from a turbidity channel; saturation and
    outside-calibration flags; the time span the channel covers."""
    ids = site.streams[channel]
    ser = read_series(conn, ids, lo, hi, exclude_quality)
    if ser.t_s.size == 0:
        z = np.zeros(t.size)
        return z, np.zeros(t.size, bool), np.zeros(t.size, bool), None
    cals = calibration_versions(conn, site.id, site.params, channel, ids[0] if ids else None)
    ntu = np.maximum(ser.value, 0.0)
    ssc, outside, _ = apply_calibrations(cals, ser.t_s, ntu)
    range_ntu = _range_ntu(site.params, channel)
    sat = ntu >= range_ntu * 0.999 if range_ntu else np.zeros(ntu.size, bool)
    c = np.interp(t, ser.t_s, ssc)
    sat_t = np.interp(t, ser.t_s, sat.astype(float)) > 0.5
    out_t = np.interp(t, ser.t_s, outside.astype(float)) > 0.5
    return c, sat_t, out_t, (float(ser.t_s[0]), float(ser.t_s[-1]))


def _range_ntu(params: dict, channel: str) -> float | None:
    for s in params.get("sensors") or []:
        if isinstance(s, dict) and s.get("channel") == channel and s.get("range_ntu"):
            return float(s["range_ntu"])
    tc = params.get("turbidity_calibration") or {}
    return float(tc["range_ntu"]) if tc.get("range_ntu") else None


def dam_retention(
    conn: psycopg.Connection,
    site_id: str,
    at: datetime | None = None,
    *,
    annual_sediment_inflow_t: float | None = None,
    exclude_quality: Sequence[int] = DEFAULT_EXCLUDE_QUALITY,
    use_cache: bool = True,
    **event_options,
) -> DamRetention:
    """Cumulative sediment retention of a check dam, remaining storage and silting life.

    The baseline is the stage-storage curve valid at ``at`` (default: now):
    a survey measured the deposits before its date, so only events from its
    ``valid_from`` on are summed (the design curve: the whole record).
    Deposit volume = retained mass / ``dry_bulk_density_t_m3``. Silting
    capacity: ``params.silting_storage_m3`` for the design curve, else the
    curve's volume at the spillway crest (or the dam crest). Silting life
    (:func:`analytics.sediment.silting_life_years`) needs a mean annual
    sediment inflow: the argument, ``params.mean_annual_sediment_inflow_t``,
    ``params.sediment_yield_t_km2_yr`` x the total catchment, or the
    record's mean when it spans a year or more; the trap efficiency is the
    measured cumulative one.
    """
    site = get_site(conn, site_id, "check_dam")
    params = site.params
    at_s = epoch(at) if at is not None else datetime.now().timestamp()
    at_dt = to_datetime(at_s)
    curves = curve_versions(conn, site_id, params)
    curve = curves[int(curve_index_at(curves, np.array([at_s]))[0])]
    since = curve.valid_from
    design = DamDesign.from_params(params)
    ev = dam_events(conn, site_id, since, at_dt, exclude_quality=exclude_quality,
                    use_cache=use_cache, **event_options).events  # fmt: skip
    ev = [e for e in ev if e.end.timestamp() <= at_s + event_options.get("tail_h", 24.0) * _H]
    notes: list[str] = []
    has_sed = [e for e in ev if e.sediment_in_t is not None]
    s_in = sum(e.sediment_in_t for e in has_sed) if has_sed else None
    ret = sum(e.sediment_retained_t for e in has_sed) if has_sed else None
    if len(has_sed) < len(ev):
        notes.append(f"{len(ev) - len(has_sed)} event(s) without sediment data")
    cap, basis = _capacity(params, curve, design)
    dep_v = None if ret is None else ret / design.dry_bulk_density_t_m3
    remaining = None if dep_v is None else max(cap - dep_v, 0.0)
    annual, annual_basis = annual_sediment_inflow_t, "argument"
    total_area, _ = _catchment_areas(conn, site_id)
    if annual is None and params.get("mean_annual_sediment_inflow_t"):
        annual = float(params["mean_annual_sediment_inflow_t"])
        annual_basis = "params.mean_annual_sediment_inflow_t"
    if annual is None and params.get("sediment_yield_t_km2_yr") and total_area:
        annual = float(params["sediment_yield_t_km2_yr"]) * total_area
        annual_basis = "params.sediment_yield_t_km2_yr x total catchment"
    if annual is None and s_in is not None and ev:
        span_y = (ev[-1].end - ev[0].start).total_seconds() / (365.25 * 86400)
        if span_y >= 1.0:
            annual = s_in / span_y
            annual_basis = f"measured mean over {span_y:.1f} years"
        else:
            notes.append("record shorter than a year and no mean annual sediment inflow given: "
                         "silting life not estimated")  # fmt: skip
    if annual is None:
        annual_basis = None
    te = (ret / s_in) if (ret is not None and s_in) else None
    life = None
    if annual and remaining is not None:
        life = silting_life_years(remaining, annual, design.dry_bulk_density_t_m3,
                                  trap_efficiency=min(max(te or 1.0, 1e-6), 1.0))  # fmt: skip
    return DamRetention(
        site_id=site_id,
        at=at_dt,
        since=since,
        curve=curve_out(site_id, curve),
        events=len(ev),
        sediment_in_t=s_in,
        sediment_retained_t=ret,
        deposit_volume_m3=dep_v,
        silting_capacity_m3=cap,
        silting_capacity_basis=basis,
        remaining_storage_m3=remaining,
        annual_sediment_inflow_t=annual,
        annual_sediment_inflow_basis=annual_basis,
        trap_efficiency_used=te,
        silting_life_years=life,
        notes=notes,
    )


# -------------------------------------------------------------------------- plots
def plot_events(
    conn: psycopg.Connection,
    site_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    min_dry_h: float = 6.0,
    min_storm_mm: float = 1.0,
    lead_h: float = 0.5,
    tail_h: float = 6.0,
    exclude_quality: Sequence[int] = DEFAULT_EXCLUDE_QUALITY,
    use_cache: bool = True,
) -> PlotEvents:
    """Per runoff plot and storm: runoff volume and depth, runoff coefficient, soil loss.

    Runoff volume = trapezoid integral of the plot's flume discharge
    (``flow_m3_s``) over the event window; depth = volume / ``params.area_m2``;
    coefficient = depth / storm depth. Soil loss: from an SSC channel when the
    plot has one (integral of Q SSC); otherwise MUSLE (Williams 1975) on the
    measured runoff volume and peak with the plot's ``k_factor``,
    ``c_factor``, ``p_factor`` (default 1) and LS from ``length_m`` and
    ``slope_pct`` (CSLE form for steep loess slopes); None if K or C are
    missing. Tank samples, when the survey API adds them, take precedence.
    """
    site = get_site(conn, site_id, "runoff_plot")
    params = site.params
    area = params.get("area_m2")
    if not area:
        raise ResearchError(f"runoff plot {site_id!r} has no params.area_m2")
    area = float(area)
    flow_ids = site.streams_for("inflow") or site.streams.get("flow_m3_s", [])
    if not flow_ids:
        raise ResearchError(f"runoff plot {site_id!r} has no flow channel")
    ssc_ch = site.channel_for("inflow_ssc")
    rsite = nearest_rain_site(conn, site)
    rain_ids = rsite.streams_for("rain") if rsite else []
    s0, s1 = epoch(start), epoch(end)
    hi = None if s1 is None else s1 + tail_h * _H
    ids = [*flow_ids, *rain_ids, *(site.streams[ssc_ch] if ssc_ch else [])]
    key = cache_key("plot_events", site=site_id, start=s0, end=s1, dry=min_dry_h,
                    storm=min_storm_mm, lead=lead_h, tail=tail_h, q=list(exclude_quality))  # fmt: skip
    fp = fingerprint(conn, stream_ids=ids, start_s=s0, end_s=hi,
                     site_ids=[site_id, *([rsite.id] if rsite else [])])  # fmt: skip

    def compute() -> PlotEvents:
        rain = read_series(conn, rain_ids, s0, s1, exclude_quality) if rsite else None
        flow = read_series(conn, flow_ids, s0, hi, exclude_quality)
        windows = _event_windows(rain, flow.t_s, min_dry_h, min_storm_mm, lead_h, tail_h)
        ssc = None
        if ssc_ch:
            lo_w = windows[0][0] if windows else 0.0
            hi_w = windows[-1][1] if windows else 0.0
            ssc = _ssc_at(conn, site, ssc_ch, flow.t_s, lo_w, hi_w, exclude_quality)[0]
        k, c = params.get("k_factor"), params.get("c_factor")
        ls = None
        if params.get("length_m") and params.get("slope_pct"):
            theta = math.atan(float(params["slope_pct"]) / 100.0)
            ls = float(ls_factor(float(params["length_m"]), theta, method="csle"))
        events = []
        for ws, we, depth in windows:
            sel = (flow.t_s >= ws) & (flow.t_s <= we)
            tt, q = flow.t_s[sel], np.maximum(flow.value[sel], 0.0)
            if tt.size < 2:
                continue
            vol = float(np.trapezoid(q, tt))
            qp = float(q.max())
            d_mm = vol / area * 1000.0
            soil, method = None, None
            if ssc is not None:
                soil = float(np.trapezoid(q * ssc[sel], tt)) / 1000.0
                method = "measured Q x SSC"
            elif k is not None and c is not None and ls is not None:
                soil = float(musle_sediment_t(vol, qp, float(k), ls, float(c),
                                              float(params.get("p_factor", 1.0))))  # fmt: skip
                method = "MUSLE (Williams 1975) on measured runoff volume and peak"
            events.append(
                PlotEvent(
                    site_id=site_id,
                    start=to_datetime(ws),
                    end=to_datetime(min(we, tt[-1])),
                    rain_mm=depth,
                    runoff_volume_m3=vol,
                    runoff_depth_mm=d_mm,
                    runoff_coefficient=(d_mm / depth) if depth else None,
                    peak_runoff_m3_s=qp,
                    soil_loss_t=soil,
                    soil_loss_t_ha=None if soil is None else soil / (area / 1e4),
                    soil_loss_method=method,
                )
            )
        return PlotEvents(site_id=site_id, rain_site_id=rsite.id if rsite else None, area_m2=area,
                          events=events)  # fmt: skip

    return cached(conn, key, fp, PlotEvents, compute, use_cache)


# ----------------------------------------------------------------------- cisterns
def _cistern_geometry(params: dict):
    g = params.get("geometry") or {}
    shape = g.get("shape", "bottle")
    if shape == "bottle":
        args = (float(g.get("body_diameter_m", 4.0)), float(g.get("body_height_m", 3.0)),
                float(g.get("neck_diameter_m", 0.8)), float(g.get("shoulder_height_m", 1.5)),
                float(g.get("neck_height_m", 0.0)),
                None if g.get("bottom_diameter_m") is None else float(g["bottom_diameter_m"]))  # fmt: skip
        height = args[1] + args[3] + args[4]
        return (lambda h: bottle_cistern_volume_m3(h, *args)), height
    if shape == "cylinder":
        d = float(g.get("body_diameter_m", 4.0))
        height = float(g.get("depth_m") or g.get("body_height_m", 3.0))
        return (lambda h: cylinder_cistern_volume_m3(h, d, height)), height
    raise ResearchError(f"unknown cistern shape {shape!r}")


def cistern_events(
    conn: psycopg.Connection,
    site_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    min_dry_h: float = 6.0,
    min_storm_mm: float = 1.0,
    lead_h: float = 0.5,
    tail_h: float = 6.0,
    smooth_s: float = 600.0,
    overflow_tolerance_m: float = 0.015,
    exclude_quality: Sequence[int] = DEFAULT_EXCLUDE_QUALITY,
    use_cache: bool = True,
) -> CisternEvents:
    """Per cistern (水窖) and storm: volume harvested and overflow.

    Volumes from the (smoothed) water level through the cistern's geometry
    (``params.geometry``: bottle or cylinder, :mod:`analytics.storage`).
    Harvested = peak volume - volume at the window start + household use
    until the peak (``params.use_m3_day``, default 0). Expected inflow =
    ``runoff_coefficient (P - initial_loss_mm) catchment_area_m2`` from the
    storm depth P (initial loss default 2 mm). When the level reached the
    overflow level (within ``overflow_tolerance_m``), overflow = expected
    inflow - harvested (>= 0), else 0; it is an estimate that inherits the
    runoff coefficient's uncertainty.
    """
    site = get_site(conn, site_id, "cistern")
    params = site.params
    vol_of, height = _cistern_geometry(params)
    top = float(params.get("overflow_level_m") or height)
    cap = float(vol_of(top))
    lvl_ids = site.streams_for("level")
    if not lvl_ids:
        raise ResearchError(f"cistern {site_id!r} has no level channel")
    rsite = nearest_rain_site(conn, site)
    rain_ids = rsite.streams_for("rain") if rsite else []
    s0, s1 = epoch(start), epoch(end)
    hi = None if s1 is None else s1 + tail_h * _H
    key = cache_key("cistern_events", site=site_id, start=s0, end=s1, dry=min_dry_h,
                    storm=min_storm_mm, lead=lead_h, tail=tail_h, smooth=smooth_s,
                    tol=overflow_tolerance_m, q=list(exclude_quality))  # fmt: skip
    fp = fingerprint(conn, stream_ids=[*lvl_ids, *rain_ids], start_s=s0, end_s=hi,
                     site_ids=[site_id, *([rsite.id] if rsite else [])])  # fmt: skip
    area = params.get("catchment_area_m2")
    rc = float(params.get("runoff_coefficient", 0.8))
    loss_mm = float(params.get("initial_loss_mm", 2.0))
    use = float(params.get("use_m3_day", 0.0))

    def compute() -> CisternEvents:
        rain = read_series(conn, rain_ids, s0, s1, exclude_quality) if rsite else None
        lvl = read_series(conn, lvl_ids, s0, hi, exclude_quality)
        windows = _event_windows(rain, lvl.t_s, min_dry_h, min_storm_mm, lead_h, tail_h)
        sm = moving_average(lvl.t_s, lvl.value, smooth_s)
        vol = np.asarray(vol_of(np.clip(sm, 0.0, height)), dtype=float)
        events = []
        for ws, we, depth in windows:
            sel = np.flatnonzero((lvl.t_s >= ws) & (lvl.t_s <= we))
            if sel.size < 2:
                continue
            k0, kp = sel[0], sel[int(np.argmax(vol[sel]))]
            v0, vp = float(vol[k0]), float(vol[kp])
            harvested = max(vp - v0, 0.0) + use * (lvl.t_s[kp] - lvl.t_s[k0]) / 86400.0
            expected = None
            if depth is not None and area:
                expected = rc * max(depth - loss_mm, 0.0) / 1000.0 * float(area)
            reached = bool(sm[kp] >= top - overflow_tolerance_m)
            over = max(expected - harvested, 0.0) if (reached and expected is not None) else 0.0
            events.append(
                CisternEvent(
                    site_id=site_id,
                    start=to_datetime(ws),
                    end=to_datetime(min(we, lvl.t_s[sel[-1]])),
                    rain_mm=depth,
                    start_volume_m3=v0,
                    peak_volume_m3=vp,
                    harvested_volume_m3=harvested,
                    expected_inflow_m3=expected,
                    reached_overflow=reached,
                    overflow_volume_m3=over,
                )
            )
        return CisternEvents(site_id=site_id, rain_site_id=rsite.id if rsite else None,
                             capacity_m3=cap, events=events)  # fmt: skip

    return cached(conn, key, fp, CisternEvents, compute, use_cache)
