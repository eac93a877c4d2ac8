"""Validation of what the loggers send: MQTT telemetry messages and CSV lines from legacy RTUs.

Everything goes through ``protocol.decode_telemetry``; what fails becomes a
``Reject`` with the protocol's stable error code, never a forwarded reading.

The line format (one reading per line, UTF-8, ``#`` starts a comment)::

    device,time,channel,value[,quality]
    dam-017,2026-07-21T03:15:00Z,stage_m,2.31
    dam-017,2026-07-21T03:15:00Z,turbidity_ntu,840,3

A first line ``device,time,channel,value[,quality]`` is taken as a header and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.messages import ProtocolError, decode_telemetry
from protocol.topics import Topic, TopicError

from .queue import Reject, Row, format_time

MAX_LINE_BYTES = 4096
_PLACEHOLDER_SENT_AT = "2000-01-01T00:00:00Z"


@dataclass(frozen=True)
class Admission:
    """Which loggers this gateway forwards for."""

    root: str
    devices: frozenset[str] = frozenset()  # empty: any device
    require_topic_device: bool = True


@dataclass
class Checked:
    """The outcome of validating a group of inputs."""

    rows: list[Row] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    messages: int = 0


def check_message(topic: str, payload: bytes, admission: Admission, checked: Checked) -> None:
    """Validate one MQTT telemetry message and add its rows, or a reject, to ``checked``."""
    try:
        parsed = Topic.parse(topic, admission.root)
    except TopicError as exc:
        checked.rejects.append(Reject("mqtt", "bad_topic", str(exc), payload, topic))
        return
    try:
        tel = decode_telemetry(payload)
    except ProtocolError as exc:
        checked.rejects.append(Reject("mqtt", exc.code, exc.message, payload, topic))
        return
    reason = _refusal(tel.device, admission, parsed.client_id)
    if reason:
        checked.rejects.append(Reject("mqtt", reason[0], reason[1], payload, topic))
        return
    checked.messages += 1
    checked.rows.extend((tel.device, format_time(t), ch, v, q) for t, ch, v, q in tel.rows)


def _refusal(device: str, admission: Admission, topic_client: str | None) -> tuple[str, str] | None:
    if admission.require_topic_device and topic_client is not None and topic_client != device:
        return (
            "device_mismatch",
            f"the payload names device {device!r} but was published on the topic of "
            f"{topic_client!r}; a logger publishes only its own readings",
        )
    if admission.devices and device not in admission.devices:
        return (
            "unknown_device",
            f"device {device!r} is not in this gateway's devices list",
        )
    return None


def _line_message(device: str, readings: Sequence[dict]) -> bytes:
    return json.dumps(
        {"device": device, "seq": 0, "sent_at": _PLACEHOLDER_SENT_AT, "readings": list(readings)}
    ).encode()


def _parse_line(line: str) -> tuple[str, dict] | tuple[None, tuple[str, str]]:
    fields = [f.strip() for f in line.split(",")]
    if len(fields) not in (4, 5):
        return None, (
            "bad_line",
            f"the line has {len(fields)} fields; expected device,time,channel,value[,quality]",
        )
    device, t, ch, v = fields[:4]
    try:
        value = float(v)
    except ValueError:
        return None, ("wrong_type", f"value {v!r} is not a number")
    reading: dict = {"t": t, "ch": ch, "v": value}
    if len(fields) == 5 and fields[4]:
        try:
            reading["q"] = int(fields[4])
        except ValueError:
            return None, ("bad_value", f"quality {fields[4]!r} is not an integer flag")
    return device, reading


def check_lines(
    lines: Sequence[bytes], source: str, admission: Admission, checked: Checked
) -> None:
    """Validate CSV lines (without their newline) and add their rows or rejects to ``checked``.

    Consecutive lines of one device are validated as one protocol message; if that
    fails, line by line, so one bad line never costs its neighbours.
    """
    parsed: list[tuple[str, dict, bytes]] = []
    for raw in lines:
        text = raw.strip()
        if not text or text.startswith(b"#"):
            continue
        if len(raw) > MAX_LINE_BYTES:
            checked.rejects.append(
                Reject(
                    source, "too_large", f"line of {len(raw)} bytes; at most {MAX_LINE_BYTES}", raw
                )
            )
            continue
        try:
            line = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            checked.rejects.append(
                Reject(source, "not_utf8", f"the line is not UTF-8 text (byte {exc.start})", raw)
            )
            continue
        if line.lower().replace(" ", "").startswith("device,time,channel,value"):
            continue  # header
        device, result = _parse_line(line)
        if device is None:
            code, message = result  # type: ignore[misc]
            checked.rejects.append(Reject(source, code, message, raw))
            continue
        parsed.append((device, result, raw))  # type: ignore[arg-type]
    start = 0
    while start < len(parsed):
        end = start
        while end < len(parsed) and parsed[end][0] == parsed[start][0]:
            end += 1
        _check_run(parsed[start:end], source, admission, checked)
        start = end


def _check_run(
    run: list[tuple[str, dict, bytes]], source: str, admission: Admission, checked: Checked
) -> None:
    device = run[0][0]
    try:
        tel = decode_telemetry(_line_message(device, [r[1] for r in run]))
    except ProtocolError:
        if len(run) == 1:
            _reject_line(run[0], source, checked)
            return
        for item in run:
            _check_run([item], source, admission, checked)
        return
    reason = _refusal(device, admission, None)
    if reason:
        checked.rejects.extend(Reject(source, reason[0], reason[1], r[2]) for r in run)
        return
    checked.messages += len(run)
    checked.rows.extend((tel.device, format_time(t), ch, v, q) for t, ch, v, q in tel.rows)


def _reject_line(item: tuple[str, dict, bytes], source: str, checked: Checked) -> None:
    try:
        decode_telemetry(_line_message(item[0], [item[1]]))
    except ProtocolError as exc:
        message = exc.message.replace("readings[0].", "").replace("readings[0]", "reading")
        checked.rejects.append(Reject(source, exc.code, message, item[2]))
