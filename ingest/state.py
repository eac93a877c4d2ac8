"""The state file of a running `swc up`: where its services are, for commands in other shells.

``swc up`` writes ``{data_dir}/swc-up.json`` once its services run and removes
it when it stops. Every other command reads it when no database URL (or broker
URL) was given by flag or environment, and says on stderr that it did. A file
whose process is gone (``swc up`` was killed) is stale: it is ignored, with a
note, and the next ``swc up`` replaces it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

STATE_FILE = "swc-up.json"


@dataclass
class UpState:
    pid: int
    database_url: str
    mqtt_url: str
    mqtt_protocol: str = "5"
    api_url: str | None = None
    console_url: str | None = None
    metrics_url: str | None = None
    data_dir: str = ""
    log_dir: str = ""
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


class StateError(ValueError):
    """The state file exists but cannot be read."""


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_FILE


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_state(data_dir: Path, state: UpState) -> Path:
    """Write the state file atomically, readable by its owner only (URLs may hold passwords)."""
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(state), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_state(data_dir: Path) -> UpState | None:
    """The state file of ``data_dir``, or None when there is none; raises StateError."""
    path = state_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in UpState.__dataclass_fields__}
        return UpState(**known)
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise StateError(f"{path} is not a state file of swc up ({exc})") from None


def remove_state(data_dir: Path, pid: int | None = None) -> None:
    """Remove the state file if it is this process's (or ``pid``'s)."""
    path = state_path(data_dir)
    try:
        current = read_state(data_dir)
    except StateError:
        current = None
    if current is not None and current.pid != (pid or os.getpid()):
        return
    path.unlink(missing_ok=True)
