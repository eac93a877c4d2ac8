"""The alert rules of each site kind, their configuration, and defaults from the site's design.

Each rule wraps a pure function of ``analytics.alerts`` (or ``analytics.quality``):
it turns a window of one stream's readings into raw levels and *hold* levels
(the rule evaluated with its hysteresis band), 0..4 = none, blue, yellow,
orange, red. A rule's configuration (thresholds, hysteresis, durations) has
defaults derived from ``sites.params`` and engine settings, overridden per
site by engineers (table ``site_rules``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from analytics import alerts as A
from analytics import forecast as F
from analytics import quality as Q
from analytics.storage import CheckDam

COLOURS = ("blue", "yellow", "orange", "red")
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e9, le=1e9)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Thresholds(_Strict):
    """One threshold per colour (``null`` leaves a colour out); the unit is the rule's."""

    blue: Finite | None = None
    yellow: Finite | None = None
    orange: Finite | None = None
    red: Finite | None = None

    def as_list(self) -> list[float | None]:
        return [self.blue, self.yellow, self.orange, self.red]


class RainWindow(_Strict):
    window_h: float = Field(gt=0, le=72, description="accumulation window [h]")
    depth_mm: float = Field(gt=0, le=5000, description="depth reached in that window [mm]")


class RainThresholds(_Strict):
    """Per colour, the (window, depth) pairs of which any one reaches it."""

    blue: list[RainWindow] | None = Field(default=None, max_length=6)
    yellow: list[RainWindow] | None = Field(default=None, max_length=6)
    orange: list[RainWindow] | None = Field(default=None, max_length=6)
    red: list[RainWindow] | None = Field(default=None, max_length=6)


class RuleConfig(_Strict):
    """A rule's configuration at one site."""

    enabled: bool = True
    thresholds: Thresholds | None = None
    rain_thresholds: RainThresholds | None = None
    hysteresis: float = Field(default=0.0, ge=0, le=1e6, description="band, in the rule's unit")
    min_duration_s: float = Field(
        default=1800.0, ge=0, le=30 * 86400, description="hold below a level this long to drop"
    )
    escalate_duration_s: float = Field(
        default=0.0, ge=0, le=30 * 86400, description="stay above a level this long to rise"
    )
    window_s: float | None = Field(
        default=None, gt=0, le=86400, description="rate/forecast window [s]"
    )
    range_min: Finite | None = Field(default=None, description="sensor_fault: lowest valid value")
    range_max: Finite | None = Field(default=None, description="sensor_fault: highest valid value")


@dataclass(frozen=True)
class Context:
    """What a rule needs besides the readings.

    ``extras`` carries data of other streams that the engine reads for rules
    that ask for it (``Rule.context``): ``rain`` (times [s], depths [mm]) of the
    site's own or nearest rain stream and ``upstream`` (a list of
    ``(CheckDam, times [s], stages [m])`` of the dams draining into this one).
    ``from_s``: the rule needs its values only from this time on (earlier
    points may be left at level 0); ``details`` collects what a rule wants
    recorded on its alert (time -> dict).
    """

    kind: str
    params: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    from_s: float | None = None
    details: dict[float, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    channels: tuple[str, ...]  # () = periodic (offline)
    scope: Literal["site", "device", "stream"]
    unit: str
    kinds: tuple[str, ...] | None  # None: every site kind
    needs: tuple[str, ...]  # site params without which the rule does not apply
    defaults: Callable[[Context], dict[str, Any]]
    evaluate: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] | None
    lookback: Callable[[RuleConfig], float]
    flood: bool = False  # raises the site's flood warning (red = the structure fails)
    context: bool = False  # needs ``Context.extras`` (rain, upstream dams)
    check: Callable[[Context], str | None] | None = None  # further reason it cannot apply

    def why_not(self, ctx: Context) -> str | None:
        """None when the rule applies at a site, else the reason it does not."""
        if self.kinds is not None and ctx.kind not in self.kinds:
            return f"applies to {', '.join(self.kinds)}, not to a {ctx.kind}"
        missing = [k for k in self.needs if _num(ctx.params.get(k)) is None]
        if missing:
            return f"site parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)} not set"
        return self.check(ctx) if self.check is not None else None

    def applies(self, ctx: Context) -> bool:
        return self.why_not(ctx) is None


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if np.isfinite(x) else None


def _param_thresholds(params: dict, key: str, fallback: tuple) -> dict[str, float | None]:
    given = params.get(key)
    if isinstance(given, dict):
        return {c: _num(given.get(c)) for c in COLOURS}
    return dict(zip(COLOURS, fallback, strict=True))


def _thr(cfg: RuleConfig) -> dict[str, float | None]:
    t = cfg.thresholds or Thresholds()
    return dict(zip(COLOURS, t.as_list(), strict=True))


def _kw(prefix: str, suffix: str, thr: dict[str, float | None]) -> dict[str, float | None]:
    return {f"{prefix}_{c}{suffix}": thr[c] for c in COLOURS}


# ---------------------------------------------------------------- evaluators
# Each returns (raw levels, hold levels, the value the rule judged), aligned on t.
def _rainfall(t, v, q, cfg: RuleConfig, ctx: Context):
    rt = cfg.rain_thresholds or RainThresholds()
    kw = {
        f"threshold_{c}": None
        if getattr(rt, c) is None
        else [(w.window_h, w.depth_mm) for w in getattr(rt, c)]
        for c in COLOURS
    }
    vals = np.where(q == Q.FAIL, 0.0, v)
    raw = A.rainfall_alert_levels(t, vals, **kw)
    hold = A.rainfall_alert_levels(t, vals, **kw, hysteresis_mm=cfg.hysteresis)
    windows = sorted({w.window_h for c in COLOURS for w in (getattr(rt, c) or [])}) or [3.0]
    from analytics.rainfall import rolling_accumulations_mm

    acc = rolling_accumulations_mm(t, vals, windows_h=windows)
    value = acc[f"acc_{windows[0]:g}h_mm"]
    return raw, hold, value


# ------------------------------------------------------------ check dams
#: Design freeboard (安全超高) by dam class when the registry gives none [m];
#: SL/T 804-2020 ranges: key dams 1.0-1.5 m, medium 0.7-1.0 m, small 0.5 m.
DESIGN_FREEBOARD_M = {"key": 1.0, "medium": 0.8, "small": 0.5}
DEFAULT_FREEBOARD_M = 0.5
#: Red on the stage alone: the water this close to the dam crest, i.e. overtopping [m].
RED_MARGIN_M = 0.01


def design_freeboard_m(params: dict) -> float:
    """The dam's design freeboard: ``design_freeboard_m``, else by ``dam_class``."""
    given = _num(params.get("design_freeboard_m"))
    if given is not None and given > 0:
        return given
    return DESIGN_FREEBOARD_M.get(str(params.get("dam_class")), DEFAULT_FREEBOARD_M)


def _spillway_below_crest(params: dict) -> float | None:
    spill, crest = _num(params.get("spillway_crest_m")), _num(params.get("dam_crest_m"))
    if spill is None or crest is None or spill >= crest:
        return None
    if (_num(params.get("spillway_width_m")) or 1.0) <= 0:
        return None
    return spill


def warning_stage_m(params: dict) -> float:
    """The dam's lower warning level: its spillway crest, else the design freeboard level."""
    spill = _spillway_below_crest(params)
    if spill is not None:
        return spill
    return float(params["dam_crest_m"]) - design_freeboard_m(params)


def _stage_defaults(ctx: Context) -> dict[str, Any]:
    """Freeboard left [m below the dam crest] per colour, from the dam's design.

    With a spillway: blue 0.8 m and yellow 0.3 m below the spillway crest,
    orange when the spillway flows, red 0.01 m below the dam crest (the
    crest is being reached; the forecast rule warns ahead of it). Without
    one: blue and yellow 1.0 and 0.5 m below the design freeboard level,
    orange at it, red 0.01 m below the dam crest.
    """
    p = ctx.params
    crest = _num(p.get("dam_crest_m"))
    spill = _spillway_below_crest(p)
    orange = crest - spill if crest is not None and spill is not None else design_freeboard_m(p)
    orange = max(orange, RED_MARGIN_M)
    fallback = (orange + (0.8 if spill is not None else 1.0),
                orange + (0.3 if spill is not None else 0.5), orange, RED_MARGIN_M)  # fmt: skip
    return {
        "thresholds": _param_thresholds(p, "freeboard_m", tuple(round(x, 3) for x in fallback)),
        "hysteresis": 0.05,
    }


def _stage(t, v, q, cfg: RuleConfig, ctx: Context):
    crest = float(ctx.params["dam_crest_m"])
    kw = _kw("threshold", "_m", _thr(cfg))
    raw = A.stage_alert_levels(v, crest, **kw)
    hold = A.stage_alert_levels(v, crest, **kw, hysteresis_m=cfg.hysteresis)
    return raw, hold, v


def _rise(t, v, q, cfg: RuleConfig, ctx: Context):
    w = cfg.window_s or 1800.0
    kw = _kw("threshold", "_m_h", _thr(cfg))
    raw = A.rate_of_rise_levels(t, v, window_s=w, **kw)
    hold = A.rate_of_rise_levels(t, v, window_s=w, **kw, hysteresis_m_h=cfg.hysteresis)
    return raw, hold, A.rate_of_rise_m_h(t, v, w)


def _has_curve(ctx: Context) -> str | None:
    sc = ctx.params.get("stage_storage")
    if not isinstance(sc, dict) or _num(sc.get("a")) is None or _num(sc.get("b")) is None:
        return "no stage-storage curve (site parameter stage_storage: {a, b})"
    if not (_num(sc.get("a")) > 0 and _num(sc.get("b")) > 0):
        return "stage_storage a and b must be > 0"
    try:  # outlets that do not validate would fail every evaluation: say so instead
        check_dam_model(ctx.params)
    except (KeyError, TypeError, ValueError) as exc:
        return f"the dam's outlets do not validate: {exc}"
    return None


def check_dam_model(params: dict) -> CheckDam:
    """The dam's storage curve and outlets from its registry parameters."""
    sc = params["stage_storage"]
    crest = float(params["dam_crest_m"])
    spill = _spillway_below_crest(params)
    culvert = _num(params.get("culvert_centre_m"))
    return CheckDam(
        storage_a=float(sc["a"]),
        storage_b=float(sc["b"]),
        spillway_crest_m=spill if spill is not None else crest,
        spillway_width_m=(_num(params.get("spillway_width_m")) or 0.0)
        if spill is not None
        else 0.0,
        spillway_coefficient=min(_num(params.get("spillway_coefficient")) or 0.36, 0.385),
        culvert_centre_m=culvert if culvert is not None and culvert < crest else None,
        culvert_area_m2=_num(params.get("culvert_area_m2")) or 0.0,
        culvert_coefficient=min(_num(params.get("culvert_coefficient")) or 0.6, 1.0),
        dam_crest_m=crest,
        dam_crest_length_m=_num(params.get("dam_crest_length_m")) or 0.0,
    )


def catchment_model(params: dict) -> F.Catchment | None:
    area, cn, tc = (_num(params.get(k)) for k in ("catchment_area_km2", "curve_number", "tc_h"))
    if area is None or cn is None or tc is None or area <= 0 or tc <= 0 or not 0 < cn <= 100:
        return None
    return F.Catchment(area, cn, tc)


FORECAST_STEP_S = 60.0  # at most one forecast per this much data time
FORECAST_RAIN_LOOKBACK_S = 24 * 3600.0
FORECAST_STAGE_LOOKBACK_S = 12 * 3600.0


#: The rain-goes-on scenario of the pond forecast: how long the sustained rate is
#: held, and red when the dam crest is reached within this much of now [s].
ONGOING_RAIN_S = 1800.0

#: A level of the pond forecast rises only when the forecasts of the next two minutes
#: confirm it (the rule's default ``escalate_duration_s``) [s]. Near its threshold the
#: rain-goes-on projection flickers with each 0.2 mm tip entering or leaving the
#: 30-minute rate and with the stage's noise; unconfirmed, that flicker was a red on
#: a dam that stopped centimetres short (docs/science.md, pond forecast step 7).
FORECAST_CONFIRM_S = 120.0


def _upstream_inflow(upstream, now: float, start: float, steps, continuing=None):
    """The dams upstream: (their projected outflow at now, now + dt, ... [m3/s] or None,
    what they released since the event started [m3])."""
    up_v = 0.0
    up_flow = None
    for udam, ucat, ut, uh in upstream:
        k = int(np.searchsorted(ut, now, side="right"))
        if k == 0:
            continue
        s0 = int(np.searchsorted(ut, start, side="left"))
        up_v += F.released_volume_m3(ut[s0:k], uh[s0:k], udam)
        uf = F.forecast_pond(
            udam, ut[s0:k], uh[s0:k], now, catchment=ucat, rain_start_s=start,
            rain_steps_mm=steps if steps.size else None, with_outflow=True,
            continuing_rain_mm=continuing,
        )  # fmt: skip
        flow = uf.outflow_m3_s
        if up_flow is None:
            up_flow = flow
        else:
            m = max(up_flow.size, flow.size)
            up_flow = np.pad(up_flow, (0, m - up_flow.size)) + np.pad(flow, (0, m - flow.size))
    return up_flow, up_v


def _forecast(t, v, q, cfg: RuleConfig, ctx: Context):
    """Pond forecast (analytics.forecast) at each new reading; levels by time to crest.

    Two scenarios: the committed runoff alone (no more rain), and the rain going
    on at its sustained rate for ``window_s`` (``ONGOING_RAIN_S`` by default).
    Red when the committed runoff brings the crest within the red threshold, or
    the rain going on brings it within ``window_s``."""
    p = ctx.params
    dam = check_dam_model(p)
    catchment = catchment_model(p)
    warn = warning_stage_m(p)
    rain_t, rain_v = ctx.extras.get("rain") or (np.zeros(0), np.zeros(0))
    upstream = ctx.extras.get("upstream") or []
    thr = _thr(cfg)
    ongoing_s = cfg.window_s if cfg.window_s is not None else ONGOING_RAIN_S
    n = t.size
    raw = np.zeros(n, dtype=np.int8)
    hold = np.zeros(n, dtype=np.int8)
    value = np.full(n, np.nan)
    good = q != Q.FAIL
    tg, vg = t[good], v[good]
    last = -np.inf
    prev: tuple | None = None
    for i in range(n):
        if ctx.from_s is not None and t[i] < ctx.from_s:
            continue
        if prev is not None and t[i] - last < FORECAST_STEP_S:
            raw[i], hold[i], value[i] = prev
            continue
        now = float(t[i])
        j = int(np.searchsorted(tg, now, side="right"))
        if j == 0:
            continue
        start, steps = F.event_rain_steps_mm(
            rain_t, rain_v, now, lookback_s=FORECAST_RAIN_LOOKBACK_S
        )
        up_flow, up_v = _upstream_inflow(upstream, now, start, steps)
        kw = dict(
            catchment=catchment, rain_start_s=start, rain_steps_mm=steps if steps.size else None,
            upstream_volume_m3=up_v, warning_stage_m=warn,
        )  # fmt: skip
        f = F.forecast_pond(dam, tg[:j], vg[:j], now, upstream_inflow_m3_s=up_flow, **kw)
        # blue: the warning stage possible (high inflow); yellow: the crest possible;
        # orange: the warning stage (spillway flow) expected; red: the crest expected
        quantities = (f.time_to_warning_early_s, f.time_to_crest_early_s,
                      f.time_to_warning_s, f.time_to_crest_s)  # fmt: skip
        lv = hv = 0
        for k, (colour, x) in enumerate(zip(COLOURS, quantities, strict=True), start=1):
            limit = thr[colour]
            if limit is None:
                continue
            if x <= limit:
                lv = k
            if x <= limit + cfg.hysteresis:
                hv = k
        # the rain goes on: only where the committed runoff alone does not give red
        ongoing = more = None
        red = thr["red"]
        if red is not None and lv < 4 and steps.size and catchment is not None and ongoing_s > 0:
            more = F.ongoing_rain_steps_mm(steps, F.DT_S, ongoing_s)
            if more.size and more[0] > 0:
                o_flow, _ = _upstream_inflow(upstream, now, start, steps, more)
                ongoing = F.forecast_pond(dam, tg[:j], vg[:j], now, upstream_inflow_m3_s=o_flow,
                                          continuing_rain_mm=more, **kw)  # fmt: skip
                x = ongoing.time_to_crest_s
                if x <= min(ongoing_s, red):
                    lv = 4
                if x <= min(ongoing_s, red) + cfg.hysteresis:
                    hv = 4
        value[i] = f.time_to_crest_s
        if ongoing is not None and lv == 4:
            value[i] = ongoing.time_to_crest_s  # the basis of this red
        raw[i], hold[i] = lv, max(hv, lv)
        prev, last = (raw[i], hold[i], value[i]), now
        ctx.details[now] = {
            "time_to_crest_s": _finite(f.time_to_crest_s),
            "time_to_crest_low_s": _finite(f.time_to_crest_early_s),
            "time_to_crest_high_s": _finite(f.time_to_crest_late_s),
            "crest_at": _finite(now + f.time_to_crest_s),
            "peak_stage_m": round(f.peak_stage_m, 3),
            "peak_stage_high_m": round(f.peak_stage_high_m, 3),
            "crest_m": dam.dam_crest_m,
            "warning_stage_m": round(warn, 3),
            "time_to_warning_s": _finite(f.time_to_warning_s),
            "storage_left_m3": round(f.storage_left_m3, 1),
            "future_inflow_m3": round(f.future_inflow_m3, 1),
            "inflow_factor": round(f.inflow_factor, 3),
            "method": f.method,
            "made_at": now,
            **_ongoing_details(ongoing, more, ongoing_s, now),
        }
    return raw, hold, value


def _ongoing_details(f, more, hold_s: float, now: float) -> dict:
    """The rain-goes-on scenario on the alert: its time to crest and the rate held
    (``more``: the rain per step it assumed)."""
    if f is None:
        return {}
    return {
        "ongoing_rain_mm_h": round(float(more[0]) * 3600.0 / F.DT_S, 2),
        "ongoing_rain_s": hold_s,
        "time_to_crest_ongoing_s": _finite(f.time_to_crest_s),
        "crest_at_ongoing": _finite(now + f.time_to_crest_s),
        "peak_stage_ongoing_m": round(f.peak_stage_m, 3),
    }


def _finite(x: float) -> float | None:
    return round(float(x), 1) if np.isfinite(x) else None


def _overflow(t, v, q, cfg: RuleConfig, ctx: Context):
    top = float(ctx.params["overflow_level_m"])
    kw = _kw("threshold", "_m", _thr(cfg))
    raw = A.cistern_overflow_levels(v, top, **kw)
    hold = A.cistern_overflow_levels(v, top, **kw, hysteresis_m=cfg.hysteresis)
    return raw, hold, v


def _low_storage(t, v, q, cfg: RuleConfig, ctx: Context):
    # stored fraction ~ level / overflow level (a prismatic tank); capacity scales both
    cap = _num(ctx.params.get("capacity_m3")) or 1.0
    vol = np.clip(v / float(ctx.params["overflow_level_m"]), 0.0, None) * cap
    kw = _kw("threshold", "_fraction", _thr(cfg))
    raw = A.cistern_low_storage_levels(vol, cap, **kw)
    hold = A.cistern_low_storage_levels(vol, cap, **kw, hysteresis_fraction=cfg.hysteresis)
    return raw, hold, vol / cap


def _battery(t, v, q, cfg: RuleConfig, ctx: Context):
    thr = _thr(cfg).values()
    raw = A.threshold_levels(v, list(thr), "below")
    hold = A.threshold_levels(v, [None if x is None else x + cfg.hysteresis for x in thr], "below")
    return raw, hold, v


def _sensor_fault(t, v, q, cfg: RuleConfig, ctx: Context):
    flags = q.astype(np.uint8)
    if cfg.range_min is not None and cfg.range_max is not None:
        qc = Q.qc_flags(t, v, fail_span=(cfg.range_min, cfg.range_max))["aggregate"]
        flags = Q.aggregate_flags(flags, qc)
    raw = np.where(flags == Q.FAIL, A.YELLOW, np.where(flags == Q.SUSPECT, A.BLUE, A.NONE))
    return raw.astype(np.int8), raw.astype(np.int8), flags.astype(float)


def _window(default: float) -> Callable[[RuleConfig], float]:
    return lambda cfg: float(cfg.window_s or default) + 60.0


def _rain_lookback(cfg: RuleConfig) -> float:
    rt = cfg.rain_thresholds or RainThresholds()
    ws = [w.window_h for c in COLOURS for w in (getattr(rt, c) or [])]
    return max(ws, default=0.0) * 3600.0


_CMA = {  # CMA rainstorm signals (analytics.rainfall.cma_rainstorm_level)
    "blue": [{"window_h": 12, "depth_mm": 50}],
    "yellow": [{"window_h": 6, "depth_mm": 50}],
    "orange": [{"window_h": 3, "depth_mm": 50}],
    "red": [{"window_h": 3, "depth_mm": 100}],
}


def _plot_tank(t, v, q, cfg: RuleConfig, ctx: Context):
    """Runoff-plot collecting tank: volume of the runoff event so far / tank capacity."""
    cap = float(ctx.params["tank_capacity_m3"])
    flow = np.where((q == Q.FAIL) | ~np.isfinite(v), 0.0, np.maximum(v, 0.0))
    vol = np.zeros(t.size)
    acc, last_wet = 0.0, -np.inf
    for i in range(1, t.size):
        if flow[i] > 0 and t[i] - last_wet > PLOT_EMPTIED_S:
            acc = 0.0  # a new event: the tank was read and emptied after the last one
        acc += 0.5 * (flow[i] + flow[i - 1]) * (t[i] - t[i - 1])
        if flow[i] > 0:
            last_wet = t[i]
        vol[i] = acc
    frac = vol / cap
    thr = list(_thr(cfg).values())
    raw = A.threshold_levels(frac, thr, "above")
    hold = A.threshold_levels(
        frac, [None if x is None else x - cfg.hysteresis for x in thr], "above"
    )
    return raw, hold, frac


PLOT_EMPTIED_S = 6 * 3600.0  # a runoff plot's tank is read and emptied after an event

RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "rainfall",
            "Rain accumulated over rolling windows (CMA four-colour rainstorm signals by default); "
            "at rain gauges (rain at a dam feeds its pond forecast)",
            ("rain_mm",),
            "site",
            "mm",
            ("rain_gauge",),
            (),
            lambda ctx: {
                "rain_thresholds": ctx.params.get("rain_thresholds") or _CMA,
                "hysteresis": 2.0,
            },
            _rainfall,
            _rain_lookback,
        ),
        Rule(
            "stage",
            "Pond stage against the freeboard left below the dam crest [m below the dam crest]; "
            "red 0.01 m below the crest, orange when the spillway flows (or at the design "
            "freeboard without a spillway)",
            ("stage_m",),
            "site",
            "m",
            ("check_dam",),
            ("dam_crest_m",),
            _stage_defaults,
            _stage,
            lambda cfg: 0.0,
            flood=True,
        ),
        Rule(
            "rate_of_rise",
            "Rate of rise of the pond stage over a trailing window [m/h]; a reason to watch, "
            "never red by default (a fast rise alone does not mean overtopping)",
            ("stage_m",),
            "site",
            "m/h",
            ("check_dam",),
            (),
            lambda ctx: {
                "thresholds": _param_thresholds(ctx.params, "rise_m_h", (0.3, 0.6, 1.2, None)),
                "hysteresis": 0.05,
                "window_s": 1800.0,
            },
            _rise,
            _window(1800.0),
        ),
        Rule(
            "overtopping",
            "Pond forecast from the committed runoff, the observed rise, the outlets and the "
            "upstream dams, in time windows [s]: red when the dam crest is expected within it, "
            "or within window_s if the rain goes on at its sustained rate for window_s; "
            "orange when the warning stage is (spillway crest, or the design freeboard level "
            "without a spillway), yellow when the crest is possible (high end of the inflow "
            "band), blue when the warning stage is possible",
            ("stage_m",),
            "site",
            "s",
            ("check_dam",),
            ("dam_crest_m",),
            lambda ctx: {
                "thresholds": _param_thresholds(
                    ctx.params, "overtopping_s", (3 * 3600.0, 3 * 3600.0, 3 * 3600.0, 3 * 3600.0)
                ),
                "hysteresis": 600.0,
                "window_s": ONGOING_RAIN_S,
                "escalate_duration_s": FORECAST_CONFIRM_S,
            },
            _forecast,
            lambda cfg: FORECAST_STAGE_LOOKBACK_S,
            flood=True,
            context=True,
            check=_has_curve,
        ),
        Rule(
            "cistern_overflow",
            "Cistern water level against depths below the overflow [m below overflow]",
            ("level_m",),
            "site",
            "m",
            ("cistern",),
            ("overflow_level_m",),
            lambda ctx: {
                "thresholds": _param_thresholds(
                    ctx.params, "overflow_freeboard_m", (0.3, 0.15, 0.05, 0.0)
                ),
                "hysteresis": 0.02,
            },
            _overflow,
            lambda cfg: 0.0,
            flood=True,
        ),
        Rule(
            "cistern_low_storage",
            "Cistern stored fraction of capacity (level / overflow level) [fraction]",
            ("level_m",),
            "site",
            "fraction",
            ("cistern",),
            ("overflow_level_m",),
            lambda ctx: {
                "thresholds": _param_thresholds(
                    ctx.params, "low_storage_fraction", (0.3, 0.2, 0.1, 0.05)
                ),
                "hysteresis": 0.02,
            },
            _low_storage,
            lambda cfg: 0.0,
        ),
        Rule(
            "plot_tank",
            "Runoff-plot collecting tank: runoff of the event so far (flume flow integrated) "
            "as a fraction of the tank's capacity; red when it is about to overflow [fraction]",
            ("flow_m3_s",),
            "site",
            "fraction",
            ("runoff_plot",),
            ("tank_capacity_m3",),
            lambda ctx: {
                "thresholds": _param_thresholds(
                    ctx.params, "tank_fraction", (0.5, 0.7, 0.85, 0.95)
                ),
                "hysteresis": 0.02,
            },
            _plot_tank,
            lambda cfg: PLOT_EMPTIED_S * 2,
            flood=True,
        ),
        Rule(
            "low_battery",
            "Logger battery voltage at or below thresholds [V]; at most orange (red is kept "
            "for floods)",
            ("battery_v",),
            "device",
            "V",
            None,
            (),
            lambda ctx: {
                "thresholds": _param_thresholds(ctx.params, "battery_v", (11.8, 11.5, 11.0, None)),
                "hysteresis": 0.2,
            },
            _battery,
            lambda cfg: 0.0,
        ),
        Rule(
            "sensor_fault",
            "Readings flagged suspect (blue) or failed (yellow) by QC, per stream",
            ("stage_m", "level_m", "rain_mm", "turbidity_ntu", "flow_m3_s", "ssc_kg_m3"),
            "stream",
            "flag",
            None,
            (),
            lambda ctx: {"min_duration_s": 1800.0},
            _sensor_fault,
            lambda cfg: 0.0,
        ),
        Rule(
            "offline",
            "No data from a logger for N sampling intervals (checked periodically) [intervals]",
            (),
            "device",
            "intervals",
            None,
            (),
            lambda ctx: {
                "thresholds": _param_thresholds(
                    ctx.params, "offline_intervals", (3.0, 12.0, None, None)
                ),
                "min_duration_s": 0.0,
                "window_s": _num(ctx.params.get("sampling_interval_s")) or 600.0,
            },
            None,
            lambda cfg: 0.0,
        ),
    )
}


def effective_config(
    rule: Rule, ctx: Context, override: dict[str, Any] | None, min_duration_s: float
) -> RuleConfig:
    """Defaults (engine settings, then the site's design), then the engineers' override."""
    data: dict[str, Any] = {"min_duration_s": min_duration_s}
    data.update(rule.defaults(ctx))
    for k, v in (override or {}).items():
        # colours left out of an override keep their default; null removes one
        if k in ("thresholds", "rain_thresholds") and isinstance(v, dict):
            base = data.get(k)
            data[k] = {**base, **v} if isinstance(base, dict) else v
        else:
            data[k] = v
    return RuleConfig.model_validate(data)


def validate_config(rule: Rule, cfg: RuleConfig) -> None:
    """Raise ValueError when ``cfg`` does not fit ``rule`` (wrong threshold kind, order)."""
    if rule.name == "rainfall":
        if cfg.thresholds is not None:
            raise ValueError("rule 'rainfall' takes rain_thresholds, not thresholds")
        if cfg.rain_thresholds is not None:
            # ValueError from analytics names the offending pair
            A.rainfall_alert_levels(
                np.array([0.0]),
                np.array([0.0]),
                **{
                    f"threshold_{c}": None
                    if getattr(cfg.rain_thresholds, c) is None
                    else [(w.window_h, w.depth_mm) for w in getattr(cfg.rain_thresholds, c)]
                    for c in COLOURS
                },
            )
        return
    if cfg.rain_thresholds is not None:
        raise ValueError(f"rule {rule.name!r} takes thresholds, not rain_thresholds")
    if cfg.thresholds is None:
        return
    vals = [x for x in cfg.thresholds.as_list() if x is not None]
    falling = rule.name in ("stage", "overtopping", "cistern_overflow", "cistern_low_storage")
    falling = falling or rule.name == "low_battery"
    ordered = all((b <= a) if falling else (b >= a) for a, b in itertools.pairwise(vals))
    if not ordered:
        order = "non-increasing" if falling else "non-decreasing"
        raise ValueError(
            f"thresholds of rule {rule.name!r} must be {order} from blue to red, got {vals}"
        )
    if rule.name == "offline" and any(x <= 0 for x in vals):
        raise ValueError("offline thresholds are numbers of sampling intervals, > 0")


def flood_coverage(
    kind: str, params: dict[str, Any], channels: set[str], disabled: frozenset[str] = frozenset()
) -> tuple[list[str], str | None]:
    """The flood rules that apply at a site, and the reason when none does.

    A flood rule applies when engineers have not disabled it at the site
    (``disabled``), the site's kind and design values allow it and a device of
    the site measures its channel.
    """
    ctx = Context(kind, params or {})
    applying, reasons = [], []
    for rule in RULES.values():
        if not rule.flood or (rule.kinds is not None and kind not in rule.kinds):
            continue
        why = "disabled at this site" if rule.name in disabled else rule.why_not(ctx)
        if why is None and not set(rule.channels) & channels:
            why = f"no device measures {' or '.join(rule.channels)}"
        if why is None:
            applying.append(rule.name)
        else:
            reasons.append(f"{rule.name}: {why}")
    if applying or kind == "rain_gauge" or kind == "other":
        return applying, None
    return [], "; ".join(reasons) or f"no flood rule exists for a {kind}"
