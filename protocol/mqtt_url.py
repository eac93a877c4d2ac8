"""Broker addresses as URLs: ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS).

The one parser of every role (ingest settings, the gateway's config, the
logger simulator). Standard library only: ``protocol`` is shared by all roles
and stays light.

- schemes: ``mqtt`` (and its alias ``tcp``) on port 1883 by default, ``mqtts``
  (TLS) on 8883;
- user name and password are %-decoded (``p%40ss`` is ``p@ss``);
- IPv6 addresses go in brackets: ``mqtt://[::1]:1883``;
- a path other than ``/``, a query or a fragment is refused (a broker URL has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

__all__ = ["DEFAULT_PORTS", "SCHEMES", "MqttUrl", "parse_mqtt_url"]

DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883}
SCHEMES = tuple(DEFAULT_PORTS)
_EXPECTED = "expected mqtt://[user:password@]host[:port] or mqtts://... (TLS)"


@dataclass(frozen=True)
class MqttUrl:
    """A parsed broker address."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """Parse ``url``; raise ValueError saying what is wrong (the password never shown)."""
        return parse_mqtt_url(url)

    from_url = parse  # the name the ingest settings used

    def url(self, hide_password: bool = True) -> str:
        """The URL back, with the password as ``***`` unless ``hide_password`` is false."""
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + ("***" if hide_password else quote(self.password, safe=""))
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{host}:{self.port}"

    def __str__(self) -> str:
        return self.url()


def _shown(url: str) -> str:
    """The URL for an error message: the password replaced, long input cut."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            netloc = parts.netloc
            at = netloc.rfind("@")
            user = netloc[:at].split(":", 1)[0]
            url = url.replace(netloc, f"{user}:***@{netloc[at + 1 :]}", 1)
    except ValueError:
        pass
    return repr(url[:200])


def parse_mqtt_url(url: str) -> MqttUrl:
    """``mqtt://[user[:password]@]host[:port]`` -> MqttUrl; ValueError if malformed."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"empty MQTT URL; {_EXPECTED}")
    url = url.strip()
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ValueError(f"MQTT URL {_shown(url)} is malformed ({exc}); {_EXPECTED}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"MQTT URL {_shown(url)} has scheme {parts.scheme!r}; {_EXPECTED}"
            if scheme
            else f"MQTT URL {_shown(url)} has no scheme; {_EXPECTED}"
        )
    if not hostname:
        raise ValueError(f"MQTT URL {_shown(url)} has no host; {_EXPECTED}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"MQTT URL {_shown(url)} has a path, query or fragment; a broker URL has none "
            f"({_EXPECTED})"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"MQTT URL {_shown(url)} has an invalid port (1-65535)") from None
    if port == 0:
        raise ValueError(f"MQTT URL {_shown(url)} has an invalid port (1-65535)")
    if ":" in hostname and "[" not in parts.netloc:
        raise ValueError(f"MQTT URL {_shown(url)}: put an IPv6 address in brackets, [::1]")
    if parts.password and not parts.username:
        raise ValueError(f"MQTT URL {_shown(url)} has a password but no user name")
    tls = scheme == "mqtts"
    return MqttUrl(
        host=hostname,
        port=port or DEFAULT_PORTS[scheme],
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
