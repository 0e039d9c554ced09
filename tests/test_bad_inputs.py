"""Every command over one mixed folder of 35 kinds of files (tests/bad_inputs.py): good photos
come out right, each bad file is one line naming it and its reason, the same reason in every
command, no traceback, no input touched, outputs readable by others."""

import hashlib
import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from bad_inputs import make_corpus
from PIL import Image

from lib import images, lab

GRAY_RULE = "grayscale image"  # evaluate's and train's own rule, checked before decoding


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    kinds = make_corpus(root / "in", root / "elsewhere")
    return root, kinds


def snapshot(root) -> dict:
    """Content hash of every file below root (links followed) and of every link itself."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        if p.is_file():
            out[str(p) + ":data"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refusals(text: str, root) -> dict[str, str]:
    """{relative path: reason} of the "<path>: skipped: <reason>" lines; each path only once."""
    found = {}
    for line in text.splitlines():
        m = re.search(rf"{re.escape(str(root))}/(\S+): skipped: (.*)$", line)
        if m:
            assert m.group(1) not in found, f"{m.group(1)} named twice"
            found[m.group(1)] = m.group(2)
    return found


def lightness(img: Image.Image) -> np.ndarray:
    x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)[None]
    return lab.rgb_to_lab(x)[0, 0].numpy()


@pytest.fixture(scope="module")
def outcomes(corpus):
    """Run the three commands, as a user does, over the corpus once:
    {command: (exit code, refusals, stdout + stderr)}."""
    root, _ = corpus
    src = root / "in"
    # training reads the corpus as its train part: a folder whose train/ is the corpus (a link)
    # and whose dev/ and held-out/ parts hold one good photo each
    parts = root / "parts"
    for part in ("dev", "held-out"):
        (parts / part).mkdir(parents=True)
        (parts / part / "extra.png").write_bytes((src / "colour.png").read_bytes())
    (parts / "train").symlink_to(src, target_is_directory=True)
    before = snapshot(root)
    commands = {
        "colorize": ["lib.colorize", str(src), "--out", str(root / "colour")],
        "evaluate": ["lib.evaluate", "--checkpoint", "reference", "--data", str(src), "--size", "32",
                     "--workers", "0", "--out", str(root / "scores.json")],
        "train": ["lib.train", "--data", str(parts), "--size", "32", "--epochs", "1", "--workers", "0",
                  "--batch-size", "8", "--out", str(root / "run")],
    }  # fmt: skip
    out = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, args in commands.items():
        done = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=300
        )
        # training names the corpus's files through its link: the same files, the same reasons
        err = done.stderr.replace(str(parts / "train"), str(src))
        out[name] = (done.returncode, refusals(err, src), err + done.stdout)
    after = snapshot(root)
    assert all(after[k] == v for k, v in before.items())  # no input, link or link target touched
    return out


def test_the_corpus_has_at_least_30_kinds(corpus):
    _, kinds = corpus
    assert len(kinds) >= 30 and {"colour", "gray", "bad"} == set(kinds.values())


@pytest.mark.parametrize("command", ["colorize", "evaluate", "train"])
@pytest.mark.slow
def test_no_traceback_and_each_refusal_is_one_named_line(outcomes, corpus, command):
    _, kinds = corpus
    code, refused, text = outcomes[command]
    assert "Traceback" not in text
    assert code == (1 if command == "colorize" else 0)  # colorize: 1 = some inputs skipped
    bad = {f for f, k in kinds.items() if k == "bad"}
    usable = {f for f, k in kinds.items() if k == "colour" or (k == "gray" and command == "colorize")}
    assert set(refused) == set(kinds) - usable  # every bad file named, no good one
    assert bad <= set(refused)


@pytest.mark.slow
def test_a_bad_file_has_the_same_reason_in_every_command(outcomes, corpus):
    _, kinds = corpus
    by = {c: outcomes[c][1] for c in outcomes}
    for f, kind in kinds.items():
        if kind == "gray":
            assert by["evaluate"][f] == by["train"][f]  # both refuse gray photos, with one reason
        if kind != "bad":
            continue
        assert by["evaluate"][f] == by["train"][f], f
        if not by["evaluate"][f].startswith(GRAY_RULE):  # that rule comes first for them
            assert by["colorize"][f] == by["evaluate"][f], f


@pytest.mark.slow
def test_colorize_writes_every_usable_photo_right_and_readable(outcomes, corpus):
    root, kinds = corpus
    umask = os.umask(0)
    os.umask(umask)
    written = 0
    for f, kind in kinds.items():
        if kind == "bad":
            continue
        dst = root / "colour" / f
        dst = dst.with_suffix(".png") if dst.suffix == ".gif" else dst  # GIF cannot hold the colours
        assert stat.S_IMODE(dst.stat().st_mode) == 0o666 & ~umask, f
        picture = images.read_image(root / "in" / f)  # the input as every command reads it
        with Image.open(dst) as out:
            assert out.size == picture.image.size, f
            diff = np.abs(lightness(out) - lightness(picture.image.convert("RGB")))
            assert diff.mean() < (2.5 if dst.suffix in (".jpg", ".webp") else 0.6), (f, diff.mean())
        written += 1
    assert written == sum(k != "bad" for k in kinds.values())
    assert not list((root / "colour").rglob(".*.tmp"))


@pytest.mark.slow
def test_evaluate_and_train_use_exactly_the_colour_photos(outcomes, corpus):
    root, kinds = corpus
    colour = sum(k == "colour" for k in kinds.values())
    scores = json.loads((root / "scores.json").read_text())
    assert all(m["n_images"] == colour for m in scores["metrics"].values())
    record = json.loads((root / "run" / "results.json").read_text())
    d = record["data"]
    used = d["n_train"] + d["n_val"] - len(record["skipped_during_training"])
    assert used == colour + 1 and all(np.isfinite(h["val_loss"]) for h in record["history"])  # + dev's
