// Instructor live view: tiles per learner, class charts and alerts, all from the course socket.
import { duration as ago, percent } from "./format.js";

const cfg = JSON.parse(document.getElementById("live-config").textContent);
const $ = (id) => document.getElementById(id);
const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const HISTORY_MS = 5 * 60 * 1000; // the engagement chart's reach
// learner id → {name, session summary, lastFrame, lastFace, started, ended}: times are this
// browser's clock (ms), worked out from the server's "seconds since" figures, so a PC clock
// that is off by minutes does not turn every learner absent
const learners = new Map();
let serverAlerts = [], serverAlertsAt = 0; // the last summary's alerts and when they came
// the snapshot's course settings: how long without a picture reads "paused" (docs/web-ui.md)
let pausedAfterS = 5;
const MAX_FAILURES = 8; // connection attempts in a row that never opened: then stop, offer Retry
const SLOW_RETRY_MS = 30000; // after MAX_FAILURES: keep trying this often (and when back online)
let backoff = 500, failures = 0, current = null, refused = false; // current: the socket in use

const engagementChart = new Chart($("engagement-chart"), {
  type: "line",
  data: { datasets: [{ label: "mean engagement", data: [], borderColor: "#1d4ed8", tension: 0.2, pointRadius: 2 }] },
  options: {
    animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
    scales: {
      // the axis always spans the last 5 minutes (an empty chart has no 0–1 default to misread)
      x: { type: "linear", min: Date.now() - HISTORY_MS, max: Date.now(), title: { display: true, text: "time ago" },
           // one tick a minute back from now, so the labels read "4 min 00 s", not odd ages
           afterBuildTicks: (axis) => { const now = Date.now(); axis.ticks = [5, 4, 3, 2, 1, 0].map((k) => ({ value: now - k * 60000 })); },
           ticks: { callback: (v) => ago(Date.now() - v) } },
      y: { min: 0, max: 1, title: { display: true, text: "engagement" },
           ticks: { callback: (v) => percent(v) } },
    },
    plugins: { legend: { display: false } },
  },
});
const emotionChart = cfg.emotionEnabled && $("emotion-chart") ? new Chart($("emotion-chart"), {
  type: "bar",
  data: { labels: EMOTIONS, datasets: [{ label: "share", data: EMOTIONS.map(() => 0), backgroundColor: "#0f766e" }] },
  options: { animation: false, maintainAspectRatio: false, scales: { y: { min: 0, max: 1, ticks: { callback: (v) => percent(v) } } }, plugins: { legend: { display: false } } },
}) : null;

function tile(id) {
  const l = learners.get(id);
  let el = l.el || document.querySelector(`[data-learner="${id}"]`);
  if (!el) {
    el = document.createElement("article");
    el.className = "tile";
    el.dataset.learner = id;
    el.innerHTML = `<h3 class="name"></h3><p class="state"></p><p class="small detail"></p>
      <div class="values"><label class="small">Engagement <meter min="0" max="1" low="0.25" high="0.65" optimum="1" value="0"></meter>
      <span class="pct"></span></label>
      <p class="band"></p><p class="small cues"></p>${cfg.emotionEnabled ? '<p class="emotion"></p>' : ""}</div>
      <p class="small since"></p><a class="small drill" hidden>Session timeline</a>`;
    $("tiles").appendChild(el);
  }
  l.el = el;
  return el;
}

// What a tile says, from the server's figures aged to now (no summary comes for a session
// that sends nothing). Absent follows the server's rule: while pictures come, its alert;
// once they stop, the time since the last face (or the start) against the course's threshold.
function stateOf(l, now) {
  const s = l.session;
  if (!s) return { st: l.ended ? "ended" : "no-session" };
  if (s.status !== "active") return { st: "ended" };
  const sinceFrame = l.lastFrame != null ? (now - l.lastFrame) / 1000 : null;
  const sending = sinceFrame !== null && sinceFrame <= pausedAfterS;
  const noFace = (now - (l.lastFace != null ? l.lastFace : l.started)) / 1000;
  const absent = sending ? (s.alerts || []).some((a) => a.kind === "absent") : noFace > cfg.absentSeconds;
  if (absent) return { st: "absent", sinceFrame, noFace };
  if (sinceFrame === null) return { st: "waiting", noFace };
  if (!sending) return { st: "paused", sinceFrame, noFace };
  return { st: s.present ? "present" : "no-face", sinceFrame, noFace };
}

const LABEL = {
  present: "Present · recording", "no-face": "Recording · face not seen", waiting: "Waiting for camera",
  paused: "Paused", absent: "Absent", ended: "Session ended", "no-session": "Not in a session",
};

function detail({ st, sinceFrame, noFace }) {
  if (st === "waiting") return `Session started ${ago(noFace * 1000)} ago; no picture yet.`;
  if (st === "no-face") return `No face in the pictures for ${ago(noFace * 1000)}.`;
  if (st === "paused") return `No picture for ${ago(sinceFrame * 1000)}: paused, camera off or connection lost.`;
  if (st === "absent") {
    if (sinceFrame === null) return `No picture since the session started, ${ago(noFace * 1000)} ago.`;
    if (sinceFrame > pausedAfterS) return `No picture for ${ago(sinceFrame * 1000)}.`;
    return `Camera on, no face for ${ago(noFace * 1000)}.`;
  }
  if (st === "no-session") return "Starts from their course page.";
  return "";
}

// The device path's cues of the current window ("looking away 40 % · eyes closed 15 %"); a
// window where only the server found the face has none: it says so.
function cuesText(s) {
  if (!s.device_ratio) return "camera position only";
  const parts = [];
  if (s.looking_away_ratio != null) parts.push(`looking away ${percent(s.looking_away_ratio)}`);
  if (s.eyes_closed_ratio != null) parts.push(`eyes closed ${percent(s.eyes_closed_ratio)}`);
  return parts.join(" · ");
}

function render(id) {
  const l = learners.get(id);
  const el = tile(id);
  const s = l.session;
  const now = Date.now();
  const state = stateOf(l, now);
  const st = state.st;
  el.querySelector(".name").textContent = l.name;
  el.dataset.state = st;
  el.querySelector(".state").textContent = LABEL[st];
  el.querySelector(".detail").textContent = detail(state);
  // values only while pictures come: a paused, absent or ended learner has none to show
  const live = (st === "present" || st === "no-face") && s.engagement != null && s.n_frames > 0;
  el.querySelector(".values").hidden = !live;
  el.querySelector("meter").value = live ? s.engagement : 0;
  el.querySelector(".pct").textContent = live ? percent(s.engagement) : "";
  el.querySelector(".band").textContent = live && s.band ? s.band : "";
  el.querySelector(".cues").textContent = live ? cuesText(s) : "";
  if (cfg.emotionEnabled) {
    const expr = el.querySelector(".emotion");
    expr.textContent = live && s.dominant_emotion ? `Expression: ${s.dominant_emotion}` : "";
    // the model abstained on most faces: a neutral grey, never an emotion's colour
    expr.classList.toggle("uncertain", live && s.dominant_emotion === "uncertain");
  }
  // unless the detail line already says how long since the last picture
  const gapSaid = st === "paused" || (st === "absent" && state.sinceFrame > pausedAfterS);
  const showSince = state.sinceFrame != null && !gapSaid && !["ended", "no-session"].includes(st);
  el.querySelector(".since").textContent = showSince ? `last picture ${ago(state.sinceFrame * 1000)} ago` : "";
  const a = el.querySelector(".drill");
  a.hidden = !(s && s.session);
  if (s && s.session) a.href = `${cfg.sessionUrl}${s.session}/`;
  l.state = st;
  l.noFace = state.noFace;
}

function countPresent() {
  const n = { present: 0, recording: 0 };
  learners.forEach((l) => {
    if (l.state === "present") n.present += 1;
    if (l.state === "present" || l.state === "no-face") n.recording += 1;
  });
  $("present-count").textContent = `${n.present} present · ${n.recording} recording`;
  // no summary comes while nobody records: the last expression mix would stay up
  if (emotionChart && !n.recording && $("emotion-empty").hidden) {
    emotionChart.data.datasets[0].data = EMOTIONS.map(() => 0);
    emotionChart.update("none");
    $("emotion-empty").hidden = false;
  }
}

// A session summary from the server: when its last frame and face came and when it started,
// by this browser's clock (the server's "seconds since" and its own clock's differences).
function track(id, name, s) {
  const l = learners.get(id) || { name };
  const now = Date.now();
  if (s && l.session && l.session.session !== s.session) l.started = null; // a new session
  l.session = s;
  l.ended = false;
  l.lastFrame = s && s.seconds_since_frame != null ? now - s.seconds_since_frame * 1000 : null;
  // the last frame with a face (frames may keep coming with nobody in them)
  l.lastFace = s && s.absent_for != null ? now - s.absent_for * 1000 : null;
  if (s && s.at && s.started_at) l.started = now - (Date.parse(s.at) - Date.parse(s.started_at));
  else if (s && l.started == null) l.started = now;
  learners.set(id, l);
  render(id);
  countPresent();
}

const update = (s) => track(s.learner, s.learner_name, s);

function chartPoint(x, y) {
  const ds = engagementChart.data.datasets[0].data;
  ds.push({ x, y });
  trimChart();
}

// the chart's history from the snapshot: its times are the server's, placed on this clock
function history(points, serverNow) {
  const ds = engagementChart.data.datasets[0].data;
  ds.length = 0;
  const offset = Date.now() - Date.parse(serverNow);
  for (const p of points || []) ds.push({ x: Date.parse(p.at) + offset, y: p.engagement });
  trimChart();
}

function summary(sum) {
  if (!sum) return;
  if (sum.engagement != null) chartPoint(Date.now(), sum.engagement);
  if (emotionChart) {
    const dist = sum.emotion_distribution;
    emotionChart.data.datasets[0].data = EMOTIONS.map((e) => (dist ? dist[e] : 0));
    emotionChart.update();
    $("emotion-empty").hidden = Boolean(dist);
  }
  serverAlerts = sum.alerts || [];
  serverAlertsAt = Date.now();
  renderAlerts();
}

// Alerts: "absent" from the tiles, worked out every second here (no summary comes while
// nobody's frames are analysed), the server's other alerts (disengaged) as they came, aged,
// while the learner's pictures still come (a paused or ended learner's are stale).
function currentAlerts() {
  const now = Date.now(), out = [];
  learners.forEach((l, id) => {
    if (l.state === "absent") out.push({ learner: id, name: l.name, kind: "absent", seconds: l.noFace });
  });
  const aged = (now - serverAlertsAt) / 1000;
  for (const a of serverAlerts) {
    if (a.kind === "absent" || out.some((x) => x.learner === a.learner)) continue;
    const l = learners.get(a.learner);
    if (!l || !["present", "no-face"].includes(l.state)) continue;
    out.push({ learner: a.learner, name: l.name || a.learner_name, kind: a.kind, seconds: a.seconds + aged });
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

// the engagement chart keeps the last 5 minutes, its axis moving on also when no summary comes
function trimChart() {
  const ds = engagementChart.data.datasets[0].data;
  const now = Date.now(), cutoff = now - HISTORY_MS;
  while (ds.length && ds[0].x < cutoff) ds.shift();
  engagementChart.options.scales.x.min = cutoff;
  engagementChart.options.scales.x.max = now;
  engagementChart.update("none");
  $("chart-empty").hidden = ds.length > 0;
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
      if (msg.course && msg.course.paused_after_s) pausedAfterS = msg.course.paused_after_s;
      for (const l of msg.learners) track(l.learner, l.learner_name, l.session);
      history(msg.history, msg.summary.at);
      summary(msg.summary);
    } else if (msg.type === "summary") {
      (msg.sessions || []).forEach(update);
      summary(msg.summary);
    } else if (msg.type === "session_started") {
      const l = learners.get(msg.learner) || { name: msg.learner_name };
      learners.set(msg.learner, { ...l, started: null });
      track(msg.learner, l.name, { session: msg.session, status: "active", present: false, alerts: [] });
    } else if (msg.type === "session_ended") {
      const l = learners.get(msg.learner);
      if (l && l.session && l.session.session === msg.session) {
        l.session = null;
        l.ended = true;
        render(msg.learner); countPresent(); renderAlerts();
      }
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
