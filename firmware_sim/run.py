"""One simulator run: rain, physics, truth files, logger messages and (optionally) MQTT."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from protocol.topics import DEFAULT_ROOT

from .loggers import LoggerOutput, generate_messages, merged_schedule
from .mqtt_link import LoggerLink, MqttUrl, Outbox
from .physics import SimResult, simulate
from .previous import (
    RunRefused,
    broker_key,
    check_out_dir,
    check_overlap,
    iso,
    retained_runs,
)
from .rain import RunRain, design_storm_rain, stochastic_season_rain
from .scenario import Scenario, load_scenario, registry_yaml
from .truth import truth_table, write_truth

log = logging.getLogger(__name__)

# (phase, done, total); for "publish": simulated seconds sent so far and in all
Progress = Callable[[str, float, float], None]


@dataclass
class RunConfig:
    scenario: Path | Scenario | None = None  # a file, a Scenario, or None: the default county
    storm: str | None = "50y"  # design storm return period, or None for a stochastic season
    days: float | None = None  # stochastic season length (used when storm is None)
    out_dir: Path = Path("sim-out")
    mqtt_url: str | None = None
    root: str = DEFAULT_ROOT
    speed: float = 0.0  # simulated seconds per wall second; 0 = as fast as possible
    seed: int | None = None
    write_messages: bool = False
    drain_timeout_s: float = 120.0
    client_prefix: str = ""
    start: datetime | None = None  # run start (the scenario's own when None)
    run_id: str | None = None  # None: a new uuid4
    overwrite: bool = False  # publish with "replace": true; skip the overlap checks
    check_previous: bool = True  # refuse a run over an earlier run's data (RunRefused)


@dataclass
class RunOutput:
    scenario: Scenario
    rain: RunRain
    result: SimResult
    summary: dict[str, Any]
    loggers: dict[str, LoggerOutput] = field(default_factory=dict)
    publish: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    run_id: str = ""


def make_rain(scenario: Scenario, cfg: RunConfig) -> RunRain:
    if cfg.storm is not None and cfg.days is None:
        return design_storm_rain(scenario, cfg.storm)
    return stochastic_season_rain(scenario, cfg.days or 30.0, cfg.seed)


def shifted(scenario: Scenario, start: datetime | None) -> Scenario:
    """``scenario`` moved to begin at ``start`` (faults with a fixed time move with it)."""
    if start is None or start == scenario.start:
        return scenario
    if start.tzinfo is None:
        raise ValueError("the run start needs a zone")
    delta = start.astimezone(UTC) - scenario.start
    faults = [
        f.model_copy(update={"start": f.start + delta}) if f.start is not None else f
        for f in scenario.faults
    ]
    return scenario.model_copy(update={"start": start.astimezone(UTC), "faults": faults})


def run(cfg: RunConfig, progress: Progress | None = None,
        stop: threading.Event | None = None) -> RunOutput:  # fmt: skip
    """Simulate, write the truth into ``cfg.out_dir``, and publish if ``cfg.mqtt_url``.

    Raises
    ------
    RunRefused
        with ``cfg.mqtt_url``, unless ``cfg.overwrite``: when an earlier run recorded in
        the devices' retained status, or in ``cfg.out_dir/run.json`` for the same
        scenario and broker, overlaps this run's sample times.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    cfg = replace(cfg, run_id=cfg.run_id or str(uuid.uuid4()))
    given = cfg.scenario if isinstance(cfg.scenario, Scenario) else None
    scenario = shifted(given or load_scenario(cfg.scenario), cfg.start)
    rain = make_rain(scenario, cfg)
    timings["rain_s"] = time.perf_counter() - t0
    out = Path(cfg.out_dir)
    data_end = scenario.start + timedelta(seconds=rain.rain_mm.shape[1] * rain.base_dt_s)
    if cfg.mqtt_url and cfg.check_previous and not cfg.overwrite:
        broker = broker_key(cfg.mqtt_url, cfg.root)
        check_out_dir(out / "run.json", scenario.name, broker, scenario.start, data_end)
        devices = [s.id for s in scenario.sites()]
        check_overlap(retained_runs(cfg.mqtt_url, cfg.root, devices), scenario.start, data_end)
    if progress:
        progress("physics", 0, 1)
    t = time.perf_counter()
    result = simulate(scenario, rain.rain_mm, rain.base_dt_s, rain.amc)
    timings["physics_s"] = time.perf_counter() - t
    if progress:
        progress("physics", 1, 1)
    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    duration_s = float(result.t_s[-1])
    run_info = {
        "run_id": cfg.run_id,
        "rain": rain.description,
        "storm": cfg.storm if cfg.days is None else None,
        "days": cfg.days,
        "simulated_s": duration_s,
        "grid_steps": int(result.dt_s.size),
        "faults": [f.model_dump(mode="json", exclude_none=True) for f in scenario.faults],
    }
    summary = write_truth(truth_table(result, scenario), out, run_info)
    (out / "sites.yaml").write_text(registry_yaml(scenario), encoding="utf-8")
    src = None if given else cfg.scenario
    if given is not None:
        text = yaml.safe_dump(given.model_dump(mode="json", exclude_none=True), sort_keys=False,
                              allow_unicode=True, width=100)  # fmt: skip
    else:
        text = Path(src).read_text(encoding="utf-8") if src else load_default_text()
    (out / "scenario.yaml").write_text(text, encoding="utf-8")
    timings["truth_s"] = time.perf_counter() - t
    output = RunOutput(scenario, rain, result, summary, timings_s=timings, run_id=cfg.run_id)
    record = {
        "run_id": cfg.run_id,
        "scenario": scenario.name,
        "scenario_file": str(src) if src else None,
        "storm": run_info["storm"],
        "days": cfg.days,
        "data_start": iso(scenario.start),
        "data_end": iso(scenario.start + timedelta(seconds=duration_s)),
        "broker": broker_key(cfg.mqtt_url, cfg.root) if cfg.mqtt_url else None,
        "speed": cfg.speed if cfg.mqtt_url else None,
        "overwrite": cfg.overwrite,
    }
    if cfg.mqtt_url or cfg.write_messages:
        t = time.perf_counter()
        loggers = generate_messages(scenario, result, cfg.root, cfg.seed, replace=cfg.overwrite)
        output.loggers = loggers
        timings["loggers_s"] = time.perf_counter() - t
        if cfg.write_messages:
            with (out / "messages.jsonl").open("w", encoding="utf-8") as fh:
                for m in merged_schedule(loggers):
                    fh.write(
                        json.dumps({"topic": m.topic, "payload": json.loads(m.payload)}) + "\n"
                    )
        if cfg.mqtt_url:
            t = time.perf_counter()
            output.publish = publish(scenario, loggers, cfg, progress, stop)
            timings["publish_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    if cfg.mqtt_url:  # an interrupted run protects only the times it sent
        record["data_end"] = output.publish.get("data_end") or record["data_start"]
    record.update({"timings_s": timings, "publish": output.publish})
    (out / "run.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return output


def load_default_text() -> str:
    from .scenario import DEFAULT_SCENARIO

    return DEFAULT_SCENARIO.read_text(encoding="utf-8")


def publish(scenario: Scenario, loggers: dict[str, LoggerOutput], cfg: RunConfig,
            progress: Progress | None = None, stop: threading.Event | None = None,
            on_sent: Callable[[int], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Send every logger's messages at ``cfg.speed`` times real time through MQTT.

    With ``0 < cfg.speed <= 1`` the run's clock is tied to the wall clock: a message
    leaves at ``scenario.start + send_s / speed``, at once if that is past (a start in
    the past is a backlog), and never before its send time, so a run dated now never
    publishes readings from the future. ``cfg.speed > 1`` compresses time from the
    moment publishing begins and ``0`` sends as fast as possible; both may publish
    ahead of the wall clock.
    """
    url = MqttUrl.parse(cfg.mqtt_url or "")
    outbox = Outbox(Path(cfg.out_dir) / "outbox.sqlite")
    firmware = {s.id: s.logger.firmware for s in scenario.sites()}
    links = {
        dev: LoggerLink(dev, url, outbox, cfg.root, firmware[dev], cfg.client_prefix)
        for dev in loggers
    }
    spans = {dev: _sample_span(scenario.start, lg) for dev, lg in loggers.items()}
    for dev, link in links.items():
        link.sim_clock = scenario.start
        if cfg.run_id:
            link.run_info = {"run_id": cfg.run_id, **spans[dev]}
        link.start()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not all(k.connected.is_set() for k in links.values()):
        time.sleep(0.02)
    schedule = merged_schedule(loggers)
    total = len(schedule)
    sim_total = schedule[-1].send_s if schedule else 0.0
    wall0 = time.monotonic()
    # speed <= 1 ties the run to the wall clock: the run's clock starts at its start (a
    # start in the past is a backlog that goes at once), never ahead of the present
    anchor = wall0
    if 0 < cfg.speed <= 1:
        anchor = wall0 + scenario.start.timestamp() - time.time()
    last_report = 0.0
    sent_until: dict[str, float] = {}  # device -> last sample time handed over [s]
    interrupted = False
    previous_handler = None
    sent = 0
    try:
        for i, msg in enumerate(schedule):
            if stop is not None and stop.is_set():
                break
            if cfg.speed > 0:
                target = anchor + msg.send_s / cfg.speed
                while True:
                    now = time.monotonic()
                    if now >= target or (stop is not None and stop.is_set()):
                        break
                    _replay_flagged(links)
                    if progress and now - last_report > 1.0:
                        last_report = now
                        progress(
                            "publish", max(0.0, msg.send_s - (target - now) * cfg.speed), sim_total
                        )
                    time.sleep(min(target - now, 0.1))
                if stop is not None and stop.is_set():
                    break
            link = links[msg.device]
            link.sim_clock = scenario.start + timedelta(seconds=msg.send_s)
            link.send(msg.seq, msg.payload)
            sent_until[msg.device] = msg.last_sample_s
            sent += 1
            if i % 200 == 0:
                _replay_flagged(links)
            if on_sent:
                on_sent(i + 1)
            if progress and (time.monotonic() - last_report > 0.25 or i + 1 == total):
                last_report = time.monotonic()
                progress("publish", msg.send_s, sim_total)
    except KeyboardInterrupt:  # Ctrl-C: stop sending, say so in the retained status
        interrupted = True
        previous_handler = _ignore_sigint()  # a second Ctrl-C must not cut the status short
        log.warning("interrupted: stopping after %d of %d messages", sent, total)
    # drain: wait for every acknowledgement (replaying after any outage)
    deadline = time.monotonic() + (5.0 if interrupted else cfg.drain_timeout_s)
    while time.monotonic() < deadline:
        _replay_flagged(links)
        if outbox.count() == 0:
            break
        time.sleep(0.05)
    for dev, link in links.items():
        link.battery_v = round(loggers[dev].last_battery_v, 3)
        link.rssi_dbm = round(loggers[dev].last_rssi_dbm, 0)
        if cfg.run_id and dev in sent_until:  # the offline status tells what was sent
            end = scenario.start + timedelta(seconds=sent_until[dev])
            link.run_info = {**link.run_info, "data_end": iso(end)}
        elif cfg.run_id:  # nothing sent: no span to protect
            link.run_info = {"run_id": cfg.run_id}
    stats = {
        "messages": total,
        "published": sum(k.published for k in links.values()),
        "acked": sum(k.acked for k in links.values()),
        "replayed": sum(k.replayed for k in links.values()),
        "connects": sum(k.connects for k in links.values()),
        "unacked_at_end": outbox.count(),
        "wall_s": time.monotonic() - wall0,
        "interrupted": interrupted,
        # the last sample time handed over (None: nothing was sent)
        "data_end": (
            iso(scenario.start + timedelta(seconds=max(sent_until.values())))
            if sent_until
            else None
        ),
    }
    try:
        for link in links.values():
            if interrupted:
                link.stop(timeout_s=2.0, reason="interrupted")
            else:
                link.stop()
    finally:
        outbox.close()
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    log.info("published %s", " ".join(f"{k}={v}" for k, v in stats.items()))
    return stats


def _ignore_sigint():
    """Ignore Ctrl-C (main thread only); return the handler to restore, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


def _sample_span(start: datetime, lg: LoggerOutput) -> dict[str, str]:
    """First and last sample time of a logger's messages (the run start when it has none)."""
    if not lg.messages:
        return {"data_start": iso(start), "data_end": iso(start)}
    first = min(m.first_sample_s for m in lg.messages)
    last = max(m.last_sample_s for m in lg.messages)
    return {
        "data_start": iso(start + timedelta(seconds=first)),
        "data_end": iso(start + timedelta(seconds=last)),
    }


def _replay_flagged(links: dict[str, LoggerLink]) -> None:
    for link in links.values():
        if link.needs_replay.is_set():
            link.replay()


def registry_text(scenario_path: Path | None) -> str:
    return registry_yaml(load_scenario(scenario_path))


__all__ = ["RunConfig", "RunOutput", "RunRefused", "publish", "registry_text", "run", "shifted"]
