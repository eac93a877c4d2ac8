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
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from analytics import alerts as A
from analytics import quality as Q

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
    """What a rule needs besides the readings."""

    kind: str
    params: dict[str, Any]


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

    def applies(self, ctx: Context) -> bool:
        if self.kinds is not None and ctx.kind not in self.kinds:
            return False
        return all(_num(ctx.params.get(k)) is not None for k in self.needs)


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


def _stage(t, v, q, cfg: RuleConfig, ctx: Context):
    crest = float(ctx.params["spillway_crest_m"])
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


def _crest(params: dict) -> float:
    return float(_num(params.get("dam_crest_m")) or params["spillway_crest_m"])


def _overtopping(t, v, q, cfg: RuleConfig, ctx: Context):
    w = cfg.window_s or 1800.0
    crest = _crest(ctx.params)
    kw = _kw("threshold", "_s", _thr(cfg))
    raw = A.overtopping_alert_levels(t, v, crest, window_s=w, **kw)
    hold = A.overtopping_alert_levels(t, v, crest, window_s=w, **kw, hysteresis_s=cfg.hysteresis)
    value = A.time_to_overtopping_s(t, v, crest, window_s=w)["lower_s"]
    return raw, hold, value


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

RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "rainfall",
            "Rain accumulated over rolling windows (CMA four-colour rainstorm signals by default)",
            ("rain_mm",),
            "site",
            "mm",
            None,
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
            "Pond stage against freeboard depths below the spillway crest [m below crest]",
            ("stage_m",),
            "site",
            "m",
            ("check_dam",),
            ("spillway_crest_m",),
            lambda ctx: {
                "thresholds": _param_thresholds(ctx.params, "freeboard_m", (1.0, 0.5, 0.2, 0.0)),
                "hysteresis": 0.05,
            },
            _stage,
            lambda cfg: 0.0,
        ),
        Rule(
            "rate_of_rise",
            "Rate of rise of the pond stage over a trailing window [m/h]",
            ("stage_m",),
            "site",
            "m/h",
            ("check_dam",),
            ("spillway_crest_m",),
            lambda ctx: {
                "thresholds": _param_thresholds(ctx.params, "rise_m_h", (0.2, 0.5, 1.0, 2.0)),
                "hysteresis": 0.05,
                "window_s": 1800.0,
            },
            _rise,
            _window(1800.0),
        ),
        Rule(
            "overtopping",
            "Forecast time until the stage reaches the dam crest [s]",
            ("stage_m",),
            "site",
            "s",
            ("check_dam",),
            ("spillway_crest_m",),
            lambda ctx: {
                "thresholds": _param_thresholds(
                    ctx.params, "overtopping_s", (6 * 3600.0, 3 * 3600.0, 3600.0, 1800.0)
                ),
                "hysteresis": 600.0,
                "window_s": 1800.0,
            },
            _overtopping,
            _window(1800.0),
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
            "low_battery",
            "Logger battery voltage at or below thresholds [V]",
            ("battery_v",),
            "device",
            "V",
            None,
            (),
            lambda ctx: {
                "thresholds": _param_thresholds(ctx.params, "battery_v", (11.8, 11.5, 11.0, 10.5)),
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
