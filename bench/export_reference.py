"""Make the file the project ships as its reference model (a release step, not part of lib):

    .venv/bin/python bench/export_reference.py CHECKPOINT lib/weights/NEW.pt --working-size 128 \
        --vividness 0.5

writes a trained checkpoint as a file to ship: its weights in float16 (half the size), plus the
working size and default vividness that every inference path then uses (checkpoints.Inference),
and the colour prior of its training photos (for vividness settings). It never replaces a file,
and prints the new file's SHA-256, which goes into lib.checkpoints.REFERENCE_SHA256.
lib/weights/README.md tells how the shipped file was trained and exported.
"""

import argparse
import hashlib
import sys
from pathlib import Path

import torch

from lib import checkpoints, results

KEPT = ("format", "model", "options", "head", "normalization", "epoch", "val_loss", "data", "git_commit")


def export(checkpoint, out, working_size: int, vividness: float | None) -> str:
    """Write `checkpoint` as a reference file at `out` (see above); returns its SHA-256.
    ValueError for a file that is not one of our checkpoints (checkpoints.load's one line),
    FileExistsError when `out` exists."""
    _, ckpt = checkpoints.load(checkpoint)  # refuses what is not one of our checkpoints
    state = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    ref = {k: ckpt[k] for k in KEPT} | {"state_dict": state, "working_size": working_size}
    ref |= {"vividness": vividness, "ab_prior": ckpt.get("ab_prior")}
    ref["exported_from"] = {"file": Path(checkpoint).name, "sha256": ckpt["sha256"]}
    try:
        results.write_atomic(out, lambda tmp: torch.save(ref, tmp), replace=False)
    except FileExistsError:
        raise FileExistsError(f"{out}: exists; move it away first") from None
    checkpoints.load(out)  # what ships must load as every command loads it
    return hashlib.sha256(Path(out).read_bytes()).hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a checkpoint written by lib.train (e.g. its best.pt)")
    p.add_argument("out", help="the file to write (never replaced)")
    p.add_argument("--working-size", type=int, required=True, help="the shorter side it sees photos at")
    p.add_argument("--vividness", type=float, default=None, help="its default setting, 0 to 1")
    a = p.parse_args(argv)
    try:
        print(export(a.checkpoint, a.out, a.working_size, a.vividness))
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
