"""Colorize your own photos at full resolution, with the shipped reference model or a checkpoint.

    colorize photos/
    colorize old.jpg "scans/**/*.png" --vividness 0.8 --out colour/ --side-by-side
    colorize photos/ --checkpoint runs/.../checkpoints/resnet18/model-epoch-010-val-0.02731.pt

The model sees each photo at its working size, aspect ratio kept: the shorter side at the size its
checkpoint records (the reference model's working size, a training checkpoint's crop size) unless
--size says otherwise. Its predicted colour (a*, b*) is upsampled to the photo's own size and
paired with the photo's own full-resolution lightness L*. So the output has the input's exact size
and every detail of its lightness. Colours that sRGB cannot show are desaturated at constant
lightness and hue (lib.lab.lab_to_rgb8) instead of clipped. --vividness (classification heads)
goes from 0, faithful (the mean of the predicted colour distribution), to 1, vivid.

A photo more than 16 times longer than wide, or one the model would see at more than 2048²
pixels, is skipped (shapes.MAX_WORKING_ASPECT, MAX_WORKING_PIXELS: memory bounded by the cap).

Outputs mirror the input tree under --out (default: a new folder "<inputs>-colorized" beside the
common folder of the inputs), all planned before any is written. Inputs are never written, and no
output lands in a folder given as input or holding an input file; inputs that would share an
output (a.gif and a.png both give a.png) are each skipped; an existing output is skipped and
reported unless --overwrite. Exit codes: 0 all written, 1 some inputs skipped or failed, 2 usage
error or unusable checkpoint.
"""

import argparse
import glob
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from lib import checkpoints, images, lab, options, results, shapes

# The formats written, by suffix: every input format but GIF, whose 256 colours cannot hold a
# colorized photo (a GIF's output is a PNG: output_suffix).
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}
FORMATS |= {".tif": "TIFF", ".tiff": "TIFF"}


# --- one image: split, predict, finish ------------------------------------------------------------


def lightness(img: Image.Image, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(the photo's full-resolution L* (1, 1, H, W) in Lab units, the model's input l (1, 1, h, w)
    with its shorter side at `size` and the photo's aspect ratio (shapes.working_shape)): the one
    resize of a photo to the shape the model sees (Inference.colours takes it as it is). L* is
    resized, then normalized (Inference.predict_ab normalizes first: its float32 rounding differs,
    and so, by one level, do a few output pixels). A photo beyond the limits of what a model is
    shown raises shapes.UnworkableShape, before any tensor is made."""
    shape = shapes.working_shape(img.height, img.width, size)
    x = torch.from_numpy(np.array(img)).to(device)  # a writable copy, (H, W) or (H, W, 3)
    full = lab.image_to_lightness(x[None, None] if img.mode == "L" else x.permute(2, 0, 1)[None])
    small = F.interpolate(full, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return full, lab.normalize_l(small)


def finish(lightness_full, ab_small, alpha=None, gray: bool = False) -> Image.Image:
    """Predicted normalized ab (1, 2, h, w) at the working size + the photo's full-resolution L*
    (1, 1, H, W) -> the colour photo: ab upsampled (bilinear) to L*'s size.

    gray=True returns the input as the model reads it (a* = b* = 0) instead, for side-by-side."""
    if gray:
        ab = lab.zero_ab(lightness_full)
    else:
        ab = F.interpolate(ab_small, size=lightness_full.shape[-2:], mode="bilinear", align_corners=False)
    rgb = lab.lightness_ab_to_rgb8(lightness_full, ab)[0].permute(1, 2, 0).contiguous().cpu().numpy()
    out = Image.fromarray(rgb, "RGB")  # HWC for PIL
    if alpha is not None:
        out.putalpha(alpha)
    return out


def colorize_image(
    image: Image.Image, model=None, size: int | None = None, vividness: float | None = None
) -> Image.Image:
    """Colorize one PIL image (any mode) at its full resolution.

    model: a checkpoints.Inference (checkpoints.load); None: the shipped reference model. size:
    the shorter side the model sees the photo at, aspect kept (default: default_size).
    vividness: from 0 (faithful) to 1 (vivid), classification heads only (default: the
    checkpoint's; see classes.vividness_setting). A colour input is colorized from its
    lightness; an alpha channel is kept as it was; the output is 8-bit RGB (RGBA with alpha) of
    the input's size, EXIF orientation applied. shapes.UnworkableShape for a photo beyond the
    limits of what a model is shown (shapes.MAX_WORKING_ASPECT, shapes.MAX_WORKING_PIXELS).
    """
    if model is None:
        model, _ = checkpoints.load(checkpoints.REFERENCE)
    size = size or default_size(model)
    picture = images.decode(image)  # the decoding every command shares (its rules there)
    full, small = lightness(picture.image, size, model.device)
    return finish(full, model.colours(small, vividness), picture.alpha)


def default_size(model: checkpoints.Inference) -> int:
    """The shorter side a photo is colorized at by default: the model's working size (the
    reference model records one), else the size it was trained at, 256 for a model of unknown
    origin."""
    return model.working_size or model.training_size or 256


# --- files ---------------------------------------------------------------------------------------


def expand_inputs(args: list[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """INPUT arguments -> ([(image file, the folder its path is mirrored from)], [unmatched args]).

    A folder is recursed; a glob ("*.jpg", "photos/**/*.png") is expanded; a file is itself. A
    symbolic link to a file counts as the file it names (a folder of links works); a broken one is
    kept, so that decoding names it as a file it cannot read. Neither a folder nor a glob is
    followed into a linked folder (as os.walk and `find` do not), so a link loop cannot repeat the
    same photos into ever deeper folders."""
    found, missing = [], []
    for arg in args:
        paths = [Path(arg)] if Path(arg).exists() else _glob(arg)
        if not paths:
            missing.append(arg)
        for p in paths:
            if p.is_dir():
                found += [(p / f, p) for f in images.list_images(p)]
            else:  # a file, a link, or what no command can read (a FIFO...): refused by its reason
                found.append((p, p.parent))
    return found, missing


def _glob(pattern: str) -> list[Path]:
    """A glob's matches, sorted, but none reached through a linked folder below the pattern's
    literal part (the folders named as they are may be links)."""
    literal = next((i for i, part in enumerate(Path(pattern).parts) if glob.has_magic(part)), 0)
    matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True))]
    return [
        m for m in matches if not any(p.is_symlink() for p in list(m.parents)[: len(m.parts) - 1 - literal])
    ]


class Inputs(NamedTuple):
    """Where the inputs really are (every link followed): the files, the folders given (their whole
    trees), and the folders that hold an input file (where it is named, and where it really is)."""

    files: frozenset[Path]
    folders: tuple[Path, ...]
    homes: frozenset[Path] = frozenset()


def _real(path) -> Path:
    """Where a path really leads, every link followed (os.path.realpath): a link loop stays as it
    is, to be refused by its reason when read, where Path.resolve raises."""
    return Path(os.path.realpath(path))


def real_inputs(files, args: list[str]) -> Inputs:
    """The Inputs of expand_inputs' (file, root) pairs and the INPUT arguments."""
    homes = {_real(Path(os.path.abspath(f)).parent) for f, _ in files}
    return Inputs(
        frozenset(_real(f) for f, _ in files),
        tuple(_real(a) for a in args if Path(a).is_dir()),
        frozenset(homes | {_real(f).parent for f, _ in files}),
    )


def output_suffix(src_suffix: str, fmt: str | None) -> str:
    """The suffix of an output: --format's if given (png, JPG, .tif ...), else the input's own
    when it is one FORMATS writes (as spelt: ".JPG" stays), else ".png" (a GIF, or a file whose
    suffix names no format)."""
    if fmt:
        return "." + fmt.lower().lstrip(".")
    return src_suffix if src_suffix.lower() in FORMATS else ".png"


def plan_outputs(files, out: Path | None, fmt: str | None) -> tuple[Path, list[tuple[Path, Path]]]:
    """[(input, output)]: the inputs' tree mirrored under `out`, relative to their common folder;
    every output is planned here, before any is written (writable checks them all). An input given
    twice (a folder and a file in it) is planned once.

    Paths are taken as given, links not followed, so a link's output is named after the link and
    never depends on where it points."""
    first: dict[Path, Path] = {}  # each input once, in the order first given, with its first root
    for f, r in files:
        first.setdefault(Path(os.path.abspath(f)), Path(os.path.abspath(r)))
    pairs = list(first.items())
    base = Path(os.path.commonpath([str(r) for _, r in pairs]))
    out = _real(out) if out else base.parent / f"{base.name}-colorized"
    plan = []
    for f, root in pairs:
        rel = root.relative_to(base) / f.relative_to(root)
        plan.append((f, out / rel.with_suffix(output_suffix(rel.suffix, fmt))))
    return out, plan


def output_conflict(dst: Path, inputs: Inputs) -> str | None:
    """Why writing `dst` could touch an input, or None: the one check every output passes.

    `dst` is followed through every link (of the output folder's tree, or dst itself) to where
    the file would really land; that must be neither an input file, nor inside a folder given as
    input, nor in a folder that holds an input file (where it would replace the user's other
    files there, --overwrite or not)."""
    real = _real(dst)
    if real in inputs.files:
        return "its output would replace an input"
    if any(real.is_relative_to(f) for f in inputs.folders) or real.parent in inputs.homes:
        where = dst if real == dst else f"through a link: {dst} is {real}"
        return f"its output would land in an input folder ({where})"
    return None


def shared_outputs(plan) -> dict[Path, str]:
    """{input: why it is skipped} for each input whose planned output is another input's too: the
    same path (a.gif and a.png both give a.png), the same file through a link, or a name that
    differs only in case (one file on macOS and Windows). Every input of a shared output is
    skipped, none preferred, so no file is written on that name and none is lost."""
    keys = [str(_real(dst)).casefold() for _, dst in plan]  # each output followed once
    by_file: dict[str, list[Path]] = {}
    for (src, _), key in zip(plan, keys, strict=True):
        by_file.setdefault(key, []).append(src)
    shared = {}
    for (src, dst), key in zip(plan, keys, strict=True):
        if others := [o for o in by_file[key] if o != src]:
            also = ", ".join(f"{o}'s" for o in others)
            shared[src] = (
                f"its output is another input's too ({dst}, also {also}: colorize them separately, "
                "into different --out folders)"
            )
    return shared


def write_image(img: Image.Image, path: Path, picture: images.Picture, overwrite: bool) -> None:
    """Write `img` (8-bit sRGB) atomically (results.write_atomic) in the format of path's suffix,
    with the metadata of the input's `picture` where the format takes it: its EXIF (orientation
    already applied to the pixels) and its ICC profile when that is sRGB. A converted profile
    (Adobe RGB, Display P3) is never copied: the pixels are sRGB, and so is an untagged file.
    Without overwrite, an existing file is never replaced (FileExistsError, even for one that
    appeared meanwhile). ValueError for a suffix FORMATS does not write."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: cannot write {path.suffix or 'a file without suffix'}")
    fmt = FORMATS[path.suffix.lower()]
    if fmt in ("JPEG", "BMP") and img.mode == "RGBA":  # no alpha there: composite over white
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img).convert("RGB")
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if picture.icc and fmt != "BMP":
        kw["icc_profile"] = picture.icc
    if picture.exif and fmt in ("JPEG", "WEBP", "PNG", "TIFF"):
        kw["exif"] = picture.exif
    results.write_atomic(path, lambda tmp: img.save(tmp, fmt, **kw), replace=overwrite)


def side_by_side(gray: Image.Image, colour: Image.Image) -> Image.Image:
    both = Image.new(colour.mode, (colour.width * 2, colour.height), "white")
    both.paste(gray, (0, 0))
    both.paste(colour, (colour.width, 0))
    return both


class Photo(NamedTuple):
    """One photo of a batch, read and split: where it comes from and goes, its decoding
    (images.Picture: pixels, alpha, metadata), its full-resolution L* and the model's input l."""

    src: Path
    dst: Path
    picture: images.Picture
    lightness: torch.Tensor
    l: torch.Tensor


def colorize_files(
    plan,
    model,
    size: int,
    batch_size: int,
    side: bool,
    overwrite: bool,
    vividness: float | None = None,
    inputs: Inputs | None = None,
) -> dict:
    """Colorize (input, output) pairs, batch_size photos at a time (one model call for the photos
    of one working shape); every output is checked before any is written (writable: `inputs`, by
    default the plan's own input files). Returns the tallies."""
    inputs = inputs or real_inputs([(src, src.parent) for src, _ in plan], [])
    tally = {"written": 0, "skipped": Counter(), "failed": 0, "colour_inputs": 0}
    todo = writable(plan, inputs, overwrite, tally)
    bar = tqdm(total=len(todo), desc="colorize", unit="img", disable=None)
    for start in range(0, len(todo), batch_size):
        batch = read_batch(todo[start : start + batch_size], size, model.device, tally, bar)
        colours = predict_by_shape(model, [photo.l for photo in batch], vividness)
        for photo, ab in zip(batch, colours, strict=True):
            write_photo(photo, ab, side, overwrite, tally)
            bar.update()
    bar.close()
    return tally


def _skip(tally: dict, src, reason: str) -> None:
    """Name a skipped input on stderr with its reason, and count it by kind (images.skip_kind)."""
    print(f"{src}: skipped: {reason}", file=sys.stderr)
    tally["skipped"][images.skip_kind(reason)] += 1


def writable(plan, inputs: Inputs, overwrite: bool, tally: dict) -> list[tuple[Path, Path]]:
    """The (input, output) pairs that may be written; the others are skipped before any work: an
    output that could touch an input (output_conflict), one that is another input's too
    (shared_outputs), or one that exists (without overwrite)."""
    todo, shared = [], shared_outputs(plan)
    for src, dst in plan:
        if conflict := output_conflict(dst, inputs) or shared.get(src) or _blocked(dst):
            _skip(tally, src, conflict)
        elif dst.exists() and not overwrite:
            _skip(tally, src, "output exists (use --overwrite)")
        else:
            todo.append((src, dst))
    return todo


def _blocked(dst: Path) -> str | None:
    """Why `dst` cannot be written whatever --overwrite says, or None: a file where a folder of
    its path must be."""
    for folder in dst.parents:
        if folder.exists():
            return None if folder.is_dir() else f"a file stands where its output folder must be ({folder})"
    return None


def read_batch(pairs, size: int, device, tally: dict, bar) -> list[Photo]:
    """Decode and split each photo of a batch (lightness); one that cannot be read, or that no
    model is shown (shapes.working_shape's limits), is skipped with its reason, and counted done on
    the progress bar."""
    batch = []
    for src, dst in pairs:
        try:
            picture = images.read_image(src)  # the decoding every command shares
            img = picture.image
            tally["colour_inputs"] += img.mode == "RGB" and not images.is_gray(img)
            batch.append(Photo(src, dst, picture, *lightness(img, size, device)))
        except (images.BadImage, shapes.UnworkableShape) as e:
            _skip(tally, src, str(e))
            bar.update()
    return batch


def predict_by_shape(
    model, ls: list[torch.Tensor], vividness: float | None, max_pixels: int = shapes.MAX_WORKING_PIXELS
) -> list[torch.Tensor]:
    """The normalized ab (2, h, w) of each model input l (1, 1, h, w): photos of one aspect ratio
    share one working shape, hence model calls (in the order of their sorted shapes) of as many
    photos as hold at most `max_pixels` working pixels together (at least one), so that a call's
    memory is bounded by the cap, whatever the batch size."""
    colours = {}
    for shape in sorted({l.shape for l in ls}):
        same = [i for i, l in enumerate(ls) if l.shape == shape]
        per_call = max(1, max_pixels // (shape[-2] * shape[-1]))
        for start in range(0, len(same), per_call):
            part = same[start : start + per_call]
            ab = model.colours(torch.cat([ls[i] for i in part]), vividness)
            colours |= {i: ab[j] for j, i in enumerate(part)}
    return [colours[i] for i in range(len(ls))]


def write_photo(photo: Photo, ab: torch.Tensor, side: bool, overwrite: bool, tally: dict) -> None:
    """Finish one photo from its predicted ab (2, h, w) and write it (beside its gray version with
    `side`). An output that appeared meanwhile is skipped; any other failure is counted and named,
    and never stops the rest."""
    try:
        out = finish(photo.lightness, ab[None], photo.picture.alpha)
        if side:
            out = side_by_side(finish(photo.lightness, ab[None], photo.picture.alpha, gray=True), out)
        write_image(out, photo.dst, photo.picture, overwrite)
        tally["written"] += 1
    except FileExistsError:
        _skip(tally, photo.src, "output exists (use --overwrite)")
    except Exception as e:  # one file's failure (disk full, odd format) must not stop the rest
        print(f"{photo.src}: failed: {type(e).__name__}: {e}", file=sys.stderr)
        tally["failed"] += 1


# --- command line ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="colorize", description="Colorize black-and-white photos at full resolution."
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursed), globs")
    p.add_argument(
        "--checkpoint", default="reference",
        help="a checkpoint written by lib.train / the notebooks (default: the shipped reference model)",
    )  # fmt: skip
    p.add_argument(
        "--vividness", type=options.VIVIDNESS, default=None, metavar="V",
        help="0 (faithful, muted) to 1 (vivid); classification heads only (default: the checkpoint's)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="output folder (default: <inputs' folder>-colorized)")
    p.add_argument("--format", help="write this format (png, jpg, webp, bmp, tif) instead of the input's")
    p.add_argument(
        "--size",
        type=options.SIZE,
        help="the shorter side the model sees, aspect kept (default: its checkpoint's)",
    )
    p.add_argument("--device", type=options.device, default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--batch-size", type=options.count(1), default=4, help="photos per model call (default 4)")
    p.add_argument("--side-by-side", action="store_true", help="write gray | colour side by side")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p


def _usage(msg: str) -> int:
    print(f"colorize: error: {msg}", file=sys.stderr)
    return 2


def option_problem(a: argparse.Namespace) -> str | None:
    """What is wrong with the options alone, before anything is loaded or read, or None."""
    if a.format and f".{a.format.lower().lstrip('.')}" not in FORMATS:
        return f"--format {a.format}: choose one of png, jpg, webp, bmp, tif"
    return None  # the others' types and ranges: lib.options, checked as argparse reads them


@options.command
def main(argv=None) -> int:
    a = parser().parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    if problem := option_problem(a):
        return _usage(problem)
    try:
        model, _ = checkpoints.load(a.checkpoint, checkpoints.pick_device(a.device))
    except (ValueError, RuntimeError) as e:
        return _usage(str(e))
    if a.vividness is not None and not model.head.takes_vividness:
        return _usage(f"--vividness needs a classification head; {a.checkpoint} predicts ab directly")
    size = a.size or default_size(model)
    if problem := shapes.working_size_problem(size):  # the size a checkpoint was trained at, say
        return _usage(f"{a.checkpoint}: {problem} (its training size); give --size")

    # inputs and outputs: every output is planned, and checked against the inputs, before any work
    files, missing = expand_inputs(a.inputs)
    for m in missing:
        print(f"{m}: skipped: no such file, folder or match", file=sys.stderr)
    if not files:
        return _usage("no input image found")
    if a.out is not None and a.out.exists() and not a.out.is_dir():
        return _usage(f"--out {a.out}: is a file; give a folder")
    out, plan = plan_outputs(files, a.out, a.format)
    inputs = real_inputs(files, a.inputs)
    if any(_real(out).is_relative_to(f) for f in inputs.folders):
        return _usage(f"--out {out} is inside an input folder; choose a folder outside the inputs")

    vividness = a.vividness if a.vividness is not None else model.vividness
    tally = colorize_files(plan, model, size, a.batch_size, a.side_by_side, a.overwrite, vividness, inputs)
    tally["skipped"]["no such input"] += len(missing)
    which = "the shipped reference model" if a.checkpoint == "reference" else a.checkpoint
    print(summary(tally, out, which, size, vividness))
    return 0 if sum(tally["skipped"].values()) == 0 and tally["failed"] == 0 else 1


def summary(tally: dict, out: Path, which: str, size: int, vividness: float | None) -> str:
    """The one line a run ends with: what was written where, skipped (by reason) and failed, and
    the model and settings that made it."""
    n_skipped = sum(tally["skipped"].values())
    reasons = ", ".join(f"{n} {r}" for r, n in tally["skipped"].items() if n)
    line = f"colorize: {tally['written']} written to {out}, {n_skipped} skipped"
    line += f" ({reasons})" if reasons else ""
    line += f", {tally['failed']} failed"
    line += f"; model: {which}, working size {size}px"
    line += f", vividness {vividness:g}" if vividness is not None else ""
    if tally["colour_inputs"]:
        line += f"; {tally['colour_inputs']} input(s) already in colour were colorized from their lightness"
    return line


if __name__ == "__main__":
    sys.exit(main())
