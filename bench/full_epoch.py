"""Benchmark: one epoch of the `full` profile's ResNet18 training, and the projected 50-epoch run.

    .venv/bin/python bench/full_epoch.py [--images 4000] [--device auto] [--out runs/bench/full_epoch.json]

The `full` profile trains ResNet18 on the Places205 test set's 40,000 training photos (256x256) with
224 px random crops, batch 64, Adam 1e-2, for 50 epochs; the original needed about 9 hours for
that. Here --images generated 256x256 JPEGs stand in for the photos (the speed of decoding and of a
convolution does not depend on what the photos show), and one epoch runs through lib.data and
lib.train.fit exactly as `python -m lib.train` runs it, workers, pinned memory, bf16 autocast and
all. The projection scales the epoch's training and validation rates to 40,000 + 1,000 photos and
50 epochs. Target on one H200: <= 15 minutes.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from photos import make_folder

from lib import checkpoints, data, results, train

# the full profile: Places205's 41,000 photos cut 80/10/10 into train, dev and held-out parts
FULL_TRAIN, FULL_VAL, FULL_EPOCHS, ORIGINAL_HOURS = 32_800, 4_100, 50, 9.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="train through torch.compile")
    p.add_argument("--out", default="runs/bench/full_epoch.json")
    a = p.parse_args()
    started, device = results.now(), checkpoints.pick_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(Path(tmp) / "photos", a.images, 256)
        # a plain folder: 80 % train, 10 % dev (which validates), as the full profile's folder
        loaders = data.make_loaders(str(Path(tmp) / "photos"), 224, 64, augment="crop",
                                    pin_memory=device.type == "cuda")  # fmt: skip
        t0 = time.perf_counter()
        settings = train.Settings(
            "resnet18", epochs=1, lr=0.01, device=device, progress=False, compile=a.compile
        )
        _, run = train.fit(settings, loaders, Path(tmp) / "run")
        total = time.perf_counter() - t0
    epoch = run["history"][0]
    train_rate = epoch["images_per_s"]
    val_seconds = total - epoch["seconds"]  # validation and the checkpoint writes
    n_train, n_val = run["data"]["n_train"], run["data"]["n_val"]
    projected_epoch = FULL_TRAIN / train_rate + val_seconds * FULL_VAL / n_val
    projected = FULL_EPOCHS * projected_epoch
    print(f"{device}: one epoch of {n_train} photos in {epoch['seconds']:.1f} s ({train_rate:.0f} images/s), "
          f"validation of {n_val} in {val_seconds:.1f} s")  # fmt: skip
    speedup = ORIGINAL_HOURS * 3600 / projected
    print(f"-> projected full run (40,000 photos, 50 epochs): {projected / 60:.1f} minutes; the original: "
          f"~{ORIGINAL_HOURS:.0f} h ({speedup:.2g}x); target on one H200: <= 15 min")  # fmt: skip
    results.save(
        a.out, benchmark="full_epoch", model="resnet18", crop=224, batch=64, images=a.images,
        compiled=a.compile, n_train=n_train, n_val=n_val, epoch_seconds=epoch["seconds"],
        train_images_per_s=train_rate, val_seconds=val_seconds, projected_epoch_seconds=projected_epoch,
        projected_minutes=projected / 60, original_hours=ORIGINAL_HOURS,
        provenance=results.provenance(str(device), started),
    )  # fmt: skip
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
