"""Through a real Mosquitto: messages arrive and validate; a link outage loses nothing.

The outage test stops the broker for a few seconds (``SWC_SIM_OUTAGE_S``,
default 6 s) in the middle of a run; the slow variant stops it for the full
minute of the issue.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_sim.loggers import generate_messages
from firmware_sim.physics import simulate
from firmware_sim.rain import design_storm_rain
from firmware_sim.run import RunConfig, publish
from firmware_sim.scenario import load_scenario
from ingest.broker import MosquittoProcess, mosquitto_binary
from protocol.messages import DeviceStatus, decode_telemetry

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def mosquitto(tmp_path: Path):
    if mosquitto_binary() is None:
        if IN_CI:
            pytest.fail("mosquitto is required in CI")
        pytest.skip("mosquitto not installed")
    proc = MosquittoProcess(tmp_path / "broker").start()
    yield proc
    proc.stop()


class Collector:
    """A persistent-session QoS 1 subscriber: the broker queues for it while it is away."""

    def __init__(self, port: int, root: str, client_id: str | None = None):
        self.telemetry: dict[tuple[str, int], bytes] = {}
        self.status: dict[str, bytes] = {}
        self.duplicates = 0
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"col-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.reconnect_delay_set(1, 2)
        self.root = root
        self.client_id = client_id

        def on_connect(client, userdata, flags, rc, props):
            client.subscribe([(f"{root}/+/telemetry", 1), (f"{root}/+/status", 1)])

        def on_subscribe(*a):
            self.subscribed.set()

        def on_message(client, userdata, msg):
            with self.lock:
                if msg.topic.endswith("/status"):
                    self.status[msg.topic.split("/")[-2]] = msg.payload
                    return
                tel = decode_telemetry(msg.payload)
                key = (tel.device, tel.seq)
                if key in self.telemetry:
                    self.duplicates += 1
                self.telemetry[key] = msg.payload

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def count(self) -> int:
        with self.lock:
            return len(self.telemetry)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _small_run(small_scenario, root: str, storm: str = "2y"):
    sc = load_scenario(small_scenario())
    rain = design_storm_rain(sc, storm)
    res = simulate(sc, rain.rain_mm, rain.base_dt_s, rain.amc)
    return sc, generate_messages(sc, res, root=root)


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_messages_arrive_validate_and_status_is_retained(mosquitto, small_scenario, tmp_path):
    root = f"t{uuid.uuid4().hex[:10]}/v1"
    sc, loggers = _small_run(small_scenario, root)
    expected = {(m.device, m.seq): m.payload for o in loggers.values() for m in o.messages}
    col = Collector(mosquitto.port, root)
    try:
        cfg = RunConfig(out_dir=tmp_path / "run", mqtt_url=mosquitto.url, root=root, speed=0)
        stats = publish(sc, loggers, cfg)
        _wait(lambda: col.count() >= len(expected), 60, "all messages")
        assert stats["unacked_at_end"] == 0
        assert col.telemetry == expected  # byte for byte, every (device, seq)
        _wait(lambda: len(col.status) == len(loggers), 10, "statuses")
        for dev, payload in col.status.items():
            st = DeviceStatus.model_validate_json(payload)
            assert st.device == dev and st.state == "offline"  # clean end of run
    finally:
        col.close()


def _outage_run(mosquitto, small_scenario, tmp_path, outage_s: float, run_wall_s: float):
    root = f"t{uuid.uuid4().hex[:10]}/v1"
    sc, loggers = _small_run(small_scenario, root)
    expected = {(m.device, m.seq): m.payload for o in loggers.values() for m in o.messages}
    duration = max(m.send_s for o in loggers.values() for m in o.messages)
    col = Collector(mosquitto.port, root)
    sent = [0]
    cfg = RunConfig(
        out_dir=tmp_path / "run",
        mqtt_url=mosquitto.url,
        root=root,
        speed=duration / run_wall_s,
        drain_timeout_s=120,
    )
    result: dict = {}
    th = threading.Thread(
        target=lambda: result.update(
            publish(sc, loggers, cfg, on_sent=lambda n: sent.__setitem__(0, n))
        )
    )
    th.start()
    try:
        _wait(lambda: sent[0] > len(expected) * 0.2, 60, "publishing under way")
        # The collector steps away first (its persistent session keeps queueing): mosquitto
        # 2.0.11 does not resend, after a restart, a message that was in flight to a
        # subscriber when it stopped; that is the broker's matter, not the loggers'.
        col_id = col.client._client_id.decode()
        col.close()
        time.sleep(2.0)
        before = col.count()
        mosquitto.stop()  # the link is down: SIGTERM, the broker saves its state
        sent_at_stop = sent[0]
        time.sleep(outage_s)
        sent_during = sent[0] - sent_at_stop
        mosquitto.start()  # same port, same data dir
        received = col.telemetry
        col = Collector(mosquitto.port, root, client_id=col_id)
        col.telemetry.update(received)
        th.join(run_wall_s * 3 + outage_s + 120)
        assert not th.is_alive()
        try:
            _wait(lambda: col.count() >= len(expected), 30, "every message after the outage")
        except AssertionError:
            missing = sorted(set(expected) - set(col.telemetry))
            sends = {
                k: m.send_s
                for o in loggers.values()
                for m in o.messages
                for k in [(m.device, m.seq)]
            }
            raise AssertionError(
                f"missing {len(missing)}: {missing[:20]} sends {[sends[k] for k in missing[:20]]} stats {result} sent_at_stop {sent_at_stop} {sent_during}"
            ) from None
        assert sent_during > 0, "the loggers went on producing during the outage"
        assert before < len(expected)
        assert result["unacked_at_end"] == 0
        assert result["replayed"] >= sent_during
        assert set(col.telemetry) == set(expected)  # nothing lost
        # replayed messages are the original bytes: original sample times and sent_at
        for key, payload in expected.items():
            assert col.telemetry[key] == payload
    finally:
        col.close()
    return result


def test_link_outage_loses_nothing_and_replay_keeps_sample_times(
    mosquitto, small_scenario, tmp_path
):
    outage = float(os.environ.get("SWC_SIM_OUTAGE_S", "6"))
    _outage_run(mosquitto, small_scenario, tmp_path, outage_s=outage, run_wall_s=20)


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get("SWC_SIM_SKIP_FULL_OUTAGE")), reason="SWC_SIM_SKIP_FULL_OUTAGE "
                    "is set: the one-minute outage of the issue (about 2.5 min) is left out")  # fmt: skip
def test_one_minute_outage(mosquitto, small_scenario, tmp_path):
    _outage_run(mosquitto, small_scenario, tmp_path, outage_s=60, run_wall_s=90)


def test_outbox_on_disk_survives_a_restart_of_the_simulator(tmp_path):
    from firmware_sim.mqtt_link import Outbox

    box = Outbox(tmp_path / "o.sqlite")
    box.put("dam-x", 2, "swc/v1/dam-x/telemetry", b"b")
    box.put("dam-x", 1, "swc/v1/dam-x/telemetry", b"a")
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    assert [(s, p) for s, _, p in box.pending("dam-x")] == [(1, b"a"), (2, b"b")]
    box.delete("dam-x", 1)
    assert box.count() == 1
    box.close()
