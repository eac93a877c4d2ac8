// The console: sign-in, the page frame, the hash router, the overview and the live stream.

import { alertStream, api, getKey, setKey, whenUnauthorized } from "./api.js";
import { alertList, renderAlertDetail } from "./alerts.js";
import { applyLabels, durationText, lang, setLang, t } from "./i18n.js";
import { drawMap, legend, recolour } from "./map.js";
import { applyEvent, crestIn, levelOf, loadAlerts, loadSites, onChange, state, zoneOf } from "./state.js";
import { h, levelChip, timeEl } from "./util.js";

const view = document.getElementById("view");
const signin = document.getElementById("signin");
const frame = document.getElementById("frame");
let stream = null;
let cleanup = () => {};

// ------------------------------------------------------------------ overview
function siteRows() {
  const rows = state.sites.map((s) => ({ s, level: levelOf(s.id), crest: crestIn(s.id) }));
  rows.sort((a, b) => b.level - a.level || (a.crest ?? Infinity) - (b.crest ?? Infinity) || a.s.id.localeCompare(b.s.id));
  return rows.map(({ s, level, crest }) =>
    h(
      "tr",
      { dataset: { site: s.id, level: String(level) }, class: `level-row-${level}` },
      h("td", {}, levelChip(level)),
      h("td", {}, h("a", { href: `#/site/${encodeURIComponent(s.id)}` }, s.name), h("div", { class: "muted small" }, s.id)),
      h("td", { i18n: `kind.${s.kind}` }),
      h("td", { class: "forecast" }, crest == null ? "" : durationText(crest)),
      h("td", {}, timeEl(s.last_seen, zoneOf(s.id))),
    ),
  );
}

function renderOverview() {
  const mapBox = h("div", { class: "map-box", id: "map" });
  const tbody = h("tbody", {});
  const alerts = alertList();
  const counts = h("p", { class: "muted small counts" });
  const unplaced = state.sites.filter((s) => !Number.isFinite(s.latitude) || !Number.isFinite(s.longitude)).length;
  view.replaceChildren(
    h(
      "div",
      { class: "overview" },
      h(
        "section",
        { class: "panel map-panel" },
        h("h2", { i18n: "overview.map" }),
        mapBox,
        h("details", { class: "legend-box", open: true }, h("summary", { i18n: "overview.legend" }), legend()),
        unplaced ? h("p", { class: "muted small" }, t("overview.nocoords", { n: unplaced })) : null,
      ),
      h(
        "div",
        { class: "side" },
        h("section", { class: "panel alerts-panel" }, h("h2", { i18n: "overview.alerts" }), alerts.el),
        h(
        "section",
        { class: "panel sites-panel" },
        h("h2", { i18n: "overview.sites" }),
        counts,
        h(
          "div",
          { class: "scroll" },
          h(
            "table",
            { class: "table sites", id: "site-list" },
            h("thead", {}, h("tr", {}, ["col.level", "col.site", "col.kind", "col.forecast", "col.lastseen"].map((k) => h("th", { i18n: k })))),
            tbody,
          ),
        ),
      ),
      ),
    ),
  );
  drawMap(mapBox, state.sites, levelOf, { tileUrl: state.config.tile_url, onOpen: (id) => (location.hash = `#/site/${encodeURIComponent(id)}`) });
  const refresh = () => {
    recolour(mapBox, levelOf);
    tbody.replaceChildren(...siteRows());
    alerts.update();
    counts.textContent = t("overview.counts", { n: state.sites.length, a: state.alerts.size });
  };
  refresh();
  if (!performance.getEntriesByName("swc-overview").length) performance.mark("swc-overview");
  return onChange((what) => (what === "sites" ? renderOverview() : refresh()));
}

function renderAlerts() {
  const list = alertList();
  const past = h("tbody", {});
  const drawPast = async () => {
    const rows = (await api("/alerts?state=resolved&limit=50")).items;
    past.replaceChildren(
      ...rows.map((a) => {
        const site = state.siteById.get(a.site_id);
        const zone = zoneOf(a.site_id);
        return h(
          "tr",
          { dataset: { alert: String(a.id) } },
          h("td", {}, levelChip(a.peak_level)),
          h("td", {}, h("a", { href: `#/site/${encodeURIComponent(a.site_id)}` }, site ? site.name : a.site_id)),
          h("td", { i18n: `rule.${a.rule}` }),
          h("td", {}, timeEl(a.opened_at, zone)),
          h("td", {}, timeEl(a.resolved_at, zone)),
          h("td", {}, h("a", { href: `#/alert/${a.id}`, i18n: "alert.history" })),
        );
      }),
    );
  };
  view.replaceChildren(
    h("section", { class: "panel" }, h("h2", { i18n: "overview.alerts" }), list.el),
    h(
      "section",
      { class: "panel" },
      h("h2", { i18n: "alert.past" }),
      h("div", { class: "scroll" }, h("table", { class: "table", id: "past-alerts" },
        h("thead", {}, h("tr", {}, ["alert.peak_level", "col.site", "col.rule", "col.since", "alert.resolved_at", "alert.history"].map((k) => h("th", { i18n: k })))),
        past)),
    ),
  );
  drawPast().catch(() => {});
  return onChange((what) => {
    list.update();
    if (what && what.event && what.event.state === "resolved") drawPast().catch(() => {});
  });
}

// ------------------------------------------------------------------ router
let routeSeq = 0;
let doneSeq = 0;

/** Draw the page the address names; returns its cleanup (listeners to remove). */
async function draw(parts, params) {
  if (!parts.length) return renderOverview();
  if (parts[0] === "alerts") return renderAlerts();
  if (parts[0] === "alert") {
    const id = Number(parts[1]);
    await renderAlertDetail(view, id);
    return onChange((what) => what && what.event && what.event.alert_id === id && renderAlertDetail(view, id));
  }
  // pages other than the overview load their modules when first opened
  if (parts[0] === "site") return (await import("./site.js")).renderSite(view, parts[1], params);
  if (parts[0] === "health") return (await import("./pages.js")).renderHealth(view);
  if (parts[0] === "export") return (await import("./pages.js")).renderExport(view);
  location.hash = "#/";
  return () => {};
}

async function route() {
  cleanup();
  cleanup = () => {};
  const seq = ++routeSeq;
  const [path, qs] = (location.hash.slice(1) || "/").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("on", a.getAttribute("href") === `#/${parts[0] || ""}`);
  }
  view.dataset.view = parts[0] || "overview";
  delete view.dataset.ready;
  let mine = () => {};
  try {
    mine = (await draw(parts, new URLSearchParams(qs || ""))) || (() => {});
  } catch (err) {
    view.replaceChildren(h("p", { class: "error" }, t("error.generic", { m: err.message })));
  }
  if (seq !== routeSeq) {
    // another page was opened while this one loaded: drop it, and redraw the newer
    // page if it finished first (this one drew over it)
    mine();
    if (doneSeq === routeSeq) route();
    return;
  }
  cleanup = mine;
  doneSeq = seq;
  view.dataset.ready = "true";
}

// ------------------------------------------------------------------ frame
function setLive(s) {
  const el = document.getElementById("live");
  el.dataset.state = s;
  el.dataset.i18n = `live.${s}`;
  el.textContent = t(`live.${s}`);
}

function showRole() {
  const el = document.getElementById("role");
  el.dataset.i18n = `role.${state.config.role}`;
  el.dataset.role = state.config.role;
  el.textContent = t(`role.${state.config.role}`);
  el.title = `${state.config.key_name || ""} ${state.config.key_prefix}…`;
}

/** The requests index.html started while the modules loaded, if made with this key. */
function early() {
  const e = window.swcEarly;
  window.swcEarly = null;
  if (!e || e.key !== getKey()) return null;
  const json = (p) => p.then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))));
  return { config: json(e.config), sites: json(e.sites), alerts: json(e.alerts) };
}

async function start() {
  const pre = early();
  state.config = pre ? await pre.config.catch(() => api("/console/config")) : await api("/console/config");
  signin.hidden = true;
  frame.hidden = false;
  showRole();
  await Promise.all([
    loadSites(pre && pre.sites.catch(() => null)),
    loadAlerts(pre && pre.alerts.catch(() => null)),
  ]);
  stream = alertStream({
    onEvent: applyEvent,
    onState: setLive,
    onResync: () => loadAlerts().catch(() => {}),
  });
  window.addEventListener("hashchange", route);
  await route();
}

function signOut() {
  setKey(null);
  if (stream) stream.stop();
  stream = null;
  window.removeEventListener("hashchange", route);
  cleanup();
  view.replaceChildren();
  frame.hidden = true;
  signin.hidden = false;
  document.getElementById("key").value = "";
}

async function trySignIn(e) {
  e.preventDefault();
  const key = document.getElementById("key").value.trim();
  const msg = document.getElementById("signin-error");
  msg.textContent = "";
  try {
    await api("/console/config", { key });
  } catch (err) {
    msg.textContent = err.status === 401 ? t("signin.bad") : `${t("signin.error")}: ${err.message}`;
    return;
  }
  setKey(key);
  await start().catch((err) => (msg.textContent = `${t("signin.error")}: ${err.message}`));
}

function switchLang() {
  setLang(lang() === "en" ? "zh-CN" : "en");
  applyLabels(document);
  if (!frame.hidden) route();
}

function boot() {
  lang();
  applyLabels(document);
  document.getElementById("signin-form").addEventListener("submit", trySignIn);
  document.getElementById("signout").addEventListener("click", signOut);
  for (const b of document.querySelectorAll(".lang")) b.addEventListener("click", switchLang);
  whenUnauthorized(signOut);
  if (getKey()) {
    start().catch(() => signOut());
  } else {
    signin.hidden = false;
  }
}

boot();
