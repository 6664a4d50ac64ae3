// Session drill-down, from the timeline API: engagement, presence and attention, looking away
// and eyes closed (device path), and the expression mix per window, with the stretches that have nothing to show shaded and listed.
import { clock, percent } from "./format.js";

const cfg = JSON.parse(document.getElementById("timeline-config").textContent);
const errorEl = document.getElementById("timeline-error");
const GAP_TEXT = { no_frames: "no pictures (paused, camera off or offline)", no_face: "no face in view" };
const GAP_FILL = { no_frames: "rgba(100, 116, 139, 0.18)", no_face: "rgba(185, 28, 28, 0.12)" };
// "uncertain" (the model abstained) is a neutral grey, never one of the emotions' colours
const UNCERTAIN_COLOR = "#9ca3af";
const EMOTION_COLORS = { angry: "#b91c1c", disgust: "#4d7c0f", fear: "#7c3aed", happy: "#f59e0b",
  sad: "#1d4ed8", surprise: "#db2777", neutral: "#64748b" };

// The timeline, or null after showing why there is none (an error status, or no network).
async function load() {
  let res, body = null;
  try {
    res = await fetch(cfg.timelineUrl, { credentials: "same-origin" });
    body = await res.json().catch(() => null);
  } catch {
    errorEl.textContent = "Could not reach the server: reload the page to try again.";
    return null;
  }
  if (!res.ok) {
    const why = (body && body.error && body.error.message) || `the server answered ${res.status}`;
    errorEl.textContent = `The timeline could not be loaded: ${why}`;
    return null;
  }
  return body;
}

const data = (await load()) || { windows: [], gaps: [] };
const w = data.windows || [];
const gaps = data.gaps || [];
const minutes = (s) => s / 60;
const xMin = w.length ? minutes(w[0].start) : 0;
const xMax = w.length ? minutes(w[w.length - 1].end) : 1;

// Shades each gap behind the lines, so that a break in a line says why it breaks.
const gapShading = {
  id: "gapShading",
  beforeDatasetsDraw(chart) {
    const { ctx, chartArea: a, scales: { x } } = chart;
    ctx.save();
    for (const g of gaps) {
      const left = Math.max(x.getPixelForValue(minutes(g.start)), a.left);
      const right = Math.min(x.getPixelForValue(minutes(g.end)), a.right);
      ctx.fillStyle = GAP_FILL[g.kind] || GAP_FILL.no_frames;
      ctx.fillRect(left, a.top, right - left, a.bottom - a.top);
    }
    ctx.restore();
  },
};

// Each window as a flat step over its whole width (start, middle, end), so a line covers
// exactly the windows that have a value and breaks at those that have none.
const points = (pick) => w.flatMap((x) => {
  const y = pick(x);
  return [x.start, (x.start + x.end) / 2, x.end].map((t) => ({ x: minutes(t), y }));
});
const middleOnly = (radius) => (ctx) => (ctx.dataIndex % 3 === 1 ? radius : 0);
const ratioAxis = { min: 0, max: 1, ticks: { callback: (v) => percent(v) } };
const timeAxis = { type: "linear", min: xMin, max: xMax,
  title: { display: true, text: "minutes into the session" },
  ticks: { callback: (v) => clock(v * 60) } };
const tooltip = { callbacks: {
  title: (items) => items.length ? `at ${clock(items[0].parsed.x * 60)}` : "",
  label: (item) => `${item.dataset.label}: ${percent(item.parsed.y)}`,
} };

function lineChart(id, datasets, extra = {}) {
  const el = document.getElementById(id);
  if (!el) return null;
  return new Chart(el, {
    type: "line",
    data: { datasets },
    plugins: [gapShading],
    options: {
      animation: false, parsing: false, maintainAspectRatio: false, spanGaps: false,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales: { x: timeAxis, y: { ...ratioAxis, ...(extra.y || {}) } },
      plugins: { tooltip, legend: { labels: { usePointStyle: true } } },
    },
  });
}

const engagement = lineChart("timeline-chart", [
  { label: "engagement", data: points((x) => x.engagement), borderColor: "#1d4ed8",
    backgroundColor: "#1d4ed8", pointRadius: 0, borderWidth: 2, clip: 6 },
]);

// presence as a filled area, attention as a line with triangles on top of it: where both are
// 100 % the area still shows under the line (they used to be two lines drawn on one another)
const presence = lineChart("presence-chart", [
  { label: "attention", data: points((x) => x.attention_ratio), borderColor: "#b45309",
    backgroundColor: "#b45309", pointStyle: "triangle", pointRadius: middleOnly(4), borderWidth: 2,
    clip: 8, order: 0 },
  { label: "presence", data: points((x) => x.presence_ratio), borderColor: "#15803d",
    backgroundColor: "rgba(21, 128, 61, 0.25)", fill: "origin", pointRadius: 0, borderWidth: 1,
    order: 1 },
]);

// the device path's cues: no value in a window where only the server found the face
const eyes = lineChart("eyes-chart", [
  { label: "looking away", data: points((x) => x.looking_away_ratio), borderColor: "#7c3aed",
    backgroundColor: "#7c3aed", pointRadius: middleOnly(3), borderWidth: 2, clip: 6 },
  { label: "eyes closed", data: points((x) => x.eyes_closed_ratio), borderColor: "#0f766e",
    backgroundColor: "#0f766e", borderDash: [6, 3], pointRadius: 0, borderWidth: 2, clip: 6 },
]);

let expression = null;
if (cfg.emotionEnabled) {
  const withDist = w.find((x) => x.emotion_distribution);
  const names = withDist ? Object.keys(withDist.emotion_distribution) : Object.keys(EMOTION_COLORS);
  // the shares of the window's faces: each emotion's among the certain ones, scaled down by the
  // uncertain share, which is stacked on top in grey (the model abstained: no emotion claimed)
  const shown = (x) => 1 - (x.uncertain_ratio || 0);
  const layers = names.map((name, i) => ({
    label: name,
    data: points((x) => (x.emotion_distribution ? x.emotion_distribution[name] * shown(x)
      : x.uncertain_ratio != null ? 0 : null)),
    borderColor: EMOTION_COLORS[name] || "#111827", backgroundColor: EMOTION_COLORS[name] || "#111827",
    fill: i === 0 ? "origin" : "-1", pointRadius: 0, borderWidth: 1,
  }));
  layers.push({
    label: "uncertain", data: points((x) => (x.uncertain_ratio != null ? x.uncertain_ratio : null)),
    borderColor: UNCERTAIN_COLOR, backgroundColor: UNCERTAIN_COLOR, fill: "-1", pointRadius: 0, borderWidth: 1,
  });
  expression = lineChart("expression-chart", layers, { y: { stacked: true } });
}

const list = document.getElementById("timeline-gaps");
list.replaceChildren(...(gaps.length ? gaps : [null]).map((g) => {
  const li = document.createElement("li");
  if (!g) {
    li.className = "muted";
    li.textContent = w.length ? "None: pictures with a face came throughout." : "No data yet.";
  } else {
    li.dataset.kind = g.kind;
    li.textContent = `${clock(g.start)}–${clock(g.end)}: ${GAP_TEXT[g.kind] || g.kind}`;
  }
  return li;
}));

window.affectTimeline = { chart: engagement, charts: { engagement, presence, expression }, eyes, windows: w, gaps };
