"""Bulk import of survey sheets (CSV or JSON): rows read with their line numbers, grouped
into surveys, validated per kind, and recorded one by one; every bad row is reported
with its line and reason, and the good ones are imported.

Sheet layout (CSV columns, or the keys of the objects of a JSON array):

* survey columns: ``site_id, kind, surveyed_at, surveyor, latitude, longitude,
  condition, damage, notes, survey_ref``;
* the fields of the kind's ``data`` as columns of their own (``water_level_m``,
  ``runoff_depth_mm``, ``curve_kind``, ``channel``, ...);
* point-list kinds (``sediment_survey``, ``stage_storage_survey``,
  ``calibration_visit``) take one row per point or sample, grouped into one
  survey by ``survey_ref``: point columns ``x_m, y_m, point_latitude,
  point_longitude, elevation_m``; ``stage_m, volume_m3``; ``ntu, ssc_kg_m3,
  sampled_at, bottle``. Survey columns may be left blank after a group's first
  row; when given they must agree with it;
* ``damage``: ``type[:severity[:location]]`` items separated by ``;``.

A JSON item with a ``data`` object is taken as a whole survey (the body of
``POST /surveys``). A group with a bad row is not imported; its first good row
reports that.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import psycopg
from pydantic import ValidationError

from .models import (
    DATA_MODELS,
    KINDS,
    POINT_LISTS,
    SURVEY_IN,
    ImportedSurvey,
    ImportResult,
    RowError,
)
from .service import SurveyError, create_survey

MAX_ROWS = 50_000
SURVEY_FIELDS = (
    "site_id",
    "kind",
    "surveyed_at",
    "surveyor",
    "latitude",
    "longitude",
    "condition",
    "damage",
    "notes",
)
#: sheet column -> point field, where the names differ
POINT_ALIASES = {
    "sediment_survey": {"point_latitude": "latitude", "point_longitude": "longitude"},
}


class SheetError(ValueError):
    """The sheet as a whole cannot be read (not UTF-8, no header, not a JSON array...)."""


@dataclass
class Row:
    line: int
    values: dict[str, Any]
    error: str | None = None


@dataclass
class _Candidate:
    lines: list[int]
    body: dict[str, Any]
    ref: str | None
    point_lines: list[int] = field(default_factory=list)
    flat: bool = True  # built from sheet columns (else a whole survey object)


@dataclass
class _Group:
    kind: str
    ref: str
    first_line: int
    survey: dict[str, Any]
    data: dict[str, Any]
    points: list[dict[str, Any]] = field(default_factory=list)
    point_lines: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------- reading
def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SheetError(f"the sheet is not UTF-8 text (byte {exc.start})") from None


def read_csv(data: bytes) -> list[Row]:
    text = _text(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise SheetError("the CSV sheet has no header row")
        names = [h.strip().lower() for h in header]
        counts = Counter(names)
        dup = sorted(n for n, k in counts.items() if k > 1 and n)
        if dup:
            raise SheetError(f"the header repeats column(s) {_names(dup)}")
        missing = [c for c in ("site_id", "kind", "surveyed_at") if c not in counts]
        if missing:
            raise SheetError(f"the header has no column(s) {', '.join(missing)}")
        rows = []
        line = reader.line_num + 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(v.strip() for v in record):
                continue
            if len(rows) >= MAX_ROWS:
                raise SheetError(f"the sheet has more than {MAX_ROWS} rows")
            if len(record) != len(names):
                rows.append(Row(start, {}, f"has {len(record)} fields; the header has "
                                           f"{len(names)}"))  # fmt: skip
                continue
            values = {n: v.strip() for n, v in zip(names, record, strict=True) if n and v.strip()}
            rows.append(Row(start, values))
    except csv.Error as exc:
        raise SheetError(f"CSV error at line {reader.line_num}: {exc}") from None
    return rows


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def read_json(data: bytes) -> list[Row]:
    """The items of a JSON array, each with the line it starts on."""
    text = _text(data)
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "[":
        raise SheetError("a JSON sheet is an array of objects: [{...}, {...}]")
    i = _skip_ws(text, i + 1)
    rows: list[Row] = []
    line, counted = 1, 0
    if i < len(text) and text[i] == "]":
        return rows
    while True:
        line += text.count("\n", counted, i)
        counted = i
        try:
            item, j = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise SheetError(f"not valid JSON at line {exc.lineno}: {exc.msg}") from None
        except RecursionError:
            raise SheetError(f"JSON nested too deeply at line {line}") from None
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise SheetError(f"not a valid JSON value at line {line}: {exc}") from None
        if len(rows) >= MAX_ROWS:
            raise SheetError(f"the sheet has more than {MAX_ROWS} rows")
        if isinstance(item, dict):
            rows.append(Row(line, {str(k).lower(): v for k, v in item.items() if v is not None}))
        else:
            rows.append(Row(line, {}, "the item is not an object"))
        i = _skip_ws(text, j)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "]":
            if _skip_ws(text, i + 1) != len(text):
                raise SheetError("text after the end of the JSON array")
            return rows
        raise SheetError(
            f"not valid JSON at line {line + text.count(chr(10), counted, i)}: expected ',' or ']'"
        )


# -------------------------------------------------------------------------- planning
def _damage(value: Any) -> Any:
    """``crack:moderate:crest; seepage`` to a list of damage objects."""
    if not isinstance(value, str):
        return value
    out = []
    for item in value.split(";"):
        parts = [p.strip() for p in item.split(":")]
        if not parts[0]:
            continue
        d: dict[str, Any] = {"type": parts[0]}
        if len(parts) > 1 and parts[1]:
            d["severity"] = parts[1]
        if len(parts) > 2:
            d["location"] = ":".join(parts[2:])
        out.append(d)
    return out


@cache
def _columns(kind: str) -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """Data columns and point columns of a kind, and the point alias map."""
    model = DATA_MODELS[kind]
    data_cols = set(model.model_fields)
    point_cols: set[str] = set()
    aliases: dict[str, str] = {}
    if kind in POINT_LISTS:
        list_field, point_model = POINT_LISTS[kind]
        data_cols.discard(list_field)
        renamed = POINT_ALIASES.get(kind, {})
        aliases = {f: f for f in point_model.model_fields if f not in renamed.values()}
        aliases.update(renamed)
        point_cols = set(aliases)
    return frozenset(data_cols), frozenset(point_cols), aliases


def plan(rows: list[Row]) -> tuple[list[_Candidate], list[RowError]]:
    """Group rows into survey bodies; report rows that cannot be read."""
    errors: list[RowError] = []
    candidates: list[_Candidate] = []
    groups: dict[str, _Group] = {}
    simple_refs: dict[str, int] = {}

    def bad(row: Row, reason: str, ref: str | None = None) -> None:
        errors.append(RowError(line=row.line, ref=ref, reason=reason))

    for row in rows:
        if row.error:
            bad(row, row.error)
            continue
        v = dict(row.values)
        if isinstance(v.get("data"), dict):  # a whole survey (JSON)
            ref = v.pop("survey_ref", None)
            if ref is not None and "ref" not in v:
                v["ref"] = ref
            candidates.append(_Candidate([row.line], v, _str(v.get("ref")), flat=False))
            continue
        kind = v.get("kind")
        ref = _str(v.pop("survey_ref", None))
        if kind not in KINDS:
            bad(row, f"kind must be one of {', '.join(KINDS)}; got {kind!r}", ref)
            continue
        data_cols, point_cols, aliases = _columns(kind)
        unknown = sorted(set(v) - set(SURVEY_FIELDS) - data_cols - point_cols)
        if unknown:
            bad(row, f"column(s) {_names(unknown)} do not apply to a {kind}", ref)
            continue
        survey = {k: v[k] for k in SURVEY_FIELDS if k in v}
        if "damage" in survey:
            survey["damage"] = _damage(survey["damage"])
        data = {k: v[k] for k in data_cols if k in v}
        if kind not in POINT_LISTS:
            if ref is not None:
                if ref in simple_refs:
                    bad(row, f"survey_ref {ref!r} repeats line {simple_refs[ref]}", ref)
                    continue
                simple_refs[ref] = row.line
            candidates.append(_Candidate([row.line], {**survey, "data": data, "ref": ref}, ref))
            continue
        if ref is None:
            bad(row, f"a {kind} has one row per point: give a survey_ref to group them")
            continue
        point = {aliases[k]: v[k] for k in point_cols if k in v}
        group = groups.get(ref)
        if group is None:
            group = groups[ref] = _Group(kind, ref, row.line, survey, data)
        group.lines.append(row.line)
        if group.kind != kind:
            group.bad_lines.append(row.line)
            bad(row, f"survey_ref {ref!r} is a {group.kind} (line {group.first_line})", ref)
            continue
        clash = _clash(group, survey, data)
        if clash:
            group.bad_lines.append(row.line)
            bad(row, clash, ref)
            continue
        list_field, point_model = POINT_LISTS[kind]
        try:
            point_model.model_validate(point)
        except ValidationError as exc:
            group.bad_lines.append(row.line)
            bad(row, _reasons(exc, ()), ref)
            continue
        group.points.append(point)
        group.point_lines.append(row.line)

    for group in groups.values():
        if group.bad_lines:
            bad_set = set(group.bad_lines)
            good = [n for n in group.lines if n not in bad_set]
            if good:
                errors.append(RowError(line=good[0], ref=group.ref, reason=(
                    f"survey_ref {group.ref!r} not imported: bad row(s) at line(s) "
                    f"{_lines(group.bad_lines)}")))  # fmt: skip
            continue
        list_field = POINT_LISTS[group.kind][0]
        body = {**group.survey, "kind": group.kind, "ref": group.ref,
                "data": {**group.data, list_field: group.points}}  # fmt: skip
        candidates.append(_Candidate(group.lines, body, group.ref, group.point_lines))
    return candidates, errors


def _names(names: list[str], most: int = 20) -> str:
    text = ", ".join(n[:64] for n in names[:most])
    return text + (f" and {len(names) - most} more" if len(names) > most else "")


def _lines(lines: list[int], most: int = 20) -> str:
    text = ", ".join(map(str, lines[:most]))
    return text + (f" and {len(lines) - most} more" if len(lines) > most else "")


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _clash(group: _Group, survey: dict, data: dict) -> str | None:
    for have, new in ((group.survey, survey), (group.data, data)):
        for k, val in new.items():
            if k in have and have[k] != val:
                return (f"{k} is {have[k]!r} at line {group.first_line} of survey_ref "
                        f"{group.ref!r}, {val!r} here")  # fmt: skip
            have.setdefault(k, val)
    return None


def _reasons(exc: ValidationError, skip: tuple) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = [str(p) for p in e.get("loc", ()) if p not in skip]
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts)


def _validation_errors(c: _Candidate, exc: ValidationError) -> list[RowError]:
    """Errors of a survey body, each on the line of the point it is about."""
    out = []
    kind = c.body.get("kind")
    list_field = POINT_LISTS.get(kind, ("",))[0] if isinstance(kind, str) else ""
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        if loc and loc[0] == kind:
            loc = loc[1:]  # the discriminator's tag
        line = c.lines[0]
        if c.flat and loc[:2] == ["data", list_field] and len(loc) >= 3:
            if isinstance(loc[2], int) and loc[2] < len(c.point_lines):
                line = c.point_lines[loc[2]]
            loc = loc[3:]
        elif c.flat and loc[:1] == ["data"]:
            loc = loc[1:]
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        where = ".".join(str(p) for p in loc)
        out.append(RowError(line=line, ref=c.ref, reason=f"{where}: {msg}" if where else msg))
    return out[:20]


# --------------------------------------------------------------------------- import
def import_sheet(
    conn: psycopg.Connection,
    data: bytes,
    fmt: Literal["csv", "json"],
    key_id: int | None,
    *,
    dry_run: bool = False,
    on_created: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import the good surveys of a sheet; every bad row is reported with its line.

    Each survey is recorded in its own savepoint, so one that the database or
    the curve fit refuses does not undo the others. A dry run does the same
    work and rolls it all back.
    """
    return write_sheet(conn, read_sheet(data, fmt), key_id, dry_run=dry_run, on_created=on_created)


@dataclass
class ReadSheet:
    """A sheet read and grouped, not yet written: no database needed for this part."""

    fmt: Literal["csv", "json"]
    rows: int
    candidates: list[_Candidate]
    errors: list[RowError]


def read_sheet(data: bytes, fmt: Literal["csv", "json"]) -> ReadSheet:
    """Read and group a sheet (CPU only; linear in its size). Raises SheetError."""
    rows = read_csv(data) if fmt == "csv" else read_json(data)
    candidates, errors = plan(rows)
    return ReadSheet(fmt, len(rows), candidates, errors)


def write_sheet(
    conn: psycopg.Connection,
    sheet: ReadSheet,
    key_id: int | None,
    *,
    dry_run: bool = False,
    on_created: Callable[[int], None] | None = None,
) -> ImportResult:
    """Record the good surveys of a read sheet (see :func:`import_sheet`)."""
    fmt, candidates, errors = sheet.fmt, sheet.candidates, list(sheet.errors)
    imported: list[ImportedSurvey] = []
    with conn.transaction(force_rollback=dry_run):
        for c in candidates:
            try:
                body = SURVEY_IN.validate_python(c.body)
            except ValidationError as exc:
                errors.extend(_validation_errors(c, exc))
                continue
            try:
                with conn.transaction():
                    survey_id = create_survey(conn, body, key_id)
            except SurveyError as exc:
                errors.append(RowError(line=c.lines[0], ref=c.ref, reason=exc.message))
                continue
            except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
                errors.append(RowError(line=c.lines[0], ref=c.ref, reason=reason))
                continue
            imported.append(ImportedSurvey(survey_id=None if dry_run else survey_id,
                                           kind=body.kind, site_id=body.site_id, ref=body.ref,
                                           lines=c.lines))  # fmt: skip
            if on_created and not dry_run:
                on_created(survey_id)
    errors.sort(key=lambda e: e.line)
    return ImportResult(
        dry_run=dry_run,
        format=fmt,
        rows=sheet.rows,
        surveys_imported=len(imported),
        imported=imported,
        errors=errors,
    )
