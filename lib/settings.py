"""A training run's settings, one object: `Settings`.

The command line (lib.train) builds it from its options and a notebook from its parameters
(lib.notebook's `recipe`); lib.train.fit trains with it; `Settings.record` is what a run record
and its last.pt keep, and `differences` is what a resume compares. It imports nothing of the
training loop, so the notebooks' analysis cells can describe a recipe without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch.device in annotations only: lib.options and lib.pipeline import no torch
    import torch

SCHEDULES = ("constant", "onecycle")
STEPS = ("batch", "epoch")  # when a schedule moves the learning rate on
PRECISIONS = ("fp32", "bf16", "fp16")  # lib.train.AUTOCAST: their autocast types


@dataclass(frozen=True)
class Settings:
    """A training run's settings: everything `fit` needs but the photos (data.Loaders) and the
    run folder.

    What the run learns (the record, which a resume must match; epochs may grow):
      model, options   the network (models.MODELS) and its constructor's options, e.g.
                       {"head": "classification", "rebalance": 1.0}
      epochs, lr       passes over the train part; Adam's learning rate (the peak, for onecycle)
      schedule         "constant", or "onecycle": up from lr/25 to lr over the first `warmup`
                       share of the steps, then down along a cosine to lr/25e4 (OneCycleLR);
                       `step`: it moves on after every "batch" or every "epoch"
      precision        "fp32", "bf16" or "fp16": the autocast type of training and validation
                       (fp16 with a gradient scaler); "auto": bf16 on CUDA, fp32 elsewhere.
                       bf16 on the CPU is about 1.5-2x faster where the CPU has bf16 instructions;
                       fp16 is for GPUs: a CPU runs it (the tests do), but some 80x slower (2 CPU
                       cores, EditedCNN at 32 px: 2 images/s, against 155-200 in fp32).
      seed             the initial weights, and each epoch's order and augmentation
    How the run computes, which changes nothing it learns:
      device           "auto" (cuda, then mps, then cpu), or a torch device
      keep_all         a checkpoint for every improvement of the dev loss (for a checkpoint
                       analysis); False keeps only the best, as best.pt
      compile          train through torch.compile (TorchInductor; on the CPU it needs a C++
                       compiler): tens of seconds up front, so only for long runs
      progress         progress bars and a line per epoch
    """

    model: str = "resnet18"
    options: dict = field(default_factory=dict)
    epochs: int = 5
    lr: float = 1e-3
    schedule: str = "constant"
    warmup: float = 0.15
    step: str = "batch"
    precision: str = "auto"
    seed: int = 0
    device: str | torch.device = "auto"
    keep_all: bool = True
    compile: bool = False
    progress: bool = True

    def __post_init__(self):
        for name, allowed in (("schedule", SCHEDULES), ("step", STEPS), ("precision", ("auto", *PRECISIONS))):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}"
                )

    def precision_on(self, device: torch.device) -> str:
        """The precision this run trains at on `device` ("auto" resolved)."""
        return precision_on(self.precision, device)

    def record(self, device: torch.device, batch_size: int) -> dict:
        """The run record's "settings" (with the loaders' batch size): what a resume compares."""
        kept = {"epochs": self.epochs, "lr": self.lr, "seed": self.seed, "batch_size": batch_size}
        kept |= {"schedule": self.schedule, "precision": self.precision_on(device)}
        if self.schedule != "constant":
            kept |= {"warmup": self.warmup, "step": self.step}
        return kept


def recorded(run: dict) -> dict:
    """A stored run record's settings in today's form. Runs written before precision and step
    were settings recorded `bf16` (bf16 autocast on the CPU too; on CUDA it always was) and an
    unused weight_decay of 0, and stepped their schedule per batch."""
    kept = {"schedule": "constant"} | run["settings"]
    if "precision" not in kept:
        cuda = str(run.get("device", "cpu")).startswith("cuda")
        kept["precision"] = "bf16" if kept.pop("bf16", False) or cuda else "fp32"
        kept.pop("weight_decay", None)
        if kept["schedule"] != "constant":
            kept["step"] = "batch"
    return kept


def precision_on(precision: str, device: torch.device) -> str:
    """A precision setting on `device`: "auto" is bf16 on CUDA, fp32 elsewhere; the others as given."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" else "fp32"


def differences(before: dict, now: dict) -> set[str]:
    """The settings (records, `recorded` and Settings.record) in which two runs differ, but for
    epochs (a resumed run may run longer)."""
    return {k for k in before.keys() | now.keys() if k != "epochs" and before.get(k) != now.get(k)}
