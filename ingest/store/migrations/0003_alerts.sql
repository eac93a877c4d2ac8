-- Alerts and the engineers' API: keys with roles, per-site rule thresholds with an
-- audit trail, alert episodes and their events, the engine's per-rule state,
-- webhooks and their delivery log. Plain SQL, valid with or without TimescaleDB.

CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL DEFAULT '',
    role         text NOT NULL CHECK (role IN ('viewer', 'engineer', 'admin')),
    prefix       text NOT NULL,            -- first characters of the key, for display
    key_hash     text NOT NULL UNIQUE,     -- sha256 hex of the whole key
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Engineers' overrides of a rule's defaults at one site; absent = defaults
-- derived from sites.params (spillway crest, freeboard, cistern capacity ...).
CREATE TABLE site_rules (
    site_id    text NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    rule       text NOT NULL,
    config     jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    PRIMARY KEY (site_id, rule)
);

CREATE TABLE site_rule_audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id    text NOT NULL,
    rule       text NOT NULL,
    old_config jsonb,
    new_config jsonb,
    note       text,
    key_id     bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX site_rule_audit_site_idx ON site_rule_audit (site_id, changed_at);

-- One row per (site, rule, subject) episode. subject is '' for site-wide rules
-- (rainfall, stage ...) and a device or device/channel for device rules.
CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id          text NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    rule             text NOT NULL,
    subject          text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT 'open'
                     CHECK (state IN ('open', 'acknowledged', 'resolved')),
    level            smallint NOT NULL CHECK (level BETWEEN 0 AND 4),
    peak_level       smallint NOT NULL CHECK (peak_level BETWEEN 1 AND 4),
    opened_at        timestamptz NOT NULL,   -- data time of the opening reading
    last_data_at     timestamptz NOT NULL,   -- data time of the last transition
    late             boolean NOT NULL DEFAULT false,  -- raised from data that arrived late
    value            double precision,       -- rule value at the last transition
    acknowledged_at  timestamptz,
    acknowledged_by  bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    ack_note         text,
    resolved_at      timestamptz,
    resolved_by      bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    resolve_reason   text,
    resolve_note     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_one_active_idx ON alerts (site_id, rule, subject)
    WHERE state <> 'resolved';
CREATE INDEX alerts_site_idx ON alerts (site_id, opened_at);
CREATE INDEX alerts_state_idx ON alerts (state, level);
CREATE INDEX alerts_opened_idx ON alerts (opened_at);

CREATE TABLE alert_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id      bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('open', 'escalate', 'deescalate', 'resolve',
                                               'acknowledge', 'live')),
    level         smallint NOT NULL CHECK (level BETWEEN 0 AND 4),
    previous_level smallint NOT NULL CHECK (previous_level BETWEEN 0 AND 4),
    data_time     timestamptz,               -- reading time that caused it (NULL: by a person)
    late          boolean NOT NULL DEFAULT false,
    value         double precision,
    key_id        bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    note          text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, id);

-- The engine's AlertTracker per (site, rule, subject), locked FOR UPDATE while
-- a consumer evaluates it, so that several consumers continue one another.
CREATE TABLE alert_rule_state (
    site_id    text NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    rule       text NOT NULL,
    subject    text NOT NULL DEFAULT '',
    tracker    jsonb NOT NULL,
    alert_id   bigint REFERENCES alerts (id) ON DELETE SET NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, rule, subject)
);

CREATE TABLE webhooks (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url        text NOT NULL,
    secret     text NOT NULL,          -- HMAC key; must be readable to sign
    site_id    text REFERENCES sites (id) ON DELETE CASCADE,  -- NULL: every site
    min_level  smallint NOT NULL DEFAULT 1 CHECK (min_level BETWEEN 0 AND 4),
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by bigint REFERENCES api_keys (id) ON DELETE SET NULL
);

CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        bigint NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_hook_idx ON webhook_deliveries (webhook_id, id);

-- Every write through the API, attributed to its key (alerts and rules have
-- their own history too: alert_events, site_rule_audit).
CREATE TABLE api_writes (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id  bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    action  text NOT NULL,
    target  text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'::jsonb,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_writes_key_idx ON api_writes (key_id, at);
