// Learner recording page: webcam → the face analysed on this device (cues, and a 48×48 face
// crop where emotion is on) → session WebSocket, honouring the credit window. Full JPEG
// pictures only as the fallback, and only where the course allows it (docs/device.md).
import { CAMERA_MESSAGES, askCamera } from "./camera.js";
import { loadDeviceFace } from "./device_face.js";
import { duration, percent } from "./format.js";

const cfg = JSON.parse(document.getElementById("recorder-config").textContent);
const $ = (id) => document.getElementById(id);
const video = $("preview"), canvas = $("grab"), statusEl = $("status");
const startBtn = $("start"), pauseBtn = $("pause"), stopBtn = $("stop");
const faceHint = $("face-hint");
// the hint shows once the server has seen no face for this long (seconds)
const FACE_HINT_S = 3;

const MESSAGES = {
  idle: "Not recording. Press Start when you are ready.",
  camera: "Asking for your camera…",
  connecting: "Connecting to the server…",
  sending: "Recording.",
  unavailable: "Not recording: this device cannot analyse your face here and pictures may not be sent (see below).",
  paused: "Paused. The camera is off and nothing is being sent. Press Resume to go on.",
  reconnecting: "Connection lost — reconnecting…",
  disconnected: "Could not reach the server. Check your connection, then press Retry.",
  ...CAMERA_MESSAGES,
  "camera-lost": "The camera stopped (unplugged, or its permission was withdrawn). Nothing is being sent. Press Start to use it again.",
  refusing: "The server is refusing the pictures:",
  "end-failed": "The session could not be ended on the server:",
  ending: "Ending the session…",
  ended: "Session ended. Thank you!",
  error: "The server refused this session.",
};

// Refusals the server explains (a "closed" message, then one of these close codes): retrying
// cannot help, so the page stops and says why.
const CLOSE_ENDED = 4409, REFUSED = [4401, 4403, 4404];
const MAX_FAILURES = 8; // connection attempts in a row without a "ready": then stop and offer Retry
const FALLBACK_REASON = {
  4401: "You are signed out: sign in again.",
  4403: "Consent may have been revoked.",
  4404: "This session is not yours.",
};

const state = {
  stream: null, ws: null, timer: null, paused: false, userStopped: false, ready: false,
  credit: 0, nextSeq: 0, sent: 0, skipped: 0, backoff: 500, encoding: false, lastPing: 0,
  failures: 0, closing: null, // closing: the server's {code, reason} before it closes
  maxFrameBytes: Infinity,
  clockOffset: 0, // server clock − this computer's, from "ready": captured_at is in server time
  rejected: 0, rejectedInRow: 0,
  // the on-device path: path is "device", "picture" (fallback) or "none" (fallback refused);
  // null until the model has loaded or failed
  path: null, device: null, policy: { ...cfg.device }, intervalMs: 1000 / cfg.fps,
  analyseMs: [], lastKind: null, serverTakesDevice: null, // null: no "ready" yet
};
// decide the rate from the median of the last few analyses (the first one warms the model up)
const RATE_WINDOW = 5, RATE_MIN_SAMPLES = 3, RATE_HEADROOM = 1.25;
const SLOW_RETRY_MS = 30000; // after MAX_FAILURES: keep trying this often (and when back online)

const sentence = (text) => {
  const t = (text || "").trim();
  if (!t) return "";
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
};

function setStatus(kind, extra = "") {
  statusEl.dataset.state = kind;
  statusEl.textContent = MESSAGES[kind] + (extra ? " " + extra : "");
  startBtn.textContent = kind === "disconnected" ? "Retry" : "Start";
  startBtn.disabled = ["unavailable", "sending", "refusing", "connecting", "reconnecting", "camera", "ended", "error", "end-failed", "ending"].includes(kind);
  // while paused the one way on is Resume (or Stop)
  startBtn.hidden = state.paused || ["ended", "ending"].includes(kind);
  pauseBtn.disabled = !["sending", "refusing", "paused"].includes(kind);
  pauseBtn.textContent = state.paused ? "Resume" : "Pause";
  pauseBtn.hidden = ["ended", "ending"].includes(kind);
  // a session that exists can always be ended, whatever the camera or the connection do
  stopBtn.disabled = ["ended", "ending"].includes(kind);
  stopBtn.hidden = kind === "ended";
  if (!["sending", "refusing"].includes(kind)) faceHint.hidden = true;
  if (["paused", "ended"].includes(kind)) $("engagement").textContent = "—"; // none is measured
}

// What leaves this device, in plain words (the consent page and docs/device.md say the same).
const PATH_TEXT = {
  loading: "Loading the face model on this device…",
  crop: "Your face is analysed on this device; only a small face thumbnail and numbers (head turn, eye opening, gaze) are sent.",
  cues: "Your face is analysed on this device; only numbers (head turn, eye opening, gaze) are sent, no picture.",
  "picture-slow": "This device is too slow for the face model: full pictures are sent to the server, analysed there and deleted.",
  "picture-load": "The face model could not start on this device: full pictures are sent to the server, analysed there and deleted.",
  "none-slow": "This device is too slow for the face model and this course does not allow sending pictures, so nothing is recorded.",
  "picture-server": "This server does not take on-device results yet: full pictures are sent to the server, analysed there and deleted.",
  "none-server": "This server does not take on-device results yet and this course does not allow sending pictures, so nothing is recorded.",
  "none-load": "The face model could not start on this device and this course does not allow sending pictures, so nothing is recorded.",
};

function setPath(path, key, rate) {
  state.path = path;
  const el = $("device-path");
  el.dataset.path = path || "loading";
  el.textContent = PATH_TEXT[key] + (rate ? ` About ${rate} a second.` : "");
}

const sendCrop = () => !!state.policy.send_crop;

// The model loads while the learner reads the page; until it has, nothing is captured.
async function prepareDevice() {
  setPath(null, "loading");
  try {
    state.device = await loadDeviceFace({ modelBase: cfg.device.modelBase, backend: cfg.device.backend });
  } catch (err) {
    console.warn("face model:", err && err.message); // eslint-disable-line no-console
    return fallBack("load");
  }
  if (state.serverTakesDevice === false) return fallBack("server");
  setPath("device", sendCrop() ? "crop" : "cues");
}

// The device path cannot run: full pictures where the course allows them, else nothing.
function fallBack(why) {
  state.device = null;
  if (state.policy.allow_full_pictures) {
    state.intervalMs = 1000 / cfg.fps;
    setPath("picture", `picture-${why}`);
    if (state.timer) startTimer();
  } else {
    setPath("none", `none-${why}`);
    stopCapture();
    releaseCamera(); // nothing will be recorded: let the camera's light go off
    if (!["idle", "ended", "ending", "end-failed", "error"].includes(statusEl.dataset.state)) setStatus("unavailable");
  }
}

function startTimer() {
  clearInterval(state.timer);
  state.timer = setInterval(capture, state.intervalMs);
}

// Capture no faster than the device analyses; below the course's minimum rate, fall back.
function adapt(ms) {
  state.analyseMs.push(ms);
  if (state.analyseMs.length > RATE_WINDOW + 1) state.analyseMs.shift();
  const recent = state.analyseMs.slice(1); // the first one warms the model up
  if (recent.length < RATE_MIN_SAMPLES) return;
  const median = [...recent].sort((a, b) => a - b)[Math.floor(recent.length / 2)];
  const sustained = 1000 / (median * RATE_HEADROOM);
  const minFps = state.policy.min_capture_fps || 0;
  if (sustained < minFps) return fallBack("slow");
  const fps = Math.min(state.policy.capture_fps || cfg.fps, sustained);
  const intervalMs = 1000 / fps;
  if (Math.abs(intervalMs - state.intervalMs) / state.intervalMs > 0.2) {
    state.intervalMs = intervalMs;
    if (state.timer) startTimer();
  }
  const slower = fps < (state.policy.capture_fps || cfg.fps) * 0.95;
  setPath("device", sendCrop() ? "crop" : "cues", slower ? `${fps < 1 ? fps.toFixed(2) : fps.toFixed(1)} pictures` : "");
}

const liveTrack = () => state.stream && state.stream.getVideoTracks().find((t) => t.readyState === "live");

async function openCamera() {
  if (state.stream && liveTrack()) return true;
  state.stream = null;
  setStatus("camera");
  const { stream, error, detail } = await askCamera();
  if (["ending", "ended", "end-failed"].includes(statusEl.dataset.state)) { // Stop meanwhile
    if (stream) stream.getTracks().forEach((t) => t.stop());
    return false;
  }
  if (!stream) {
    setStatus(error, detail);
    return false;
  }
  state.stream = stream;
  for (const t of state.stream.getVideoTracks()) t.addEventListener("ended", cameraLost);
  video.srcObject = state.stream;
  await video.play().catch(() => {});
  return true;
}

// The camera went away while recording (unplugged, permission withdrawn, another app took it).
function cameraLost() {
  if (state.userStopped || state.paused || !state.stream) return;
  stopCapture();
  state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  video.srcObject = null;
  setStatus("camera-lost");
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  // a numbers-only client says so, so its first credit is for cues frames (docs/protocol.md)
  const kind = state.path === "device" && !sendCrop() ? "?kind=cues" : "";
  const ws = new WebSocket(`${proto}://${location.host}${cfg.wsPath}${kind}`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  state.ready = false;
  ws.onmessage = (ev) => { if (state.ws === ws) onMessage(JSON.parse(ev.data)); };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return; // a socket replaced by a newer one (Retry, back online)
    const wasReady = state.ready;
    state.ready = false;
    if (state.userStopped) return;
    const told = state.closing || {};
    state.closing = null;
    const code = ev.code === 1006 && told.code ? told.code : ev.code;
    const reason = told.reason || ev.reason;
    if (code === CLOSE_ENDED || REFUSED.includes(code)) return refused(code, reason);
    if (!wasReady) state.failures += 1;
    if (state.failures >= MAX_FAILURES) {
      // say so and offer Retry, but keep trying now and then, and at once when back online
      stopCapture();
      setStatus("disconnected");
      setTimeout(() => { if (!state.userStopped && state.ws === ws) connect(); }, SLOW_RETRY_MS);
      return;
    }
    setStatus("reconnecting");
    setTimeout(() => { if (!state.userStopped && state.ws === ws) connect(); }, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 8000);
  };
}

// Pausing lets the camera go (its light goes off); Resume asks for it again.
function releaseCamera() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  video.srcObject = null;
}

// The server will not take frames for this session: stop, and show its reason.
function refused(code, reason) {
  if (code === CLOSE_ENDED) return finish(false, sentence(reason));
  state.userStopped = true;
  stopCapture();
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  video.srcObject = null;
  setStatus("error", sentence(reason) || FALLBACK_REASON[code] || "");
}

function onMessage(msg) {
  if ("credit" in msg) state.credit = msg.credit;
  if (msg.type === "ready") {
    state.ready = true;
    state.backoff = 500;
    state.failures = 0;
    state.nextSeq = Math.max(state.nextSeq, msg.next_sequence);
    if (msg.max_frame_bytes) state.maxFrameBytes = msg.max_frame_bytes;
    if (msg.server_time) state.clockOffset = Date.parse(msg.server_time) - Date.now();
    onDevicePolicy(msg.device);
    if (state.path === "none") return setStatus("unavailable");
    if (!state.paused && !liveTrack()) return cameraLost();
    if (!state.timer && !state.userStopped) startTimer();
    setStatus(state.paused ? "paused" : "sending");
  } else if (msg.type === "ack") {
    if (msg.status === "dropped") state.skipped += 1;
    if (msg.status === "rejected") {
      // one refused picture can be noise; several in a row mean nothing is being recorded
      state.rejected += 1;
      state.rejectedInRow += 1;
      if (state.rejectedInRow >= 3 && statusEl.dataset.state === "sending") setStatus("refusing", sentence(msg.reason));
    } else if (msg.status === "accepted") {
      state.rejectedInRow = 0;
      if (statusEl.dataset.state === "refusing") setStatus("sending");
    }
  } else if (msg.type === "summary") {
    $("engagement").textContent = msg.engagement == null ? "—" : `${percent(msg.engagement)} (${msg.band})`;
    faceHint.hidden = !(noFaceSeconds(msg) >= FACE_HINT_S && ["sending", "refusing"].includes(statusEl.dataset.state));
  } else if (msg.type === "closed") {
    // the close frame that follows carries the code; keep the reason for when it arrives
    state.closing = { code: msg.code, reason: msg.reason };
  }
  $("skipped").textContent = state.skipped;
}

// The server's word on the device path wins over what the page was rendered with; a server
// whose "ready" says nothing of it takes full pictures only.
function onDevicePolicy(device) {
  state.serverTakesDevice = !!device;
  if (!device) return state.path === "device" && fallBack("server");
  const before = sendCrop();
  state.policy = { ...state.policy, ...device };
  if (state.path === "picture" && !state.policy.allow_full_pictures) fallBack(state.device ? "slow" : "load");
  else if (state.path === "device" && before !== sendCrop()) setPath("device", sendCrop() ? "crop" : "cues");
}

// How long the server has seen no face: since the last one, else since the session started.
function noFaceSeconds(msg) {
  if (msg.present) return 0;
  if (msg.absent_for != null) return msg.absent_for;
  return msg.at && msg.started_at ? (Date.parse(msg.at) - Date.parse(msg.started_at)) / 1000 : 0;
}

function capture() {
  const ws = state.ws;
  if (state.paused || !state.ready || !ws || ws.readyState !== WebSocket.OPEN || state.encoding) return;
  if (!state.path || state.path === "none") return; // the model is loading, or nothing may go
  if (!liveTrack()) return cameraLost();
  if (!video.videoWidth) return;
  if (state.credit <= 0) {  // the server is busy: skip this picture rather than queue it
    state.skipped += 1;
    $("skipped").textContent = state.skipped;
    const now = Date.now();
    if (now - state.lastPing > 2000) { state.lastPing = now; ws.send(JSON.stringify({ type: "ping" })); }
    return;
  }
  const w = Math.min(cfg.width, video.videoWidth);
  const h = Math.round((w * video.videoHeight) / video.videoWidth);
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(video, 0, 0, w, h);
  state.encoding = true;
  state.credit -= 1;
  if (state.path === "device") return captureOnDevice(ws);
  canvas.toBlob(async (blob) => {
    state.encoding = false;
    if (!blob || ws.readyState !== WebSocket.OPEN) return;
    if (blob.size > state.maxFrameBytes) { state.credit += 1; state.skipped += 1; return; }
    sendFrame(ws, {}, new Uint8Array(await blob.arrayBuffer())); // today's header: no "kind"
  }, "image/jpeg", 0.8);
}

// One picture analysed here: the crop and cues (emotion on), else the cues alone, no image.
async function captureOnDevice(ws) {
  const capturedAt = new Date(Date.now() + state.clockOffset).toISOString();
  let result;
  try {
    result = await state.device.analyse(canvas);
  } catch (err) {
    state.encoding = false;
    state.credit += 1;
    console.warn("face analysis:", err && err.message); // eslint-disable-line no-console
    return fallBack("load");
  }
  state.encoding = false;
  adapt(result.ms);
  if (state.path !== "device" || ws.readyState !== WebSocket.OPEN) { state.credit += 1; return; }
  const withCrop = sendCrop() && result.crop;
  sendFrame(ws, { kind: withCrop ? "crop" : "cues", cues: result.cues, captured_at: capturedAt },
    withCrop ? result.crop : new Uint8Array(0));
}

// The stream's framing: 4-byte big-endian header length, JSON header, then the bytes.
function sendFrame(ws, fields, body) {
  const header = new TextEncoder().encode(JSON.stringify({
    sequence: state.nextSeq, captured_at: new Date(Date.now() + state.clockOffset).toISOString(), ...fields,
  }));
  state.nextSeq += 1;
  const msg = new Uint8Array(4 + header.length + body.length);
  new DataView(msg.buffer).setUint32(0, header.length);
  msg.set(header, 4);
  msg.set(body, 4 + header.length);
  ws.send(msg);
  state.lastKind = fields.kind || "picture";
  state.sent += 1;
  $("sent").textContent = state.sent;
}

function stopCapture() {
  clearInterval(state.timer);
  state.timer = null;
}

// End the session on the server; null when it is ended (now or before), else why not.
async function endOnServer() {
  const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  let res;
  try {
    res = await fetch(cfg.endUrl, {
      method: "POST", credentials: "same-origin", keepalive: true,
      headers: { "X-CSRFToken": csrf ? csrf.split("=")[1] : "", Accept: "application/json" },
    });
  } catch {
    return "the server could not be reached. Check your connection, then press Stop again.";
  }
  if (res.ok || res.status === 409) return null; // 409: it had already ended
  const body = await res.json().catch(() => null);
  const why = (body && body.error && body.error.message) || `the server answered ${res.status}`;
  return `${why}. Press Stop again to retry.`;
}

async function finish(endIt, why = "") {
  state.userStopped = true;
  stopCapture();
  if (state.ws) state.ws.close(1000);
  releaseCamera();
  if (endIt) {
    setStatus("ending");
    const failed = await endOnServer();
    if (failed) return setStatus("end-failed", failed);
  }
  setStatus("ended", why);
  showSummary();
}

// The end screen: what the session recorded, from the session's report.
async function showSummary() {
  const box = $("ended"), out = $("ended-summary");
  box.hidden = false;
  let r = null;
  try {
    const res = await fetch(cfg.reportUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (res.ok) r = await res.json();
  } catch { /* said below */ }
  if (!r) { out.textContent = "The summary could not be loaded; your instructor's reports have it."; return; }
  const parts = [`${duration(r.duration_s * 1000)} long`, `${r.n_frames} picture${r.n_frames === 1 ? "" : "s"} analysed`];
  if (r.engagement != null) parts.push(`engagement ${percent(r.engagement)} (${r.band})`);
  out.textContent = `This session: ${parts.join(" · ")}.`;
}

startBtn.addEventListener("click", async () => {
  if (state.path === "none") return setStatus("unavailable");
  if (!(await openCamera())) return;
  state.paused = false;
  state.userStopped = false;
  state.failures = 0;
  state.backoff = 500;
  if (!state.ws || state.ws.readyState > WebSocket.OPEN) { setStatus("connecting"); connect(); }
  else setStatus("sending");
  if (!state.timer && state.path !== "none") startTimer();
});
pauseBtn.addEventListener("click", async () => {
  if (!state.paused) {
    state.paused = true;
    releaseCamera();
    return setStatus("paused");
  }
  state.paused = false; // a camera that fails now says why, and Start tries again
  if (await openCamera()) setStatus(state.ready ? "sending" : "connecting");
});
stopBtn.addEventListener("click", () => finish(true));
window.addEventListener("offline", () => { if (state.ws) state.ws.close(); });
window.addEventListener("online", () => {
  if (state.userStopped || !["disconnected", "reconnecting"].includes(statusEl.dataset.state)) return;
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) return; // one is on its way already
  state.failures = 0;
  state.backoff = 500;
  setStatus("reconnecting");
  connect();
});

if (!cfg.open) { state.userStopped = true; setStatus("ended"); showSummary(); }
else { setStatus("idle"); prepareDevice(); }
window.affectRecorder = state;
