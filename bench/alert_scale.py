"""Alert engine at plateau scale: storm-mode load, publish -> SSE latency, missed events.

Storm mode, modelled as loggers send it: every site (a check dam with one
logger) publishes one message a minute holding four channels (stage_m,
rain_mm, turbidity_ntu, battery_v), the sites spread evenly over the minute.
``--sites 58000`` is the Loess Plateau's ~58,000 check dams: ~967 messages
and ~3,900 readings a second.

Processes, as deployed: this one runs the ingest consumer with its QC
re-evaluation and alert engine (what ``swc ingest`` runs); a publisher
process sends the load and the probes through a private mosquitto; an API
process serves ``/alerts/stream`` (SSE) and reads it. Probe sites are load
sites whose stage rule reacts at once (yellow at 0.5 m below the dam crest,
no hysteresis, no minimum duration): in the measured minutes their
minute message alternates a stage above that threshold (an ``open`` event)
and one below it (a ``resolve`` event). Each SSE event is matched to the
probe message that caused it by site, kind and data time, so an event that
arrives late is never credited to a later probe; a probe with no event
``--grace`` seconds after the load stopped is missed.

Before the measured minutes: history (``--history-min`` minutes of readings of
every stream, written in SQL, so rate-of-rise windows are full) and a warm-up
minute (every site publishes once: tracker state rows exist, caches are warm).

    python bench/alert_scale.py --sites 1000 [--minutes 2] [--probes 30]
    python bench/alert_scale.py --ladder          # 1,000, 10,000 and 58,000 sites
    python bench/alert_scale.py --quick           # 300 sites, one minute

Prints the load offered and stored (readings/s) beside the latencies, the
engine's work per site, and a RESULT line (the ladder: one per size, then a
summary of how the cost grows). Needs PostgreSQL (SWC_BENCH_DATABASE_URL,
default the local server) and the ``mosquitto`` binary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from psycopg.types.json import Jsonb

from bench._common import percentile, result_line, scratch_database

ROOT = "bench/v1"
CHANNELS = ("stage_m", "rain_mm", "turbidity_ntu", "battery_v")
PERIOD_S = 60.0  # storm mode: one message a minute per site
LADDER = (1000, 10000, 58000)
STALL_AT_S = 15.0  # --stall-s: the engine's process is stopped this far into the measured part
# stages [m]: dam crest 7.0, spillway crest 5.0 (the stage rule's blue at 4.2);
# a probe's stage rule is yellow at 0.5 m below the dam crest (6.5)
PROBE_OPEN, PROBE_CLOSE, LOAD_STAGE = 6.8, 3.0, 2.0


def site_id(i: int) -> str:
    return f"dam-{i:05d}"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


# ----------------------------------------------------------------------- setup
def load_sites(conn: psycopg.Connection, n: int) -> None:
    """The registry of ``n`` check dams, one four-channel logger each, in set-based SQL."""
    ids = [site_id(i) for i in range(n)]
    params = Jsonb({"spillway_crest_m": 5.0, "dam_crest_m": 7.0})
    with conn.transaction():
        conn.execute(
            "INSERT INTO sites (id, kind, name, params) "
            "SELECT i, 'check_dam', 'dam ' || i, %s FROM unnest(%s::text[]) AS i",
            (params, ids),
        )
        conn.execute(
            "INSERT INTO devices (id, site_id) SELECT i, i FROM unnest(%s::text[]) AS i", (ids,)
        )
        conn.execute(
            "INSERT INTO streams (device_id, channel, unit) "
            "SELECT i, c.ch, c.unit FROM unnest(%s::text[]) AS i "
            "CROSS JOIN (VALUES ('stage_m', 'm'), ('rain_mm', 'mm'), ('turbidity_ntu', 'NTU'), "
            "('battery_v', 'V')) AS c (ch, unit)",
            (ids,),
        )


def write_history(conn: psycopg.Connection, minutes: int, until: float) -> int:
    """``minutes`` of quiet storm-mode readings for every stream, ending before ``until``."""
    if minutes <= 0:
        return 0
    cur = conn.execute(
        "INSERT INTO readings (time, stream_id, value, quality, received_at) "
        "SELECT to_timestamp(%s) - make_interval(mins => g), s.id, "
        "CASE s.channel WHEN 'stage_m' THEN 2.0 + 0.001 * (g %% 7) WHEN 'rain_mm' THEN 0.2 "
        "WHEN 'turbidity_ntu' THEN 120.0 ELSE 12.6 END, 1, now() "
        "FROM streams s CROSS JOIN generate_series(1, %s) AS g",
        (until, minutes),
    )
    conn.execute("ANALYZE readings")
    return cur.rowcount


def configure_probes(conn: psycopg.Connection, probes: list[str]) -> None:
    from ingest.store.alerts import set_rule_override

    with conn.transaction():
        for p in probes:
            set_rule_override(conn, p, "stage", {
                "thresholds": {"blue": None, "yellow": 0.5, "orange": None, "red": None},
                "hysteresis": 0.0, "min_duration_s": 0.0}, None)  # fmt: skip
            for rule in ("rate_of_rise", "overtopping"):
                set_rule_override(conn, p, rule, {"enabled": False}, None)


# ------------------------------------------------------------------- publisher
def publisher(port: int, n: int, probes: list[str], t_start: float, warmup_s: float,
              measure_s: float, out: mp.Queue) -> None:  # fmt: skip
    """Publish storm mode from ``t_start`` for warm-up + measured time; report probes and counts."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    c.max_inflight_messages_set(0)  # unlimited: the broker's receive maximum paces us
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    probe_sent = dict.fromkeys(probes, 0)  # measured messages of each probe
    t_measure = t_start + warmup_s
    t_end = t_measure + measure_s
    step = PERIOD_S / n
    k = 0  # messages scheduled so far (site k % n, cycle k // n)
    sent = measured_readings = 0
    behind_max = 0.0
    while True:
        due = t_start + k * step
        if due >= t_end:
            break
        now = time.time()
        if due > now:
            time.sleep(min(due - now, 0.05))
            continue
        behind_max = max(behind_max, now - due)
        i, cycle = k % n, k // n
        k += 1
        sid = site_id(i)
        stage = LOAD_STAGE + 0.001 * (cycle % 7)
        kind = None
        if sid in probe_sent and due >= t_measure:
            kind = "open" if probe_sent[sid] % 2 == 0 else "resolve"
            probe_sent[sid] += 1
            stage = PROBE_OPEN if kind == "open" else PROBE_CLOSE
        t = iso(due)
        body = json.dumps({
            "device": sid, "seq": cycle + 1, "sent_at": iso(time.time()),
            "readings": [{"t": t, "ch": "stage_m", "v": stage},
                         {"t": t, "ch": "rain_mm", "v": 0.2 * (i % 3)},
                         {"t": t, "ch": "turbidity_ntu", "v": 100.0 + i % 50},
                         {"t": t, "ch": "battery_v", "v": 12.6}],
        }).encode()  # fmt: skip
        t0 = time.monotonic()
        c.publish(f"{ROOT}/{sid}/telemetry", body, qos=1)
        sent += 1
        if due >= t_measure:
            measured_readings += len(CHANNELS)
        if kind is not None:
            out.put(("probe", sid, kind, epoch_ms(t), t0))
    out.put(("done", sent, measured_readings, behind_max))
    time.sleep(1.0)
    c.loop_stop()
    c.disconnect()


# ------------------------------------------------------------------ API + SSE
def api_and_sse(settings_data: dict, port: int, key: str, out: mp.Queue) -> None:
    """Serve the API and read its SSE stream; every alert event goes to ``out``."""
    import httpx
    import uvicorn

    from ingest.api import create_app
    from ingest.settings import Settings

    settings = Settings.model_validate(settings_data)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )

    def read() -> None:
        while not server.started:
            time.sleep(0.05)
        headers = {"Authorization": f"Bearer {key}"}
        url = f"http://127.0.0.1:{port}/alerts/stream"
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=None)) as http,
                http.stream("GET", url, headers=headers) as r,
            ):
                for line in r.iter_lines():
                    if line.startswith(": connected"):
                        out.put(("ready",))
                    elif line.startswith("data: "):
                        t1 = time.monotonic()
                        ev = json.loads(line[6:])
                        if "site_id" not in ev:  # not an alert event (e.g. a notice)
                            continue
                        out.put(("event", t1, ev["site_id"], ev["rule"], ev["kind"],
                                 epoch_ms(ev["data_time"]), ev["late"]))  # fmt: skip
        except httpx.HTTPError:  # the server stops at the end of the run
            pass

    threading.Thread(target=read, daemon=True).start()
    server.run()


# ------------------------------------------------------------------------- run
def run(n: int, *, minutes: float, probes_n: int, warmup_s: float, history_min: int,
        grace_s: float, with_qc: bool, profile: str | None = None,
        stall_s: float = 0.0) -> dict:  # fmt: skip
    """One storm-mode run at ``n`` sites; the figures as a dict."""
    from ingest import qc
    from ingest.alerting import attach
    from ingest.broker import MosquittoProcess, free_port
    from ingest.consumer import Consumer
    from ingest.settings import Settings
    from ingest.store.keys import create_key
    from ingest.store.migrate import migrate

    ctx = mp.get_context("spawn")
    probes = [site_id(round(j * n / probes_n)) for j in range(probes_n)]
    measure_s = minutes * 60.0
    with scratch_database() as dsn, tempfile.TemporaryDirectory() as tmp:
        t_setup = time.monotonic()
        migrate(dsn, "off")
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_sites(conn, n)
            configure_probes(conn, probes)
            key = create_key(conn, "viewer", "bench")[1]
            t_start = time.time() + 8.0  # processes start meanwhile
            history = write_history(conn, history_min, t_start - 30.0)
        setup_s = time.monotonic() - t_setup
        print(
            f"{n} sites: registry and {history} readings of history in {setup_s:.0f} s", flush=True
        )
        broker = MosquittoProcess(Path(tmp) / "mq").start()
        settings = Settings(
            _env_file=None,
            database_url=dsn,
            mqtt_url=broker.url,
            topic_root=ROOT,
            client_id="bench-ingest",
            metrics_port=0,
            alert_mqtt=True,
        )
        events: mp.Queue = ctx.Queue()
        api_port = free_port()
        api = ctx.Process(
            target=api_and_sse,
            args=(settings.model_dump(mode="json"), api_port, key, events),
            daemon=True,
        )
        api.start()
        consumer = Consumer(settings, dsn)
        extras = [qc.attach(consumer, dsn)] if with_qc else []
        alerting = attach(consumer, settings, dsn)
        engine = alerting.engine  # in a process of its own: it counts its busy seconds

        def busy_now() -> float:
            return engine.busy_s()

        profiles: list = []

        def profiled(target, name):
            """``target`` run under pyinstrument (it samples only the thread it starts in)."""

            def run_profiled(*args):
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.005)
                profiler.start()
                try:
                    return target(*args)
                finally:
                    profiler.stop()
                    profiles.append((name, profiler))

            return run_profiled

        run_consumer = profiled(consumer.run, "consumer") if profile else consumer.run
        ct = threading.Thread(target=run_consumer, daemon=True)
        ct.start()
        consumer.subscribed.wait(20)
        while events.get(timeout=60)[0] != "ready":
            pass
        t_start = max(t_start, time.time() + 1.0)
        pub = ctx.Process(
            target=publisher,
            args=(broker.port, n, probes, t_start, warmup_s, measure_s, events),
            daemon=True,
        )
        pub.start()
        print(f"{n} sites: warm-up {warmup_s:.0f} s, then {measure_s:.0f} s measured", flush=True)

        published: dict[tuple[str, str, int], float] = {}
        received: dict[tuple[str, str, int], float] = {}
        late_events = unmatched = 0
        done = None
        written0 = busy0 = None
        t_measure = t_start + warmup_s
        deadline = None
        stalled = None  # --stall-s: True while the engine's process is stopped
        hard_stop = time.monotonic() + (t_start - time.time()) + warmup_s + measure_s + 300
        while True:
            now = time.time()
            if time.monotonic() > hard_stop:
                raise RuntimeError("the publisher did not finish; see its output")
            if stall_s and stalled is None and now >= t_measure + STALL_AT_S:
                os.kill(engine._proc.pid, signal.SIGSTOP)  # a stall: the engine is frozen
                stalled = True
                print(f"{n} sites: engine stopped for {stall_s:.0f} s", flush=True)
            if stalled and now >= t_measure + STALL_AT_S + stall_s:
                os.kill(engine._proc.pid, signal.SIGCONT)
                stalled = False
            if written0 is None and now >= t_measure:
                written0 = consumer.metrics.snapshot().get("readings_written", 0)
                busy0 = busy_now()
                m0 = time.monotonic()
            if done is not None and deadline is None:
                written1 = consumer.metrics.snapshot().get("readings_written", 0)
                busy1 = busy_now()
                m1 = time.monotonic()
                backlog = (consumer.inbox.qsize(), engine.backlog())
                deadline = m1 + grace_s
            if deadline is not None and (
                time.monotonic() > deadline or set(published) <= set(received)
            ):
                break
            try:
                item = events.get(timeout=0.5)
            except queue.Empty:
                continue
            if item[0] == "probe":
                published[item[1:4]] = item[4]
            elif item[0] == "done":
                done = item[1:]
            elif item[0] == "event":
                _, t1, site, rule, kind, data_ms, late = item
                if rule != "stage":
                    continue
                if late:
                    late_events += 1
                received.setdefault((site, kind, data_ms), t1)
        pub.join(10)
        consumer.stop()
        ct.join(60)
        alerting.stop()
        for extra in extras:
            extra.stop()
        api.terminate()
        api.join(10)
        broker.stop()
    for name, profiler in profiles:
        out = Path(f"{profile}-{n}-{name}.html")
        out.write_text(profiler.output_html())
        text = Path(f"{profile}-{n}-{name}.txt")
        text.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        print(f"profile of the {name} thread: {out}, {text}", flush=True)

    lat = []
    for k, t0 in published.items():
        t1 = received.get(k)
        if t1 is not None:
            lat.append((t1 - t0) * 1000)
    # per measured minute (by the probe's data time): arrived, p50, p99 [ms]
    by_minute: dict[int, list[float | None]] = {}
    for k, t0 in published.items():
        t1 = received.get(k)
        minute = max(0, int((k[2] - round(t_measure * 1000)) // (PERIOD_S * 1000)))
        by_minute.setdefault(minute, []).append(None if t1 is None else (t1 - t0) * 1000)
    minutes_figures = [
        (
            len(xs),
            len(got := [x for x in xs if x is not None]),
            percentile(got, 50),
            percentile(got, 99),
        )
        for _, xs in sorted(by_minute.items())
    ]
    unmatched = len(set(received) - set(published))
    negative = sum(x < 0 for x in lat)
    seconds = max(m1 - m0, 1e-9)
    _sent, measured_readings, behind_max = done
    return {
        "sites": n,
        "offered_rps": measured_readings / measure_s,
        "stored_rps": (written1 - written0) / seconds,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat, default=float("nan")),
        "events": len(published),
        "missed": len(published) - len(lat),
        "negative": negative,
        "unmatched": unmatched,
        "late_events": late_events,
        "engine_busy": (busy1 - busy0) / seconds,
        "engine_ms_per_site": 1000 * (busy1 - busy0) / max(1.0, n * seconds / PERIOD_S),
        "backlog_inbox": backlog[0],
        "backlog_engine": backlog[1],
        "publisher_behind_s": behind_max,
        "history_readings": history,
        "by_minute": minutes_figures,
        "setup_s": setup_s,
    }


def report(r: dict) -> None:
    print(
        f"{r['sites']:6d} sites: offered {r['offered_rps']:7.0f} readings/s, "
        f"stored {r['stored_rps']:7.0f} readings/s (publisher at most "
        f"{r['publisher_behind_s']:.1f} s behind schedule); engine busy "
        f"{100 * r['engine_busy']:.0f} % of the time, {r['engine_ms_per_site']:.2f} ms/site; "
        f"backlog at the end: inbox {r['backlog_inbox']} messages, engine "
        f"{r['backlog_engine']} batches",
        flush=True,
    )
    print(
        f"        publish->SSE n={r['events'] - r['missed']}/{r['events']} "
        f"p50={r['p50_ms']:.0f} ms p99={r['p99_ms']:.0f} ms max={r['max_ms']:.0f} ms "
        f"missed={r['missed']} (late-marked {r['late_events']}, unmatched {r['unmatched']})",
        flush=True,
    )
    for i, (n, got, p50, p99) in enumerate(r["by_minute"]):
        print(
            f"        measured minute {i + 1}: {got}/{n} arrived, p50={p50:.0f} ms p99={p99:.0f} ms",
            flush=True,
        )
    if r["negative"]:  # cannot happen with matching by data time; say so loudly if it does
        print(f"        ERROR: {r['negative']} negative latencies", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 sites, one minute: ~2 min")
    ap.add_argument("--sites", type=int, default=1000, help="check dams in storm mode")
    ap.add_argument("--ladder", action="store_true", help="1,000, 10,000 and 58,000 sites")
    ap.add_argument("--minutes", type=float, default=2.0, help="measured minutes [min]")
    ap.add_argument("--probes", type=int, default=30, help="probe sites (events = probes x min)")
    ap.add_argument("--warmup-s", type=float, default=PERIOD_S, help="warm-up before [s]")
    ap.add_argument("--history-min", type=int, default=30, help="history written first [min]")
    ap.add_argument("--grace-s", type=float, default=30.0, help="wait for events after [s]")
    ap.add_argument("--no-qc", action="store_true", help="without the QC re-evaluation")
    ap.add_argument(
        "--stall-s",
        type=float,
        default=0.0,
        help=f"stop the engine's process this long, {STALL_AT_S:.0f} s into the measured part [s]",
    )
    ap.add_argument(
        "--profile", help="a pyinstrument profile of the consumer thread: PREFIX-N-consumer.*"
    )
    args = ap.parse_args()
    if args.quick:
        args.sites, args.minutes, args.warmup_s, args.history_min = 300, 1.0, 30.0, 10
    sizes = LADDER if args.ladder else (args.sites,)
    results = []
    for n in sizes:
        r = run(
            n,
            minutes=args.minutes,
            probes_n=min(args.probes, n),
            warmup_s=args.warmup_s,
            history_min=args.history_min,
            grace_s=args.grace_s,
            with_qc=not args.no_qc,
            stall_s=args.stall_s,
            profile=args.profile,
        )
        report(r)
        keys = ("sites", "offered_rps", "stored_rps", "p50_ms", "p99_ms", "max_ms", "events",
                "missed", "negative", "engine_busy", "engine_ms_per_site")  # fmt: skip
        print(result_line(**{k: r[k] for k in keys}), flush=True)
        results.append(r)
    if len(results) > 1:
        print("how the cost grows (relative to the smallest run):")
        a = results[0]
        for r in results:
            f = r["sites"] / a["sites"]
            print(
                f"  x{f:5.0f} sites: engine busy x{r['engine_busy'] / max(a['engine_busy'], 1e-9):5.1f}"
                f", ms/site x{r['engine_ms_per_site'] / max(a['engine_ms_per_site'], 1e-9):4.1f}"
                f", p99 x{r['p99_ms'] / max(a['p99_ms'], 1e-9):5.1f}, missed {r['missed']}"
            )
        big = results[-1]
        print(
            result_line(
                ladder="/".join(str(r["sites"]) for r in results),
                p99_ms="/".join(f"{r['p99_ms']:.0f}" for r in results),
                missed="/".join(str(r["missed"]) for r in results),
                stored_rps="/".join(f"{r['stored_rps']:.0f}" for r in results),
                ms_per_site="/".join(f"{r['engine_ms_per_site']:.2f}" for r in results),
                target_met=int(big["p99_ms"] < 2000 and big["missed"] == 0),
            )
        )


if __name__ == "__main__":
    main()
