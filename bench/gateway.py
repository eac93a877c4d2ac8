"""Throughput through the field gateway, beside publishing straight to the upstream broker.

Starts two private mosquitto brokers (local and upstream) and measures, in readings
per second from the first publish to the last reading received upstream:

* direct:  loggers publish to the upstream broker themselves (the baseline);
* gateway: loggers publish to the local broker, `swc gateway run` (a subprocess)
           validates, queues on disk (SQLite WAL, synchronous=full), forwards;
* replay:  the gateway's backlog after an uplink outage, drained once the uplink returns.

Usage: python bench/gateway.py [--quick] [--readings N] [--per-message M] [--devices D]
The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, before bench/

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.broker import MosquittoProcess

T0 = datetime(2026, 7, 21, tzinfo=UTC)
SWC = Path(sys.executable).with_name("swc")


def _client(client_id: str = "") -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    c.max_inflight_messages_set(1000)
    return c


def _payloads(devices: int, per_message: int, messages_per_device: int) -> list[tuple[str, bytes]]:
    out = []
    for m in range(messages_per_device):
        for d in range(devices):
            device = f"dam-{d:03d}"
            readings = [
                {
                    "t": (T0 + timedelta(seconds=60 * (m * per_message + i))).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "ch": "stage_m",
                    "v": round((m * per_message + i) * 0.001, 3),
                }
                for i in range(per_message)
            ]
            body = {"device": device, "seq": m + 1, "sent_at": "2026-07-21T00:00:00Z"}
            body["readings"] = readings
            out.append((device, json.dumps(body).encode()))
    return out


class Counter:
    """Counts readings arriving on ``{root}/+/telemetry`` of a broker."""

    def __init__(self, port: int, root: str):
        self.n = 0
        self.done = threading.Event()
        self.target = 0
        self.last = 0.0
        self.ready = threading.Event()
        self.first = 0.0
        self.first_n = 0
        # a persistent session: readings sent while it reconnects wait for it at the broker
        self.client = _client(f"bench-counter-{root.split('/')[0]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{root}/+/telemetry", qos=1)
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("the counter could not subscribe")

    def expect(self, n: int) -> None:
        self.n, self.target = 0, n
        self.done.clear()

    def _on_message(self, client, userdata, msg) -> None:
        n = len(json.loads(msg.payload)["readings"])
        if self.n == 0:
            self.first, self.first_n = time.perf_counter(), n
        self.n += n
        if self.n >= self.target:
            self.last = time.perf_counter()
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish_all(port: int, root: str, payloads: list[tuple[str, bytes]]) -> None:
    c = _client("bench-loggers")
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(f"{root}/{device}/telemetry", body, qos=1) for device, body in payloads]
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def _wait_retained(port: int, topic: str, predicate, timeout: float = 30) -> dict:
    got: dict = {}
    ok = threading.Event()

    def on_message(client, userdata, msg) -> None:
        status = json.loads(msg.payload)
        got["s"] = status
        if predicate(status):
            ok.set()

    c = _client()
    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        if not ok.wait(timeout):
            raise RuntimeError(f"timed out waiting on {topic}: last {got.get('s')}")
    finally:
        c.disconnect()
        c.loop_stop()
    return got["s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under 30 s")
    parser.add_argument("--readings", type=int, help="readings per run")
    parser.add_argument("--per-message", type=int, default=100, help="readings per logger message")
    parser.add_argument("--devices", type=int, default=10)
    args = parser.parse_args()
    readings = args.readings or (60_000 if args.quick else 500_000)
    per_device = max(1, readings // (args.devices * args.per_message))
    payloads = _payloads(args.devices, args.per_message, per_device)
    total = len(payloads) * args.per_message
    print(
        f"readings={total} messages={len(payloads)} per_message={args.per_message} "
        f"devices={args.devices}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="swc-bench-gw-") as tmp:
        tmp_path = Path(tmp)
        local = MosquittoProcess(tmp_path / "local").start()
        upstream = MosquittoProcess(tmp_path / "upstream").start()
        gw = None
        try:
            # --- direct baseline ---------------------------------------------------
            counter = Counter(upstream.port, "direct/v1")
            counter.expect(total)
            start = time.perf_counter()
            _publish_all(upstream.port, "direct/v1", payloads)
            if not counter.done.wait(300):
                raise RuntimeError(f"direct: only {counter.n} of {total} readings arrived")
            direct = total / (counter.last - start)
            counter.close()
            print(f"direct   {direct:12,.0f} readings/s", flush=True)

            # --- through the gateway ---------------------------------------------
            config = tmp_path / "gw.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "gateway_id": "gw-bench",
                        "topic_root": "gw/v1",
                        "data_dir": str(tmp_path / "gw"),
                        "local": {"url": f"mqtt://127.0.0.1:{local.port}"},
                        "upstream": {
                            "url": f"mqtt://127.0.0.1:{upstream.port}",
                            "reconnect_max_s": 1.0,
                        },
                        "forward": {"batch_max_readings": 1000, "batch_max_age_s": 0.2},
                        "status": {"interval_s": 1.0},
                        "log": {"level": "WARNING"},
                    }
                )
            )
            gw = subprocess.Popen([str(SWC), "gateway", "run", str(config)])
            _wait_retained(upstream.port, "gw/v1/gw-bench/status", lambda s: s["state"] == "online")
            counter = Counter(upstream.port, "gw/v1")
            counter.expect(total)
            start = time.perf_counter()
            _publish_all(local.port, "gw/v1", payloads)
            if not counter.done.wait(300):
                raise RuntimeError(f"gateway: only {counter.n} of {total} readings arrived")
            through = total / (counter.last - start)
            print(f"gateway  {through:12,.0f} readings/s", flush=True)

            # --- replay of a backlog after an outage -----------------------------------
            # let the last acknowledgements reach the gateway, so nothing is resent below
            _wait_retained(
                local.port,
                "gw/v1/gw-bench/status",
                lambda s: s.get("details", {}).get("queue_depth") == 0,
            )
            upstream.stop()
            counter.expect(total)
            _publish_all(local.port, "gw/v1", payloads)
            _wait_retained(
                local.port,
                "gw/v1/gw-bench/status",
                lambda s: s.get("details", {}).get("queue_depth") == total,
                timeout=300,
            )
            upstream.start()
            if not counter.done.wait(300):
                raise RuntimeError(f"replay: only {counter.n} of {total} readings arrived")
            # from the first replayed reading to the last: the drain rate, without reconnecting
            replay = (total - counter.first_n) / max(counter.last - counter.first, 1e-6)
            counter.close()
            print(f"replay   {replay:12,.0f} readings/s (backlog after an outage)", flush=True)
        finally:
            if gw is not None and gw.poll() is None:
                gw.send_signal(signal.SIGTERM)
                gw.wait(30)
            upstream.stop()
            local.stop()

    print(
        f"RESULT gateway_readings_per_s={through:.0f} direct_readings_per_s={direct:.0f} "
        f"ratio={through / direct:.3f} replay_readings_per_s={replay:.0f} readings={total}"
    )


if __name__ == "__main__":
    main()
