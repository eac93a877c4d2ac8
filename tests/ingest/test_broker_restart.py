"""A broker restart loses nothing: the subscription the consumers hold, on this machine's
Mosquitto, and a broker whose persistence works however it is started.

The order of reconnection is forced with a proxy the test holds closed: the
consumers come back only after the messages were acknowledged by the restarted
broker, the case a race would otherwise hide.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from ingest.broker import MosquittoProcess
from ingest.cli import ingest_cmd
from ingest.settings import MqttTarget, Settings
from ingest.subscription import (
    SubscriptionRefused,
    broker_persists_shared,
    mosquitto_version,
    plan_for,
    plan_subscription,
    read_broker_version,
)
from ingest.workers import worker_settings
from tests.support.mqtt import Publisher
from tests.support.payloads import row_message
from tests.support.proxy import HoldingProxy
from tests.support.waiting import scalar, wait_for

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _settings(url: str, root: str, tmp_path: Path, **overrides) -> Settings:
    values = dict(
        mqtt_url=url,
        topic_root=root,
        client_id=f"c-{uuid.uuid4().hex[:8]}",
        metrics_port=0,
        batch_max_latency_ms=50,
        data_dir=tmp_path,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


def _messages(root: str, start: int, stop: int) -> list[tuple[str, bytes]]:
    """Message i: one reading of value i, at its own minute, from device d{i % 7}."""
    out = []
    for i in range(start, stop):
        t = (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        reading = [{"t": t, "ch": "stage_m", "v": float(i)}]
        out.append(
            (
                f"{root}/d{i % 7}/telemetry",
                json.dumps(row_message(f"d{i % 7}", i + 1, reading)).encode(),
            )
        )
    return out


def _count(db: str) -> int:
    return scalar(db, "SELECT count(*) FROM readings")


# --- the decision ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mosquitto version 2.0.11", False),
        ("mosquitto version 2.0.19", False),
        ("mosquitto version 2.0.22", False),
        ("mosquitto version 1.6.12", False),
        ("mosquitto version 2.1.2", None),  # only with the persist-sqlite plugin
        ("mosquitto version 10.0.0", None),
        ("EMQX 5.8.0", None),
        ("", None),
        (None, None),
    ],
)
def test_which_brokers_restore_shared_subscriptions(text, expected):
    assert broker_persists_shared(text) is expected


def test_version_is_parsed_as_numbers_not_text():
    assert mosquitto_version("mosquitto version 2.0.9") == (2, 0, 9)
    assert mosquitto_version("mosquitto version 2.0.9") < (2, 0, 19)
    assert broker_persists_shared("mosquitto version 2.0.100") is False


def _plan(version: str | None, consumers: int = 1, **overrides):
    calls = []

    def read() -> str | None:
        calls.append(1)
        return version

    settings = Settings(_env_file=None, mqtt_url="mqtt://h:1", topic_root="r/v1", **overrides)
    return plan_subscription(settings, consumers, read), calls


def test_one_consumer_holds_a_plain_subscription_without_asking_the_broker():
    plan, calls = _plan("mosquitto version 2.0.11")
    assert (plan.mode, plan.filter, plan.stale) == (
        "plain",
        "r/v1/+/telemetry",
        "$share/ingest/r/v1/+/telemetry",
    )
    assert plan.warning is None and calls == []
    assert "one consumer" in plan.reason


def test_several_consumers_are_refused_on_a_broker_that_drops_shared_subscriptions():
    with pytest.raises(SubscriptionRefused) as err:
        _plan("mosquitto version 2.0.11", consumers=2)
    text = str(err.value)
    for needed in (
        "2 consumers split the load",
        "2.0.11",
        "dropped",
        "--workers",
        "persist-sqlite",
        "SWC_ALLOW_UNSAFE_SHARED=true",
    ):
        assert needed in text
    # saying "shared" does not make a 2.0 broker keep them
    with pytest.raises(SubscriptionRefused, match=r"no Mosquitto 2\.0 does"):
        _plan("mosquitto version 2.0.22", consumers=2, subscription="shared")


def test_accepting_the_loss_shares_and_warns():
    plan, _ = _plan("mosquitto version 2.0.11", consumers=2, allow_unsafe_shared=True)
    assert plan.mode == "shared" and "dropped" in plan.warning


def test_where_the_version_cannot_tell_the_operator_decides():
    with pytest.raises(SubscriptionRefused, match=r"\$SYS/broker/version is unreadable"):
        _plan(None, consumers=2)
    with pytest.raises(SubscriptionRefused, match="only with its persist-sqlite plugin"):
        _plan("mosquitto version 2.1.2", consumers=2)
    with pytest.raises(SubscriptionRefused, match="SWC_SUBSCRIPTION=shared"):
        _plan("EMQX 5.8.0", consumers=2)
    plan, _ = _plan("mosquitto version 2.1.2", consumers=3, subscription="shared")
    assert (plan.mode, plan.filter, plan.stale) == (
        "shared",
        "$share/ingest/r/v1/+/telemetry",
        "r/v1/+/telemetry",
    )
    assert "operator says" in plan.reason and plan.warning is None


def test_a_shared_subscription_needs_a_group_and_a_plain_one_a_single_consumer():
    with pytest.raises(SubscriptionRefused, match="each store every message"):
        _plan("mosquitto version 2.1.2", consumers=2, shared_group="")  # auto: plain
    with pytest.raises(SubscriptionRefused, match="group"):
        _plan("mosquitto version 2.1.2", subscription="shared", shared_group="")
    with pytest.raises(SubscriptionRefused, match="each store every message"):
        _plan("mosquitto version 2.1.2", consumers=2, subscription="plain")


def test_the_version_is_read_from_the_broker(broker):
    text = read_broker_version(MqttTarget.from_url(broker.url))
    assert text is not None and mosquitto_version(text) is not None
    assert text.endswith(os.popen(f"{broker.binary} -h").readline().split()[-1])


# --- the behaviour on this machine's broker -------------------------------------------
def _restart_with_consumers_away(broker, proxy, consumers, root: str, lost_window: range):
    """Cut the consumers off, restart the broker, publish ``lost_window`` (acknowledged by
    the restarted broker), then let the consumers back."""
    proxy.hold()
    wait_for(lambda: not any(c.consumer.connected.is_set() for c in consumers), 10, what="cut")
    broker.stop()
    broker.start()
    with Publisher(broker.url) as pub:
        pub.publish_all(_messages(root, lost_window.start, lost_window.stop))
    proxy.release()
    wait_for(lambda: all(c.consumer.subscribed.is_set() for c in consumers), 20, what="back")


def _mosquittos() -> list:
    """This machine's mosquitto (built-in persistence), and the brokers named in
    SWC_TEST_MOSQUITTO_BINARIES: entries separated by ':', each a mosquitto binary or
    ``binary+plugin.so`` for Mosquitto 2.1's persist-sqlite plugin, e.g. ones built from
    source: ``/src/2.0.22/mosquitto:/src/2.1.2/mosquitto+/src/2.1.2/persist_sqlite.so``."""
    params = [pytest.param(None, None, id="installed")]
    for i, entry in enumerate(
        e for e in os.environ.get("SWC_TEST_MOSQUITTO_BINARIES", "").split(":") if e
    ):
        binary, _, plugin = entry.partition("+")
        name = f"{i}-{Path(binary).parent.name}" + ("-persist-sqlite" if plugin else "")
        params.append(pytest.param(binary, plugin or None, id=name))
    return params


@pytest.mark.parametrize(("binary", "plugin"), _mosquittos())
def test_two_consumers_share_only_where_a_broker_restart_keeps_their_subscription(
    tmp_path, db, topic_root, start_consumer, binary, plugin
):
    """Two consumers split the load through a broker restart and store everything once on
    a broker that restores shared subscriptions (Mosquitto 2.1 with persist-sqlite, which
    the operator declares: SWC_SUBSCRIPTION=shared). Elsewhere (every Mosquitto 2.0, as on
    Debian 12, and 2.1's built-in persistence) they are refused, and the loss the refusal
    prevents is real."""
    broker = MosquittoProcess(tmp_path / "central", binary=binary, persist_plugin=plugin).start()
    proxy = HoldingProxy(broker.port)
    try:
        settings = _settings(proxy.url, topic_root, tmp_path, client_id="pair", workers=2)
        version = read_broker_version(MqttTarget.from_url(broker.url))
        if plugin:
            settings = settings.model_copy(update={"subscription": "shared"})
            plan = plan_for(settings, 2)
            assert plan.mode == "shared" and plan.warning is None
            pair = [start_consumer(worker_settings(settings, i), db) for i in (1, 2)]
            assert all(c.consumer.plan.filter == plan.filter for c in pair)
            with Publisher(broker.url) as pub:
                pub.publish_all(_messages(topic_root, 0, 200))
            wait_for(lambda: _count(db) == 200, 30, what="the first 200")
            _restart_with_consumers_away(broker, proxy, pair, topic_root, range(200, 600))
            wait_for(lambda: _count(db) == 600, 30, what="all 600 readings")
            assert scalar(db, "SELECT count(DISTINCT (stream_id, time)) FROM readings") == 600
            received = [c.consumer.metrics.snapshot()["messages_received"] for c in pair]
            assert all(n > 0 for n in received)  # the load was split
            return

        with pytest.raises(SubscriptionRefused) as err:
            plan_for(settings, 2)
        assert version in str(err.value) and "persist-sqlite" in str(err.value)

        # What the refusal prevents: a shared subscription (one member, accepted loss)
        # matches nothing after the restart, so the window's messages are dropped.
        unsafe = _settings(
            proxy.url,
            topic_root,
            tmp_path,
            client_id="unsafe",
            subscription="shared",
            allow_unsafe_shared=True,
        )
        member = start_consumer(unsafe, db)
        assert member.consumer.plan.mode == "shared"
        if broker_persists_shared(version) is False:  # a 2.0 broker: the loss is known
            assert member.consumer.plan.warning
        with Publisher(broker.url) as pub:
            pub.publish_all(_messages(topic_root, 0, 50))
        wait_for(lambda: _count(db) == 50, 30, what="the first 50")
        _restart_with_consumers_away(broker, proxy, [member], topic_root, range(50, 150))
        with Publisher(broker.url) as pub:  # a marker after the member is back
            pub.publish_all(_messages(topic_root, 150, 151))
        wait_for(
            lambda: scalar(db, "SELECT count(*) FROM readings WHERE value = 150") == 1,
            30,
            what="the marker",
        )
        assert _count(db) == 51  # the 100 acknowledged during the window are gone
    finally:
        proxy.close()
        broker.stop()


def test_swc_ingest_refuses_workers_on_a_broker_that_drops_shared_subscriptions(
    broker, db, topic_root
):
    """No broker's version proves it keeps shared subscriptions: `--workers 2` is refused
    before any worker starts, with the fix."""
    result = CliRunner().invoke(
        ingest_cmd,
        [
            "--database-url",
            db,
            "--mqtt-url",
            broker.url,
            "--topic-root",
            topic_root,
            "--workers",
            "2",
            "--metrics-port",
            "0",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "2 consumers split the load" in result.output
    assert "dropped" in result.output and "persist-sqlite" in result.output
    assert "SWC_ALLOW_UNSAFE_SHARED" in result.output
    assert "worker started" not in result.output


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """The broker acknowledged the message (PUBACK).

    A QoS 1 message published while the client is disconnected is kept and sent on
    reconnection, but its ``rc`` stays ``MQTT_ERR_NO_CONN``, so paho's
    ``is_published()`` raises for it even after its PUBACK (paho-mqtt 2.2): whether a
    run publishes into that window depends on timing. Its PUBACK still marks it."""
    if info.rc == mqtt.MQTT_ERR_NO_CONN:
        return info._published
    return info.is_published()


def test_a_publisher_that_keeps_publishing_through_a_broker_restart_loses_nothing(
    tmp_path, db, topic_root, start_consumer
):
    """A device publishing QoS 1 throughout: what it sent while the broker was down or
    restarting is resent by its client, and the consumer's session keeps the rest."""
    broker = MosquittoProcess(tmp_path / "central").start()
    try:
        start_consumer(_settings(broker.url, topic_root, tmp_path, client_id="through"), db)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="device-through",
            protocol=mqtt.MQTTv5,
        )
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 1)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        n = 3000
        infos: list[mqtt.MQTTMessageInfo] = []
        restart_after = threading.Event()
        stop_publishing = threading.Event()

        def publish() -> None:
            for i, (topic, payload) in enumerate(_messages(topic_root, 0, n)):
                infos.append(client.publish(topic, payload, qos=1))
                if i == n // 3:
                    restart_after.set()
                if stop_publishing.wait(0.001 if i % 10 == 0 else 0):
                    return

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        assert restart_after.wait(30)
        broker.stop()
        broker.start()
        publisher.join(120)
        assert not publisher.is_alive()
        assert len(infos) == n
        unacked = lambda: sum(not _acknowledged(i) for i in infos)  # noqa: E731
        wait_for(lambda: unacked() == 0, 120, what="every PUBACK")
        client.disconnect()
        client.loop_stop()
        try:
            wait_for(lambda: _count(db) == n, 120, what=f"all {n} readings")
        except AssertionError:
            with psycopg.connect(db) as conn:
                stored = {int(v) for (v,) in conn.execute("SELECT value FROM readings")}
            missing = sorted(set(range(n)) - stored)
            raise AssertionError(f"{len(missing)} readings missing, first {missing[:20]}") from None
        assert scalar(db, "SELECT count(DISTINCT (stream_id, time)) FROM readings") == n
    finally:
        stop_publishing.set()
        broker.stop()


# --- persistence that works however the broker is started -------------------------------
def _root_with_broker_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("only a broker started as root drops to another user")
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user on this machine")


def test_started_as_root_the_broker_runs_as_mosquitto_in_a_folder_it_can_write():
    user = _root_with_broker_user()
    folder = Path(tempfile.mkdtemp(prefix="swc-broker-"))
    folder.chmod(0o755)  # a folder the broker user can enter, as `swc up`'s data/broker
    broker = MosquittoProcess(folder / "broker")
    try:
        broker.start()
        assert "\nuser mosquitto\n" in broker.conf.read_text()
        assert broker.db_path.stat().st_uid == user.pw_uid  # written by the dropped user
        broker.stop()
        broker.start()  # it reads what it wrote
    finally:
        broker.stop()
        shutil.rmtree(folder)


def test_a_broker_that_cannot_write_its_persistence_file_does_not_start(tmp_path):
    _root_with_broker_user()
    closed = tmp_path / "closed"  # pytest's folders are closed to other users
    broker = MosquittoProcess(closed, extra_conf="user mosquitto")
    with pytest.raises(RuntimeError, match="cannot write its persistence file"):
        broker.start()
    assert broker.proc is None


# --- the alert-state publisher -------------------------------------------------------
def test_alert_state_is_retained_again_after_a_broker_lost_it(tmp_path, db, topic_root):
    """The notifier only publishes; after a restart that lost the retained messages (a crash
    between autosaves, a lost data folder) it republishes every site's state on reconnect."""
    from ingest.alerting.notify import Notifier

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (id, kind, name) VALUES ('dam-a', 'check_dam', 'A'), "
            "('dam-b', 'check_dam', 'B')"
        )
        broker = MosquittoProcess(tmp_path / "central").start()
    notifier = Notifier(_settings(broker.url, topic_root, tmp_path), db).start()
    try:
        for site in ("dam-a", "dam-b"):
            assert _retained(broker.port, f"{topic_root}/alerts/{site}")["level"] == 0
        broker.stop()
        broker.db_path.unlink()  # the broker comes back without any retained message
        broker.start()
        for site in ("dam-a", "dam-b"):
            assert _retained(broker.port, f"{topic_root}/alerts/{site}")["site_id"] == site
    finally:
        notifier.stop()
        broker.stop()


def _retained(port: int, topic: str) -> dict:
    got: dict = {}
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, msg: got.setdefault("m", json.loads(msg.payload))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_for(lambda: "m" in got, 20, what=f"a retained message on {topic}")
    finally:
        client.disconnect()
        client.loop_stop()
    return got["m"]


def test_a_session_kept_from_the_shared_mode_drops_its_shared_filter(
    db, broker, topic_root, tmp_path, start_consumer
):
    """A consumer that ran with the former default (shared) and now runs plain under the same
    client id unsubscribes the shared filter: it does not get every message twice."""
    old = start_consumer(
        _settings(
            broker.url,
            topic_root,
            tmp_path,
            client_id="upgraded",
            subscription="shared",
            allow_unsafe_shared=True,
        ),
        db,
    )
    old.stop()
    new = start_consumer(_settings(broker.url, topic_root, tmp_path, client_id="upgraded"), db)
    assert new.consumer.plan.mode == "plain"
    with Publisher(broker.url) as pub:
        pub.publish_all(_messages(topic_root, 0, 100))
        wait_for(lambda: _count(db) == 100, 30, what="100 readings")
        pub.publish_all(_messages(topic_root, 100, 101))  # a last one, after the first 100
    wait_for(lambda: _count(db) == 101, 30, what="the last reading")
    assert new.consumer.metrics.snapshot()["messages_received"] == 101


def test_an_mqtt_311_consumer_keeps_what_arrives_while_the_broker_restarts(
    tmp_path, db, topic_root, start_consumer
):
    """The same guarantee over MQTT 3.1.1 (the embedded amqtt broker's protocol): a QoS 1
    subscription in a persistent session (clean session off)."""
    broker = MosquittoProcess(tmp_path / "central").start()
    proxy = HoldingProxy(broker.port)
    try:
        settings = _settings(proxy.url, topic_root, tmp_path, mqtt_protocol="3.1.1")
        consumer = start_consumer(settings, db)
        with Publisher(broker.url) as pub:
            pub.publish_all(_messages(topic_root, 0, 50))
        wait_for(lambda: _count(db) == 50, 30, what="the first 50")
        _restart_with_consumers_away(broker, proxy, [consumer], topic_root, range(50, 250))
        wait_for(lambda: _count(db) == 250, 30, what="all 250 readings")
    finally:
        proxy.close()
        broker.stop()
