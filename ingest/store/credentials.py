"""Device and gateway passwords (Mosquitto's ``$7$`` PBKDF2-SHA512 format), and the
broker's password and ACL files written from the registry (`swc broker acl`).

The hash stored in ``devices.password_hash`` is exactly what Mosquitto's
``password_file`` expects after ``username:``, so the file is a plain listing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg

from protocol.topics import DEFAULT_ROOT, validate_client_id, validate_root

_ITERATIONS = 101  # mosquitto_passwd's own default in 2.0
_SALT_BYTES = 12


def hash_password(password: str, iterations: int = _ITERATIONS) -> str:
    """A Mosquitto ``$7$`` hash: ``$7$<iterations>$<salt b64>$<pbkdf2-sha512 b64>``."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, kind, iterations, salt, digest = stored.split("$")
        if kind != "7":
            return False
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def new_password() -> str:
    return secrets.token_urlsafe(24)


def add_device(
    conn: psycopg.Connection,
    device_id: str,
    *,
    kind: str = "logger",
    site_id: str | None = None,
    gateway_id: str | None = None,
    password: str | None = None,
) -> str:
    """Register (or update) a device or gateway and give it a new broker password.

    Returns the password, which is stored only as its hash.
    """
    validate_client_id(device_id)
    if kind not in ("logger", "gateway"):
        raise ValueError(f"kind must be 'logger' or 'gateway', got {kind!r}")
    password = password or new_password()
    with conn.transaction():
        if (
            site_id is not None
            and not conn.execute("SELECT 1 FROM sites WHERE id = %s", (site_id,)).fetchone()
        ):
            raise LookupError(f"site {site_id!r} does not exist")
        if (
            gateway_id is not None
            and not conn.execute(
                "SELECT 1 FROM devices WHERE id = %s AND kind = 'gateway'", (gateway_id,)
            ).fetchone()
        ):
            raise LookupError(f"gateway {gateway_id!r} does not exist")
        conn.execute(
            "INSERT INTO devices (id, kind, site_id, gateway_id, password_hash) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "kind = EXCLUDED.kind, site_id = coalesce(EXCLUDED.site_id, devices.site_id), "
            # a relation auto-registration made is not kept: registering resets it
            "gateway_id = CASE WHEN devices.auto_registered THEN EXCLUDED.gateway_id "
            "ELSE coalesce(EXCLUDED.gateway_id, devices.gateway_id) END, "
            "password_hash = EXCLUDED.password_hash, auto_registered = false",
            (device_id, kind, site_id, gateway_id, hash_password(password)),
        )
    return password


@dataclass(frozen=True)
class BrokerFiles:
    password_file: Path
    acl_file: Path
    devices: int


def write_broker_files(
    conn: psycopg.Connection,
    directory: Path,
    *,
    root: str = DEFAULT_ROOT,
    service_user: str | None = None,
    service_password: str | None = None,
) -> BrokerFiles:
    """Write ``passwd`` and ``acl`` for Mosquitto from the registry.

    Each device or gateway with a password may write only under
    ``{root}/{its id}/`` and read only its own config (a gateway also the
    config of the loggers it forwards for). The service user (the ingest
    consumer and alert engine) reads every client's telemetry, directly and
    through shared subscriptions, and the broker's version (whether a shared
    subscription survives a broker restart), and writes the alerts topics.
    """
    validate_root(root)
    rows = conn.execute(
        "SELECT d.id, d.kind, d.password_hash, "
        "coalesce(array_agg(l.id ORDER BY l.id) FILTER (WHERE l.id IS NOT NULL), '{}') "
        "FROM devices d LEFT JOIN devices l ON l.gateway_id = d.id "
        "WHERE d.password_hash IS NOT NULL GROUP BY d.id ORDER BY d.id"
    ).fetchall()
    directory.mkdir(parents=True, exist_ok=True)
    pw_lines, acl = [], ["# written by `swc broker acl`; do not edit, run it again", ""]
    if service_user:
        if not service_password:
            raise ValueError("the service user needs a password")
        pw_lines.append(f"{service_user}:{hash_password(service_password)}")
        acl += [
            f"user {service_user}",
            f"topic readwrite {root}/+/telemetry",  # write: deletes retained telemetry
            f"topic read {root}/+/status",
            "topic read $share/#",
            "topic read $SYS/broker/version",  # may it share? (ingest/subscription.py)
            f"topic readwrite {root}/alerts/#",
            f"topic readwrite {root}/+/config",
            "",
        ]
    for device_id, kind, pw_hash, loggers in rows:
        pw_lines.append(f"{device_id}:{pw_hash}")
        # only the protocol's topics: no retained messages under made-up subtopics
        acl += [f"user {device_id}"] + [f"topic write {t}" for t in _device_topics(root, device_id)]
        acl.append(f"topic read {root}/{device_id}/config")
        if kind == "gateway":
            acl += [f"topic read {root}/{logger}/config" for logger in loggers]
        acl.append("")
    pw_path, acl_path = directory / "passwd", directory / "acl"
    for path, text in ((pw_path, "\n".join(pw_lines) + "\n"), (acl_path, "\n".join(acl) + "\n")):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(path)
    return BrokerFiles(pw_path, acl_path, len(rows))


DYNSEC_FILE = "dynamic-security.json"


def _dynsec_password(stored: str) -> dict:
    """Mosquitto's dynamic-security fields from a ``$7$`` hash (the same PBKDF2-SHA512)."""
    _, kind, iterations, salt, digest = stored.split("$")
    if kind != "7":
        raise ValueError(f"not a $7$ hash: {stored[:4]!r}")
    return {"password": digest, "salt": salt, "iterations": int(iterations)}


def _device_topics(root: str, device_id: str) -> list[str]:
    """What a device or gateway may publish: the protocol's telemetry and status topics."""
    return [f"{root}/{device_id}/telemetry", f"{root}/{device_id}/status"]


def _acl(kind: str, topic: str) -> dict:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def dynsec_config(
    conn: psycopg.Connection,
    *,
    root: str = DEFAULT_ROOT,
    service_user: str | None = None,
    service_password: str | None = None,
) -> dict:
    """The broker's access from the registry, for Mosquitto's dynamic-security plugin.

    Unlike an ``acl_file`` (whose subscribe checks Mosquitto 2.0 does not
    implement), it refuses at subscribe time: nothing is allowed unless listed,
    so a device's ``$share/...`` or wildcard subscription gets SUBACK 0x87 and
    cannot take a share of others' messages. Each device may connect only with
    its own id as client id (no session takeover); it writes only its
    ``{root}/{id}/telemetry`` and ``{root}/{id}/status`` (so it can retain at
    most two messages) and reads only its config (a gateway also its loggers').
    The service user (ingest, alerts) reads telemetry and status, directly or
    through a shared subscription, and ``$SYS/broker/version``; it writes the
    alerts and config topics, and may use any client id.
    """
    validate_root(root)
    clients, roles = [], []
    if service_user:
        if not service_password:
            raise ValueError("the service user needs a password")
        receive = [
            f"{root}/+/telemetry",
            f"{root}/+/status",
            f"{root}/alerts/#",
            "$SYS/broker/version",
        ]
        roles.append(
            {
                "rolename": "swc-service",
                "acls": [_acl("subscribePattern", t) for t in receive]
                + [_acl("subscribePattern", f"$share/+/{root}/+/telemetry")]
                + [_acl("publishClientReceive", t) for t in [*receive, f"{root}/+/config"]]
                + [
                    _acl("publishClientSend", t)  # telemetry: deleting retained copies
                    for t in (f"{root}/alerts/#", f"{root}/+/config", f"{root}/+/telemetry")
                ],
            }
        )
        clients.append(
            {
                "username": service_user,
                **_dynsec_password(hash_password(service_password)),
                "roles": [{"rolename": "swc-service"}],
            }
        )
    rows = conn.execute(
        "SELECT d.id, d.password_hash, "
        "coalesce(array_agg(l.id ORDER BY l.id) FILTER (WHERE l.id IS NOT NULL), '{}') "
        "FROM devices d LEFT JOIN devices l ON l.gateway_id = d.id "
        "WHERE d.password_hash IS NOT NULL GROUP BY d.id ORDER BY d.id"
    ).fetchall()
    for device_id, pw_hash, loggers in rows:
        config = [f"{root}/{d}/config" for d in (device_id, *loggers)]
        roles.append(
            {
                "rolename": f"device-{device_id}",
                "acls": [_acl("publishClientSend", t) for t in _device_topics(root, device_id)]
                + [_acl("subscribeLiteral", t) for t in config]
                + [_acl("publishClientReceive", t) for t in config],
            }
        )
        clients.append(
            {
                "username": device_id,
                "clientid": device_id,  # its own id only
                **_dynsec_password(pw_hash),
                "roles": [{"rolename": f"device-{device_id}"}],
            }
        )
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def write_dynsec_config(
    conn: psycopg.Connection,
    directory: Path,
    *,
    root: str = DEFAULT_ROOT,
    service_user: str | None = None,
    service_password: str | None = None,
) -> Path:
    """Write ``dynamic-security.json`` (mode 0600) into ``directory``; see ``dynsec_config``."""
    config = dynsec_config(
        conn, root=root, service_user=service_user, service_password=service_password
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DYNSEC_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
