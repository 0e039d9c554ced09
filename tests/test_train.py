"""The training loop: it learns, its checkpoints really restore, it resumes exactly."""

import json
import math

import pytest
import torch
from PIL import Image

from lib import checkpoints, classes, colorize, data, images, lab, metrics, runs, splits, train
from lib.models import build_model


def fit(model, loaders, out, resume=False, **settings):
    """lib.train.fit with Settings(model, **settings), without progress bars."""
    return train.fit(train.Settings(model, progress=False, **settings), loaders, out, resume)


def histories_equal(a, b):
    keys = ["epoch", "train_loss", "val_loss"]
    return [{k: h[k] for k in keys} for h in a] == [{k: h[k] for k in keys} for h in b]


def test_a_short_run_lowers_the_validation_loss(tiny_loaders, tmp_path):
    torch.manual_seed(0)
    untrained = build_model("resnet18").to(memory_format=torch.channels_last)
    before = train.validate(untrained, tiny_loaders.val, {})
    _, run = fit("resnet18", tiny_loaders, tmp_path, epochs=3, lr=1e-3)
    best = min(h["val_loss"] for h in run["history"])
    assert best < 0.97 * before
    assert [h["epoch"] for h in run["history"]] == [1, 2, 3]
    assert all(h["images_per_s"] > 0 and h["seconds"] > 0 for h in run["history"])
    assert run["parameters"] == 954_722 and run["data"]["n_train"] == 96
    assert run["settings"]["precision"] == "fp32"  # "auto" on the CPU


def test_checkpoints_restore_identical_predictions(tiny_loaders, tmp_path):
    model, run = fit("edited_cnn", tiny_loaders, tmp_path, epochs=2)
    last = run["checkpoints"][-1]
    restored, ckpt = checkpoints.load(last["path"])
    restored = restored.model  # the network itself, to compare with the one fit returned
    assert ckpt["epoch"] == last["epoch"] and ckpt["val_loss"] == last["val_loss"]
    assert ckpt["model"] == "edited_cnn" and ckpt["normalization"] == lab.NORMALIZATION
    assert ckpt["data"]["n_train"] == 96 and ckpt["git_commit"]
    x = torch.rand(3, 1, 32, 32)
    model.eval()
    if last["epoch"] == 2:  # the model in memory is the last epoch's: the same weights, bit for bit
        mine, theirs = model.state_dict(), restored.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        restored = restored.to(memory_format=torch.channels_last)  # as fit keeps it: the same kernels
        with torch.no_grad():
            assert torch.equal(model(x), restored(x))
    # and the checkpoint's val loss is what the restored model really scores
    assert train.validate(restored, tiny_loaders.val, {}) == pytest.approx(last["val_loss"], rel=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_two_runs_with_one_seed_give_the_same_numbers(tiny_loaders, tmp_path):
    _, a = fit("original_cnn", tiny_loaders, tmp_path / "a", epochs=1)
    _, b = fit("original_cnn", tiny_loaders, tmp_path / "b", epochs=1)
    assert histories_equal(a["history"], b["history"])
    _, c = fit("original_cnn", tiny_loaders, tmp_path / "c", epochs=1, seed=1)
    assert c["history"][0]["train_loss"] != a["history"][0]["train_loss"]


@pytest.mark.slow
def test_a_compiled_run_learns_the_same_as_an_eager_one(tiny_loaders, tmp_path):
    # torch.compile on the CPU (TorchInductor generating C++): the path a GPU server takes with
    # --compile, run here where CI can run it. Fused kernels round differently, hence approx.
    _, eager = fit("original_cnn", tiny_loaders, tmp_path / "eager", epochs=1)
    _, compiled = fit("original_cnn", tiny_loaders, tmp_path / "compiled", epochs=1, compile=True)
    assert compiled["compiled"] and not eager["compiled"]
    for key in ("train_loss", "val_loss"):
        assert compiled["history"][0][key] == pytest.approx(eager["history"][0][key], rel=1e-3)
    restored, _ = checkpoints.load(compiled["checkpoints"][-1]["path"])  # plain keys, no _orig_mod
    assert train.validate(restored.model, tiny_loaders.val, {}) == pytest.approx(
        compiled["checkpoints"][-1]["val_loss"], rel=1e-5
    )


def test_a_classification_run_learns_and_its_checkpoint_colorizes(tiny_loaders, tmp_path):
    options = {"head": "classification"}
    _, run = fit("resnet18", tiny_loaders, tmp_path, epochs=3, options=options)
    prior = torch.tensor(run["ab_prior"], dtype=torch.float64)
    assert prior.sum().item() == pytest.approx(1) and (prior > 0).all()
    losses = [h["train_loss"] for h in run["history"]]
    # 18 small steps over 96 real photos: an epoch's loss is noisy, but falls below the first's
    assert min(losses[1:]) < 0.97 * losses[0]
    model, ckpt = checkpoints.load(checkpoints.best(run))
    assert ckpt["head"] == "classification" and ckpt["options"] == options
    # the class weights travel in the checkpoint and come from the training set's prior
    torch.testing.assert_close(model.head.class_weights, classes.rebalancing_weights(prior).float())
    rgb = data.sample_images(tiny_loaders.val.dataset, 3)
    ab = model.predict(rgb)
    assert ab.shape == (3, 2, 32, 32) and ab.abs().max() <= 1
    # a finished run picked up again (a notebook re-run) keeps its prior
    _, again = fit("resnet18", tiny_loaders, tmp_path, epochs=3, options=options, resume=True)
    assert again["ab_prior"] == run["ab_prior"] and histories_equal(again["history"], run["history"])
    image = Image.fromarray(rgb[0].permute(1, 2, 0).numpy()).convert("L").resize((70, 50))
    out = colorize.colorize_image(image, model, size=32)
    assert out.size == (70, 50) and out.mode == "RGB"


def test_resume_gives_the_same_history_as_an_uninterrupted_run(tiny_loaders, tmp_path):
    _, whole = fit("resnet18", tiny_loaders, tmp_path / "whole", epochs=3)
    fit("resnet18", tiny_loaders, tmp_path / "cut", epochs=1)
    _, resumed = fit("resnet18", tiny_loaders, tmp_path / "cut", epochs=3, resume=True)
    assert histories_equal(whole["history"], resumed["history"])
    assert [c["epoch"] for c in whole["checkpoints"]] == [c["epoch"] for c in resumed["checkpoints"]]


class KilledAfter:
    """A training loader whose run is stopped (as by Ctrl-C or a kill) when an epoch after
    `epochs` begins; until then it is the loader itself."""

    def __init__(self, loader, epochs):
        self.loader, self.epochs = loader, epochs
        self.batch_size, self.sampler = loader.batch_size, loader.sampler

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        if self.sampler.epoch > self.epochs:
            raise KeyboardInterrupt
        return iter(self.loader)


def test_a_one_cycle_run_resumes_exactly_and_refuses_to_be_extended(tiny_loaders, tmp_path):
    kw = dict(schedule="onecycle", warmup=0.3, lr=3e-3, precision="bf16")
    _, whole = fit("resnet18", tiny_loaders, tmp_path / "whole", epochs=2, **kw)
    killed = tiny_loaders._replace(train=KilledAfter(tiny_loaders.train, epochs=1))
    with pytest.raises(KeyboardInterrupt):  # the run is stopped as epoch 2 begins
        fit("resnet18", killed, tmp_path / "cut", epochs=2, **kw)
    _, resumed = fit("resnet18", tiny_loaders, tmp_path / "cut", epochs=2, resume=True, **kw)
    assert histories_equal(whole["history"], resumed["history"])
    lrs = [h["lr_last"] for h in whole["history"]]
    assert lrs == [h["lr_last"] for h in resumed["history"]]
    assert lrs[0] > lrs[1] and lrs[1] < 3e-3 / 1e5  # warmed up inside epoch 1, then down to ~0
    assert (
        whole["settings"] | {"schedule": "onecycle", "warmup": 0.3, "precision": "bf16"} == whole["settings"]
    )
    with pytest.raises(ValueError, match="cannot resume with 3 epochs: its one-cycle schedule"):
        fit("resnet18", tiny_loaders, tmp_path / "whole", epochs=3, resume=True, **kw)
    with pytest.raises(ValueError, match="cannot resume.*schedule"):
        fit("resnet18", tiny_loaders, tmp_path / "whole", epochs=3, resume=True)


def test_a_run_folder_is_never_overwritten(tiny_loaders, tmp_path):
    fit("resnet18", tiny_loaders, tmp_path, epochs=1)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match="already holds a run"):
        fit("resnet18", tiny_loaders, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="cannot resume.*lr"):
        fit("resnet18", tiny_loaders, tmp_path, epochs=2, lr=0.5, resume=True)
    other_data = tiny_loaders._replace(description={**tiny_loaders.description, "n_train": 1})
    with pytest.raises(ValueError, match="cannot resume.*data"):
        fit("resnet18", other_data, tmp_path, epochs=2, resume=True)
    assert before == {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}


def test_load_checkpoint_gives_one_clear_error_for_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such checkpoint"):
        checkpoints.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoints.load(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a bw-colorization-checkpoint/1 checkpoint"):
        checkpoints.load(foreign)
    model = build_model("resnet18")
    other = checkpoints.make(model, "resnet18", {}, 1, 0.1, {})
    other["normalization"] = {**other["normalization"], "ab_scale": 110.0}
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="normalization"):
        checkpoints.load(tmp_path / "other.pt")


def test_load_checkpoint_refuses_pickled_code(tmp_path):
    """weights_only=True: a checkpoint that smuggles an object is rejected, not executed."""
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "payload": images.BadImage("x")}, evil)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoints.load(evil)


def test_command_line_trains_scores_and_writes_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    argv = ["--model", "resnet18", "--size", "32", "--epochs", "2", "--max-images", "64"]
    assert train.main([*argv, "--workers", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gray baseline" in printed and "resnet18" in printed
    assert "the dev part" in printed and "the part that chose this checkpoint" in printed
    results = json.loads((out / "results.json").read_text())
    assert "metrics" not in results  # these scores are the dev part's: never to be read as held-out
    for name in ["resnet18", "gray baseline"]:
        assert all(math.isfinite(results["dev_metrics"][name][k]) for k in metrics.METRICS)
    assert results["dev_metrics"]["gray baseline"]["colourfulness"] < 0.1
    dev = splits.part_files(data.PHOTOS, "dev")[0]
    assert results["dev_metrics"]["gray baseline"]["files"] == dev
    assert len(results["history"]) == 2
    prov = results["provenance"]
    assert prov["git_commit"] and prov["versions"]["torch"] == torch.__version__
    assert prov["device"].startswith("cpu") and prov["started"] <= prov["finished"]
    # a second run into the same folder is refused with exit code 2, nothing replaced
    assert train.main([*argv, "--workers", "0", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_a_finished_command_line_run_is_picked_up_by_a_notebook(tmp_path):
    """A GPU server may train with `python -m lib.train` (under torchrun); the notebook's
    fit(..., resume=True) with the same settings then finds the run and trains nothing more."""
    out = tmp_path / "checkpoints" / "resnet18" / "seed-0"
    args = ["--size", "32", "--epochs", "2", "--max-images", "32", "--workers", "0", "--lr", "0.001"]
    assert train.main([*args, "--out", str(out)]) == 0
    loaders = data.make_loaders("photos", 32, 32, max_images=32, workers=0)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    _, run = fit("resnet18", loaders, out, epochs=2, lr=0.001, resume=True)
    assert [h["epoch"] for h in run["history"]] == [1, 2]
    assert before == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}  # nothing retrained


def test_a_folder_with_a_run_that_cannot_be_resumed_is_refused(tiny_loaders, tmp_path):
    """A run record or checkpoints without last.pt: a new run would overwrite results.json and mix
    its checkpoints with the old ones, so it is refused, with or without resume."""
    old = tmp_path / "old"
    fit("resnet18", tiny_loaders, old, epochs=1)
    (old / "last.pt").unlink()
    (old / "results.json").write_text('{"model": "resnet18"}')
    only_record = tmp_path / "record"
    only_record.mkdir()
    (only_record / "results.json").write_text("{}")
    only_best = tmp_path / "best"
    fit("resnet18", tiny_loaders, only_best, epochs=1, keep_all=False)
    (only_best / "last.pt").unlink()
    for folder in (old, only_record, only_best):
        before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        for resume in (False, True):
            with pytest.raises(FileExistsError, match="no last.pt.*cannot be resumed: choose another folder"):
                fit("resnet18", tiny_loaders, folder, epochs=1, lr=0.01, resume=resume)
        assert before == {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("a folder with no run in it is fine")
    _, run = fit("original_cnn", tiny_loaders, empty, epochs=1)
    assert (empty / "last.pt").exists() and len(run["history"]) == 1


def test_what_a_folder_holds_decides_new_run_resume_or_refusal(tmp_path):
    """lib.runs.run_to_resume on its own: the rule every training command keeps."""
    assert runs.run_to_resume(tmp_path, resume=False) is None  # nothing there: a new run
    (tmp_path / "notes.txt").write_text("not a run")
    assert runs.run_to_resume(tmp_path, resume=True) is None
    (tmp_path / "model-epoch-001-val-0.01000.pt").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"holds a run \(model-epoch-001.*\) but no last.pt"):
        runs.run_to_resume(tmp_path, resume=True)
    (tmp_path / "last.pt").write_bytes(b"")
    assert runs.run_to_resume(tmp_path, resume=True) == tmp_path / "last.pt"
    with pytest.raises(FileExistsError, match="already holds a run; resume it"):
        runs.run_to_resume(tmp_path, resume=False)


def pool_with_parts(root, gray_parts, photo_mode="RGB"):
    """A pool root/p of 12 training and 4 dev photos and its split file: the photos of
    `gray_parts` have no colour, saved as RGB (they pass the header check, and fail while
    decoding: "no colour") or in photo_mode "L" (the header check refuses them)."""
    from skimage import data as skdata

    (root / "p").mkdir(parents=True)
    sources = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    wanted, i = {"train": 12, "dev": 4, "held-out": 0}, 0
    while any(wanted.values()):
        name, i = f"{i:03d}.png", i + 1
        part = splits.split_part(f"p/{name}", 0)  # the names fill the parts as wanted
        if not wanted[part]:
            continue
        wanted[part] -= 1
        im = Image.fromarray(sources[i % 3]).resize((48 + i, 48))
        if part in gray_parts:
            im = im.convert("L") if photo_mode == "L" else im.convert("L").convert("RGB")
        im.save(root / "p" / name)
    splits.write_split(root, ["p"], root / "split.tsv", seed=0, pattern="*.png")
    return root


@pytest.mark.parametrize(
    "part, purpose, head",
    [
        ("dev", "validation", "regression"),
        ("train", "training", "regression"),
        ("train", "training", "classification"),
    ],
)  # a classifier meets its training photos first in the colour prior's pass
def test_a_run_whose_images_all_fail_to_decode_stops_with_one_line_and_no_checkpoint(
    tmp_path, capsys, part, purpose, head
):
    pool = pool_with_parts(tmp_path / "pool", {part})
    out = tmp_path / "run"
    argv = ["--data", str(pool), "--split", str(pool / "split.tsv"), "--size", "32", "--epochs", "1"]
    argv += ["--head", head]
    capsys.readouterr()
    assert train.main([*argv, "--workers", "0", "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    n = len(splits.split_files(pool, pool / "split.tsv", part))
    assert len(err) == 1 and f"no {purpose} image" in err[0] and f"{n} file(s) failed" in err[0]
    assert f"{n} no colour" in err[0] and str(pool) in err[0]
    assert not list(out.glob("*.pt")) and not (out / "results.json").exists()


def test_a_split_part_with_no_usable_file_is_named_with_what_was_skipped(tmp_path, capsys):
    pool = pool_with_parts(tmp_path / "pool", {"dev"}, photo_mode="L")
    n = len(splits.split_files(pool, pool / "split.tsv", "dev"))
    with pytest.raises(ValueError) as e:
        data.make_loaders(pool, 32, 8, split_file=pool / "split.tsv", workers=0)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{pool}: no usable colour image in its dev part")
    assert "dev part" in message and f"{n} file(s) skipped ({n} grayscale image)" in message
    out = tmp_path / "run"
    argv = ["--data", str(pool), "--split", str(pool / "split.tsv"), "--size", "32", "--workers", "0"]
    assert train.main([*argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {message}"
    assert not out.exists()


# --- settings: heads, precision, schedule ------------------------------------------------------------


@pytest.fixture
def chroma_head():
    """A head that is not in the library: one class, registered by subclassing models.Head. Its
    loss weighs each pixel's squared ab error by how far its lightness is from black and white,
    where no colour is possible (so it reads the lightness, which a head's loss gets)."""
    from torch.nn import functional as F

    from lib import models

    class ChromaHead(models.Head, kind="chroma-weighted"):
        def __init__(self, features, own_layers):
            super().__init__()
            self.layers = torch.nn.Sequential(*own_layers())

        def forward(self, features, size):
            return F.interpolate(self.layers(features), size=tuple(size), mode="bilinear")

        def to_ab(self, output, size=None, vividness=None):
            return output

        def loss(self, output, ab, l):
            weight = 4 * l * (1 - l)  # 0 at L* = 0 and 100, 1 at L* = 50
            return ((output - ab) ** 2 * weight).mean()

    yield ChromaHead
    del models.HEADS["chroma-weighted"]


def test_a_new_head_is_one_class_and_every_command_takes_it(chroma_head, tiny_loaders, tmp_path, capsys):
    model = build_model("edited_cnn", head="chroma-weighted")
    out, ab = torch.zeros(2, 2, 8, 8), torch.ones(2, 2, 8, 8)
    assert model.head.loss(out, ab, torch.full((2, 1, 8, 8), 0.5)) == 1  # it reads the lightness
    assert model.head.loss(out, ab, torch.zeros(2, 1, 8, 8)) == 0
    _, run = fit("edited_cnn", tiny_loaders, tmp_path / "run", epochs=1, options={"head": "chroma-weighted"})
    loaded, ckpt = checkpoints.load(checkpoints.best(run))
    assert ckpt["head"] == "chroma-weighted" and isinstance(loaded.head, chroma_head)
    image = Image.fromarray(data.sample_images(tiny_loaders.val.dataset, 1)[0].permute(1, 2, 0).numpy())
    assert colorize.colorize_image(image.convert("L"), loaded, size=32).size == image.size
    with pytest.raises(SystemExit):  # its options are its own: the command line knows it too
        train.main(["--head", "chroma-weighted", "--rebalance", "1", "--epochs", "1"])
    assert "rebalance needs head='classification'" in capsys.readouterr().err


@pytest.mark.slow
def test_every_precision_trains_and_is_recorded_and_fp16_resumes_with_its_scaler(tiny_loaders, tmp_path):
    losses = {}
    for precision in ("fp32", "bf16", "fp16"):
        _, run = fit("resnet18", tiny_loaders, tmp_path / precision, epochs=1, precision=precision)
        assert run["settings"]["precision"] == precision
        losses[precision] = run["history"][0]["train_loss"]
    # the same run at three precisions: close, and not the same numbers
    for low in ("bf16", "fp16"):
        assert losses[low] == pytest.approx(losses["fp32"], rel=0.05) and losses[low] != losses["fp32"]
    last = torch.load(tmp_path / "fp16" / "last.pt", weights_only=True)
    assert last["scaler"]["scale"] > 0 and "scaler" not in torch.load(
        tmp_path / "fp32" / "last.pt", weights_only=True
    )
    _, whole = fit("resnet18", tiny_loaders, tmp_path / "whole", epochs=2, precision="fp16")
    _, resumed = fit("resnet18", tiny_loaders, tmp_path / "fp16", epochs=2, precision="fp16", resume=True)
    assert histories_equal(whole["history"], resumed["history"])  # the scaler's state resumed too
    with pytest.raises(ValueError, match="cannot resume.*precision"):
        fit("resnet18", tiny_loaders, tmp_path / "fp32", epochs=2, precision="bf16", resume=True)


def test_a_one_cycle_schedule_steps_per_epoch_when_asked(tiny_loaders, tmp_path):
    kw = dict(schedule="onecycle", warmup=2 / 3, lr=1e-2, epochs=3)
    _, per_epoch = fit("resnet18", tiny_loaders, tmp_path / "epoch", step="epoch", **kw)
    lrs = [h["lr_last"] for h in per_epoch["history"]]
    # one step an epoch, one learning rate all through it: lr/25 in epoch 1, the peak in epoch 2
    # (OneCycleLR peaks at step warmup * 3 - 1), then down to about lr/25e4
    assert lrs == pytest.approx([1e-2 / 25, 1e-2, 1e-2 / 25e4], rel=1e-6)
    assert per_epoch["settings"]["step"] == "epoch"
    with pytest.raises(ValueError, match="cannot resume.*step"):
        fit("resnet18", tiny_loaders, tmp_path / "epoch", step="batch", resume=True, **kw)


def test_settings_refuse_unknown_choices_and_the_replaced_option_says_what_replaced_it(capsys):
    for field, value in (("precision", "fp8"), ("schedule", "cosine"), ("step", "minute")):
        with pytest.raises(ValueError, match=f"unknown {field} '{value}'"):
            train.Settings(**{field: value})
    with pytest.raises(SystemExit):
        train.main(["--bf16"])
    assert "--bf16 was replaced by --precision bf16" in capsys.readouterr().err


def test_a_run_recorded_before_settings_were_one_object_still_resumes(tiny_loaders, tmp_path):
    """last.pt of a run written before precision and step were settings (a bf16 flag, an unused
    weight_decay): resumed with the settings that mean the same, refused with others."""
    kw = dict(schedule="onecycle", lr=3e-3, epochs=1)
    _, run = fit("resnet18", tiny_loaders, tmp_path, precision="bf16", **kw)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    old = {k: v for k, v in state["run"]["settings"].items() if k not in ("precision", "step")}
    state["run"]["settings"] = old | {"bf16": True, "weight_decay": 0.0}
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="cannot resume.*precision"):
        fit("resnet18", tiny_loaders, tmp_path, precision="fp32", resume=True, **kw)
    with pytest.raises(ValueError, match="cannot resume.*step"):
        fit("resnet18", tiny_loaders, tmp_path, precision="bf16", step="epoch", resume=True, **kw)
    _, again = fit("resnet18", tiny_loaders, tmp_path, precision="bf16", resume=True, **kw)
    assert again["settings"] == run["settings"] and histories_equal(again["history"], run["history"])


# --- one run per folder -------------------------------------------------------------------------------


@pytest.mark.slow  # a training process of its own
def test_a_second_run_into_a_folder_in_use_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys):
    """Another process holds the folder (as a training run does, for the whole run): a second run
    is refused with one line naming it; once that process is killed (kill -9: its lock stays
    behind), the lock is stale and the next run takes the folder."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time; from pathlib import Path; from lib import runs\n"
         f"with runs.lock(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["--size", "32", "--epochs", "1", "--max-images", "16", "--workers", "0", "--out", str(out)]
        assert train.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"another run (process {holder.pid} on {socket.gethostname()})" in err[0]
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of the second run
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (out / ".lock").exists()  # killed: nothing released it
    t0 = time.time()
    assert train.main(argv) == 0  # stale: taken over
    assert not (out / ".lock").exists() and (out / "last.pt").exists() and time.time() - t0 < 120


def test_a_lock_is_released_however_the_run_ends_and_another_hosts_lock_is_respected(tiny_loaders, tmp_path):
    killed = tiny_loaders._replace(train=KilledAfter(tiny_loaders.train, epochs=0))
    with pytest.raises(KeyboardInterrupt):
        fit("resnet18", killed, tmp_path / "a", epochs=1)
    assert not (tmp_path / "a" / ".lock").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".lock").write_text('{"pid": 1, "host": "another-machine"}')
    with pytest.raises(FileExistsError, match="process 1 on another-machine.*delete .*\\.lock"):
        fit("resnet18", tiny_loaders, tmp_path / "b", epochs=1)
    assert [p.name for p in (tmp_path / "b").iterdir()] == [".lock"]
