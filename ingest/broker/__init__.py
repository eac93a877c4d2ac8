"""The repository's Mosquitto configuration, and running a local mosquitto with it."""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

CONF_PATH = Path(__file__).parent / "mosquitto.conf"
BROKER_USER = "mosquitto"  # the user mosquitto drops to when started as root

log = logging.getLogger(__name__)


SQLITE_DB = "mosquitto.sqlite3"  # the persist-sqlite plugin's database in the data folder


def render_mosquitto_conf(
    port: int,
    data_dir: Path,
    bind: str = "127.0.0.1",
    extra: str = "",
    persist_plugin: str | None = None,
) -> str:
    """The shipped config with its listener moved to ``bind:port`` and persistence to ``data_dir``.

    ``persist_plugin``: the path of Mosquitto 2.1's ``mosquitto_persist_sqlite.so``, which
    replaces the built-in persistence file (and, unlike it, restores shared subscriptions).
    """
    text = CONF_PATH.read_text()
    text = re.sub(r"^listener .*$", f"listener {port} {bind}", text, flags=re.M)
    location = str(data_dir).rstrip("/") + "/"
    text = re.sub(
        r"^persistence_location .*$", f"persistence_location {location}", text, flags=re.M
    )
    if persist_plugin:
        text = re.sub(r"^persistence true$", "persistence false", text, flags=re.M)
        # the plugin keeps {persistence_location}/mosquitto.sqlite3
        text += f"\nplugin {persist_plugin}\nplugin_opt_flush_period 1\n"
    return text + ("\n" + extra + "\n" if extra else "")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


_DYNSEC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",  # Debian, Ubuntu
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",  # the eclipse-mosquitto image
)


def dynsec_plugin() -> str | None:
    """Where Mosquitto's dynamic-security plugin is installed, if it is."""
    return next((p for p in _DYNSEC_PATHS if Path(p).exists()), None)


def reachable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether user ``uid`` (groups ``gids``) may enter ``path`` and every folder above it."""
    for folder in [path, *path.parents]:
        try:
            st = folder.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def prepare_for_broker_user(data_dir: Path) -> str:
    """Started as root, mosquitto drops to the ``mosquitto`` user and must still write its
    persistence file in ``data_dir``: give it the folder, or else keep root.

    Returns the config line that says which user the broker runs as, and logs why.
    """
    try:
        user = pwd.getpwnam(BROKER_USER)
    except KeyError:
        log.info("broker runs as root: there is no %r user to drop to", BROKER_USER)
        return "user root"
    groups = {user.pw_gid, *os.getgrouplist(BROKER_USER, user.pw_gid)}
    if not reachable_by(data_dir.resolve(), user.pw_uid, groups):
        log.warning(
            "broker runs as root: user %r cannot enter %s (a folder above it is closed to it); "
            "move SWC_DATA_DIR to where it can, to run the broker unprivileged",
            BROKER_USER,
            data_dir,
        )
        return "user root"
    for entry in [data_dir, *data_dir.iterdir()]:
        if entry.is_file() or entry == data_dir:
            os.chown(entry, user.pw_uid, user.pw_gid)
    return f"user {BROKER_USER}"


class MosquittoProcess:
    """A mosquitto started on the repository's config, in the foreground as a child process.

    ``start`` checks that persistence works (a save requested with SIGUSR1 must
    succeed), so a broker that would lose its sessions on a restart never runs.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        extra_conf: str = "",
        binary: str | None = None,
        persist_plugin: str | None = None,
        log_path: Path | None = None,
    ):
        self.binary = binary or mosquitto_binary()
        self.persist_plugin = persist_plugin
        if self.binary is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.conf = self.data_dir / "mosquitto.conf"
        self.log_path = Path(log_path) if log_path else self.data_dir / "mosquitto.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        extra = self.extra_conf
        if os.geteuid() == 0 and not re.search(r"^user ", extra, flags=re.M):
            extra = (extra + "\n" + prepare_for_broker_user(self.data_dir)).strip()
        self.conf.write_text(
            render_mosquitto_conf(
                self.port, self.data_dir, extra=extra, persist_plugin=self.persist_plugin
            )
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto did not listen on port {self.port}")
            time.sleep(0.05)
        self.check_persistence()
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / (SQLITE_DB if self.persist_plugin else "mosquitto.db")

    def check_persistence(self, timeout: float = 10.0) -> None:
        """Ask the broker to save now (SIGUSR1) and raise if it cannot write its file."""
        assert self.proc is not None
        if self.persist_plugin:  # the plugin opens its database when it starts
            if not self.db_path.exists():
                self.stop()
                raise RuntimeError(
                    f"mosquitto's persist-sqlite plugin did not create {self.db_path}: "
                    f"{self.log_path.read_text()[-500:]}"
                )
            return
        before = self.db_path.stat().st_mtime_ns if self.db_path.exists() else None
        offset = self.log_path.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                new = f.read().decode("utf-8", "replace")
            if "Error saving in-memory database" in new:
                self.stop()
                raise RuntimeError(
                    f"mosquitto cannot write its persistence file in {self.data_dir}, so a "
                    f"restart would lose every session and queued message: {new.strip()[-500:]}"
                )
            if self.db_path.exists() and self.db_path.stat().st_mtime_ns != before:
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not save its persistence file within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM): mosquitto writes its persistence file."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
