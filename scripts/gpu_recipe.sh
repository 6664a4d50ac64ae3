#!/usr/bin/env bash
# Issue 7's GPU training as ONE command that fits the device tool's limits: at most 10 minutes
# a command, 15 minutes of device time a session (its start included), at most 8 files of at
# most 16 MiB back from $OUT. In that one command it trains the accuracy model (the teacher),
# distils it into the CPU students in parallel, calibrates all of them and evaluates them,
# each stage fitted to its minutes (`train --fit-minutes`: a complete cosine schedule in the
# time there is, recorded as a replayable `--epochs N`).
#
# Here, once (the dataset travels as the git-ignored, carried folder .datasets/; ~51 MB of the
# tool's 64 MiB limit):  mkdir -p .datasets && cp -r ../shared/datasets/fer2013 .datasets/
# Then the device tool's run: command "bash scripts/gpu_recipe.sh", carry [".datasets"],
# timeout_s 600. What comes back (in $OUT, each file well under 16 MiB):
#   teacher.pt          the accuracy model, calibrated, float16 weights (15.6 MB for `large`)
#   <student>.pt        each distilled student, calibrated (float32; quantize it here)
#   results.json        accuracy, macro-F1, ECE of each, plain and with flip TTA; each run's
#                       epochs, seconds and best epoch; the GPU's name
#   logs.tar.gz         every run's metrics.csv and log
# Landing it is in docs/model_card.md ("The GPU run").
#
# Settings (environment): D (dataset root with train/ and validation/), OUT, PY (python3),
# DEVICE (cuda), TEACHER (large), TEACHER_MINUTES (5), TEACHER_EPOCHS (cap, 300),
# STUDENTS ("compact small"), STUDENT_MINUTES (2.5), STUDENT_EPOCHS (cap, 200),
# MIN_SAMPLES (calibration, 200), EXTRA (more flags for every train run, e.g. "--limit 500").
set -euo pipefail
cd "$(dirname "$0")/.."
D=${D:-.datasets/fer2013}
OUT=${OUT:?set OUT: the folder whose files come back}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
TEACHER=${TEACHER:-large}
TEACHER_MINUTES=${TEACHER_MINUTES:-5}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-300}
STUDENTS=${STUDENTS:-compact small}
STUDENT_MINUTES=${STUDENT_MINUTES:-2.5}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-200}
MIN_SAMPLES=${MIN_SAMPLES:-200}
EXTRA=${EXTRA:-}
RUNS=${RUNS:-runs/gpu}
export PYTHONUNBUFFERED=1 ML_CACHE_DIR=${ML_CACHE_DIR:-$RUNS/cache}

[ -d "$D/train" ] && [ -d "$D/validation" ] || {
  echo "error: $D must hold train/ and validation/ (see the top of $0)" >&2
  exit 2
}
mkdir -p "$RUNS" "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$RUNS/recipe.log" >&2; }
# a hard stop a little past each fitted budget: the fit is an estimate; best.pt exists anyway
hard() { "$PY" -c "print(round($1 * 1.1 + 0.3, 2))"; }
ml() { "$PY" -m ml "$@"; }
bundle() { tar czf "$OUT/logs.tar.gz" "$RUNS"/*.log "$RUNS"/*/metrics.csv 2>/dev/null || true; }
trap bundle EXIT # the logs come back even when a stage fails
# release BEST OUT [--half]: calibrated; if calibration is refused (a degenerate model), as it
# is (T = 1) rather than lost, said in the log
release() {
  ml calibrate "$D/validation" --weights "$1" --out "$2" --min-samples "$MIN_SAMPLES" "${@:3}" \
    2>&1 | tee -a "$RUNS/recipe.log" && return 0
  log "calibration refused for $1: $(basename "$2") is not calibrated (T = 1)"
  "$PY" - "$@" <<'PY'
import sys
from ml.checkpoint import half_precision, load_checkpoint, save_checkpoint
ck = load_checkpoint(sys.argv[1])
if "--half" in sys.argv[3:]:
    ck["state_dict"] = half_precision(ck["state_dict"])
save_checkpoint(sys.argv[2], ck)
PY
}

log "start: $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")')"
# shellcheck disable=SC2086 # EXTRA is a list of flags
ml train --data "$D/train" --val "$D/validation" --out "$RUNS/teacher" --size "$TEACHER" \
  --epochs "$TEACHER_EPOCHS" --fit-minutes "$TEACHER_MINUTES" \
  --max-minutes "$(hard "$TEACHER_MINUTES")" --mixup-alpha 0.2 --seed 0 --device "$DEVICE" \
  --no-progress $EXTRA 2>&1 | tee "$RUNS/teacher.log" | { grep -E '^(fitted|done|error|warn)' >&2 || true; }
release "$RUNS/teacher/best.pt" "$OUT/teacher.pt" --half
log "teacher done"

pids=() done_students=() failed=0
for s in $STUDENTS; do
  # shellcheck disable=SC2086
  ml train --data "$D/train" --val "$D/validation" --out "$RUNS/$s" --size "$s" \
    --epochs "$STUDENT_EPOCHS" --fit-minutes "$STUDENT_MINUTES" \
    --max-minutes "$(hard "$STUDENT_MINUTES")" --teacher "$OUT/teacher.pt" --kd-mode online \
    --kd-alpha 0.7 --kd-temperature 4 --seed 1 --device "$DEVICE" --no-progress $EXTRA \
    >"$RUNS/$s.log" 2>&1 &
  pids+=($!)
done
i=0
for s in $STUDENTS; do # one student that fails leaves the others' results
  ok=1
  wait "${pids[$i]}" || ok=0
  i=$((i + 1))
  grep -E '^(fitted|done|error|warn)' "$RUNS/$s.log" >&2 || true
  if [ "$ok" = 1 ] && release "$RUNS/$s/best.pt" "$OUT/$s.pt"; then
    done_students+=("$s")
  else
    log "student $s failed (see $s.log in logs.tar.gz)"
    failed=1
  fi
done
log "students done: ${done_students[*]}"

evals=()
for m in teacher "${done_students[@]}"; do
  for tta in "" --tta; do
    j="$RUNS/eval-$m${tta:+-tta}.json"
    ml evaluate "$D/validation" --weights "$OUT/$m.pt" $tta --precision fp32 --device "$DEVICE" \
      --json "$j" >>"$RUNS/recipe.log" 2>&1
    evals+=("$j")
  done
done
"$PY" - "$OUT/results.json" "$RUNS" "${evals[@]}" <<'PY'
import json, sys, torch
from pathlib import Path
out, runs, files = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
keep = ("accuracy", "macro_f1", "ece", "nll", "weights", "tta", "temperature", "per_class")
rows = [{k: v for k, v in json.load(open(f)).items() if k in keep} for f in files]
training = {}  # the GPU's pace and where each run peaked, without unpacking the logs
for m in dict.fromkeys(Path(r["weights"]).stem for r in rows):
    hist = [json.loads(line) for line in open(runs / m / "metrics.jsonl")]
    best = max(hist, key=lambda h: h.get("val_acc", 0))
    training[m] = {
        "epochs": len(hist),
        "seconds": round(sum(h["seconds"] for h in hist), 1),
        "seconds_per_step": hist[-1].get("seconds_per_step"),
        "best_epoch": best["epoch"],
        "best_val_acc": best.get("val_acc"),
    }
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
result = {"device": gpu, "torch": torch.__version__, "training": training, "evaluations": rows}
json.dump(result, open(out, "w"), indent=1)
for m, t in training.items():
    print(f"{m:<10} {t['epochs']} epochs in {t['seconds']} s, best {t['best_val_acc']} at {t['best_epoch']}")
for r in rows:
    print(f"{r['weights']:<28} tta={r['tta']!s:<5} acc {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  ECE {r['ece']:.4f}")
PY
log "done: $(ls "$OUT" | tr '\n' ' ')"
exit "$failed"
