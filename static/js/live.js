// Instructor live view: tiles per learner, class charts and alerts, all from the course socket.
const cfg = JSON.parse(document.getElementById("live-config").textContent);
const $ = (id) => document.getElementById(id);
const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const ago = (ms) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 90 ? `${s} s` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} min`;
};
// learner id → {name, session summary, lastFrame, since}: times are this browser's clock (ms),
// worked out from the server's "seconds since" figures, so a PC clock that is off by minutes
// does not turn every learner absent
const learners = new Map();
let serverAlerts = [], serverAlertsAt = 0; // the last summary's alerts and when they came
const MAX_FAILURES = 8; // connection attempts in a row that never opened: then stop, offer Retry
const SLOW_RETRY_MS = 30000; // after MAX_FAILURES: keep trying this often (and when back online)
let backoff = 500, failures = 0, current = null, refused = false; // current: the socket in use

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
  const l = learners.get(id);
  let el = l.el || document.querySelector(`[data-learner="${id}"]`);
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
  l.el = el;
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
  l.state = st;
}

function countPresent() {
  let present = 0;
  learners.forEach((l) => { if (l.state === "present") present += 1; });
  $("present-count").textContent = `${present} present`;
}

// A session summary from the server: when its last frame came, by this browser's clock.
function track(id, name, s) {
  const l = learners.get(id) || { name };
  l.session = s;
  const now = Date.now();
  l.lastFrame = s && s.seconds_since_frame != null ? now - s.seconds_since_frame * 1000 : null;
  // the last frame with a face (frames may keep coming with nobody in them)
  l.lastFace = s && s.absent_for != null ? now - s.absent_for * 1000 : null;
  if (s && s.status === "active" && l.since == null) {
    const absent = (s.alerts || []).find((a) => a.kind === "absent");
    l.since = now - (absent ? absent.seconds * 1000 : 0); // start of the wait for a first frame
  }
  learners.set(id, l);
  render(id);
  countPresent();
}

const update = (s) => track(s.learner, s.learner_name, s);

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
  serverAlerts = sum.alerts || [];
  serverAlertsAt = Date.now();
  renderAlerts();
}

// Alerts: "absent" from the tiles, worked out every second here (no summary comes while
// nobody's frames are analysed), the server's other alerts (disengaged) as they came, aged.
// Items are updated in place; only a new alert is announced to screen readers.
function currentAlerts() {
  const now = Date.now(), out = [];
  learners.forEach((l, id) => {
    if (l.state !== "absent") return;
    // absent since the last face, else (none yet) since the session started, as on the server
    const from = l.lastFace != null ? l.lastFace : l.since != null ? l.since : l.lastFrame;
    const secs = from != null ? (now - from) / 1000 : null;
    if (secs === null || secs > cfg.absentSeconds) out.push({ learner: id, name: l.name, kind: "absent", seconds: secs });
  });
  const aged = (now - serverAlertsAt) / 1000;
  for (const a of serverAlerts) {
    if (a.kind === "absent" || out.some((x) => x.learner === a.learner)) continue;
    const l = learners.get(a.learner);
    if (!l || !l.session || l.session.status !== "active") continue;
    out.push({ learner: a.learner, name: a.learner_name, kind: a.kind, seconds: a.seconds + aged });
  }
  return out;
}

function renderAlerts() {
  const ul = $("alerts"), seen = new Set(), fresh = [];
  ul.querySelector(".muted")?.remove();
  for (const a of currentAlerts()) {
    const key = `${a.learner}:${a.kind}`;
    seen.add(key);
    let li = ul.querySelector(`li[data-key="${key}"]`);
    if (!li) {
      li = document.createElement("li");
      li.dataset.key = key;
      li.dataset.kind = a.kind;
      ul.appendChild(li);
      fresh.push(`${a.name}: ${a.kind}`);
    }
    li.textContent = `${a.name}: ${a.kind}` + (a.seconds == null ? "" : ` for ${ago(a.seconds * 1000)}`);
  }
  ul.querySelectorAll("li[data-key]").forEach((li) => { if (!seen.has(li.dataset.key)) li.remove(); });
  if (!ul.children.length) ul.innerHTML = '<li class="muted">No alerts.</li>';
  if (fresh.length) $("alerts-announce").textContent = `New alert: ${fresh.join("; ")}`;
}

// the engagement chart keeps the last 5 minutes, also when no summary comes
function trimChart() {
  const ds = engagementChart.data.datasets[0].data;
  const cutoff = Date.now() - 5 * 60 * 1000;
  let n = 0;
  while (ds.length && ds[0].x < cutoff) { ds.shift(); n += 1; }
  if (n) engagementChart.update();
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
    b.addEventListener("click", reconnectNow);
    conn.append(" ", b);
  }
}

function reconnectNow() {
  failures = 0;
  backoff = 500;
  showConn("connecting", "Connecting…");
  connect();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}${cfg.wsPath}`);
  current = ws;
  let accepted = false, told = null; // told: the server's {code, reason} before it closes
  ws.onmessage = (ev) => {
    if (current !== ws) return; // a socket replaced by a newer one says nothing more
    const msg = JSON.parse(ev.data);
    if (msg.type === "closed") {
      told = msg;
    } else if (msg.type === "snapshot") {
      // live only once the server has accepted us (a refusal also opens, then closes)
      showConn("live", "Live");
      accepted = true;
      backoff = 500;
      failures = 0;
      for (const l of msg.learners) track(l.learner, l.learner_name, l.session);
      summary(msg.summary);
    } else if (msg.type === "summary") {
      (msg.sessions || []).forEach(update);
      summary(msg.summary);
    } else if (msg.type === "session_started") {
      const l = learners.get(msg.learner) || { name: msg.learner_name };
      l.since = null;
      track(msg.learner, l.name, { session: msg.session, status: "active", present: false });
    } else if (msg.type === "session_ended") {
      const l = learners.get(msg.learner);
      if (l && l.session) { l.session.status = "ended"; l.since = null; render(msg.learner); countPresent(); renderAlerts(); }
    }
  };
  ws.onclose = (ev) => {
    if (current !== ws) return; // a newer socket took over (Retry, back online)
    const code = ev.code === 1006 && told ? told.code : ev.code;
    if (code === 4403 || code === 4401) {
      const why = sentence((told && told.reason) || ev.reason);
      refused = true; // signed out or not this course's: retrying cannot help
      return showConn("error", "Not allowed" + (why ? `: ${why}` : ""));
    }
    if (!accepted) failures += 1;
    if (failures >= MAX_FAILURES) {
      // say so and offer Retry, but keep trying now and then, and at once when back online
      setTimeout(() => { if (current === ws) connect(); }, SLOW_RETRY_MS);
      return showConn("error", "Disconnected: the server cannot be reached.", true);
    }
    showConn("reconnecting", "Reconnecting…");
    setTimeout(() => { if (current === ws) connect(); }, backoff);
    backoff = Math.min(backoff * 2, 8000);
  };
}

window.addEventListener("online", () => {
  if (current && current.readyState <= WebSocket.OPEN) return; // one is on its way already
  if (!refused && ["error", "reconnecting"].includes($("conn").dataset.state)) reconnectNow();
});
setInterval(() => { learners.forEach((_, id) => render(id)); countPresent(); renderAlerts(); trimChart(); }, 1000);
connect();
window.affectLive = { engagementChart, emotionChart, learners };
