// What the console knows: its config, the sites, the active alerts. Alert events from
// the stream are applied at once; a reload from the API follows to pick up what events
// do not carry (the forecast). Views subscribe with onChange.

import { api, listAll } from "./api.js";

export const state = {
  config: null, // {timezone, tile_url, role, can_act, key_prefix, key_name}
  sites: [],
  siteById: new Map(),
  alerts: new Map(), // id -> alert (active, announced)
  lastEvent: null,
};

const listeners = new Set();
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
function changed(what) {
  for (const fn of [...listeners]) fn(what);
}

export function zoneOf(siteId) {
  const s = state.siteById.get(siteId);
  const z = s && s.params && s.params.timezone;
  return typeof z === "string" && z ? z : state.config.timezone;
}

export async function loadSites(given) {
  state.sites = await listAll("/sites?limit=1000", given && (await given));
  state.siteById = new Map(state.sites.map((s) => [s.id, s]));
  changed("sites");
}

export async function loadAlerts(given) {
  const rows = await listAll("/alerts?active=true&late=false&limit=1000", given && (await given));
  state.alerts = new Map(rows.map((a) => [a.id, a]));
  changed("alerts");
}

export function levelOf(siteId) {
  let level = 0;
  for (const a of state.alerts.values()) if (a.site_id === siteId) level = Math.max(level, a.level);
  return level;
}

/** Seconds to the crest: the soonest forecast among the site's active alerts (with no
 * more rain, else if the rain goes on), or null. */
export function crestIn(siteId) {
  let best = null;
  for (const a of state.alerts.values()) {
    const f = a.site_id === siteId && a.forecast;
    const s = f && (Number.isFinite(f.time_to_crest_s) ? f.time_to_crest_s : f.time_to_crest_ongoing_s);
    if (Number.isFinite(s) && (best == null || s < best)) best = s;
  }
  return best;
}

let reload = null;
function reloadSoon() {
  clearTimeout(reload);
  reload = setTimeout(() => loadAlerts().catch(() => {}), 300);
}

/** An event from /alerts/stream: patch the alert now, reload the list shortly after. */
export function applyEvent(ev) {
  state.lastEvent = ev;
  const known = state.alerts.get(ev.alert_id);
  if (ev.state === "resolved") {
    state.alerts.delete(ev.alert_id);
  } else {
    state.alerts.set(ev.alert_id, {
      ...(known || {}),
      id: ev.alert_id,
      site_id: ev.site_id,
      rule: ev.rule,
      subject: ev.subject,
      state: ev.state,
      level: ev.level,
      peak_level: Math.max(ev.peak_level || 0, ev.level),
      opened_at: ev.opened_at,
      value: ev.value ?? (known && known.value),
      late: false,
      forecast: ev.forecast !== undefined ? ev.forecast : known && known.forecast,
    });
  }
  changed({ event: ev });
  reloadSoon();
}

export async function act(alertId, action, note) {
  const body = action === "acknowledge" ? { note: note || null } : { note };
  const detail = await api(`/alerts/${alertId}/${action}`, { method: "POST", body });
  if (detail.state === "resolved") state.alerts.delete(alertId);
  else state.alerts.set(alertId, { ...state.alerts.get(alertId), ...detail });
  changed("alerts");
  return detail;
}
