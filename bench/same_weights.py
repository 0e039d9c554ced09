"""Does a change to the code change what training computes? (a script, not a test)

    .venv/bin/python bench/same_weights.py [--out FILE.json]

Trains each of the four networks (OriginalCNN, EditedCNN, the ResNet18 and its classification
head) for two epochs with the `python -m lib.train` command a user runs (its options are the
promise kept across refactors), on 96 of the embedded train photos at 32 px, seed 0, on the CPU,
once with the default recipe and once with `--schedule onecycle --precision bf16`, and prints one SHA-256 per
run of its final weights (the state dict's names, dtypes, shapes and bytes, in name order). Run it
at two commits: equal digests mean the two commits train bit for bit the same weights. Each run
takes a few seconds on 2 cores. figures/results/same_weights_e6c014a.json holds the digests of commit
e6c014a, before issue 20's refactors.
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

RUNS = {
    "original_cnn": ["--model", "original_cnn"],
    "edited_cnn": ["--model", "edited_cnn"],
    "resnet18": ["--model", "resnet18"],
    "resnet18 (classification)": ["--model", "resnet18", "--head", "classification"],
}
# "--precision bf16" was "--bf16" before issue 20 (the digests of e6c014a were made with that)
RECIPES = {"default": [], "onecycle, bf16": ["--schedule", "onecycle", "--precision", "bf16"]}
COMMON = ["--data", "photos", "--max-images", "96", "--size", "32", "--epochs", "2", "--batch-size", "16"]
COMMON += ["--seed", "0", "--device", "cpu", "--workers", "0"]


def digest(state_dict: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].contiguous().cpu().reshape(-1)  # a 0-d tensor (a count) too
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="also write the digests here (JSON)")
    a = p.parse_args(argv)
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, extra in RECIPES.items():
            for name, model in RUNS.items():
                out = Path(tmp) / f"{name}-{recipe}".replace(" ", "_").replace(",", "")
                cmd = [sys.executable, "-m", "lib.train", *model, *COMMON, *extra, "--out", str(out)]
                subprocess.run(cmd, check=True, capture_output=True)
                last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
                digests[f"{name}, {recipe}"] = digest(last["state_dict"])
                print(f"{name}, {recipe}: {digests[f'{name}, {recipe}']}", flush=True)
    if a.out:
        a.out.write_text(json.dumps(digests, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
