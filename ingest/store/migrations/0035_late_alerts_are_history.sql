-- An open (or acknowledged) alert is always a live, announced one: an episode
-- raised from late data is recorded resolved ('late_data') from the start.
-- Late alerts left open by earlier versions are closed the same way, so that
-- /sites, /alerts?active=true, the retained MQTT state and SSE agree.
UPDATE alerts
   SET state = 'resolved', level = 0, resolved_at = now(), resolve_reason = 'late_data',
       resolve_note = 'raised from late data and never announced; closed by migration 0035',
       updated_at = now()
 WHERE late AND state <> 'resolved';

-- The engine's periodic staleness check looks only at open episodes.
CREATE INDEX alert_rule_state_open_idx ON alert_rule_state (site_id, rule, subject)
    WHERE alert_id IS NOT NULL;
