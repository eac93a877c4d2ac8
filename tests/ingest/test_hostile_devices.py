"""Hostile devices at the broker (issue 11): an attacker with one valid device credential
cannot take a share of others' messages, take over the consumer's session, or write where
it may not. The broker runs Mosquitto's dynamic-security plugin with the configuration
`swc broker acl` writes from the registry; refusals come at subscribe or connect time,
with MQTT 5 reason codes (docs/protocol.md)."""

from __future__ import annotations

import json
import threading
import uuid

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.broker import CONF_PATH, MosquittoProcess, dynsec_plugin, mosquitto_binary
from ingest.store.credentials import add_device, write_dynsec_config
from tests.api.support import messages, minutes_ago, setup_site
from tests.support.waiting import scalar, wait_for

NOT_AUTHORIZED = 0x87


class Device:
    """An MQTT 5 client that records its CONNACK, SUBACK and PUBACK reason codes."""

    def __init__(
        self,
        port: int,
        user: str | None,
        password: str | None,
        client_id: str,
        protocol: int = mqtt.MQTTv5,
    ):
        self.c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
        )
        if user:
            self.c.username_pw_set(user, password)
        self.connack: list[int] = []
        self.subacks: list[list[int]] = []
        self.received: list[str] = []
        self._connected = threading.Event()
        self._subacked = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = lambda c, u, m: self.received.append(m.topic)
        self.c.reconnect_delay_set(30, 30)  # no quick retries after a refusal
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self._connected.wait(10), "no CONNACK"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack.append(reason_code.value)
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.subacks.append([rc.value for rc in reason_codes])
        self._subacked.set()

    def subscribe(self, topic: str) -> list[int]:
        self._subacked.clear()
        self.c.subscribe(topic, qos=1)
        assert self._subacked.wait(10), "no SUBACK"
        return self.subacks[-1]

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def dynsec(db, tmp_path, topic_root):
    """A Mosquitto with dynamic security from the registry: dam-1, dam-2, gateway gw-1
    with its logger dam-3, and the service user."""
    if mosquitto_binary() is None or dynsec_plugin() is None:
        pytest.skip("mosquitto with its dynamic-security plugin is not installed")
    for dam in ("dam-1", "dam-2"):
        setup_site(db, dam, "check_dam", {"spillway_crest_m": 5.0}, {dam: ["stage_m"]})
    with psycopg.connect(db) as conn:
        pw = {
            "dam-1": add_device(conn, "dam-1", site_id="dam-1"),
            "dam-2": add_device(conn, "dam-2", site_id="dam-2"),
            "gw-1": add_device(conn, "gw-1", kind="gateway"),
        }
        pw["dam-3"] = add_device(conn, "dam-3", site_id="dam-2", gateway_id="gw-1")
        path = write_dynsec_config(
            conn,
            tmp_path / "access",
            root=topic_root,
            service_user="swc-ingest",
            service_password="svc-secret",
        )
    # the production settings docker-compose appends, with this machine's paths
    extra = (
        (CONF_PATH.parent / "secured.conf")
        .read_text()
        .replace("/usr/lib/mosquitto_dynamic_security.so", dynsec_plugin())
        .replace("/mosquitto/access/dynamic-security.json", str(path))
    )
    proc = MosquittoProcess(tmp_path / "mq", extra_conf=extra).start()
    yield proc, pw
    proc.stop()


def _service_url(proc: MosquittoProcess) -> str:
    return f"mqtt://swc-ingest:svc-secret@127.0.0.1:{proc.port}"


def _readings(db: str, device: str) -> int:
    return scalar(
        db,
        "SELECT count(*) FROM readings r JOIN streams s ON s.id = r.stream_id "
        "WHERE s.device_id = %s",
        (device,),
    )


def _batch(device: str, root: str, n: int) -> list[tuple[str, bytes]]:
    return [
        messages(device, root, [(minutes_ago(n - i), "stage_m", float(i))], seq0=i + 1)[0]
        for i in range(n)
    ]


def test_share_group_hijack_is_refused_at_subscribe_time(
    dynsec, db, topic_root, settings_for, start_consumer
):
    """A device asks for a share of every device's telemetry, with a persistent session:
    refused with SUBACK 0x87, so it holds no share and nothing of dam-2's is lost."""
    proc, pw = dynsec
    start_consumer(settings_for(mqtt_url=_service_url(proc)), db)
    thief = Device(proc.port, "dam-1", pw["dam-1"], "dam-1")
    assert thief.connack == [0]
    for topic in (
        f"$share/ingest/{topic_root}/+/telemetry",  # the consumers' group
        f"$share/thief/{topic_root}/+/telemetry",  # a group of its own
        f"{topic_root}/+/telemetry",  # everybody's telemetry
        f"{topic_root}/dam-2/config",  # another device's config
        "#",
    ):
        assert thief.subscribe(topic) == [NOT_AUTHORIZED], topic
    assert thief.subscribe(f"{topic_root}/dam-1/config") == [1]  # its own: granted QoS 1
    old = Device(proc.port, "dam-2", pw["dam-2"], "dam-2", protocol=mqtt.MQTTv311)
    assert old.subscribe(f"$share/ingest/{topic_root}/+/telemetry") == [0x80]  # 3.1.1: failure
    old.close()

    victim = Device(proc.port, "dam-2", pw["dam-2"], "dam-2")
    for topic, payload in _batch("dam-2", topic_root, 100):
        victim.publish(topic, payload)
    wait_for(lambda: _readings(db, "dam-2") == 100, 30, what="all of dam-2's readings")
    assert thief.received == []
    thief.close()
    victim.close()


def test_a_device_cannot_take_over_the_consumers_session(
    dynsec, db, topic_root, settings_for, start_consumer
):
    """A device connecting with the consumer's client id, on its own valid credentials,
    is refused (CONNACK 0x87): the consumer's session and its messages stay."""
    proc, pw = dynsec
    consumer = start_consumer(
        settings_for(mqtt_url=_service_url(proc), client_id="swc-ingest-1"), db
    )
    takeover = Device(proc.port, "dam-1", pw["dam-1"], "swc-ingest-1")
    assert takeover.connack[0] == NOT_AUTHORIZED
    takeover.close()
    assert consumer.consumer.connected.is_set()
    victim = Device(proc.port, "dam-2", pw["dam-2"], "dam-2")
    for topic, payload in _batch("dam-2", topic_root, 150):
        victim.publish(topic, payload)
    wait_for(lambda: _readings(db, "dam-2") == 150, 30, what="all 150 readings")
    victim.close()
    # its own id with its own password is fine; another's id with its password is not
    assert Device(proc.port, "dam-1", pw["dam-1"], "dam-1").connack == [0]
    assert Device(proc.port, "dam-1", pw["dam-1"], "dam-2").connack[0] == NOT_AUTHORIZED
    # Mosquitto 2.0's plugin answers every refused connection with 0x87 (docs/protocol.md)
    assert Device(proc.port, "dam-1", "wrong", "dam-1").connack[0] == NOT_AUTHORIZED
    assert Device(proc.port, "nobody", "x", "nobody").connack[0] == NOT_AUTHORIZED
    anonymous = Device(proc.port, None, None, f"anon-{uuid.uuid4().hex[:6]}")
    assert anonymous.connack[0] == NOT_AUTHORIZED
    anonymous_311 = Device(proc.port, None, None, "anon-311", protocol=mqtt.MQTTv311)
    # 3.1.1's return code 5 (not authorized), which paho reports as 0x87
    assert anonymous_311.connack[0] == NOT_AUTHORIZED


def test_devices_write_only_their_own_topics_and_the_service_reads_the_version(
    dynsec, db, topic_root, settings_for, start_consumer
):
    proc, pw = dynsec
    settings = settings_for(mqtt_url=_service_url(proc))
    start_consumer(settings, db)
    from ingest.subscription import read_broker_version

    assert read_broker_version(settings.mqtt).startswith("mosquitto version")
    dam1 = Device(proc.port, "dam-1", pw["dam-1"], "dam-1")
    for topic, payload in _batch("dam-1", topic_root, 3):
        dam1.publish(topic, payload)
    wait_for(lambda: _readings(db, "dam-1") == 3, 30, what="dam-1's own readings")
    forger = Device(proc.port, "dam-1", pw["dam-1"], "dam-1")  # takes over its own session
    forged = _batch("dam-2", topic_root, 1)[0]
    pubacks: list[int] = []
    forger.c.on_publish = lambda c, u, mid, rc, props: pubacks.append(rc.value)
    forger.c.publish(forged[0], forged[1], qos=1).wait_for_publish(10)
    assert pubacks == [NOT_AUTHORIZED]
    hoarder = Device(proc.port, "dam-1", pw["dam-1"], "dam-1")  # retained junk of its own
    hoarded: list[int] = []
    hoarder.c.on_publish = lambda c, u, mid, rc, props: hoarded.append(rc.value)
    junk = f"{topic_root}/dam-1/junk/1"
    hoarder.c.publish(junk, b"x" * 1000, qos=1, retain=True).wait_for_publish(10)
    assert hoarded == [NOT_AUTHORIZED]  # only telemetry and status are its topics
    liar = Device(proc.port, "dam-1", pw["dam-1"], "dam-1")
    fake = json.dumps({"site_id": "dam-1", "level": 0, "alerts": []}).encode()
    liar.c.publish(f"{topic_root}/alerts/dam-1", fake, qos=1, retain=True).wait_for_publish(10)
    service = Device(proc.port, "swc-ingest", "svc-secret", f"watch-{uuid.uuid4().hex[:6]}")
    assert service.subscribe(f"{topic_root}/alerts/#") == [1]
    marker = Device(proc.port, "dam-2", pw["dam-2"], "dam-2")
    for topic, payload in _batch("dam-2", topic_root, 1):
        marker.publish(topic, payload)
    wait_for(lambda: _readings(db, "dam-2") == 1, 30, what="dam-2's own reading")
    assert scalar(db, "SELECT count(*) FROM readings") == 4  # the forged one is not there
    assert service.received == []  # no fake "all clear" retained
    gateway = Device(proc.port, "gw-1", pw["gw-1"], "gw-1")
    assert gateway.subscribe(f"{topic_root}/dam-3/config") == [1]  # its logger's config
    assert gateway.subscribe(f"{topic_root}/dam-1/config") == [NOT_AUTHORIZED]
    for c in (dam1, forger, hoarder, liar, service, marker, gateway):
        c.close()


def test_swc_broker_acl_writes_the_dynamic_security_config(db, tmp_path, topic_root):
    from click.testing import CliRunner

    from swc_cli import main

    with psycopg.connect(db) as conn:
        add_device(conn, "dam-9")
    out = tmp_path / "access"
    result = CliRunner().invoke(
        main,
        [
            "broker", "acl", "--dir", str(out), "--database-url", db, "--topic-root",
            topic_root, "--service-user", "svc", "--service-password", "pw",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "dynamic-security.json").read_text())
    assert (out / "dynamic-security.json").stat().st_mode & 0o077 == 0
    clients = {c["username"]: c for c in config["clients"]}
    assert clients["dam-9"]["clientid"] == "dam-9" and "clientid" not in clients["svc"]
    assert config["defaultACLAccess"]["subscribe"] is False
    assert {"passwd", "acl"} <= {p.name for p in out.iterdir()}


def _device_row(db: str, device: str):
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT site_id, gateway_id, auto_registered FROM devices WHERE id = %s", (device,)
        ).fetchone()


def test_a_logger_cannot_squat_an_unregistered_device_id(
    db, broker, topic_root, settings_for, start_consumer
):
    """Device A names an unregistered id in its payload, on its own topic: with
    auto-registration on, the id is not tied to A (not_owner), so when an operator
    registers it for another site later, A cannot write that site's readings."""
    from tests.support.mqtt import Publisher

    setup_site(db, "dam-1", "check_dam", {"spillway_crest_m": 5.0}, {"dam-1": ["stage_m"]})
    with psycopg.connect(db) as conn:
        add_device(conn, "dam-1", site_id="dam-1")
    start_consumer(settings_for(auto_register=True), db)
    squat = messages("dev-new", topic_root, [(minutes_ago(1), "stage_m", 1.0)], sender="dam-1")
    with Publisher(broker.url) as pub:
        pub.publish_all(squat)
    wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 1, what="dead letter")
    assert scalar(db, "SELECT error_code FROM dead_letters") == "not_owner"
    assert _device_row(db, "dev-new") is None  # not registered, not tied to dam-1
    assert scalar(db, "SELECT count(*) FROM readings") == 0


def test_registering_a_device_resets_what_auto_registration_tied_it_to(db, tmp_path):
    """A relation made by auto-registration (an unknown sender bringing an id in, as on an
    open development broker) does not survive the operator registering that id."""
    from ingest.store.registry import StreamResolver, load_registry, read_registry_file

    setup_site(db, "dam-2", "check_dam", {"spillway_crest_m": 5.0}, {"dam-2": ["stage_m"]})
    resolver = StreamResolver(auto_register=True)
    with psycopg.connect(db, autocommit=True) as conn:
        resolver.check_owner(conn, "stranger", "dev-new")  # auto: behind "stranger"
        resolver.check_owner(conn, "stranger", "dev-old")
    assert _device_row(db, "dev-new") == (None, "stranger", True)
    with psycopg.connect(db) as conn:
        add_device(conn, "dev-new", site_id="dam-2")
    assert _device_row(db, "dev-new") == ("dam-2", None, False)
    f = tmp_path / "sites.yaml"
    f.write_text("sites:\n  - {id: s9, kind: check_dam, name: S9, devices: [{id: dev-old}]}\n")
    with psycopg.connect(db) as conn:
        load_registry(conn, read_registry_file(f))
    assert _device_row(db, "dev-old") == ("s9", None, False)
    fresh = StreamResolver(auto_register=True)
    with psycopg.connect(db, autocommit=True) as conn:
        for device in ("dev-new", "dev-old"):
            with pytest.raises(Exception, match="not_owner"):
                fresh.check_owner(conn, "stranger", device)
        fresh.check_owner(conn, "dev-new", "dev-new")  # the device itself still may


def test_dead_letters_are_capped_counted_and_expire(
    db, broker, topic_root, settings_for, start_consumer
):
    """A device sending large garbage fills no disk: each dead letter keeps at most the cap
    of its payload (with the size that arrived), is counted per day, sender and code for
    good, and is deleted after the retention."""
    from tests.support.mqtt import Publisher

    with psycopg.connect(db, autocommit=True) as conn:  # one from long ago
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, payload, payload_size, error_code, "
            "error) VALUES (now() - interval '40 days', 't', 'x', 1, 'not_json', 'old')"
        )
    rc = start_consumer(settings_for(dead_letter_max_bytes=1000, dead_letter_retain_days=30), db)
    big = b"{" + b"x" * (600 * 1024)  # over the protocol's 512 KiB: too_large
    with Publisher(broker.url) as pub:
        pub.publish_all([(f"{topic_root}/dam-9/telemetry", big)] * 5)
        pub.publish_all([(f"{topic_root}/dam-9/telemetry", b"not json")] * 3)
    wait_for(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 8, what="8 dead letters")
    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT error_code, length(payload), payload_size FROM dead_letters ORDER BY id"
        ).fetchall()
        counts = conn.execute(
            "SELECT sender, error_code, messages, bytes FROM dead_letter_counts "
            "WHERE day = (now() AT TIME ZONE 'UTC')::date ORDER BY error_code"
        ).fetchall()
    assert stored == [("too_large", 1000, len(big))] * 5 + [("not_json", 8, 8)] * 3
    assert counts == [("dam-9", "not_json", 3, 24), ("dam-9", "too_large", 5, 5 * len(big))]
    assert scalar(db, "SELECT count(*) FROM dead_letters WHERE error = 'old'") == 0  # expired
    assert scalar(db, "SELECT sum(messages) FROM dead_letter_counts") == 8
    metrics = rc.consumer.metrics
    assert metrics.dead_letters.labels(code="too_large")._value.get() == 5


def _first_message_on(port: int, topic: str) -> bytes:
    """Subscribe to ``topic``, then publish a marker on it: the first message received is a
    retained one if the broker holds one, else the marker."""
    got: list[bytes] = []
    subscribed = threading.Event()
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        c.publish(topic, b"marker", qos=1).wait_for_publish(10)
        wait_for(lambda: b"marker" in got, 10, what="the marker")
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


def test_retained_telemetry_is_stored_then_deleted_at_the_broker(
    db, broker, topic_root, settings_for, start_consumer
):
    """The protocol retains status and config, never telemetry: a retained telemetry
    message is stored like any other, then deleted at the broker, so devices cannot fill
    the broker's database with retained payloads."""
    rc = start_consumer(settings_for(), db)
    device = Device(broker.port, None, None, "dam-r")
    topic, payload = _batch("dam-r", topic_root, 1)[0]
    device.c.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    wait_for(lambda: _readings(db, "dam-r") == 1, 30, what="the retained reading stored")
    wait_for(lambda: rc.consumer.metrics.retained_cleared._value.get() == 1, 10, what="clear")
    rc.stop()  # the marker below must not reach the database
    device.close()
    assert _first_message_on(broker.port, topic) == b"marker"  # nothing retained any more
    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0  # its own clear not seen


def test_a_gateway_forwards_through_the_secured_broker(
    dynsec, db, tmp_path, topic_root, settings_for, start_consumer
):
    """The real gateway, with its own credentials and its id as client id: its logger's
    readings are stored, and its retained status is allowed."""
    from gateway.config import GatewayConfig
    from gateway.service import Gateway
    from tests.gateway.gwtest_support import Logger, gateway_options, row_message, wait_until

    proc, pw = dynsec
    start_consumer(settings_for(mqtt_url=_service_url(proc)), db)
    local = MosquittoProcess(tmp_path / "local").start()
    options = gateway_options(tmp_path, "gw-1", topic_root, local.port, proc.port)
    options["upstream"].update(username="gw-1", password=pw["gw-1"])
    gw = Gateway(GatewayConfig.model_validate(options)).start()
    logger = Logger(local.port, "dam-3-local")
    try:
        wait_until(gw.local_connected.is_set, 10, "the local connection")
        for m in range(4):
            logger.publish(f"{topic_root}/dam-3/telemetry", row_message("dam-3", m + 1, m * 5, 5))
        logger.flush()
        wait_for(lambda: _readings(db, "dam-3") == 20, 30, what="the logger's 20 readings")
        service = Device(proc.port, "swc-ingest", "svc-secret", "status-watch")
        assert service.subscribe(f"{topic_root}/gw-1/status") == [1]
        wait_for(lambda: service.received == [f"{topic_root}/gw-1/status"], 10, what="status")
        service.close()
    finally:
        logger.close()
        gw.stop()
        local.stop()
    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0
