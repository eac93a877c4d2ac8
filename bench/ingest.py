"""Ingest benchmark: raw COPY baseline vs MQTT -> `swc ingest` -> PostgreSQL, and latency.

Prints, in one run on the same machine and table:
  (a) the baseline: raw psycopg binary COPY of the same rows into `readings`;
  (b) the end-to-end rate of `swc ingest`: a backlog of messages (60 readings
      each, from simulated devices) held by the broker for the consumer's
      persistent session, drained into the database (and, for reference, the
      rate with the publisher running at the same time on this machine);
  (c) their ratio;
  (d) p50/p99 latency from publish to row visible at half the end-to-end rate.

    python bench/ingest.py [--quick] [--readings N]

Needs PostgreSQL (SWC_BENCH_DATABASE_URL, default the local server) and the
`mosquitto` binary (a private broker is started with the repository's config).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import REPO, percentile, result_line, scratch_database
from ingest.broker import MosquittoProcess
from ingest.store.migrate import migrate

T0 = datetime(2026, 7, 1, tzinfo=UTC)
PER_MESSAGE = 60
ROOT = "bench/v1"


def make_messages(n_readings: int, devices: int, t0: datetime = T0) -> list[tuple[str, bytes]]:
    out = []
    per_device = n_readings // devices
    for seq in range(per_device // PER_MESSAGE):
        for d in range(devices):
            device = f"bd-{d:03d}"
            start = t0 + timedelta(minutes=seq * PER_MESSAGE)
            readings = [
                {
                    "t": (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                    "ch": "stage_m",
                    "v": 1.0 + i * 0.001,
                }
                for i in range(PER_MESSAGE)
            ]
            msg = {"device": device, "seq": seq, "sent_at": start.isoformat(), "readings": readings}
            out.append(
                (f"{ROOT}/{device}/telemetry", json.dumps(msg, separators=(",", ":")).encode())
            )
    return out


def publisher(url_port: int) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{os.getpid()}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    return client


def publish_all(client: mqtt.Client, messages) -> None:
    infos = [client.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(300)


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]


def wait_count(dsn: str, target: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            n = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            if n >= target:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {n} of {target} readings arrived")
            time.sleep(0.02)


def baseline_copy(dsn: str, n_readings: int, devices: int) -> float:
    """Rows/s of a raw binary COPY of the same rows into the same (empty) table."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for d in range(devices):
            conn.execute(
                "INSERT INTO devices (id) VALUES (%s) ON CONFLICT DO NOTHING", (f"bd-{d:03d}",)
            )
            conn.execute(
                "INSERT INTO streams (device_id, channel, unit) VALUES (%s, 'stage_m', 'm') ON CONFLICT DO NOTHING",
                (f"bd-{d:03d}",),
            )
        ids = [r[0] for r in conn.execute("SELECT id FROM streams ORDER BY device_id")]
        now = datetime.now(UTC)
        per_device = n_readings // devices
        rows = [
            (T0 + timedelta(minutes=i), sid, 1.0 + (i % PER_MESSAGE) * 0.001, 2, now)
            for i in range(per_device)
            for sid in ids
        ]
        t = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(
                "COPY readings (time, stream_id, value, quality, received_at) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["timestamptz", "int4", "float8", "int2", "timestamptz"])
            for row in rows:
                copy.write_row(row)
        elapsed = time.perf_counter() - t
        conn.execute("TRUNCATE readings")
    return len(rows) / elapsed


def start_consumer(
    dsn: str, broker: MosquittoProcess, log: Path, name: str = "bench-ingest", workers: int = 1
) -> subprocess.Popen:
    # Each configuration gets its own shared group: mosquitto keeps handing an
    # offline member's share to its persistent session, so earlier runs' sessions
    # must not be in the group. One consumer holds a plain subscription; several
    # share, which Mosquitto 2.0 allows only with the loss on a restart accepted
    # (the bench restarts no broker).
    env = {
        "SWC_WORKERS": str(workers),
        "SWC_SHARED_GROUP": name,
        "SWC_ALLOW_UNSAFE_SHARED": "true" if workers > 1 else "false",
        **os.environ,
        "SWC_DATABASE_URL": dsn,
        "SWC_MQTT_URL": broker.url,
        "SWC_TOPIC_ROOT": ROOT,
        "SWC_CLIENT_ID": name,
        "SWC_METRICS_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "swc_cli", "ingest"],
        env=env,
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    names = [name] if workers == 1 else [f"{name}-{i}" for i in range(1, workers + 1)]
    while not all(f"mqtt connected client_id={n} " in log.read_text() for n in names):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("consumer did not start:\n" + log.read_text())
        time.sleep(0.02)
    time.sleep(0.3)  # SUBACK
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def latency_run(
    dsn: str,
    client: mqtt.Client,
    rate_readings_s: float,
    seconds: float,
    devices: int,
    t0: datetime,
) -> list[float]:
    """Publish at a fixed rate; latency = first poll that sees the message's last reading - publish time."""
    msgs = make_messages(int(rate_readings_s * seconds), devices, t0)
    interval = PER_MESSAGE / rate_readings_s
    published: dict[tuple[str, datetime], float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        pending = {}
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not done.is_set() or pending or len(latencies) < len(msgs):
                for key, t_pub in list(published.items()):
                    pending[key] = t_pub
                    published.pop(key, None)
                if not pending:
                    if done.is_set() and len(latencies) >= len(msgs):
                        return
                    time.sleep(0.002)
                    continue
                rows = conn.execute(
                    "SELECT s.device_id, (SELECT max(time) FROM readings r WHERE r.stream_id = s.id) FROM streams s"
                ).fetchall()
                now = time.monotonic()
                latest = dict(rows)
                for key, t_pub in list(pending.items()):
                    device, last_t = key
                    if latest.get(device) is not None and latest[device] >= last_t:
                        latencies.append(now - t_pub)
                        del pending[key]
                time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    start = time.monotonic()
    for i, (topic, payload) in enumerate(msgs):
        target = start + i * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = json.loads(payload)
        last_t = datetime.fromisoformat(body["readings"][-1]["t"])
        published[(body["device"], last_t)] = time.monotonic()
        client.publish(topic, payload, qos=1)
    done.set()
    poller.join(120)
    return latencies


def drain_rate(
    dsn: str,
    broker: MosquittoProcess,
    log: Path,
    client: mqtt.Client,
    messages,
    n: int,
    workers: int,
) -> float:
    """Readings/s of `swc ingest --workers W` draining a broker backlog of ``messages``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE readings")
    name = f"bench-w{workers}"
    stop(start_consumer(dsn, broker, log, name, workers))  # the sessions exist; now they are away
    t = time.perf_counter()
    publish_all(client, messages)
    print(
        f"    published {len(messages):,} messages ({n:,} readings) in {time.perf_counter() - t:.1f} s"
    )
    t_start = time.monotonic()
    consumer = start_consumer(dsn, broker, log, name, workers)
    t_connected = time.monotonic()
    t_end = wait_count(dsn, n)
    stop(consumer)
    rate = n / (t_end - t_connected)
    print(
        f"    swc ingest --workers {workers}: {rate:,.0f} readings/s "
        f"({t_end - t_connected:.2f} s from connect; {t_end - t_start:.2f} s with process start)"
    )
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a smaller run, under 30 s")
    ap.add_argument("--readings", type=int, help="readings in the throughput runs")
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument(
        "--workers", type=int, default=2, help="also measure this many consumer processes"
    )
    args = ap.parse_args()
    n = args.readings or (150_000 if args.quick else 1_200_000)
    devices = args.devices
    n = (n // (devices * PER_MESSAGE)) * devices * PER_MESSAGE
    latency_s = 3.0 if args.quick else 10.0

    with tempfile.TemporaryDirectory(prefix="swc-bench-") as tmp, scratch_database() as dsn:
        tmp = Path(tmp)
        migrate(dsn, "off")
        broker = MosquittoProcess(tmp / "broker").start()
        log = tmp / "ingest.log"
        client = publisher(broker.port)
        try:
            copy_rate = baseline_copy(dsn, n, devices)
            print(f"(a) raw binary COPY baseline: {n:,} rows at {copy_rate:,.0f} rows/s")
            messages = make_messages(n, devices)
            print(
                "(b) end to end: a broker backlog of 60-reading messages drained into the database"
            )
            e2e_rate = drain_rate(dsn, broker, log, client, messages, n, 1)
            multi_rate = drain_rate(dsn, broker, log, client, messages, n, args.workers)

            # for reference: publisher and consumer running at once on this machine
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE readings")
            consumer = start_consumer(dsn, broker, log)
            t = time.monotonic()
            publish_all(client, messages)
            t_end = wait_count(dsn, n)
            live_rate = n / (t_end - t)
            print(
                f"    one worker with the publisher running concurrently: {live_rate:,.0f} readings/s"
            )
            ratio, multi_ratio = e2e_rate / copy_rate, multi_rate / copy_rate
            print(
                f"(c) ratio end-to-end / raw COPY: {ratio:.2f} (one worker), "
                f"{multi_ratio:.2f} ({args.workers} workers)"
            )

            half = e2e_rate / 2
            lat = latency_run(dsn, client, half, latency_s, devices, T0 + timedelta(days=3650))
            p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
            print(
                f"(d) latency publish -> row visible at {half:,.0f} readings/s, one worker "
                f"({len(lat):,} messages): p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(lat) * 1000:.0f} ms"
            )
            stop(consumer)
        finally:
            client.disconnect()
            client.loop_stop()
            broker.stop()
    print(
        result_line(
            e2e_readings_per_s=round(e2e_rate),
            copy_readings_per_s=round(copy_rate),
            ratio=round(ratio, 3),
            p50_ms=round(p50, 1),
            p99_ms=round(p99, 1),
            **{
                f"e2e_{args.workers}workers_readings_per_s": round(multi_rate),
                f"ratio_{args.workers}workers": round(multi_ratio, 3),
            },
            live_readings_per_s=round(live_rate),
            latency_load_readings_per_s=round(half),
            readings=n,
        )
    )


if __name__ == "__main__":
    main()
