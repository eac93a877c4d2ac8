"""Click options derived from the Settings class, so that flags and settings cannot drift.

Every field ``foo_bar`` of :class:`ingest.settings.Settings` becomes ``--foo-bar``
(booleans ``--foo-bar/--no-foo-bar``; ``Literal`` fields a choice; lists and
dicts a JSON value). A flag left out is ``None`` and so does not override the
environment (``SWC_FOO_BAR``) or the default.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import click
from pydantic.fields import FieldInfo

from .settings import Settings

# the settings of the commands that only talk to the database (keys, sites, export ...)
DATABASE_FIELDS = ("database_url", "data_dir", "log_level", "log_format")


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return "SWC_" + field.upper()


def _base(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``None``; whether ``None`` was allowed."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        return json.dumps(value) if value else ""
    value = info.default
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def option_for(name: str, info: FieldInfo, aliases: Iterable[str] = ()) -> Callable:
    """The click option of setting ``name``."""
    base, _ = _base(info.annotation)
    help_text = (info.description or "").replace("%", "%%")
    default = _default_text(info)
    suffix = f"[{env_name(name)}" + (f"; default {default}" if default else "") + "]"
    help_text = f"{help_text} {suffix}".strip()
    decls = [flag_name(name), *aliases]
    kwargs: dict[str, Any] = {"default": None, "help": help_text}
    if base is bool:
        decls = [f"{flag_name(name)}/--no-{name.replace('_', '-')}", *aliases]
        kwargs["default"] = None
    elif typing.get_origin(base) is Literal:
        kwargs["type"] = click.Choice([str(v) for v in typing.get_args(base)])
    elif base is int:
        kwargs["type"] = int
    elif base is float:
        kwargs["type"] = float
    elif base is Path:
        kwargs["type"] = click.Path(path_type=Path)
    elif typing.get_origin(base) in (list, dict):
        kwargs["type"] = str
        kwargs["metavar"] = "JSON"
    else:
        kwargs["type"] = str
    return click.option(*decls, name, **kwargs)


def settings_options(
    fields: Iterable[str] | None = None, aliases: dict[str, list[str]] | None = None
) -> Callable:
    """Decorator adding the options of ``fields`` (default: every setting) to a command."""
    names = list(Settings.model_fields) if fields is None else list(fields)
    unknown = [n for n in names if n not in Settings.model_fields]
    if unknown:
        raise ValueError(f"not settings: {unknown}")
    aliases = aliases or {}

    def deco(f: Callable) -> Callable:
        for name in reversed(names):
            f = option_for(name, Settings.model_fields[name], aliases.get(name, ()))(f)
        return f

    return deco


def flag_values(flags: dict[str, Any]) -> dict[str, Any]:
    """The settings given as flags, JSON values decoded; raises click.BadParameter."""
    out: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None or key not in Settings.model_fields:
            continue
        base, _ = _base(Settings.model_fields[key].annotation)
        if typing.get_origin(base) in (list, dict) and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(
                    f"{value!r} is not JSON ({exc.msg})", param_hint=flag_name(key)
                ) from None
        out[key] = value
    return out
