// A site's page: stage (or level) chart with crests and colour thresholds, rain bars
// from the gauge that serves it, turbidity / flow, QC flags, retention and surveys.

import { api, query, readings } from "./api.js";
import { drawChart } from "./chart.js";
import { t } from "./i18n.js";
import { alertList } from "./alerts.js";
import { levelOf, onChange, state, zoneOf } from "./state.js";
import { COLOUR_NAMES, fmtNum, fromZoned, h, levelChip, timeEl, toZonedInput, unitLabel } from "./util.js";

const RANGES = { "6h": 6, "24h": 24, "3d": 72, "7d": 168, "30d": 720, "1y": 8760 };
// bucket widths the chart may use, smallest first; at most ~600 buckets per chart
const BUCKETS = [["1m", 60], ["2m", 120], ["5m", 300], ["10m", 600], ["15m", 900], ["30m", 1800],
  ["1h", 3600], ["2h", 7200], ["3h", 10800], ["6h", 21600], ["12h", 43200], ["1d", 86400], ["2d", 172800], ["1w", 604800]];
const MAX_BUCKETS = 600;
const SIDE_CHANNELS = ["turbidity_ntu", "ssc_kg_m3", "flow_m3_s"];

export function bucketFor(spanS) {
  return BUCKETS.find(([, s]) => spanS / s <= MAX_BUCKETS) || BUCKETS[BUCKETS.length - 1];
}

function num(x) {
  return typeof x === "number" && Number.isFinite(x) ? x : null;
}

/** Reference lines of the main chart from the registry and the effective rules. */
export function referenceLines(site, rules) {
  const p = site.params || {};
  const lines = [];
  const byName = new Map(rules.map((r) => [r.rule, r]));
  const colours = (rule, toHeight) => {
    const r = byName.get(rule);
    if (!r || !r.applies || !r.config.enabled || !r.config.thresholds) return;
    for (let i = 1; i <= 4; i++) {
      const v = num(r.config.thresholds[COLOUR_NAMES[i]]);
      if (v == null) continue;
      lines.push({ key: `threshold-${COLOUR_NAMES[i]}`, value: toHeight(v), label: t("site.threshold", { c: t(`level.${i}`) }), cls: `thr level-${i}` });
    }
  };
  if (site.kind === "check_dam") {
    const spill = num(p.spillway_crest_m);
    const dam = num(p.dam_crest_m);
    if (spill != null) lines.push({ key: "spillway_crest", value: spill, label: t("site.spillway_crest"), cls: "crest spillway" });
    if (dam != null) lines.push({ key: "dam_crest", value: dam, label: t("site.dam_crest"), cls: "crest dam" });
    // stage thresholds are the freeboard left below the dam crest
    if (dam != null) colours("stage", (d) => dam - d);
  } else if (site.kind === "cistern") {
    const over = num(p.overflow_level_m);
    if (over != null) {
      lines.push({ key: "overflow", value: over, label: t("site.overflow"), cls: "crest" });
      colours("cistern_overflow", (d) => over - d);
    }
  }
  return lines;
}

/** "blue 1 · yellow 0.5 · … m" of a rule's effective thresholds. */
function thresholdText(r) {
  const th = r.config.thresholds;
  if (!th) return "";
  const parts = [];
  for (let i = 1; i <= 4; i++) {
    const v = th[COLOUR_NAMES[i]];
    if (v != null) parts.push(`${t(`level.${i}`)} ${v}`);
  }
  return parts.length ? `${parts.join(" · ")} ${r.unit}` : "";
}

function mainChannel(site, channels) {
  if (site.kind === "check_dam" && channels.has("stage_m")) return "stage_m";
  if (site.kind === "cistern" && channels.has("level_m")) return "level_m";
  for (const c of ["stage_m", "level_m", "flow_m3_s", "rain_mm"]) if (channels.has(c)) return c;
  return null;
}

function toSeries(rows) {
  return rows.map((r) => ({ t: Date.parse(r.time), mean: r.mean, min: r.min, max: r.max }));
}

function panel(titleKey, ...children) {
  return h("section", { class: "panel" }, h("h3", { i18n: titleKey }), ...children);
}

function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", { i18n: k }), h("dd", {}, v)]));
}

async function infoPanels(site, zone) {
  const out = [];
  const [surveys, curves, retention] = await Promise.allSettled([
    api(`/surveys${query({ site_id: site.id, limit: 1 })}`),
    site.kind === "check_dam" ? api(`/research/sites/${encodeURIComponent(site.id)}/curves`) : Promise.resolve(null),
    site.kind === "check_dam" ? api(`/research/sites/${encodeURIComponent(site.id)}/retention`) : Promise.resolve(null),
  ]);
  if (site.kind === "check_dam") {
    if (retention.status === "fulfilled" && retention.value) {
      const r = retention.value;
      out.push(panel("site.retention", dl([
        ["site.retained", `${fmtNum(r.sediment_retained_t, 0)} t`],
        ["site.capacity", `${fmtNum(r.silting_capacity_m3, 0)} m³`],
        ["site.remaining", h("span", { dataset: { field: "remaining_storage_m3" } }, `${fmtNum(r.remaining_storage_m3, 0)} m³`)],
        r.silting_life_years != null ? ["site.life", `${fmtNum(r.silting_life_years, 1)} a`] : null,
      ])));
    } else if (retention.status === "rejected") {
      out.push(panel("site.retention", h("p", { class: "muted" }, t("site.unavailable", { m: retention.reason.message }))));
    }
    if (curves.status === "fulfilled" && curves.value && curves.value.length) {
      const list = curves.value;
      const c = list[list.length - 1];
      out.push(panel("site.curve", h("p", { dataset: { field: "curve" } },
        t("site.curve_version", { v: list.length - 1, t: c.valid_from ? "" : "—" }),
        c.valid_from ? timeEl(c.valid_from, zone) : null,
        ` · ${c.source}`,
        c.kind === "power" ? ` · V = ${fmtNum(c.a, 1)} h^${fmtNum(c.b, 3)}` : "")));
    }
  }
  if (surveys.status === "fulfilled") {
    const s = surveys.value.items[0];
    out.push(panel("site.survey", s
      ? h("p", { dataset: { field: "survey" } }, timeEl(s.surveyed_at, zone), ` · ${s.kind} · ${s.surveyor}`, s.notes ? ` · ${s.notes}` : "")
      : h("p", { class: "muted", i18n: "site.nosurvey" })));
  }
  return out;
}

export async function renderSite(view, siteId, params) {
  let site;
  let rules;
  try {
    [site, rules] = await Promise.all([
      api(`/sites/${encodeURIComponent(siteId)}`),
      api(`/sites/${encodeURIComponent(siteId)}/rules`),
    ]);
  } catch (err) {
    view.replaceChildren(h("p", { class: "error", i18n: err.status === 404 ? "site.notfound" : "error.generic" }));
    return () => {};
  }
  const zone = zoneOf(siteId);
  const channels = new Set(site.latest.map((r) => r.channel));
  const main = mainChannel(site, channels);
  const lastData = site.latest.filter((r) => r.channel === main).map((r) => Date.parse(r.time))[0];
  const rangeKey = RANGES[params.get("range")] ? params.get("range") : "24h";
  let t1 = params.get("end") ? Date.parse(params.get("end")) : Date.now();
  let t0 = params.get("start") ? Date.parse(params.get("start")) : t1 - RANGES[rangeKey] * 3600e3;
  if (!params.get("start") && !params.get("end") && lastData && lastData < t1 - RANGES[rangeKey] * 3600e3) {
    t1 = lastData + 60e3; // nothing recent: show the last data there is
    t0 = t1 - RANGES[rangeKey] * 3600e3;
  }
  if (!(t1 > t0)) t0 = t1 - 86400e3;

  const go = (p) => {
    location.hash = `#/site/${encodeURIComponent(siteId)}?${new URLSearchParams(p)}`;
  };
  const fromIn = h("input", { type: "datetime-local", value: toZonedInput(new Date(t0), zone), "aria-label": t("export.start") });
  const toIn = h("input", { type: "datetime-local", value: toZonedInput(new Date(t1), zone), "aria-label": t("export.end") });
  const picker = h(
    "div",
    { class: "range-picker" },
    h("span", { i18n: "site.range" }),
    Object.keys(RANGES).map((k) =>
      h("button", { class: !params.get("start") && k === rangeKey ? "on" : "", dataset: { range: k }, onclick: () => go({ range: k }) }, k),
    ),
    h(
      "form",
      {
        class: "custom-range",
        onsubmit: (e) => {
          e.preventDefault();
          if (!fromIn.value || !toIn.value) return;
          go({ start: fromIn.value && fromZoned(fromIn.value, zone).toISOString(), end: fromZoned(toIn.value, zone).toISOString() });
        },
      },
      h("span", { i18n: "site.custom" }), fromIn, toIn,
      h("button", { type: "submit", i18n: "site.apply" }),
    ),
  );

  const [iv, ivS] = bucketFor((t1 - t0) / 1000);
  const mainBox = h("div", { class: "chart-box", id: "main-chart" });
  const rainBox = h("div", { class: "chart-box rain", id: "rain-chart" });
  const sideBoxes = SIDE_CHANNELS.filter((c) => channels.has(c) && c !== main).map((c) => [c, h("div", { class: "chart-box", dataset: { channel: c } })]);
  const level = levelOf(siteId);
  const devices = h(
    "table",
    { class: "table" },
    h("thead", {}, h("tr", {}, ["col.device", "col.lastseen", "col.battery"].map((k) => h("th", { i18n: k })))),
    h("tbody", {}, site.device_health.map((d) =>
      h("tr", {}, h("td", {}, d.id, d.offline ? h("span", { class: "badge bad", i18n: "health.offline" }) : null), h("td", {}, timeEl(d.last_seen, zone)), h("td", {}, d.battery_v == null ? "—" : `${fmtNum(d.battery_v, 2)} V`)),
    )),
  );
  const latest = h(
    "table",
    { class: "table" },
    h("tbody", {}, site.latest.map((r) =>
      h("tr", { class: r.quality >= 3 ? `q${r.quality}` : "" }, h("td", {}, r.channel), h("td", {}, `${fmtNum(r.value, 3)} ${unitLabel(r.unit)}`), h("td", {}, timeEl(r.time, zone))),
    )),
  );
  const info = h("div", { class: "info" }, h("p", { class: "muted" }, "…"));
  const ruleRows = rules.map((r) =>
    h(
      "tr",
      { dataset: { rule: r.rule, applies: String(r.applies) }, class: r.applies && r.config.enabled ? "" : "muted" },
      h("td", { i18n: `rule.${r.rule}` }),
      h("td", {}, r.applies ? (r.config.enabled ? "✓" : t("site.rule_disabled")) : "✗"),
      h("td", { class: "small" }, r.applies ? thresholdText(r) : r.reason || ""),
    ),
  );
  const alerts = alertList((a) => a.site_id === siteId);
  const kindTitle = h("span", { class: "kind", i18n: `kind.${site.kind}` });
  view.replaceChildren(
    h(
      "div",
      { class: "site-page", dataset: { site: siteId } },
      h("p", {}, h("a", { href: "#/", i18n: "site.back" })),
      h("h2", { class: "site-title" }, levelChip(level), " ", site.name, " ", h("span", { class: "muted" }, site.id), " ", kindTitle),
      h("section", { class: "panel site-alerts" }, h("h3", { i18n: "overview.alerts" }), alerts.el),
      picker,
      h("p", { class: "muted small" }, t("zone.note", { z: zone }), " · ", t("site.bucket", { i: iv })),
      main ? h("h3", { i18n: main === "stage_m" ? "site.stage" : main === "level_m" ? "site.level" : `site.${main}` }) : null,
      mainBox,
      h("h3", { class: "rain-title" }),
      rainBox,
      sideBoxes.map(([c, box]) => [h("h3", { i18n: `site.${c}` }), box]),
      h("div", { class: "grid2" }, panel("site.devices", devices), panel("site.latest", latest)),
      panel("site.rules", h("table", { class: "table rules" }, h("tbody", {}, ruleRows))),
      info,
    ),
  );

  const start = new Date(t0).toISOString();
  const end = new Date(t1).toISOString();
  const bucketMs = ivS * 1000;
  const common = { start, end, interval: iv };
  const jobs = [];
  if (main) {
    jobs.push((async () => {
      const [series, flagged] = await Promise.all([
        // the line leaves out failed readings (flag 4); they are marked on it instead
        readings({ ...common, site_id: siteId, channel: main, agg: ["mean", "min", "max"], max_quality: 3 }),
        readings({ start, end, site_id: siteId, channel: main, quality: [3, 4], limit: 2000 }, 1),
      ]);
      const lines = referenceLines(site, rules);
      const marks = flagged.rows.map((r) => ({ t: Date.parse(r.time), v: r.value, flag: r.quality }));
      drawChart(mainBox, { t0, t1, zone, series: toSeries(series.rows), lines, marks, unit: "m", bucketMs, height: 260 });
      if (!series.rows.length) mainBox.append(h("p", { class: "muted nodata", i18n: "site.nodata" }));
      if (marks.length) {
        mainBox.append(h("p", { class: "small legend-flags" },
          h("span", { class: "qc-suspect-key" }, "▲"), " ", h("span", { i18n: "site.suspect" }), "  ",
          h("span", { class: "qc-fail-key" }, "✕"), " ", h("span", { i18n: "site.fail" })));
      }
    })());
  }
  jobs.push((async () => {
    const ctx = await api(`/console/sites/${encodeURIComponent(siteId)}/context`);
    const title = view.querySelector(".rain-title");
    if (!ctx.rain_site_id) {
      title.textContent = t("site.norain");
      title.classList.add("muted");
      rainBox.remove();
      return;
    }
    const g = state.siteById.get(ctx.rain_site_id);
    title.textContent = t("site.rain", { g: g ? `${g.name} (${g.id})` : ctx.rain_site_id });
    title.dataset.gauge = ctx.rain_site_id;
    const rain = await readings({ ...common, site_id: ctx.rain_site_id, channel: "rain_mm", agg: ["sum"] });
    drawChart(rainBox, { t0, t1, zone, bars: rain.rows.map((r) => ({ t: Date.parse(r.time), width_ms: bucketMs, v: r.sum || 0 })), unit: "mm", height: 110 });
  })());
  for (const [c, box] of sideBoxes) {
    jobs.push((async () => {
      const s = await readings({ ...common, site_id: siteId, channel: c, agg: ["mean", "min", "max"] });
      drawChart(box, { t0, t1, zone, series: toSeries(s.rows), bucketMs, height: 150 });
    })());
  }
  // retention can take seconds over a long record: it fills in after the charts
  const page = view.querySelector(".site-page");
  infoPanels(site, zone)
    .then((panels) => info.replaceChildren(...panels))
    .catch((err) => info.replaceChildren(h("p", { class: "error" }, t("error.generic", { m: err.message }))))
    .finally(() => (page.dataset.infoReady = "true"));
  const results = await Promise.allSettled(jobs);
  for (const r of results) if (r.status === "rejected") console.error(r.reason);
  page.dataset.ready = "true";
  return onChange(() => {
    const chip = page.querySelector(".site-title .chip");
    const level = levelOf(siteId);
    if (chip && chip.dataset.level !== String(level)) chip.replaceWith(levelChip(level));
    alerts.update();
  });
}
