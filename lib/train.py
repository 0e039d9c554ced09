"""One training loop for every model, checkpoints that really restore, and `python -m lib.train`.

A run lives in one folder (lib.runs): its last.pt resumes it exactly, a checkpoint is kept each
time the dev loss improves, and nothing in it is ever overwritten.

A run's settings are one object, lib.settings.Settings: the command line builds it from its
options, a notebook from its parameters; `fit(settings, loaders, out_dir)` trains with it, and its
record is what the run record keeps and what a resume compares.

Reproducibility: the model is built right after seeding, and the shuffling and augmentation of
each epoch depend only on (seed, epoch) (lib.data.EpochSampler). So two CPU runs give the same
numbers, and a resumed run gives the same history as one that never stopped.

`fit` reads top to bottom as the steps of a run: build, restore (resume), colour prior, then for
each epoch train_one_epoch, validate and save_epoch. Inference (loading and using checkpoints)
lives in lib.checkpoints, which never imports this module.
"""

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from lib import checkpoints, classes, data, images, lab, metrics, models, options, results, runs
from lib.settings import PRECISIONS, SCHEDULES, STEPS, Settings

# Autocast's type for each precision (None: no autocast). fp16 trains with a gradient scaler,
# whose loss scale keeps small gradients from rounding to zero in float16.
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def start_distributed() -> tuple[int, int]:
    """Under torchrun (WORLD_SIZE > 1): join the process group, NCCL on GPUs and gloo on CPUs, and
    give each process its own GPU. Returns (rank, number of processes); (0, 1) without torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


# --- the parts of a run ---------------------------------------------------------------------------


@dataclass
class Parts:
    """What a run trains with, built from its Settings by `build`."""

    model: torch.nn.Module  # the network; its head holds the loss
    net: torch.nn.Module  # what computes the training step: model, or its DDP/compiled wrapper
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler | None  # None for a constant learning rate
    step: str  # when sched moves on: after every "batch" or "epoch"
    scaler: torch.amp.GradScaler | None  # fp16's gradient scaler, else None
    dtype: torch.dtype | None  # autocast's type; None: float32 throughout

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def state(self) -> dict:
        """The optimizer's, scheduler's and scaler's state, for last.pt."""
        kept = {"optimizer": self.opt.state_dict()}
        kept |= {"scheduler": self.sched.state_dict()} if self.sched is not None else {}
        return kept | ({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})

    def load_state(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        for name, part in (("scheduler", self.sched), ("scaler", self.scaler)):
            if part is not None:
                part.load_state_dict(state[name])


def build(settings: Settings, device: torch.device, steps_per_epoch: int) -> Parts:
    """The model (seeded first, so the same seed gives the same weights; channels-last memory,
    +25-50 % on CPU and GPU convolutions), Adam and the schedule (Settings), the gradient scaler
    for fp16, and the DDP (under torchrun: it averages gradients) and compiled wrappers."""
    torch.manual_seed(settings.seed)
    model = models.build_model(settings.model, **settings.options).to(device)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    sched = None
    if settings.schedule == "onecycle":
        steps = settings.epochs * (steps_per_epoch if settings.step == "batch" else 1)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=settings.lr, total_steps=steps, pct_start=settings.warmup, cycle_momentum=False
        )
    precision = settings.precision_on(device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    net = model
    if dist.is_initialized() and dist.get_world_size() > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    if settings.compile:  # the training step only; validation and checkpoints use `model` itself
        net = torch.compile(net)
    return Parts(model, net, opt, sched, settings.step, scaler, AUTOCAST[precision])


# --- the steps of a run -----------------------------------------------------------------------------


def batches(loader, device, skips: dict):
    """(l, ab) of each batch on the device. Files that failed to decode in a worker come back with
    the batch: each is logged once and remembered in `skips`."""
    for rgb, bad in loader:
        images.record_skips(skips, bad)
        if len(rgb):
            yield lab.rgb_to_model(rgb.to(device, non_blocking=True))


def forward(net, l, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The model's float32 output in training and validation (ab, or a classifier's logits), under
    autocast to `dtype` (None: float32 throughout), channels-last memory everywhere. (Inference
    runs in float32: checkpoints.Inference.)"""
    with torch.autocast(l.device.type, dtype or torch.float32, enabled=dtype is not None):
        return net(l.contiguous(memory_format=torch.channels_last)).float()


@torch.no_grad()
def colour_prior(loader, device, skips: dict) -> torch.Tensor:
    """The training set's ab prior over the colour bins (lib.classes), from one pass of the loader
    (epoch 0's crops, which training never uses). Under torchrun every process counts its share
    and the shares are averaged: the same prior, hence the same class weights, everywhere."""
    loader.sampler.set_epoch(0)
    bins = classes.ab_bins().to(device)
    try:
        prior = classes.ab_prior((ab for _, ab in batches(loader, device, skips)), bins).to(device)
    except ValueError:  # not one pixel: every training file failed to decode
        raise _no_images(loader, skips, "training") from None
    if dist.is_initialized():
        dist.all_reduce(prior)
        prior /= dist.get_world_size()
    return prior.cpu()


def set_colour_prior(model, run: dict, loader, device) -> None:
    """A head that uses_prior (the classification head) needs the training photos' colour prior:
    measured before the first epoch (it sets the rebalancing weights) and kept in the run record;
    a resumed run takes it from there (its weights came with last.pt). Other heads: nothing to do."""
    if not model.head.uses_prior:
        return
    if not run["history"]:
        prior = colour_prior(loader, device, run["skipped_during_training"])
        model.head.set_prior(prior)
        run["ab_prior"] = prior.tolist()
    else:
        model.head.set_prior(run["ab_prior"], weights=False)


def train_one_epoch(parts: Parts, loader, skips: dict, desc: str | None) -> dict:
    """One pass over the training loader: (train_loss, seconds, images_per_s, lr_last, the
    learning rate of the epoch's last step). desc=None: no progress bar. Under torchrun the loss
    and image count are summed over all processes. Raises ValueError when no training image
    could be decoded (none of any process)."""
    model, opt, scaler, device = parts.model, parts.opt, parts.scaler, parts.device
    model.train()
    t0, total, n, lr_used = time.perf_counter(), torch.zeros((), device=device), 0, None
    for l, ab in batches(tqdm(loader, desc=desc, leave=False, disable=desc is None), device, skips):
        loss = model.head.loss(forward(parts.net, l, parts.dtype), ab, l)
        opt.zero_grad(set_to_none=True)
        lr_used = opt.param_groups[0]["lr"]
        if scaler is None:
            loss.backward()
            opt.step()
        else:  # fp16: the loss scaled up so that small gradients survive, and the step unscaled
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        if parts.sched is not None and parts.step == "batch":
            parts.sched.step()
        total += loss.detach() * len(l)
        n += len(l)
    if dist.is_initialized() and dist.get_world_size() > 1:
        counts = torch.stack((total, torch.tensor(float(n), device=device)))
        dist.all_reduce(counts)
        total, n = counts[0], int(counts[1])
    if n == 0:  # every process raises: n is the sum over all of them
        raise _no_images(loader, skips, "training")
    if parts.sched is not None and parts.step == "epoch":
        parts.sched.step()
    seconds = time.perf_counter() - t0
    return {
        "train_loss": float(total) / n,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "lr_last": lr_used,
    }


@torch.no_grad()
def validate(model, loader, skips: dict, dtype: torch.dtype | None = None) -> float:
    """The model's own loss (normalized MSE for a regression head) over every validation image,
    under autocast to `dtype` (the run's precision; None: float32). Raises ValueError when no
    image of the loader could be decoded (a loss of nothing is no 0)."""
    model.eval()
    device = next(model.parameters()).device
    total, n = torch.zeros((), device=device), 0
    for l, ab in batches(loader, device, skips):
        total += model.head.loss(forward(model, l, dtype), ab, l) * len(l)
        n += len(l)
    if n == 0:
        raise _no_images(loader, skips, "validation")
    return float(total) / n


def _no_images(loader, skips: dict, purpose: str) -> ValueError:
    """The one-line error of a pass that yielded no image: every file of the loader passed the
    header check at start-up but failed to decode in the workers (named in `skips`)."""
    dataset = getattr(loader, "dataset", None)
    mine = {str(dataset.root / f) for f in dataset.files} if hasattr(dataset, "root") else set(skips)
    failed = [reason for f, reason in skips.items() if f in mine]
    where = dataset.root if hasattr(dataset, "root") else "the loader"
    return ValueError(
        f"{where}: no {purpose} image: {len(failed)} file(s) failed while decoding "
        f"({images.count_skips(failed)}); "
        "nothing saved for this epoch"
    )


# --- the loop -----------------------------------------------------------------------------------


def fit(
    settings: Settings, loaders: data.Loaders, out_dir, resume: bool = False
) -> tuple[torch.nn.Module, dict]:
    """Train as `settings` say on loaders.train (the train part), validate each epoch on
    loaders.val (the dev part) and checkpoint the best into out_dir: the dev part chooses the
    checkpoint, so it cannot also score it (the held-out part does that, outside this function).
    The loaders (the photos of each part) are the same for every seed.

    Returns (the trained model as of the last epoch, the run record: model, options,
    normalization, settings (Settings.record), data description, per-epoch history (train loss,
    val loss, seconds, images/s, last learning rate), checkpoints (epoch, path, val loss),
    device).

    resume=True continues the run in out_dir (`restore`: exactly, optimizer, schedule and scaler
    included); without it, a folder that holds a run is refused, and a folder with a run's
    results.json or checkpoints but no last.pt is refused either way (FileExistsError). An epoch
    whose training or validation pass yields no image (every file failed to decode) raises
    ValueError before anything of it is saved.

    Under torchrun, each process trains on its share of every epoch through DistributedDataParallel
    (batch_size is per process); every process validates the whole validation set (the same model,
    so the same number), and only the first one prints and writes files."""
    device, out_dir = checkpoints.pick_device(str(settings.device)), Path(out_dir)
    parts = build(settings, device, steps_per_epoch=len(loaders.train))
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    run = {
        "model": settings.model, "options": dict(settings.options), "normalization": lab.NORMALIZATION,
        "settings": settings.record(device, loaders.train.batch_size), "data": loaders.description,
        "parameters": models.count_parameters(parts.model), "device": str(device), "processes": world,
        "compiled": settings.compile, "history": [], "checkpoints": [], "skipped_during_training": {},
    }  # fmt: skip
    with runs.lock(out_dir, hold=rank == 0):  # one run per folder; under torchrun, the first process's
        if last := runs.run_to_resume(out_dir, resume):  # or start in a folder that holds no run
            runs.restore(last, run, parts)
        set_colour_prior(parts.model, run, loaders.train, device)
        train_epochs(settings, parts, run, loaders, out_dir, rank)
    return parts.model, run


def train_epochs(
    settings: Settings, parts: Parts, run: dict, loaders: data.Loaders, out_dir: Path, rank: int
):
    """fit's loop: from the epoch after run["history"]'s last to settings.epochs, train, validate,
    record and (the first process) save each epoch."""
    skips, epochs = run["skipped_during_training"], settings.epochs
    for epoch in range(len(run["history"]) + 1, epochs + 1):
        loaders.train.sampler.set_epoch(epoch, settings.seed)  # this run's order and augmentation
        desc = f"epoch {epoch}/{epochs}" if settings.progress and rank == 0 else None
        done = train_one_epoch(parts, loaders.train, skips, desc)
        val_loss = validate(parts.model, loaders.val, skips, parts.dtype)
        run["history"].append({"epoch": epoch, "train_loss": done["train_loss"], "val_loss": val_loss} | done)
        if rank != 0:
            continue
        if settings.progress:
            print(f"epoch {epoch}/{epochs}: train {done['train_loss']:.5f}  val {val_loss:.5f}  "
                  f"{done['seconds']:.1f}s  {done['images_per_s']:.0f} img/s", flush=True)  # fmt: skip
        runs.save_epoch(parts, run, out_dir, settings.keep_all)


def fit_seeds(
    settings: Settings, loaders: data.Loaders, out_dir, seeds, resume: bool = False
) -> dict[int, dict]:
    """fit once per seed, into out_dir/seed-<seed>/, with the same loaders and `settings` but the
    seed: {seed: run record}. The photos of every part are the same for every seed; the seed sets
    the initial weights, order and augmentation."""
    return {s: fit(replace(settings, seed=s), loaders, Path(out_dir) / f"seed-{s}", resume)[1] for s in seeds}


# --- command line ---------------------------------------------------------------------------------


class _Replaced(argparse.Action):
    """An option that a later version replaced: refused with the one that does its job."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was replaced by {self.help}")


def parser() -> argparse.ArgumentParser:
    """The command line: the run's options (each a field of Settings), its head's (head_options) and
    the photos' (data_options)."""
    p = argparse.ArgumentParser(
        prog="python -m lib.train",
        description="Train one colorizer on the train part, choose its checkpoint on the dev part, and "
        "show it and the gray baseline on that dev part (score the held-out part with lib.evaluate).",
    )
    add = p.add_argument
    add("--model", default="resnet18", choices=list(models.MODELS))
    head_options(p.add_argument_group("the head").add_argument)
    add("--epochs", type=options.count(1), default=5)
    add(
        "--lr",
        type=options.number(0, low_open=True),
        default=1e-3,
        help="learning rate (the peak, for --schedule onecycle)",
    )
    add("--schedule", default="constant", choices=SCHEDULES)
    add(
        "--warmup",
        type=options.number(0, 1, low_open=True, high_open=True),
        default=0.15,
        help="onecycle: share of the steps spent warming up",
    )
    add(
        "--step",
        default="batch",
        choices=STEPS,
        help="onecycle: move the learning rate on every batch or epoch",
    )
    add(
        "--precision",
        default="auto",
        choices=["auto", *PRECISIONS],
        help="autocast type in training: auto (bf16 on CUDA, fp32 elsewhere), fp32, bf16, or fp16 with a "
        "gradient scaler (for GPUs: on a CPU some 80x slower than fp32)",
    )
    add("--bf16", nargs=0, action=_Replaced, help="--precision bf16")
    add("--seed", type=options.count(0), default=0)
    add("--device", type=options.device, default="auto")
    add("--out", default=None, help="run folder (default: runs/<model>-<time>)")
    add("--resume", action="store_true", help="continue the run in --out")
    add("--compile", action="store_true", help="train through torch.compile (long runs)")
    data_options(p.add_argument_group("the photos").add_argument)
    return p  # fmt: skip


def head_options(add) -> None:
    """The options of the model's head (models.HEADS): which, and the classification head's own."""
    add(
        "--head",
        default=models.DEFAULT_HEAD,
        choices=list(models.HEADS),
        help="predict ab (regression, MSE) or a distribution over colour bins (classification, Zhang et al.)",
    )
    add(
        "--rebalance",
        type=options.number(0, 1, low_open=True),
        default=None,
        metavar="LAMBDA",
        help=f"classification head: lambda of the class rebalancing (default {classes.LAMBDA}; 1 = none)",
    )
    add(
        "--neighbours",
        type=options.count(1, 32),
        default=None,
        metavar="K",
        help=f"classification head: bins that share a pixel's soft target (default {classes.NEIGHBOURS})",
    )


def data_options(add) -> None:
    """The options of the photos a run trains and chooses on (data.make_loaders)."""
    add(
        "--data",
        default="photos",
        help="'photos' (the embedded photos), a folder of colour photos (with train/, dev/ and held-out/ "
        "subfolders, or cut into them by a rule of the file name), or places365-val / places205-test "
        "(fetched into data/ on first use)",
    )
    add(
        "--split",
        default=None,
        metavar="FILE",
        help="a split file of --data (lib.splits.write_split): train on its train part, validate on its dev",
    )
    add("--size", type=options.SIZE, default=64, help="training crop size in pixels")
    add("--batch-size", type=options.count(1), default=32)
    add("--max-images", type=options.count(1), default=None)
    add("--augment", default="crop", choices=["crop", "affine", "none"])
    add(
        "--crop-scale",
        type=options.number(0, 1, low_open=True),
        default=0.08,
        help="--augment crop: the smallest share of a photo's area that a crop covers (default 0.08)",
    )
    add("--workers", type=options.count(0), default=None)  # fmt: skip


def settings_from(p: argparse.ArgumentParser, a: argparse.Namespace) -> Settings:
    """The run's Settings from the parsed options (a head's options only where they were given,
    so a default run's record is {} as it always was); bad combinations end with p.error."""
    chosen = {"head": a.head} if a.head != models.DEFAULT_HEAD else {}
    chosen |= {k: v for k, v in (("rebalance", a.rebalance), ("neighbours", a.neighbours)) if v is not None}
    try:
        models.head_class(a.head, chosen.keys() - {"head"})
    except ValueError as e:
        p.error(f"{e} (--head {a.head})")
    return Settings(
        a.model, chosen, epochs=a.epochs, lr=a.lr, schedule=a.schedule, warmup=a.warmup, step=a.step,
        precision=a.precision, seed=a.seed, device=a.device, compile=a.compile,
    )  # fmt: skip


def report(run: dict, loaders: data.Loaders, device) -> dict:
    """Score the checkpoint the dev part chose, and the gray baseline, on that dev part; print
    them and return the scores (optimistic ones: the dev part chose the checkpoint)."""
    model, _ = checkpoints.load(checkpoints.best(run), device)
    label = models.label(run["model"], run["options"])
    predictors = {label: model, "gray baseline": metrics.gray_baseline}
    # the same record of skips as training's: a file that failed there is not named twice
    scores = metrics.evaluate_all(predictors, loaders.val, device, run["skipped_during_training"])
    print(f"\nthe dev part, {scores[label]['n_images']} images: the part that chose this checkpoint (epoch "
          f"{checkpoints.chosen(run)['epoch']}):")  # fmt: skip
    print(metrics.format_table(scores))
    if run["skipped_during_training"]:
        print(f"{len(run['skipped_during_training'])} more files skipped while training (see the log above)")
    return scores


@options.command
def main(argv=None) -> int:
    p = parser()
    a = p.parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    settings = settings_from(p, a)
    rank, world = start_distributed()  # under torchrun: one process per GPU (or CPU share)
    device = checkpoints.pick_device(a.device)
    name = a.model + (f"-{a.head}" if settings.options else "")
    out = [a.out or f"runs/{name}-{datetime.now():%Y%m%d-%H%M%S}"]
    if world > 1:
        dist.broadcast_object_list(out, src=0)  # one run folder for all processes
    out, started = Path(out[0]), results.now()
    try:
        loaders = data.make_loaders(
            a.data, a.size, a.batch_size, max_images=a.max_images, augment=a.augment,
            workers=a.workers, pin_memory=device.type == "cuda", split_file=a.split, crop_scale=a.crop_scale,
        )  # fmt: skip
        d = loaders.description
        if rank == 0:
            print(f"data: {d['n_train']} train / {d['n_val']} dev images at {a.size}px, "
                  f"{len(d['skipped'])} skipped; {world} process(es)")  # fmt: skip
        _, run = fit(settings, loaders, out, a.resume)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if world > 1:
        dist.barrier()  # the first process has written the last checkpoint
        dist.destroy_process_group()
        if rank != 0:
            return 0
    scores = report(run, loaders, device)
    # "dev_metrics", never "metrics": these scores are optimistic (the dev part chose the
    # checkpoint), so nothing that reports held-out scores may take them for such
    results.save(
        out / "results.json", **run, dev_metrics=scores, provenance=results.provenance(device, started)
    )
    print(f"\nrun folder: {out}  (results.json, checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
