"""Ports the server listens on: checked before anything starts, with the setting that moves them."""

from __future__ import annotations

import errno
import socket

from .settings_cli import env_name, flag_name


class PortInUse(Exception):
    """A port this process must listen on is taken; the message names the setting to change."""

    def __init__(
        self, what: str, host: str, port: int, setting: str, hint: str = "", why: str = "is in use"
    ):
        self.what, self.host, self.port, self.setting = what, host, port, setting
        extra = f" ({hint})" if hint else ""
        super().__init__(
            f"port {port} on {host} ({what}) {why}; choose another with "
            f"{flag_name(setting)} or {env_name(setting)}{extra}"
        )


def bind(host: str, port: int, what: str, setting: str, hint: str = "") -> socket.socket:
    """A listening TCP socket on ``host:port``; raises PortInUse when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(what, host, port, setting, hint) from None
        if exc.errno == errno.EACCES:
            why = "may not be used by this user (ports below 1024 need privileges)"
            raise PortInUse(what, host, port, setting, hint, why) from None
        raise OSError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def ensure_free(host: str, port: int, what: str, setting: str, hint: str = "") -> None:
    """Raise PortInUse unless ``host:port`` can be listened on now."""
    bind(host, port, what, setting, hint).close()
