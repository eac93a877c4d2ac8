"""The one MQTT URL parser of every role (protocol/mqtt_url.py)."""

from __future__ import annotations

import pytest

from protocol.mqtt_url import MqttUrl, parse_mqtt_url


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("mqtt://broker.local", MqttUrl("broker.local", 1883, False)),
        ("mqtt://127.0.0.1:1884", MqttUrl("127.0.0.1", 1884, False)),
        ("mqtts://broker.local", MqttUrl("broker.local", 8883, True)),
        ("mqtts://broker.local:9883/", MqttUrl("broker.local", 9883, True)),
        ("tcp://10.1.2.3", MqttUrl("10.1.2.3", 1883, False)),
        ("MQTT://Broker.Local:1883", MqttUrl("broker.local", 1883, False)),
        ("mqtt://ingest:s3cret@h:1883", MqttUrl("h", 1883, False, "ingest", "s3cret")),
        # %-escapes in user name and password are decoded
        ("mqtt://a%40b:p%40ss%3Aw%2Fd@h", MqttUrl("h", 1883, False, "a@b", "p@ss:w/d")),
        ("mqtt://only-user@h", MqttUrl("h", 1883, False, "only-user", None)),
        ("mqtt://[::1]:1884", MqttUrl("::1", 1884, False)),
        ("mqtts://u:p@[2001:db8::7]", MqttUrl("2001:db8::7", 8883, True, "u", "p")),
        ("  mqtt://h  ", MqttUrl("h", 1883, False)),
    ],
)
def test_parses(url, want):
    assert parse_mqtt_url(url) == want
    assert MqttUrl.parse(url) == want


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:1883", "scheme 'http'"),
        ("ws://h", "scheme 'ws'"),
        ("h:1883", "scheme"),
        ("broker.local", "no scheme"),
        ("", "empty"),
        ("mqtt://", "no host"),
        ("mqtt://:1883", "no host"),
        ("mqtt://u:p@", "no host"),
        ("mqtt://h:99999", "invalid port"),
        ("mqtt://h:0", "invalid port"),
        ("mqtt://h:port", "invalid port"),
        ("mqtt://h/topic", "path"),
        ("mqtt://h?x=1", "query"),
        ("mqtt://[::1", "malformed"),
        ("mqtt://:pw@h", "no user name"),
    ],
)
def test_refuses_with_a_clear_error(url, says):
    with pytest.raises(ValueError, match=r"MQTT URL|empty") as err:
        parse_mqtt_url(url)
    assert says in str(err.value)


def test_errors_never_show_the_password():
    with pytest.raises(ValueError) as err:
        parse_mqtt_url("mqtt://svc:hunter2-secret@h:notaport")
    assert "hunter2" not in str(err.value) and "svc:***@" in str(err.value)


def test_url_round_trips_and_hides_the_password():
    u = parse_mqtt_url("mqtts://a%40b:p%40ss@[::1]:8884")
    assert u.url() == "mqtts://a%40b:***@[::1]:8884"
    assert str(u) == u.url()
    assert parse_mqtt_url(u.url(hide_password=False)) == u
    assert parse_mqtt_url("mqtt://h").url() == "mqtt://h:1883"


def test_every_role_uses_it():
    from firmware_sim.mqtt_link import MqttUrl as SimUrl
    from gateway.config import BrokerConfig
    from ingest.settings import Settings

    assert SimUrl is MqttUrl
    s = Settings(_env_file=None, mqtt_url="mqtt://svc:p%40w@[::1]:1884")
    assert s.mqtt == MqttUrl("::1", 1884, False, "svc", "p@w")
    b = BrokerConfig(url="mqtts://u:x%2Fy@gw.example")
    assert (b.host, b.port, b.tls) == ("gw.example", 8883, True)
    assert b.credentials() == ("u", "x/y")
    assert BrokerConfig(url="mqtt://u:x@h", password="explicit").credentials() == ("u", "explicit")
    with pytest.raises(ValueError, match="scheme 'http'"):
        Settings(_env_file=None, mqtt_url="http://h")
    with pytest.raises(ValueError, match="no host"):
        BrokerConfig(url="mqtt://")
