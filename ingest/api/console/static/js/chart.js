// Time-series charts in SVG: a mean line with its min–max band (from the API's
// buckets), horizontal reference lines (crests, thresholds), QC-flag marks, bars.

import { h, zonedShort, utcText, zoned, zoneOffsetMs } from "./util.js";

const PAD = { l: 52, r: 12, t: 10, b: 24 };

function niceTicks(lo, hi, n = 5) {
  const span = hi - lo || 1;
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || mag * 10;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

function timeTicks(t0, t1, zone, W) {
  const span = t1 - t0;
  const steps = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 43200].map((m) => m * 60000);
  const n = Math.max(2, Math.floor(W / 110));
  const step = steps.find((s) => span / s <= n) || 30 * 86400000;
  const withDate = span > 86400000 || step >= 86400000;
  // align on the zone's wall clock
  const off = zoneOffsetMs(new Date(t0), zone);
  const out = [];
  for (let v = Math.ceil((t0 + off) / step) * step - off; v <= t1; v += step) {
    const label = zonedShort(new Date(v), zone, withDate);
    out.push({ v, label: step >= 86400000 ? label.slice(0, 5) : label });
  }
  return out;
}

/**
 * spec: {height, t0, t1 (ms), zone, series: [{t, mean, min, max}], lines: [{key, value,
 * label, cls}], marks: [{t, v, flag}], bars: [{t, width_ms, v}], unit, yInclude: [..]}
 */
export function drawChart(container, spec) {
  const Hh = spec.height || 220;
  const W = Math.max(320, Math.round(container.clientWidth || 900));
  const { t0, t1, zone } = spec;
  const series = spec.series || [];
  const bars = spec.bars || [];
  const vals = [];
  for (const p of series) vals.push(p.min ?? p.mean, p.max ?? p.mean);
  for (const m of spec.marks || []) vals.push(m.v);
  for (const b of bars) vals.push(0, b.v);
  for (const l of spec.lines || []) vals.push(l.value);
  for (const v of spec.yInclude || []) vals.push(v);
  const finite = vals.filter((v) => Number.isFinite(v));
  let lo = finite.length ? Math.min(...finite) : 0;
  let hi = finite.length ? Math.max(...finite) : 1;
  if (bars.length) lo = 0;
  const padY = (hi - lo || Math.abs(hi) || 1) * 0.06;
  hi += padY;
  if (!bars.length) lo -= padY;
  const x = (tm) => PAD.l + ((tm - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => PAD.t + ((hi - v) / (hi - lo)) * (Hh - PAD.t - PAD.b);

  const svg = h("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${Hh}`,
    dataset: { yMin: String(lo), yMax: String(hi), plotTop: String(PAD.t), plotBottom: String(Hh - PAD.b), height: String(Hh) },
  });
  const axis = h("g", { class: "axis" });
  for (const v of niceTicks(lo, hi)) {
    axis.append(
      h("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }),
      h("text", { x: PAD.l - 4, y: y(v) + 4, class: "ylabel" }, String(v)),
    );
  }
  for (const tk of timeTicks(t0, t1, zone, W)) {
    axis.append(
      h("line", { x1: x(tk.v), x2: x(tk.v), y1: PAD.t, y2: Hh - PAD.b, class: "grid" }),
      h("text", { x: x(tk.v), y: Hh - 6, class: "xlabel" }, tk.label),
    );
  }
  svg.append(axis);

  if (bars.length) {
    const g = h("g", { class: "bars" });
    for (const b of bars) {
      const bx = x(b.t);
      const bw = Math.max(1, x(b.t + b.width_ms) - bx - 1);
      g.append(
        h("rect", { x: bx, y: y(b.v), width: bw, height: Math.max(0, y(0) - y(b.v)) },
          h("title", {}, `${zoned(new Date(b.t).toISOString(), zone)}: ${b.v.toFixed(1)} ${spec.unit || ""}`)),
      );
    }
    svg.append(g);
  }

  if (series.length) {
    // split the line at gaps longer than 3 buckets
    const gap = (spec.bucketMs || 0) * 3;
    let band = "";
    let line = "";
    let prev = null;
    const lowerBack = [];
    const flush = () => {
      if (lowerBack.length) band += lowerBack.reverse().join(" ") + " Z ";
      lowerBack.length = 0;
    };
    for (const p of series) {
      const broke = prev && gap && p.t - prev.t > gap;
      if (broke) flush();
      const px = x(p.t).toFixed(1);
      const cmd = !prev || broke ? "M" : "L";
      line += `${cmd}${px},${y(p.mean).toFixed(1)} `;
      if (p.min != null && p.max != null) {
        band += `${!prev || broke ? "M" : "L"}${px},${y(p.max).toFixed(1)} `;
        lowerBack.push(`L${px},${y(p.min).toFixed(1)}`);
      }
      prev = p;
    }
    flush();
    if (band) svg.append(h("path", { d: band, class: "band" }));
    svg.append(h("path", { d: line, class: "series", dataset: { points: String(series.length) } }));
  }

  const refs = h("g", { class: "refs" });
  const placed = []; // labels drawn so far: [y, right edge, left edge]
  const ordered = [...(spec.lines || [])].sort((a, b) => b.value - a.value);
  for (const l of ordered) {
    const yy = y(l.value);
    const text = `${l.label} ${l.value.toFixed(2)}`;
    const width = text.length * 5.6 + 8;
    let right = W - PAD.r - 4;
    while (placed.some(([py, pr, pl]) => Math.abs(py - yy) < 11 && right > pl && right - width < pr)) {
      right -= width;
    }
    placed.push([yy, right, right - width]);
    refs.append(
      h(
        "line",
        {
          x1: PAD.l, x2: W - PAD.r, y1: yy, y2: yy,
          class: `ref ${l.cls || ""}`,
          dataset: { line: l.key, value: String(l.value) },
        },
        h("title", {}, `${l.label}: ${l.value.toFixed(2)} ${spec.unit || ""}`),
      ),
      h("text", { x: Math.max(PAD.l + width, right), y: yy - 3, class: `reflabel ${l.cls || ""}` }, text),
    );
  }
  svg.append(refs);

  if ((spec.marks || []).length) {
    const g = h("g", { class: "qc-marks" });
    for (const m of spec.marks) {
      const mx = x(m.t);
      const my = y(m.v);
      const title = h("title", {}, `${zoned(new Date(m.t).toISOString(), zone)} (${utcText(new Date(m.t).toISOString())}): ${m.v} · QC ${m.flag}`);
      g.append(
        m.flag === 4
          ? h("path", { d: `M${mx - 4},${my - 4} L${mx + 4},${my + 4} M${mx - 4},${my + 4} L${mx + 4},${my - 4}`, class: "qc-fail", dataset: { flag: "4" } }, title)
          : h("polygon", { points: `${mx},${my - 5} ${mx + 4.5},${my + 3.5} ${mx - 4.5},${my + 3.5}`, class: "qc-suspect", dataset: { flag: "3" } }, title),
      );
    }
    svg.append(g);
  }
  container.replaceChildren(svg);
  return svg;
}
