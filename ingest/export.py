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
timeSeries``, indexed ragged arrays): one station per stream, and per
channel its own unlimited observation dimension ``obs_<channel>`` with
``time_<channel>``, ``station_index_<channel>``, the values ``<channel>`` (with
``units`` and ``standard_name`` where CF has one) and a CF flag variable
``<channel>_qc``.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

from protocol.channels import CHANNELS

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


def _query(selection: Selection, time_expr: str) -> tuple[sql.Composed, list]:
    where, params = selection.where()
    query = sql.SQL(
        "SELECT {time}, d.site_id, s.device_id, s.channel, s.unit, s.id, r.value, r.quality "
        "FROM readings r JOIN streams s ON s.id = r.stream_id "
        "JOIN devices d ON d.id = s.device_id WHERE {where} ORDER BY r.stream_id, r.time"
    ).format(time=sql.SQL(time_expr), where=where)
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
    conn: psycopg.Connection, selection: Selection, block_size: int = 8 << 20
) -> Iterator[pa.RecordBatch]:
    """Arrow record batches in the Parquet schema, parsed by pyarrow as they stream."""
    query, params = _query(selection, _EPOCH_US)
    with conn.cursor().copy(
        sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query), params
    ) as copy:
        chunks = iter(copy)
        first = next(chunks, None)
        if first is None:  # nothing selected; pyarrow refuses an empty CSV
            return
        reader = pacsv.open_csv(
            _CopyStream(itertools.chain([first], chunks)),
            read_options=pacsv.ReadOptions(column_names=_RAW_COLUMNS, block_size=block_size),
            convert_options=pacsv.ConvertOptions(
                column_types=_RAW_TYPES, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
        pool = pa.default_memory_pool()
        for i, batch in enumerate(reader, 1):
            yield _to_schema(batch)
            if i % 32 == 0:
                pool.release_unused()  # keep the allocator from hoarding freed blocks


def _to_schema(batch: pa.RecordBatch) -> pa.RecordBatch:
    cols = batch.columns
    time = cols[0].cast(pa.timestamp("us", tz="UTC"))
    dict_cols = [c.dictionary_encode() for c in cols[1:5]]
    return pa.RecordBatch.from_arrays([time, *dict_cols, *cols[5:]], schema=PARQUET_SCHEMA)


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


def export_netcdf(
    conn: psycopg.Connection,
    selection: Selection,
    path: str | Path,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """CF-1.8 timeSeries (indexed ragged arrays) NetCDF-4 file, written as rows stream."""
    import netCDF4

    stations = _stations(conn, selection)
    lookup = np.full(max(stations, default=0) + 1, -1, dtype=np.int32)
    lookup[np.array(list(stations), dtype=np.int64)] = np.arange(len(stations), dtype=np.int32)
    result = ExportResult()
    # a small chunk cache per variable: HDF5's default (tens of MB for each of
    # the four variables per channel) would make memory grow with the channels
    netCDF4.set_chunk_cache(2 << 20, 521, 0.75)
    with netCDF4.Dataset(str(path), "w", format="NETCDF4") as ds:
        _write_stations(ds, stations)
        per_channel: dict[str, _ChannelVars] = {}
        for batch in iter_batches(conn, selection):
            channels = batch.column(3).dictionary.to_pylist()
            codes = batch.column(3).indices.to_numpy(zero_copy_only=False)
            times = batch.column(0).cast(pa.int64()).to_numpy()
            stream = batch.column(5).to_numpy()
            values = batch.column(6).to_numpy()
            quality = batch.column(7).to_numpy()
            for code, channel in enumerate(channels):
                mask = codes == code
                if not mask.any():
                    continue
                cv = per_channel.get(channel)
                if cv is None:
                    cv = per_channel[channel] = _ChannelVars.create(ds, channel, stations)
                cv.append(times[mask], lookup[stream[mask]], values[mask], quality[mask])
            result.rows += batch.num_rows
            if progress:
                progress(batch.num_rows)
    return result


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
    ds.Conventions = "CF-1.8"
    ds.featureType = "timeSeries"
    ds.title = "swc readings export"
    ds.source = "swc-monitor"
    ds.createDimension("station", len(stations))
    ds.createDimension("name_strlen", 64)
    sid = ds.createVariable("stream_id", "i4", ("station",))
    sid.long_name = "stream id (device and channel)"
    sid[:] = np.array(list(stations), dtype=np.int32)
    for name, key, long_name in (
        ("station_name", None, "device_id/channel"),
        ("site_id", "site_id", "site id"),
        ("device_id", "device_id", "logger id"),
        ("channel", "channel", "channel name"),
    ):
        var = ds.createVariable(name, str, ("station",))
        var.long_name = long_name
        for i, st in enumerate(stations.values()):
            var[i] = f"{st['device_id']}/{st['channel']}" if key is None else (st[key] or "")
    ds.variables["station_name"].cf_role = "timeseries_id"
    for name, key, units, std in (
        ("lat", "lat", "degrees_north", "latitude"),
        ("lon", "lon", "degrees_east", "longitude"),
        ("alt", "elev", "m", "height_above_mean_sea_level"),
    ):
        var = ds.createVariable(name, "f8", ("station",), fill_value=np.nan)
        var.units, var.standard_name = units, std
        var[:] = np.array([np.nan if st[key] is None else st[key] for st in stations.values()])


@dataclass
class _ChannelVars:
    time: object
    index: object
    value: object
    qc: object
    n: int = 0

    @classmethod
    def create(cls, ds, channel: str, stations: dict[int, dict]) -> _ChannelVars:
        obs = f"obs_{channel}"
        ds.createDimension(obs, None)
        time = ds.createVariable(f"time_{channel}", "i8", (obs,), chunksizes=(1 << 16,))
        time.standard_name = "time"
        time.units = "microseconds since 1970-01-01 00:00:00"
        time.calendar = "standard"
        index = ds.createVariable(f"station_index_{channel}", "i4", (obs,), chunksizes=(1 << 16,))
        index.instance_dimension = "station"
        index.long_name = "index of the station (stream) of each observation"
        value = ds.createVariable(channel, "f8", (obs,), chunksizes=(1 << 16,), zlib=True)
        known = CHANNELS.get(channel)
        units = next((st["unit"] for st in stations.values() if st["channel"] == channel), None)
        if units:
            value.units = _cf_unit(units)
        if known is not None:
            value.long_name = known.description
            if known.cf_standard_name:
                value.standard_name = known.cf_standard_name
        value.coordinates = f"time_{channel} lat lon alt station_name"
        value.ancillary_variables = f"{channel}_qc"
        qc = ds.createVariable(f"{channel}_qc", "i1", (obs,), chunksizes=(1 << 16,), zlib=True)
        qc.long_name = f"QARTOD quality flag of {channel}"
        qc.standard_name = "aggregate_quality_flag"
        qc.flag_values = np.array(list(QUALITY_FLAGS), dtype=np.int8)
        qc.flag_meanings = " ".join(QUALITY_FLAGS.values())
        return cls(time, index, value, qc)

    def append(self, times, index, values, quality) -> None:
        n = len(times)
        sl = slice(self.n, self.n + n)
        self.time[sl] = times
        self.index[sl] = index
        self.value[sl] = values
        self.qc[sl] = quality
        self.n += n


def _cf_unit(unit: str) -> str:
    """UCUM-style symbols to UDUNITS, as CF expects."""
    return {"Cel": "degC", "kg/m3": "kg m-3", "m3/s": "m3 s-1", "%": "percent"}.get(unit, unit)


def export(
    conn: psycopg.Connection,
    selection: Selection,
    fmt: Format,
    out: BinaryIO | str | Path,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
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
        return export_netcdf(conn, selection, out, progress)
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
