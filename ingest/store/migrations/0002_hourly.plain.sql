-- Hourly aggregates on plain PostgreSQL: a view computed on read with date_bin.
-- Same columns and results as the TimescaleDB continuous aggregate.

CREATE VIEW readings_hourly AS
SELECT stream_id,
       date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*)   AS n,
       avg(value) AS mean,
       min(value) AS min,
       max(value) AS max,
       sum(value) AS sum
FROM readings
GROUP BY stream_id, bucket;
