// Face analysis on the learner's device: Human (vendored in static/vendor/human, models served
// from our static files) finds the face; this module turns its mesh into the cues of the shared
// device-frame spec (docs/device.md) and frames the 48×48 grayscale crop exactly as the server
// does (ml/faces.py square_crop around the Haar alt2 box).

// Haar alt2 box from the tight facemesh box (measured by scripts/calibrate_device_box.py on
// ten real faces, figures in docs/device.md): side = SIDE × mesh width, centre moved by DX, DY
// mesh widths.
export const HAAR_FROM_MESH = { side: 1.312, dx: 0.011, dy: -0.083 };
export const MARGIN = 0.025; // ml/faces.py DetectorConfig.margin
export const CROP = 48;

// MediaPipe facemesh indices: eye corners and lids for the eye aspect ratio (Soukupová &
// Čech 2016), irises for gaze (Human appends them as points 468-472 and 473-477; 473 is
// the iris of the eye whose corners are 33/133, as in Human's own gaze code).
const EYE = {
  right: { outer: 33, inner: 133, top: [160, 158], bottom: [144, 153] },
  left: { outer: 263, inner: 362, top: [387, 385], bottom: [373, 380] },
};
const IRIS = { right: 473, left: 468 };
// an eyeball's radius is about 0.4 of the eye opening's width: iris offset → angle
const EYEBALL_PER_WIDTH = 0.4;
// the iris centre sits above the corners' line when looking straight ahead: 0.14 radii on
// real footage (ten GRID speakers reading to the camera, tests/data/grid; docs/device.md)
export const IRIS_ABOVE_CORNERS = 0.14;

const DEG = 180 / Math.PI;
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round = (v, n = 4) => Math.round(v * 10 ** n) / 10 ** n;
const dist = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);

function humanConfig(modelBase, backend) {
  const off = { enabled: false };
  return {
    backend, modelBasePath: modelBase, warmup: "none", debug: false, async: true,
    cacheModels: false, cacheSensitivity: 0, filter: { enabled: false }, gesture: off,
    body: off, hand: off, object: off, segmentation: off,
    face: {
      enabled: true,
      detector: { modelPath: "blazeface.json", rotation: false, maxDetected: 1, return: false },
      mesh: { enabled: true, modelPath: "facemesh.json" },
      iris: { enabled: true, modelPath: "iris.json" },
      attention: off, description: off, emotion: off, antispoof: off, liveness: off, gear: off,
    },
  };
}

// Load the model; throws when it cannot (missing files, no usable backend).
// WebGL where the browser has it (a GPU, or software rendering), else tfjs's plain cpu backend.
export async function loadDeviceFace({ modelBase, backend = "webgl" }) {
  const { Human } = await import("../vendor/human/human.esm.js");
  const base = new URL(modelBase, location.href).href.replace(/\/?$/, "/");
  const human = new Human(humanConfig(base, backend));
  // Human probes WebAssembly features for tfjs's wasm backend, which we do not use; the probe
  // compiles a tiny module, which the page's CSP (no 'wasm-unsafe-eval') reports. Answer it.
  for (const flag of ["WASM_HAS_SIMD_SUPPORT", "WASM_HAS_MULTITHREAD_SUPPORT"]) {
    try { human.tf.env().set(flag, false); } catch { /* flag not registered: no probe either */ }
  }
  if (backend !== "cpu" && !(await human.tf.setBackend(backend).catch(() => false))) {
    human.config.backend = "cpu"; // no WebGL here (a GPU switched off, an old browser)
  }
  await human.load();
  await human.tf.ready();
  // Human logs rather than throws when a model file is missing: check the face models are in
  const stats = human.models.stats().modelStats;
  const ok = (m) => stats.some((s) => s.name === m && s.loaded);
  const missing = ["blazeface", "facemesh"].filter((m) => !ok(m));
  if (missing.length) throw new Error(`face model did not load from ${base} (${missing.join(", ")} missing)`);
  const canvas = document.createElement("canvas");
  return {
    backend: human.tf.getBackend(),
    async analyse(source) {
      const t0 = performance.now();
      const w = source.videoWidth || source.width, h = source.videoHeight || source.height;
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(source, 0, 0, w, h);
      const res = await human.detect(canvas);
      const found = res.face && res.face.find((f) => f.mesh && f.mesh.length >= 468);
      if (!found) return { face: null, cues: { face: false }, crop: null, ms: performance.now() - t0 };
      const box = haarBox(found.mesh, w, h);
      const gray = toGray(ctx.getImageData(0, 0, w, h));
      const crop = squareCrop(gray, w, h, box, MARGIN, CROP);
      const cues = faceCues(found, box, w, h);
      return { face: found, cues, crop, ms: performance.now() - t0 };
    },
  };
}

// The tight box around the mesh's 468 face points, then the Haar-equivalent box (pixels).
export function meshBox(mesh) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const [x, y] of mesh.slice(0, 468)) {
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
  }
  return [x0, y0, x1 - x0, y1 - y0];
}

export function haarBox(mesh, w, h, map = HAAR_FROM_MESH) {
  const [mx, my, mw, mh] = meshBox(mesh);
  const side = map.side * mw;
  const cx = mx + mw / 2 + map.dx * mw, cy = my + mh / 2 + map.dy * mw;
  // clip to the picture (the spec's box is a fraction of it); the crop pads what is outside
  const x0 = clamp(cx - side / 2, 0, w), y0 = clamp(cy - side / 2, 0, h);
  const x1 = clamp(cx + side / 2, 0, w), y1 = clamp(cy + side / 2, 0, h);
  return { px: [cx - side / 2, cy - side / 2, side, side], clipped: [x0, y0, x1 - x0, y1 - y0] };
}

// OpenCV's COLOR_RGB2GRAY, bit for bit: fixed point 0.299 R + 0.587 G + 0.114 B, rounded.
export function toGray(image) {
  const { data, width, height } = image;
  const out = new Uint8Array(width * height);
  for (let i = 0, j = 0; j < out.length; i += 4, j += 1) {
    out[j] = (data[i] * 4899 + data[i + 1] * 9617 + data[i + 2] * 1868 + 8192) >> 14;
  }
  return out;
}

// ml/faces.py square_crop: a square centred on the box, grown by margin a side, edge-padded,
// then resized to size×size by area averaging (OpenCV INTER_AREA; linear when enlarging).
export function squareCrop(gray, W, H, box, margin, size) {
  const [x, y, bw, bh] = box.px;
  const side = Math.max(bw, bh) * (1 + 2 * margin);
  const cx = x + bw / 2, cy = y + bh / 2;
  const x0 = pyRound(cx - side / 2), y0 = pyRound(cy - side / 2);
  const s = Math.max(1, pyRound(side));
  const at = (r, c) => gray[clamp(r, 0, H - 1) * W + clamp(c, 0, W - 1)]; // BORDER_REPLICATE
  const src = new Float64Array(s * s);
  for (let r = 0; r < s; r += 1) for (let c = 0; c < s; c += 1) src[r * s + c] = at(y0 + r, x0 + c);
  return s > size ? areaResize(src, s, size) : linearResize(src, s, size);
}

// Python's round(): halves to even, as int(round(v)) in square_crop.
function pyRound(v) {
  const f = Math.floor(v), d = v - f;
  if (Math.abs(d - 0.5) < 1e-9) return f % 2 === 0 ? f : f + 1;
  return Math.round(v);
}

function areaResize(src, s, size) {
  const scale = s / size, out = new Uint8Array(size * size);
  const spans = [];
  for (let o = 0; o < size; o += 1) { // each output pixel covers [o·scale, (o+1)·scale) of the input
    const a = o * scale, b = (o + 1) * scale, parts = [];
    for (let i = Math.floor(a); i < Math.ceil(b - 1e-9); i += 1) {
      const wgt = Math.min(b, i + 1) - Math.max(a, i);
      if (wgt > 1e-9) parts.push([i, wgt / scale]);
    }
    spans.push(parts);
  }
  for (let r = 0; r < size; r += 1) {
    for (let c = 0; c < size; c += 1) {
      let v = 0;
      for (const [i, wi] of spans[r]) for (const [j, wj] of spans[c]) v += src[i * s + j] * wi * wj;
      out[r * size + c] = clamp(Math.round(v), 0, 255);
    }
  }
  return out;
}

function linearResize(src, s, size) { // OpenCV INTER_LINEAR: half-pixel centres, edges clamped
  const out = new Uint8Array(size * size), scale = s / size;
  const coord = (o) => {
    const f = clamp((o + 0.5) * scale - 0.5, 0, s - 1), i = Math.min(Math.floor(f), s - 2);
    return s === 1 ? [0, 0] : [Math.max(i, 0), f - Math.max(i, 0)];
  };
  for (let r = 0; r < size; r += 1) {
    const [i, fy] = coord(r);
    for (let c = 0; c < size; c += 1) {
      const [j, fx] = coord(c), j1 = Math.min(j + 1, s - 1), i1 = Math.min(i + 1, s - 1);
      const v = (1 - fy) * ((1 - fx) * src[i * s + j] + fx * src[i * s + j1])
        + fy * ((1 - fx) * src[i1 * s + j] + fx * src[i1 * s + j1]);
      out[r * size + c] = clamp(Math.round(v), 0, 255);
    }
  }
  return out;
}

// Eye aspect ratio: mean lid gap over corner-to-corner width.
function ear(mesh, eye) {
  const wdt = dist(mesh[eye.outer], mesh[eye.inner]);
  if (!wdt) return 0;
  const gap = (dist(mesh[eye.top[0]], mesh[eye.bottom[0]]) + dist(mesh[eye.top[1]], mesh[eye.bottom[1]])) / 2;
  return clamp(gap / wdt, 0, 1);
}

// Gaze from where each iris sits between its eye's corners, in the head's frame: the offset
// from the corners' midpoint over the eyeball's radius is the sine of the eye's turn.
function gaze(mesh) {
  if (mesh.length < 478) return { yaw: null, pitch: null };
  const one = (eye, iris) => {
    let a = mesh[eye.outer], b = mesh[eye.inner];
    if (a[0] > b[0]) [a, b] = [b, a]; // a: the corner on the picture's left
    const p = mesh[iris], wdt = dist(a, b), r = EYEBALL_PER_WIDTH * wdt;
    const ux = (b[0] - a[0]) / wdt, uy = (b[1] - a[1]) / wdt; // along the eye, picture's +x
    const dx = p[0] - (a[0] + b[0]) / 2, dy = p[1] - (a[1] + b[1]) / 2;
    // x: + toward the picture's right, the learner's left; y: + down the picture
    return { x: (dx * ux + dy * uy) / r, y: (-dx * uy + dy * ux) / r };
  };
  const r = one(EYE.right, IRIS.right), l = one(EYE.left, IRIS.left);
  const hx = (r.x + l.x) / 2, hy = (r.y + l.y) / 2 + IRIS_ABOVE_CORNERS;
  return { yaw: Math.asin(clamp(hx, -1, 1)) * DEG, pitch: -Math.asin(clamp(hy, -1, 1)) * DEG };
}

// The spec's cues from Human's face result and our Haar-equivalent box.
export function faceCues(face, box, w, h) {
  const [x, y, bw, bh] = box.clipped;
  const a = face.rotation && face.rotation.angle ? face.rotation.angle : { yaw: 0, pitch: 0, roll: 0 };
  const g = gaze(face.mesh);
  const deg = (rad, lim) => round(clamp(rad * DEG, -lim, lim), 2);
  return {
    face: true,
    box: [x / w, y / h, bw / w, bh / h].map((v) => round(clamp(v, 0, 1))),
    // Human's yaw and pitch are + for turning right and looking down: the spec's are the
    // opposite (checked on the footage against the nose's offset from the cheeks)
    yaw: deg(-a.yaw, 90),
    pitch: deg(-a.pitch, 90),
    roll: deg(a.roll, 180),
    eye_open_left: round(ear(face.mesh, EYE.left)),
    eye_open_right: round(ear(face.mesh, EYE.right)),
    gaze_yaw: g.yaw == null ? null : round(clamp(g.yaw, -90, 90), 2),
    gaze_pitch: g.pitch == null ? null : round(clamp(g.pitch, -90, 90), 2),
    // as ml/faces.py computes them from its box
    area_fraction: round((bw * bh) / (w * h)),
    center_offset: round(Math.hypot((x + bw / 2) / w - 0.5, (y + bh / 2) / h - 0.5)),
  };
}
