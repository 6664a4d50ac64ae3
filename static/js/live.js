// Instructor live view: tiles per learner, class charts and alerts, all from the course socket.
const cfg = JSON.parse(document.getElementById("live-config").textContent);
const $ = (id) => document.getElementById(id);
const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const ago = (ms) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 90 ? `${s} s` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} min`;
};
const learners = new Map(); // learner id → {name, session summary, lastFrame (ms)}
const MAX_FAILURES = 8; // connection attempts in a row that never opened: then stop, offer Retry
let backoff = 500, failures = 0;

const engagementChart = new Chart($("engagement-chart"), {
  type: "line",
  data: { datasets: [{ label: "mean engagement", data: [], borderColor: "#1d4ed8", tension: 0.2, pointRadius: 2 }] },
  options: {
    animation: false, parsing: false, responsive: true,
    scales: {
      x: { type: "linear", title: { display: true, text: "time ago" },
           ticks: { maxTicksLimit: 6, callback: (v) => ago(Date.now() - v) } },
      y: { min: 0, max: 1, title: { display: true, text: "engagement" } },
    },
    plugins: { legend: { display: false } },
  },
});
const emotionChart = cfg.emotionEnabled && $("emotion-chart") ? new Chart($("emotion-chart"), {
  type: "bar",
  data: { labels: EMOTIONS, datasets: [{ label: "share", data: EMOTIONS.map(() => 0), backgroundColor: "#0f766e" }] },
  options: { animation: false, scales: { y: { min: 0, max: 1 } }, plugins: { legend: { display: false } } },
}) : null;

function tile(id) {
  let el = document.querySelector(`[data-learner="${id}"]`);
  if (!el) {
    el = document.createElement("article");
    el.className = "tile";
    el.dataset.learner = id;
    el.innerHTML = `<h3 class="name"></h3><p class="state"></p>
      <label class="small">Engagement <meter min="0" max="1" low="0.25" high="0.65" optimum="1" value="0"></meter></label>
      <p class="band"></p>${cfg.emotionEnabled ? '<p class="emotion"></p>' : ""}
      <p class="small since"></p><a class="small drill" hidden>Session timeline</a>`;
    $("tiles").appendChild(el);
  }
  return el;
}

function render(id) {
  const l = learners.get(id);
  const el = tile(id);
  const s = l.session;
  el.querySelector(".name").textContent = l.name;
  const secs = l.lastFrame ? (Date.now() - l.lastFrame) / 1000 : null;
  let st = "no-session";
  if (s && s.status === "active") st = s.present && secs !== null && secs <= cfg.absentSeconds ? "present" : "absent";
  el.dataset.state = st;
  el.querySelector(".state").textContent = { present: "Present", absent: "Absent", "no-session": "Not in a session" }[st];
  el.querySelector("meter").value = s && s.engagement != null ? s.engagement : 0;
  el.querySelector(".band").textContent = s && s.band && st !== "no-session" ? s.band : "";
  if (cfg.emotionEnabled) el.querySelector(".emotion").textContent = s && s.dominant_emotion ? `Expression: ${s.dominant_emotion}` : "";
  el.querySelector(".since").textContent = secs === null ? "" : `last picture ${Math.round(secs)} s ago`;
  const a = el.querySelector(".drill");
  if (s && s.session) { a.hidden = false; a.href = `${cfg.sessionUrl}${s.session}/`; }
  const present = [...document.querySelectorAll('.tile[data-state="present"]')].length;
  $("present-count").textContent = `${present} present`;
}

function update(s) {
  const l = learners.get(s.learner) || { name: s.learner_name };
  l.session = s;
  if (s.last_frame_at) l.lastFrame = Date.parse(s.last_frame_at);
  learners.set(s.learner, l);
  render(s.learner);
}

function summary(sum) {
  if (!sum) return;
  if (sum.engagement != null) {
    const ds = engagementChart.data.datasets[0].data;
    ds.push({ x: Date.now(), y: sum.engagement });
    const cutoff = Date.now() - 5 * 60 * 1000;
    while (ds.length && ds[0].x < cutoff) ds.shift();
    engagementChart.update();
  }
  if (emotionChart && sum.emotion_distribution) {
    emotionChart.data.datasets[0].data = EMOTIONS.map((e) => sum.emotion_distribution[e]);
    emotionChart.update();
  }
  const ul = $("alerts");
  ul.innerHTML = "";
  for (const a of sum.alerts || []) {
    const li = document.createElement("li");
    li.dataset.kind = a.kind;
    li.textContent = `${a.learner_name}: ${a.kind} for ${Math.round(a.seconds)} s`;
    ul.appendChild(li);
  }
  if (!ul.children.length) ul.innerHTML = '<li class="muted">No alerts.</li>';
}

const sentence = (text) => {
  const t = (text || "").trim();
  if (!t) return "";
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
};

function showConn(state, text, retry = false) {
  const conn = $("conn");
  conn.dataset.state = state;
  conn.textContent = text;
  if (retry) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "retry";
    b.textContent = "Retry";
    b.addEventListener("click", () => { failures = 0; backoff = 500; showConn("connecting", "Connecting…"); connect(); });
    conn.append(" ", b);
  }
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}${cfg.wsPath}`);
  let accepted = false, told = null; // told: the server's {code, reason} before it closes
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "closed") {
      told = msg;
    } else if (msg.type === "snapshot") {
      // live only once the server has accepted us (a refusal also opens, then closes)
      showConn("live", "Live");
      accepted = true;
      backoff = 500;
      failures = 0;
      for (const l of msg.learners) {
        learners.set(l.learner, { name: l.learner_name, session: l.session,
          lastFrame: l.session && l.session.last_frame_at ? Date.parse(l.session.last_frame_at) : null });
        render(l.learner);
      }
      summary(msg.summary);
    } else if (msg.type === "summary") {
      (msg.sessions || []).forEach(update);
      summary(msg.summary);
    } else if (msg.type === "session_started") {
      const l = learners.get(msg.learner) || { name: msg.learner_name };
      l.session = { session: msg.session, status: "active", present: false };
      learners.set(msg.learner, l);
      render(msg.learner);
    } else if (msg.type === "session_ended") {
      const l = learners.get(msg.learner);
      if (l && l.session) { l.session.status = "ended"; render(msg.learner); }
    }
  };
  ws.onclose = (ev) => {
    const code = ev.code === 1006 && told ? told.code : ev.code;
    if (code === 4403 || code === 4401) {
      const why = sentence((told && told.reason) || ev.reason);
      return showConn("error", "Not allowed" + (why ? `: ${why}` : ""));
    }
    if (!accepted) failures += 1;
    if (failures >= MAX_FAILURES) {
      return showConn("error", "Disconnected: the server cannot be reached.", true);
    }
    showConn("reconnecting", "Reconnecting…");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 8000);
  };
}

setInterval(() => learners.forEach((_, id) => render(id)), 1000);
connect();
window.affectLive = { engagementChart, emotionChart, learners };
