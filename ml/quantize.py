"""int8 networks for CPU workers, run by ONNX Runtime (``python -m ml quantize`` makes them).

The checkpoint's network is exported to ONNX and quantised statically by ONNX Runtime's
quantisation tool: int8 weights per output channel, kept to 7 bits so that no x86 CPU
saturates its sums, uint8 activations per tensor (QDQ format, MinMax ranges). The activation ranges are observed on a sample of *training* images
(``--images``, default 2,048, plain eval preprocessing), never on the validation split. The
int8 model is stored inside the checkpoint, under ``int8``, next to the untouched fp32
weights and tied to them by a digest; the predictor runs it on CPU when it is present and
fits (``ML_PRECISION=fp32`` turns it off).

``--val`` measures both precisions on a labelled set and records the figures in the section.
(ONNX Runtime rather than PyTorch's own int8 path: ``torch.ao.quantization`` is deprecated
in torch 2.13, and with its default observers it lost 0.3–0.4 points that ONNX Runtime kept.)
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml.checkpoint import (
    CheckpointError,
)
from ml.preprocessing import Preprocessing, crops_to_tensor

log = logging.getLogger(__name__)

# 2: weights quantised to 7 bits (``reduce_range``). Version 1 used all 8 bits, and x86 CPUs
# without VNNI (AVX2 or AVX-512 only) saturate the int16 sums of ONNX Runtime's u8×s8 kernel
# (VPMADDUBSW) with them: on an AVX2-only EPYC the fast network fell from 66.6 % to 53 %.
# With 7-bit weights a pair of products (2 × 255 × 64) always fits in int16, on every CPU.
INT8_FORMAT_VERSION = 2


class Int8Unavailable(CheckpointError):
    """This checkpoint or this machine cannot run the int8 network."""


def weights_digest(state_dict: dict) -> str:
    """SHA-256 of a float state dict (names, shapes, values): ties an int8 model to its weights."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def quantize_int8(
    model: nn.Module, calibration: np.ndarray, batch_size: int = 256, weight_bits: int = 7
) -> bytes:
    """The int8 ONNX model (bytes) of ``model``; ``calibration`` is a normalised N×1×S×S batch.

    ``weight_bits=8`` is only for measuring what the 7 bits cost (``python -m ml.bench_int8``):
    such a model saturates on x86 CPUs without VNNI, and the predictor refuses to load it.
    """
    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits must be 7 or 8, not {weight_bits}")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ml.export import export_onnx

    if len(calibration) == 0:
        raise ValueError("int8 calibration needs at least one image")
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                [
                    {"input": calibration[i : i + batch_size]}
                    for i in range(0, len(calibration), batch_size)
                ]
            )

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="affect-int8-") as tmp:
        fp32, pre, int8 = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        export_onnx(model, fp32, input_size=calibration.shape[-1])
        quant_pre_process(str(fp32), str(pre))  # shape inference + graph clean-up first
        quantize_static(
            str(pre),
            str(int8),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=weight_bits == 7,  # see INT8_FORMAT_VERSION
        )
        return int8.read_bytes()


class OnnxRuntimeModule(nn.Module):
    """Runs an ONNX model with ONNX Runtime's CPU provider behind a module's call.

    Takes and returns torch tensors like the network it stands for. ONNX Runtime keeps its
    own thread pool; one session per ``torch.get_num_threads()`` value is made on first use,
    so ``torch.set_num_threads`` governs it as it does the fp32 network. Threads do not spin
    between calls (the worker shares its cores with face detection and the web process).
    """

    def __init__(self, onnx_model: bytes):
        super().__init__()
        self.onnx_model = bytes(onnx_model)
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        self._session(torch.get_num_threads())  # fail now, not on the first frame

    def _session(self, threads: int):
        session = self._sessions.get(threads)
        if session is None:
            import onnxruntime as ort

            with self._lock:
                if threads not in self._sessions:
                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = threads
                    opts.inter_op_num_threads = 1
                    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    opts.log_severity_level = 3
                    try:
                        self._sessions[threads] = ort.InferenceSession(
                            self.onnx_model, opts, providers=["CPUExecutionProvider"]
                        )
                    except Exception as e:  # onnxruntime raises its own exception types
                        raise Int8Unavailable(
                            f"ONNX Runtime cannot load the int8 model: {e}"
                        ) from None
                session = self._sessions[threads]
        return session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threads = torch.get_num_threads()
        try:
            session = self._session(threads)
        except Int8Unavailable as exc:
            # The model loaded once, so only this thread count failed (memory, say): run the
            # batch on a session that works rather than lose it, and do not retry each batch.
            fallback = next(iter(self._sessions.values()))
            with self._lock:
                self._sessions.setdefault(threads, fallback)
            log.warning(
                "int8 session for %d threads failed, reusing a working one: %s", threads, exc
            )
            session = fallback
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run(None, {"input": batch})[0])


def load_int8(model: nn.Module, section: dict) -> OnnxRuntimeModule:
    """The int8 network stored in a checkpoint's ``int8`` section, checked against ``model``."""
    version = section.get("format_version")
    if version == 1:
        raise Int8Unavailable(
            "the int8 model has 8-bit weights, which lose accuracy on x86 CPUs without VNNI: "
            "run `python -m ml quantize` again"
        )
    if version != INT8_FORMAT_VERSION:
        raise Int8Unavailable(f"int8 section version {version} unknown")
    if section.get("weights_sha256") != weights_digest(model.state_dict()):
        raise Int8Unavailable(
            "the int8 model belongs to other weights (retrained since quantised?): "
            "run `python -m ml quantize` again"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise Int8Unavailable("onnxruntime is not installed") from None
    onnx_model = section.get("onnx")
    if not isinstance(onnx_model, torch.Tensor) or onnx_model.dtype != torch.uint8:
        raise Int8Unavailable("int8 section holds no ONNX model")
    return OnnxRuntimeModule(onnx_model.numpy().tobytes())


def calibration_batch(images: np.ndarray, pre: Preprocessing, n: int, seed: int) -> np.ndarray:
    """``n`` images drawn without replacement (all if fewer), eval-preprocessed."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), min(n, len(images)), replace=False))
    return crops_to_tensor(images[idx], pre).numpy()
