"""Benchmark: sRGB -> Lab, lib.lab against scikit-image (a script that prints ratios, not a test).

    .venv/bin/python bench/lab.py [--out runs/bench/lab.json]

64 images of 256x256 (half random crops of scikit-image's photos, half uniform noise covering the
whole gamut), uint8 in. scikit-image converts one image at a time (in float64, as the original
project's loaders did); lib.lab converts the batch at once on this machine's CPU (or GPU with
--device cuda). Reports milliseconds per image (best of 5 runs each), the ratio, and the largest
difference from scikit-image (the foundation's accuracy target: 1e-3 Lab units). Target: >= 3x
faster on 2 CPU cores, >= 100x on a GPU.
"""

import argparse
import importlib.resources
import sys
import time

import numpy as np
import torch
from PIL import Image
from skimage.color import rgb2lab

from lib import lab, results


def images(n=64, size=256, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    photos = []
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):
        with Image.open(str(importlib.resources.files("skimage.data") / name)) as im:
            photos.append(np.asarray(im.convert("RGB")))
    out = []
    for i in range(n):
        if i % 2:
            out.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        else:
            p = photos[(i // 2) % len(photos)]
            y, x = rng.integers(0, p.shape[0] - size + 1), rng.integers(0, p.shape[1] - size + 1)
            out.append(p[y : y + size, x : x + size])
    return np.stack(out)


def best_of(fn, runs=5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench/lab.json")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    started = results.now()
    x = images()
    batch = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(a.device)
    sync = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    ref = np.stack([rgb2lab(i) for i in x])
    ours = lab.rgb_to_lab(batch).permute(0, 2, 3, 1).cpu().numpy()
    max_diff = float(np.abs(ours - ref).max())
    t_sk = best_of(lambda: [rgb2lab(i) for i in x]) / len(x)
    t_lib = best_of(lambda: (lab.rgb_to_lab(batch), sync())) / len(x)
    ratio = t_sk / t_lib
    target = 100 if batch.is_cuda else 3
    print(f"scikit-image rgb2lab: {1000 * t_sk:.2f} ms/image; lib.lab.rgb_to_lab ({a.device}): "
          f"{1000 * t_lib:.3f} ms/image -> {ratio:.1f}x faster (target >= {target}x); "
          f"largest difference {max_diff:.1e} Lab units (target <= 1e-3)")  # fmt: skip
    record = {
        "benchmark": "lab", "images": len(x), "size": 256, "device": a.device,
        "skimage_ms_per_image": 1000 * t_sk, "lib_ms_per_image": 1000 * t_lib, "ratio": ratio,
        "max_abs_diff_lab": max_diff, "provenance": results.provenance(a.device, started),
    }  # fmt: skip
    results.save(a.out, **record)
    print(f"written: {a.out}")
    return 0 if ratio >= target and max_diff <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
