"""A run folder: what it holds, the rule that nothing in it is overwritten, and resume.

A run lives in one folder:
  last.pt                              everything needed to resume (weights, optimizer, schedule,
                                       scaler, the run record with its history)
  model-epoch-007-val-0.01234.pt       a checkpoint each time the validation loss improves
                                       (or only best.pt, with keep_all=False)
  results.json                         (the command line) history, metrics, provenance
  .lock                                while a run trains into it: its process and host (lock)
Every checkpoint is written atomically (lib.checkpoints.write), so a crash never leaves half a
file. A folder that already holds a run is never overwritten: resume it or pick another folder.
One run at a time: lib.train.fit holds the folder's lock for the whole run, then calls
`run_to_resume` and `restore` before its first epoch and `save_epoch` after each one.
"""

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lib import checkpoints, results
from lib.settings import differences, recorded

if TYPE_CHECKING:  # lib.train imports this module
    from lib.train import Parts


@contextlib.contextmanager
def lock(out_dir: Path, hold: bool = True):
    """Hold out_dir/.lock while the block runs (the folder is created if need be): a second run
    into the same folder, from this machine or another, is refused with FileExistsError, one line,
    while the first one's process lives. A lock whose process is gone (a run killed with kill -9)
    is stale and taken over. Released when the block ends, however it ends. hold=False holds
    nothing: under torchrun the first process holds the folder for the whole job."""
    if not hold:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ".lock"
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    while not _take(path, mine):
        holder = _holder(path)
        if holder is None:  # stale: its process is gone
            path.unlink(missing_ok=True)
            continue
        raise FileExistsError(
            f"{out_dir}: another run (process {holder['pid']} on {holder['host']}) is training into it; wait "
            f"for it to end or choose another folder (if that run is gone, delete {path})"
        )
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _take(path: Path, content: str) -> bool:
    """Create `path` holding `content`, all at once, unless it exists: True if this call made it
    (results.write_atomic without replace: a lock is never seen half-written, nor taken twice)."""
    try:
        results.write_atomic(path, lambda tmp: tmp.write_text(content), replace=False)
        return True
    except FileExistsError:
        return False


def _holder(path: Path) -> dict | None:
    """Who holds a lock ({"pid", "host"}), or None when it is stale: its process, on this host, is
    gone. A lock of another host is taken to be held (its process cannot be checked from here)."""
    try:
        holder = json.loads(path.read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except FileNotFoundError:
        return None  # released meanwhile
    except (OSError, ValueError, KeyError, TypeError):
        return {"pid": "?", "host": "an unknown host"}  # not ours to judge: never taken over
    if host == socket.gethostname() and results.process_gone(pid):
        return None
    return {"pid": pid, "host": host}


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


_ANOTHER_FOLDER = "start the run in another folder (this one's checkpoints stay as they are)"
_KEPT = ("model", "options", "data", "state_dict", "optimizer", "run", "format")


def read_last(last: Path, device) -> dict:
    """What last.pt holds, or ValueError, one line, saying what is wrong with it and what to do:
    not a regular file, unreadable (corrupt, truncated, not a torch file), or not a run's state."""
    if not last.is_file():
        raise ValueError(f"{last}: cannot resume: not a regular file; {_ANOTHER_FOLDER}")
    if problem := checkpoints.too_large(last):
        raise ValueError(f"{last}: cannot resume: {problem}; {_ANOTHER_FOLDER}")
    try:
        state = torch.load(last, map_location=device, weights_only=True)
    except Exception as e:  # torch.load's errors have no common type: zip, pickle, EOF, ...
        raise ValueError(
            f"{last}: cannot resume: not a readable checkpoint ({type(e).__name__}); {_ANOTHER_FOLDER}"
        ) from None
    run = state.get("run") if isinstance(state, dict) else None
    if not (
        isinstance(run, dict) and all(k in state for k in _KEPT) and {"settings", "history"} <= run.keys()
    ):
        raise ValueError(f"{last}: cannot resume: not the state of a run of lib.train; {_ANOTHER_FOLDER}")
    if state["format"] != checkpoints.CHECKPOINT_FORMAT:
        raise ValueError(
            f"{last}: cannot resume: a checkpoint of format {state['format']!r}; {_ANOTHER_FOLDER}"
        )
    return state


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def restore(last: Path, run: dict, parts: "Parts") -> None:
    """Load last.pt into the parts and the run record, after checking that it is the same run: the
    same model, options, data and settings (only more epochs, and those not for a one-cycle
    schedule, which has ended). Raises ValueError naming what differs."""
    state = read_last(last, parts.device)
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
    try:
        parts.model.load_state_dict(state["state_dict"])
        parts.load_state(state)
    except (RuntimeError, ValueError, KeyError) as e:  # weights or optimizer state of another shape
        raise ValueError(f"{last}: cannot resume: {_first_line(e)}; {_ANOTHER_FOLDER}") from None
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
