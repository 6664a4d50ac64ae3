"""Speed figures: classification faces/s and full-frame frames/s (``python -m ml benchmark``).

Faces/s: batched classification of 48×48 crops (``--batch``), the worker's hot path.
Frames/s: 640×480 BGR frames holding one real face (a FER2013 validation image pasted at
160 px), detect + crop + classify one frame at a time, the live pipeline's per-frame cost.
Peak memory is the process's max RSS. Timings are medians of repeated runs of ``--seconds``.
"""

from __future__ import annotations

import itertools
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch


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
