-- swc:no-transaction
-- TimescaleDB: readings become a hypertable, compressed by stream, with an
-- hourly continuous aggregate that also shows not-yet-materialised data
-- (materialized_only = false), so its results equal the plain view's.

SELECT create_hypertable('readings', 'time', chunk_time_interval => INTERVAL '7 days', migrate_data => true);

ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'stream_id', timescaledb.compress_orderby = 'time');

CREATE MATERIALIZED VIEW readings_hourly WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT stream_id, time_bucket(INTERVAL '1 hour', time) AS bucket, count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max, sum(value) AS sum FROM readings GROUP BY stream_id, bucket WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_hourly', start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes');
