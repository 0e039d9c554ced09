"""Benchmark: peak memory of one training epoch on 1,000 vs 10,000 images (a script, not a test).

    .venv/bin/python bench/memory.py [--out runs/bench/memory.json]

Writes 10,000 JPEGs of 128x128 (cut from scikit-image's photos) to a temporary folder, then trains
OriginalCNN for one epoch, with validation, on the first 1,000 and on all 10,000 of them, each
through lib.data.make_loaders and lib.train.fit in a fresh process. Prints the peak RSS of the
training process and of its loader workers for both, and the growth (target: < 100 MB). Crops are
32 px so that the 10,000-image epoch takes minutes on 2 CPU cores; the crop size changes the
constant, not how memory grows with the number of images.

The original project's CNN notebooks instead loaded every image into float64 arrays. That is
estimated here, not run, from its code at the original's 256x256 images: X (float64), Xtrain =
X[:90 %] / 255 (a second float64 array), and the float32 copy Keras' ImageDataGenerator.flow keeps
of Xtrain: 8 + 0.9 * 8 + 0.9 * 4 = 18.8 bytes per value, 256 * 256 * 3 values per image, before
the framework's own memory.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from photos import make_folder

from lib import results

ORIGINAL_BYTES_PER_IMAGE = 256 * 256 * 3 * (8 + 0.9 * 8 + 0.9 * 4)


def one_epoch(folder: str, n: int, out: str) -> dict:
    from lib import data, train  # imported here: the parent process never loads torch

    loaders = data.make_loaders(folder, 32, 32, max_images=n, augment="crop")
    _, run = train.fit(train.Settings("original_cnn", epochs=1, device="cpu", progress=False), loaders, out)
    return {
        "images": n, "n_train": run["data"]["n_train"], "n_val": run["data"]["n_val"],
        "seconds": run["history"][0]["seconds"], "workers": loaders.train.num_workers,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000])
    p.add_argument("--out", default="runs/bench/memory.json")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(one_epoch(a.child[0], int(a.child[1]), a.child[2])))
        return 0
    started = results.now()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(Path(tmp) / "photos", max(a.sizes), 128)
        for n in a.sizes:
            cmd = [sys.executable, __file__, "--child", str(Path(tmp) / "photos"), str(n), f"{tmp}/run{n}"]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
            r = rows[-1]
            print(f"{n:6d} images: epoch {r['seconds']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(loader workers {r['workers_peak_rss_mb']:.0f} MB); the original's float64 arrays: "
                  f"~{n * ORIGINAL_BYTES_PER_IMAGE / 1e9:.1f} GB (estimate)", flush=True)  # fmt: skip
    small, large = rows
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    workers_growth = large["workers_peak_rss_mb"] - small["workers_peak_rss_mb"]
    original_growth = (large["images"] - small["images"]) * ORIGINAL_BYTES_PER_IMAGE / 2**20
    print(f"-> growth from {small['images']:,} to {large['images']:,} images: {growth:+.0f} MB "
          f"(workers {workers_growth:+.0f} MB; target < 100 MB); the original's approach: "
          f"~{original_growth / 1024:+.1f} GB")  # fmt: skip
    results.save(
        a.out, benchmark="memory", model="original_cnn", crop=32, batch=32, rows=rows,
        growth_mb=growth, workers_growth_mb=workers_growth,
        original_estimate={"bytes_per_image": ORIGINAL_BYTES_PER_IMAGE,
                           "mb": {r["images"]: r["images"] * ORIGINAL_BYTES_PER_IMAGE / 2**20 for r in rows},
                           "growth_mb": original_growth},
        provenance=results.provenance("cpu", started),
    )  # fmt: skip
    print(f"written: {a.out}")
    return 0 if growth < 100 and workers_growth < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
