"""Streamed exports of readings: CSV, Parquet and CF-conventions NetCDF.

Rows leave PostgreSQL through ``COPY ... TO STDOUT`` and are written in
chunks, so memory stays bounded whatever the size of the export (50 million
rows and more). Order: by stream, then time.

Columns (CSV and Parquet):

=========== ========================= =========================================
column      Parquet type              meaning
=========== ========================= =========================================
time        timestamp[us, tz=UTC]     sample time (CSV: RFC 3339, ``Z``)
site_id     string (dictionary)       site of the device (empty if none)
device_id   string (dictionary)       logger
channel     string (dictionary)       channel name, unit in the name
unit        string (dictionary)       unit symbol (UCUM)
stream_id   int32                     stable id of (device, channel)
value       float64                   value in ``unit``
quality     int8                      QARTOD flag: 1 pass, 2 not evaluated,
                                      3 suspect, 4 fail, 9 missing
=========== ========================= =========================================

NetCDF follows CF 1.8 discrete sampling geometries (``featureType =
timeSeries``, indexed ragged arrays) with ACDD 1.3 discovery attributes: one
station per stream, and per channel its own unlimited observation dimension
``obs_<channel>`` with ``time_<channel>`` (double seconds since 1970),
``station_index_<channel>``, the values ``<channel>`` (UDUNITS ``units``, the
UCUM code in ``ucum_units``, ``cell_methods``, ``standard_name`` where CF has
one) and the CF flag variables ``<channel>_qc`` (the stored aggregate),
``<channel>_qc_logger`` (the logger's own flag) and ``<channel>_qc_<test>`` (each QARTOD test, computed while writing). What the
file holds, and why some variables have no standard name: docs/research.md.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

from protocol.channels import CHANNELS, LEGACY_UNITS, udunits_of

Format = Literal["csv", "parquet", "netcdf"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "netcdf")
QUALITY_FLAGS = {1: "pass", 2: "not_evaluated", 3: "suspect", 4: "fail", 9: "missing"}

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("site_id", pa.dictionary(pa.int32(), pa.string())),
        pa.field("device_id", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("channel", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("unit", pa.dictionary(pa.int32(), pa.string())),
        pa.field("stream_id", pa.int32(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("quality", pa.int8(), nullable=False),
    ]
)
_LOGGER_SCHEMA = PARQUET_SCHEMA.append(pa.field("logger_quality", pa.int8(), nullable=False))
_RAW_COLUMNS = [
    "time_us",
    "site_id",
    "device_id",
    "channel",
    "unit",
    "stream_id",
    "value",
    "quality",
]
_RAW_TYPES = {
    "time_us": pa.int64(),
    "site_id": pa.string(),
    "device_id": pa.string(),
    "channel": pa.string(),
    "unit": pa.string(),
    "stream_id": pa.int32(),
    "value": pa.float64(),
    "quality": pa.int8(),
}


@dataclass(frozen=True)
class Selection:
    """Which readings to export. Empty tuples mean "all"."""

    start: datetime | None = None
    end: datetime | None = None  # exclusive
    site_ids: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    stream_ids: tuple[int, ...] = ()
    qualities: tuple[int, ...] = ()  # e.g. (1, 2) for "not suspect or failed"

    def where(self) -> tuple[sql.Composable, list]:
        conds: list[sql.Composable] = [sql.SQL("true")]
        params: list = []
        for column, values in (
            ("d.site_id", self.site_ids),
            ("s.device_id", self.device_ids),
            ("s.channel", self.channels),
            ("s.id", self.stream_ids),
            ("r.quality", self.qualities),
        ):
            if values:
                conds.append(sql.SQL(column + " = ANY(%s)"))
                params.append(list(values))
        if self.start is not None:
            conds.append(sql.SQL("r.time >= %s"))
            params.append(self.start)
        if self.end is not None:
            conds.append(sql.SQL("r.time < %s"))
            params.append(self.end)
        return sql.SQL(" AND ").join(conds), params


def _query(
    selection: Selection, time_expr: str, logger_quality: bool = False
) -> tuple[sql.Composed, list]:
    where, params = selection.where()
    query = sql.SQL(
        "SELECT {time}, d.site_id, s.device_id, s.channel, s.unit, s.id, r.value, r.quality{extra} "
        "FROM readings r JOIN streams s ON s.id = r.stream_id "
        "JOIN devices d ON d.id = s.device_id WHERE {where} ORDER BY r.stream_id, r.time"
    ).format(
        time=sql.SQL(time_expr),
        extra=sql.SQL(", coalesce(r.logger_quality, 2)" if logger_quality else ""),
        where=where,
    )
    return query, params


_RFC3339 = "to_char(r.time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
_EPOCH_US = "(extract(epoch FROM r.time) * 1000000)::int8"


def estimate_rows(conn: psycopg.Connection, selection: Selection) -> int:
    """The planner's estimate of the row count (cheap; for progress bars)."""
    query, params = _query(selection, "r.time")
    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params).fetchone()[0]
    return int(plan[0]["Plan"]["Plan Rows"])


class _CopyStream(io.RawIOBase):
    """A readable file over the chunks of a ``COPY ... TO STDOUT``."""

    def __init__(self, chunks: Iterator[memoryview], on_bytes: Callable[[int], None] | None = None):
        self._chunks = chunks
        self._buffer = memoryview(b"")
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        """Fill ``b`` as far as the data goes (COPY yields one row per chunk; pyarrow
        makes a block of whatever one read returns, so short reads make tiny batches)."""
        view = memoryview(b).cast("B")
        filled = 0
        while filled < len(view):
            if not self._buffer:
                try:
                    self._buffer = memoryview(next(self._chunks)).cast("B")
                except StopIteration:
                    break
            n = min(len(view) - filled, len(self._buffer))
            view[filled : filled + n] = self._buffer[:n]
            self._buffer = self._buffer[n:]
            filled += n
        return filled


@dataclass
class ExportResult:
    rows: int = 0
    bytes: int = 0
    streams: set[int] = field(default_factory=set)
    left_out: tuple[str, ...] = ()  # channels a NetCDF export left out (no CF name)


def cf_describable(channel: str) -> bool:
    """Whether CF can describe the channel (it has a CF standard name)."""
    known = CHANNELS.get(channel)
    return known is not None and known.cf_standard_name is not None


def export_csv(
    conn: psycopg.Connection,
    selection: Selection,
    out: BinaryIO,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """CSV with a header row, straight from the server's COPY."""
    query, params = _query(selection, _RFC3339)
    header = b"time,site_id,device_id,channel,unit,stream_id,value,quality\n"
    out.write(header)
    result = ExportResult(bytes=len(header))
    with conn.cursor().copy(
        sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query), params
    ) as copy:
        for chunk in copy:
            out.write(chunk)
            result.bytes += len(chunk)
            rows = bytes(chunk).count(b"\n")
            result.rows += rows
            if progress:
                progress(rows)
    return result


def iter_batches(
    conn: psycopg.Connection,
    selection: Selection,
    block_size: int = 8 << 20,
    logger_quality: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Arrow record batches in the Parquet schema, parsed by pyarrow as they stream; with
    ``logger_quality`` a last column holds the flag the logger sent (2 where none)."""
    query, params = _query(selection, _EPOCH_US, logger_quality)
    names = [*_RAW_COLUMNS, "logger_quality"] if logger_quality else _RAW_COLUMNS
    types = {**_RAW_TYPES, "logger_quality": pa.int8()}
    schema = _LOGGER_SCHEMA if logger_quality else PARQUET_SCHEMA
    with conn.cursor().copy(
        sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query), params
    ) as copy:
        chunks = iter(copy)
        first = next(chunks, None)
        if first is None:  # nothing selected; pyarrow refuses an empty CSV
            return
        reader = pacsv.open_csv(
            _CopyStream(itertools.chain([first], chunks)),
            read_options=pacsv.ReadOptions(column_names=names, block_size=block_size),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
        pool = pa.default_memory_pool()
        for i, batch in enumerate(reader, 1):
            yield _to_schema(batch, schema)
            if i % 32 == 0:
                pool.release_unused()  # keep the allocator from hoarding freed blocks


def _to_schema(batch: pa.RecordBatch, schema: pa.Schema = PARQUET_SCHEMA) -> pa.RecordBatch:
    cols = batch.columns
    time = cols[0].cast(pa.timestamp("us", tz="UTC"))
    dict_cols = [c.dictionary_encode() for c in cols[1:5]]
    return pa.RecordBatch.from_arrays([time, *dict_cols, *cols[5:]], schema=schema)


def export_parquet(
    conn: psycopg.Connection,
    selection: Selection,
    out: BinaryIO | str | Path,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    result = ExportResult()
    with pq.ParquetWriter(out, PARQUET_SCHEMA, compression="zstd") as writer:
        for batch in iter_batches(conn, selection):
            writer.write_batch(batch)
            result.rows += batch.num_rows
            if progress:
                progress(batch.num_rows)
    return result


# the names used here are in every table since (compliance-checker ships this one)
STANDARD_NAME_VOCABULARY = "CF Standard Name Table v93"
QC_TESTS = ("gross_range", "spike", "rate_of_change", "flat_line", "gap")
# global attributes of every NetCDF export (ACDD 1.3); SWC_EXPORT_ATTRIBUTES adds or overrides
DEFAULT_ATTRIBUTES = {
    "title": "Soil-and-water-conservation monitoring readings",
    "summary": "Time series measured by the loggers of soil-and-water-conservation works "
    "(check dams, rain-harvesting cisterns, runoff plots and rain gauges): pond stage, "
    "tank levels, turbidity, rain, discharge and logger health, with QARTOD quality flags "
    "(each test and their aggregate), one station per logger channel.",
    "keywords": "soil and water conservation, check dam, sediment, runoff, rainfall, "
    "stage, turbidity, discharge, QARTOD",
    "naming_authority": "io.github.swc-monitor",
    "creator_name": "swc-monitor operator",
    "creator_type": "institution",
    "creator_url": "https://github.com/swc-monitor/swc-monitor",
    "creator_email": "unknown@invalid",
    "institution": "swc-monitor operator",
    "publisher_name": "swc-monitor operator",
    "publisher_url": "https://github.com/swc-monitor/swc-monitor",
    "publisher_email": "unknown@invalid",
    "project": "swc-monitor",
    "license": "Not stated: ask the publisher before reuse",
    "acknowledgement": "Exported by swc-monitor (Apache-2.0)",
    "processing_level": "Raw logger readings with automatic QARTOD quality flags; not "
    "reviewed by hand",
    "comment": "Per-test flags are recomputed at export time over the exported rows; the "
    "aggregate flag is the one stored: the worst of the tests and of the logger's own flag.",
}


def export_netcdf(
    conn: psycopg.Connection,
    selection: Selection,
    path: str | Path,
    progress: Callable[[int], None] | None = None,
    attributes: dict[str, str] | None = None,
) -> ExportResult:
    """CF-1.8 timeSeries (indexed ragged arrays) NetCDF-4 file with ACDD-1.3 discovery
    attributes, written as rows stream (see docs/research.md "Exports")."""
    import netCDF4

    from .qc import stream_configs

    stations = _stations(conn, selection)
    result = ExportResult()
    if not selection.channels:
        # logger health and quantities CF cannot name come only when asked for by name
        present = {st["channel"] for st in stations.values()}
        result.left_out = tuple(sorted(c for c in present if not cf_describable(c)))
        if result.left_out:
            stations = {k: v for k, v in stations.items() if v["channel"] not in result.left_out}
            selection = replace(selection, stream_ids=tuple(stations) or (-1,))
    configs = stream_configs(conn, list(stations)) if stations else {}
    lookup = np.full(max(stations, default=0) + 1, -1, dtype=np.int32)
    lookup[np.array(list(stations), dtype=np.int64)] = np.arange(len(stations), dtype=np.int32)
    # a small chunk cache per variable: HDF5's default (tens of MB for each of
    # the variables per channel) would make memory grow with the channels
    netCDF4.set_chunk_cache(2 << 20, 521, 0.75)
    with netCDF4.Dataset(str(path), "w", format="NETCDF4") as ds:
        _write_stations(ds, stations)
        per_channel: dict[str, _ChannelVars] = {}

        def write(sid: int, times_us, values, quality, tests) -> None:
            channel = stations[sid]["channel"]
            cv = per_channel.get(channel)
            if cv is None:
                cv = per_channel[channel] = _ChannelVars.create(ds, channel, stations, configs)
            index = np.full(len(times_us), lookup[sid], dtype=np.int32)
            cv.append(times_us, index, values, quality, tests)

        flags = _StreamFlags(configs, write)
        for batch in iter_batches(conn, selection, logger_quality=True):
            times = batch.column(0).cast(pa.int64()).to_numpy()
            stream = batch.column(5).to_numpy()
            values = batch.column(6).to_numpy()
            # the stored aggregate and the logger's own flag, side by side
            quality = np.stack([batch.column(7).to_numpy(), batch.column(8).to_numpy()], axis=1)
            cuts = [0, *(np.flatnonzero(np.diff(stream)) + 1).tolist(), len(stream)]
            for a, b in itertools.pairwise(cuts):
                if b > a:
                    flags.add(int(stream[a]), times[a:b], values[a:b], quality[a:b])
            result.rows += batch.num_rows
            if progress:
                progress(batch.num_rows)
        flags.close()
        _write_coverage(ds, stations, per_channel, attributes, result.left_out)
    return result


class _StreamFlags:
    """Per-test QARTOD flags of one stream at a time (rows come ordered by stream, then
    time), computed over bounded windows: the rows still to write plus, before them, the
    history the tests look back on (the flat-line window) and, after them, one reading
    (the spike test's next neighbour)."""

    def __init__(self, configs: dict, write: Callable, flush_rows: int = 1 << 18):
        self._configs = configs
        self._write = write
        self.flush_rows = flush_rows
        self._sid: int | None = None
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._n = 0
        self._context = (np.empty(0, np.int64), np.empty(0, np.float64))

    def add(self, sid: int, times_us, values, quality) -> None:
        if sid != self._sid:
            self._flush(final=True)
            self._sid = sid
            self._context = (np.empty(0, np.int64), np.empty(0, np.float64))
        self._parts.append((times_us, values, quality))
        self._n += len(times_us)
        if self._n >= self.flush_rows:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)

    def _flush(self, final: bool) -> None:
        if self._sid is None or not self._n:
            return
        from analytics.quality import qc_flags

        from .qc import lookback_s

        times = np.concatenate([p[0] for p in self._parts])
        values = np.concatenate([p[1] for p in self._parts])
        quality = np.concatenate([p[2] for p in self._parts])
        keep = 0 if final else 1  # the last reading waits for its next neighbour
        n_out = len(times) - keep
        cfg = self._configs.get(self._sid)
        tests: dict[str, np.ndarray] = {}
        if cfg:
            ctx_t, ctx_v = self._context
            all_t = np.concatenate([ctx_t, times])
            all_v = np.concatenate([ctx_v, values])
            got = qc_flags(all_t / 1e6, all_v, **cfg)
            tests = {k: got[k][len(ctx_t) : len(ctx_t) + n_out] for k in QC_TESTS if k in got}
            # history for the next window: the flat-line window plus two readings
            done_t, done_v = all_t[: len(ctx_t) + n_out], all_v[: len(ctx_t) + n_out]
            if len(done_t):
                back_us = int(lookback_s(cfg) * 1e6) + 1
                first = int(np.searchsorted(done_t, done_t[-1] - back_us))
                first = max(0, min(first, len(done_t) - 2))
                self._context = (done_t[first:], done_v[first:])
        if n_out:
            self._write(self._sid, times[:n_out], values[:n_out], quality[:n_out], tests)
        self._parts = [(times[n_out:], values[n_out:], quality[n_out:])] if keep else []
        self._n = keep


def _write_coverage(ds, stations: dict[int, dict], per_channel: dict, extra,
                    left_out: tuple[str, ...] = ()) -> None:  # fmt: skip
    """ACDD discovery attributes: what, who, where and when."""
    import uuid
    from datetime import UTC

    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now.isoformat().replace("+00:00", "Z")
    attrs: dict[str, object] = dict(DEFAULT_ATTRIBUTES)
    attrs.update(extra or {})
    attrs.setdefault("id", f"swc-export-{uuid.uuid4()}")
    attrs.update(
        Conventions="CF-1.8, ACDD-1.3",
        featureType="timeSeries",
        cdm_data_type="Station",
        standard_name_vocabulary=STANDARD_NAME_VOCABULARY,
        source="swc-monitor loggers over MQTT",
        date_created=stamp,
        history=f"{stamp} swc export",
    )
    if left_out:
        note = (
            f"Channels left out (no CF standard name; export them by name to include them): "
            f"{', '.join(left_out)}."
        )
        attrs["comment"] = f"{attrs['comment']} {note}" if attrs.get("comment") else note
    lats = [st["lat"] for st in stations.values() if st["lat"] is not None]
    lons = [st["lon"] for st in stations.values() if st["lon"] is not None]
    alts = [st["elev"] for st in stations.values() if st["elev"] is not None]
    if lats and lons:
        lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)
        attrs.update(
            geospatial_lat_min=lat0,
            geospatial_lat_max=lat1,
            geospatial_lon_min=lon0,
            geospatial_lon_max=lon1,
            geospatial_lat_units="degrees_north",
            geospatial_lon_units="degrees_east",
            geospatial_bounds_crs="EPSG:4326",
            # ACDD: WKT in the CRS's axis order (EPSG:4326 is latitude, longitude)
            geospatial_bounds=(
                f"POLYGON (({lat0} {lon0}, {lat1} {lon0}, {lat1} {lon1}, {lat0} {lon1}, "
                f"{lat0} {lon0}))"
                if lat0 != lat1 and lon0 != lon1
                else f"POINT ({lat0} {lon0})"
            ),
        )
    if alts:
        attrs.update(
            geospatial_vertical_min=min(alts),
            geospatial_vertical_max=max(alts),
            geospatial_vertical_units="m",
            geospatial_vertical_positive="up",
            geospatial_bounds_vertical_crs="EPSG:5773",
        )
    filled = [cv for cv in per_channel.values() if cv.n]
    if filled:
        t0, t1 = min(cv.t_min for cv in filled), max(cv.t_max for cv in filled)
        attrs.update(
            time_coverage_start=_iso(t0),
            time_coverage_end=_iso(t1),
            time_coverage_duration=_iso_duration(t1 - t0),
        )
    for key, value in attrs.items():
        ds.setncattr(key, value)


def _iso(t_us: int) -> str:
    from datetime import UTC

    t = datetime.fromtimestamp(t_us / 1e6, UTC)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _iso_duration(us: int) -> str:
    s = max(0, round(us / 1e6))
    days, rest = divmod(s, 86400)
    return f"P{days}DT{rest // 3600}H{rest % 3600 // 60}M{rest % 60}S"


def _stations(conn: psycopg.Connection, selection: Selection) -> dict[int, dict]:
    # the streams that the selection can touch (time and quality filters aside)
    stream_filter = Selection(
        site_ids=selection.site_ids,
        device_ids=selection.device_ids,
        channels=selection.channels,
        stream_ids=selection.stream_ids,
    )
    where, params = stream_filter.where()
    rows = conn.execute(
        sql.SQL(
            "SELECT s.id, s.device_id, s.channel, s.unit, d.site_id, st.name, st.kind, "
            "st.latitude, st.longitude, st.elevation_m FROM streams s "
            "JOIN devices d ON d.id = s.device_id LEFT JOIN sites st ON st.id = d.site_id "
            "WHERE {} ORDER BY s.id"
        ).format(where),
        params,
    ).fetchall()
    keys = (
        "device_id",
        "channel",
        "unit",
        "site_id",
        "site_name",
        "site_kind",
        "lat",
        "lon",
        "elev",
    )
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def _write_stations(ds, stations: dict[int, dict]) -> None:
    ds.createDimension("station", len(stations))
    sid = ds.createVariable("stream_id", "i4", ("station",))
    sid.long_name = "stream id (device and channel)"
    sid.coverage_content_type = "referenceInformation"
    sid[:] = np.array(list(stations), dtype=np.int32)
    for name, key, long_name in (
        ("station_name", None, "device_id/channel"),
        ("site_id", "site_id", "site id"),
        ("device_id", "device_id", "logger id"),
        ("channel", "channel", "channel name"),
        ("site_kind", "site_kind", "kind of site (check_dam, cistern, runoff_plot, rain_gauge)"),
    ):
        var = ds.createVariable(name, str, ("station",))
        var.long_name = long_name
        var.coverage_content_type = "referenceInformation"
        for i, st in enumerate(stations.values()):
            var[i] = f"{st['device_id']}/{st['channel']}" if key is None else (st[key] or "")
    ds.variables["station_name"].cf_role = "timeseries_id"
    for name, key, units, std, long_name in (
        ("lat", "lat", "degrees_north", "latitude", "latitude of the site"),
        ("lon", "lon", "degrees_east", "longitude", "longitude of the site"),
        ("alt", "elev", "m", "height_above_mean_sea_level", "elevation of the site"),
    ):
        var = ds.createVariable(name, "f8", ("station",), fill_value=np.nan)
        var.units, var.standard_name, var.long_name = units, std, long_name
        var.coverage_content_type = "coordinate"
        if name == "alt":
            var.positive, var.axis = "up", "Z"
        var[:] = np.array([np.nan if st[key] is None else st[key] for st in stations.values()])


_FLAG_DOC = {
    "aggregate": (
        "aggregate_quality_flag",
        "QARTOD aggregate flag (worst of the tests and the logger's own flag, as stored)",
    ),
    "logger": ("quality_flag", "flag the logger sent (2: it sent none)"),
    "gross_range": ("gross_range_test_quality_flag", "QARTOD gross range test"),
    "spike": ("spike_test_quality_flag", "QARTOD spike test"),
    "rate_of_change": ("rate_of_change_test_quality_flag", "QARTOD rate of change test"),
    "flat_line": ("flat_line_test_quality_flag", "QARTOD flat line test"),
    "gap": ("gap_test_quality_flag", "QARTOD timing/gap test"),
}
_TEST_KEYS = {
    "gross_range": "fail_span",
    "spike": "spike_suspect",
    "rate_of_change": "rate_threshold_per_s",
    "flat_line": "flat_tolerance",
    "gap": "max_gap_s",
}


def _runs(test: str, config: dict | None) -> bool:
    return bool(config) and config.get(_TEST_KEYS[test]) is not None


@dataclass
class _ChannelVars:
    time: object
    index: object
    value: object
    flags: dict[str, object]
    n: int = 0
    t_min: int = 0
    t_max: int = 0

    @classmethod
    def create(cls, ds, channel: str, stations: dict[int, dict], configs: dict) -> _ChannelVars:
        obs = f"obs_{channel}"
        chunks = (1 << 16,)
        ds.createDimension(obs, None)
        # CF 1.8 allows no 64-bit integers: double seconds keep microseconds (to 0.3 us)
        time = ds.createVariable(f"time_{channel}", "f8", (obs,), chunksizes=chunks)
        time.standard_name = "time"
        time.long_name = f"time of each {channel} reading"
        time.units = "seconds since 1970-01-01 00:00:00 UTC"
        time.calendar = "standard"
        time.axis = "T"
        time.coverage_content_type = "coordinate"
        index = ds.createVariable(f"station_index_{channel}", "i4", (obs,), chunksizes=chunks)
        index.instance_dimension = "station"
        index.long_name = "index of the station (stream) of each observation"
        index.coverage_content_type = "referenceInformation"
        value = ds.createVariable(channel, "f8", (obs,), chunksizes=chunks, zlib=True)
        known = CHANNELS.get(channel)
        units = next((st["unit"] for st in stations.values() if st["channel"] == channel), None)
        if units:
            value.units = udunits_of(units)
            value.ucum_units = LEGACY_UNITS.get(units, units)
        value.long_name = known.description if known is not None else channel
        if known is not None and known.cf_standard_name:
            value.standard_name = known.cf_standard_name
            if known.cf_note:
                value.comment = f"standard_name: {known.cf_note}"
        elif known is not None and known.cf_note:
            value.comment = f"no standard_name: {known.cf_note}"
        value.cell_methods = known.cell_methods if known is not None else "time: point"
        value.coverage_content_type = "physicalMeasurement"
        value.coordinates = f"time_{channel} lat lon alt station_name stream_id"
        # a test that runs on any stream of this channel has its own flag variable
        sids = [sid for sid, st in stations.items() if st["channel"] == channel]
        names = ["aggregate", "logger"] + [
            t for t in QC_TESTS if any(_runs(t, configs.get(sid)) for sid in sids)
        ]
        flags = {}
        for name in names:
            var_name = f"{channel}_qc" if name == "aggregate" else f"{channel}_qc_{name}"
            qc = ds.createVariable(var_name, "i1", (obs,), chunksizes=chunks, zlib=True)
            std, what = _FLAG_DOC[name]
            qc.standard_name = std
            qc.long_name = f"{what} of {channel}"
            qc.flag_values = np.array(list(QUALITY_FLAGS), dtype=np.int8)
            qc.flag_meanings = " ".join(QUALITY_FLAGS.values())
            qc.references = "https://ioos.noaa.gov/project/qartod/"
            qc.coverage_content_type = "qualityInformation"
            flags[name] = qc
        value.ancillary_variables = " ".join(v.name for v in flags.values())
        return cls(time, index, value, flags)

    def append(self, times_us, index, values, quality, tests: dict[str, np.ndarray]) -> None:
        n = len(times_us)
        if not n:
            return
        sl = slice(self.n, self.n + n)
        self.time[sl] = times_us / 1e6
        self.index[sl] = index
        self.value[sl] = values
        for name, var in self.flags.items():
            if name == "aggregate":
                var[sl] = quality[:, 0]
            elif name == "logger":
                var[sl] = quality[:, 1]
            else:
                var[sl] = tests.get(name, np.full(n, 2, dtype=np.uint8)).astype(np.int8)
        lo, hi = int(times_us.min()), int(times_us.max())
        self.t_min = lo if self.n == 0 else min(self.t_min, lo)
        self.t_max = hi if self.n == 0 else max(self.t_max, hi)
        self.n += n


def export(
    conn: psycopg.Connection,
    selection: Selection,
    fmt: Format,
    out: BinaryIO | str | Path,
    progress: Callable[[int], None] | None = None,
    attributes: dict[str, str] | None = None,
) -> ExportResult:
    """Export ``selection`` as ``fmt``; ``attributes`` are NetCDF global attributes."""
    if fmt == "csv":
        if isinstance(out, (str, Path)):
            with open(out, "wb") as f:
                return export_csv(conn, selection, f, progress)
        return export_csv(conn, selection, out, progress)
    if fmt == "parquet":
        return export_parquet(conn, selection, out, progress)
    if fmt == "netcdf":
        if not isinstance(out, (str, Path)):
            raise ValueError("NetCDF is written to a file path, not a stream")
        return export_netcdf(conn, selection, out, progress, attributes)
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
