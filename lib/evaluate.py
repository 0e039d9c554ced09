"""`python -m lib.evaluate`: score checkpoints on any folder of colour photos.

    python -m lib.evaluate --checkpoint runs/a/best.pt --checkpoint runs/b/best.pt --data photos/

Every photo is brought to the usual protocol: shorter side resized to 256, centre crop 256
(--resize and --size change it). Each model sees the crop's lightness and predicts its colour;
every metric of lib.metrics compares the prediction with the photo's own colour, and the gray
baseline (a = b = 0) is scored on the same crops. Prints one table and writes the numbers, with
their provenance, to a JSON file. Files that are not usable colour photos are skipped and named.
"""

import argparse
import logging
import math
import sys
from datetime import datetime
from pathlib import Path

from lib import checkpoints, colorize, data, datasets, images, metrics, models, plots, results, splits


def labels(paths: list[str], ckpts: list[dict]) -> list[str]:
    """Row names: model and head ("reference" for the shipped model), plus the file's folder and
    name where two would be the same."""
    names = [
        models.label(c["model"], c["options"]) if p != "reference" else p
        for c, p in zip(ckpts, paths, strict=True)
    ]
    return [
        n if names.count(n) == 1 else f"{n} [{Path(p).parent.name}/{Path(p).name}]"
        for n, p in zip(names, paths, strict=True)
    ]  # fmt: skip


def show(photos: list[str], root: Path, settings: dict) -> list[dict]:
    """Rows for plots.photo_grid: each photo made black and white, colorized at full size by each
    (model, vividness) of `settings`, and the original."""
    rows = []
    for f in photos:
        path = Path(f) if Path(f).is_absolute() else root / f
        with images.open_image(path) as im:
            original = images.to_rgb(im)
        gray = original.convert("L")
        row = {"black and white": gray}
        row |= {name: colorize.colorize_image(gray, m, vividness=v) for name, (m, v) in settings.items()}
        rows.append(row | {"original": original})
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint", action="append", required=True,
        help="a checkpoint (.pt), or 'reference' for the shipped model; repeat for more",
    )  # fmt: skip
    p.add_argument(
        "--vividness", type=float, nargs="+", default=None, metavar="V",
        help="score each (classification) checkpoint at each of these vividness settings, 0 to 1",
    )  # fmt: skip
    p.add_argument("--data", required=True, help="a folder of colour photos (searched recursively)")
    p.add_argument("--split", metavar="FILE", help="score only one part of this split file of --data")
    p.add_argument("--part", default="held-out", choices=list(splits.PARTS), help="with --split (held-out)")
    p.add_argument("--size", type=int, default=256, help="centre crop, pixels (default 256)")
    p.add_argument("--resize", type=int, default=None, help="shorter side before the crop (default: --size)")
    p.add_argument(
        "--working-size", type=int, default=None, metavar="N",
        help="models see each crop with its shorter side at N (default: the checkpoint's, else the crop's)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON file to write (default: runs/evaluate-<time>.json)")
    p.add_argument(
        "--show", nargs="+", default=None, metavar="PHOTO",
        help="also draw these photos (paths below --data, or any image file) at full size, black and "
        "white | each checkpoint | original, into <out>_photos.png",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


class Refused(Exception):
    """Why the command stops before writing anything: one line, printed as "error: <it>" (exit 2)."""


def main(argv=None) -> int:
    p = parser()
    a = p.parse_args(argv)
    if a.resize is not None and a.resize < a.size:
        p.error(f"--resize {a.resize} is smaller than the crop --size {a.size}")
    if any(not 0 <= v <= 1 for v in a.vividness or []):
        p.error("--vividness: each value must be from 0 (faithful) to 1 (vivid)")
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    try:
        return run(a)
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(a: argparse.Namespace) -> int:
    """The command, its options checked: load, score every model on one pass, write the results."""
    out = Path(a.out or f"runs/evaluate-{datetime.now():%Y%m%d-%H%M%S}.json")
    if out.exists() and not a.overwrite:
        raise Refused(f"{out}: exists; choose another --out or add --overwrite")
    started, device = results.now(), checkpoints.pick_device(a.device)
    try:
        loaded = [checkpoints.load(c, device) for c in a.checkpoint]
        files = splits.split_files(a.data, a.split, a.part) if a.split else None
        loader, skipped = data.folder_loader(a.data, a.size, a.resize, a.batch_size, a.workers, files)
    except (ValueError, FileNotFoundError) as e:
        raise Refused(str(e)) from None
    check_outputs(out, a.data)
    where = f"{a.data}, the {a.part} part of {a.split}" if a.split else a.data
    print(f"{len(loader.dataset)} photos from {where} (shorter side {a.resize or a.size}, centre crop "
          f"{a.size}), {len(skipped)} skipped; {device}")  # fmt: skip
    seen = dict(skipped)  # decode-time failures are added (and named) as the loader finds them
    about, predictors, settings = rows_to_score(a, loaded)
    rows = score(predictors, loader, device, seen, about, where)
    print(metrics.format_table(rows))
    if seen:  # each was named on its own line as it was found
        print(f"{len(seen)} file(s) skipped (named above, and listed in the results file)")
    out.parent.mkdir(parents=True, exist_ok=True)
    results.save(
        out, data=str(Path(a.data).resolve()),
        split={"file": a.split, "sha256": datasets.sha256(a.split), "part": a.part} if a.split else None,
        protocol={"resize": a.resize or a.size, "crop": a.size},
        checkpoints=about,
        metrics=rows, skipped=[[f, r] for f, r in seen.items()],
        provenance=results.provenance(device, started),
    )  # fmt: skip
    if a.show:
        shown = show(a.show, Path(a.data), settings)
        figure = out.with_name(f"{out.stem}_photos.png")  # and its .json, beside the results file
        plots.save_figure(plots.photo_grid(shown), figure, {"photos": a.show, "checkpoints": about})
        print(f"written: {figure}")
    print(f"written: {out}")
    return 0


def check_outputs(out: Path, folder) -> None:
    """What this command writes (the results file, its photo grid) must never land on a photo it
    reads: colorize's one output check (Refused if it would)."""
    photos = [Path(folder, f) for f in images.list_images(folder)]
    inputs = colorize.Inputs(frozenset(p.resolve() for p in photos), ())
    for target in (out, out.with_name(f"{out.stem}_photos.png")):
        if conflict := colorize.output_conflict(target, inputs):
            raise Refused(f"--out {out}: {conflict}")


def rows_to_score(a: argparse.Namespace, loaded: list) -> tuple[dict, dict, dict]:
    """One row per (checkpoint, vividness setting): ({row: what the results file says of it},
    {row: its predictor}, {row: (model, vividness)} for --show). Each model sees the crops at
    --working-size if given. Refused when --vividness names a checkpoint without a classification
    head."""
    names = labels(a.checkpoint, [ckpt for _, ckpt in loaded])
    about, predictors, settings = {}, {}, {}
    for name, path, (model, ckpt) in zip(names, a.checkpoint, loaded, strict=True):
        model = model.replace(working_size=a.working_size)
        if a.vividness and not model.head.takes_vividness:
            raise Refused(f"{path}: --vividness needs a classification head")
        for v in a.vividness or [ckpt.get("vividness")]:
            row = name if not a.vividness else f"{name} (vividness {v:g})"
            about[row] = {
                "path": str(path), "sha256": ckpt["sha256"], "model": ckpt["model"],
                "head": ckpt["head"], "options": ckpt["options"], "epoch": ckpt["epoch"],
                "trained_on": (ckpt["data"] or {}).get("source"), "vividness": v,
                "working_size": model.working_size,
            }  # fmt: skip
            predictors[row] = model.replace(vividness=v)
            settings[row] = (model, v)
    return about, predictors, settings


def score(predictors: dict, loader, device, seen: dict, about: dict, where) -> dict:
    """Every predictor and the gray baseline scored in one pass over the folder (each photo decoded
    and converted once): {row: scores}. Refused when no photo could be scored, or when a model's
    scores are not finite (finite weights can still overflow to NaN colours)."""
    try:
        rows = metrics.evaluate_all(
            {**predictors, "gray baseline": metrics.gray_baseline}, loader, device, seen
        )
    except ValueError:  # the loader yielded no image: every photo failed to decode
        raise Refused(f"{where}: no photo could be scored ({len(seen)} skipped)") from None
    for row, scores in rows.items():
        bad = [k for k in metrics.METRICS if not math.isfinite(scores[k])]
        if bad and row in about:
            raise Refused(f"{about[row]['path']}: its colours give NaN or infinite {', '.join(bad)} "
                          "(weights that overflow float32?); nothing written")  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
