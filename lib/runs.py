"""A run folder: what it holds, the rule that nothing in it is overwritten, and resume.

A run lives in one folder:
  last.pt                              everything needed to resume (weights, optimizer, schedule,
                                       scaler, the run record with its history)
  model-epoch-007-val-0.01234.pt       a checkpoint each time the validation loss improves
                                       (or only best.pt, with keep_all=False)
  results.json                         (the command line) history, metrics, provenance
Every checkpoint is written atomically (lib.checkpoints.write), so a crash never leaves half a
file. A folder that already holds a run is never overwritten: resume it or pick another folder.
lib.train.fit calls `run_to_resume` and `restore` before its first epoch and `save_epoch` after
each one.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lib import checkpoints
from lib.settings import differences, recorded

if TYPE_CHECKING:  # lib.train imports this module
    from lib.train import Parts


def run_to_resume(out_dir: Path, resume: bool) -> Path | None:
    """The last.pt to resume from, or None for a new run. A folder that holds a run is never
    written over: without resume=True it is refused, and so is one that holds a run's record or
    checkpoints but no last.pt (it cannot be resumed, and a new run would replace its
    results.json and mix its checkpoints with the old ones). FileExistsError, one line."""
    last = out_dir / "last.pt"
    if last.exists():
        if not resume:
            raise FileExistsError(f"{out_dir}: already holds a run; resume it or choose another folder")
        return last
    held = sorted({p.name for g in ("results.json", "best.pt", "model-epoch-*.pt") for p in out_dir.glob(g)})
    if held:
        shown = ", ".join(held[:2]) + (f" and {len(held) - 2} more" if len(held) > 2 else "")
        raise FileExistsError(
            f"{out_dir}: holds a run ({shown}) but no last.pt, so it cannot be resumed: choose another folder"
        )
    return None


# What the photos of a run are: a resumed run must train and choose on the same ones.
SAME_DATA = ("source", "split", "parts", "size", "max_images", "n_train", "n_val", "augment", "crop_scale")


def restore(last: Path, run: dict, parts: "Parts") -> None:
    """Load last.pt into the parts and the run record, after checking that it is the same run: the
    same model, options, data and settings (only more epochs, and those not for a one-cycle
    schedule, which has ended). Raises ValueError naming what differs."""
    state = torch.load(last, map_location=parts.device, weights_only=True)
    mismatch = {k for k in ("model", "options") if state[k] != run[k]}
    if any(state["data"].get(k) != run["data"].get(k) for k in SAME_DATA):
        mismatch.add("data")
    before, now = recorded(state["run"]), run["settings"]
    mismatch |= differences(before, now)
    if mismatch:
        raise ValueError(f"{last}: cannot resume, the run used other {', '.join(sorted(mismatch))}")
    if parts.sched is not None and before["epochs"] != now["epochs"]:
        raise ValueError(
            f"{last}: cannot resume with {now['epochs']} epochs: its one-cycle schedule was laid "
            f"out for {before['epochs']} (start a new run for a longer one)"
        )
    parts.model.load_state_dict(state["state_dict"])
    parts.load_state(state)
    kept = ("history", "checkpoints", "skipped_during_training", "ab_prior")
    run |= {k: state["run"][k] for k in kept if k in state["run"]}


def save_epoch(parts: "Parts", run: dict, out_dir: Path, keep_all: bool) -> None:
    """After an epoch (the last entry of run["history"]): a checkpoint if its validation loss is
    the best so far (every improvement with keep_all, else best.pt only), and last.pt, which
    holds everything a resume needs (the same checkpoint plus optimizer, scheduler, scaler and
    record)."""
    entry = run["history"][-1]
    extra = {"ab_prior": run["ab_prior"]} if "ab_prior" in run else {}  # vividness needs it
    ckpt = checkpoints.make(
        parts.model, run["model"], run["options"], entry["epoch"], entry["val_loss"], run["data"], **extra
    )
    if entry["val_loss"] < min((h["val_loss"] for h in run["history"][:-1]), default=float("inf")):
        name = f"model-epoch-{entry['epoch']:03d}-val-{entry['val_loss']:.5f}.pt" if keep_all else "best.pt"
        checkpoints.write(ckpt, out_dir / name)
        saved = {"epoch": entry["epoch"], "path": str(out_dir / name), "val_loss": entry["val_loss"]}
        run["checkpoints"] = [*run["checkpoints"], saved] if keep_all else [saved]
    checkpoints.write({**ckpt, **parts.state(), "run": run}, out_dir / "last.pt")
