"""Benchmark: colorizing photos at full resolution on this machine (a script, not a test).

    .venv/bin/python bench/colorize.py [--out runs/bench/colorize.json]

Measures, each in a fresh process so peak memory is its own:
  * one 12-megapixel (4000x3000) black-and-white JPEG, end to end as the command does it (decode,
    lightness, model at 256 px, full-resolution colour, JPEG encode, atomic write): seconds
    (median of 3) and peak RSS. Targets on 2 CPU cores: <= 2 s and <= 2 GB.
  * a folder of 60 one-megapixel JPEGs: images per second, and RSS after 20 and after 60 photos
    (memory must not grow with the number of photos).
The model is a ResNet18 colorizer with random weights: speed does not depend on the weights.
"""

import argparse
import importlib.resources
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from lib import checkpoints, colorize, models, results


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(root: Path) -> tuple[Path, Path]:
    """A 12 MP gray JPEG and a folder of 60 1 MP gray JPEGs, cut from scikit-image's photos."""
    photos = [
        importlib.resources.files("skimage.data") / n for n in ("astronaut.png", "coffee.png", "chelsea.png")
    ]
    big = root / "big" / "photo_12mp.jpg"
    big.parent.mkdir(parents=True)
    with Image.open(str(photos[0])) as im:
        im.convert("L").resize((4000, 3000), Image.Resampling.LANCZOS).save(big, quality=92)
    folder = root / "folder"
    folder.mkdir()
    for i in range(60):
        with Image.open(str(photos[i % 3])) as im:
            im.convert("L").rotate(i * 6).resize((1155, 866), Image.Resampling.BICUBIC).save(
                folder / f"p{i:02d}.jpg", quality=92
            )
    return big, folder


def make_checkpoint(path: Path) -> None:
    torch.manual_seed(0)
    model = models.build_model("resnet18")
    checkpoints.write(checkpoints.make(model, "resnet18", {}, 0, 0.0, {"size": 256}), path)


def run_big(big: Path, ckpt: Path, out: Path) -> dict:
    model, _ = checkpoints.load(ckpt, "cpu")
    times = []
    for k in range(3):
        plan = [(big, out / f"run{k}" / big.name)]
        t0 = time.perf_counter()
        tally = colorize.colorize_files(plan, model, 256, 1, side=False, overwrite=False)
        times.append(time.perf_counter() - t0)
        assert tally["written"] == 1
    with Image.open(out / "run0" / big.name) as im:
        assert im.size == (4000, 3000)
    return {"seconds": sorted(times)[1], "all_seconds": times, "peak_rss_mb": peak_mb()}


def run_folder(folder: Path, ckpt: Path, out: Path) -> dict:
    model, _ = checkpoints.load(ckpt, "cpu")
    files, _ = colorize.expand_inputs([str(folder)])
    _, plan = colorize.plan_outputs(files, out, None)
    colorize.colorize_files(plan[:4], model, 256, 4, side=False, overwrite=False)  # warm-up
    t0 = time.perf_counter()
    colorize.colorize_files(plan[4:20], model, 256, 4, side=False, overwrite=False)
    rss_20 = rss_mb()
    colorize.colorize_files(plan[20:], model, 256, 4, side=False, overwrite=False)
    seconds = time.perf_counter() - t0
    return {
        "images": len(plan) - 4,
        "images_per_s": (len(plan) - 4) / seconds,
        "rss_after_20_mb": rss_20,
        "rss_after_60_mb": rss_mb(),
        "peak_rss_mb": peak_mb(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench/colorize.json")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:  # measure one case in this fresh process
        kind, src, ckpt, out = a.child
        fn = run_big if kind == "big" else run_folder
        print(json.dumps(fn(Path(src), Path(ckpt), Path(out))))
        return 0
    started = results.now()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big, folder = make_inputs(tmp)
        ckpt = tmp / "resnet18.pt"
        make_checkpoint(ckpt)
        res = {}
        for kind, src in (("big", big), ("folder", folder)):
            cmd = [sys.executable, __file__, "--child", kind, str(src), str(ckpt), str(tmp / f"out-{kind}")]
            res[kind] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    b, f = res["big"], res["folder"]
    print(
        f"12 MP photo, end to end: {b['seconds']:.2f} s (target <= 2 s: {b['seconds'] / 2:.2f}x of it), "
        f"peak RSS {b['peak_rss_mb']:.0f} MB (target <= 2048 MB: {b['peak_rss_mb'] / 2048:.2f}x)"
    )
    growth = f["rss_after_60_mb"] - f["rss_after_20_mb"]
    print(
        f"1 MP photos: {f['images_per_s']:.1f} images/s; RSS after 20 photos {f['rss_after_20_mb']:.0f} MB, "
        f"after 60 {f['rss_after_60_mb']:.0f} MB (growth {growth:+.0f} MB)"
    )
    record = {
        "benchmark": "colorize", "working_size": 256, "model": "resnet18", **res,
        "provenance": results.provenance("cpu", started),
    }  # fmt: skip
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    results.save(a.out, **record)
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
