"""Sensors and loggers: what the field loggers measure and send, not the true state.

Each site has one logger whose device id is the site id. It samples every
``dry_interval_s`` (600 s) in dry weather and every ``event_interval_s`` (60 s)
in event mode, which rain at the site (or, at a dam, flow over the spillway)
triggers and which lasts ``event_hold_s`` after the last trigger. Sensors add
noise, drift, quantisation, calibration scatter and saturation; faults from
the scenario are applied on top. Samples are batched into numbered telemetry
messages in the protocol's row form.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from protocol.messages import MAX_READINGS_PER_MESSAGE
from protocol.topics import DEFAULT_ROOT, Topic

from .physics import SimResult
from .scenario import Fault, Scenario, SensorSpec

__all__ = ["LoggerOutput", "Message", "generate_messages"]

SEND_LATENCY_S = 5.0
BEIJING_OFFSET_H = 8.0


@dataclass
class Message:
    """One telemetry message as the logger sends it."""

    device: str
    seq: int
    send_s: float  # true simulated time of sending, seconds from the run start
    topic: str
    payload: bytes
    first_sample_s: float
    last_sample_s: float
    n_readings: int


@dataclass
class LoggerOutput:
    device: str
    channels: list[str]
    messages: list[Message] = field(default_factory=list)
    samples: int = 0
    readings: int = 0
    last_battery_v: float = 12.8
    last_rssi_dbm: float = -85.0


def _window(f: Fault, start: datetime, t: np.ndarray) -> np.ndarray:
    t0 = (f.start - start).total_seconds() if f.start is not None else f.start_offset_h * 3600.0
    return (t >= t0) & (t < t0 + f.duration_h * 3600.0)


def _fault_t0(f: Fault, start: datetime) -> float:
    return (f.start - start).total_seconds() if f.start is not None else f.start_offset_h * 3600.0


def _default_spike(channel: str) -> float:
    if channel.endswith("_ntu"):
        return 1500.0
    if channel.endswith("_m3_s"):
        return 5.0
    if channel.endswith("_mm"):
        return 10.0
    return 2.0


def _measure(sensor: SensorSpec, true_v: np.ndarray, t_s: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    n = true_v.size
    if sensor.model == "gauge":
        v = true_v + sensor.offset + sensor.drift_per_day * t_s / 86400.0
        v = v + rng.normal(0.0, sensor.noise, n) if sensor.noise > 0 else v
        if sensor.resolution > 0:
            v = np.round(v / sensor.resolution) * sensor.resolution
        return v
    if sensor.model == "flow":
        v = true_v * (1.0 + rng.normal(0.0, sensor.noise_rel, n)) if sensor.noise_rel else true_v
        return np.maximum(v, 0.0)
    if sensor.model == "turbidity":
        cal = sensor.calibration
        assert cal is not None
        ntu = cal.ntu(np.maximum(true_v, 0.0))
        if sensor.scatter > 0:
            ntu = ntu * np.exp(rng.normal(0.0, sensor.scatter, n))
        if sensor.noise > 0:
            ntu = ntu + rng.normal(0.0, sensor.noise, n)
        return np.clip(ntu, 0.0, sensor.range_ntu)
    raise ValueError(f"unknown sensor model {sensor.model!r}")


def _tipping_bucket(sensor: SensorSpec, cum_rain_at: np.ndarray) -> np.ndarray:
    tips = np.floor(cum_rain_at * sensor.catch_efficiency / sensor.tip_mm + 1e-9)
    return np.diff(tips, prepend=tips[0] if tips.size else 0.0) * sensor.tip_mm


def _round(channel: str, v: np.ndarray) -> np.ndarray:
    if channel.endswith("_m"):
        return np.round(v, 4)
    if channel.endswith("_ntu"):
        return np.round(v, 1)
    if channel.endswith("_mm"):
        return np.round(v, 2)
    if channel == "battery_v":
        return np.round(v, 3)
    if channel == "rssi_dbm":
        return np.round(v, 0)
    return np.array([float(f"{x:.5g}") for x in v]) if v.size else v


def _iso_seconds(start: datetime, t_s: np.ndarray) -> list[str]:
    base = np.datetime64(start.replace(tzinfo=None), "ms")
    stamps = base + np.round(t_s * 1000.0).astype("timedelta64[ms]")
    text = np.datetime_as_string(stamps, unit="ms")
    return [s[:-4] + "Z" if s.endswith(".000") else s + "Z" for s in text]


def generate_messages(scenario: Scenario, result: SimResult, root: str = DEFAULT_ROOT,
                      seed: int | None = None, replace: bool = False
                      ) -> dict[str, LoggerOutput]:  # fmt: skip
    """Sample every logger over the run and build its telemetry messages (ordered by seq).

    ``replace`` marks every message ``"replace": true`` (the receiver overwrites the
    values it holds at the same times; docs/protocol.md).
    """
    start = scenario.start
    rng_master = np.random.default_rng(scenario.seed if seed is None else seed)
    base_dt = result.base_dt_s
    n_base = result.base_rain_mm.shape[1]
    row = {sid: k for k, sid in enumerate(result.site_ids)}
    faults_by_dev: dict[str, list[Fault]] = {}
    for f in scenario.faults:
        faults_by_dev.setdefault(f.device, []).append(f)
    outputs: dict[str, LoggerOutput] = {}
    for site in scenario.sites():
        rng = np.random.default_rng(rng_master.integers(2**63))
        lg = site.logger
        truth = result.sites[site.id]
        rain = result.base_rain_mm[row[site.id]]
        cum_rain = np.concatenate([[0.0], np.cumsum(rain)])
        # --- event mode on the event-interval grid ---------------------------------
        ev_dt = float(lg.event_interval_s)
        n_slots = math.floor(n_base * base_dt / ev_dt) + 1
        slot_t = np.arange(n_slots) * ev_dt
        cum_at = np.interp(slot_t, np.arange(n_base + 1) * base_dt, cum_rain)
        look = max(1, round(600.0 / ev_dt))
        recent = cum_at - np.concatenate([np.zeros(look), cum_at[:-look]])[:n_slots]
        trigger = recent >= max(lg.event_trigger_rain_mm, 1e-9)
        if truth.kind == "check_dam":  # water over the spillway or the crest keeps it awake
            over = truth.columns["spillway_m3_s"] + truth.columns["overtopping_m3_s"]
            trigger |= np.interp(slot_t, result.t_s, over) > 0
        hold = round(lg.event_hold_s / ev_dt)
        last_trig = np.where(trigger, np.arange(n_slots), -(10**9))
        last_trig = np.maximum.accumulate(last_trig)
        event = (np.arange(n_slots) - last_trig) <= hold
        ratio = max(1, round(lg.dry_interval_s / ev_dt))
        take = event | (np.arange(n_slots) % ratio == 0)
        t_samp = slot_t[take]
        ev_samp = event[take]
        ns = t_samp.size
        # --- channel values -------------------------------------------------------
        values: dict[str, np.ndarray] = {}
        for sensor in site.sensors:
            if sensor.model == "tipping_bucket":
                values[sensor.channel] = _tipping_bucket(
                    sensor, np.interp(t_samp, np.arange(n_base + 1) * base_dt, cum_rain)
                )
                continue
            col = {
                "stage": "stage_m",
                "level": "level_m",
                "inflow": "inflow_m3_s",
                "outflow": "outflow_m3_s",
                "inflow_ssc": "inflow_ssc_kg_m3",
                "pond_ssc": "pond_ssc_kg_m3",
            }.get(sensor.measures)
            if col is None or col not in truth.columns:
                raise ValueError(f"{site.id}: sensor {sensor.channel} measures {sensor.measures}, "
                                 f"which a {truth.kind} does not have")  # fmt: skip
            true_v = np.interp(t_samp, result.t_s, truth.columns[col])
            values[sensor.channel] = _measure(sensor, true_v, t_samp, rng)
        # battery: solar charging by day (Beijing time), slow drain, a dip while raining
        start_h = start.hour + start.minute / 60.0 + start.second / 3600.0
        local_h = ((t_samp / 3600.0) + start_h + BEIJING_OFFSET_H) % 24.0
        sun = np.clip(np.sin((local_h - 6.0) / 12.0 * math.pi), 0.0, None) if lg.solar else 0.0
        wet = np.interp(t_samp, slot_t, recent) > 0
        batt = lg.battery_v - 0.25 + 0.55 * sun * np.where(wet, 0.2, 1.0) - 0.002 * t_samp / 86400
        values["battery_v"] = batt + rng.normal(0.0, 0.01, ns)
        values["rssi_dbm"] = lg.rssi_dbm + rng.normal(0.0, 2.0, ns) - 4.0 * wet
        # --- faults ---------------------------------------------------------------
        t_dev = t_samp.copy()
        present = {ch: np.ones(ns, dtype=bool) for ch in values}
        for f in faults_by_dev.get(site.id, []):
            w = _window(f, start, t_samp)
            chans = [f.channel] if f.channel else list(values)
            for ch in chans:
                if ch not in values:
                    raise ValueError(f"fault on {site.id}: no channel {ch}")
                v = values[ch]
                if f.kind == "stuck" and w.any():
                    i0 = int(np.argmax(w))
                    v[w] = v[max(i0 - 1, 0)]
                elif f.kind == "spikes":
                    hit = w & (rng.random(ns) < f.probability)
                    mag = f.magnitude or _default_spike(ch)
                    v[hit] += mag * rng.choice([-1.0, 1.0], hit.sum())
                    if ch.endswith("_ntu") or ch.endswith("_mm") or ch.endswith("_m3_s"):
                        v[hit] = np.abs(v[hit])
                elif f.kind == "dropout":
                    present[ch] &= ~w
                elif f.kind == "fouling":
                    days = np.maximum(t_samp - _fault_t0(f, start), 0.0) / 86400.0
                    rate = f.magnitude or 0.1
                    if ch.endswith("_ntu"):
                        v[w] = v[w] * (1.0 + rate * days[w])
                    else:
                        v[w] = v[w] + rate * days[w]
            if f.kind == "clock_drift":
                t0 = _fault_t0(f, start)
                after = t_samp >= t0
                t_dev[after] = t_samp[after] + f.drift_ppm * 1e-6 * (t_samp[after] - t0)
        # --- messages -------------------------------------------------------------
        chans = list(values)
        rounded = {ch: _round(ch, values[ch]).tolist() for ch in chans}
        pres = {ch: present[ch].tolist() for ch in chans}
        stamps = _iso_seconds(start, t_dev)
        out = LoggerOutput(site.id, chans)
        topic = str(Topic.telemetry(site.id, root))
        seq = 0
        i = 0
        max_samples = max(1, MAX_READINGS_PER_MESSAGE // max(len(chans), 1))
        drift_of = _clock_of(faults_by_dev.get(site.id, []), start)
        while i < ns:
            n_batch = lg.event_send_every if ev_samp[i] else lg.dry_send_every
            j = i + 1
            while j < ns and j - i < min(n_batch, max_samples):
                if ev_samp[j] and not ev_samp[i]:
                    break  # entering event mode: send what is held now
                j += 1
            readings = [
                {"t": stamps[k], "ch": ch, "v": rounded[ch][k]}
                for k in range(i, j)
                for ch in chans
                if pres[ch][k]
            ]
            send_s = float(t_samp[j - 1]) + SEND_LATENCY_S
            if readings:
                seq += 1
                sent_at = _iso_seconds(start, np.array([drift_of(send_s)]))[0]
                body = {"device": site.id, "seq": seq, "sent_at": sent_at, "readings": readings}
                if replace:
                    body["replace"] = True
                payload = json.dumps(body, separators=(",", ":")).encode()
                out.messages.append(
                    Message(
                        site.id,
                        seq,
                        send_s,
                        topic,
                        payload,
                        float(t_samp[i]),
                        float(t_samp[j - 1]),
                        len(readings),
                    )
                )
                out.readings += len(readings)
            i = j
        out.samples = ns
        out.last_battery_v = float(values["battery_v"][-1]) if ns else lg.battery_v
        out.last_rssi_dbm = float(values["rssi_dbm"][-1]) if ns else lg.rssi_dbm
        outputs[site.id] = out
    return outputs


def _clock_of(faults: list[Fault], start: datetime):
    drifts = [f for f in faults if f.kind == "clock_drift"]

    def clock(t: float) -> float:
        for f in drifts:
            t0 = _fault_t0(f, start)
            if t >= t0:
                return t + f.drift_ppm * 1e-6 * (t - t0)
        return t

    return clock


def merged_schedule(outputs: dict[str, LoggerOutput]) -> list[Message]:
    """All messages of all loggers in order of sending."""
    msgs = [m for o in outputs.values() for m in o.messages]
    msgs.sort(key=lambda m: (m.send_s, m.device, m.seq))
    return msgs
