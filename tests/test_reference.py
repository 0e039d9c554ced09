"""The shipped reference model: it is the file we recorded, it learned colour, and it is the default."""

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from lib import checkpoints, colorize, data, datasets, lab, metrics, splits

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference():
    return checkpoints.load("reference")


def test_the_shipped_file_is_small_loads_with_weights_only_and_matches_its_hash(reference):
    path = checkpoints.REFERENCE
    assert path.stat().st_size <= 5_000_000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == checkpoints.REFERENCE_SHA256
    raw = torch.load(path, weights_only=True)  # plain tensors and dicts: no pickled code
    assert raw["format"] == checkpoints.CHECKPOINT_FORMAT and raw["head"] == "classification"
    assert all(v.dtype in (torch.float16, torch.int64) for v in raw["state_dict"].values())
    model, ckpt = reference
    assert ckpt["sha256"] == checkpoints.REFERENCE_SHA256
    assert model.working_size == raw["working_size"] >= 64 and 0 <= raw["vividness"] <= 1
    assert ckpt["data"]["split"]["file"] == "photos.tsv"  # trained on the train part of the split
    assert ckpt["data"]["split"]["sha256"] == datasets.sha256(
        checkpoints.REFERENCE.parents[2] / "data/splits/photos.tsv"
    )


def test_a_changed_reference_file_is_refused_with_one_line(tmp_path, monkeypatch):
    copy = tmp_path / "reference.pt"
    raw = bytearray(checkpoints.REFERENCE.read_bytes())
    raw[-100] ^= 1  # one bit
    copy.write_bytes(bytes(raw))
    monkeypatch.setattr(checkpoints, "REFERENCE", copy)
    with pytest.raises(ValueError, match="is not the shipped reference model's"):
        checkpoints.load("reference")


def held_out(size=128):
    loader, desc = data.part_loader("photos", "held-out", size, workers=0)
    assert not desc["skipped"]
    return loader


def at(model, vividness):
    """The model as a predictor at one vividness setting."""
    return model.replace(vividness=vividness)


@pytest.mark.slow
def test_at_its_faithful_setting_it_beats_the_gray_baseline_on_photos_it_never_saw(reference):
    """The embedded photos' held-out part is part of the pools' held-out part, which the
    reference model never trained on (data/photos/README.md)."""
    model, _ = reference
    predictors = {"faithful": at(model, 0), "gray": metrics.gray_baseline}
    scores = metrics.evaluate_all(predictors, held_out())
    assert scores["faithful"]["n_images"] == len(splits.part_files(data.PHOTOS, "held-out")[0]) > 200
    assert scores["faithful"]["auc"] > scores["gray"]["auc"]


@pytest.mark.slow
def test_more_vividness_gives_more_colourfulness(reference):
    model, _ = reference
    scores = metrics.evaluate_all({v: at(model, v) for v in (0, 0.5, 1)}, held_out(64))
    cf = [scores[v]["colourfulness"] for v in (0, 0.5, 1)]
    assert cf[0] < cf[1] < cf[2]


def test_colorize_with_no_checkpoint_uses_it_at_full_size_for_any_shape(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(skdata.camera()).save(src / "camera.png")  # a real black-and-white photograph
    wide = Image.fromarray(skdata.astronaut()).resize((640, 400)).convert("L")
    wide.save(src / "landscape.jpg", quality=95)
    assert colorize.main([str(src)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "2 written" in summary and "the shipped reference model" in summary
    for name in ("camera.png", "landscape.jpg"):
        with Image.open(src / name) as a, Image.open(tmp_path / "photos-colorized" / name) as b:
            assert b.size == a.size and b.mode == "RGB"
            la = lab.rgb_to_lab(torch.from_numpy(np.array(a.convert("RGB"))).permute(2, 0, 1)[None])[0, 0]
            lb = lab.rgb_to_lab(torch.from_numpy(np.array(b)).permute(2, 0, 1)[None])[0, 0]
            tolerance = 1.0 if name.endswith(".png") else 3.0  # JPEG re-encoding moves L* a little
            assert (la - lb).abs().mean() < tolerance / 3 and (la - lb).abs().quantile(0.99) < tolerance
            assert colorize_chroma(b) > 2  # it added colour
    out = colorize.colorize_image(Image.fromarray(skdata.camera()))  # the library call, no model given
    assert out.size == (512, 512) and colorize_chroma(out) > 2


def colorize_chroma(img) -> float:
    ab = lab.rgb_to_lab(torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)[None])[0, 1:]
    return float(ab.norm(dim=0).mean())


def test_pip_install_carries_the_weights(tmp_path):
    root = checkpoints.REFERENCE.parents[2]
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*pip, "-w", tmp_path, root], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lib/weights/reference.pt" in names and "lib/weights/README.md" in names


def test_the_release_script_exports_a_trained_checkpoint_that_every_command_loads(tiny_loaders, tmp_path):
    """bench/export_reference.py: how the shipped file was made, run on a real (one-epoch) run."""
    import importlib.util

    from lib import train

    spec = importlib.util.spec_from_file_location("export_reference", ROOT / "bench" / "export_reference.py")
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    settings = train.Settings("resnet18", {"head": "classification"}, epochs=1, progress=False)
    _, run = train.fit(settings, tiny_loaders, tmp_path / "run")
    out = tmp_path / "reference.pt"
    sha = export.export(checkpoints.best(run), out, working_size=96, vividness=0.2)
    assert sha == hashlib.sha256(out.read_bytes()).hexdigest()
    model, ckpt = checkpoints.load(out)
    assert (model.working_size, model.vividness, ckpt["ab_prior"]) == (96, 0.2, run["ab_prior"])
    assert all(v.dtype in (torch.float16, torch.int64) for v in ckpt["state_dict"].values())
    assert ckpt["exported_from"]["file"] == Path(checkpoints.best(run)).name
    with pytest.raises(FileExistsError, match="exists; move it away first"):
        export.export(checkpoints.best(run), out, working_size=96, vividness=0.2)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert export.main([str(tmp_path / "notes.txt"), str(tmp_path / "x.pt"), "--working-size", "96"]) == 2
    assert not (tmp_path / "x.pt").exists()
