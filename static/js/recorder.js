// Learner recording page: webcam → JPEG stills → session WebSocket, honouring the credit window.
const cfg = JSON.parse(document.getElementById("recorder-config").textContent);
const $ = (id) => document.getElementById(id);
const video = $("preview"), canvas = $("grab"), statusEl = $("status");
const startBtn = $("start"), pauseBtn = $("pause"), stopBtn = $("stop");

const MESSAGES = {
  idle: "Not recording. Press Start when you are ready.",
  camera: "Asking for your camera…",
  connecting: "Connecting to the server…",
  sending: "Recording: pictures are being sent.",
  paused: "Paused. Nothing is being sent.",
  reconnecting: "Connection lost — reconnecting…",
  disconnected: "Could not reach the server. Check your connection, then press Retry.",
  "camera-denied": "Camera access was denied. Allow the camera for this site in your browser settings, then press Start again.",
  "no-camera": "No camera was found on this device.",
  "camera-busy": "The camera is in use by another program (a video call?) or not working. Close that program, then press Start again.",
  "camera-insecure": "The browser only allows the camera on a secure page (https://). Ask whoever runs this site to serve it over HTTPS.",
  "camera-error": "The camera could not be started.",
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
};
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
  startBtn.disabled = ["sending", "refusing", "connecting", "reconnecting", "camera", "ended", "error", "end-failed", "ending"].includes(kind);
  pauseBtn.disabled = !["sending", "refusing", "paused"].includes(kind);
  pauseBtn.textContent = kind === "paused" ? "Resume" : "Pause";
  stopBtn.disabled = ["idle", "ended", "ending", "camera-denied", "no-camera", "camera", "camera-busy",
    "camera-insecure", "camera-error"].includes(kind);
}

const CAMERA_ERRORS = {
  NotAllowedError: "camera-denied", SecurityError: "camera-denied",
  NotFoundError: "no-camera", OverconstrainedError: "no-camera",
  NotReadableError: "camera-busy", AbortError: "camera-busy",
};

const liveTrack = () => state.stream && state.stream.getVideoTracks().find((t) => t.readyState === "live");

async function openCamera() {
  if (state.stream && liveTrack()) return true;
  state.stream = null;
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("camera-insecure");
    return false;
  }
  setStatus("camera");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
  } catch (err) {
    const name = (err && err.name) || "";
    setStatus(CAMERA_ERRORS[name] || "camera-error", CAMERA_ERRORS[name] ? "" : `(${name || err})`);
    return false;
  }
  for (const t of state.stream.getVideoTracks()) t.addEventListener("ended", cameraLost);
  video.srcObject = state.stream;
  await video.play().catch(() => {});
  return true;
}

// The camera went away while recording (unplugged, permission withdrawn, another app took it).
function cameraLost() {
  if (state.userStopped || !state.stream) return;
  stopCapture();
  state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  video.srcObject = null;
  setStatus("camera-lost");
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}${cfg.wsPath}`);
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
    if (!liveTrack()) return cameraLost();
    if (!state.timer && !state.userStopped) state.timer = setInterval(capture, 1000 / cfg.fps);
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
    $("engagement").textContent = msg.engagement == null ? "—" :
      `${Math.round(msg.engagement * 100)} % (${msg.band})`;
  } else if (msg.type === "closed") {
    // the close frame that follows carries the code; keep the reason for when it arrives
    state.closing = { code: msg.code, reason: msg.reason };
  }
  $("skipped").textContent = state.skipped;
}

function capture() {
  const ws = state.ws;
  if (state.paused || !state.ready || !ws || ws.readyState !== WebSocket.OPEN || state.encoding) return;
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
  canvas.toBlob(async (blob) => {
    state.encoding = false;
    if (!blob || ws.readyState !== WebSocket.OPEN) return;
    if (blob.size > state.maxFrameBytes) { state.credit += 1; state.skipped += 1; return; }
    const header = new TextEncoder().encode(JSON.stringify({
      sequence: state.nextSeq, captured_at: new Date(Date.now() + state.clockOffset).toISOString(),
    }));
    state.nextSeq += 1;
    const body = new Uint8Array(await blob.arrayBuffer());
    const msg = new Uint8Array(4 + header.length + body.length);
    new DataView(msg.buffer).setUint32(0, header.length);
    msg.set(header, 4);
    msg.set(body, 4 + header.length);
    ws.send(msg);
    state.sent += 1;
    $("sent").textContent = state.sent;
  }, "image/jpeg", 0.8);
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
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  video.srcObject = null;
  if (endIt) {
    setStatus("ending");
    const failed = await endOnServer();
    if (failed) return setStatus("end-failed", failed);
  }
  setStatus("ended", why);
}

startBtn.addEventListener("click", async () => {
  if (!(await openCamera())) return;
  state.paused = false;
  state.userStopped = false;
  state.failures = 0;
  state.backoff = 500;
  if (!state.ws || state.ws.readyState > WebSocket.OPEN) { setStatus("connecting"); connect(); }
  else setStatus("sending");
  if (!state.timer) state.timer = setInterval(capture, 1000 / cfg.fps);
});
pauseBtn.addEventListener("click", () => {
  state.paused = !state.paused;
  setStatus(state.paused ? "paused" : "sending");
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

if (!cfg.open) setStatus("ended");
else setStatus("idle");
window.affectRecorder = state;
