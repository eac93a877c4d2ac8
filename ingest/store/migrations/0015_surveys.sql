-- Field surveys (野外调查) and their attachments, and the surveyor role of API
-- keys. Plain SQL, valid with or without TimescaleDB. See docs/research.md
-- ("Field surveys").

-- A surveyor reads like a viewer and writes field surveys.
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('viewer', 'surveyor', 'engineer', 'admin'));

-- One visit to a site. The kind-specific record is in data (validated by the
-- API's model of the kind); inspections also fill condition and damage.
CREATE TABLE surveys (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id        text NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('inspection', 'sediment_survey',
                       'stage_storage_survey', 'calibration_visit', 'cistern_check',
                       'plot_sample')),
    surveyed_at    timestamptz NOT NULL,
    surveyor       text NOT NULL DEFAULT '',
    latitude       double precision CHECK (latitude BETWEEN -90 AND 90),      -- GNSS position
    longitude      double precision CHECK (longitude BETWEEN -180 AND 180),
    condition      text CHECK (condition IN ('good', 'fair', 'poor', 'failed')),
    damage         jsonb NOT NULL DEFAULT '[]'::jsonb,   -- [{type, location, severity, note}]
    notes          text NOT NULL DEFAULT '',
    data           jsonb NOT NULL DEFAULT '{}'::jsonb,
    ref            text,                                 -- the sheet's survey_ref, if imported
    curve_id       bigint REFERENCES stage_storage_curves (id) ON DELETE SET NULL,
    calibration_id bigint REFERENCES calibrations (id) ON DELETE SET NULL,
    created_by_key bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'inspection' OR (condition IS NULL AND damage = '[]'::jsonb)),
    CHECK (kind <> 'inspection' OR condition IS NOT NULL)
);
CREATE INDEX surveys_site_time_idx ON surveys (site_id, surveyed_at);
CREATE INDEX surveys_kind_time_idx ON surveys (kind, surveyed_at);
-- a sheet imported twice does not make the same survey twice
CREATE UNIQUE INDEX surveys_ref_idx ON surveys (site_id, kind, ref) WHERE ref IS NOT NULL;

CREATE TABLE survey_attachments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    survey_id      bigint NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    filename       text NOT NULL CHECK (filename <> ''),
    content_type   text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png',
                       'application/pdf')),
    size_bytes     bigint NOT NULL CHECK (size_bytes >= 0),
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_uri    text NOT NULL,                        -- disk:<path under the folder>, s3://...
    created_by_key bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX survey_attachments_survey_idx ON survey_attachments (survey_id);
