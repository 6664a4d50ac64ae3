// Session drill-down: engagement, presence and attention per window, from the timeline API.
const cfg = JSON.parse(document.getElementById("timeline-config").textContent);
const errorEl = document.getElementById("timeline-error");

// The windows, or null after showing why there are none (an error status, or no network).
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
  return body.windows || [];
}

const w = (await load()) || [];
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
