"""A training session's time budget: ``--fit-minutes`` and ``--max-minutes``.

``--fit-minutes`` fits a run to a budget: the first epoch (the warm-up) is timed at the steady
pace (:class:`PaceTimer`), then ``--epochs`` is lowered to as many epochs as end within the
budget (:func:`fit_epochs`) before the cosine schedule takes its first step, and the recipe
records the run as the command that replays it with ``--epochs N`` (:func:`record_fit`).
``--max-minutes`` only paces a session: the run stops cleanly and goes on with ``--resume``.
"""

from __future__ import annotations

import shlex
import sys
import time

import torch


def synchronize(device) -> None:
    """Wait for the device's queued work, so that a host timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class PaceTimer:
    """Seconds per step of an epoch of ``n_steps``, timed over its second half: after warm-up
    costs such as cuDNN's algorithm search. Call :meth:`step` before each step."""

    def __init__(self, n_steps: int, device):
        self.n_steps, self.half, self.device = n_steps, n_steps // 2, device
        self._t_half: float | None = None

    def step(self, k: int) -> None:
        if k == self.half:
            synchronize(self.device)
            self._t_half = time.perf_counter()

    def seconds_per_step(self) -> float:
        """The pace, once the epoch's steps are done (0 when none ran)."""
        synchronize(self.device)
        if self._t_half is None:
            return 0.0
        return (time.perf_counter() - self._t_half) / (self.n_steps - self.half)


def fit_epochs(
    budget_s: float,
    *,
    spent_s: float,
    seconds_per_step: float,
    steps_per_epoch: int,
    other_s: float,
    max_epochs: int,
) -> dict:
    """How many epochs (at most ``max_epochs``, at least the one already run) end within
    ``budget_s`` seconds when ``spent_s`` are gone and each further epoch takes its steps at
    the steady pace plus ``other_s`` (validation, checkpoints)."""
    per_epoch = max(seconds_per_step * steps_per_epoch + max(other_s, 0.0), 1e-9)
    more = max(0, int((budget_s - spent_s) // per_epoch))
    return {
        "epochs": max(1, min(max_epochs, 1 + more)),
        "fit_minutes": budget_s / 60,
        "epoch_seconds": round(per_epoch, 3),
    }


def command(argv: list[str]) -> str:
    """The ``python -m ml train`` command line of ``argv``."""
    return "python -m ml train " + " ".join(shlex.quote(a) for a in argv)


def record_fit(recipe: dict, argv: list[str], fitted: dict) -> None:
    """The recipe of a fitted run names the epochs it ran, as a command that replays it."""
    # --max-minutes and --resume only pace a session: a replay runs the whole schedule.
    # argparse took abbreviations (--fit 5, --epoch=9) only where they were unambiguous, so a
    # flag that starts one of these names is that flag.
    dropped = ("--fit-minutes", "--epochs", "--max-minutes", "--resume")
    replay, skip = [], False
    for a in argv:
        name, inline = a.split("=", 1)[0], "=" in a
        if skip:
            skip = False
        elif len(name) > 2 and name.startswith("--") and any(d.startswith(name) for d in dropped):
            skip = not inline and not "--resume".startswith(name)
        else:
            replay.append(a)
    recipe["command"] = command([*replay, "--epochs", str(fitted["epochs"])])
    recipe["fitted"] = dict(fitted, command=command(argv))
    recipe["train_config"]["epochs"] = fitted["epochs"]


class TimeBudget:
    """The clock of one training session, started when its first epoch is about to run.

    ``fitted`` is ``None`` until ``--fit-minutes`` has chosen the epochs (``{"epochs": N, …}``,
    or ``{}`` where it cannot: a resumed run past its first epoch without a fitted schedule);
    a run resumed on a fitted schedule starts with it. ``save_seconds`` is what writing the
    last epoch's checkpoints took, counted into the fitted epochs' length.
    """

    def __init__(self, fit_minutes: float, max_minutes: float, fitted: dict | None = None):
        self.fit_minutes, self.max_minutes, self.fitted = fit_minutes, max_minutes, fitted
        self.save_seconds = 0.0
        self.t_start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t_start

    def fit(self, epoch: int, *, history: list[dict], fresh: bool, steps_per_epoch: int, run):
        """Before ``epoch``: once the first epoch is done, lower ``run.cfg.epochs`` to what
        fits and record the replay in ``run.recipe`` (``run.argv`` is the command line)."""
        if not self.fit_minutes or self.fitted is not None or epoch < 1:
            return
        if epoch > 1:  # the cosine has run: a new length would change what is done
            print(
                f"warning: --fit-minutes ignored: {run.last_path} is past its first epoch "
                f"without a fitted schedule; it runs to --epochs {run.cfg.epochs}",
                file=sys.stderr,
            )
            self.fitted = {}
            return
        first = history[0]  # after the first epoch (the warm-up), before the cosine's first step
        self.fitted = fit_epochs(
            self.fit_minutes * 60,
            spent_s=self.elapsed() if fresh else first["seconds"],
            seconds_per_step=first.get("seconds_per_step", 0.0),
            steps_per_epoch=steps_per_epoch,
            other_s=first["seconds"] - first.get("train_seconds", 0.0) + self.save_seconds,
            max_epochs=run.cfg.epochs,
        )
        run.cfg.epochs = self.fitted["epochs"]
        record_fit(run.recipe, run.argv, self.fitted)
        print(
            f"fitted to {self.fit_minutes:g} min: {run.cfg.epochs} epochs of "
            f"≈ {self.fitted['epoch_seconds']:.1f} s (record: {run.recipe['command']})",
            file=sys.stderr,
        )

    def out_of_time(self, epochs_done: int, epochs: int) -> bool:
        """``--max-minutes`` is spent and epochs are left: stop here, resume later."""
        return (
            bool(self.max_minutes)
            and self.elapsed() / 60 > self.max_minutes
            and (epochs_done < epochs)
        )
