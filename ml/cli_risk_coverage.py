"""``python -m ml risk-coverage [--weights FILE] [--data DIR] [--precision P] [--plot PNG] [--write]``.

Selective accuracy against coverage for a checkpoint on a labelled set (default: the FER2013
validation split), the threshold :func:`ml.selective.choose_threshold` picks by its stated
rule, and, with ``--write``, that choice stored in the checkpoint under ``"abstention"``
(per precision; every other key kept; written atomically). The maths: :mod:`ml.selective`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ml.data import DatasetError, load_dataset
from ml.predictor import Predictor
from ml.runtime import PRECISIONS
from ml.selective import NAMED_THRESHOLDS, at_threshold, choose_threshold

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013" / "validation"
)
TABLE_THRESHOLDS = (0.0, 0.3, *NAMED_THRESHOLDS, 0.7, 0.8, 0.9)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ml risk-coverage", description=__doc__.split("\n")[0]
    )
    p.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    p.add_argument(
        "--data",
        default=str(DEFAULT_DATA),
        help="labelled image folder <root>/<emotion>/*.jpg (default: the FER2013 validation split)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="network to run on CPU (default ML_PRECISION or auto: the int8 one where shipped)",
    )
    p.add_argument("--plot", metavar="PNG", help="write the risk–coverage curve as a PNG")
    p.add_argument(
        "--write",
        action="store_true",
        help="store the chosen threshold in the checkpoint (under 'abstention', per precision)",
    )
    return p


def _probs(predictor: Predictor, images, chunk: int = 256) -> np.ndarray:
    from tqdm import tqdm

    parts = [
        predictor.predict_faces(images[i : i + chunk])
        for i in tqdm(range(0, len(images), chunk), desc="predicting", unit="batch", leave=False)
    ]
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        predictor = Predictor(args.weights, device=args.device, precision=args.precision)
        ds = load_dataset(args.data, progress=True)
    except (CheckpointError, DatasetError, ValueError) as e:  # ValueError: a bad ML_PRECISION
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(ds.labels) == 0:
        print(f"error: no labelled images in {args.data}", file=sys.stderr)
        return 2
    probs = _probs(predictor, ds.images)
    chosen = choose_threshold(probs, ds.labels)
    print(
        f"{args.data}  weights={predictor.path.name}  precision={predictor.precision}  "
        f"n={chosen['n']}  accuracy={chosen['accuracy']:.4f}"
    )
    print(format_table(probs, ds.labels, chosen))
    if args.plot:
        plot_risk_coverage(
            probs,
            ds.labels,
            chosen,
            args.plot,
            title=f"{predictor.path.name} ({predictor.precision})",
        )
        print(f"risk–coverage curve → {args.plot}")
    if args.write:
        split = "fer2013 validation" if Path(args.data) == DEFAULT_DATA else str(args.data)
        write_abstention(predictor.path, predictor.precision, chosen, split)
        print(f"abstention ({predictor.precision}) → {predictor.path}")
    return 0


def format_table(probs, labels, chosen: dict) -> str:
    t = chosen["threshold"]
    rows = sorted({*TABLE_THRESHOLDS, t})
    lines = [f"{'threshold':>10}{'coverage':>10}{'sel. acc':>10}"]
    for x in rows:
        r = at_threshold(probs, labels, x)
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        mark = "  <- chosen" if x == t else ""
        lines.append(f"{x:>10.2f}{r['coverage']:>10.4f}{acc:>10}{mark}")
    met = "" if chosen["target_met"] else " (target NOT met: best accuracy at >=10% coverage)"
    lines.append(f"rule: {chosen['rule']}{met}")
    aurc = chosen["aurc"]
    lines.append(f"AURC: max_prob {aurc['max_prob']:.4f}  margin {aurc['margin']:.4f}")
    return "\n".join(lines)


def write_abstention(path: Path, precision: str, chosen: dict, split: str) -> None:
    """Store ``chosen`` as this precision's abstention; the top level mirrors fp32's where it
    was measured (the trained network), else this one's. Every other key is kept."""
    ckpt = load_checkpoint(path)
    section = dict(ckpt.get("abstention") or {})
    by_precision = dict(section.get("by_precision") or {})
    by_precision[precision] = {**chosen, "split": split}
    top = by_precision.get("fp32") or by_precision[precision]
    ckpt["abstention"] = {**top, "by_precision": by_precision}
    save_checkpoint(path, ckpt)


def plot_risk_coverage(probs, labels, chosen: dict, path: str, title: str) -> None:
    """Selective accuracy against coverage for both scores, the chosen point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ml.selective import risk_coverage

    rc = risk_coverage(probs, labels)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, style in (("max_prob", "-"), ("margin", "--")):
        c = rc[name]
        ax.plot(c["coverage"], c["accuracy"], style, label=f"{name} (AURC {c['aurc']:.3f})")
    ax.axhline(chosen["target_accuracy"], color="grey", lw=0.8, ls=":")
    ax.plot(chosen["coverage"], chosen["selective_accuracy"], "o", color="crimson")
    ax.annotate(
        f"default t={chosen['threshold']:.2f}\ncoverage {chosen['coverage']:.2f}, "
        f"accuracy {chosen['selective_accuracy']:.2f}",
        (chosen["coverage"], chosen["selective_accuracy"]),
        textcoords="offset points",
        xytext=(-140, 12),
    )
    ax.set_xlabel("coverage (share of faces shown)")
    ax.set_ylabel("selective accuracy")
    ax.set_xlim(0, 1.01)
    ax.set_title(f"{title}: risk–coverage, n={rc['n']}")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
