"""`python -m lib.evaluate`: every checkpoint and the gray baseline on any folder, bad files named."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from lib import checkpoints, evaluate, models, splits


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


def test_scores_every_checkpoint_and_the_gray_baseline_and_names_bad_files(tmp_path, capsys, caplog):
    folder = photo_folder(tmp_path / "photos")
    mse = make_checkpoint(tmp_path / "mse.pt")
    cls = make_checkpoint(tmp_path / "cls.pt", head="classification")
    flat = make_checkpoint(tmp_path / "flat.pt", head="classification", rebalance=1.0)
    out = tmp_path / "scores.json"
    argv = [arg for c in (mse, cls, flat) for arg in ("--checkpoint", str(c))]
    argv += ["--data", str(folder), "--size", "64"]
    assert evaluate.main([*argv, "--workers", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out + caplog.text  # the table, and each skipped file's line
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
    from lib import datasets

    (tmp_path / "pool").mkdir()
    photos = photo_folder(tmp_path / "pool" / "p")
    for f in ("gray.png", "empty.jpg", "truncated.jpg"):
        (photos / f).unlink()
    split = tmp_path / "split.tsv"
    splits.write_split(tmp_path / "pool", ["p"], split, seed=0)
    part = next(p for p in splits.PARTS if splits.split_files(tmp_path / "pool", split, p))
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
    assert faithful["n_images"] == len(splits.split_files(tmp_path / "pool", split, part))
    assert vivid["colourfulness"] > faithful["colourfulness"]  # T = 0.1 against the mean
    about = record["checkpoints"]["resnet18 (classification) (vividness 1)"]
    assert about["sha256"] == datasets.sha256(cls) and about["vividness"] == 1 and about["working_size"] == 32
    assert record["split"] == {"file": str(split), "sha256": datasets.sha256(split), "part": part}
    mse = make_checkpoint(tmp_path / "mse.pt")
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(mse), *argv[2:], "--out", str(tmp_path / "x.json")]) == 2
    assert "needs a classification head" in capsys.readouterr().err


@pytest.fixture(scope="module")
def base_checkpoints():
    """A real checkpoint of each head (resnet18, random weights), as checkpoints.make writes them."""
    torch.manual_seed(0)
    out = {}
    for head in ("regression", "classification"):
        options = {"head": head} if head == "classification" else {}
        prior = {"ab_prior": torch.full((261,), 1 / 261).tolist()} if head == "classification" else {}
        model = models.build_model("resnet18", **options)
        out[head] = checkpoints.make(
            model, "resnet18", options, 1, 0.1, {"source": "a test", "size": 32}, **prior
        )
    return out


def first_float(sd):
    return next(k for k, v in sd.items() if v.is_floating_point())


def set_weight(value):
    def change(c):
        k = first_float(c["state_dict"])
        c["state_dict"][k] = c["state_dict"][k].clone()
        c["state_dict"][k].view(-1)[3] = value

    return change


# (case, how its weights differ from the model's, what the refusal says)
OTHER_WEIGHTS = [
    ("weight-other-shape", lambda c: c["state_dict"].update({"head.layers.0.weight": torch.zeros(3, 32, 3)}),
     "its 'head.layers.0.weight' is (3, 32, 3), the model's (2, 32, 3, 3)"),
    ("weight-missing", lambda c: c["state_dict"].pop("head.layers.0.bias"),
     "it has no weights 'head.layers.0.bias'"),
    ("weight-extra", lambda c: c["state_dict"].update({"head.extra": torch.zeros(1)}),
     "its weights 'head.extra' are not the model's"),
]  # fmt: skip

# (case, head of the checkpoint it starts from, what is wrong with it): each torch.load accepts
BAD_CHECKPOINTS = [
    ("no-model", "regression", lambda c: c.pop("model")),
    ("model-int", "regression", lambda c: c.update(model=18)),
    ("no-options", "regression", lambda c: c.pop("options")),
    ("options-list", "regression", lambda c: c.update(options=["head"])),
    ("option-tensor", "classification", lambda c: c["options"].update(rebalance=torch.tensor(0.5))),
    ("no-normalization", "regression", lambda c: c.pop("normalization")),
    ("no-head", "regression", lambda c: c.pop("head")),
    ("head-unknown", "regression", lambda c: c.update(head="colour")),
    ("head-not-the-models", "regression", lambda c: c.update(head="classification")),
    ("no-state-dict", "regression", lambda c: c.pop("state_dict")),
    ("state-dict-list", "regression", lambda c: c.update(state_dict=list(c["state_dict"].values()))),
    ("weight-a-list", "regression", lambda c: c["state_dict"].update(
        {first_float(c["state_dict"]): c["state_dict"][first_float(c["state_dict"])].tolist()})),
    ("weight-key-int", "regression", lambda c: c.update(
        state_dict=dict(enumerate(c["state_dict"].values())))),
    ("nan-weight", "regression", set_weight(float("nan"))),
    ("inf-weight", "classification", set_weight(float("inf"))),
    ("no-epoch", "regression", lambda c: c.pop("epoch")),
    ("epoch-negative", "regression", lambda c: c.update(epoch=-1)),
    ("epoch-str", "regression", lambda c: c.update(epoch="3")),
    ("epoch-float", "regression", lambda c: c.update(epoch=1.5)),
    ("epoch-tensor", "regression", lambda c: c.update(epoch=torch.zeros(3, 3))),  # a repr of 3 lines
    ("no-val-loss", "regression", lambda c: c.pop("val_loss")),
    ("val-loss-str", "regression", lambda c: c.update(val_loss="low")),
    ("no-data", "regression", lambda c: c.pop("data")),
    ("data-str", "regression", lambda c: c.update(data="photos/")),
    ("data-size-negative", "regression", lambda c: c["data"].update(size=-1)),
    ("data-size-str", "regression", lambda c: c["data"].update(size="abc")),
    ("data-size-float", "regression", lambda c: c["data"].update(size=32.5)),
    ("data-source-tensor", "regression", lambda c: c["data"].update(source=torch.zeros(2))),
    ("working-size-zero", "regression", lambda c: c.update(working_size=0)),
    ("working-size-str", "regression", lambda c: c.update(working_size="128")),
    ("working-size-7", "regression", lambda c: c.update(working_size=7)),  # below shapes.MIN_WORKING_SIZE
    ("working-size-huge", "regression", lambda c: c.update(working_size=2049)),  # above its MAX
    ("vividness-above-1", "classification", lambda c: c.update(vividness=1.5)),
    ("vividness-str", "classification", lambda c: c.update(vividness="vivid")),
    ("vividness-regression", "regression", lambda c: c.update(vividness=0.5)),
    ("vividness-without-prior", "classification", lambda c: (c.pop("ab_prior"), c.update(vividness=0.5))),
    ("ab-prior-short", "classification", lambda c: c.update(ab_prior=c["ab_prior"][:100])),
    ("ab-prior-negative", "classification", lambda c: c["ab_prior"].__setitem__(0, -0.5)),
    ("ab-prior-nan", "classification", lambda c: c["ab_prior"].__setitem__(0, float("nan"))),
    ("ab-prior-str", "classification", lambda c: c.update(ab_prior="uniform")),
    ("ab-prior-zeros", "classification", lambda c: c.update(ab_prior=[0.0] * 261)),
    *((case, "regression", spoil) for case, spoil, _ in OTHER_WEIGHTS),
]  # fmt: skip


def test_a_checkpoint_of_other_weights_names_the_first_that_differs(base_checkpoints, tmp_path):
    """Not PyTorch's "Error(s) in loading state_dict" (many lines), but the first weight by name."""
    for case, spoil, says in OTHER_WEIGHTS:
        ckpt = copy.deepcopy(base_checkpoints["regression"])
        spoil(ckpt)
        torch.save(ckpt, tmp_path / f"{case}.pt")
        with pytest.raises(ValueError) as refused:
            checkpoints.load(tmp_path / f"{case}.pt")
        assert (
            str(refused.value)
            == f"{tmp_path / case}.pt: does not fit this version's 'resnet18' model: {says}"
        )


@pytest.mark.parametrize("case, head, spoil", BAD_CHECKPOINTS, ids=[c[0] for c in BAD_CHECKPOINTS])
def test_a_malformed_checkpoint_is_refused_in_one_line_by_evaluate_and_colorize(
    base_checkpoints, tmp_path, capsys, case, head, spoil
):
    from lib import colorize

    ckpt = copy.deepcopy(base_checkpoints[head])
    spoil(ckpt)
    path = tmp_path / f"{case}.pt"
    torch.save(ckpt, path)
    torch.load(path, weights_only=True)  # a file torch accepts: only our checks can refuse it
    (tmp_path / "photos").mkdir()
    Image.fromarray(skdata.astronaut()).resize((48, 40)).save(tmp_path / "photos" / "a.png")
    out = tmp_path / "scores.json"
    argv = ["--checkpoint", str(path), "--data", str(tmp_path / "photos"), "--size", "32", "--workers", "0"]
    capsys.readouterr()
    assert evaluate.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: ") and "Traceback" not in err[0]
    assert not out.exists()
    assert (
        colorize.main([str(tmp_path / "photos"), "--checkpoint", str(path), "--out", str(tmp_path / "c")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"colorize: error: {path}: ")
    assert not (tmp_path / "c").exists()


def test_a_checkpoint_without_data_description_is_scored(base_checkpoints, tmp_path):
    """data = None is allowed (nothing is known of the training data): scored, trained_on None."""
    ckpt = copy.deepcopy(base_checkpoints["regression"]) | {"data": None}
    path = tmp_path / "no-data.pt"
    torch.save(ckpt, path)
    model, loaded = checkpoints.load(path)
    assert loaded["data"] is None and model.training_size is None
    folder = photo_folder(tmp_path / "photos")
    out = tmp_path / "scores.json"
    argv = ["--checkpoint", str(path), "--data", str(folder), "--size", "32", "--workers", "0"]
    assert evaluate.main([*argv, "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["checkpoints"]["resnet18"]["trained_on"] is None
    assert record["metrics"]["resnet18"]["n_images"] == 5


def test_a_model_whose_colours_are_nan_is_refused_not_scored(base_checkpoints, tmp_path, capsys):
    """Finite but huge weights overflow to NaN colours: an error naming the file, no results."""
    ckpt = copy.deepcopy(base_checkpoints["regression"])
    ckpt["state_dict"] = {
        k: v * 1e8 if v.is_floating_point() and k.endswith("weight") and v.dim() == 4 else v
        for k, v in ckpt["state_dict"].items()
    }
    path = tmp_path / "overflow.pt"
    torch.save(ckpt, path)
    checkpoints.load(path)  # finite weights: a loadable checkpoint
    folder = photo_folder(tmp_path / "photos")
    for f in ("gray.png", "empty.jpg", "truncated.jpg"):  # their log lines would go to stderr too
        (folder / f).unlink()
    out = tmp_path / "scores.json"
    argv = ["--checkpoint", str(path), "--data", str(folder), "--size", "32", "--workers", "0"]
    capsys.readouterr()
    assert evaluate.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: ") and "NaN" in err[0]
    assert not out.exists()


def test_a_folder_where_no_photo_decodes_is_one_error_line(tmp_path, capsys, caplog):
    """Files that pass the header check but fail to decode, and nothing else: exit 2, each file
    named, one error line, no traceback, no results file."""
    photos = tmp_path / "photos"
    photos.mkdir()
    good = io_jpeg()
    (photos / "cut.jpg").write_bytes(good[: len(good) // 3])
    argv = ["--checkpoint", "reference", "--data", str(photos), "--workers", "0", "--size", "64"]
    assert evaluate.main([*argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"error: {photos}: no photo could be scored (1 skipped)" in err
    named = (err + caplog.text).splitlines()
    assert sum(str(photos / "cut.jpg") in line for line in named) == 1
    assert not (tmp_path / "x.json").exists()


def io_jpeg() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()).resize((200, 200)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_out_never_replaces_a_photo_it_scores(tmp_path, capsys):
    photos = photo_folder(tmp_path / "photos")
    before = (photos / "photo0.jpg").read_bytes()
    argv = ["--checkpoint", "reference", "--data", str(photos), "--workers", "0", "--overwrite"]
    for out in (photos / "photo0.jpg", photos / "photo0_photos.png"):
        if out.suffix == ".png":
            Image.fromarray(skdata.coffee()).save(out)
        assert evaluate.main([*argv, "--out", str(out)]) == 2
        assert "its output would replace an input" in capsys.readouterr().err
    assert (photos / "photo0.jpg").read_bytes() == before


def test_the_show_files_are_never_replaced_without_overwrite(tmp_path, capsys):
    """--show writes <out>_photos.png and its .json: like --out, an existing one is refused before
    any work (nothing loaded, scored or written), in one line naming it; --overwrite replaces all."""
    folder = photo_folder(tmp_path / "photos")
    ckpt = make_checkpoint(tmp_path / "mse.pt")
    d = tmp_path / "d"
    d.mkdir()
    argv = ["--checkpoint", str(ckpt), "--data", str(folder), "--size", "32", "--workers", "0"]
    argv += ["--show", "photo1.jpg", "--out", str(d / "y.json")]
    for name in ("y_photos.png", "y_photos.json"):
        (d / name).write_text("mine")
        capsys.readouterr()
        assert evaluate.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.splitlines() == [
            f"error: {d / name}: exists; choose another --out or add --overwrite"
        ]
        assert sorted(p.name for p in d.iterdir()) == [name] and (d / name).read_text() == "mine"
        (d / name).unlink()
    (d / "y_photos.png").write_text("mine")
    assert evaluate.main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in d.iterdir()) == ["y.json", "y_photos.json", "y_photos.png"]
    assert Image.open(d / "y_photos.png").size[0] > 100


def test_no_output_lands_among_the_photos_it_reads(tmp_path, capsys):
    """The --data folder and the folder of a --show photo are input folders, as for colorize: no
    results file or figure lands in them (a figure there would be scored as a photo next time),
    --overwrite or not; refused before any work, in one line."""
    folder = photo_folder(tmp_path / "photos")
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    Image.fromarray(skdata.chelsea()).save(elsewhere / "cat.jpg")
    ckpt = make_checkpoint(tmp_path / "mse.pt")
    argv = ["--checkpoint", str(ckpt), "--data", str(folder), "--size", "32", "--workers", "0", "--overwrite"]
    for out, show in ((folder / "scores.json", []), (folder / "sub" / "s.json", []),
                      (elsewhere / "s.json", ["--show", str(elsewhere / "cat.jpg")])):  # fmt: skip
        capsys.readouterr()
        assert evaluate.main([*argv, *show, "--out", str(out)]) == 2
        captured = capsys.readouterr()
        err = captured.err.splitlines()
        assert len(err) == 1 and "its output would land in an input folder" in err[0], err
        assert captured.out == "" and not out.exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["cat.jpg"]


def test_a_show_photo_that_cannot_be_drawn_is_refused_before_any_work(tmp_path, capsys):
    """A --show photo is drawn at full size with each model's working shape: one that cannot be
    decoded, or is beyond 16:1 (shapes.MAX_WORKING_ASPECT), is refused in one line naming it
    before anything is scored or written, not with a traceback after the results."""
    folder = photo_folder(tmp_path / "photos")
    (tmp_path / "mine").mkdir()
    Image.fromarray(skdata.astronaut()).resize((600, 20)).save(tmp_path / "mine" / "strip.jpg")
    ckpt = make_checkpoint(tmp_path / "mse.pt")
    argv = ["--checkpoint", str(ckpt), "--data", str(folder), "--size", "32", "--workers", "0"]
    argv += ["--working-size", "32", "--out", str(tmp_path / "s.json")]
    for show, reason in ((tmp_path / "mine" / "strip.jpg", "too elongated for the model: 600x20 is 30:1"),
                         (folder / "truncated.jpg", "cannot decode")):  # fmt: skip
        capsys.readouterr()
        assert evaluate.main([*argv, "--show", str(show)]) == 2
        captured = capsys.readouterr()
        err = captured.err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --show {show}: {reason}"), err
        assert "Traceback" not in captured.err and not (tmp_path / "s.json").exists()
