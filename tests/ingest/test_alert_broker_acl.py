"""Device access at the broker: password and ACL files from the registry, on a real
Mosquitto, together with the consumer's own ownership check (dead letter ``not_owner``)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.broker import MosquittoProcess, mosquitto_binary
from ingest.store.credentials import add_device, verify_password, write_broker_files
from tests.api.support import messages, minutes_ago, rows, setup_site
from tests.support.waiting import scalar, wait_for


class Client:
    """A QoS 1 MQTT 5 client with credentials that records what it receives."""

    def __init__(self, port: int, user: str | None, password: str | None):
        self.c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"t-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if user:
            self.c.username_pw_set(user, password)
        self.result: list = []
        self.received: list[tuple[str, bytes]] = []
        self.subacks: list = []
        self._done = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.append(rcs)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self._done.wait(10)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.result.append(reason_code)
        self._done.set()

    @property
    def accepted(self) -> bool:
        return bool(self.result) and not self.result[0].is_failure

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def try_publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """A publish the broker refuses (MQTT 5: PUBACK 'not authorised', then a disconnect)."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(3)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def secured(db, tmp_path, topic_root):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    setup_site(
        db,
        "dam-1",
        "check_dam",
        {"spillway_crest_m": 4.0, "dam_crest_m": 5.0},
        {"dam-1": ["stage_m"]},
    )
    setup_site(
        db,
        "dam-2",
        "check_dam",
        {"spillway_crest_m": 4.0, "dam_crest_m": 5.0},
        {"dam-2": ["stage_m"]},
    )
    with psycopg.connect(db) as conn:
        pw = {
            "dam-1": add_device(conn, "dam-1", site_id="dam-1"),
            "dam-2": add_device(conn, "dam-2", site_id="dam-2"),
            "gw-1": add_device(conn, "gw-1", kind="gateway"),
        }
        pw["dam-3"] = add_device(conn, "dam-3", site_id="dam-2", gateway_id="gw-1")
        files = write_broker_files(
            conn, tmp_path / "acl", root=topic_root, service_user="swc-ingest",
            service_password="svc-secret",
        )  # fmt: skip
    assert verify_password(pw["dam-1"], rows(db, "SELECT password_hash FROM devices "
                                              "WHERE id = 'dam-1'")[0][0])  # fmt: skip
    extra = f"allow_anonymous false\npassword_file {files.password_file}\nacl_file {files.acl_file}"
    proc = MosquittoProcess(tmp_path / "mq", extra_conf=extra).start()
    yield proc, pw
    proc.stop()


def _msg(device: str, root: str, sender: str | None = None, seq: int = 1) -> tuple[str, bytes]:
    return messages(device, root, [(minutes_ago(1), "stage_m", 1.0)], seq0=seq, sender=sender)[0]


def test_broker_acl_and_consumer_ownership_on_a_real_mosquitto(
    db, secured, topic_root, settings_for, start_consumer
):
    proc, pw = secured
    anonymous = Client(proc.port, None, None)
    assert not anonymous.accepted, "anonymous clients must be refused"
    anonymous.close()
    wrong = Client(proc.port, "dam-1", "not-the-password")
    assert not wrong.accepted
    wrong.close()

    settings = settings_for(mqtt_url=f"mqtt://swc-ingest:svc-secret@127.0.0.1:{proc.port}")
    start_consumer(settings, db)  # a plain subscription on telemetry: the ACL allows it
    # the service user reads the broker's version, so --workers can tell whether to share
    from ingest.subscription import read_broker_version

    assert read_broker_version(settings.mqtt).startswith("mosquitto version ")
    devices_view = read_broker_version(
        settings.model_copy(
            update={"mqtt_url": f"mqtt://dam-1:{pw['dam-1']}@127.0.0.1:{proc.port}"}
        ).mqtt,
        client_id="dam-1-version",
        answer_timeout_s=1.0,
    )
    assert devices_view is None  # a device is not told

    dam1 = Client(proc.port, "dam-1", pw["dam-1"])
    gw = Client(proc.port, "gw-1", pw["gw-1"])
    assert dam1.accepted and gw.accepted
    dam1.publish(*_msg("dam-1", topic_root))  # its own topic: stored
    intruder = Client(proc.port, "dam-1", pw["dam-1"])
    intruder.try_publish(*_msg("dam-2", topic_root, sender="dam-2"))  # another's topic
    intruder.try_publish(f"{topic_root}/alerts/dam-1", b'{"forged": true}', retain=True)
    intruder.close()
    dam1.publish(*_msg("dam-2", topic_root, sender="dam-1", seq=2))  # names another: not_owner
    gw.publish(*_msg("dam-3", topic_root, sender="gw-1"))  # a logger behind it: stored
    gw.publish(*_msg("dam-1", topic_root, sender="gw-1", seq=3))  # not its logger: not_owner
    wait_for(lambda: scalar(db, "SELECT count(*) FROM readings") == 2, what="two readings")
    wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 2, what="dead letters")
    stored = rows(
        db, "SELECT s.device_id FROM readings r JOIN streams s ON s.id = r.stream_id ORDER BY 1"
    )
    assert [r[0] for r in stored] == ["dam-1", "dam-3"]
    dead = rows(db, "SELECT topic, error_code FROM dead_letters ORDER BY id")
    assert {(t.split("/")[-2], code) for t, code in dead} == {
        ("dam-1", "not_owner"),
        ("gw-1", "not_owner"),
    }

    # config downlink: the service writes it; a device reads only its own
    service = Client(proc.port, "swc-ingest", "svc-secret")
    for dev in ("dam-1", "dam-2"):
        service.publish(f"{topic_root}/{dev}/config", json.dumps({"dev": dev}).encode(), True)
    dam1.c.subscribe(f"{topic_root}/+/config", qos=1)
    wait_for(lambda: dam1.received, what="dam-1's own config")
    time.sleep(0.5)
    assert [t for t, _ in dam1.received] == [f"{topic_root}/dam-1/config"]
    # the device could not write the alerts topics either (nothing retained there)
    watcher = Client(proc.port, "swc-ingest", "svc-secret")
    watcher.c.subscribe(f"{topic_root}/alerts/#", qos=1)
    time.sleep(0.5)
    assert watcher.received == []
    for c in (dam1, gw, service, watcher):
        c.close()
