"""`python -m lib.evaluate`: score checkpoints on any folder of colour photos.

    python -m lib.evaluate --checkpoint runs/a/best.pt --checkpoint runs/b/best.pt --data photos/

Every photo is brought to the usual protocol: shorter side resized to 256, centre crop 256
(--resize and --size change it). Each model sees the crop's lightness and predicts its colour;
every metric of lib.metrics compares the prediction with the photo's own colour, and the gray
baseline (a = b = 0) is scored on the same crops. Prints one table and writes the numbers, with
their provenance, to a JSON file. Files that are not usable colour photos are skipped and named.
What it writes (that file, --show's figure and its JSON) is checked before any work: no existing
file is replaced without --overwrite, and none lands among the photos it reads or in their folders.
"""

import argparse
import logging
import math
import sys
from datetime import datetime
from pathlib import Path

from lib import (
    checkpoints,
    colorize,
    data,
    datasets,
    images,
    metrics,
    models,
    options,
    plots,
    results,
    shapes,
    splits,
)


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


def show(originals: list, settings: dict) -> list[dict]:
    """Rows for plots.photo_grid: each photo (an RGB image of show_photos) made black and white,
    colorized at full size by each (model, vividness) of `settings`, and the original."""
    rows = []
    for original in originals:
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
        "--vividness", type=options.VIVIDNESS, nargs="+", default=None, metavar="V",
        help="score each (classification) checkpoint at each of these vividness settings, 0 to 1",
    )  # fmt: skip
    p.add_argument("--data", required=True, help="a folder of colour photos (searched recursively)")
    p.add_argument("--split", metavar="FILE", help="score only one part of this split file of --data")
    p.add_argument("--part", default="held-out", choices=list(splits.PARTS), help="with --split (held-out)")
    p.add_argument("--size", type=options.SIZE, default=256, help="centre crop, pixels (default 256)")
    p.add_argument(
        "--resize", type=options.SIZE, default=None, help="shorter side before the crop (default: --size)"
    )
    p.add_argument(
        "--working-size", type=options.SIZE, default=None, metavar="N",
        help="models see each crop with its shorter side at N (default: the checkpoint's, else the crop's)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=options.count(1), default=16)
    p.add_argument("--device", type=options.device, default="auto")
    p.add_argument("--workers", type=options.count(0), default=None)
    p.add_argument("--out", default=None, help="JSON file to write (default: runs/evaluate-<time>.json)")
    p.add_argument(
        "--show", nargs="+", default=None, metavar="PHOTO",
        help="also draw these photos (paths below --data, or any image file) at full size, black and "
        "white | each checkpoint | original, into <out>_photos.png",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out and its --show files if they exist"
    )
    return p


class Refused(Exception):
    """Why the command stops before writing anything: one line, printed as "error: <it>" (exit 2)."""


@options.command
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
    """The command, its options checked: check every file it writes and every --show photo, load,
    score every model on one pass, write the results."""
    out = Path(a.out or f"runs/evaluate-{datetime.now():%Y%m%d-%H%M%S}.json")
    targets = [out, *(figure_files(out) if a.show else [])]  # every file it writes
    for target in targets:
        if target.is_dir() or target.exists() and not target.is_file():  # --overwrite cannot help
            raise Refused(
                f"{target}: is {'a folder' if target.is_dir() else 'not a regular file'}; --out names a file"
            )
        if target.exists() and not a.overwrite:
            raise Refused(f"{target}: exists; choose another --out or add --overwrite")
    started, device = results.now(), checkpoints.pick_device(a.device)
    shown = [Path(f) if Path(f).is_absolute() else Path(a.data, f) for f in a.show or []]
    try:
        check_outputs(targets, a.data, shown)
        loaded = [checkpoints.load(c, device) for c in a.checkpoint]
        about, predictors, settings = rows_to_score(a, loaded)
        originals = show_photos(shown, settings)
        files = splits.split_files(a.data, a.split, a.part) if a.split else None
        loader, skipped = data.folder_loader(a.data, a.size, a.resize, a.batch_size, a.workers, files)
    except (ValueError, FileNotFoundError) as e:
        raise Refused(str(e)) from None
    where = f"{a.data}, the {a.part} part of {a.split}" if a.split else a.data
    print(f"{len(loader.dataset)} photos from {where} (shorter side {a.resize or a.size}, centre crop "
          f"{a.size}), {len(skipped)} skipped; {device}")  # fmt: skip
    seen = dict(skipped)  # decode-time failures are added (and named) as the loader finds them
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
        figure = targets[1]  # and its .json (targets[2])
        plots.save_figure(
            plots.photo_grid(show(originals, settings)), figure, {"photos": a.show, "checkpoints": about}
        )
        print(f"written: {figure}")
    print(f"written: {out}")
    return 0


def figure_files(out: Path) -> list[Path]:
    """The files --show writes beside the results file `out`: its photo grid and the grid's JSON
    (plots.save_figure)."""
    figure = out.with_name(f"{out.stem}_photos.png")
    return [figure, figure.with_suffix(".json")]


def check_outputs(targets: list[Path], folder, shown: list[Path]) -> None:
    """The files this command writes (`targets`) follow colorize's rules for outputs, its one
    output check (colorize.output_conflict): none on a photo it reads, none in the folder it scores
    (a figure there would be scored next time) or in the folder of a --show photo. Refused, naming
    the file, if one would."""
    photos = [Path(folder, f) for f in images.list_images(folder)] if Path(folder).is_dir() else []
    inputs = colorize.real_inputs([(p, p.parent) for p in photos + shown], [str(folder)])
    for target in targets:
        if conflict := colorize.output_conflict(target, inputs):
            raise Refused(f"{target}: {conflict}; choose another --out")


def show_photos(paths: list[Path], settings: dict) -> list:
    """The --show photos as evaluation reads photos (images.to_rgb: RGB images), each checked
    before any work: it must decode, and each model of `settings` must be able to see it at the
    working size colorize_image gives it (shapes.working_shape). Refused, naming the file, if not."""
    originals = []
    for path in paths:
        try:
            with images.open_image(path) as im:
                original = images.to_rgb(im)
            for model, _ in settings.values():
                shapes.working_shape(original.height, original.width, colorize.default_size(model))
        except (images.BadImage, shapes.UnworkableShape) as e:
            raise Refused(f"--show {path}: {e}") from None
        originals.append(original)
    return originals


def rows_to_score(a: argparse.Namespace, loaded: list) -> tuple[dict, dict, dict]:
    """One row per (checkpoint, vividness setting): ({row: what the results file says of it},
    {row: its predictor}, {row: (model, vividness)} for --show). Each model sees the crops at
    --working-size if given. Refused when --vividness names a checkpoint without a classification
    head."""
    names = labels(a.checkpoint, [ckpt for _, ckpt in loaded])
    about, predictors, settings = {}, {}, {}
    for name, path, (model, ckpt) in zip(names, a.checkpoint, loaded, strict=True):
        try:
            model = model.replace(working_size=a.working_size)
        except ValueError as e:  # out of range (Inference): refused where it is given
            raise Refused(f"--working-size {a.working_size}: {e}") from None
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
