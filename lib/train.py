"""One training loop for every model, checkpoints that really restore, and `python -m lib.train`.

A run lives in one folder:
  last.pt                              everything needed to resume (weights, optimizer, history)
  model-epoch-007-val-0.01234.pt       a checkpoint each time the validation loss improves
                                       (or only best.pt, with keep_all=False)
  results.json                         (the command line) history, metrics, provenance
Every checkpoint is written atomically (lib.checkpoints.write), so a crash never leaves half a
file. A folder that already holds a run is never overwritten: resume it or pick another folder.

Reproducibility: the model is built right after seeding, and the shuffling and augmentation of
each epoch depend only on (seed, epoch) (lib.data.EpochSampler). So two CPU runs give the same
numbers, and a resumed run gives the same history as one that never stopped.

`fit` reads top to bottom as the steps of a run: build, restore (resume), colour prior, then for each epoch
train_one_epoch, validate and save_epoch. Inference (loading and using checkpoints) lives in
lib.checkpoints, which never imports this module.
"""

import argparse
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from lib import checkpoints, classes, data, images, lab, metrics, models, results

SCHEDULES = ("constant", "onecycle")


def start_distributed() -> tuple[int, int]:
    """Under torchrun (WORLD_SIZE > 1): join the process group, NCCL on GPUs and gloo on CPUs, and
    give each process its own GPU. Returns (rank, number of processes); (0, 1) without torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


# --- the steps of a run -----------------------------------------------------------------------------


def batches(loader, device, skips: dict):
    """(l, ab) of each batch on the device. Files that failed to decode in a worker come back with
    the batch: each is logged once and remembered in `skips`."""
    for rgb, bad in loader:
        images.record_skips(skips, bad)
        if len(rgb):
            yield data.to_model(rgb, device)


def forward(model, l, device, bf16: bool = False) -> torch.Tensor:
    """The model's float32 output in training and validation (ab, or a classifier's logits): bf16
    autocast on CUDA (and on the CPU with bf16=True: about 1.5-2x faster where the CPU has bf16
    instructions), channels-last memory everywhere. (Inference runs in float32:
    checkpoints.Inference.)"""
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda" or bf16):
        return model(l.contiguous(memory_format=torch.channels_last)).float()


def make_optimizer(model, settings: dict, steps: int):
    """Adam, and the learning-rate schedule: (optimizer, scheduler or None).

    "onecycle" runs the learning rate up from lr/25 to lr over the first `warmup` of all `steps`,
    then down to lr/25e4 along a cosine (torch's OneCycleLR, with Adam's betas kept as they are);
    "constant" keeps lr throughout."""
    opt = torch.optim.Adam(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    if settings["schedule"] == "constant":
        return opt, None
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=settings["lr"], total_steps=steps, pct_start=settings["warmup"], cycle_momentum=False
    )
    return opt, sched


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


def restore(last: Path, run: dict, model, opt, sched) -> None:
    """Load last.pt into the model, optimizer, scheduler and run record, after checking that it
    is the same run: the same model, options, data and settings (only more epochs, and those not
    for a one-cycle schedule, which has ended). Raises ValueError naming what differs."""
    state = torch.load(last, map_location=next(model.parameters()).device, weights_only=True)
    mismatch = {k for k in ("model", "options") if state[k] != run[k]}
    same_data = (
        "source",
        "split",
        "parts",
        "size",
        "max_images",
        "n_train",
        "n_val",
        "augment",
        "crop_scale",
    )
    if any(state["data"].get(k) != run["data"].get(k) for k in same_data):
        mismatch.add("data")
    before = {"schedule": "constant", "bf16": False} | state["run"]["settings"]  # older runs
    settings = run["settings"]
    mismatch |= {k for k in settings if k != "epochs" and before.get(k) != settings[k]}
    if mismatch:
        raise ValueError(f"{last}: cannot resume, the run used other {', '.join(sorted(mismatch))}")
    if sched is not None and before["epochs"] != settings["epochs"]:
        raise ValueError(
            f"{last}: cannot resume with {settings['epochs']} epochs: its one-cycle schedule was laid "
            f"out for {before['epochs']} (start a new run for a longer one)"
        )
    model.load_state_dict(state["state_dict"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None:
        sched.load_state_dict(state["scheduler"])
    kept = ("history", "checkpoints", "skipped_during_training", "ab_prior")
    run |= {k: state["run"][k] for k in kept if k in state["run"]}


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
    """A classification head needs the training photos' colour prior: measured before the first
    epoch (it sets the rebalancing weights) and kept in the run record; a resumed run takes it
    from there (its weights came with last.pt). Other heads: nothing to do."""
    if model.head.kind != "classification":
        return
    if not run["history"]:
        prior = colour_prior(loader, device, run["skipped_during_training"])
        model.head.set_prior(prior)
        run["ab_prior"] = prior.tolist()
    else:
        model.head.set_prior(run["ab_prior"], weights=False)


def train_one_epoch(net, model, opt, sched, loader, device, skips: dict, bf16: bool, desc: str) -> dict:
    """One pass over the training loader: (train_loss, seconds, images_per_s, lr_last). `net` is
    what computes (the model, or its DDP/compiled wrapper); `model` holds the loss. desc=None:
    no progress bar. Under torchrun the loss and image count are summed over all processes.
    Raises ValueError when no training image could be decoded (none of any process)."""
    model.train()
    t0, total, n, lr_used = time.perf_counter(), torch.zeros((), device=device), 0, None
    bar = tqdm(loader, desc=desc, leave=False, disable=desc is None)
    for l, ab in batches(bar, device, skips):
        loss = model.head.loss(forward(net, l, device, bf16), ab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lr_used = opt.param_groups[0]["lr"]
        opt.step()
        if sched is not None:
            sched.step()
        total += loss.detach() * len(l)
        n += len(l)
    if dist.is_initialized() and dist.get_world_size() > 1:
        counts = torch.stack((total, torch.tensor(float(n), device=device)))
        dist.all_reduce(counts)
        total, n = counts[0], int(counts[1])
    if n == 0:  # every process raises: n is the sum over all of them
        raise _no_images(loader, skips, "training")
    seconds = time.perf_counter() - t0
    # lr_last: the learning rate of the epoch's last step
    return {"train_loss": float(total) / max(n, 1), "seconds": seconds, "images_per_s": n / seconds,
            "lr_last": lr_used}  # fmt: skip


@torch.no_grad()
def validate(model, loader, device, skips: dict, bf16: bool = False) -> float:
    """The model's own loss (normalized MSE for a regression head) over every validation image.
    Raises ValueError when no image of the loader could be decoded (a loss of nothing is no 0)."""
    model.eval()
    total, n = torch.zeros((), device=device), 0
    for l, ab in batches(loader, device, skips):
        total += model.head.loss(forward(model, l, device, bf16), ab) * len(l)
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


def save_epoch(model, opt, sched, run: dict, out_dir: Path, keep_all: bool) -> None:
    """After an epoch (the last entry of run["history"]): a checkpoint if its validation loss is
    the best so far (every improvement with keep_all, else best.pt only), and last.pt, which
    holds everything a resume needs (the same checkpoint plus optimizer, scheduler and record)."""
    entry = run["history"][-1]
    extra = {"ab_prior": run["ab_prior"]} if "ab_prior" in run else {}  # vividness needs it
    ckpt = checkpoints.make(
        model, run["model"], run["options"], entry["epoch"], entry["val_loss"], run["data"], **extra
    )
    if entry["val_loss"] < min((h["val_loss"] for h in run["history"][:-1]), default=float("inf")):
        name = f"model-epoch-{entry['epoch']:03d}-val-{entry['val_loss']:.5f}.pt" if keep_all else "best.pt"
        checkpoints.write(ckpt, out_dir / name)
        saved = {"epoch": entry["epoch"], "path": str(out_dir / name), "val_loss": entry["val_loss"]}
        run["checkpoints"] = [*run["checkpoints"], saved] if keep_all else [saved]
    state = {**ckpt, "optimizer": opt.state_dict(), "run": run}
    if sched is not None:
        state["scheduler"] = sched.state_dict()
    checkpoints.write(state, out_dir / "last.pt")


# --- the loop -----------------------------------------------------------------------------------


def fit(
    model_name: str,
    loaders: data.Loaders,
    out_dir,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    warmup: float = 0.15,
    bf16: bool = False,
    options: dict | None = None,
    device="auto",
    seed: int = 0,
    resume: bool = False,
    keep_all: bool = True,
    progress: bool = True,
    compile_model: bool = False,
) -> tuple[torch.nn.Module, dict]:
    """Train `model_name` (with `options`, e.g. {"head": "classification"}) on loaders.train (the
    train part), validate each epoch on loaders.val (the dev part), checkpoint the best into
    out_dir: the dev part chooses the checkpoint, so it cannot also score it (the held-out part
    does that, outside this function). `seed` sets the initial weights and each epoch's order and
    augmentation; the loaders (the photos of each part) are the same for every seed.

    Returns (the trained model as of the last epoch, the run record: model, options,
    normalization, settings, data description, per-epoch history (train loss, val loss, seconds,
    images/s, last learning rate), checkpoints (epoch, path, val loss), device).

    resume=True continues the run in out_dir (see `restore`); without it, a folder that holds a
    run is refused. A folder with a run's results.json or checkpoints but no last.pt is refused
    either way (FileExistsError): it cannot be resumed, and would be overwritten. An epoch whose
    training or validation pass yields no image (every file failed to decode) raises ValueError
    before anything of it is saved. keep_all=True keeps a checkpoint for every improvement of the validation
    loss (for a checkpoint analysis); False keeps only the best one, as best.pt.
    schedule: "constant" or "onecycle" with `warmup` (make_optimizer); its state is in last.pt,
    so a resumed run is exact. bf16=True trains under bfloat16 autocast on the CPU too (always on
    CUDA). compile_model=True trains through torch.compile (TorchInductor; on the CPU it needs a
    C++ compiler): it pays tens of seconds of compilation up front, so it only pays off on long
    runs; checkpoints and results are the same as without it.

    Under torchrun, each process trains on its share of every epoch through DistributedDataParallel
    (batch_size is per process); every process validates the whole validation set (the same model,
    so the same number), and only the first one prints and writes files.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose 'constant' or 'onecycle'")
    options, device, out_dir = dict(options or {}), checkpoints.pick_device(str(device)), Path(out_dir)
    settings = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "seed": seed}
    settings |= {"batch_size": loaders.train.batch_size, "schedule": schedule, "bf16": bf16}
    if schedule == "onecycle":
        settings["warmup"] = warmup

    # Build: seeded first, so the same seed gives the same weights.
    torch.manual_seed(seed)
    model = models.build_model(model_name, **options).to(device)
    model = model.to(memory_format=torch.channels_last)  # +25-50 % on CPU and GPU convolutions
    opt, sched = make_optimizer(model, settings, steps=epochs * len(loaders.train))
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model  # averages gradients
    if compile_model:  # compiles the training step only; validation and checkpoints use `model` itself
        net = torch.compile(net)
    run = {
        "model": model_name, "options": options, "normalization": lab.NORMALIZATION,
        "settings": settings, "data": loaders.description, "parameters": models.count_parameters(model),
        "device": str(device), "processes": world, "compiled": compile_model,
        "history": [], "checkpoints": [], "skipped_during_training": {},
    }  # fmt: skip

    # Resume, or start in a folder that holds no run.
    if last := run_to_resume(out_dir, resume):
        restore(last, run, model, opt, sched)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_colour_prior(model, run, loaders.train, device)

    skips = run["skipped_during_training"]
    for epoch in range(len(run["history"]) + 1, epochs + 1):
        loaders.train.sampler.set_epoch(epoch, seed)  # this run's order and augmentation seeds
        desc = f"epoch {epoch}/{epochs}" if progress and rank == 0 else None
        done = train_one_epoch(net, model, opt, sched, loaders.train, device, skips, bf16, desc)
        val_loss = validate(model, loaders.val, device, skips, bf16)
        entry = {"epoch": epoch, "train_loss": done["train_loss"], "val_loss": val_loss} | done
        run["history"].append(entry)
        if rank != 0:
            continue
        if progress:
            print(
                f"epoch {epoch}/{epochs}: train {entry['train_loss']:.5f}  val {val_loss:.5f}  "
                f"{entry['seconds']:.1f}s  {entry['images_per_s']:.0f} img/s",
                flush=True,
            )
        save_epoch(model, opt, sched, run, out_dir, keep_all)
    return model, run


def fit_seeds(model_name: str, loaders: data.Loaders, out_dir, seeds, **settings) -> dict[int, dict]:
    """fit once per seed, into out_dir/seed-<seed>/, with the same loaders and `settings` (fit's
    keyword arguments but the seed): {seed: run record}. The photos of every part are the same
    for every seed; the seed sets the initial weights, order and augmentation."""
    return {s: fit(model_name, loaders, Path(out_dir) / f"seed-{s}", seed=s, **settings)[1] for s in seeds}


# --- command line ---------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lib.train",
        description="Train one colorizer on the train part, choose its checkpoint on the dev part, and "
        "show it and the gray baseline on that dev part (score the held-out part with lib.evaluate).",
    )
    p.add_argument("--model", default="resnet18", choices=list(models.MODELS))
    p.add_argument(
        "--head", default="regression", choices=["regression", "classification"],
        help="predict ab (MSE) or a distribution over colour bins (Zhang et al.)",
    )  # fmt: skip
    p.add_argument(
        "--rebalance", type=float, default=None, metavar="LAMBDA",
        help=f"classification head: lambda of the class rebalancing (default {classes.LAMBDA}; 1 = none)",
    )  # fmt: skip
    p.add_argument(
        "--neighbours", type=int, default=None, metavar="K",
        help=f"classification head: bins that share a pixel's soft target (default {classes.NEIGHBOURS})",
    )  # fmt: skip
    p.add_argument(
        "--data",
        default="photos",
        help="'photos' (the embedded photos), a folder of colour photos (with train/, dev/ and held-out/ "
        "subfolders, or cut into them by a rule of the file name), or places365-val / places205-test "
        "(fetched into data/ on first use)",
    )
    p.add_argument(
        "--split", default=None, metavar="FILE",
        help="a split file of --data (lib.splits.write_split): train on its train part, validate on its dev",
    )  # fmt: skip
    p.add_argument("--size", type=int, default=64, help="training crop size in pixels")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (the peak, for --schedule onecycle)")
    p.add_argument("--schedule", default="constant", choices=["constant", "onecycle"])
    p.add_argument("--warmup", type=float, default=0.15, help="onecycle: share of the steps spent warming up")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast on the CPU too (always on CUDA)")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--augment", default="crop", choices=["crop", "affine", "none"])
    p.add_argument(
        "--crop-scale", type=float, default=0.08,
        help="--augment crop: the smallest share of a photo's area that a crop covers (default 0.08)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", default=None, help="run folder (default: runs/<model>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--compile", action="store_true", help="train through torch.compile (long runs)")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    if (a.rebalance is not None or a.neighbours is not None) and a.head != "classification":
        p.error("--rebalance and --neighbours need --head classification")
    if not 0 < a.crop_scale <= 1:
        p.error(f"--crop-scale must be in (0, 1], got {a.crop_scale}")
    options = {"head": a.head} if a.head != "regression" else {}  # regression runs: as before
    if a.rebalance is not None:
        options["rebalance"] = a.rebalance
    if a.neighbours is not None:
        options["neighbours"] = a.neighbours

    rank, world = start_distributed()  # under torchrun: one process per GPU (or CPU share)
    device = checkpoints.pick_device(a.device)
    name = a.model if not options else f"{a.model}-{a.head}"
    out = [a.out or f"runs/{name}-{datetime.now():%Y%m%d-%H%M%S}"]
    if world > 1:
        dist.broadcast_object_list(out, src=0)  # one run folder for all processes
    out = Path(out[0])
    started = results.now()
    try:
        loaders = data.make_loaders(
            a.data, a.size, a.batch_size, max_images=a.max_images, augment=a.augment,
            workers=a.workers, pin_memory=device.type == "cuda", split_file=a.split, crop_scale=a.crop_scale,
        )  # fmt: skip
        d = loaders.description
        if rank == 0:
            print(f"data: {d['n_train']} train / {d['n_val']} dev images at {a.size}px, "
                  f"{len(d['skipped'])} skipped; {world} process(es)")  # fmt: skip
        _, run = fit(
            a.model, loaders, out, epochs=a.epochs, lr=a.lr, options=options, device=device, seed=a.seed,
            resume=a.resume, compile_model=a.compile, schedule=a.schedule, warmup=a.warmup, bf16=a.bf16,
        )  # fmt: skip
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if world > 1:
        dist.barrier()  # the first process has written the last checkpoint
        dist.destroy_process_group()
        if rank != 0:
            return 0
    model, _ = checkpoints.load(checkpoints.best(run), device)
    label = models.label(a.model, options)
    predictors = {label: model, "gray baseline": metrics.gray_baseline}
    # the same record of skips as training's: a file that failed there is not named twice
    scores = metrics.evaluate_all(predictors, loaders.val, device, run["skipped_during_training"])
    print(f"\nthe dev part, {scores[label]['n_images']} images: the part that chose this checkpoint (epoch "
          f"{checkpoints.chosen(run)['epoch']}):")  # fmt: skip
    print(metrics.format_table(scores))
    if run["skipped_during_training"]:
        print(f"{len(run['skipped_during_training'])} more files skipped while training (see the log above)")
    # "dev_metrics", never "metrics": these scores are optimistic (the dev part chose the
    # checkpoint), so nothing that reports held-out scores may take them for such
    prov = results.provenance(device, started)
    results.save(out / "results.json", **run, dev_metrics=scores, provenance=prov)
    print(f"\nrun folder: {out}  (results.json, checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
