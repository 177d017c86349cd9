// The Latency page's percentile chart, drawn with uPlot (vendored beside this file, MIT).
// Loaded by dashboard/components/percentile_chart.py as an st.components.v2 module, after
// uPlot.iife.min.js (which defines `uPlot`). Everything it shows comes from `data` (JSON built by
// percentile_chart.payload); event text (versions, authors, trace ids) only ever goes into
// textContent or onto the canvas, never into HTML.
//
// The root element (.percentile-chart) gets data-ready="1" once drawn (and data-skeleton="1" when
// it is the empty chart shown while Prometheus answers) (the benchmark and the
// browser tests wait on it) and keeps what it drew in el.__chart: the uPlot instance, the
// function giving the Date whose local fields are the wall-clock time the x axis shows, and the
// pixel positions of the deploy markers and exemplars (tests/browser/uplot.py reads them).

const D = 86400e3, H = 3600e3, MIN = 60e3, SEC = 1e3;
// 24-hour clock; the date under the first tick of a day (uPlot's per-unit format table, in ms).
const X_VALUES = [
  [D * 365, "{YYYY}", null, null, null, null, null, null, 1],
  [D * 28, "{MMM} {YYYY}", null, null, null, null, null, null, 1],
  [D, "{MMM} {DD}", "\n{YYYY}", null, null, null, null, null, 1],
  [H, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MMM} {DD}", null, null, null, 1],
  [MIN, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MMM} {DD}", null, null, null, 1],
  [SEC, "{HH}:{mm}:{ss}", "\n{YYYY}-{MM}-{DD}", null, "\n{MMM} {DD}", null, null, null, 1],
];
const FONT = '12px "Source Sans Pro", "Source Sans 3", sans-serif';
const fmtMs = (v) => (v == null || !isFinite(v) ? "—" : (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toPrecision(2)) + " ms");

function lines(box, rows) {
  box.textContent = "";
  for (const [k, v] of rows) {
    const row = document.createElement("div");
    const b = document.createElement("b");
    b.textContent = k + ": ";
    row.appendChild(b);
    row.appendChild(document.createTextNode(String(v)));
    box.appendChild(row);
  }
}

function build(el, data, setTriggerValue) {
  const utc = data.x.scale === "utc";
  // uPlot draws a time axis in the browser's zone; on the "utc" scale the values are the page
  // zone's wall-clock times written as UTC, shown as UTC whatever the browser's zone.
  const tzDate = utc ? (ts) => uPlot.tzDate(new Date(ts), "UTC") : (ts) => new Date(ts);
  const labels = data.labels;
  const n = labels.length;
  const series = [{label: data.x.title, value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}"}];
  const bands = [];
  labels.forEach((label, i) => {
    const lo = data.lo[i], hi = data.hi[i];
    series.push({
      label, stroke: data.colors[i], width: 1.6, spanGaps: false, points: {show: false},
      value: (u, v, si, idx) => v == null ? "—" :
        `${fmtMs(v)} (${data.band} ${fmtMs(idx == null ? null : lo[idx])} – ${fmtMs(idx == null ? null : hi[idx])})`,
    });
  });
  labels.forEach((label, i) => {
    series.push({label: label + " lo", stroke: "transparent", width: 0, points: {show: false}});
    series.push({label: label + " hi", stroke: "transparent", width: 0, points: {show: false}});
    bands.push({series: [1 + n + 2 * i + 1, 1 + n + 2 * i], fill: data.colors[i] + "1f"});
  });
  // A band is drawn where both its bounds are (a bound a log axis cannot draw, 0 or +Inf, is null):
  // elsewhere it is a gap in both, never a fill towards the axis.
  const both = (a, b) => a.map((v, k) => (v == null || b[k] == null ? null : v));
  const values = [data.t, ...data.v, ...labels.flatMap((_, i) => [both(data.lo[i], data.hi[i]), both(data.hi[i], data.lo[i])])];
  const dep = data.deploys, ex = data.exemplars;
  const drawn = {deploys: [], exemplars: []};
  const width = Math.max(300, Math.floor(el.getBoundingClientRect().width || 700));

  function drawMarks(u) {
    const ctx = u.ctx, dpr = uPlot.pxRatio, top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
    drawn.deploys = [];
    drawn.exemplars = [];
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    dep.t.forEach((t, i) => {
      const xf = u.valToPos(t, "x", true), x = Math.round(xf);  // drawn crisp; kept exact for readers
      ctx.strokeStyle = dep.color[i];
      ctx.lineWidth = 1.5 * dpr;
      ctx.setLineDash((dep.release[i] ? [2, 2] : [6, 4]).map((d) => d * dpr));
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
      ctx.setLineDash([]);
      const s = 7 * dpr, y = top + 2 * dpr;
      ctx.beginPath(); ctx.moveTo(x - s, y); ctx.lineTo(x + s, y); ctx.lineTo(x, y + 1.6 * s); ctx.closePath();
      ctx.fillStyle = dep.fill[i]; ctx.fill();
      ctx.lineWidth = 2 * dpr; ctx.stroke();
      drawn.deploys.push({id: dep.deploy_id[i], t, px: (xf - u.bbox.left) / dpr, py: (y + 0.8 * s - top) / dpr});
    });
    ex.t.forEach((t, i) => {
      const x = u.valToPos(t, "x", true), y = u.valToPos(ex.ms[i], "y", true), s = 5 * dpr;
      ctx.beginPath(); ctx.moveTo(x, y - s); ctx.lineTo(x + s, y); ctx.lineTo(x, y + s); ctx.lineTo(x - s, y); ctx.closePath();
      ctx.fillStyle = "#ff7f0e"; ctx.fill();
      ctx.strokeStyle = "#333333"; ctx.lineWidth = dpr; ctx.stroke();
      drawn.exemplars.push({t, ms: ex.ms[i], px: (x - u.bbox.left) / dpr, py: (y - u.bbox.top) / dpr});
    });
    if (data.message) {
      ctx.fillStyle = "#8c8c8c";
      ctx.font = `${14 * dpr}px sans-serif`;
      ctx.textAlign = "center";
      ctx.fillText(data.message, u.bbox.left + u.bbox.width / 2, u.bbox.top + u.bbox.height / 2);
    }
    ctx.restore();
  }

  const opts = {
    width, height: data.height, ms: 1, tzDate, series, bands,
    scales: {x: {time: true, range: () => data.x.range},
             y: data.y.range ? {distr: 3, log: 10, range: () => data.y.range} : {distr: 3, log: 10}},
    axes: [
      {label: data.x.title, values: X_VALUES, space: 70, font: FONT, labelFont: "bold " + FONT, grid: {stroke: "#eeeeee"}},
      {label: data.y.title, font: FONT, labelFont: "bold " + FONT, size: 60, grid: {stroke: "#eeeeee"},
       values: data.y.labels === false ? () => [] : undefined},
    ],
    legend: {live: true},
    cursor: {drag: {x: true, y: false}},
    hooks: {draw: [drawMarks]},
  };
  const u = new uPlot(opts, values, el);
  // the band bounds are series only to fill between them: their legend rows stay hidden
  u.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => { if (i > n) row.style.display = "none"; });

  // Hover: a deploy marker's or an exemplar's text (textContent only), else the legend's values.
  const tip = document.createElement("div");
  tip.className = "pc-tip";
  tip.style.display = "none";
  u.over.appendChild(tip);
  const near = (left, top) => {
    const d = drawn.deploys.findIndex((m) => Math.abs(m.px - left) <= 7 && top <= 30);
    if (d >= 0) return ["deploy", d];
    const e = drawn.exemplars.findIndex((m) => Math.abs(m.px - left) <= 6 && Math.abs(m.py - top) <= 6);
    return e >= 0 ? ["exemplar", e] : null;
  };
  u.over.addEventListener("mousemove", (evt) => {
    const r = u.over.getBoundingClientRect();
    const hit = near(evt.clientX - r.left, evt.clientY - r.top);
    if (!hit) { tip.style.display = "none"; u.over.style.cursor = ""; return; }
    const [kind, i] = hit;
    lines(tip, kind === "deploy" ? dep.hover[i] : ex.hover[i]);
    u.over.style.cursor = kind === "deploy" ? "pointer" : "";
    tip.style.display = "block";
    tip.style.left = Math.min(evt.clientX - r.left + 12, Math.max(0, r.width - 260)) + "px";
    tip.style.top = (evt.clientY - r.top + 12) + "px";
  });
  u.over.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  // A click on a deploy marker (its triangle or line) opens that deploy.
  u.over.addEventListener("click", (evt) => {
    const r = u.over.getBoundingClientRect();
    const left = evt.clientX - r.left;
    const d = drawn.deploys.findIndex((m) => Math.abs(m.px - left) <= 7);
    if (d >= 0 && setTriggerValue) setTriggerValue("deploy", drawn.deploys[d].id);
  });
  el.__chart = {u, tzDate, drawn, scale: data.x.scale, title: data.x.title, range: data.x.range, labels};
  return u;
}

export default function (component) {
  const {data, parentElement, setTriggerValue} = component;
  let el = parentElement.querySelector(".percentile-chart");
  if (!el) {
    el = document.createElement("div");
    el.className = "percentile-chart";
    parentElement.appendChild(el);
  }
  if (el.__chart) el.__chart.u.destroy();
  el.removeAttribute("data-ready");
  el.textContent = "";
  const u = build(el, data, setTriggerValue);
  el.setAttribute("data-ready", "1");
  if (data.message) el.setAttribute("data-skeleton", "1"); else el.removeAttribute("data-skeleton");
  const ro = new ResizeObserver(() => {
    const w = Math.floor(el.getBoundingClientRect().width);
    if (w > 0 && Math.abs(w - u.width) > 2) u.setSize({width: w, height: u.height});
  });
  ro.observe(el);
  return () => { ro.disconnect(); u.destroy(); el.__chart = null; el.removeAttribute("data-ready"); };
}
