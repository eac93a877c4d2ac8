"""Earlier runs into the same broker: found, compared, and a second run over them refused.

Every simulated logger says in its retained status (``{root}/{device}/status``,
``details``) which run its data came from and the span of sample times it
covers: ``run_id``, ``data_start``, ``data_end`` (RFC 3339, UTC). Before a run
publishes, :func:`retained_runs` reads those statuses and :func:`check_overlap`
refuses a run whose span overlaps one recorded there, because the receiving
database keeps the first value of every (stream, time) and would mix two runs
in one series. The run's own ``run.json`` in the output directory is a second,
cheap line of defence (:func:`check_out_dir`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from protocol.messages import DeviceStatus

from .mqtt_link import MqttUrl

__all__ = [
    "PreviousRun",
    "RunRefused",
    "broker_key",
    "check_out_dir",
    "check_overlap",
    "iso",
    "parse_iso",
    "retained_runs",
]


class RunRefused(RuntimeError):
    """A run that would write over the data of an earlier run (exit code 2)."""


@dataclass(frozen=True)
class PreviousRun:
    """The span of sample times one device holds from an earlier run."""

    run_id: str
    data_start: datetime
    data_end: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return start <= self.data_end and self.data_start <= end


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no zone")
    return t.astimezone(UTC)


def _previous_of(details: dict) -> PreviousRun | None:
    try:
        return PreviousRun(
            str(details["run_id"]), parse_iso(details["data_start"]), parse_iso(details["data_end"])
        )
    except (KeyError, TypeError, ValueError):
        return None  # not a simulator status, or one without a run


def retained_runs(url: str, root: str, devices: list[str],
                  timeout_s: float = 10.0) -> dict[str, PreviousRun]:  # fmt: skip
    """The earlier runs recorded in the retained status of ``devices`` (by device).

    Raises
    ------
    ConnectionError
        if the broker cannot be reached or refuses the connection within ``timeout_s``.
    """
    u = MqttUrl.parse(url)
    wanted = set(devices)
    found: dict[str, PreviousRun] = {}
    subscribed = threading.Event()
    refused: list[str] = []
    last_msg = [time.monotonic()]
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"swc-sim-check-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if u.username:
        client.username_pw_set(u.username, u.password)
    if u.tls:
        client.tls_set()

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            refused.append(str(reason_code))
            return
        c.subscribe(f"{root}/+/status", qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        subscribed.set()

    def on_message(c, userdata, msg):
        last_msg[0] = time.monotonic()
        device = msg.topic[len(root) + 1 :].split("/")[0]
        if device not in wanted or not msg.payload:
            return
        try:
            status = DeviceStatus.model_validate_json(msg.payload)
        except ValidationError:
            return
        prev = _previous_of(status.details)
        if prev is not None:
            found[device] = prev

    def on_connect_fail(c, userdata):
        refused.append("connection failed")

    client.on_connect = on_connect
    client.on_connect_fail = on_connect_fail
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect_async(u.host, u.port, keepalive=10)
        client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not subscribed.is_set() and not refused and time.monotonic() < deadline:
            time.sleep(0.02)
        if refused:
            raise ConnectionError(f"cannot use the broker at {u.host}:{u.port}: {refused[0]}")
        if not subscribed.is_set():
            raise ConnectionError(
                f"no answer from the broker at {u.host}:{u.port} in {timeout_s:g} s"
            )
        # retained messages follow the SUBACK at once; wait for a short quiet spell
        settle = time.monotonic() + 2.0
        last_msg[0] = time.monotonic()
        while time.monotonic() < settle and len(found) < len(wanted):
            if time.monotonic() - last_msg[0] > 0.3:
                break
            time.sleep(0.02)
    finally:
        client.disconnect()
        client.loop_stop()
    return dict(found)


def _span_text(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC"


def _suggest_start(after: datetime) -> str:
    """A --start that clears ``after``: ``now`` if the present does, else a time."""
    nxt = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
    now = datetime.now(UTC).replace(second=0, microsecond=0)  # --start now >= this
    return "now" if now > after else iso(nxt)


def check_overlap(previous: dict[str, PreviousRun], start: datetime, end: datetime) -> None:
    """Raise RunRefused if a device's earlier run overlaps ``[start, end]``."""
    hits = {d: p for d, p in sorted(previous.items()) if p.overlaps(start, end)}
    if not hits:
        return
    runs = sorted({p.run_id for p in hits.values()})
    first = min(p.data_start for p in hits.values())
    last = max(p.data_end for p in hits.values())
    names = ", ".join(hits)
    raise RunRefused(
        f"refused: {len(hits)} device(s) already hold data of an earlier run "
        f"({', '.join(runs)}) over {_span_text(first, last)}, which this run "
        f"({_span_text(start, end)}) overlaps: {names}. The receiving database keeps the "
        f"first value at each time, so the two runs would mix. Move this run with --start "
        f"(e.g. --start {_suggest_start(last)}), or pass --overwrite to replace the earlier "
        "values."
    )


def check_out_dir(run_json: Path, scenario_name: str, broker: str, start: datetime,
                  end: datetime) -> None:  # fmt: skip
    """Raise RunRefused if ``run_json`` records an overlapping run of the same scenario
    to the same broker (``broker`` as :func:`broker_key` gives it)."""
    try:
        prev = json.loads(run_json.read_text(encoding="utf-8"))
        same = prev.get("scenario") == scenario_name and prev.get("broker") == broker
        p_start, p_end = parse_iso(prev["data_start"]), parse_iso(prev["data_end"])
        run_id = str(prev["run_id"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # no earlier run here, or one from before run ids
    if same and start <= p_end and p_start <= end:
        raise RunRefused(
            f"refused: {run_json} records run {run_id} of {scenario_name!r} to {broker} over "
            f"{_span_text(p_start, p_end)}, which this run ({_span_text(start, end)}) overlaps. "
            f"Move this run with --start (e.g. --start {_suggest_start(p_end)}), use another "
            "--out, or pass --overwrite."
        )


def broker_key(url: str, root: str) -> str:
    """``host:port/root`` of a broker URL, without user or password (for run.json)."""
    u = MqttUrl.parse(url)
    return f"{'mqtts' if u.tls else 'mqtt'}://{u.host}:{u.port}/{root}"
