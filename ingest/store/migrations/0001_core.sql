-- Core registry, readings and dead letters. Plain SQL, valid with or without TimescaleDB.

CREATE TABLE sites (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    kind        text NOT NULL CHECK (kind IN ('check_dam', 'cistern', 'runoff_plot', 'rain_gauge', 'other')),
    name        text NOT NULL,
    latitude    double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude   double precision CHECK (longitude BETWEEN -180 AND 180),
    elevation_m double precision,
    -- design parameters: spillway_crest_m, stage_storage {a, b}, catchment_area_km2, ...
    params      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    site_id         text REFERENCES sites (id) ON DELETE SET NULL,
    kind            text NOT NULL DEFAULT 'logger' CHECK (kind IN ('logger', 'gateway')),
    gateway_id      text REFERENCES devices (id) ON DELETE SET NULL,
    password_hash   text,
    firmware        text,
    auto_registered boolean NOT NULL DEFAULT false,
    last_seen       timestamptz,
    last_seq        bigint,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_site_idx ON devices (site_id);
CREATE INDEX devices_gateway_idx ON devices (gateway_id);

CREATE TABLE streams (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    channel     text NOT NULL CHECK (channel ~ '^[a-z][a-z0-9_]{0,47}$'),
    unit        text,
    calibration jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, channel)
);

-- One row per sample. The primary key makes a redelivered reading a no-op.
-- stream_id has no foreign key: the check would cost every bulk write, and
-- streams are only ever added.
CREATE TABLE readings (
    time        timestamptz NOT NULL,
    stream_id   integer NOT NULL,
    value       double precision NOT NULL,
    quality     smallint NOT NULL DEFAULT 2 CHECK (quality IN (1, 2, 3, 4, 9)),
    received_at timestamptz NOT NULL,
    PRIMARY KEY (stream_id, time)
);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    error_code  text NOT NULL,
    error       text NOT NULL
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_code_idx ON dead_letters (error_code);
