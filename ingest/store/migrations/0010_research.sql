-- Researchers' derived products: versioned stage-storage curves and turbidity
-- calibrations, and a cache of products computed on demand. Plain SQL, valid
-- with or without TimescaleDB. See docs/research.md ("Derived products").

-- A check dam's stage-storage curve (水位-库容曲线). A re-survey adds a row valid
-- from its date; the curve valid at time t is the row with the latest
-- valid_from <= t, else the design curve in sites.params.stage_storage.
-- Stages are in the dam's gauge datum (the same datum as the stage_m channel).
CREATE TABLE stage_storage_curves (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     text NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    valid_from  timestamptz NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('power', 'table')),
    a           double precision,            -- power: V [m3] = a h^b
    b           double precision,
    stages_m    double precision[],          -- table (or the survey points a power law was fitted to)
    volumes_m3  double precision[],
    source      text NOT NULL DEFAULT 'survey' CHECK (source <> ''),  -- 'design', 'survey', ...
    survey_id   bigint,                      -- the survey it came from (no FK: surveys come later)
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, valid_from),
    CHECK (kind <> 'power' OR (a > 0 AND b > 0)),
    CHECK (kind <> 'table' OR (cardinality(stages_m) >= 2
                               AND cardinality(stages_m) = cardinality(volumes_m3))),
    CHECK (coalesce(cardinality(stages_m), 0) = coalesce(cardinality(volumes_m3), 0))
);

-- Turbidity -> SSC calibration of one site's sensor channel (optionally one
-- stream). Same versioning rule as the curves; fallback
-- sites.params.turbidity_calibration {a_kg_m3, b}.
--   linear: ssc_kg_m3 = intercept + slope * ntu
--   power : ssc_kg_m3 = exp(intercept) * ntu^slope * smearing   (fitted on logs)
CREATE TABLE calibrations (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id       text NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    stream_id     integer,                   -- NULL: every stream of the channel at the site
    channel       text NOT NULL DEFAULT 'turbidity_ntu',
    valid_from    timestamptz NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('linear', 'power')),
    intercept     double precision NOT NULL,
    slope         double precision NOT NULL,
    smearing      double precision NOT NULL DEFAULT 1 CHECK (smearing > 0),
    -- prediction-interval information (NULL for a calibration given as coefficients)
    residual_std  double precision,
    n             integer,
    x_mean        double precision,
    sxx           double precision,
    ntu_min       double precision,          -- sampled range: do not extrapolate beyond it
    ntu_max       double precision,
    samples_ntu   double precision[],
    samples_ssc_kg_m3 double precision[],
    source        text NOT NULL DEFAULT 'samples',
    survey_id     bigint,
    note          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX calibrations_version_idx
    ON calibrations (site_id, channel, coalesce(stream_id, -1), valid_from);

-- Derived products computed on demand. fingerprint summarises every input
-- (readings in the window: count and max(received_at); curve and calibration
-- versions; site parameters; method version); a different fingerprint means
-- the cached result is stale.
CREATE TABLE derived_cache (
    key          text PRIMARY KEY,
    fingerprint  text NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    compute_ms   double precision,
    result       jsonb NOT NULL
);
