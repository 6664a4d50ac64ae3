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
};

const sentence = (text) => {
  const t = (text || "").trim();
  if (!t) return "";
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
};

function setStatus(kind, extra = "") {
  statusEl.dataset.state = kind;
  statusEl.textContent = MESSAGES[kind] + (extra ? " " + extra : "");
  startBtn.textContent = kind === "disconnected" ? "Retry" : "Start";
  startBtn.disabled = ["sending", "connecting", "reconnecting", "camera", "ended", "error"].includes(kind);
  pauseBtn.disabled = !["sending", "paused"].includes(kind);
  pauseBtn.textContent = kind === "paused" ? "Resume" : "Pause";
  stopBtn.disabled = ["idle", "ended", "camera-denied", "no-camera", "camera"].includes(kind);
}

async function openCamera() {
  if (state.stream) return true;
  setStatus("camera");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
  } catch (err) {
    setStatus(err && err.name === "NotFoundError" ? "no-camera" : "camera-denied");
    return false;
  }
  video.srcObject = state.stream;
  await video.play().catch(() => {});
  return true;
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}${cfg.wsPath}`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  state.ready = false;
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    const wasReady = state.ready;
    state.ready = false;
    if (state.userStopped || state.ws !== ws) return;
    const told = state.closing || {};
    state.closing = null;
    const code = ev.code === 1006 && told.code ? told.code : ev.code;
    const reason = told.reason || ev.reason;
    if (code === CLOSE_ENDED || REFUSED.includes(code)) return refused(code, reason);
    if (!wasReady) state.failures += 1;
    if (state.failures >= MAX_FAILURES) {
      stopCapture();
      return setStatus("disconnected");
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
    setStatus(state.paused ? "paused" : "sending");
  } else if (msg.type === "ack") {
    if (msg.status === "dropped") state.skipped += 1;
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
      sequence: state.nextSeq, captured_at: new Date().toISOString(),
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

function finish(endOnServer, why = "") {
  state.userStopped = true;
  stopCapture();
  if (state.ws) state.ws.close(1000);
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  video.srcObject = null;
  setStatus("ended", why);
  if (endOnServer) {
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
    fetch(cfg.endUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRFToken": csrf ? csrf.split("=")[1] : "" },
    });
  }
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

if (!cfg.open) setStatus("ended");
else setStatus("idle");
window.affectRecorder = state;
