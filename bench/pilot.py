"""The study's pilot: seconds per epoch and dev loss of each network, one seed (a script, not a test).

    .venv/bin/python bench/pilot.py [--sizes 64 96] [--epochs 2] [--bf16] [--out FILE.json]

Trains each network the study trains (OriginalCNN, EditedCNN, the ResNet18 and its classification
head) for a few epochs on the whole train part of the embedded photos with the study's recipe
(notebooks/profiles/study.yaml: random crops, one-cycle schedule, batch 32), exactly as the
notebooks do (lib.data.make_loaders, lib.train.fit), and prints each run's seconds per epoch
(the median over its epochs after the first, which also starts the loader's workers) and its
last dev loss. The study's crop size and epochs were chosen from these seconds: twelve runs
(four networks, three seeds) must fit in the study's time budget. The dev loss of a few epochs
says only that the recipe trains; the study itself chooses nothing on it.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from lib import data, results, train

MODELS = {
    "original_cnn": ("original_cnn", {}),
    "edited_cnn": ("edited_cnn", {}),
    "resnet18": ("resnet18", {}),
    "resnet18 (classification)": ("resnet18", {"head": "classification"}),
}
STUDY = Path(__file__).resolve().parents[1] / "notebooks" / "profiles" / "study.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast on the CPU")
    p.add_argument("--out", default="runs/bench/study_pilot.json")
    a = p.parse_args(argv)
    recipe = yaml.safe_load(STUDY.read_text())
    started, rows = results.now(), []
    for size in a.sizes:
        loaders = data.make_loaders(
            recipe["dataset"], size, recipe["batch_size"], augment=recipe["augment"],
            crop_scale=recipe["crop_scale"],
        )  # fmt: skip
        for label, (name, options) in MODELS.items():
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                settings = train.Settings(
                    name, options, epochs=a.epochs, lr=recipe["lr"], schedule=recipe["schedule"],
                    precision="bf16" if a.bf16 else "fp32", seed=0, progress=False, device="cpu",
                )  # fmt: skip
                _, run = train.fit(settings, loaders, tmp)
                total = time.perf_counter() - t0
            seconds = [h["seconds"] for h in run["history"]]
            row = {
                "model": label, "size": size, "epochs": a.epochs, "bf16": a.bf16,
                "seconds_per_epoch": statistics.median(seconds[1:] or seconds), "seconds": seconds,
                "total_seconds": total, "dev_loss": run["history"][-1]["val_loss"],
                "n_train": run["data"]["n_train"], "parameters": run["parameters"],
            }  # fmt: skip
            rows.append(row)
            print(f"{label:>26} {size:>4} px: {row['seconds_per_epoch']:6.1f} s an epoch "
                  f"({row['n_train']} photos), dev loss {row['dev_loss']:.5f}", flush=True)  # fmt: skip
    for size in a.sizes:
        per_epoch = sum(r["seconds_per_epoch"] for r in rows if r["size"] == size)
        print(f"{size} px: {per_epoch:.0f} s for one epoch of all four networks; three seeds of "
              f"E epochs take {3 * per_epoch / 60:.1f} x E minutes")  # fmt: skip
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    results.save(a.out, recipe=recipe, rows=rows, provenance=results.provenance("cpu", started))
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
