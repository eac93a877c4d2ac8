// The live alert list (with acknowledge / resolve for engineers) and one alert's episode.

import { api } from "./api.js";
import { durationText, t } from "./i18n.js";
import { act, state, zoneOf } from "./state.js";
import { fmtNum, h, levelChip, timeEl } from "./util.js";

function forecastText(f) {
  if (f && !Number.isFinite(f.time_to_crest_s) && Number.isFinite(f.time_to_crest_ongoing_s)) {
    return t("alert.crest_in_ongoing", { t: durationText(f.time_to_crest_ongoing_s) });
  }
  if (!f || !Number.isFinite(f.time_to_crest_s)) return null;
  let text = t("alert.crest_in", { t: durationText(f.time_to_crest_s) });
  if (Number.isFinite(f.time_to_crest_low_s) && Number.isFinite(f.time_to_crest_high_s)) {
    text += " " + t("alert.crest_range", { lo: durationText(f.time_to_crest_low_s), hi: durationText(f.time_to_crest_high_s) });
  }
  return text;
}

function noteForm(alert, action, done) {
  const input = h("input", {
    type: "text",
    class: "note",
    maxlength: 2000,
    "data-i18n-placeholder": "alert.note",
    placeholder: t("alert.note"),
    "aria-label": t("alert.note"),
  });
  const msg = h("span", { class: "form-error", role: "alert" });
  const submit = async (e) => {
    e.preventDefault();
    const note = input.value.trim();
    if (action === "resolve" && !note) {
      msg.textContent = t("alert.note_required");
      return;
    }
    try {
      await act(alert.id, action, note);
      done();
    } catch (err) {
      msg.textContent = err.status === 403 ? t("error.forbidden") : t("error.generic", { m: err.message });
    }
  };
  const form = h(
    "form",
    { class: "note-form", onsubmit: submit, dataset: { form: action } },
    input,
    h("button", { type: "submit", class: "primary", i18n: "alert.confirm", dataset: { action: `${action}-confirm` } }),
    h("button", { type: "button", i18n: "alert.cancel", onclick: done }),
    msg,
  );
  setTimeout(() => input.focus(), 0);
  return form;
}

function actions(alert, slot) {
  if (!state.config.can_act) return null; // viewers see no controls
  const box = h("div", { class: "actions" });
  const reset = () => slot.replaceChildren();
  if (alert.state === "open") {
    box.append(
      h("button", {
        class: "primary",
        i18n: "alert.ack",
        dataset: { action: "acknowledge" },
        onclick: () => slot.replaceChildren(noteForm(alert, "acknowledge", reset)),
      }),
    );
  }
  box.append(
    h("button", {
      i18n: "alert.resolve",
      dataset: { action: "resolve" },
      onclick: () => slot.replaceChildren(noteForm(alert, "resolve", reset)),
    }),
  );
  return box;
}

function alertItem(a) {
  const site = state.siteById.get(a.site_id);
  const zone = zoneOf(a.site_id);
  const slot = h("div", { class: "form-slot" });
  const fc = forecastText(a.forecast);
  return h(
    "li",
    { class: `alert level-${a.level}`, dataset: { alert: String(a.id), level: String(a.level), state: a.state, site: a.site_id } },
    h(
      "div",
      { class: "alert-head" },
      levelChip(a.level),
      h("a", { href: `#/site/${encodeURIComponent(a.site_id)}`, class: "site-link" }, site ? site.name : a.site_id),
      h("span", { class: "rule", i18n: `rule.${a.rule}` }),
      a.subject ? h("span", { class: "muted" }, a.subject) : null,
    ),
    h(
      "div",
      { class: "alert-meta" },
      h("span", { class: `state state-${a.state}`, i18n: `state.${a.state}`, dataset: { role: "state" } }),
      h("span", { i18n: "col.since" }),
      timeEl(a.opened_at, zone),
      a.value != null ? h("span", { class: "value" }, fmtNum(a.value, 2)) : null,
      fc ? h("span", { class: "forecast", dataset: { crestS: String(a.forecast.time_to_crest_s) } }, fc) : null,
      h("a", { href: `#/alert/${a.id}`, i18n: "alert.history" }),
    ),
    actions(a, slot),
    slot,
  );
}

export function sortedAlerts(keep = () => true) {
  return [...state.alerts.values()].filter(keep).sort(
    (x, y) => y.level - x.level || (x.forecast?.time_to_crest_s ?? Infinity) - (y.forecast?.time_to_crest_s ?? Infinity) || String(y.opened_at).localeCompare(String(x.opened_at)),
  );
}

/** The list element; call update() when alerts change (keeps open note forms). */
export function alertList(keep) {
  const ul = h("ul", { class: "alerts", "aria-live": "polite", id: keep ? null : "alert-list" });
  const empty = h("p", { class: "muted empty", i18n: "alert.none" });
  const box = h("div", { class: "alert-box" }, ul, empty);
  function update() {
    const open = new Map();
    for (const li of ul.children) {
      if (li.querySelector("form")) open.set(li.dataset.alert, li);
    }
    const items = sortedAlerts(keep).map((a) => {
      const keep = open.get(String(a.id));
      if (keep && keep.dataset.state === a.state && keep.dataset.level === String(a.level)) return keep;
      return alertItem(a);
    });
    ul.replaceChildren(...items);
    empty.hidden = items.length > 0;
  }
  update();
  return { el: box, update };
}

export async function renderAlertDetail(view, id) {
  let a;
  try {
    a = await api(`/alerts/${id}`);
  } catch (err) {
    view.replaceChildren(h("p", { class: "error", i18n: err.status === 404 ? "alert.notfound" : "error.generic" }));
    return () => {};
  }
  const zone = zoneOf(a.site_id);
  const slot = h("div", { class: "form-slot" });
  const rows = a.events.map((e) =>
    h(
      "tr",
      { dataset: { event: e.kind } },
      h("td", {}, timeEl(e.data_time || e.created_at, zone)),
      h("td", { i18n: `event.${e.kind}` }),
      h("td", {}, levelChip(e.level)),
      h("td", {}, e.value == null ? "" : fmtNum(e.value, 3)),
      h("td", {}, e.key_id == null ? "" : `#${e.key_id}`),
      h("td", {}, e.note || ""),
    ),
  );
  const site = state.siteById.get(a.site_id);
  view.replaceChildren(
    h(
      "section",
      { class: "panel episode" },
      h("h2", { i18n: "alert.episode" }),
      h(
        "p",
        { class: "alert-head" },
        levelChip(a.level),
        h("a", { href: `#/site/${encodeURIComponent(a.site_id)}` }, site ? site.name : a.site_id),
        h("span", { i18n: `rule.${a.rule}` }),
        h("span", { class: `state state-${a.state}`, i18n: `state.${a.state}` }),
        a.late ? h("span", { class: "muted", i18n: "alert.late" }) : null,
      ),
      forecastText(a.forecast)
        ? h("p", { class: "forecast" }, forecastText(a.forecast),
          Number.isFinite(a.forecast.peak_stage_m) ? ` · ${t("alert.peak", { v: fmtNum(a.forecast.peak_stage_m, 2), t: "" })}` : "",
          a.forecast.crest_at ? timeEl(a.forecast.crest_at, zone) : null)
        : null,
      a.state !== "resolved" ? actions(a, slot) : null,
      slot,
      h(
        "table",
        { class: "table" },
        h("thead", {}, h("tr", {}, ["col.time", "col.event", "col.level", "col.value", "col.by", "col.note"].map((k) => h("th", { i18n: k })))),
        h("tbody", {}, rows),
      ),
    ),
  );
  return () => {};
}
