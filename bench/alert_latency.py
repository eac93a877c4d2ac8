"""Alert latency: publish of a reading that crosses a threshold -> alert event on the SSE stream.

A private mosquitto, a scratch database, the ingest consumer with the alert
engine attached, and the HTTP API on uvicorn all run in this process. Load
devices (check dams with a stage sensor, below every threshold) publish
steadily; meanwhile a probe device publishes, one at a time, a reading above
its yellow threshold (time from publish to the ``open`` event on the SSE
stream) and one below it (to the ``resolve`` event). Prints p50/p90/p99/max.

    python bench/alert_latency.py [--quick] [--sites N] [--probes N]

Needs PostgreSQL (SWC_BENCH_DATABASE_URL, default the local server) and the
`mosquitto` binary.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import paho.mqtt.client as mqtt
import psycopg
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import percentile, result_line, scratch_database
from ingest.alerting import attach
from ingest.api import create_app
from ingest.broker import MosquittoProcess, free_port
from ingest.consumer import Consumer
from ingest.settings import Settings
from ingest.store.alerts import set_rule_override
from ingest.store.keys import create_key
from ingest.store.migrate import migrate
from ingest.store.registry import RegistryFile, load_registry

ROOT = "bench/v1"
PER_MESSAGE = 10


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def registry(n_sites: int) -> RegistryFile:
    sites = [
        {
            "id": f"dam-{i:03d}",
            "kind": "check_dam",
            "name": f"dam {i}",
            "params": {"spillway_crest_m": 5.0, "dam_crest_m": 7.0},
            "devices": [{"id": f"dam-{i:03d}", "channels": ["stage_m"]}],
        }
        for i in range(n_sites)
    ]
    sites.append(
        {
            "id": "probe",
            "kind": "check_dam",
            "name": "probe dam",
            "params": {"spillway_crest_m": 5.0, "dam_crest_m": 7.0},
            "devices": [{"id": "probe", "channels": ["stage_m"]}],
        }
    )
    return RegistryFile.model_validate({"sites": sites})


def client(port: int) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def message(device: str, seq: int, points: list[tuple[datetime, float]]) -> bytes:
    return json.dumps(
        {
            "device": device,
            "seq": seq,
            "sent_at": iso(datetime.now(UTC)),
            "readings": [{"t": iso(t), "ch": "stage_m", "v": v} for t, v in points],
        }
    ).encode()


class Load(threading.Thread):
    """Each load device sends PER_MESSAGE readings (below every threshold) once a second."""

    def __init__(self, port: int, n_sites: int, base: datetime):
        super().__init__(daemon=True)
        self.c = client(port)
        self.n = n_sites
        self.base = base
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            tick = time.monotonic()
            seq += 1
            for i in range(self.n):
                t0 = self.base + timedelta(seconds=seq * PER_MESSAGE)
                pts = [(t0 + timedelta(seconds=k), 2.0 + 0.001 * k) for k in range(PER_MESSAGE)]
                self.c.publish(f"{ROOT}/dam-{i:03d}/telemetry", message(f"dam-{i:03d}", seq, pts),
                               qos=1)  # fmt: skip
                self.sent += PER_MESSAGE
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))


class Sse(threading.Thread):
    def __init__(self, url: str, key: str):
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.events: queue.Queue = queue.Queue()
        self.ready = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=None)) as http,
                http.stream("GET", self.url, headers=headers) as r,
            ):
                for line in r.iter_lines():
                    if line.startswith(": connected"):
                        self.ready.set()
                    elif line.startswith("data: "):
                        self.events.put((time.perf_counter(), json.loads(line[6:])))
        except httpx.HTTPError:  # the server stops at the end of the run
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run, under 30 s")
    ap.add_argument("--sites", type=int, help="load sites publishing steadily")
    ap.add_argument("--probes", type=int, help="threshold crossings timed")
    args = ap.parse_args()
    n_sites = args.sites or (30 if args.quick else 100)
    probes = args.probes or (30 if args.quick else 150)

    with scratch_database() as dsn, tempfile.TemporaryDirectory() as tmp:
        migrate(dsn, "off")
        with psycopg.connect(dsn) as conn:
            load_registry(conn, registry(n_sites))
            with conn.transaction():
                # only the stage rule at the probe, reacting at once, both ways
                set_rule_override(conn, "probe", "stage", {
                    "thresholds": {"blue": None, "yellow": 0.5, "orange": None, "red": None},
                    "hysteresis": 0.0, "min_duration_s": 0.0}, None)  # fmt: skip
                for rule in ("rate_of_rise", "overtopping", "sensor_fault"):
                    set_rule_override(conn, "probe", rule, {"enabled": False}, None)
            key = create_key(conn, "viewer", "bench")[1]
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
        consumer = Consumer(settings, dsn)
        alerting = attach(consumer, settings, dsn)
        ct = threading.Thread(target=consumer.run, daemon=True)
        ct.start()
        consumer.subscribed.wait(10)
        port = free_port()
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
        st = threading.Thread(target=server.run, daemon=True)
        st.start()
        while not server.started:
            time.sleep(0.02)
        time.sleep(0.3)
        sse = Sse(f"http://127.0.0.1:{port}/alerts/stream?site_id=probe", key)
        sse.start()
        sse.ready.wait(10)

        base = datetime.now(UTC) - timedelta(minutes=40)
        load = Load(broker.port, n_sites, base)
        load.start()
        time.sleep(2.0)  # steady state
        pub = client(broker.port)
        open_ms, resolve_ms, missed = [], [], 0
        t_data = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
        seq = 0
        started = time.perf_counter()
        written0 = consumer.metrics.snapshot().get("readings_written", 0)
        for i in range(probes):
            for value, kind, out in ((6.8, "open", open_ms), (3.0, "resolve", resolve_ms)):
                seq += 1
                t_data += timedelta(seconds=1)
                body = message("probe", seq, [(t_data, value)])
                t0 = time.perf_counter()
                pub.publish(f"{ROOT}/probe/telemetry", body, qos=1)
                try:  # the event this reading caused: same kind and data time (a late
                    # event of an earlier probe is never credited to this one)
                    while True:
                        t1, ev = sse.events.get(timeout=10)
                        when = datetime.fromisoformat(ev["data_time"]) if ev["data_time"] else None
                        if ev["kind"] == kind and when == t_data:
                            out.append((t1 - t0) * 1000)
                            break
                except queue.Empty:
                    missed += 1
            if i % 10 == 9:
                print(f"probe {i + 1}/{probes}: last open {open_ms[-1]:.0f} ms", flush=True)
        elapsed = time.perf_counter() - started
        written = consumer.metrics.snapshot().get("readings_written", 0) - written0
        load.stop.set()
        load.join(5)
        server.should_exit = True
        consumer.stop()
        ct.join(30)
        alerting.stop()
        broker.stop()

    both = open_ms + resolve_ms
    print(
        f"load: {n_sites} devices x {PER_MESSAGE} readings/s; "
        f"{written / elapsed:.0f} readings/s written during the probes"
    )
    for name, xs in (("open", open_ms), ("resolve", resolve_ms), ("all", both)):
        print(
            f"{name:8s} n={len(xs):4d} p50={percentile(xs, 50):7.1f} ms "
            f"p90={percentile(xs, 90):7.1f} ms p99={percentile(xs, 99):7.1f} ms "
            f"max={max(xs, default=float('nan')):7.1f} ms"
        )
    print(
        result_line(
            p50_ms=percentile(both, 50),
            p90_ms=percentile(both, 90),
            p99_ms=percentile(both, 99),
            max_ms=max(both, default=float("nan")),
            events=len(both),
            missed=missed,
            load_readings_per_s=written / elapsed,
            load_sites=n_sites,
        )
    )


if __name__ == "__main__":
    main()
