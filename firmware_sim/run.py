"""One simulator run: rain, physics, truth files, logger messages and (optionally) MQTT."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from protocol.topics import DEFAULT_ROOT

from .loggers import LoggerOutput, generate_messages, merged_schedule
from .mqtt_link import LoggerLink, MqttUrl, Outbox
from .physics import SimResult, simulate
from .rain import RunRain, design_storm_rain, stochastic_season_rain
from .scenario import Scenario, load_scenario, registry_yaml
from .truth import truth_table, write_truth

log = logging.getLogger(__name__)

Progress = Callable[[str, float, float], None]  # (phase, done, total)


@dataclass
class RunConfig:
    scenario: Path | None = None  # None: the default county
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


@dataclass
class RunOutput:
    scenario: Scenario
    rain: RunRain
    result: SimResult
    summary: dict[str, Any]
    loggers: dict[str, LoggerOutput] = field(default_factory=dict)
    publish: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


def make_rain(scenario: Scenario, cfg: RunConfig) -> RunRain:
    if cfg.storm is not None and cfg.days is None:
        return design_storm_rain(scenario, cfg.storm)
    return stochastic_season_rain(scenario, cfg.days or 30.0, cfg.seed)


def run(cfg: RunConfig, progress: Progress | None = None,
        stop: threading.Event | None = None) -> RunOutput:  # fmt: skip
    """Simulate, write the truth into ``cfg.out_dir``, and publish if ``cfg.mqtt_url``."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scenario = load_scenario(cfg.scenario)
    rain = make_rain(scenario, cfg)
    timings["rain_s"] = time.perf_counter() - t0
    if progress:
        progress("physics", 0, 1)
    t = time.perf_counter()
    result = simulate(scenario, rain.rain_mm, rain.base_dt_s, rain.amc)
    timings["physics_s"] = time.perf_counter() - t
    if progress:
        progress("physics", 1, 1)
    t = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    duration_s = float(result.t_s[-1])
    run_info = {
        "rain": rain.description,
        "storm": cfg.storm if cfg.days is None else None,
        "days": cfg.days,
        "simulated_s": duration_s,
        "grid_steps": int(result.dt_s.size),
        "faults": [f.model_dump(mode="json", exclude_none=True) for f in scenario.faults],
    }
    summary = write_truth(truth_table(result, scenario), out, run_info)
    (out / "sites.yaml").write_text(registry_yaml(scenario), encoding="utf-8")
    src = cfg.scenario
    (out / "scenario.yaml").write_text(
        Path(src).read_text(encoding="utf-8") if src else load_default_text(),
        encoding="utf-8",
    )
    timings["truth_s"] = time.perf_counter() - t
    output = RunOutput(scenario, rain, result, summary, timings_s=timings)
    if not (cfg.mqtt_url or cfg.write_messages):
        timings["total_s"] = time.perf_counter() - t0
        return output
    t = time.perf_counter()
    loggers = generate_messages(scenario, result, cfg.root, cfg.seed)
    output.loggers = loggers
    timings["loggers_s"] = time.perf_counter() - t
    if cfg.write_messages:
        with (out / "messages.jsonl").open("w", encoding="utf-8") as fh:
            for m in merged_schedule(loggers):
                fh.write(json.dumps({"topic": m.topic, "payload": json.loads(m.payload)}) + "\n")
    if cfg.mqtt_url:
        t = time.perf_counter()
        output.publish = publish(scenario, loggers, cfg, progress, stop)
        timings["publish_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    (out / "run.json").write_text(
        json.dumps({"timings_s": timings, "publish": output.publish}, indent=1)
    )
    return output


def load_default_text() -> str:
    from .scenario import DEFAULT_SCENARIO

    return DEFAULT_SCENARIO.read_text(encoding="utf-8")


def publish(scenario: Scenario, loggers: dict[str, LoggerOutput], cfg: RunConfig,
            progress: Progress | None = None, stop: threading.Event | None = None,
            on_sent: Callable[[int], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Send every logger's messages at ``cfg.speed`` times real time through MQTT."""
    url = MqttUrl(cfg.mqtt_url or "")
    outbox = Outbox(Path(cfg.out_dir) / "outbox.sqlite")
    firmware = {s.id: s.logger.firmware for s in scenario.sites()}
    links = {
        dev: LoggerLink(dev, url, outbox, cfg.root, firmware[dev], cfg.client_prefix)
        for dev in loggers
    }
    for link in links.values():
        link.sim_clock = scenario.start
        link.start()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not all(k.connected.is_set() for k in links.values()):
        time.sleep(0.02)
    schedule = merged_schedule(loggers)
    total = len(schedule)
    wall0 = time.monotonic()
    last_report = 0.0
    for i, msg in enumerate(schedule):
        if stop is not None and stop.is_set():
            break
        if cfg.speed > 0:
            target = wall0 + msg.send_s / cfg.speed
            while True:
                now = time.monotonic()
                if now >= target:
                    break
                _replay_flagged(links)
                time.sleep(min(target - now, 0.1))
        link = links[msg.device]
        link.sim_clock = scenario.start + timedelta(seconds=msg.send_s)
        link.send(msg.seq, msg.payload)
        if i % 200 == 0:
            _replay_flagged(links)
        if on_sent:
            on_sent(i + 1)
        if progress and (time.monotonic() - last_report > 0.25 or i + 1 == total):
            last_report = time.monotonic()
            progress("publish", i + 1, total)
    # drain: wait for every acknowledgement (replaying after any outage)
    deadline = time.monotonic() + cfg.drain_timeout_s
    while time.monotonic() < deadline:
        _replay_flagged(links)
        if outbox.count() == 0:
            break
        time.sleep(0.05)
    for dev, link in links.items():
        link.battery_v = round(loggers[dev].last_battery_v, 3)
        link.rssi_dbm = round(loggers[dev].last_rssi_dbm, 0)
    stats = {
        "messages": total,
        "published": sum(k.published for k in links.values()),
        "acked": sum(k.acked for k in links.values()),
        "replayed": sum(k.replayed for k in links.values()),
        "connects": sum(k.connects for k in links.values()),
        "unacked_at_end": outbox.count(),
        "wall_s": time.monotonic() - wall0,
    }
    for link in links.values():
        link.stop()
    outbox.close()
    log.info("published %s", stats)
    return stats


def _replay_flagged(links: dict[str, LoggerLink]) -> None:
    for link in links.values():
        if link.needs_replay.is_set():
            link.replay()


def registry_text(scenario_path: Path | None) -> str:
    return registry_yaml(load_scenario(scenario_path))


__all__ = ["RunConfig", "RunOutput", "publish", "registry_text", "run"]
