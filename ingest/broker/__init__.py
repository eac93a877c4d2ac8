"""The repository's Mosquitto configuration, and running a local mosquitto with it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF_PATH = Path(__file__).parent / "mosquitto.conf"


def render_mosquitto_conf(
    port: int, data_dir: Path, bind: str = "127.0.0.1", extra: str = ""
) -> str:
    """The shipped config with its listener moved to ``bind:port`` and persistence to ``data_dir``."""
    text = CONF_PATH.read_text()
    text = re.sub(r"^listener .*$", f"listener {port} {bind}", text, flags=re.M)
    location = str(data_dir).rstrip("/") + "/"
    text = re.sub(
        r"^persistence_location .*$", f"persistence_location {location}", text, flags=re.M
    )
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


class MosquittoProcess:
    """A mosquitto started on the repository's config, in the foreground as a child process."""

    def __init__(self, data_dir: Path, port: int | None = None, extra_conf: str = ""):
        self.binary = mosquitto_binary()
        if self.binary is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.conf = self.data_dir / "mosquitto.conf"
        self.log_path = self.data_dir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        extra = self.extra_conf
        if os.geteuid() == 0 and not re.search(r"^user ", extra, flags=re.M):
            # Started as root, mosquitto drops to the `mosquitto` user, which cannot
            # write its persistence file into a folder only root may enter.
            extra = (extra + "\nuser root").strip()
        self.conf.write_text(render_mosquitto_conf(self.port, self.data_dir, extra=extra))
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
        return self

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
