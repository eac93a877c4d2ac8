"""Cheap proofs that a rule stays at level 0 on a window, so the engine may skip evaluating it.

In storm mode most of the plateau's dams are quiet: their new readings are
far from every threshold. Evaluating every rule of every site each minute
(forecast fits, rolling sums) is what limits the engine, so for a rule whose
tracker is at level 0 the engine first asks :func:`is_quiet`: a bound, from
the window's extremes, that no reading of the window can give a raw or hold
level above 0. Then feeding the window to the tracker would change only its
clock, which :func:`rest` does directly; the persisted state is the same as
with a full evaluation.

Each bound belongs to one evaluator of :mod:`.rules`; it is used only while
the rule still has that evaluator (``_BOUNDS`` is keyed by the function), so
a changed rule is simply evaluated in full. Every bound errs on the side of
"not quiet": NaN thresholds, negative rain or too little data fall through
to the real evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics import quality as Q
from analytics.alerts import AlertTracker

from . import rules as R
from .rules import COLOURS, Context, Rule, RuleConfig

_MARGIN = 1e-9  # relative slack against rounding in the evaluators


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Extremes of a stream's readings from some time on; any later start sees less."""

    size: int
    valid: int  # readings with a value (not NaN)
    vmin: float
    vmax: float
    rain_total: float  # sum of values with failed ones as 0 (NaN as 0)
    any_negative: bool  # a value < 0 once failed ones count 0
    any_flagged: bool  # a quality flag suspect or fail
    last_t: float  # time of the newest reading [s]


def window_stats(t: np.ndarray, v: np.ndarray, q: np.ndarray) -> WindowStats:
    """The extremes :func:`is_quiet` needs, of non-empty arrays sorted by time."""
    ok = ~np.isnan(v)
    vv = v[ok]
    kept = np.where(q == Q.FAIL, 0.0, v)
    return WindowStats(
        size=int(t.size),
        valid=int(vv.size),
        vmin=float(vv.min()) if vv.size else np.nan,
        vmax=float(vv.max()) if vv.size else np.nan,
        rain_total=float(np.nansum(kept)),
        any_negative=bool(np.any(kept < 0)),
        any_flagged=bool(np.any((q == Q.FAIL) | (q == Q.SUSPECT))),
        last_t=float(t[-1]),
    )


def from_row(row: tuple) -> WindowStats:
    """WindowStats from a row of :func:`ingest.store.alert_bulk.window_extremes`."""
    size, valid, vmin, vmax, total, negative, flagged, last_t = row
    return WindowStats(
        size=int(size),
        valid=int(valid),
        vmin=np.nan if vmin is None else float(vmin),
        vmax=np.nan if vmax is None else float(vmax),
        rain_total=float(total or 0.0),
        any_negative=bool(negative),
        any_flagged=bool(flagged),
        last_t=float(last_t),
    )


def _given(cfg: RuleConfig) -> list[float]:
    t = cfg.thresholds
    return [] if t is None else [float(x) for x in t.as_list() if x is not None]


# Each bound in two steps: a limit from the configuration (and the site), worked out once per
# configuration object, then a test of the window against it. ALWAYS: nothing to reach.
ALWAYS = object()


def _stage_limit(cfg: RuleConfig, ctx: Context):
    # level >= 1 where stage >= crest - threshold (- hysteresis for hold)
    thr = _given(cfg)
    if not thr:
        return ALWAYS
    crest = float(ctx.params["dam_crest_m"])  # thresholds are depths below the dam crest
    trigger = min(min(crest - x - cfg.hysteresis, crest - x) for x in thr)
    return trigger - _MARGIN * max(1.0, abs(trigger))


def _stage(w: WindowStats, limit) -> bool:
    return w.valid == 0 or w.vmax < limit


def _rise_limit(cfg: RuleConfig, ctx: Context):
    # |rate| = |h(t) - h(t - window)| / window, both stages within the readings' range
    thr = _given(cfg)
    if not thr:
        return ALWAYS
    return (cfg.window_s or 1800.0, min(thr) - cfg.hysteresis)


def _rise(w: WindowStats, limit) -> bool:
    if w.valid < 2:
        return True
    window, lowest = limit
    bound = (w.vmax - w.vmin) / window * 3600.0
    return bound * (1 + _MARGIN) + 1e-12 < lowest


def _rainfall_limit(cfg: RuleConfig, ctx: Context):
    # every rolling sum is at most the sum of the whole window
    rt = cfg.rain_thresholds
    depths = [x.depth_mm for c in COLOURS for x in ((getattr(rt, c) or []) if rt else [])]
    if not depths:
        return ALWAYS
    return min(depths) - cfg.hysteresis


def _rainfall(w: WindowStats, limit) -> bool:
    if w.any_negative:  # the evaluator refuses it: let it say so
        return False
    return w.rain_total * (1 + _MARGIN) + 1e-9 < limit


def _battery_limit(cfg: RuleConfig, ctx: Context):
    # level >= 1 where volts <= threshold (+ hysteresis for hold)
    thr = _given(cfg)
    if not thr:
        return ALWAYS
    highest = max(x + cfg.hysteresis for x in thr)
    return highest + _MARGIN * max(1.0, abs(highest))


def _battery(w: WindowStats, limit) -> bool:
    return w.valid == 0 or w.vmin > limit


def _sensor_fault_limit(cfg: RuleConfig, ctx: Context):
    # with a valid range the QC tests would run: never quiet
    return cfg.range_min is not None and cfg.range_max is not None


def _sensor_fault(w: WindowStats, ranged) -> bool:
    return not ranged and not w.any_flagged


_BOUNDS: dict[Callable, tuple[Callable, Callable[[WindowStats, Any], bool], bool]] = {
    # evaluator -> (its limit, the test, whether the limit depends on the site's crest)
    R._stage: (_stage_limit, _stage, True),
    R._rise: (_rise_limit, _rise, False),
    R._rainfall: (_rainfall_limit, _rainfall, False),
    R._battery: (_battery_limit, _battery, False),
    R._sensor_fault: (_sensor_fault_limit, _sensor_fault, False),
}
# (evaluator, id of the configuration, crest) -> (the configuration, its limit); the entry
# holds the configuration, so its id is not reused while the entry lives
_LIMITS: dict[tuple, tuple[RuleConfig, Any]] = {}


def _limit_of(rule: Rule, cfg: RuleConfig, ctx: Context, site: bool):
    key = (rule.evaluate, id(cfg), ctx.params.get("dam_crest_m") if site else None)
    found = _LIMITS.get(key)
    if found is None or found[0] is not cfg:
        if len(_LIMITS) > 10000:
            _LIMITS.clear()
        found = _LIMITS[key] = (cfg, _BOUNDS[rule.evaluate][0](cfg, ctx))
    return found[1]


def is_quiet(rule: Rule, w: WindowStats, cfg: RuleConfig, ctx: Context) -> bool:
    """True when ``rule`` provably gives raw and hold level 0 at every reading ``w`` covers."""
    bound = _BOUNDS.get(rule.evaluate)
    if bound is None or w.size == 0:
        return False
    try:
        limit = _limit_of(rule, cfg, ctx, bound[2])
    except (KeyError, TypeError, ValueError):  # a parameter the evaluator will complain about
        return False
    return limit is ALWAYS or bool(bound[1](w, limit))


def rest(tracker: AlertTracker, last_time_s: float) -> None:
    """What ``tracker.update`` does at level 0 with raw and hold 0 throughout: move the clock."""
    if tracker.level != 0:
        raise ValueError("only a tracker at level 0 can rest")
    tracker.up_since_s = None
    tracker.down_since_s = None
    tracker.last_time_s = float(last_time_s)


def state(tracker: AlertTracker) -> dict:
    """``tracker.to_dict()`` for a tracker whose fields are plain numbers (a shallow copy)."""
    return dict(vars(tracker))
