"""Topic names of the wire contract, as frozen value objects validated on construction.

``{root}/{client_id}/telemetry``  batches of readings, QoS 1
``{root}/{client_id}/status``     retained status; the last will says offline
``{root}/{client_id}/config``     retained downlink configuration
``{root}/alerts/{site_id}``       retained current state of a site's alerts

The root defaults to ``swc/v1`` and is configurable so that tests and
deployments can share a broker without seeing each other's data.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_ROOT = "swc/v1"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)
_ROOT_LEVEL_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
ALERTS_LEVEL = "alerts"  # reserved: no client may be called this
SHARED_GROUP = "ingest"


class TopicError(ValueError):
    """A topic string or a part of one is not valid in the contract."""


class TopicKind(StrEnum):
    TELEMETRY = "telemetry"
    STATUS = "status"
    CONFIG = "config"


@functools.lru_cache(maxsize=64)  # checked for every message: a handful of roots in use
def validate_root(root: str) -> str:
    """Check a topic root such as ``swc/v1`` (levels of letters, digits, ``_.-``)."""
    levels = root.split("/")
    if not root or any(not _ROOT_LEVEL_RE.match(level) for level in levels):
        raise TopicError(
            f"topic root {root!r} is not valid: expected levels of letters, digits, '_', '.', '-' "
            "separated by '/', such as 'swc/v1'"
        )
    return root


def validate_client_id(client_id: str) -> str:
    """Check a device or gateway id as it appears in a topic level."""
    if not isinstance(client_id, str) or not _CLIENT_ID_RE.match(client_id):
        raise TopicError(
            f"client id {client_id!r} is not valid: expected 1-64 characters of letters, digits, "
            "'_', '.', '-', starting with a letter or digit"
        )
    if client_id == ALERTS_LEVEL:
        raise TopicError(f"client id {client_id!r} is reserved for the alerts topics")
    return client_id


@dataclass(frozen=True)
class Topic:
    """One device topic: ``{root}/{client_id}/{kind}``."""

    client_id: str
    kind: TopicKind
    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        validate_root(self.root)
        validate_client_id(self.client_id)
        object.__setattr__(self, "kind", TopicKind(self.kind))

    def __str__(self) -> str:
        return f"{self.root}/{self.client_id}/{self.kind.value}"

    @classmethod
    def parse(cls, topic: str, root: str = DEFAULT_ROOT) -> Topic:
        """Parse ``topic`` under ``root``; raise TopicError saying what is wrong."""
        validate_root(root)
        prefix = root + "/"
        if not topic.startswith(prefix):
            raise TopicError(f"topic {topic!r} is not under the root {root!r}")
        rest = topic[len(prefix) :].split("/")
        if len(rest) != 2:
            raise TopicError(
                f"topic {topic!r} should have exactly two levels under {root!r}: "
                "{client_id}/{telemetry|status|config}"
            )
        client_id, kind = rest
        try:
            kind_value = TopicKind(kind)
        except ValueError:
            raise TopicError(
                f"topic {topic!r} ends in {kind!r}; expected telemetry, status or config"
            ) from None
        return cls(client_id=client_id, kind=kind_value, root=root)

    @classmethod
    def telemetry(cls, client_id: str, root: str = DEFAULT_ROOT) -> Topic:
        return cls(client_id, TopicKind.TELEMETRY, root)

    @classmethod
    def status(cls, client_id: str, root: str = DEFAULT_ROOT) -> Topic:
        return cls(client_id, TopicKind.STATUS, root)

    @classmethod
    def config(cls, client_id: str, root: str = DEFAULT_ROOT) -> Topic:
        return cls(client_id, TopicKind.CONFIG, root)


def alerts_topic(site_id: str, root: str = DEFAULT_ROOT) -> str:
    """Retained topic carrying the current alert state of a site."""
    validate_root(root)
    validate_client_id(site_id)
    return f"{root}/{ALERTS_LEVEL}/{site_id}"


def telemetry_filter(root: str = DEFAULT_ROOT) -> str:
    """Subscription filter matching every client's telemetry."""
    return f"{validate_root(root)}/+/{TopicKind.TELEMETRY.value}"


def status_filter(root: str = DEFAULT_ROOT) -> str:
    """Subscription filter matching every client's (retained) status."""
    return f"{validate_root(root)}/+/{TopicKind.STATUS.value}"


def shared_telemetry_filter(root: str = DEFAULT_ROOT, group: str = SHARED_GROUP) -> str:
    """MQTT 5 shared subscription: consumers in ``group`` split the telemetry between them."""
    if not _ROOT_LEVEL_RE.match(group):
        raise TopicError(f"shared subscription group {group!r} is not a valid topic level")
    return f"$share/{group}/{telemetry_filter(root)}"
