"""One log format for every process: logfmt (``text``) or JSON lines, through structlog.

Each line has ``ts`` (RFC 3339, UTC, ``Z``), ``level``, ``logger`` and ``msg``,
then ``exception`` when there is one. In logfmt a value with spaces, quotes,
``=`` or line breaks is quoted and escaped, so every line is one record that a
logfmt parser reads back; in JSON every line is one object.

Settings (the same in every process): ``SWC_LOG_LEVEL`` (DEBUG, INFO,
WARNING, ERROR) and ``SWC_LOG_FORMAT`` (``text`` = logfmt, or ``json``); a
process's flags or config file may pass them explicitly.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import structlog

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "logfmt", "json")
# chatty libraries, kept at WARNING whatever the level
_QUIET = ("amqtt", "transitions", "hpack", "httpcore", "multipart")


def resolve(level: str | None = None, fmt: str | None = None) -> tuple[str, str]:
    """The level and format to use: the arguments, else SWC_LOG_LEVEL / SWC_LOG_FORMAT,
    else INFO and text. Raises ValueError naming the setting when one is not valid."""
    level = (level or os.environ.get("SWC_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("SWC_LOG_FORMAT") or "text").lower()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} (SWC_LOG_LEVEL) is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} (SWC_LOG_FORMAT) is not one of text, json")
    return level, "json" if fmt == "json" else "text"


def _drop_color_message(logger, name, event: dict) -> dict:
    event.pop("color_message", None)  # uvicorn's copy of msg with terminal colours
    return event


def formatter(fmt: str = "text") -> logging.Formatter:
    """A logging.Formatter writing logfmt (``text``) or JSON lines."""
    shared = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.processors.LogfmtRenderer(
            key_order=["ts", "level", "logger", "msg"], drop_missing=True, bool_as_flag=False
        )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("msg"),
            renderer,
        ],
    )


def setup_logging(
    level: str | None = None, fmt: str | None = None, stream: TextIO | None = None
) -> None:
    """Send every log record of the process to ``stream`` (stderr) in the chosen format."""
    level, fmt = resolve(level, fmt)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
