// Session drill-down: engagement, presence and attention per window, from the timeline API.
const cfg = JSON.parse(document.getElementById("timeline-config").textContent);
const res = await fetch(cfg.timelineUrl, { credentials: "same-origin" });
const body = await res.json();
const w = body.windows || [];
const points = (key) => w.map((x) => ({ x: x.start / 60, y: x[key] }));
const chart = new Chart(document.getElementById("timeline-chart"), {
  type: "line",
  data: {
    datasets: [
      { label: "engagement", data: points("engagement"), borderColor: "#1d4ed8" },
      { label: "presence", data: points("presence_ratio"), borderColor: "#15803d", borderDash: [4, 3] },
      { label: "attention", data: points("attention_ratio"), borderColor: "#b45309", borderDash: [2, 2] },
    ],
  },
  options: {
    animation: false, parsing: false,
    scales: { x: { type: "linear", title: { display: true, text: "minutes into the session" } },
              y: { min: 0, max: 1 } },
  },
});
window.affectTimeline = { chart, windows: w };
