// The county map: sites projected (Web Mercator) into an SVG, no tile server needed.
// Markers are shaped by kind and filled by alert level; dam systems are drawn as
// arrows from each dam to its downstream_dam. Optional tiles from a URL template.

import { h, LEVEL_COLOURS } from "./util.js";
import { t } from "./i18n.js";

const W = 800;
const H = 560;
const PAD = 36;
const TILE = 256;

function mercator(lon, lat) {
  const x = (lon + 180) / 360;
  const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  const y = 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
  return [x, y];
}

/** Shape of a marker of this kind, centred on 0,0, radius r. */
export function shape(kind, r, attrs) {
  switch (kind) {
    case "check_dam": // a triangle: the dam's cross-section
      return h("polygon", { points: `0,${-r * 1.2} ${r * 1.1},${r * 0.75} ${-r * 1.1},${r * 0.75}`, ...attrs });
    case "cistern":
      return h("circle", { r, ...attrs });
    case "runoff_plot":
      return h("rect", { x: -r * 0.9, y: -r * 0.9, width: r * 1.8, height: r * 1.8, ...attrs });
    case "rain_gauge":
      return h("polygon", { points: `0,${-r * 1.2} ${r * 1.2},0 0,${r * 1.2} ${-r * 1.2},0`, ...attrs });
    default:
      return h("circle", { r: r * 0.7, ...attrs });
  }
}

/**
 * Draw the map into `container`. sites: [{id, kind, name, latitude, longitude, params}],
 * levelOf(id) -> 0..4, tileUrl optional, onOpen(id) on click.
 */
export function drawMap(container, sites, levelOf, { tileUrl, onOpen } = {}) {
  const placed = sites.filter((s) => Number.isFinite(s.latitude) && Number.isFinite(s.longitude));
  const svg = h("svg", {
    class: "map",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": t("overview.map"),
    preserveAspectRatio: "xMidYMid meet",
  });
  const defs = h(
    "defs",
    {},
    h(
      "marker",
      { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
      h("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }),
    ),
  );
  svg.append(defs, h("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
  container.replaceChildren(svg);
  if (!placed.length) return svg;
  // markers keep a usable size on a phone, where the 800-unit map is ~350 px wide
  const k = Math.min(2.4, Math.max(1, W / (container.clientWidth || W)));

  const pts = placed.map((s) => mercator(s.longitude, s.latitude));
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of pts) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const span = Math.max(x1 - x0, y1 - y0, 1e-6);
  let scale = Math.min((W - 2 * PAD) / Math.max(x1 - x0, span * 0.05), (H - 2 * PAD) / Math.max(y1 - y0, span * 0.05));
  let zoom = null;
  if (tileUrl) {
    zoom = Math.max(0, Math.min(18, Math.floor(Math.log2(scale / TILE))));
    scale = TILE * 2 ** zoom; // whole tiles, so the images line up
  }
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const proj = (lon, lat) => {
    const [x, y] = mercator(lon, lat);
    return [W / 2 + (x - cx) * scale, H / 2 + (y - cy) * scale];
  };

  if (tileUrl) {
    const g = h("g", { class: "tiles" });
    const n = 2 ** zoom;
    const left = cx * n - W / 2 / TILE;
    const top = cy * n - H / 2 / TILE;
    for (let tx = Math.floor(left); tx < left + W / TILE; tx++) {
      for (let ty = Math.floor(top); ty < top + H / TILE; ty++) {
        if (ty < 0 || ty >= n) continue;
        const href = tileUrl.replace("{z}", zoom).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
        g.append(h("image", { href, x: (tx - left) * TILE, y: (ty - top) * TILE, width: TILE, height: TILE }));
      }
    }
    svg.append(g);
  }

  // dam systems: upstream -> downstream
  const byId = new Map(placed.map((s) => [s.id, s]));
  const links = h("g", { class: "dam-links" });
  for (const s of placed) {
    const down = s.params && s.params.downstream_dam;
    if (!down || !byId.has(down)) continue;
    const [ax, ay] = proj(s.longitude, s.latitude);
    const d = byId.get(down);
    const [bx, by] = proj(d.longitude, d.latitude);
    const len = Math.hypot(bx - ax, by - ay) || 1;
    const cut = Math.min(0.45, (12 * k) / len);
    links.append(
      h(
        "line",
        {
          class: "dam-link",
          x1: ax + (bx - ax) * cut, y1: ay + (by - ay) * cut,
          x2: bx - (bx - ax) * cut, y2: by - (by - ay) * cut,
          "marker-end": "url(#arrow)",
          dataset: { from: s.id, to: down },
        },
        h("title", {}, `${s.id} → ${down}`),
      ),
    );
  }
  svg.append(links);

  // sites at (nearly) the same place, such as the plots of one runoff station, are
  // spread on a small circle around it so that each stays visible and clickable
  const where = new Map(placed.map((s) => [s.id, proj(s.longitude, s.latitude)]));
  const groups = new Map();
  for (const s of placed) {
    const [x, y] = where.get(s.id);
    const cell = `${Math.round(x / (6 * k))},${Math.round(y / (6 * k))}`;
    if (!groups.has(cell)) groups.set(cell, []);
    groups.get(cell).push(s.id);
  }
  for (const ids of groups.values()) {
    if (ids.length < 2) continue;
    const [x0, y0] = where.get(ids[0]);
    const ring = 10 * k + ids.length * 2.5 * k;
    ids.forEach((id, i) => {
      const a = (2 * Math.PI * i) / ids.length - Math.PI / 2;
      where.set(id, [x0 + ring * Math.cos(a), y0 + ring * Math.sin(a)]);
    });
  }

  const marks = h("g", { class: "markers" });
  // highest level drawn last, on top
  const ordered = [...placed].sort((a, b) => levelOf(a.id) - levelOf(b.id));
  for (const s of ordered) {
    const [x, y] = where.get(s.id);
    const level = levelOf(s.id);
    const g = h(
      "g",
      {
        class: `marker level-${level}`,
        transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`,
        tabindex: 0,
        role: "link",
        dataset: { site: s.id, kind: s.kind, level: String(level) },
        onclick: () => onOpen && onOpen(s.id),
        onkeydown: (e) => e.key === "Enter" && onOpen && onOpen(s.id),
      },
      level >= 3 ? h("circle", { r: 15 * k, class: "halo" }) : null,
      shape(s.kind, 8 * k, { class: "mark", fill: LEVEL_COLOURS[level] }),
      h("text", { y: 22 * k, class: "map-label", "font-size": 9 * k }, s.id),
      h("title", {}, `${s.name} (${s.id}) · ${t(`kind.${s.kind}`)} · ${t(`level.${level}`)}`),
    );
    marks.append(g);
  }
  svg.append(marks);
  return svg;
}

/** Recolour markers in place (no redraw) when levels change. */
export function recolour(container, levelOf) {
  for (const g of container.querySelectorAll("g.marker")) {
    const level = levelOf(g.dataset.site);
    if (String(level) === g.dataset.level) continue;
    g.dataset.level = String(level);
    g.setAttribute("class", `marker level-${level}`);
    g.querySelector(".mark").setAttribute("fill", LEVEL_COLOURS[level]);
    const halo = g.querySelector(".halo");
    const r = +g.querySelector("text").getAttribute("font-size") / 9 || 1;
    if (level >= 3 && !halo) g.prepend(h("circle", { r: 15 * r, class: "halo" }));
    if (level < 3 && halo) halo.remove();
    g.parentNode.append(g); // on top
  }
}

export function legend() {
  const kinds = ["check_dam", "cistern", "runoff_plot", "rain_gauge"];
  const items = [];
  for (const k of kinds) {
    items.push(
      h("li", {},
        h("svg", { viewBox: "-12 -12 24 24", width: 18, height: 18 }, shape(k, 8, { fill: LEVEL_COLOURS[0] })),
        h("span", { i18n: `kind.${k}` })),
    );
  }
  for (let l = 1; l <= 4; l++) {
    items.push(h("li", {}, h("span", { class: `swatch level-${l}` }), h("span", { i18n: `level.${l}` })));
  }
  items.push(h("li", {}, h("span", { class: "swatch-line" }), h("span", { i18n: "overview.damline" })));
  return h("ul", { class: "legend" }, items);
}
