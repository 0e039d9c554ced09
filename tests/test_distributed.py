"""Training under torchrun: two CPU processes with the gloo backend, one run folder, one results file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib import data


def test_epoch_sampler_shards_one_permutation_across_processes():
    whole = list(data.EpochSampler(11, seed=3, process=0, processes=1))
    shards = [list(data.EpochSampler(11, seed=3, process=r, processes=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)  # ceil(11 / 3), padded so no process waits for another
    assert set().union(*map(set, shards)) == set(whole)  # every (index, seed) pair is seen
    assert shards[1] == whole[1::3] and shards[2] == whole[2::3] + whole[:1]  # padding wraps around


def torchrun_train(*args) -> subprocess.CompletedProcess:
    """`python -m lib.train ARGS` under torchrun: two CPU processes (gloo), one thread each."""
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "lib.train", *args],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_training_runs_unchanged_under_torchrun_with_two_processes(tmp_path):
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 40)[None, :, None]
    for i in range(30):  # the parts named by their folders: 24 train, 3 dev, 3 held-out photos
        part = "train" if i < 24 else "dev" if i < 27 else "held-out"
        (photos / part).mkdir(parents=True, exist_ok=True)
        c0, c1 = rng.uniform(0, 255, (2, 3))
        gradient = (c0 * (1 - x) + c1 * x).repeat(40, 0).astype(np.uint8)
        Image.fromarray(gradient).save(photos / part / f"p{i}.png")
    args = ["--model", "resnet18", "--data", str(photos), "--size", "32", "--epochs", "2", "--workers", "0"]
    done = torchrun_train(*args, "--batch-size", "4", "--out", str(tmp_path / "run"))
    out = done.stdout.replace("\r", "\n")
    assert out.count("epoch 1/2: train") == 1 and "2 process(es)" in out  # only the first process prints
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["processes"] == 2 and len(res["history"]) == 2
    for h in res["history"]:  # the epoch's images are counted over both processes: 24, not 12
        assert round(h["images_per_s"] * h["seconds"]) == 24
    assert sorted(p.name for p in (tmp_path / "run").glob("*.json")) == ["results.json"]
    assert all(Path(c["path"]).is_file() for c in res["checkpoints"])
