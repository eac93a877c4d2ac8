"""Alerts: rule functions that turn series into warning levels per time step, and a
hysteresis / minimum-duration state machine that turns level series into alert
episodes (open, escalate, de-escalate, resolve), usable in batch or incrementally.

Levels follow the Chinese four-colour warning scale as small integers:
0 none, 1 blue (蓝), 2 yellow (黄), 3 orange (橙), 4 red (红).

Rules take ``threshold_*`` keyword arguments, one per colour (``None`` skips a
colour), and a ``hysteresis_*`` band. Calling a rule with the band shifts
every threshold by it towards "easier to reach"; those *hold levels* tell the
state machine how long an alert is still justified::

    raw = stage_alert_levels(stage, crest)
    hold = stage_alert_levels(stage, crest, hysteresis_m=0.05)
    levels, events = track_alerts(times, raw, hold, min_duration_s=1800)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats

from ._validation import as_float_array, check_same_length, times_to_seconds
from .rainfall import rolling_accumulations_mm

__all__ = [
    "BLUE",
    "LEVEL_NAMES",
    "NONE",
    "ORANGE",
    "RED",
    "YELLOW",
    "AlertEvent",
    "AlertTracker",
    "cistern_low_storage_levels",
    "cistern_overflow_levels",
    "level_name",
    "overtopping_alert_levels",
    "rainfall_alert_levels",
    "rate_of_rise_levels",
    "rate_of_rise_m_h",
    "stage_alert_levels",
    "threshold_levels",
    "time_to_overtopping_s",
    "track_alerts",
]

NONE, BLUE, YELLOW, ORANGE, RED = 0, 1, 2, 3, 4
#: Level names, index = level.
LEVEL_NAMES: tuple[str, ...] = ("none", "blue", "yellow", "orange", "red")
_COLOURS = ("blue", "yellow", "orange", "red")


def level_name(level: int) -> str:
    """Name of a level 0..4 (``"none"``, ``"blue"``, ... ``"red"``)."""
    if int(level) != level or not 0 <= int(level) <= 4:
        raise ValueError(f"level must be an integer 0..4, got {level!r}")
    return LEVEL_NAMES[int(level)]


def threshold_levels(values, thresholds, direction: str = "above") -> np.ndarray:
    """Warning level per value from four colour thresholds.

    Parameters
    ----------
    values : array_like
        Values (NaN gives level 0).
    thresholds : sequence of 4 float or None
        Thresholds for blue, yellow, orange, red; ``None`` skips a colour.
        Non-decreasing for ``"above"``, non-increasing for ``"below"``.
    direction : {"above", "below"}
        ``"above"``: a colour is reached when ``value >= threshold``;
        ``"below"``: when ``value <= threshold``.

    Returns
    -------
    numpy.ndarray of int8
        The highest colour reached (0 if none).
    """
    v = as_float_array(values, "values")
    if len(thresholds) != 4:
        raise ValueError(f"thresholds must have 4 entries (blue..red), got {thresholds!r}")
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
    given = [(k + 1, float(x)) for k, x in enumerate(thresholds) if x is not None]
    vals = [x for _, x in given]
    if any(math.isnan(x) for x in vals):
        raise ValueError(f"thresholds must not be NaN, got {thresholds!r}")
    ordered = np.diff(vals) >= 0 if direction == "above" else np.diff(vals) <= 0
    if not np.all(ordered):
        order = "non-decreasing" if direction == "above" else "non-increasing"
        raise ValueError(f"thresholds must be {order} from blue to red, got {thresholds!r}")
    level = np.zeros(v.shape, dtype=np.int8)
    for k, x in given:
        reached = v >= x if direction == "above" else v <= x
        level[reached] = k
    return level


def _check_band(band, name):
    if not (np.isfinite(band) and band >= 0):
        raise ValueError(f"{name} must be >= 0, got {band!r}")
    return float(band)


# ------------------------------------------------------------------------ rules
def rainfall_alert_levels(
    times,
    rain_mm,
    *,
    threshold_blue=((12.0, 50.0),),
    threshold_yellow=((6.0, 50.0),),
    threshold_orange=((3.0, 50.0),),
    threshold_red=((3.0, 100.0),),
    hysteresis_mm: float = 0.0,
) -> np.ndarray:
    """Rainfall warning level per time step from rolling accumulations.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    rain_mm : array_like
        Depth in the interval ending at each time stamp [mm].
    threshold_blue, threshold_yellow, threshold_orange, threshold_red :
        sequence of (window_h, depth_mm) pairs, or None
        A colour is reached when the accumulation over any of its windows is
        >= its depth. Defaults are the CMA rainstorm signals (blue 50 mm in
        12 h, yellow 50 mm in 6 h, orange 50 mm in 3 h, red 100 mm in 3 h),
        see :func:`analytics.rainfall.cma_rainstorm_level`. Add e.g.
        ``(1, 30)`` or ``(24, 80)`` pairs for local flood-prevention plans.
    hysteresis_mm : float
        Band subtracted from every depth (for hold levels).

    Returns
    -------
    numpy.ndarray of int8
        Level 0..4 per time step.
    """
    band = _check_band(hysteresis_mm, "hysteresis_mm")
    rules = {}
    for colour, rule in zip(
        _COLOURS, (threshold_blue, threshold_yellow, threshold_orange, threshold_red), strict=True
    ):
        if rule is None:
            continue
        pairs = [(float(w), float(d)) for w, d in rule]
        for w, d in pairs:
            if not (w > 0 and d > 0):
                raise ValueError(
                    f"threshold_{colour} needs window_h > 0 and depth_mm > 0, got {rule!r}"
                )
        rules[colour] = pairs
    windows = sorted({w for pairs in rules.values() for w, _ in pairs})
    acc = rolling_accumulations_mm(times, rain_mm, windows_h=windows) if windows else {}
    n = np.asarray(rain_mm).shape[0]
    level = np.zeros(n, dtype=np.int8)
    for k, colour in enumerate(_COLOURS, start=1):
        for w, d in rules.get(colour, ()):
            level[acc[f"acc_{w:g}h_mm"] >= d - band] = k  # colours ascend: higher wins
    return level


def stage_alert_levels(
    stage_m,
    spillway_crest_m: float,
    *,
    threshold_blue_m: float | None = 1.0,
    threshold_yellow_m: float | None = 0.5,
    threshold_orange_m: float | None = 0.2,
    threshold_red_m: float | None = 0.0,
    hysteresis_m: float = 0.0,
) -> np.ndarray:
    """Pond-stage warning level against freeboard depths below the spillway crest.

    Parameters
    ----------
    stage_m : array_like
        Pond stage [m], same datum as the crest.
    spillway_crest_m : float
        Spillway crest stage [m].
    threshold_blue_m .. threshold_red_m : float or None
        Depth below the crest [m] at which each colour is reached
        (``stage >= crest - threshold``); non-increasing from blue to red.
        Negative values mean above the crest (e.g. a red level when the
        spillway runs 0.3 m deep). Defaults are placeholders: take them from
        the dam's flood-prevention plan (防汛预案).
    hysteresis_m : float
        Band [m] lowering every trigger stage (for hold levels).

    Returns
    -------
    numpy.ndarray of int8
    """
    band = _check_band(hysteresis_m, "hysteresis_m")
    thr = [threshold_blue_m, threshold_yellow_m, threshold_orange_m, threshold_red_m]
    trig = [None if x is None else spillway_crest_m - float(x) - band for x in thr]
    return threshold_levels(stage_m, trig, "above")


def rate_of_rise_m_h(times, stage_m, window_s: float = 1800.0) -> np.ndarray:
    """Rate of rise of the stage over a trailing window [m/h].

    ``(h(t) - h(t - window)) / window``, with ``h(t - window)`` linearly
    interpolated between readings; NaN until the record covers one window
    and where the stage is NaN.
    """
    t = times_to_seconds(times)
    h = as_float_array(stage_m, "stage_m", ndim=1)
    check_same_length(times=t, stage_m=h)
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    out = np.full(h.shape, np.nan)
    ok = ~np.isnan(h)
    if np.count_nonzero(ok) < 2:
        return out
    past = np.interp(t - window_s, t[ok], h[ok])
    rate = (h - past) / window_s * 3600.0
    covered = t - window_s >= t[ok][0]
    out[covered & ok] = rate[covered & ok]
    return out


def rate_of_rise_levels(
    times,
    stage_m,
    *,
    window_s: float = 1800.0,
    threshold_blue_m_h: float | None = 0.2,
    threshold_yellow_m_h: float | None = 0.5,
    threshold_orange_m_h: float | None = 1.0,
    threshold_red_m_h: float | None = 2.0,
    hysteresis_m_h: float = 0.0,
) -> np.ndarray:
    """Warning level from the rate of rise of the stage (see :func:`rate_of_rise_m_h`).

    Thresholds in m/h, non-decreasing from blue to red (placeholders: set per
    dam from its storage curve and flood plan). Returns int8 levels.
    """
    band = _check_band(hysteresis_m_h, "hysteresis_m_h")
    rate = rate_of_rise_m_h(times, stage_m, window_s)
    thr = [threshold_blue_m_h, threshold_yellow_m_h, threshold_orange_m_h, threshold_red_m_h]
    return threshold_levels(rate, [None if x is None else x - band for x in thr], "above")


def _window_moments(x: np.ndarray, y: np.ndarray, w: np.ndarray, starts: np.ndarray):
    """Sums of w, wx, wx^2, wy, wxy, wy^2 over ``[starts[i], i]`` for every i.

    x is shifted to a per-block origin (blocks of K readings, K at least twice
    the longest window) so that cumulative sums stay small and their
    differences keep ~1e-6 relative precision; a window spans at most two
    blocks, and the part in the second block is re-expressed in the first
    block's origin. Returns the six sums and each window's origin.
    """
    n = x.size
    ends = np.arange(1, n + 1)
    k = max(4096, 2 * int(np.max(ends - starts)))
    blk = np.arange(n) // k
    origin = x[blk * k]
    u = x - origin
    cums = [
        np.concatenate(([0.0], np.cumsum(a)))
        for a in (w, u * w, u * u * w, y * w, u * y * w, y * y * w)
    ]
    mid = np.maximum(blk[ends - 1] * k, starts)
    part_a = [c[mid] - c[starts] for c in cums]
    w0, u1, u2, y1, uy, y2 = (c[ends] - c[mid] for c in cums)
    d = origin[ends - 1] - origin[starts]
    part_b = [w0, u1 + d * w0, u2 + 2.0 * d * u1 + d * d * w0, y1, uy + d * y1, y2]
    return [pa + pb for pa, pb in zip(part_a, part_b, strict=True)], origin[starts]


def time_to_overtopping_s(
    times,
    stage_m,
    crest_m: float,
    *,
    window_s: float = 1800.0,
    min_points: int = 5,
    confidence: float = 0.9,
) -> dict[str, np.ndarray]:
    """Forecast time until the stage reaches a crest, from the rising limb.

    At each time step a straight line is fitted by least squares to the
    stages in ``[t - window_s, t]`` and extrapolated to ``crest_m``.

    Parameters
    ----------
    times : array_like of datetime64 or float seconds
        Sorted time stamps.
    stage_m : array_like
        Stage [m] (NaN readings are skipped).
    crest_m : float
        Level whose reaching is forecast (dam crest for overtopping, or the
        spillway crest) [m].
    window_s : float
        Fitting window [s].
    min_points : int
        Fewer valid readings in the window give NaN, >= 3.
    confidence : float
        Two-sided confidence level of the slope interval.

    Returns
    -------
    dict of numpy.ndarray
        ``estimate_s``: ``(crest - fitted stage now) / slope``; 0 when the
        fitted stage is at or above the crest; inf when not rising.
        ``lower_s`` and ``upper_s``: the same with the slope at the upper and
        lower end of its Student-t confidence interval (``upper_s`` is inf when
        that slope is not positive). ``slope_m_s`` and ``slope_se_m_s``.

    Notes
    -----
    A linear fit is deliberately simple and robust for the short term; a
    rising limb that accelerates makes it late (``lower_s`` is the prudent
    value), and the uncertainty of the fitted level itself is ignored.
    Window sums come from block-wise cumulative sums, O(n).
    """
    t = times_to_seconds(times)
    h = as_float_array(stage_m, "stage_m", ndim=1)
    check_same_length(times=t, stage_m=h)
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    if min_points < 3:
        raise ValueError(f"min_points must be >= 3, got {min_points!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n = t.size
    keys = ("estimate_s", "lower_s", "upper_s", "slope_m_s", "slope_se_m_s")
    if n == 0:
        return {k: np.array([]) for k in keys}
    ok = ~np.isnan(h)
    x = (t - t[0]) / 3600.0  # hours
    y = np.where(ok, h, 0.0)
    w = ok.astype(float)
    starts = np.searchsorted(t, t - window_s, side="left")
    (cnt, sx, sxx, sy, sxy, syy), x0 = _window_moments(x, y, w, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm, ym = sx / cnt, sy / cnt
        vxx = sxx - cnt * xm * xm
        vxy = sxy - cnt * xm * ym
        vyy = syy - cnt * ym * ym
        slope_h = vxy / vxx  # m/h
        resid = np.maximum(vyy - slope_h * vxy, 0.0)
        se_h = np.sqrt(resid / (cnt - 2) / vxx)
        fitted = ym + slope_h * (x - x0 - xm)
        dist = crest_m - fitted
        valid = (cnt >= min_points) & (vxx > 0) & ok
        dof, inv = np.unique(np.maximum(cnt - 2, 1), return_inverse=True)
        tq = stats.t.ppf(0.5 + confidence / 2.0, dof)[inv]  # one ppf per distinct count
        b_hi = slope_h + tq * se_h
        b_lo = slope_h - tq * se_h

        def hours_to(b):
            return np.where(dist <= 0, 0.0, np.where(b > 0, dist / b, np.inf)) * 3600.0

        est, lower, upper = hours_to(slope_h), hours_to(b_hi), hours_to(b_lo)
    out = {
        "estimate_s": est,
        "lower_s": lower,
        "upper_s": upper,
        "slope_m_s": slope_h / 3600.0,
        "slope_se_m_s": se_h / 3600.0,
    }
    for k in keys:
        out[k] = np.where(valid, out[k], np.nan)
    return out


def overtopping_alert_levels(
    times,
    stage_m,
    crest_m: float,
    *,
    window_s: float = 1800.0,
    min_points: int = 5,
    threshold_blue_s: float | None = 6 * 3600.0,
    threshold_yellow_s: float | None = 3 * 3600.0,
    threshold_orange_s: float | None = 3600.0,
    threshold_red_s: float | None = 1800.0,
    use: str = "lower",
    hysteresis_s: float = 0.0,
) -> np.ndarray:
    """Warning level from the forecast time to overtopping.

    A colour is reached when the forecast time (see
    :func:`time_to_overtopping_s`) is at or below its threshold [s]
    (non-increasing from blue to red). ``use="lower"`` (default) takes the
    early end of the interval, ``"estimate"`` the central value. A stage at
    or above the crest gives red (time 0). ``hysteresis_s`` lengthens every
    threshold (for hold levels).
    """
    band = _check_band(hysteresis_s, "hysteresis_s")
    if use not in ("lower", "estimate"):
        raise ValueError(f"use must be 'lower' or 'estimate', got {use!r}")
    f = time_to_overtopping_s(times, stage_m, crest_m, window_s=window_s, min_points=min_points)
    tt = f["lower_s" if use == "lower" else "estimate_s"]
    h = as_float_array(stage_m, "stage_m", ndim=1)
    tt = np.where(h >= crest_m, 0.0, tt)
    thr = [threshold_blue_s, threshold_yellow_s, threshold_orange_s, threshold_red_s]
    return threshold_levels(tt, [None if x is None else x + band for x in thr], "below")


def cistern_overflow_levels(
    level_m,
    overflow_level_m: float,
    *,
    threshold_blue_m: float | None = 0.3,
    threshold_yellow_m: float | None = 0.15,
    threshold_orange_m: float | None = 0.05,
    threshold_red_m: float | None = 0.0,
    hysteresis_m: float = 0.0,
) -> np.ndarray:
    """Cistern (水窖) overflow warning: water level against depths below the overflow.

    A colour is reached when ``level >= overflow_level - threshold`` (thresholds
    [m] non-increasing from blue to red; placeholders). Returns int8 levels.
    """
    band = _check_band(hysteresis_m, "hysteresis_m")
    thr = [threshold_blue_m, threshold_yellow_m, threshold_orange_m, threshold_red_m]
    trig = [None if x is None else overflow_level_m - float(x) - band for x in thr]
    return threshold_levels(level_m, trig, "above")


def cistern_low_storage_levels(
    volume_m3,
    capacity_m3: float,
    *,
    threshold_blue_fraction: float | None = 0.3,
    threshold_yellow_fraction: float | None = 0.2,
    threshold_orange_fraction: float | None = 0.1,
    threshold_red_fraction: float | None = 0.05,
    hysteresis_fraction: float = 0.0,
) -> np.ndarray:
    """Cistern low-storage (drought supply) warning from the stored fraction.

    A colour is reached when ``volume / capacity <= threshold`` (fractions
    non-increasing from blue to red). ``hysteresis_fraction`` raises every
    threshold (for hold levels). Returns int8 levels.
    """
    if not capacity_m3 > 0:
        raise ValueError(f"capacity_m3 must be > 0, got {capacity_m3!r}")
    band = _check_band(hysteresis_fraction, "hysteresis_fraction")
    frac = as_float_array(volume_m3, "volume_m3") / capacity_m3
    thr = [threshold_blue_fraction, threshold_yellow_fraction, threshold_orange_fraction,
           threshold_red_fraction]  # fmt: skip
    return threshold_levels(frac, [None if x is None else x + band for x in thr], "below")


# ---------------------------------------------------------------- state machine
class AlertEvent(NamedTuple):
    """One lifecycle event of an alert episode."""

    time_s: float
    kind: str
    """``"open"``, ``"escalate"``, ``"deescalate"`` or ``"resolve"``."""
    level: int
    """Level after the event (0 for resolve)."""
    previous_level: int
    episode_start_s: float
    """Time the episode opened (identifies the episode)."""


@dataclass
class AlertTracker:
    """Hysteresis and minimum-duration state machine for one alert stream.

    Rules:

    * **escalate / open**: when the raw level exceeds the current level for
      ``escalate_duration_s`` (0 = at once), the level rises to the lowest
      raw level seen during that time (0 -> n opens an episode);
    * **de-escalate**: when the *hold* level (the rule evaluated with its
      hysteresis band) has stayed below the current level for
      ``min_duration_s``, the level falls to the highest hold level seen in
      that time;
    * **resolve**: de-escalation to 0, i.e. hold level 0 for
      ``min_duration_s``; the episode closes.

    A noisy value hovering at a threshold therefore cannot flap: dropping
    needs both the band and the duration, and each interruption restarts the
    clock. Durations are measured between time stamps; transitions happen at
    the first reading at which the condition has held long enough.

    Feed it incrementally with :meth:`update`; persist it between batches
    with :meth:`to_dict` / :meth:`from_dict` (JSON-safe). Feeding a series in
    one call or in any number of chunks gives the same events.

    Attributes
    ----------
    min_duration_s : float
        Time the hold level must stay below the current level to de-escalate
        or resolve [s].
    escalate_duration_s : float
        Time the raw level must stay above the current level to escalate [s].
    level : int
        Current level 0..4.
    episode_start_s : float or None
        Start of the open episode.
    peak_level : int
        Highest level of the open episode.
    last_time_s : float or None
        Time stamp of the last reading fed.
    """

    min_duration_s: float = 1800.0
    escalate_duration_s: float = 0.0
    level: int = 0
    episode_start_s: float | None = None
    peak_level: int = 0
    last_time_s: float | None = None
    up_since_s: float | None = None
    up_level: int = 0
    down_since_s: float | None = None
    down_level: int = 0

    def __post_init__(self):
        if not (np.isfinite(self.min_duration_s) and self.min_duration_s >= 0):
            raise ValueError(f"min_duration_s must be >= 0, got {self.min_duration_s!r}")
        if not (np.isfinite(self.escalate_duration_s) and self.escalate_duration_s >= 0):
            raise ValueError(f"escalate_duration_s must be >= 0, got {self.escalate_duration_s!r}")
        if self.level not in range(5):
            raise ValueError(f"level must be 0..4, got {self.level!r}")

    # -- persistence
    def to_dict(self) -> dict:
        """JSON-safe state (config and progress)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AlertTracker:
        """Rebuild a tracker saved with :meth:`to_dict`."""
        return cls(**data)

    # -- per-reading transition (the specification)
    def _emit(self, events, t, new):
        old = self.level
        if old == 0:
            kind = "open"
            self.episode_start_s = t
            self.peak_level = new
        elif new == 0:
            kind = "resolve"
        elif new > old:
            kind = "escalate"
        else:
            kind = "deescalate"
        events.append(AlertEvent(t, kind, int(new), int(old), float(self.episode_start_s)))
        self.level = int(new)
        self.peak_level = max(self.peak_level, self.level)
        if new == 0:
            self.episode_start_s = None
            self.peak_level = 0

    def _step(self, t: float, raw: int, hold: int, events: list) -> bool:
        changed_any = False
        for _ in range(10):  # each pass moves the level; 10 bounds the loop safely
            changed = False
            if raw > self.level:
                self.down_since_s = None
                if self.up_since_s is None:
                    self.up_since_s, self.up_level = t, raw
                else:
                    self.up_level = min(self.up_level, raw)
                if t - self.up_since_s >= self.escalate_duration_s:
                    self._emit(events, t, self.up_level)
                    self.up_since_s = None
                    changed = True
            else:
                self.up_since_s = None
                if hold < self.level:
                    if self.down_since_s is None:
                        self.down_since_s, self.down_level = t, hold
                    else:
                        self.down_level = max(self.down_level, hold)
                    if t - self.down_since_s >= self.min_duration_s:
                        self._emit(events, t, self.down_level)
                        self.down_since_s = None
                        changed = True
                else:
                    self.down_since_s = None
            changed_any |= changed
            if not changed:
                break
        self.last_time_s = t
        return changed_any

    def _deadline(self):
        if self.up_since_s is not None:
            return self.up_since_s, self.escalate_duration_s
        if self.down_since_s is not None:
            return self.down_since_s, self.min_duration_s
        return None

    def update(self, times, levels, hold_levels=None) -> list[AlertEvent]:
        """Feed new readings; return the events they cause.

        Parameters
        ----------
        times : array_like of datetime64 or float seconds
            Sorted time stamps, all after the last one already fed.
        levels : array_like of int
            Raw rule levels 0..4.
        hold_levels : array_like of int, optional
            Levels of the same rule evaluated with its hysteresis band
            (defaults to ``levels``: no band); taken as at least ``levels``.

        Returns
        -------
        list of AlertEvent
        """
        events, _ = self._run(times, levels, hold_levels)
        return events

    def _run(self, times, levels, hold_levels):
        t = times_to_seconds(times)
        raw = np.asarray(levels)
        hold = raw if hold_levels is None else np.asarray(hold_levels)
        check_same_length(times=t, levels=raw, hold_levels=hold)
        for name, a in (("levels", raw), ("hold_levels", hold)):
            if a.size and not np.all(np.isin(a, (0, 1, 2, 3, 4))):
                raise ValueError(f"{name} must be integers 0..4")
        raw = raw.astype(np.int64)
        hold = np.maximum(hold.astype(np.int64), raw)
        if t.size and self.last_time_s is not None and t[0] <= self.last_time_s:
            raise ValueError(
                f"times must be after the last time already fed ({self.last_time_s!r}), "
                f"got {t[0]!r}"
            )
        events: list[AlertEvent] = []
        trans_idx: list[int] = []
        trans_level: list[int] = []
        n = t.size
        if n == 0:
            return events, np.zeros(0, dtype=np.int8)
        start_level = self.level
        # runs of identical (raw, hold): inside a run only time-triggered changes happen
        change = np.flatnonzero((np.diff(raw) != 0) | (np.diff(hold) != 0)) + 1
        run_starts = np.concatenate(([0], change))
        run_ends = np.concatenate((change - 1, [n - 1]))
        for a, b in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
            r, h = int(raw[a]), int(hold[a])
            i = a
            if self._step(float(t[i]), r, h, events):
                trans_idx.append(i)
                trans_level.append(self.level)
            while i < b:
                dl = self._deadline()
                if dl is None:
                    break
                since, dur = dl
                j = max(int(np.searchsorted(t, since + dur, side="left")), i + 1)
                while j <= b and not (t[j] - since >= dur):
                    j += 1
                while j - 1 > i and t[j - 1] - since >= dur:
                    j -= 1
                if j > b:
                    break
                i = j
                if self._step(float(t[i]), r, h, events):
                    trans_idx.append(i)
                    trans_level.append(self.level)
            self.last_time_s = float(t[b])
        values = np.array([start_level, *trans_level], dtype=np.int8)
        pos = np.searchsorted(np.array(trans_idx, dtype=np.int64), np.arange(n), side="right")
        return events, values[pos]


def track_alerts(
    times,
    levels,
    hold_levels=None,
    *,
    min_duration_s: float = 1800.0,
    escalate_duration_s: float = 0.0,
    tracker: AlertTracker | None = None,
) -> tuple[np.ndarray, list[AlertEvent]]:
    """Turn a level series into alert episodes (batch form of :class:`AlertTracker`).

    Parameters
    ----------
    times, levels, hold_levels
        See :meth:`AlertTracker.update`.
    min_duration_s, escalate_duration_s : float
        See :class:`AlertTracker` (ignored when ``tracker`` is given).
    tracker : AlertTracker, optional
        Continue from a saved state; it is updated in place.

    Returns
    -------
    alert_levels : numpy.ndarray of int8
        The alert's level after each reading.
    events : list of AlertEvent
    """
    if tracker is None:
        tracker = AlertTracker(
            min_duration_s=min_duration_s, escalate_duration_s=escalate_duration_s
        )
    events, out = tracker._run(times, levels, hold_levels)
    return out, events
