"""Benchmark: the training data pipeline against the original's loader design (a script, not a test).

    .venv/bin/python bench/pipeline.py [--images 512] [--out runs/bench/pipeline.json]

Both deliver the same thing to a model: batches of 64 random 224 px crops (RandomResizedCrop + flip)
of 256x256 JPEGs, as L input and ab target tensors. The original (Melas' GrayscaleImageFolder, the
ResNet notebook) decoded, cropped and converted each image to Lab with scikit-image inside
__getitem__, with no worker processes. Ours: worker processes decode and crop to uint8, and the
batch is converted to Lab at once (lib.data.make_loaders + lib.lab.rgb_to_model).

No model runs here, so our pipeline gets the whole machine: one worker per core, and one thread for
the conversion in the main process (more would fight the workers for the same cores). Using every
core is part of the design; the original's loader could only use one. In training, make_loaders
leaves a core to the model (lib.data.default_workers). Prints images per second for each and the
ratio (target >= 5x).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from photos import make_folder
from PIL import Image
from skimage.color import rgb2gray, rgb2lab
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from lib import data, lab, results


class OriginalDesign(Dataset):
    """The original's loader: per-image decode, crop, and scikit-image Lab in __getitem__."""

    def __init__(self, files):
        self.files = files
        self.crop = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()])

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        img = np.asarray(self.crop(Image.open(self.files[i]).convert("RGB")))
        lab = (rgb2lab(img) + 128) / 255
        ab = torch.from_numpy(lab[:, :, 1:3].transpose(2, 0, 1)).float()
        gray = torch.from_numpy(rgb2gray(img)).unsqueeze(0).float()
        return gray, ab


def rate(batches, limit) -> float:
    """Images per second over `limit` batches, after one warm-up batch (worker start-up)."""
    it = iter(batches)
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(limit):
        l, ab = next(it)
        n += len(l)
    return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=640)
    p.add_argument("--out", default="runs/bench/pipeline.json")
    a = p.parse_args()
    started = results.now()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_folder(Path(tmp), a.images, 256)
        limit = int(0.8 * a.images) // 64 - 1  # batches of the train part (about 80 % of the files)
        torch.manual_seed(0)
        original = rate(DataLoader(OriginalDesign(files), batch_size=64, shuffle=True), limit)
        workers, threads = os.cpu_count() or 1, torch.get_num_threads()
        loaders = data.make_loaders(tmp, 224, 64, augment="crop", workers=workers)
        loaders.train.sampler.set_epoch(1)
        torch.set_num_threads(1)
        ours = rate((lab.rgb_to_model(rgb) for rgb, _ in loaders.train), limit)
        torch.set_num_threads(threads)
    ratio = ours / original
    print(f"original design (per-image scikit-image Lab, no workers): {original:.0f} images/s; "
          f"lib.data ({workers} worker(s), Lab per batch in 1 thread): {ours:.0f} images/s")  # fmt: skip
    print(f"-> {ratio:.1f}x (target >= 5x)")
    record = {
        "benchmark": "pipeline", "images": a.images, "crop": 224, "batch": 64,
        "original_images_per_s": original, "ours_images_per_s": ours, "ratio": ratio, "workers": workers,
        "provenance": results.provenance("cpu", started),
    }  # fmt: skip
    results.save(a.out, **record)
    print(f"written: {a.out}")
    return 0 if ratio >= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
