"""`python -m lib.evaluate`: every checkpoint and the gray baseline on any folder, bad files named."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from lib import checkpoints, evaluate, models


def make_checkpoint(path, **options):
    torch.manual_seed(0)
    model = models.build_model("resnet18", **options)
    prior = (
        {"ab_prior": torch.full((261,), 1 / 261).tolist()} if options.get("head") == "classification" else {}
    )
    ckpt = checkpoints.make(model, "resnet18", options, 1, 0.0, {"source": "a test", "size": 64}, **prior)
    checkpoints.write(ckpt, path)
    return path


def photo_folder(root):
    """Five colour photos of different sizes and shapes, one gray one, and two broken files."""
    root.mkdir()
    sources = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    for i, (w, h) in enumerate([(300, 200), (200, 300), (256, 256), (120, 90), (400, 400)]):
        Image.fromarray(sources[i % 3]).resize((w, h)).save(root / f"photo{i}.jpg", quality=92)
    Image.fromarray(skdata.camera()).save(root / "gray.png")
    (root / "empty.jpg").write_bytes(b"")
    good = (root / "photo0.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return root


def test_scores_every_checkpoint_and_the_gray_baseline_and_names_bad_files(tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos")
    mse = make_checkpoint(tmp_path / "mse.pt")
    cls = make_checkpoint(tmp_path / "cls.pt", head="classification")
    flat = make_checkpoint(tmp_path / "flat.pt", head="classification", rebalance=1.0)
    out = tmp_path / "scores.json"
    argv = [arg for c in (mse, cls, flat) for arg in ("--checkpoint", str(c))]
    argv += ["--data", str(folder), "--size", "64"]
    assert evaluate.main([*argv, "--workers", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    rows = record["metrics"]
    heads = ["resnet18 (classification)", "resnet18 (classification, λ=1)"]
    assert list(rows) == ["resnet18", *heads, "gray baseline"]
    assert all(r["n_images"] == 5 for r in rows.values())  # the truncated file fails only while decoding
    skipped = {name.split("/")[-1]: reason for name, reason in record["skipped"]}
    assert set(skipped) == {"gray.png", "empty.jpg", "truncated.jpg"}
    assert "empty" in skipped["empty.jpg"] and "decode" in skipped["truncated.jpg"]
    assert "no colour" in skipped["gray.png"] or "grayscale" in skipped["gray.png"]
    for name in ("gray.png", "empty.jpg", "truncated.jpg", "resnet18 (classification)", "gray baseline"):
        assert name in printed
    gray = rows["gray baseline"]
    assert gray["colourfulness"] < 0.01 and gray["colourfulness_true"] > 5  # 8-bit rounding of gray
    # the classification checkpoint is read as one: its annealed mean gives colour, not logits
    assert rows["resnet18 (classification)"]["colourfulness"] > 0.1
    assert rows["resnet18"]["ab_mse"] != gray["ab_mse"]
    assert record["protocol"] == {"resize": 64, "crop": 64}
    assert record["checkpoints"]["resnet18 (classification)"]["head"] == "classification"
    assert record["provenance"]["git_commit"]


def test_the_protocol_changes_the_crop_not_the_photos(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    ckpt = make_checkpoint(tmp_path / "mse.pt")
    scores = {}
    for size, resize in ((32, None), (32, 48)):
        out = tmp_path / f"s{size}-{resize}.json"
        argv = ["--checkpoint", str(ckpt), "--data", str(folder), "--size", str(size), "--workers", "0"]
        assert evaluate.main([*argv, *(["--resize", str(resize)] if resize else []), "--out", str(out)]) == 0
        scores[resize] = json.loads(out.read_text())["metrics"]["resnet18"]
    assert scores[None]["n_images"] == scores[48]["n_images"] == 5
    assert scores[None]["ab_mse"] != scores[48]["ab_mse"]  # a different crop of the same photos


def test_refuses_to_overwrite_and_reports_bad_checkpoints_in_one_line(tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos")
    ckpt = make_checkpoint(tmp_path / "mse.pt")
    out = tmp_path / "scores.json"
    out.write_text("keep me")
    assert evaluate.main(["--checkpoint", str(ckpt), "--data", str(folder), "--out", str(out)]) == 2
    assert out.read_text() == "keep me"
    with pytest.raises(SystemExit):  # a crop larger than the resized photo would pad it with black
        evaluate.main(["--checkpoint", str(ckpt), "--data", str(folder), "--size", "64", "--resize", "32"])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.arange(10).tobytes())
    capsys.readouterr()
    rc = evaluate.main(["--checkpoint", str(junk), "--data", str(folder), "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "junk.pt" in err
    assert not (tmp_path / "x.json").exists()


def test_vividness_settings_split_parts_and_weights_are_recorded(tmp_path, capsys):
    from lib import data, datasets

    (tmp_path / "pool").mkdir()
    photos = photo_folder(tmp_path / "pool" / "p")
    for f in ("gray.png", "empty.jpg", "truncated.jpg"):
        (photos / f).unlink()
    split = tmp_path / "split.tsv"
    data.write_split(tmp_path / "pool", ["p"], split, seed=0)
    part = next(p for p in data.PARTS if data.split_files(tmp_path / "pool", split, p))
    cls = make_checkpoint(tmp_path / "cls.pt", head="classification")
    out = tmp_path / "scores.json"
    argv = ["--checkpoint", str(cls), "--data", str(tmp_path / "pool"), "--split", str(split), "--part", part]
    argv += ["--size", "64", "--workers", "0", "--vividness", "0", "1", "--working-size", "32"]
    assert evaluate.main([*argv, "--out", str(out), "--show", "p/photo1.jpg"]) == 0
    record = json.loads(out.read_text())
    rows = record["metrics"]
    assert (tmp_path / "scores_photos.png").stat().st_size > 1000  # b/w | 2 settings | original
    assert json.loads((tmp_path / "scores_photos.json").read_text())["photos"] == ["p/photo1.jpg"]
    faithful, vivid = (
        rows["resnet18 (classification) (vividness 0)"],
        rows["resnet18 (classification) (vividness 1)"],
    )
    assert faithful["n_images"] == len(data.split_files(tmp_path / "pool", split, part))
    assert vivid["colourfulness"] > faithful["colourfulness"]  # T = 0.1 against the mean
    about = record["checkpoints"]["resnet18 (classification) (vividness 1)"]
    assert about["sha256"] == datasets.sha256(cls) and about["vividness"] == 1 and about["working_size"] == 32
    assert record["split"] == {"file": str(split), "sha256": datasets.sha256(split), "part": part}
    mse = make_checkpoint(tmp_path / "mse.pt")
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(mse), *argv[2:], "--out", str(tmp_path / "x.json")]) == 2
    assert "needs a classification head" in capsys.readouterr().err
