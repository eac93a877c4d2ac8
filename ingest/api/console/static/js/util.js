// DOM building, times in a site's zone, colours of the alert levels.

import { t } from "./i18n.js";

/** h("div", {class: "x", i18n: "key", onclick}, children...) */
export function h(tag, attrs = {}, ...children) {
  const svg = SVG_TAGS.has(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "i18n") {
      el.dataset.i18n = v;
      el.textContent = t(v);
    } else if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "dataset") {
      Object.assign(el.dataset, v);
    } else if (k === "text") {
      el.textContent = v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_TAGS = new Set([
  "svg", "g", "line", "path", "rect", "circle", "polygon", "polyline", "text", "title",
  "image", "defs", "marker", "clipPath", "tspan",
]);

export const LEVEL_COLOURS = ["#7b8794", "#1f6fd1", "#e0b100", "#ef7a00", "#d7191c"];
export const COLOUR_NAMES = ["none", "blue", "yellow", "orange", "red"];

const formatters = new Map();
function formatter(zone) {
  if (!formatters.has(zone)) {
    formatters.set(
      zone,
      new Intl.DateTimeFormat("en-CA", {
        timeZone: zone,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        hourCycle: "h23",
      }),
    );
  }
  return formatters.get(zone);
}

function parts(date, zone) {
  const out = {};
  for (const p of formatter(zone).formatToParts(date)) out[p.type] = p.value;
  return out;
}

/** "2026-07-21 14:20" in the zone. */
export function zoned(iso, zone) {
  if (!iso) return "";
  const p = parts(new Date(iso), zone);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
}

/** Short "07-21 14:20" or "14:20" for chart axes. */
export function zonedShort(date, zone, withDate) {
  const p = parts(date, zone);
  return withDate ? `${p.month}-${p.day} ${p.hour}:${p.minute}` : `${p.hour}:${p.minute}`;
}

export function utcText(iso) {
  return new Date(iso).toISOString().replace(".000Z", "Z").replace("T", " ") + " UTC";
}

/** <time> in the site's zone with UTC on hover. */
export function timeEl(iso, zone) {
  if (!iso) return h("span", { class: "muted", text: "—" });
  return h("time", { datetime: new Date(iso).toISOString(), title: utcText(iso), text: zoned(iso, zone) });
}

/** Offset of the zone from UTC at that instant [ms]. */
export function zoneOffsetMs(date, zone) {
  const p = parts(date, zone);
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute);
  return asUtc - Math.floor(date.getTime() / 60000) * 60000;
}

/** "2026-07-21T14:20" (wall time in zone) to a Date. */
export function fromZoned(text, zone) {
  const [d, tm = "00:00"] = text.split("T");
  const [y, mo, da] = d.split("-").map(Number);
  const [hh, mi] = tm.split(":").map(Number);
  const guess = Date.UTC(y, mo - 1, da, hh, mi);
  const first = guess - zoneOffsetMs(new Date(guess), zone);
  return new Date(guess - zoneOffsetMs(new Date(first), zone));
}

/** Date to "2026-07-21T14:20" wall time in zone (for datetime-local inputs). */
export function toZonedInput(date, zone) {
  const p = parts(date, zone);
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
}

export function levelChip(level) {
  return h(
    "span",
    { class: `chip level-${level}`, dataset: { level: String(level) }, i18n: `level.${level}` },
  );
}

export function fmtNum(v, digits = 2) {
  if (v == null || !Number.isFinite(v)) return "—";
  return Number(v).toFixed(digits);
}

// UCUM codes (how the API gives units) as people write them
const UNIT_LABELS = { "[NTU]": "NTU", "dB[mW]": "dBm", Cel: "°C", m3: "m³", "m3/s": "m³/s", "kg/m3": "kg/m³" };

/** A stream's UCUM unit code as a label ("" for none). */
export function unitLabel(code) {
  return code ? UNIT_LABELS[code] || code : "";
}

export function bytesText(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}
