"""``python -m ml benchmark``: classification faces/s and full-frame frames/s, at 1 and 2 threads.

Faces/s: batched classification of 48×48 crops (``--batch``), the worker's hot path.
Frames/s: 640×480 BGR frames holding one real face (a FER2013 validation image pasted at
160 px), detect + crop + classify one frame at a time, the live pipeline's per-frame cost.
Peak memory is the process's max RSS. Timings are medians of repeated runs of ``--seconds``.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ml.checkpoint import CheckpointError
from ml.predictor import Predictor
from ml.runtime import PRECISIONS

DEFAULT_FACES = Path(__file__).resolve().parents[2] / "shared/datasets/fer2013/validation"


def _rate(fn, units: int, seconds: float) -> float:
    fn()  # warm-up
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        t0 = time.perf_counter()
        fn()
        rates.append(units / (time.perf_counter() - t0))
    return float(np.median(rates))


def cpu_description() -> str:
    """The CPU and the vector instructions int8 speed depends on (VNNI: 3–4× fp32, AVX2: 1.2–2×)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    isa = torch.backends.cpu.get_cpu_capability()
    if flags:
        vnni = {"avx512_vnni", "avx_vnni", "amx_int8"} & flags
        isa += ", VNNI" if vnni else ", no VNNI"
    return f"{name} ({isa})"


def faces_per_second(pred, crops: np.ndarray, seconds: float) -> float:
    return _rate(lambda: pred.predict_faces(crops), len(crops), seconds)


def frames_per_second(pred, frames: list[np.ndarray], seconds: float) -> float:
    it = itertools.cycle(frames)
    return _rate(lambda: pred.predict_frame(next(it)), 1, seconds)


def baseline_rates(
    threads: list[int], batch: int, seconds: float, int8: bool = True
) -> list[tuple[str, int, dict]]:
    """faces/s of a mini-Xception-sized baseline (random weights: speed only) at 64×64 input,
    the comparison point for the deployed model's speed, measured in the same run: as usually
    deployed (eager, unfused), and with the same CPU optimisations the predictor applies (conv-BN
    fusion + channels-last; int8 through ONNX Runtime, ranges from random inputs)."""
    from ml.model import count_parameters, create_model, model_config
    from ml.runtime import optimize_for_inference

    model = create_model(model_config("mini_xception")).eval()
    variants = {
        "mini-Xception 64px": model,
        "mini-Xception 64px fused": optimize_for_inference(model),
    }
    if int8:
        from ml.quantize import OnnxRuntimeModule, quantize_int8

        calibration = torch.randn(256, 1, 64, 64).numpy()
        variants["mini-Xception 64px int8"] = OnnxRuntimeModule(quantize_int8(model, calibration))
    x = torch.randn(batch, 1, 64, 64)
    rows = []
    for name, m in variants.items():
        rates = {}
        for t in threads:
            torch.set_num_threads(t)

            def run(m=m):
                with torch.inference_mode():
                    m(x)

            rates[t] = _rate(run, batch, seconds)
        rows.append((name, count_parameters(model), rates))
    return rows


def sample_frames(n: int, faces_root: Path) -> tuple[list[np.ndarray], str]:
    from ml.synth import scene

    if faces_root.is_dir():
        from ml.data import load_image_folder

        ds = load_image_folder(faces_root)
        idx = np.random.default_rng(0).choice(len(ds), n, replace=False)
        return [scene([ds.images[i]], seed=k)[0] for k, i in enumerate(idx)], "one FER2013 face"
    return [scene([], seed=k)[0] for k in range(n)], "no face (dataset not found)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _predictors(weights, device: str, precision: str | None) -> list[Predictor]:
    """One predictor per precision to time: both the int8 and the fp32 network where a
    checkpoint carries an int8 one, unless ``--precision`` names one."""
    if precision:
        return [Predictor(weights, device=device, precision=precision)]
    first = Predictor(weights, device=device)
    if first.precision == "int8":
        return [first, Predictor(weights, device=device, precision="fp32")]
    return [first]


def _measure(pred: Predictor, threads, crops, frames, seconds) -> tuple[str, dict]:
    name = f"{pred.path.name} {pred.precision}"
    n_params = sum(t.numel() for t in pred.model.parameters())
    rates = {}
    for t in threads:
        torch.set_num_threads(t)
        cv2.setNumThreads(t)
        rates[t] = faces_per_second(pred, crops, seconds)
        fps_frames = frames_per_second(pred, frames, seconds)
        print(
            f"{name:<28}{n_params:>10,}{t:>8}{rates[t]:>10.0f}{fps_frames:>10.1f}"
            f"{1000 / fps_frames:>10.1f}"
        )
    return name, rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml benchmark", description=__doc__.split("\n")[0])
    p.add_argument("--weights", action="append", help="checkpoint(s) to compare (default: shipped)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    p.add_argument("--faces", default=str(DEFAULT_FACES), help="image folder of real faces")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="time only this network (default: int8 and fp32 where a checkpoint has both)",
    )
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the mini-Xception (64×64) speed baselines"
    )
    args = p.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads takes comma-separated integers, not {args.threads!r}")
    frames, what = sample_frames(16, Path(args.faces))
    crops = np.random.default_rng(0).integers(0, 256, (args.batch, 48, 48), dtype=np.uint8)
    print(
        f"{cpu_description()}, {torch.get_num_threads()} torch threads "
        f"available, torch {torch.__version__}, OpenCV {cv2.__version__}"
    )
    print(
        f"faces/s: batch {args.batch} of 48×48 crops; frames/s: 640×480 frames with {what}, "
        "detect + classify"
    )
    print(
        f"{'model':<28}{'params':>10}{'threads':>8}{'faces/s':>10}{'frames/s':>10}{'ms/frame':>10}"
    )
    measured = []
    try:
        for w in args.weights or [None]:
            for pred in _predictors(w, args.device, args.precision):
                measured.append(_measure(pred, threads, crops, frames, args.seconds))
    except (CheckpointError, ValueError) as e:  # unreadable weights, int8 on a GPU, bad setting
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.no_baseline:
        baselines = baseline_rates(threads, args.batch, args.seconds, int8=args.precision != "fp32")
        for name, n, rates in baselines:
            for t in threads:
                print(f"{name:<28}{n:>10,}{t:>8}{rates[t]:>10.0f}{'':>10}{'':>10}")
        print("faces/s relative to the baselines (model ÷ baseline, same threads):")
        for model_name, rates in measured:
            for base_name, _, base in baselines:
                ratios = "  ".join(f"{t} thr {rates[t] / base[t]:.2f}×" for t in threads)
                print(f"  {model_name} vs {base_name}: {ratios}")
    print(f"peak memory (max RSS): {peak_rss_mb():.0f} MB")
    return 0
