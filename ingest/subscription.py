"""Which subscription the ingest consumers hold, chosen so that a broker restart loses nothing.

A broker restores the sessions it persisted, with their subscriptions, when it
restarts. Messages that arrive before a consumer reconnects are queued in its
session, but only if a subscription of that session matches them. Mosquitto's
own persistence file (``persistence true``) keeps plain subscriptions and not
shared ones (``$share/group/...``) in every release up to 2.1.2: its writer
walks the plain subscribers of each topic node and never the shared ones.
With a shared subscription every message published between a broker restart
and the consumers' re-subscription therefore matches nothing and is dropped.
Mosquitto 2.1's persist-sqlite plugin does restore them (checked against
2.0.11, 2.0.22 and 2.1.2; tests/ingest/test_broker_restart.py).

So the consumer holds

* a plain persistent-session subscription when one consumer runs (every
  broker restores it);
* a shared subscription only when several consumers split the load, and only
  on a broker known to restore it. ``$SYS/broker/version`` rules out
  Mosquitto 2.0; a 2.1 broker cannot be told apart from its version alone
  (the plugin is configuration), so the operator says so with
  ``SWC_SUBSCRIPTION=shared``. Any other combination is refused with the fix
  in the message, unless the operator accepts the loss
  (``SWC_ALLOW_UNSAFE_SHARED``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol.topics import shared_telemetry_filter, telemetry_filter

from .settings import MqttTarget, Settings

log = logging.getLogger(__name__)

VERSION_TOPIC = "$SYS/broker/version"
# The first Mosquitto that can restore shared subscriptions: 2.1, and only with its
# persist-sqlite plugin; no 2.0 release can.
MOSQUITTO_PERSIST_PLUGIN = (2, 1, 0)
_MOSQUITTO = re.compile(r"^mosquitto version (\d+)\.(\d+)\.(\d+)")

_LOSS = (
    "messages that arrive after a broker restart and before the consumers subscribe again "
    "match no subscription and are dropped"
)
_FIX = (
    "Fix: run a single consumer (no --workers: a plain persistent subscription, which every "
    "broker restores), or run Mosquitto 2.1 or later with its persist-sqlite plugin "
    "(docs/architecture.md) and say so with SWC_SUBSCRIPTION=shared, or accept the loss "
    "with SWC_ALLOW_UNSAFE_SHARED=true."
)


class SubscriptionRefused(ValueError):
    """The requested consumers would lose messages on a broker restart; the text says the fix."""


class BrokerUnreachable(RuntimeError):
    """The broker could not be reached to read its version."""


@dataclass(frozen=True)
class SubscriptionPlan:
    """The subscription a consumer holds, and why."""

    mode: Literal["plain", "shared"]
    filter: str  # what the consumer subscribes to
    stale: str  # the other mode's filter: unsubscribed, so one session never holds both
    reason: str
    warning: str | None = None  # loss the operator accepted; logged on every connect

    def log(self) -> None:
        log.info("subscription mode=%s filter=%s: %s", self.mode, self.filter, self.reason)
        if self.warning:
            log.warning("UNSAFE SUBSCRIPTION: %s", self.warning)


def mosquitto_version(text: str | None) -> tuple[int, int, int] | None:
    """``(2, 0, 11)`` from ``"mosquitto version 2.0.11"``; None for any other broker."""
    m = _MOSQUITTO.match(text.strip()) if text else None
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def broker_persists_shared(version_text: str | None) -> bool | None:
    """Whether a broker of this ``$SYS/broker/version`` restores shared subscriptions after a
    restart: False for Mosquitto 2.0 and older, None when the version cannot tell (Mosquitto
    2.1 or later: only with the persist-sqlite plugin; another broker; no version). Never
    True: no version string proves it."""
    version = mosquitto_version(version_text)
    if version is None or version >= MOSQUITTO_PERSIST_PLUGIN:
        return None
    return False


def read_broker_version(
    target: MqttTarget,
    *,
    protocol: str = "5",
    client_id: str = "swc-version-check",
    connect_timeout_s: float = 30.0,
    answer_timeout_s: float = 5.0,
) -> str | None:
    """The broker's retained ``$SYS/broker/version``, or None if it publishes none to us
    (``$SYS`` off, or the ACL does not let this user read it). A clean session, gone after."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        clean_session=None if protocol == "5" else True,
    )
    if target.username:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set()
    connected, answered = threading.Event(), threading.Event()
    found: dict[str, str] = {}

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            found["refused"] = str(reason_code)
            answered.set()
            return
        connected.set()
        c.subscribe(VERSION_TOPIC, qos=0)

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            answered.set()  # not allowed to read it

    def on_message(c, userdata, msg: mqtt.MQTTMessage) -> None:
        found["version"] = msg.payload.decode("utf-8", "replace").strip()
        answered.set()

    client.on_connect, client.on_subscribe, client.on_message = (
        on_connect,
        on_subscribe,
        on_message,
    )
    client.reconnect_delay_set(1, 5)
    client.connect_async(target.host, target.port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(connect_timeout_s):
            raise BrokerUnreachable(
                f"could not reach the broker at {target.url()} within {connect_timeout_s:.0f} s"
                + (f" (refused: {found['refused']})" if "refused" in found else "")
                + " to read its version"
            )
        answered.wait(answer_timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return found.get("version")


def plan_subscription(
    settings: Settings, consumers: int, broker_version: Callable[[], str | None]
) -> SubscriptionPlan:
    """Choose the subscription of ``consumers`` consumer processes (see the module docstring).

    ``broker_version`` is called only when a shared subscription is considered.
    Raises SubscriptionRefused where the combination can lose data.
    """
    root, group = settings.topic_root, settings.shared_group
    plain = telemetry_filter(root)
    shared = shared_telemetry_filter(root, group) if group else None
    mode = settings.subscription
    if mode == "auto":
        if consumers == 1 or not group:
            mode = "plain"
            why = "one consumer" if consumers == 1 else "no shared group (SWC_SHARED_GROUP='')"
        else:
            mode = "shared"
            why = f"{consumers} consumers split the load"
    else:
        why = f"SWC_SUBSCRIPTION={mode}"
    if mode == "plain":
        if consumers > 1:
            raise SubscriptionRefused(
                f"{consumers} consumers on a plain subscription would each store every message; "
                "several workers need a shared subscription (SWC_SUBSCRIPTION=auto or shared, "
                "with SWC_SHARED_GROUP set)"
            )
        return SubscriptionPlan(
            "plain",
            plain,
            shared or plain,
            f"{why}: a plain persistent-session subscription, which every broker restores "
            "after a restart",
        )
    if shared is None:
        raise SubscriptionRefused("a shared subscription needs a group name: set SWC_SHARED_GROUP")
    text = broker_version()
    persists = broker_persists_shared(text)
    if persists is None and settings.subscription == "shared":
        return SubscriptionPlan(
            "shared",
            shared,
            plain,
            f"{why}: the operator says the broker ({text or 'version unknown'}) restores "
            "shared subscriptions after a restart (Mosquitto 2.1 with its persist-sqlite "
            "plugin does; its version cannot tell)",
        )
    if persists is False:
        problem = (
            f"the broker ({text}) does not restore shared subscriptions after a restart "
            "(no Mosquitto 2.0 does)"
        )
    elif text is None:
        problem = (
            "cannot tell whether the broker restores shared subscriptions after a restart "
            f"({VERSION_TOPIC} is unreadable: $SYS off, or the ACL does not let the service "
            "user read it)"
        )
    else:
        problem = (
            f"cannot tell whether the broker ({text}) restores shared subscriptions after a "
            "restart (Mosquitto 2.1 does only with its persist-sqlite plugin)"
        )
    message = f"{why}: {problem}: {_LOSS}. {_FIX}"
    if settings.allow_unsafe_shared:
        return SubscriptionPlan(
            "shared", shared, plain, f"{why}; loss on a broker restart accepted", message
        )
    raise SubscriptionRefused(message)


def plan_for(settings: Settings, consumers: int) -> SubscriptionPlan:
    """``plan_subscription`` against the configured broker, read only when needed."""
    return plan_subscription(
        settings,
        consumers,
        lambda: read_broker_version(
            settings.mqtt,
            protocol=settings.mqtt_protocol,
            client_id=f"{settings.client_id}-version",
            connect_timeout_s=settings.broker_check_timeout_s,
        ),
    )
