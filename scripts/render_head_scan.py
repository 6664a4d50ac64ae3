"""Render the Lee Perry-Smith head scan at known head poses: test pictures with ground-truth
yaw, pitch and roll for the device module's head pose (tests/data/head_scan).

The scan (CC BY 3.0, Lee Perry-Smith / Infinite-Realities; tests/data/head_scan/README.md says
where from) is drawn by three.js (the ``three`` npm package, 0.187.0) in Debian's headless
Chromium with software WebGL, launched as scripts/device_harness.py launches it. The camera is
a webcam's: perspective, 50° field of view, level with the head and looking straight at it,
480×480. The HEAD turns, about a point between its ears; the camera and the lights stay put (a
white light from the camera's direction, a little above, and an even ambient light) in front
of a plain light-grey background.

Angles, in degrees, with the cues' signs (docs/protocol.md, docs/device.md): yaw + = the head
turns to its own left (the nose toward the picture's right), pitch + = head up, roll + = the
head tilts toward its own left shoulder (the top of the head toward the picture's right; the
device reads a tilt toward the right shoulder as negative). A pose is yaw, then pitch, then
roll, each about the head's own axes as turned by the ones before (three.js Euler order YXZ:
R = Ry(yaw) · Rx(−pitch) · Rz(−roll), camera looking down −z). 0/0/0 is the calibrated frontal
pose (FRONTAL, below): the face's mirror-symmetry plane contains the camera's axis and the
Frankfort horizontal (ear canal to lowest point of the eye socket) is level.

Needs the scan's files (LeePerrySmith.glb, Map-COL.jpg, Infinite-Level_02_Tangent_SmoothUV.jpg
from three.js's examples/models/gltf/LeePerrySmith/) in one folder, checked by sha256 against
SOURCES, and three.js 0.187.0 (``--three`` a node_modules/three folder; without it, npm installs
it once into /tmp/three-0.187.0).

    PYTHONPATH=. python scripts/render_head_scan.py --assets DIR [--three DIR]
        [--out tests/data/head_scan]
    # a few poses only, anywhere (e.g. to check signs or framing):
    PYTHONPATH=. python scripts/render_head_scan.py --assets DIR --out /tmp/x \\
        --pose 30,0,0 --pose=-20,0,0 [--no-frontal] [--ortho]
    # the symmetry half of the frontal calibration, from the mesh alone:
    PYTHONPATH=. python scripts/render_head_scan.py --assets DIR --symmetry
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import http.server
import json
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from scripts.device_harness import CHROMIUM, ROOT, WEBGL_ARGS

OUT = ROOT / "tests" / "data" / "head_scan"
THREE_VERSION = "0.187.0"
THREE_CACHE = Path(f"/tmp/three-{THREE_VERSION}")
SIZE = 480
QUALITY = 90
FOV = 50.0
# the scan's files and their sha256 (three.js examples/models/gltf/LeePerrySmith/, see the README)
SOURCES = {
    "LeePerrySmith.glb": "402b8a8ac9f03232e6d64b5962929703a069daf99d3c49ac8eb0e48bedc9c576",
    "Map-COL.jpg": "e976d73b31407f8d0967412bf468019ed26a5d5a32cf5811aabff7e816458a65",
    "Infinite-Level_02_Tangent_SmoothUV.jpg": (
        "36925e51ad9b324b94e8faf4692da1b4132809f2762bb8d5bd549ffd215d4ca6"
    ),
}
# The scan's native orientation to the frontal pose, applied to the mesh before any pose (same
# signs as a pose). yaw and roll: the mirror-symmetry fit (--symmetry) finds the plane within
# 0.2° of the model's x = 0 plane, so none. pitch: on an orthographic profile (--pose 90,0,0
# --no-frontal --ortho) the Frankfort line from the top of the ear canal to the lowest point of
# the eye socket's rim rises toward the face by about 4-5° (both sides, placed by eye): the scan
# has its head raised about 5°, and pitch -5 levels it (within about 2°; see the README).
FRONTAL = {"yaw": 0.0, "pitch": -5.0, "roll": 0.0}
# the point the head turns about, model units (the scan's head is about 3.6 wide, ear to ear):
# midway between the ear canals
PIVOT = (0.0, 1.3, 0.35)
# camera distance from the pivot, model units (about 9.8 × 4.2 cm = 41 cm for a 15 cm wide head);
# the camera is AIM above the pivot, its axis horizontal (so the head sits a little low)
DISTANCE = 9.8
AIM = 0.25
# the neck, model units: above `chin` (the chin's underside) the head turns rigidly with the
# pose; below `base` (the neck's base), or further than 2 `radius` from the neck's vertical
# axis (at x = 0, z) below the chin, the shoulders stay; in between a smooth blend
NECK = {"base": -2.8, "chin": -1.1, "radius": 1.2, "z": -0.5}
BACKGROUND = "#b8b8b8"


def grid() -> list[tuple[int, int, int]]:
    """The poses written to tests/data/head_scan: (yaw, pitch, roll)."""
    poses = [(y, 0, 0) for y in range(-45, 46, 15)]  # -45 .. +45, frontal included
    poses += [(y, 0, 0) for y in (-40, -25, -20, -10, 10, 20, 25, 40)]
    poses += [(0, p, 0) for p in (-30, -20, -15, -10, 10, 15, 20, 30)]
    poses += [(0, 0, r) for r in (-30, -15, 15, 30)]
    poses += [(y, p, 0) for y in (-20, 20) for p in (-15, 15)]
    poses += [(-30, 15, 0), (30, -15, 0), (0, 10, 15), (20, 0, -15)]
    return sorted(set(poses), key=lambda p: (p[1] != 0 or p[2] != 0, p[2] != 0, p))


def name(pose: tuple[float, float, float]) -> str:
    y, p, r = (int(round(v)) for v in pose)
    return f"yaw{y:+03d}_pitch{p:+03d}_roll{r:+03d}.jpg"


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>head scan</title>
<style>html,body{margin:0;background:#000}</style>
<script type="importmap">
{"imports": {"three": "/three/build/three.module.js", "three/addons/": "/three/examples/jsm/"}}
</script>
<script type="module">
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

const DEG = Math.PI / 180;
let renderer, scene, camera, head, rest, weight;

// o: {size, fov, background, pivot, distance, aim, neck, frontal: {yaw, pitch, roll}, ortho}
async function setup(o) {
  renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(1);
  renderer.setSize(o.size, o.size);
  document.body.appendChild(renderer.domElement);
  scene = new THREE.Scene();
  scene.background = new THREE.Color(o.background);
  const [px, py, pz] = o.pivot;
  if (o.ortho) {
    const h = o.distance * Math.tan((o.fov / 2) * DEG);
    camera = new THREE.OrthographicCamera(-h, h, h, -h, 0.1, 100);
  } else {
    camera = new THREE.PerspectiveCamera(o.fov, 1, 0.1, 100);
  }
  // level with the pivot, straight down -z at the head; shifted up by `aim` (a shift, not a
  // tilt: the camera's axis stays horizontal, so a level head is level in the picture)
  camera.position.set(px, py + o.aim, pz + o.distance);
  camera.lookAt(px, py + o.aim, pz);
  // a white light from the camera (a little above it) and an even ambient light
  scene.add(new THREE.AmbientLight(0xffffff, 1.1));
  const key = new THREE.DirectionalLight(0xffffff, 2.0);
  key.position.set(px, py + o.distance * 0.25, pz + o.distance);
  key.target.position.set(px, py, pz);
  scene.add(key, key.target);

  const tex = new THREE.TextureLoader();
  const [gltf, map, normalMap] = await Promise.all([
    new GLTFLoader().loadAsync("/assets/LeePerrySmith.glb"),
    tex.loadAsync("/assets/Map-COL.jpg"),
    tex.loadAsync("/assets/Infinite-Level_02_Tangent_SmoothUV.jpg"),
  ]);
  map.colorSpace = THREE.SRGBColorSpace;
  // as three.js's webgl_decals example dresses it (no specular map here)
  const mesh = gltf.scene.children[0];
  mesh.material = new THREE.MeshPhongMaterial({
    map, normalMap, specular: 0x111111, shininess: 25,
  });
  // the frontal calibration, baked into the geometry: positions about the pivot
  mesh.frustumCulled = false;
  const g = mesh.geometry;
  const F = new THREE.Matrix4().makeRotationFromEuler(new THREE.Euler(
    -o.frontal.pitch * DEG, o.frontal.yaw * DEG, -o.frontal.roll * DEG, "YXZ"));
  g.translate(-px, -py, -pz);
  g.applyMatrix4(F);
  rest = { position: g.attributes.position.array.slice(), normal: g.attributes.normal.array.slice() };
  // how much of a pose a vertex takes: 1 from the chin up (the head turns rigidly), 0 on the
  // shoulders (they stay), smoothly through the neck; by height in the model
  const smooth = (a, b, x) => {
    const c = Math.min(1, Math.max(0, (x - a) / (b - a)));
    return c * c * (3 - 2 * c);
  };
  weight = new Float32Array(g.attributes.position.count);
  for (let i = 0; i < weight.length; i++) {
    const x = rest.position[3 * i] + px, y = rest.position[3 * i + 1] + py;
    const z = rest.position[3 * i + 2] + pz;
    // below the chin, away from the neck's axis is shoulder
    const r = Math.hypot(x, z - o.neck.z);
    weight[i] = smooth(o.neck.base, o.neck.chin, y) *
      (y >= o.neck.chin ? 1 : 1 - smooth(o.neck.radius, 2 * o.neck.radius, r));
  }
  mesh.position.set(px, py, pz);
  scene.add(mesh);
  head = mesh;
  return { vertices: weight.length, rigid: weight.filter((w) => w === 1).length,
           still: weight.filter((w) => w === 0).length,
           texture: [map.image.width, map.image.height] };
}

// p: {yaw, pitch, roll} in degrees, the cues' signs -> a PNG data URL
function render(p) {
  const q = new THREE.Quaternion().setFromEuler(new THREE.Euler(
    -p.pitch * DEG, p.yaw * DEG, -p.roll * DEG, "YXZ"));
  const one = new THREE.Quaternion(), qw = new THREE.Quaternion(), v = new THREE.Vector3();
  const pos = head.geometry.attributes.position, nor = head.geometry.attributes.normal;
  for (let i = 0; i < weight.length; i++) {
    const w = weight[i];
    const r = w === 1 ? q : w === 0 ? one : qw.slerpQuaternions(one, q, w);
    v.fromArray(rest.position, 3 * i).applyQuaternion(r).toArray(pos.array, 3 * i);
    v.fromArray(rest.normal, 3 * i).applyQuaternion(r).toArray(nor.array, 3 * i);
  }
  pos.needsUpdate = true;
  nor.needsUpdate = true;
  renderer.render(scene, camera);
  return renderer.domElement.toDataURL("image/png");
}

window.headScan = { setup, render };
</script></head><body></body></html>
"""


class _Files(http.server.SimpleHTTPRequestHandler):
    """/ -> the page, /three/... -> three.js, /assets/... -> the scan's files."""

    roots: dict[str, Path] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            return self._send(PAGE.encode(), "text/html")
        if path == "/favicon.ico":
            return self._send(b"", "image/x-icon")
        for prefix, root in self.roots.items():
            if path.startswith(prefix):
                f = (root / path[len(prefix) :]).resolve()
                if root.resolve() in f.parents and f.is_file():
                    kind = {".js": "text/javascript", ".jpg": "image/jpeg"}.get(
                        f.suffix, "application/octet-stream"
                    )
                    return self._send(f.read_bytes(), kind)
        self.send_error(404)

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve(three: Path, assets: Path) -> Iterator[str]:
    handler = type("Files", (_Files,), {"roots": {"/three/": three, "/assets/": assets}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def three_dir(given: Path | None) -> Path:
    """node_modules/three of version THREE_VERSION: the one given, or npm's into THREE_CACHE."""
    d = given or THREE_CACHE / "node_modules" / "three"
    if given is None and not (d / "build" / "three.module.js").exists():
        if not shutil.which("npm"):
            sys.exit("render_head_scan: no npm to install three; pass --three")
        THREE_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(THREE_CACHE),
                f"three@{THREE_VERSION}",
            ],
            check=True,
        )
    version = json.loads((d / "package.json").read_text())["version"]
    if version != THREE_VERSION:
        print(f"render_head_scan: warning: three {version}, rendered with {THREE_VERSION}")
    return d


def check_assets(assets: Path) -> None:
    for f, want in SOURCES.items():
        p = assets / f
        if not p.is_file():
            sys.exit(f"render_head_scan: {p} is missing (see tests/data/head_scan/README.md)")
        got = hashlib.sha256(p.read_bytes()).hexdigest()
        if got != want:
            print(f"render_head_scan: warning: {f} sha256 {got}, expected {want}")


def render(
    poses: list[tuple[float, float, float]],
    three: Path,
    assets: Path,
    frontal: dict | None = None,
    ortho: bool = False,
) -> list[np.ndarray]:
    """The poses as BGR pictures, SIZE × SIZE."""
    from playwright.sync_api import sync_playwright

    opts = {
        "size": SIZE,
        "fov": FOV,
        "background": BACKGROUND,
        "pivot": list(PIVOT),
        "distance": DISTANCE,
        "aim": AIM,
        "neck": NECK,
        "ortho": ortho,
        "frontal": FRONTAL if frontal is None else frontal,
    }
    out = []
    with sync_playwright() as p, serve(three, assets) as base:
        args = ["--no-sandbox", "--disable-dev-shm-usage", *WEBGL_ARGS]
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": SIZE, "height": SIZE})
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/")
            page.wait_for_function("window.headScan !== undefined", timeout=30_000)
            info = page.evaluate("o => window.headScan.setup(o)", opts)
            print(
                f"render_head_scan: {info['vertices']} vertices ({info['rigid']} turn with the"
                f" head, {info['still']} stay), texture {info['texture']}"
            )
            for y, pi, r in poses:
                url = page.evaluate(
                    "p => window.headScan.render(p)", {"yaw": y, "pitch": pi, "roll": r}
                )
                png = base64.b64decode(url.split(",", 1)[1])
                out.append(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR))
            if errors:
                print("render_head_scan: console errors:", *errors, sep="\n  ")
        finally:
            browser.close()
    return out


def glb_positions(path: Path) -> np.ndarray:
    """The scan's vertex positions (model units) from the GLB's one mesh."""
    b = path.read_bytes()
    n = struct.unpack("<I", b[12:16])[0]
    gltf = json.loads(b[20 : 20 + n])
    binary = b[20 + n + 8 :]
    a = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    view = gltf["bufferViews"][a["bufferView"]]
    off = view.get("byteOffset", 0) + a.get("byteOffset", 0)
    return np.frombuffer(binary, np.float32, a["count"] * 3, off).reshape(-1, 3).astype(float)


def symmetry(assets: Path) -> dict:
    """The yaw and roll that make the head (above the neck) mirror-symmetric about the model's
    x = 0 plane: the rotation (and x shift) minimising the distance from the mirrored vertices
    to the nearest vertices."""
    from scipy.optimize import minimize
    from scipy.spatial import cKDTree

    pts = glb_positions(assets / "LeePerrySmith.glb")
    head = pts[pts[:, 1] > -1.0]

    def rot(yaw, roll):
        a, c = np.radians([yaw, roll])
        ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
        return ry @ rz

    def cost(x):
        q = head @ rot(x[0], x[1]).T
        q[:, 0] += x[2]
        m = q * [-1, 1, 1]
        d, _ = cKDTree(q).query(m)
        return float(np.mean(np.minimum(d, 0.3) ** 2))

    starts = [(a, c, 0.0) for a in (-3, 0, 3) for c in (-3, 0, 3)]
    best = min((minimize(cost, s, method="Nelder-Mead") for s in starts), key=lambda r: r.fun)
    # rot(yaw, roll) turns the model toward its plane: +yaw about +y is the cues' yaw, +roll
    # about +z the cues' -roll; the model is off frontal by the opposite
    return {
        "rotation_yaw_deg": round(float(best.x[0]), 2),
        "rotation_z_deg": round(float(best.x[1]), 2),
        "x_shift": round(float(best.x[2]), 3),
        "rms_mirror_distance": round(float(np.sqrt(best.fun)), 4),
        "rms_mirror_distance_unrotated": round(float(np.sqrt(cost([0, 0, 0]))), 4),
        "head_vertices": len(head),
    }


def parse_pose(s: str) -> tuple[float, float, float]:
    y, p, r = (float(v) for v in s.split(","))
    return y, p, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--assets",
        type=Path,
        required=True,
        help="folder with LeePerrySmith.glb, Map-COL.jpg and the normal map",
    )
    ap.add_argument("--three", type=Path, default=None, help="a node_modules/three folder")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--pose",
        type=parse_pose,
        action="append",
        default=None,
        help="yaw,pitch,roll (degrees); repeatable; default: the grid",
    )
    ap.add_argument(
        "--no-frontal",
        action="store_true",
        help="the scan's native orientation, without the frontal calibration",
    )
    ap.add_argument("--ortho", action="store_true", help="an orthographic camera")
    ap.add_argument("--symmetry", action="store_true", help="print the symmetry fit and stop")
    args = ap.parse_args()
    check_assets(args.assets)
    if args.symmetry:
        print(json.dumps(symmetry(args.assets), indent=2))
        return
    poses = args.pose or grid()
    frontal = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0} if args.no_frontal else FRONTAL
    pictures = render(poses, three_dir(args.three), args.assets, frontal, args.ortho)
    args.out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for pose, pic in zip(poses, pictures, strict=True):
        f = name(pose)
        cv2.imwrite(str(args.out / f), pic, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        truth[f] = dict(zip(("yaw", "pitch", "roll"), (float(v) for v in pose), strict=True))
    if args.pose is None:  # the grid: its truth file
        lines = (f"  {json.dumps(f)}: {json.dumps(t)}" for f, t in truth.items())
        (args.out / "truth.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"render_head_scan: {len(poses)} pictures in {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
