// Device health and the researchers' export form.

import { api, getKey, query } from "./api.js";
import { t } from "./i18n.js";
import { state, zoneOf } from "./state.js";
import { bytesText, fmtNum, fromZoned, h, timeEl } from "./util.js";

function table(heads, rows) {
  return h(
    "table",
    { class: "table" },
    h("thead", {}, h("tr", {}, heads.map((k) => h("th", { i18n: k })))),
    h("tbody", {}, rows),
  );
}

function silent(s) {
  if (s == null) return "";
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400 * 2) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export async function renderHealth(view) {
  const zone = state.config.timezone;
  const data = await api("/console/device-health");
  const none = () => h("p", { class: "muted", i18n: "health.none" });
  const devRows = data.devices.map((d) =>
    h(
      "tr",
      { dataset: { device: d.id }, class: d.offline ? "offline" : "" },
      h("td", {}, d.id, d.kind === "gateway" ? " (gw)" : ""),
      h("td", {}, d.site_id ? h("a", { href: `#/site/${encodeURIComponent(d.site_id)}` }, d.site_id) : "—"),
      h("td", {}, d.last_seen ? [timeEl(d.last_seen, d.site_id ? zoneOf(d.site_id) : zone), h("span", { class: "muted" }, ` ${silent(d.silent_s)}`)] : h("span", { i18n: "health.never" }),
        d.offline ? h("span", { class: "badge bad", i18n: "health.offline" }) : null),
      h("td", { class: d.battery_v != null && d.battery_v < 11.8 ? "warn" : "" }, d.battery_v == null ? "—" : `${fmtNum(d.battery_v, 2)} V`),
      h("td", {}, d.rssi_dbm == null ? "—" : `${fmtNum(d.rssi_dbm, 0)} dBm`),
      h("td", { class: d.status_state && d.status_state !== "online" ? "warn" : "" },
        d.status_state ?? "—", d.firmware ? h("span", { class: "muted" }, ` ${d.firmware}`) : null),
      h("td", { class: d.qc_last_day.fail ? "bad" : d.qc_last_day.suspect ? "warn" : "" },
        `${d.qc_last_day.suspect} / ${d.qc_last_day.fail} / ${d.qc_last_day.readings}`),
    ),
  );
  view.replaceChildren(
    h(
      "div",
      { class: "health-page" },
      h("section", { class: "panel" }, h("h2", { i18n: "health.devices" }),
        h("div", { class: "scroll" }, table(["col.device", "col.site", "col.lastseen", "col.battery", "col.signal", "col.status", "col.qc"], devRows)),
        h("p", { class: "muted small" }, `QC: ${t("site.suspect")} / ${t("site.fail")} / n`)),
      h("div", { class: "grid2" },
        h("section", { class: "panel", id: "no-site" }, h("h3", { i18n: "health.nosite" }),
          data.devices_without_site.length ? h("ul", {}, data.devices_without_site.map((d) => h("li", {}, d))) : none()),
        h("section", { class: "panel", id: "no-rule" }, h("h3", { i18n: "health.norule" }),
          data.sites_without_flood_rule.length
            ? table(["col.site", "col.kind", "col.reason"], data.sites_without_flood_rule.map((s) =>
              h("tr", { dataset: { site: s.site_id } }, h("td", {}, h("a", { href: `#/site/${encodeURIComponent(s.site_id)}` }, s.site_id)), h("td", { i18n: `kind.${s.kind}` }), h("td", {}, s.reason))))
            : none())),
      h("section", { class: "panel", id: "dead" }, h("h3", { i18n: "health.dead" }),
        data.dead_letters_last_day.length
          ? table(["col.reason", "col.count", "col.last", "col.note"], data.dead_letters_last_day.map((d) =>
            h("tr", { dataset: { code: d.error_code } }, h("td", {}, d.error_code), h("td", {}, String(d.count)), h("td", {}, timeEl(d.last_at, zone)), h("td", { class: "small" }, d.last_error))))
          : none()),
    ),
  );
  return () => {};
}

const CHANNELS = ["stage_m", "level_m", "rain_mm", "turbidity_ntu", "ssc_kg_m3", "flow_m3_s", "battery_v", "rssi_dbm", "temperature_c"];
const QUALITY = { all: {}, q2: { max_quality: 2 }, q3: { max_quality: 3 }, q1: { quality: 1 } };

function filenameOf(resp, fallback) {
  const cd = resp.headers.get("Content-Disposition") || "";
  const m = /filename="?([^";]+)"?/.exec(cd);
  return m ? m[1] : fallback;
}

export function renderExport(view) {
  const zone = state.config.timezone;
  const site = h("select", { name: "site" },
    h("option", { value: "", i18n: "export.all" }),
    state.sites.map((s) => h("option", { value: s.id }, `${s.id} · ${s.name}`)));
  const chans = CHANNELS.map((c) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "channel", value: c, checked: c === "stage_m" }), c));
  const start = h("input", { type: "datetime-local", name: "start" });
  const end = h("input", { type: "datetime-local", name: "end" });
  const quality = h("select", { name: "quality" },
    h("option", { value: "all", i18n: "export.q_all" }),
    h("option", { value: "q2", i18n: "export.q_2" }),
    h("option", { value: "q3", i18n: "export.q_3" }),
    h("option", { value: "q1", i18n: "export.q_1" }));
  const format = h("select", { name: "format" }, ["csv", "parquet", "nc"].map((f) => h("option", { value: f }, f === "nc" ? "NetCDF (CF)" : f.toUpperCase())));
  const status = h("p", { class: "status", role: "status" });
  const link = h("a", { class: "download", hidden: true });
  const button = h("button", { type: "submit", class: "primary", i18n: "export.submit" });

  async function submit(e) {
    e.preventDefault();
    const params = {
      site_id: site.value || null,
      channel: chans.map((l) => l.firstChild).filter((i) => i.checked).map((i) => i.value),
      start: start.value ? fromZoned(start.value, zone).toISOString() : null,
      end: end.value ? fromZoned(end.value, zone).toISOString() : null,
      ...QUALITY[quality.value],
    };
    const url = `/exports/readings.${format.value}${query(params)}`;
    button.disabled = true;
    link.hidden = true;
    status.textContent = t("export.progress", { n: "0 B" });
    try {
      const resp = await fetch(url, { headers: { Authorization: `Bearer ${getKey()}` } });
      if (!resp.ok) {
        let msg = `${resp.status}`;
        try { msg = (await resp.json()).message || msg; } catch (_) { /* not JSON */ }
        throw new Error(msg);
      }
      const reader = resp.body.getReader();
      const chunks = [];
      let n = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        n += value.length;
        status.textContent = t("export.progress", { n: bytesText(n) });
      }
      const blob = new Blob(chunks, { type: resp.headers.get("Content-Type") || "application/octet-stream" });
      if (link.href) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(blob);
      link.download = filenameOf(resp, `readings.${format.value}`);
      link.textContent = link.download;
      link.hidden = false;
      status.textContent = t("export.done", { n: bytesText(n) });
      link.click();
    } catch (err) {
      status.textContent = t("error.generic", { m: err.message });
    } finally {
      button.disabled = false;
    }
  }

  view.replaceChildren(
    h("section", { class: "panel export-page" },
      h("h2", { i18n: "export.title" }),
      h("form", { class: "export-form", onsubmit: submit },
        h("label", {}, h("span", { i18n: "export.site" }), site),
        h("fieldset", {}, h("legend", { i18n: "export.channels" }), chans),
        h("label", {}, h("span", { i18n: "export.start" }), start),
        h("label", {}, h("span", { i18n: "export.end" }), end),
        h("label", {}, h("span", { i18n: "export.quality" }), quality),
        h("label", {}, h("span", { i18n: "export.format" }), format),
        h("p", { class: "muted small" }, t("export.hint", { z: zone })),
        button),
      status, link));
  return () => {};
}
