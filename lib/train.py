"""One training loop for every model, checkpoints that really restore, and `python -m lib.train`.

A run lives in one folder:
  last.pt                              everything needed to resume (weights, optimizer, history)
  model-epoch-007-val-0.01234.pt       a checkpoint each time the validation loss improves
                                       (or only best.pt, with keep_all=False)
  results.json                         (the command line) history, metrics, provenance
Every checkpoint is written to a temporary file and renamed, so a crash never leaves half a file.
A folder that already holds a run is never overwritten: resume it or pick another folder.

Reproducibility: the model is built right after seeding, and the shuffling and augmentation of
each epoch depend only on (seed, epoch) (lib.data.EpochSampler). So two CPU runs give the same
numbers, and a resumed run gives the same history as one that never stopped.
"""

import argparse
import hashlib
import io
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from lib import classes, data, datasets, lab, metrics, models, results

CHECKPOINT_FORMAT = "bw-colorization-checkpoint/1"

# The shipped reference model (README, "Model card"): trained once at scale, carried by the package.
# Its SHA-256 is checked at every load, so a damaged or replaced file is refused, never used.
REFERENCE = Path(__file__).resolve().parent / "weights" / "reference.pt"
REFERENCE_SHA256 = "bbf211307268e88d4e32df9e269d64405d4964115d6570f1e01c735bf6316ac0"


# --- environment ----------------------------------------------------------------------------------


def pick_device(requested: str = "auto") -> torch.device:
    """ "auto" picks cuda, then mps, then cpu; anything else is passed to torch.device."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def start_distributed() -> tuple[int, int]:
    """Under torchrun (WORLD_SIZE > 1): join the process group, NCCL on GPUs and gloo on CPUs, and
    give each process its own GPU. Returns (rank, number of processes); (0, 1) without torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


# --- checkpoints ----------------------------------------------------------------------------------


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: all or nothing."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint describes and load its weights. Returns (model, checkpoint).

    path "reference" (or REFERENCE itself) is the shipped reference model, checked against
    REFERENCE_SHA256. The model carries what inference needs from its checkpoint: `training_size`
    (the crop size it was trained at), the colour prior of a classification head (for vividness
    settings), and, where the checkpoint records them (the reference model does), `working_size`
    (the shorter side it sees photos at) and `vividness` (its default setting);
    models.predict_ab uses the last two.
    The checkpoint dict gets "sha256", the file's.

    Raises ValueError with one clear line for anything that is not one of our checkpoints.
    """
    path = REFERENCE if str(path) == "reference" else Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    raw = path.read_bytes()  # read once: hashed, then loaded
    sha = hashlib.sha256(raw).hexdigest()
    if path.resolve() == REFERENCE and sha != REFERENCE_SHA256:
        raise ValueError(
            f"{path}: SHA-256 {sha[:16]}... is not the shipped reference model's "
            f"{REFERENCE_SHA256[:16]}... (a damaged or replaced file: restore it with git or pip)"
        )
    try:
        ckpt = torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (found {found!r})")
    if ckpt["normalization"] != lab.NORMALIZATION:
        raise ValueError(
            f"{path}: trained with normalization {ckpt['normalization']}, this code uses {lab.NORMALIZATION}"
        )
    # Never download weights to rebuild a model whose weights we are about to load anyway.
    options = {**ckpt["options"], **({"pretrained": False} if "pretrained" in ckpt["options"] else {})}
    try:
        model = models.build_model(ckpt["model"], **options)
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, TypeError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(
            f"{path}: does not fit this version's {ckpt.get('model')!r} model ({first})"
        ) from None
    model.training_size = (ckpt.get("data") or {}).get("size")
    model.working_size = ckpt.get("working_size")
    model.vividness = ckpt.get("vividness")
    if ckpt.get("ab_prior") is not None and model.head == "classification":
        model.set_prior(ckpt["ab_prior"], weights=False)  # the weights are the loaded ones
    ckpt["sha256"] = sha
    return model.to(device).eval(), ckpt


def make_checkpoint(model, name, options, epoch, val_loss, description, **extra) -> dict:
    """What a checkpoint file holds: weights plus everything needed to rebuild and judge them."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": name,
        "options": options,
        "head": model.head,  # "regression" or "classification": how to read the model's output
        "normalization": lab.NORMALIZATION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "val_loss": val_loss,
        "data": description,
        "git_commit": results.CODE_COMMIT,
        **extra,
    }


def export_reference(checkpoint, out, working_size: int, vividness: float | None, ab_prior=None) -> str:
    """Write a trained checkpoint as a file to ship (lib/weights/reference.pt): the weights in
    float16 (half the size), plus the working size and default vividness that every inference path
    then uses, and the colour prior of its training photos (from the checkpoint, else `ab_prior`,
    the run record's). Never replaces a file. Returns the new file's SHA-256, for REFERENCE_SHA256."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: exists; move it away first")
    _, ckpt = load_checkpoint(checkpoint)  # refuses what is not one of our checkpoints
    state = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    kept = ("format", "model", "options", "head", "normalization", "epoch", "val_loss", "data", "git_commit")
    ref = {k: ckpt[k] for k in kept} | {"state_dict": state, "working_size": working_size}
    ref |= {"vividness": vividness, "ab_prior": ckpt.get("ab_prior", ab_prior)}
    ref["exported_from"] = {"file": Path(checkpoint).name, "sha256": ckpt["sha256"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(ref, out)
    return datasets.sha256(out)


# --- the loop -----------------------------------------------------------------------------------


def batches(loader, device, skips: dict):
    """(l, ab) of each batch on the device. Files that failed to decode in a worker come back with
    the batch: each is logged once and remembered in `skips`."""
    for rgb, bad in loader:
        data.record_skips(skips, bad)
        if len(rgb):
            yield data.to_model(rgb, device)


def forward(model, l, device, bf16: bool = False) -> torch.Tensor:
    """The model's float32 output (ab, or a classifier's logits): bf16 autocast on CUDA (and on
    the CPU with bf16=True: about 1.5-2x faster where the CPU has bf16 instructions),
    channels-last memory everywhere."""
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda" or bf16):
        return model(l.contiguous(memory_format=torch.channels_last)).float()


@torch.no_grad()
def validate(model, loader, device, skips: dict, bf16: bool = False) -> float:
    """The model's own loss (normalized MSE for a regression head) over every validation image."""
    model.eval()
    total, n = torch.zeros((), device=device), 0
    for l, ab in batches(loader, device, skips):
        total += model.loss(forward(model, l, device, bf16), ab) * len(l)
        n += len(l)
    return float(total) / max(n, 1)


@torch.no_grad()
def colour_prior(loader, device, skips: dict) -> torch.Tensor:
    """The training set's ab prior over the colour bins (lib.classes), from one pass of the loader
    (epoch 0's crops, which training never uses). Under torchrun every process counts its share
    and the shares are averaged: the same prior, hence the same class weights, everywhere."""
    loader.sampler.set_epoch(0)
    bins = classes.ab_bins().to(device)
    prior = classes.ab_prior((ab for _, ab in batches(loader, device, skips)), bins).to(device)
    if dist.is_initialized():
        dist.all_reduce(prior)
        prior /= dist.get_world_size()
    return prior.cpu()


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
    compile: bool = False,
) -> tuple[torch.nn.Module, dict]:
    """Train `model_name` on loaders.train, validate each epoch, checkpoint the best.

    Returns (the trained model as of the last epoch, the run record).

    keep_all=True keeps a checkpoint for every improvement of the validation loss (for a
    checkpoint analysis); False keeps only the best one, as best.pt.

    The run record: model, options, normalization, settings, data description, per-epoch history
    (train loss, val loss, seconds, images/s), checkpoints (epoch, path, val loss), device.

    schedule="onecycle" runs the learning rate up from lr/25 to `lr` over the first `warmup` of
    all steps, then down to lr/25e4 along a cosine (torch's OneCycleLR, with Adam's betas kept as
    they are); "constant" keeps `lr` throughout. The schedule's state is in last.pt, so a resumed
    run is exact; a one-cycle run cannot be extended to more epochs (its schedule has ended).

    bf16=True trains under bfloat16 autocast on the CPU too (always on CUDA).

    compile=True trains through torch.compile (TorchInductor; on the CPU it needs a C++ compiler).
    It pays a compilation of tens of seconds up front (again for a last, smaller batch), so it
    only pays off on long runs; checkpoints and results are the same as without it.

    Under torchrun, each process trains on its share of every epoch through DistributedDataParallel
    (batch_size is per process); every process validates the whole validation set (the same model,
    so the same number), and only the first one prints and writes files.
    """
    options = dict(options or {})
    device = pick_device(str(device))
    out_dir = Path(out_dir)
    if schedule not in ("constant", "onecycle"):
        raise ValueError(f"unknown schedule {schedule!r}; choose 'constant' or 'onecycle'")
    settings = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "seed": seed}
    settings |= {"batch_size": loaders.train.batch_size, "schedule": schedule, "bf16": bf16}
    if schedule == "onecycle":
        settings["warmup"] = warmup

    torch.manual_seed(seed)
    model = models.build_model(model_name, **options).to(device)
    model = model.to(memory_format=torch.channels_last)  # +25-50 % on CPU and GPU convolutions
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * len(loaders.train)  # batches per epoch are the same in every epoch
    sched = None
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=steps, pct_start=warmup, cycle_momentum=False
        )
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model  # averages gradients
    if compile:  # compiles the training step only; validation and checkpoints use `model` itself
        net = torch.compile(net)
    run = {
        "model": model_name,
        "options": options,
        "normalization": lab.NORMALIZATION,
        "settings": settings,
        "data": loaders.description,
        "parameters": models.count_parameters(model),
        "device": str(device),
        "processes": world,
        "compiled": compile,
        "history": [],
        "checkpoints": [],
        "skipped_during_training": {},
    }

    last = out_dir / "last.pt"
    if resume and last.exists():
        state = torch.load(last, map_location=device, weights_only=True)
        mismatch = {k for k in ("model", "options") if state[k] != run[k]}
        same_data = ("source", "size", "seed", "val_size", "max_images", "n_train", "n_val", "split")
        same_data += ("augment", "crop_scale")
        if any(state["data"].get(k) != loaders.description.get(k) for k in same_data):
            mismatch.add("data")
        before = {"schedule": "constant", "bf16": False} | state["run"]["settings"]  # older runs
        mismatch |= {k for k in settings if k != "epochs" and before.get(k) != settings[k]}
        if mismatch:
            raise ValueError(f"{last}: cannot resume, the run used other {', '.join(sorted(mismatch))}")
        if sched is not None and before["epochs"] != epochs:
            raise ValueError(
                f"{last}: cannot resume with {epochs} epochs: its one-cycle schedule was laid out for "
                f"{before['epochs']} (start a new run for a longer one)"
            )
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        kept = ("history", "checkpoints", "skipped_during_training", "ab_prior")
        run |= {k: state["run"][k] for k in kept if k in state["run"]}
    elif last.exists():
        raise FileExistsError(f"{out_dir}: already holds a run; resume it or choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    skips = run["skipped_during_training"]
    if model.head == "classification" and not run["history"]:
        prior = colour_prior(loaders.train, device, skips)
        model.set_prior(prior)
        run["ab_prior"] = prior.tolist()
    elif "ab_prior" in run:  # resumed: the class weights came with last.pt, the prior with its record
        model.set_prior(run["ab_prior"], weights=False)
    with_prior = {"ab_prior": run["ab_prior"]} if "ab_prior" in run else {}  # checkpoints keep it
    best = min((h["val_loss"] for h in run["history"]), default=float("inf"))
    for epoch in range(len(run["history"]) + 1, epochs + 1):
        loaders.train.sampler.set_epoch(epoch)  # shuffle order and augmentation seeds
        model.train()
        t0, total, n, lr_used = time.perf_counter(), torch.zeros((), device=device), 0, None
        show = progress and rank == 0
        bar = tqdm(loaders.train, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not show)
        for l, ab in batches(bar, device, skips):
            loss = model.loss(forward(net, l, device, bf16), ab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr_used = opt.param_groups[0]["lr"]
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.detach() * len(l)
            n += len(l)
        if world > 1:  # the epoch's loss and image count over all processes
            counts = torch.stack((total, torch.tensor(float(n), device=device)))
            dist.all_reduce(counts)
            total, n = counts[0], int(counts[1])
        seconds = time.perf_counter() - t0
        val_loss = validate(model, loaders.val, device, skips, bf16)
        entry = {
            "epoch": epoch,
            "train_loss": float(total) / max(n, 1),
            "val_loss": val_loss,
            "seconds": seconds,
            "images_per_s": n / seconds,
            "lr_last": lr_used,  # the learning rate of the epoch's last step
        }
        run["history"].append(entry)
        if rank != 0:
            continue
        if progress:
            print(
                f"epoch {epoch}/{epochs}: train {entry['train_loss']:.5f}  val {val_loss:.5f}  "
                f"{seconds:.1f}s  {entry['images_per_s']:.0f} img/s",
                flush=True,
            )
        ckpt = make_checkpoint(model, model_name, options, epoch, val_loss, loaders.description, **with_prior)
        if val_loss < best:
            best = val_loss
            name = f"model-epoch-{epoch:03d}-val-{val_loss:.5f}.pt" if keep_all else "best.pt"
            save_atomic(ckpt, out_dir / name)
            entry = {"epoch": epoch, "path": str(out_dir / name), "val_loss": val_loss}
            run["checkpoints"] = [*run["checkpoints"], entry] if keep_all else [entry]
        state = {**ckpt, "optimizer": opt.state_dict(), "run": run}
        if sched is not None:
            state["scheduler"] = sched.state_dict()
        save_atomic(state, last)
    return model, run


@torch.no_grad()
def predict(model, rgb: torch.Tensor, device) -> torch.Tensor:
    """Normalized ab the model predicts for a uint8 RGB batch (on the CPU, float32), at the
    working size and vividness its checkpoint records (models.predict_ab)."""
    model.eval()
    l, _ = data.to_model(rgb, device)
    return models.predict_ab(model, l).cpu()


def best_checkpoint(run: dict) -> str:
    return min(run["checkpoints"], key=lambda c: c["val_loss"])["path"]


# --- command line ---------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lib.train",
        description="Train one colorizer, then score it and the gray baseline on the validation set.",
    )
    p.add_argument("--model", default="resnet18", choices=list(models.MODELS))
    p.add_argument(
        "--head", default="regression", choices=["regression", "classification"],
        help="resnet18 only: predict ab (MSE) or a distribution over colour bins (Zhang et al.)",
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
        "--data", default="builtin", help="'builtin' (the embedded photos) or a folder of colour photos"
    )
    p.add_argument(
        "--split", default=None, metavar="FILE",
        help="a split file of --data (lib.data.write_split): train on its train part, validate on its dev",
    )  # fmt: skip
    p.add_argument("--size", type=int, default=64, help="training crop size in pixels")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (the peak, for --schedule onecycle)")
    p.add_argument("--schedule", default="constant", choices=["constant", "onecycle"])
    p.add_argument("--warmup", type=float, default=0.15, help="onecycle: share of the steps spent warming up")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast on the CPU too (always on CUDA)")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--val-size", type=float, default=0.1, help="fraction (<1) or count of validation images")
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
    if a.head != "regression" and a.model != "resnet18":
        p.error(f"--head {a.head} needs --model resnet18")
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
    device = pick_device(a.device)
    name = a.model if not options else f"{a.model}-{a.head}"
    out = [a.out or f"runs/{name}-{datetime.now():%Y%m%d-%H%M%S}"]
    if world > 1:
        dist.broadcast_object_list(out, src=0)  # one run folder for all processes
    out = Path(out[0])
    started = results.now()
    val_size = int(a.val_size) if a.val_size >= 1 else a.val_size
    try:
        loaders = data.make_loaders(
            a.data, a.size, a.batch_size, val_size=val_size, max_images=a.max_images,
            seed=a.seed, augment=a.augment, workers=a.workers, pin_memory=device.type == "cuda",
            split_file=a.split, crop_scale=a.crop_scale,
        )  # fmt: skip
        d = loaders.description
        if rank == 0:
            print(f"data: {d['n_train']} train / {d['n_val']} val images at {a.size}px, "
                  f"{len(d['skipped'])} skipped; {world} process(es)")  # fmt: skip
        _, run = fit(
            a.model, loaders, out, epochs=a.epochs, lr=a.lr, options=options, device=device, seed=a.seed,
            resume=a.resume, compile=a.compile, schedule=a.schedule, warmup=a.warmup, bf16=a.bf16,
        )  # fmt: skip
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if world > 1:
        dist.barrier()  # the first process has written the last checkpoint
        dist.destroy_process_group()
        if rank != 0:
            return 0
    model, _ = load_checkpoint(best_checkpoint(run), device)
    label = models.label(a.model, options)
    scores = metrics.evaluate_all({label: model, "gray baseline": metrics.gray_baseline}, loaders.val, device)
    print(f"\nvalidation set, {scores[label]['n_images']} images (best checkpoint, epoch "
          f"{min(run['checkpoints'], key=lambda c: c['val_loss'])['epoch']}):")  # fmt: skip
    print(metrics.format_table(scores))
    if run["skipped_during_training"]:
        print(f"{len(run['skipped_during_training'])} more files skipped while training (see the log above)")
    results.save(out / "results.json", **run, metrics=scores, provenance=results.provenance(device, started))
    print(f"\nrun folder: {out}  (results.json, checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
