"""The gateway's two MQTT clients (paho-mqtt 2, callback API 2): building and connecting them."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .config import BrokerConfig


def make_client(
    config: BrokerConfig,
    client_id: str,
    *,
    persistent: bool,
    manual_ack: bool = False,
    will: tuple[str, bytes] | None = None,
) -> mqtt.Client:
    """A paho client for ``config``; ``persistent`` keeps the broker session across connections."""
    v5 = config.protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    user, password = config.credentials()
    if user:
        client.username_pw_set(user, password)
    if config.tls:
        client.tls_set(
            ca_certs=str(config.ca_file) if config.ca_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.reconnect_delay_set(
        min_delay=max(1, round(config.reconnect_min_s)),
        max_delay=max(1, round(config.reconnect_max_s)),
    )
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client


def connect_async(
    client: mqtt.Client,
    config: BrokerConfig,
    *,
    persistent: bool,
    session_expiry_s: int = 0,
    receive_maximum: int | None = None,
) -> None:
    """Start connecting in paho's network thread; paho reconnects by itself afterwards."""
    kwargs: dict = {}
    if config.protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = session_expiry_s
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
        kwargs = {"clean_start": not persistent, "properties": props}
    client.connect_async(config.host, config.port, keepalive=config.keepalive_s, **kwargs)
    client.loop_start()
