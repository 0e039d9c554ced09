"""Every command over one mixed folder of 69 kinds of files (tests/bad_inputs.py): good photos
come out right, each bad file is one line naming it and its reason, the same reason in every
command, no traceback, no input touched, outputs readable by others. And every command's bad
command lines (options, profiles, --set, a run to resume, outputs that would land on inputs): one
line naming the option or file, the documented exit code, nothing written."""

import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
from unittest.mock import ANY

import numpy as np
import pytest
import torch
from bad_inputs import encoded, make_corpus, photo
from PIL import Image

from lib import colorize, data, evaluate, images, lab, pipeline, train

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}

GRAY_RULE = "grayscale image"  # evaluate's and train's own rule, checked before decoding
SMALL_RULE = "smaller than the 32px crop"  # theirs too, at --size 32
TOO_LONG = "too elongated for the model"  # colorize's (shapes.working_shape)
# Which commands use a file of each kind (bad_inputs' docstring); every other command refuses it.
USED_BY = {
    "colour": {"colorize", "evaluate", "train"},
    "gray": {"colorize"},
    "small": {"colorize"},
    "elongated": {"evaluate", "train"},
    "strip": set(),
    "bad": set(),
}


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
    for name, args in commands.items():
        done = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, env=ONE_THREAD, timeout=300
        )
        # training names the corpus's files through its link: the same files, the same reasons
        err = done.stderr.replace(str(parts / "train"), str(src))
        for f in corpus[1]:  # a name that is not UTF-8 is printed escaped ("caf\\udce9.png")
            err = err.replace(f.encode("utf-8", "backslashreplace").decode(), f)
        out[name] = (done.returncode, refusals(err, src), err + done.stdout)
    after = snapshot(root)
    assert all(after[k] == v for k, v in before.items())  # no input, link or link target touched
    return out


def test_the_corpus_has_every_kind(corpus):
    _, kinds = corpus
    assert len(kinds) >= 65 and set(USED_BY) - {"small", "strip"} <= set(kinds.values()) <= set(USED_BY)


@pytest.mark.parametrize("command", ["colorize", "evaluate", "train"])
@pytest.mark.slow
def test_no_traceback_and_each_refusal_is_one_named_line(outcomes, corpus, command):
    _, kinds = corpus
    code, refused, text = outcomes[command]
    assert "Traceback" not in text
    assert code == (1 if command == "colorize" else 0)  # colorize: 1 = some inputs skipped
    bad = {f for f, k in kinds.items() if k == "bad"}
    usable = {f for f, k in kinds.items() if command in USED_BY[k]}
    assert set(refused) == set(kinds) - usable  # every bad file named, no good one
    assert bad <= set(refused)


@pytest.mark.slow
def test_a_bad_file_has_the_same_reason_in_every_command(outcomes, corpus):
    _, kinds = corpus
    by = {c: outcomes[c][1] for c in outcomes}
    for f, kind in kinds.items():
        if not USED_BY[kind] & {"evaluate", "train"}:  # both refuse it, with one reason
            assert by["evaluate"][f] == by["train"][f], f
        if kind in ("small", "strip"):
            assert by["evaluate"][f].startswith(SMALL_RULE), f
        if kind in ("elongated", "strip"):
            assert by["colorize"][f].startswith(TOO_LONG), f
        if kind == "bad" and not by["evaluate"][f].startswith(GRAY_RULE):  # that rule comes first for them
            assert by["colorize"][f] == by["evaluate"][f], f


@pytest.mark.slow
def test_colorize_writes_every_usable_photo_right_and_readable(outcomes, corpus):
    root, kinds = corpus
    umask = os.umask(0)
    os.umask(umask)
    expected = set()
    for f, kind in kinds.items():
        if "colorize" not in USED_BY[kind]:
            continue
        dst = root / "colour" / f
        dst = dst.with_suffix(".png") if dst.suffix == ".gif" else dst  # GIF cannot hold the colours
        assert stat.S_IMODE(dst.stat().st_mode) == 0o666 & ~umask, f
        picture = images.read_image(root / "in" / f)  # the input as every command reads it
        with Image.open(dst) as out:
            assert out.size == picture.image.size, f
            diff = np.abs(lightness(out) - lightness(picture.image.convert("RGB")))
            assert diff.mean() < (2.5 if dst.suffix in (".jpg", ".webp") else 0.6), (f, diff.mean())
        expected.add(dst)
    assert {p for p in (root / "colour").rglob("*") if not p.is_dir()} == expected  # nothing else


@pytest.mark.slow
def test_evaluate_and_train_use_exactly_the_colour_photos(outcomes, corpus):
    root, kinds = corpus
    scored = sum("evaluate" in USED_BY[k] for k in kinds.values())
    scores = json.loads((root / "scores.json").read_text())
    assert all(m["n_images"] == scored for m in scores["metrics"].values())
    record = json.loads((root / "run" / "results.json").read_text())
    d = record["data"]
    used = d["n_train"] + d["n_val"] - len(record["skipped_during_training"])
    trained = sum("train" in USED_BY[k] for k in kinds.values())
    assert used == trained + 1 and all(np.isfinite(h["val_loss"]) for h in record["history"])  # + dev's


@pytest.mark.slow
def test_a_name_that_is_not_utf8_is_named(tmp_path):
    """colorize and evaluate over photos whose names are bytes, not UTF-8 (Latin-1's "café"): the
    good one used, the bad one named, as Python writes what it cannot encode ("caf\\udce9.png").
    (lib.train stops on such a name: test_train_names_a_file_whose_name_is_not_utf8.)"""
    src = tmp_path / "in"
    src.mkdir()
    good, bad = os.fsdecode(b"photo\xff.jpg"), os.fsdecode(b"caf\xe9.png")
    (src / good).write_bytes(encoded(photo(seed=33), "JPEG", quality=92))
    (src / bad).write_bytes(b"not a PNG")
    commands = {
        "colorize": (["lib.colorize", str(src), "--out", str(tmp_path / "colour")], 1),
        "evaluate": (["lib.evaluate", "--checkpoint", "reference", "--data", str(src), "--size", "32",
                      "--workers", "0", "--out", str(tmp_path / "scores.json")], 0),
    }  # fmt: skip
    line = f"{src / bad}: skipped: {images.check_header(src / bad, 1)}"
    for name, (args, expected) in commands.items():
        done = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, env=ONE_THREAD, timeout=120
        )
        assert done.returncode == expected and "Traceback" not in done.stderr, (name, done.stderr)
        named = [x for x in done.stderr.splitlines() if ": skipped: " in x]
        assert named == [line.encode("utf-8", "backslashreplace").decode()], (name, done.stderr)
    assert (tmp_path / "colour" / good).is_file()
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["metrics"]["reference"]["n_images"] == 1 and scores["skipped"] == [[str(src / bad), ANY]]


# --- what lib mishandled until issue 21 (bad_inputs.FIXED too) -----------------------------------


def test_a_symlink_loop_is_refused_by_name(tmp_path, capsys):
    """A link to itself among the photos: named and skipped like a broken link, the others used.
    Colorize and evaluate stopped with a traceback: colorize.real_inputs called Path.resolve(),
    which raises RuntimeError ("Symlink loop from ...") on Python 3.11."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "photo.png").write_bytes(encoded(photo(seed=60), "PNG"))
    (src / "loop.png").symlink_to("loop.png")
    assert colorize.main([str(src), "--out", str(tmp_path / "colour")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{src / 'loop.png'}: skipped: {images.check_header(src / 'loop.png', 1)}"
    ]
    assert (tmp_path / "colour" / "photo.png").is_file()
    scores = tmp_path / "scores.json"
    assert evaluate.main(["--checkpoint", "reference", "--data", str(src), "--size", "32", "--workers", "0",
                          "--out", str(scores)]) == 0  # fmt: skip
    assert json.loads(scores.read_text())["skipped"] == [[str(src / "loop.png"), ANY]]


def test_train_names_a_file_whose_name_is_not_utf8(tmp_path):
    """A train part holding a file whose name is not UTF-8: the good photos used, the bad file
    skipped by name. Training stopped with "error: 'utf-8' codec can't encode character
    '\\udce9' ...: surrogates not allowed" (exit code 2), naming no file: splits.rank (and
    splits.split_part, for a folder cut by the name rule) hashed names encoded as strict UTF-8."""
    for part in ("train", "dev", "held-out"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "p.png").write_bytes(encoded(photo(seed=61), "PNG"))
    (tmp_path / "train" / os.fsdecode(b"photo\xff.png")).write_bytes(encoded(photo(seed=62), "PNG"))
    (tmp_path / "train" / os.fsdecode(b"caf\xe9.png")).write_bytes(b"not a PNG")
    loaders = data.make_loaders(str(tmp_path), 32, 8, workers=0)
    assert loaders.description["n_train"] == 2
    assert [f for f, _ in loaders.description["skipped"]] == [
        str(tmp_path / "train" / os.fsdecode(b"caf\xe9.png"))
    ]


def test_colorize_writes_a_readable_tiff_from_any_tiff(tmp_path, capsys):
    """A CMYK TIFF and a 16-bit gray TIFF colorized into TIFFs that open as RGB. Both were
    written (exit code 0) with tags that contradicted their pixels, which Pillow could not open:
    images._exif kept a TIFF input's own tags (bits per sample, photometric interpretation,
    samples per pixel, strip layout) as its EXIF, and colorize.write_image wrote them into the
    output TIFF (since 2eeaa8c), over its RGB's own."""
    tiffs = {
        "cmyk.tif": photo(seed=25).convert("CMYK"),
        "gray16.tif": Image.fromarray(np.asarray(photo(seed=1).convert("L"), np.uint16) * 257),
    }
    for name, img in tiffs.items():
        (tmp_path / name).write_bytes(encoded(img, "TIFF"))
    assert colorize.main([*(str(tmp_path / n) for n in tiffs), "--out", str(tmp_path / "colour")]) == 0
    for name in tiffs:
        with Image.open(tmp_path / "colour" / name) as out:
            out.load()
            assert out.mode == "RGB" and out.size == (48, 40), name


# --- bad command lines -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """A folder for bad command lines: in/ (a.png, a.gif, a.jpg), photos/ (train, dev and held-out
    parts of one photo each), run/ (a run whose last.pt is cut short), an existing folder, a
    profile that is a list."""
    root = tmp_path_factory.mktemp("cli")
    for folder, names in {"in": ["a.png", "a.gif", "a.jpg"], "photos/train": ["p.png"],
                          "photos/dev": ["p.png"], "photos/held-out": ["p.png"]}.items():  # fmt: skip
        (root / folder).mkdir(parents=True)
        for i, name in enumerate(names):
            fmt = {".png": "PNG", ".gif": "GIF", ".jpg": "JPEG"}[name[-4:]]
            (root / folder / name).write_bytes(encoded(photo(seed=50 + i), fmt))
    (root / "run").mkdir()
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "run": {}}, buf)
    (root / "run" / "last.pt").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "existing").mkdir()
    (root / "list.yaml").write_text("- epochs\n- 2\n")
    return root


MAINS = {"colorize": colorize.main, "evaluate": evaluate.main, "train": train.main, "pipeline": pipeline.main}
EVAL = ["--checkpoint", "reference", "--data", "{root}/in", "--out", "{root}/scores.json"]
TRAIN = ["--data", "{root}/photos", "--size", "32", "--epochs", "1", "--workers", "0", "--out", "{root}/new"]
COLORIZE = ["{root}/in/a.png", "--out", "{root}/colour"]
PIPELINE = ["--out", "{root}/pipeline", "--no-pdf"]
SHARED = "skipped: its output is another input's too ({root}/colour/a.png, also {root}/in/a"
# (command, its arguments ("{root}": the cli fixture's folder), exit code, how the lines of its
# stderr start: argparse's usage error is its usage, then the last of these)
BAD_COMMAND_LINES = [
    ("train", [*TRAIN, "--epochs", "0"], 2, ["argument --epochs: must be an int from 1 up, got '0'"]),
    *[(c, [*args, "--size", "0"], 2, ["argument --size: must be an int from 8 to 2048, got '0'"])
      for c, args in (("colorize", COLORIZE), ("evaluate", EVAL), ("train", TRAIN))],
    *[(c, [*args, "--batch-size", "-1"], 2, ["argument --batch-size: must be an int from 1 up, got '-1'"])
      for c, args in (("colorize", COLORIZE), ("evaluate", EVAL), ("train", TRAIN))],
    *[(c, [*args, "--vividness", "2"], 2, ["argument --vividness: must be a number in [0, 1], got '2'"])
      for c, args in (("colorize", COLORIZE), ("evaluate", EVAL))],
    ("evaluate", [*EVAL, "--working-size", "-64"], 2,
     ["argument --working-size: must be an int from 8 to 2048, got '-64'"]),
    *[(c, [*args, "--device", "cuda:99"], 2, ["argument --device: must be a"])  # no machine has 100 GPUs
      for c, args in (("colorize", COLORIZE), ("evaluate", EVAL), ("train", TRAIN))],
    # the pipeline's refusals: exit code 1, as a failing notebook's (lib.pipeline)
    ("pipeline", [*PIPELINE, "--set", "epochs"], 1, ["error: --set epochs: give NAME=VALUE"]),
    ("pipeline", [*PIPELINE, "--set", "lr=abc"], 1,
     ["error: --set: parameter lr must be a number above 0, got 'abc'"]),
    ("pipeline", [*PIPELINE, "--set", "colours=3"], 1,
     ["error: --set: no parameter colours; the parameters are dataset, "]),
    ("pipeline", [*PIPELINE, "--profile", "{root}/list.yaml"], 1,
     ["error: {root}/list.yaml: must map parameters to values (name: value), found list"]),
    ("train", [*TRAIN[:-1], "{root}/run", "--resume"], 2,
     ["error: {root}/run/last.pt: cannot resume: not a readable checkpoint"]),
    *[("evaluate", [*EVAL[:-1], "{root}/existing", *more], 2,
       ["error: {root}/existing: is a folder; --out names a file"]) for more in ([], ["--overwrite"])],
    ("evaluate", [*EVAL, "--show", "{root}/nowhere/missing.png"], 2,
     ["error: --show {root}/nowhere/missing.png: not a readable image (FileNotFoundError"]),
    ("colorize", ["{root}/in/a.gif", *COLORIZE], 1,  # both would give a.png: neither is written
     ["{root}/in/a.gif: " + SHARED + ".png's", "{root}/in/a.png: " + SHARED + ".gif's"]),
    ("colorize", ["{root}/in/a.png", "--out", "{root}/in", "--format", "jpg", "--overwrite"], 1,
     ["{root}/in/a.png: skipped: its output would land in an input folder ({root}/in/a.jpg)"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "command, argv, code, lines",
    BAD_COMMAND_LINES,
    ids=[f"{c}:{' '.join(a[-4:] if '--overwrite' in a else a[-2:])}" for c, a, _, _ in BAD_COMMAND_LINES],
)
def test_a_bad_command_line_is_one_line_naming_it(cli, command, argv, code, lines, capsys):
    before = snapshot(cli)
    try:
        got = MAINS[command]([a.format(root=cli) for a in argv])
    except SystemExit as e:  # argparse's usage error
        got, err = e.code, capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith("usage:") and ": error: " in err[-1]
        err = [err[-1].split(": error: ", 1)[1]]
    else:
        err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == len(lines), err
    for line, start in zip(err, lines, strict=True):
        assert line.startswith(start.format(root=cli)), (line, start)
    assert snapshot(cli) == before  # nothing written, nothing replaced (in/a.jpg above)
    for made in ("colour", "scores.json", "new", "pipeline"):
        assert not (cli / made).exists(), made
