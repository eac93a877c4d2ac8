"""Migrations, the registry file, the writer and the hourly aggregates."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.store.migrate import MigrationError, apply_policies, migrate, plan, storage_mode
from ingest.store.readings import ReadingWriter, hourly_aggregates
from ingest.store.registry import RegistryFileError, load_registry, read_registry_file
from tests.conftest import create_database, drop_database, dsn_for

T0 = datetime(2026, 7, 21, tzinfo=UTC)


def test_migrate_is_idempotent_and_recorded(empty_db):
    mode, applied = migrate(empty_db, "off")
    assert mode == "plain"
    assert applied[:2] == ["0001_core", "0002_hourly"]  # later migrations follow
    assert migrate(empty_db, "off") == ("plain", [])
    assert migrate(empty_db, "auto") == ("plain", [])  # a plain database stays plain
    with psycopg.connect(empty_db) as conn:
        versions = conn.execute(
            "SELECT version, name, mode FROM schema_migrations ORDER BY 1"
        ).fetchall()
        assert versions[:2] == [(1, "core", None), (2, "hourly", "plain")]
        assert storage_mode(conn) == "plain"
        for table in ("sites", "devices", "streams", "readings", "dead_letters"):
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] == table


def test_timescale_on_without_the_extension_is_a_clear_error(admin_dsn, empty_db):
    # "usable" = installed and in shared_preload_libraries; installed but not
    # preloaded (a server with the package but not configured) must fail too
    if _timescale_available(admin_dsn):
        pytest.skip("timescaledb is usable on this server")
    with pytest.raises(MigrationError, match="timescaledb extension is not available"):
        migrate(empty_db, "on")


def test_each_mode_has_one_migration_per_version():
    plain, ts = plan("plain"), plan("timescale")
    assert [m.version for m in plain] == [m.version for m in ts]
    assert all(m.mode in (None, "timescale") for m in ts)


def _stream(conn, device: str, channel: str) -> int:
    conn.execute("INSERT INTO devices (id) VALUES (%s) ON CONFLICT DO NOTHING", (device,))
    return conn.execute(
        "INSERT INTO streams (device_id, channel) VALUES (%s, %s) RETURNING id", (device, channel)
    ).fetchone()[0]


def test_writer_is_idempotent_on_stream_and_time(db):
    writer = ReadingWriter()
    now = datetime.now(UTC)
    with psycopg.connect(db, autocommit=True) as conn:
        sid = _stream(conn, "d1", "stage_m")
        rows = [(T0 + timedelta(minutes=i), sid, float(i), 2, now) for i in range(100)]
        first = writer.write(conn, rows)
        assert (first.written, first.duplicates) == (100, 0)
        again = writer.write(conn, [*rows[50:], (T0 + timedelta(minutes=100), sid, 100.0, 2, now)])
        assert (again.written, again.duplicates) == (1, 50)
        # first write wins: a replay with another value does not overwrite
        writer.write(conn, [(T0, sid, 999.0, 2, now)])
        assert (
            conn.execute("SELECT value FROM readings WHERE time = %s", (T0,)).fetchone()[0] == 0.0
        )
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 101


def _load_sample(
    dsn: str, n_streams: int = 3, hours: int = 30, seed: int = 7
) -> tuple[list[int], list]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [_stream(conn, f"dev{i}", "stage_m") for i in range(n_streams)]
        rows = []
        for sid in ids:
            t = T0 + timedelta(seconds=rng.randint(0, 3599))
            while t < T0 + timedelta(hours=hours):
                rows.append((t, sid, rng.uniform(-5, 50), 2, now))
                t += timedelta(seconds=rng.randint(20, 400))
        ReadingWriter().write(conn, rows)
    return ids, rows


def _reference(rows) -> dict:
    buckets = defaultdict(list)
    for t, sid, v, _, _ in rows:
        buckets[(sid, t.replace(minute=0, second=0, microsecond=0))].append(v)
    return {k: (len(v), sum(v) / len(v), min(v), max(v), sum(v)) for k, v in buckets.items()}


def _assert_matches(result, reference) -> None:
    assert len(result) == len(reference)
    for sid, bucket, n, mean, lo, hi, total in result:
        ref = reference[(sid, bucket)]
        assert n == ref[0]
        for got, want in zip((mean, lo, hi, total), ref[1:], strict=True):
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9)


def test_hourly_aggregates_on_plain_postgresql(db):
    ids, rows = _load_sample(db)
    with psycopg.connect(db) as conn:
        result = hourly_aggregates(conn, ids, T0, T0 + timedelta(days=2))
    _assert_matches(result, _reference(rows))
    assert {r[1].minute for r in result} == {0}


def _timescale_available(admin_dsn: str) -> bool:
    with psycopg.connect(admin_dsn) as conn:
        ext = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    return bool(ext) and "timescaledb" in preload


@pytest.mark.timescaledb
def test_hourly_aggregates_are_the_same_with_and_without_timescaledb(admin_dsn):
    if not _timescale_available(admin_dsn):
        pytest.skip(
            "timescaledb is not installed or not in shared_preload_libraries here (CI runs plain PostgreSQL)"
        )
    names = [create_database(admin_dsn), create_database(admin_dsn)]
    try:
        plain, ts = (dsn_for(n, admin_dsn) for n in names)
        assert migrate(plain, "off")[0] == "plain"
        assert migrate(ts, "on")[0] == "timescale"
        ids_p, _rows = _load_sample(plain)
        ids_t, rows_t = _load_sample(ts)
        assert ids_p == ids_t
        with psycopg.connect(ts, autocommit=True) as conn:
            assert (
                conn.execute(
                    "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
                ).fetchone()[0]
                == 1
            )
            half = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            # materialise part of the range: results must still equal the plain view
            conn.execute(
                "CALL refresh_continuous_aggregate('readings_hourly', %s::timestamptz, %s::timestamptz)",
                (T0, T0 + timedelta(hours=12)),
            )
            assert half == len(rows_t)
        with psycopg.connect(plain) as a, psycopg.connect(ts) as b:
            rp = hourly_aggregates(a, ids_p, T0, T0 + timedelta(days=2))
            rt = hourly_aggregates(b, ids_t, T0, T0 + timedelta(days=2))
        assert len(rp) == len(rt)
        for x, y in zip(rp, rt, strict=True):
            assert x[:3] == y[:3]
            for got, want in zip(x[3:], y[3:], strict=True):
                assert math.isclose(got, want, rel_tol=1e-12)
    finally:
        for n in names:
            drop_database(admin_dsn, n)


@pytest.mark.timescaledb
def test_duplicates_into_a_compressed_chunk_are_skipped(admin_dsn):
    if not _timescale_available(admin_dsn):
        pytest.skip(
            "timescaledb is not installed or not in shared_preload_libraries here (CI runs plain PostgreSQL)"
        )
    name = create_database(admin_dsn)
    try:
        dsn = dsn_for(name, admin_dsn)
        assert migrate(dsn, "on")[0] == "timescale"
        now = datetime.now(UTC)
        t0 = (now - timedelta(days=365)).replace(second=0, microsecond=0)
        with psycopg.connect(dsn, autocommit=True) as conn:
            sid = _stream(conn, "d1", "stage_m")
            rows = [(t0 + timedelta(minutes=i), sid, float(i), 2, now) for i in range(500)]
            assert ReadingWriter().write(conn, rows).written == 500
            assert conn.execute(
                "SELECT compress_chunk(c) FROM show_chunks('readings') c"
            ).fetchall()
            compressed = "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
            assert conn.execute(compressed).fetchone()[0] is True
            # a redelivery of a year-old batch: the COPY hits the compressed chunk's
            # unique index, and the staging path skips every row
            writer = ReadingWriter()
            again = writer.write(conn, rows)
            assert (again.written, again.duplicates) == (0, 500)
            # the staging path again, old rows mixed with new ones in the same chunk
            new = [(t0 + timedelta(minutes=500 + i), sid, 1000.0 + i, 2, now) for i in range(5)]
            mixed = writer.write(conn, [*rows[100:110], *new])
            assert (mixed.written, mixed.duplicates) == (5, 10)
            # first write wins in a compressed chunk too
            assert writer.write(conn, [(t0, sid, 999.0, 2, now)]).duplicates == 1
            assert (
                conn.execute("SELECT value FROM readings WHERE time = %s", (t0,)).fetchone()[0]
                == 0.0
            )
            assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 505
            assert conn.execute(compressed).fetchone()[0] is True
    finally:
        drop_database(admin_dsn, name)


@pytest.mark.timescaledb
def test_timescale_policies_are_kept_when_unchanged(admin_dsn):
    if not _timescale_available(admin_dsn):
        pytest.skip(
            "timescaledb is not installed or not in shared_preload_libraries here (CI runs plain PostgreSQL)"
        )
    name = create_database(admin_dsn)
    jobs = (
        "SELECT proc_name, job_id, config FROM timescaledb_information.jobs "
        "WHERE hypertable_name = 'readings' ORDER BY proc_name"
    )
    try:
        dsn = dsn_for(name, admin_dsn)
        assert migrate(dsn, "on")[0] == "timescale"
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_policies(dsn, "7 days", None)
            first = conn.execute(jobs).fetchall()
            assert [(p, c["compress_after"]) for p, _, c in first] == [
                ("policy_compression", "7 days")
            ]
            # a second `swc migrate` (or consumer start) keeps the same job
            apply_policies(dsn, "1 week", None)
            assert conn.execute(jobs).fetchall() == first
            apply_policies(dsn, "7 days", "10 years")
            second = conn.execute(jobs).fetchall()
            assert second[0] == first[0]
            assert (second[1][0], second[1][2]["drop_after"]) == ("policy_retention", "10 years")
            apply_policies(dsn, "7 days", "10 years")
            assert conn.execute(jobs).fetchall() == second
            # a changed interval replaces the job; an unset retention removes it
            apply_policies(dsn, "14 days", None)
            third = conn.execute(jobs).fetchall()
            assert [(p, c["compress_after"]) for p, _, c in third] == [
                ("policy_compression", "14 days")
            ]
            assert third[0][1] != first[0][1]
    finally:
        drop_database(admin_dsn, name)


def test_registry_file_loads_and_reloads(db, tmp_path):
    f = tmp_path / "county.yaml"
    f.write_text(
        """
sites:
  - id: dam-017
    kind: check_dam
    name: Wangmaogou check dam 17
    latitude: 37.58
    longitude: 110.36
    params: {spillway_crest_m: 4.5, stage_storage: {a: 1200.0, b: 2.1}}
    devices:
      - {id: dam-017, channels: [stage_m, turbidity_ntu]}
  - id: rg-01
    kind: rain_gauge
    name: Gauge 1
    devices: [{id: rg-01, channels: [rain_mm, battery_v]}]
gateways:
  - {id: gw-north, loggers: [dam-017]}
"""
    )
    spec = read_registry_file(f)
    with psycopg.connect(db) as conn:
        assert load_registry(conn, spec) == {"sites": 2, "devices": 2, "streams": 4, "gateways": 1}
        assert load_registry(conn, spec)["streams"] == 0  # reload adds nothing
        units = dict(conn.execute("SELECT channel, unit FROM streams").fetchall())
        assert units == {
            "stage_m": "m",
            "turbidity_ntu": "[NTU]",
            "rain_mm": "mm",
            "battery_v": "V",
        }
        assert (
            conn.execute("SELECT gateway_id FROM devices WHERE id='dam-017'").fetchone()[0]
            == "gw-north"
        )
        params = conn.execute("SELECT params FROM sites WHERE id='dam-017'").fetchone()[0]
        assert params["stage_storage"]["b"] == 2.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites: [{id: a, kind: volcano, name: x}]", "sites.0.kind"),
        ("sites: [{id: 'a b', kind: cistern, name: x}]", "sites.0.id"),
        ("sites: [{id: a, kind: cistern, name: x, colour: red}]", "sites.0.colour"),
        ("sites: [{id: a, kind: cistern, name: x, latitude: 91}]", "sites.0.latitude"),
        (
            "sites: [{id: a, kind: cistern, name: x, devices: [{id: d, channels: [Stage]}]}]",
            "channels.0",
        ),
        ("sites: {", "not valid"),
        (
            "sites: [{id: a, kind: cistern, name: x, devices: [{id: d}]}, {id: b, kind: cistern, name: y, devices: [{id: d}]}]",
            "listed twice: d",
        ),
    ],
)
def test_registry_file_errors_name_the_problem(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(RegistryFileError, match=message.replace(".", r"\.")):
        read_registry_file(f)


def test_migration_0070_rewrites_legacy_units_as_ucum(db):
    from importlib.resources import files

    sql_text = (files("ingest.store") / "migrations" / "0070_ucum_units.sql").read_text()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (id) VALUES ('old-1')")
        conn.execute(
            "INSERT INTO streams (device_id, channel, unit) VALUES "
            "('old-1', 'turbidity_ntu', 'NTU'), ('old-1', 'rssi_dbm', 'dBm'), "
            "('old-1', 'stage_m', 'm')"
        )
        conn.execute(sql_text)  # as a database migrated before 0070 gets it
        units = dict(conn.execute("SELECT channel, unit FROM streams").fetchall())
    assert units == {"turbidity_ntu": "[NTU]", "rssi_dbm": "dB[mW]", "stage_m": "m"}
