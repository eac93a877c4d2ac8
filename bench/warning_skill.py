"""Flood-warning skill: the real alert engine scored against the simulator's truth.

For each county (the shipped one perturbed with a seed: other catchments, ponds,
dam heights and sensor sets, firmware_sim/perturb.py) and each storm (design
storms of 2, 10, 20, 50 and 100 years, and a stochastic season), the simulator
computes the truth and its loggers' telemetry messages; the messages are
replayed through the consumer's code path (decode, validate, owner check,
COPY into a scratch PostgreSQL database) in the order the loggers sent them,
and each committed batch goes to the alert engine (the engine's clock is the
data's own, so the alerts are live, not late). Then:

* red: an event is a dam overtopping (its first overtopping start in the run;
  in a season, every overtopping start after a dry day); a hit is a red of a
  flood rule (``stage`` or ``overtopping``) reached before it, at most
  ``--window-h`` earlier; a false alarm is a red episode on a dam followed by no
  overtopping within that window; a dam's episode is the time it is red, so the
  flood rules' alerts of a dam that overlap in time (the forecast's red, then
  the stage's) are one episode;
* orange, the same against spillway flow (dams with a spillway).

A design storm is followed by ``--after-h`` simulated hours (24 by default):
a pond fed by full ponds upstream through their culverts may go on rising for
many hours and overtop long after the rain (with 9 hours, as before, the
forecast's correct reds on such dams were scored as false alarms). A red raised
within 3 hours of the run's end (the forecast's red window) that is neither a
hit nor late is reported as ``unjudged``: the truth ends before it could say.

Prints POD, FAR, CSI, lead time median and 10th percentile, per dam class and
per storm, then a RESULT line; each false alarm is named with how far below its
crest that dam's pond peaked (a red on a dam that stops 1 cm short is a near miss
no stage sensor can tell from an overtopping).

    python bench/warning_skill.py [--counties N] [--seed S] [--storms 2y,10y,...]
                                  [--season-days D] [--quick]

Needs PostgreSQL (SWC_BENCH_DATABASE_URL, default the local server); no broker.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import psycopg

from bench._common import ADMIN_DSN, percentile, result_line, scratch_database
from firmware_sim.loggers import generate_messages, merged_schedule
from firmware_sim.physics import simulate
from firmware_sim.rain import design_storm_rain, stochastic_season_rain
from firmware_sim.scenario import Scenario, load_scenario, registry
from ingest.alerting import AlertEngine
from ingest.alerting.rules import RULES
from ingest.consumer import Consumer, Incoming
from ingest.settings import Settings
from ingest.store.migrate import migrate
from ingest.store.registry import RegistryFile, load_registry

ROOT = "skill/v1"
FLOOD_RULES = tuple(sorted(name for name, r in RULES.items() if r.flood))
REPLAY_STEP_S = 1800.0  # messages sent within this much simulated time form one batch
# simulated after a design storm ends: ponds fed by the dams above them through culverts
# go on rising for many hours (a dam that overtops 10 h after the rain is an event too)
AFTER_H = 24.0
# a red raised this close to the end of the run is not judged: the forecast's red window
# (3 h) reaches past the simulated truth, which cannot say whether the dam overtopped
UNJUDGED_S = 3 * 3600.0


@dataclass
class Outcome:
    """Scores of one colour: events, hits (with lead times), misses, false alarms."""

    events: int = 0
    hits: int = 0
    misses: int = 0
    false_alarms: int = 0
    leads_min: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)  # raised too near the run's end

    def add(self, other: Outcome) -> None:
        self.events += other.events
        self.hits += other.hits
        self.misses += other.misses
        self.false_alarms += other.false_alarms
        self.leads_min += other.leads_min
        self.missed += other.missed
        self.false += other.false
        self.unjudged += other.unjudged

    def scores(self) -> dict[str, float]:
        pod = self.hits / self.events if self.events else float("nan")
        warned = self.hits + self.false_alarms
        far = self.false_alarms / warned if warned else 0.0
        denom = self.hits + self.misses + self.false_alarms
        csi = self.hits / denom if denom else float("nan")
        leads = sorted(self.leads_min)
        return {
            "pod": pod,
            "far": far,
            "csi": csi,
            "lead_median_min": float(np.median(leads)) if leads else float("nan"),
            "lead_p10_min": percentile(leads, 10) if leads else float("nan"),
        }


def _starts(t: np.ndarray, flag: np.ndarray, dry_s: float) -> list[float]:
    """Times where ``flag`` turns on after at least ``dry_s`` off (or at its first on)."""
    on = np.flatnonzero(flag)
    out: list[float] = []
    last = -np.inf
    for i in on:
        if t[i] - last > dry_s:
            out.append(float(t[i]))
        last = t[i]
    return out


def truth_events(scenario: Scenario, result) -> dict[str, dict[str, list[float]]]:
    """Per dam: overtopping and spillway-flow start times [epoch s]."""
    t0 = scenario.start.timestamp()
    t = result.t_s + t0
    out = {}
    for d in scenario.check_dams:
        c = result.sites[d.id].columns
        out[d.id] = {
            "red": _starts(t, c["overtopping_m3_s"] > 0, 86400.0),
            "orange": _starts(t, c["spillway_m3_s"] > 0, 86400.0) if d.spillway else [],
        }
    return out


def warnings(conn: psycopg.Connection, level: int) -> dict[str, list[tuple[float, float]]]:
    """Per site: (time the level was first reached, end of the episode) of flood-rule
    episodes that reached ``level`` [epoch s]."""
    rows = conn.execute(
        "SELECT a.site_id, a.id, min(e.data_time) "
        "FROM alerts a JOIN alert_events e ON e.alert_id = a.id "
        "WHERE a.rule = ANY(%s) AND e.level >= %s AND e.kind IN ('open', 'escalate') "
        "GROUP BY a.site_id, a.id",
        (list(FLOOD_RULES), level),
    ).fetchall()
    ends = dict(
        conn.execute(
            "SELECT a.id, max(e.data_time) FROM alerts a JOIN alert_events e "
            "ON e.alert_id = a.id WHERE a.rule = ANY(%s) GROUP BY a.id",
            (list(FLOOD_RULES),),
        ).fetchall()
    )
    per_site: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for site, aid, first in rows:
        end = ends.get(aid) or first
        per_site[site].append((first.timestamp(), end.timestamp()))
    return {site: episodes(v) for site, v in per_site.items()}


def episodes(alerts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A dam's episodes at a level: its flood rules' alerts that overlap in time are one
    (the site is at the level while any of them is: ``/sites`` shows the highest open
    alert), e.g. the forecast's red and, later, the stage's red of the same flood."""
    out: list[list[float]] = []
    for first, end in sorted(alerts):
        if out and first <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([first, end])
    return [(a, b) for a, b in out]


def score(events: dict[str, list[float]], warned: list[tuple[float, float]], window_s: float,
          label: str, end: float = np.inf) -> Outcome:  # fmt: skip
    """Match one dam's warnings to its events (see the module docstring); a warning that
    is neither a hit nor late and was raised within ``UNJUDGED_S`` of the run's ``end``
    is left unjudged."""
    o = Outcome(events=len(events))
    used = set()
    for ev in events:
        cands = [(k, w) for k, w in enumerate(warned) if ev - window_s <= w[0] <= ev]
        if cands:
            k, w = cands[0]
            used.add(k)
            # later warnings of the same episode run are not false alarms
            o.hits += 1
            o.leads_min.append((ev - w[0]) / 60.0)
        else:
            o.misses += 1
            o.missed.append(f"{label}@{datetime.fromtimestamp(ev, UTC):%m-%d %H:%M}")
    for k, (first, _end) in enumerate(warned):
        if k in used:
            continue
        if any(first <= ev <= first + window_s for ev in events):
            continue  # a second warning before an event (already hit), or raised meanwhile
        if any(ev - window_s <= first and first <= ev + 6 * 3600 for ev in events):
            continue  # raised while the dam was overtopping: late, not false
        if first > end - UNJUDGED_S:
            o.unjudged.append(f"{label}@{datetime.fromtimestamp(first, UTC):%m-%d %H:%M}")
            continue
        o.false_alarms += 1
        o.false.append(f"{label}@{datetime.fromtimestamp(first, UTC):%m-%d %H:%M}")
    return o


def replay(scenario: Scenario, result, dsn: str, seed: int) -> dict[str, float]:
    """Replay the loggers' messages through the consumer's code path into ``dsn``
    with the alert engine evaluating each batch; returns counts."""
    loggers = generate_messages(scenario, result, ROOT, seed)
    schedule = merged_schedule(loggers)
    t0 = scenario.start.timestamp()
    settings = Settings(
        _env_file=None,
        database_url=dsn,
        mqtt_url="mqtt://127.0.0.1:9",
        topic_root=ROOT,
        auto_register=False,
    )  # the broker is never contacted
    consumer = Consumer(settings, dsn)
    consumer.after_commit.append(lambda batch: None)  # makes _write return what it touched
    engine = AlertEngine(settings, dsn)
    clock = {"now": t0}
    engine.clock = lambda: clock["now"]
    counts = {"messages": 0, "readings": 0, "dead": 0, "batches": 0}
    i = 0
    n = len(schedule)
    while i < n:
        cut = schedule[i].send_s + REPLAY_STEP_S
        j = i
        while j < n and schedule[j].send_s < cut:
            j += 1
        now = t0 + schedule[j - 1].send_s
        for m in schedule[i:j]:
            at = datetime.fromtimestamp(t0 + m.send_s, UTC)
            consumer.inbox.put(Incoming(m.topic, m.payload, 0, 1, at, time.monotonic(), 0))
        while not consumer.inbox.empty():
            batch = consumer._collect(limit=10_000, wait=False)
            committed = consumer._write(batch)
            counts["messages"] += len(batch.messages)
            counts["dead"] += len(batch.dead)
            if committed is not None:
                counts["readings"] += committed.readings
                clock["now"] = now
                engine.process([committed])
        counts["batches"] += 1
        i = j
    engine.stop()
    return counts


def run_one(scenario: Scenario, storm: str, season_days: float, seed: int, admin_dsn: str,
            window_s: float, after_h: float = AFTER_H) -> tuple[dict[str, Outcome], dict]:  # fmt: skip
    """One county x one storm: simulate, replay, score; returns outcomes by key."""
    if storm == "season":
        rain = stochastic_season_rain(scenario, season_days, seed)
    else:
        d = scenario.rainfall.design
        rain = design_storm_rain(scenario, storm, total_h=d.lead_h + d.duration_min / 60 + after_h)
    result = simulate(scenario, rain.rain_mm, rain.base_dt_s, rain.amc)
    truth = truth_events(scenario, result)
    with scratch_database(admin_dsn) as dsn:
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            load_registry(conn, RegistryFile.model_validate(registry(scenario)))
        t = time.perf_counter()
        counts = replay(scenario, result, dsn, seed)
        counts["replay_s"] = time.perf_counter() - t
        with psycopg.connect(dsn) as conn:
            red, orange = warnings(conn, 4), warnings(conn, 3)
    cls = {d.id: d.dam_class for d in scenario.check_dams}
    # a dam that did not overtop: how far below its crest the pond peaked [cm]
    short = {
        d.id: round(100 * (d.dam_crest_m - float(result.sites[d.id].columns["stage_m"].max())))
        for d in scenario.check_dams
    }
    end = scenario.start.timestamp() + float(result.t_s[-1])
    out: dict[str, Outcome] = defaultdict(Outcome)
    for dam_id, ev in truth.items():
        label = dam_id if ev["red"] else f"{dam_id}({short[dam_id]}cm short)"
        r = score(ev["red"], red.get(dam_id, []), window_s, label, end)
        out[f"red|{storm}|{cls[dam_id]}"].add(r)
        if any(d.id == dam_id and d.spillway for d in scenario.check_dams):
            o = score(ev["orange"], orange.get(dam_id, []), window_s, dam_id, end)
            out[f"orange|{storm}|{cls[dam_id]}"].add(o)
    return out, counts


def _fmt(x: float) -> str:
    return "  nan" if x != x else f"{x:5.2f}"


def report(title: str, groups: dict[str, Outcome]) -> None:
    print(f"\n{title}")
    print(f"{'':22s} {'events':>6s} {'hits':>5s} {'miss':>5s} {'false':>5s} {'POD':>5s} "
          f"{'FAR':>5s} {'CSI':>5s} {'lead50':>7s} {'lead10':>7s}")  # fmt: skip
    for key in sorted(groups):
        o = groups[key]
        s = o.scores()
        print(
            f"{key:22s} {o.events:6d} {o.hits:5d} {o.misses:5d} {o.false_alarms:5d} "
            f"{_fmt(s['pod'])} {_fmt(s['far'])} {_fmt(s['csi'])} "
            f"{s['lead_median_min']:7.1f} {s['lead_p10_min']:7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counties", type=int, default=6, help="perturbed counties (0: shipped only)")
    ap.add_argument("--seed", type=int, default=1000, help="first county seed")
    ap.add_argument("--storms", default="2y,10y,20y,50y,100y", help="design storms")
    ap.add_argument("--season-days", type=float, default=30.0, help="0: no stochastic season")
    ap.add_argument("--window-h", type=float, default=12.0, help="longest lead that counts [h]")
    ap.add_argument("--after-h", type=float, default=AFTER_H, help="simulated after a storm [h]")
    ap.add_argument("--shipped", action="store_true", help="also score the shipped county")
    ap.add_argument("--quick", action="store_true", help="2 counties, 2y/50y/100y, no season")
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.counties, args.storms, args.season_days = 2, "2y,50y,100y", 0.0
    admin = args.database_url or ADMIN_DSN
    counties: list[tuple[str, Scenario]] = []
    if args.shipped or args.counties == 0:
        counties.append(("shipped", load_scenario()))
    if args.counties:
        from firmware_sim.perturb import perturbed_scenario
    for k in range(args.counties):
        counties.append((f"seed{args.seed + k}", perturbed_scenario(None, args.seed + k)))
    storms = [s for s in args.storms.split(",") if s] + (["season"] if args.season_days else [])
    by_storm: dict[str, Outcome] = defaultdict(Outcome)
    by_class: dict[str, Outcome] = defaultdict(Outcome)
    total = {"red": Outcome(), "orange": Outcome()}
    reds_in_2y = 0
    wall = time.perf_counter()
    for name, sc in counties:
        for storm in storms:
            t = time.perf_counter()
            outcomes, counts = run_one(sc, storm, args.season_days, args.seed, admin,
                                       args.window_h * 3600.0, args.after_h)  # fmt: skip
            line = []
            for key, o in outcomes.items():
                colour, st, cls = key.split("|")
                by_storm[f"{colour} {st}"].add(o)
                by_class[f"{colour} {cls}"].add(o)
                total[colour].add(o)
                if colour == "red" and st == "2y":
                    reds_in_2y += o.false_alarms + o.hits
            red = [o for k, o in outcomes.items() if k.startswith("red")]
            ev = sum(o.events for o in red)
            hits = sum(o.hits for o in red)
            fa = [x for o in red for x in o.false]
            miss = [x for o in red for x in o.missed]
            line.append(f"{name} {storm:6s} overtopping={ev} hits={hits} false={len(fa)}")
            if miss:
                line.append(f"missed={miss}")
            if fa:
                line.append(f"false={fa}")
            unjudged = [x for o in red for x in o.unjudged]
            if unjudged:
                line.append(f"unjudged={unjudged}")
            line.append(f"readings={counts['readings']} dead={counts['dead']} "
                        f"({time.perf_counter() - t:.0f} s)")  # fmt: skip
            print(" ".join(line), flush=True)
    report("by storm", by_storm)
    report("by dam class", by_class)
    red, orange = total["red"].scores(), total["orange"].scores()
    print(
        result_line(
            pod=round(red["pod"], 3),
            far=round(red["far"], 3),
            csi=round(red["csi"], 3),
            lead_median_min=round(red["lead_median_min"], 1),
            lead_p10_min=round(red["lead_p10_min"], 1),
            events=total["red"].events,
            false_alarms=total["red"].false_alarms,
            unjudged=len(total["red"].unjudged),
            red_in_2y=reds_in_2y,
            orange_pod=round(orange["pod"], 3),
            orange_far=round(orange["far"], 3),
            orange_lead_median_min=round(orange["lead_median_min"], 1),
            orange_events=total["orange"].events,
            counties=len(counties),
            runs=len(counties) * len(storms),
            wall_s=round(time.perf_counter() - wall, 1),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
