"""``python -m ml <command>``: train, evaluate, predict, export, benchmark."""

from __future__ import annotations

import sys

COMMANDS = {
    "train": ("ml.cli_train", "train the CNN on an image folder or fer2013.csv"),
    "evaluate": ("ml.cli_evaluate", "metrics, JSON and a confusion-matrix plot on a labelled set"),
    "predict": ("ml.cli_predict", "faces and emotions in images or videos, as JSON lines"),
    "calibrate": ("ml.cli_calibrate", "fit a temperature on a labelled set (calibration)"),
    "risk-coverage": (
        "ml.cli_risk_coverage",
        "selective accuracy vs coverage; the default abstention threshold",
    ),
    "finetune": ("ml.cli_finetune", "fine-tune a checkpoint on reviewed crops, split by learner"),
    "quantize": ("ml.cli_quantize", "add an int8 network for fast CPU inference to a checkpoint"),
    "export": ("ml.cli_export", "export a checkpoint to TorchScript or ONNX"),
    "benchmark": ("ml.cli_benchmark", "faces/s and frames/s on this machine"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}", file=out)
        print("usage: python -m ml {" + ",".join(COMMANDS) + "} ...", file=out)
        for name, (_, helptext) in COMMANDS.items():
            print(f"  {name:<13} {helptext}", file=out)
        return 0 if out is sys.stdout else 2
    import importlib

    from ml.checkpoint import CheckpointError
    from ml.data import DatasetError

    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return module.main(argv[1:])
    except (DatasetError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
