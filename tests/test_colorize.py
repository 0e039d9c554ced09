"""Colorizing your own photos: full resolution, every input mode, never overwriting, exit codes."""

import hashlib
import importlib.resources
import inspect
import io
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import png16, png_claiming
from PIL import Image, ImageCms

from lib import checkpoints, colorize, data, images, lab, shapes, train


def skimage_photo(name: str) -> Path:
    """A photo that ships inside scikit-image's wheel (no download)."""
    return Path(str(importlib.resources.files("skimage.data").joinpath(name)))


@pytest.fixture(scope="module")
def checkpoint(tiny_loaders, tmp_path_factory):
    """A checkpoint the training loop really wrote (one epoch of ResNet18 at 32 px)."""
    out = tmp_path_factory.mktemp("ckpt")
    _, run = train.fit(train.Settings("resnet18", epochs=1, progress=False), tiny_loaders, out)
    return checkpoints.best(run)


@pytest.fixture(scope="module")
def model(checkpoint):
    return checkpoints.load(checkpoint)[0]


def lightness(img: Image.Image) -> np.ndarray:
    x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)[None]
    return lab.rgb_to_lab(x)[0, 0].numpy()


def photo(w, h, seed=0) -> Image.Image:
    """A colourful test image: gradients plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 0 * x], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("size", [(1, 1), (16, 1), (1, 16), (17, 33), (144, 9), (123, 77)])
def test_output_has_the_input_size_and_its_lightness(model, size):
    img = photo(*size).convert("L")
    out = colorize.colorize_image(img, model, size=32)
    assert out.size == img.size and out.mode == "RGB"
    diff = np.abs(lightness(out) - lightness(img))
    assert diff.max() <= 1.0 and diff.mean() <= 0.3  # equal to within 8-bit rounding


@pytest.mark.parametrize("size", [(17, 1), (1, 300), (640, 9), (3000, 4)])
def test_a_photo_beyond_16_to_1_is_refused_with_its_reason(model, size):
    """Beyond shapes.MAX_WORKING_ASPECT the model would see a strip (a 4 x 3000 one at 128 x
    96,000): refused, by the shape computation every caller shares, at any working size."""
    for working in (8, 32):
        with pytest.raises(
            shapes.UnworkableShape, match=f"^too elongated for the model: {size[0]}x{size[1]}"
        ):
            colorize.colorize_image(photo(*size).convert("L"), model, size=working)


def test_out_of_gamut_colours_keep_lightness_and_hue():
    g = torch.Generator().manual_seed(0)
    L = torch.rand(1, 1, 60, 60, generator=g) * 100
    x = torch.cat((L, (torch.rand(1, 2, 60, 60, generator=g) - 0.5) * 250), 1)
    rgb8 = lab.lab_to_rgb8(x)
    clipped = lab.to_uint8(lab.lab_to_rgb(x))
    shown, shown_clipped = lab.rgb_to_lab(rgb8), lab.rgb_to_lab(clipped)
    assert (shown_clipped[:, 0] - L[:, 0]).abs().max() > 10  # clipping moves L* a lot
    assert (shown[:, 0] - L[:, 0]).abs().max() < 1.0  # desaturating does not (8-bit rounding)
    # in-gamut colours: exactly what lab_to_rgb gives (to 8-bit rounding)
    inside = (lab.rgb_to_lab(lab.lab_to_rgb(x)) - x).abs().amax(1) < 1e-2
    assert inside.float().mean() > 0.05
    diff = (rgb8.int() - clipped.int()).abs().amax(1)[inside]
    assert diff.max() <= 1
    # out of gamut: less chroma, same hue
    out = ~inside & ((shown[:, 1:] ** 2).sum(1) > 25)
    hue = torch.atan2(x[:, 2], x[:, 1])[out]
    hue_shown = torch.atan2(shown[:, 2], shown[:, 1])[out]
    assert (torch.remainder(hue - hue_shown + torch.pi, 2 * torch.pi) - torch.pi).abs().median() < 0.05
    assert (shown[:, 1:].norm(dim=1)[out] <= x[:, 1:].norm(dim=1)[out] + 0.5).all()  # chroma


def test_every_input_mode(model):
    rgba = photo(40, 30).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (30, 1))))
    out = colorize.colorize_image(rgba, model, 32)
    assert out.mode == "RGBA" and np.array_equal(
        np.array(out.getchannel("A")), np.array(rgba.getchannel("A"))
    )
    la = rgba.convert("LA")
    out = colorize.colorize_image(la, model, 32)
    assert out.mode == "RGBA" and np.array_equal(np.array(out.getchannel("A")), np.array(la.getchannel("A")))
    for img in [photo(40, 30).convert("P"), photo(40, 30).convert("CMYK"), photo(40, 30).convert("L")]:
        out = colorize.colorize_image(img, model, 32)
        assert out.size == (40, 30) and out.mode == "RGB"
        assert np.abs(lightness(out) - lightness(img)).max() <= 1.0
    gray16 = np.random.default_rng(0).integers(0, 65535, (30, 40, 1), dtype=np.uint16)
    out = colorize.colorize_image(Image.open(io.BytesIO(png16(gray16))), model, 32)
    expected = Image.fromarray((gray16[..., 0] >> 8).astype(np.uint8), "L")
    assert np.abs(lightness(out) - lightness(expected)).max() <= 1.0  # the 8 high bits
    rgb16 = np.random.default_rng(1).integers(0, 65535, (30, 40, 3), dtype=np.uint16)
    assert colorize.colorize_image(Image.open(io.BytesIO(png16(rgb16))), model, 32).size == (40, 30)


def test_exif_orientation_is_applied(model, tmp_path):
    img = photo(48, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    out = colorize.colorize_image(Image.open(tmp_path / "r.jpg"), model, 32)
    assert out.size == (32, 48)


def sha(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def make_mixed_folder(root: Path) -> dict[str, str]:
    """Good and broken files; returns {name: expected outcome}."""
    (root / "sub").mkdir(parents=True)
    photo(64, 48, 1).convert("L").save(root / "gray.jpg")
    photo(30, 200, 2).save(root / "colour.png")
    photo(33, 17, 3).convert("RGBA").save(root / "sub" / "alpha.png")
    photo(20, 20, 4).convert("L").save(root / "sub" / "small.bmp")
    (root / "broken.jpg").write_bytes(os.urandom(500))
    (root / "notes.png").write_text("not an image")
    (root / "empty.jpg").write_bytes(b"")
    good = io.BytesIO()
    photo(64, 64, 5).save(good, "JPEG")
    (root / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    bomb = bytearray(png16(np.zeros((1, 1, 1), dtype=np.uint16)))
    bomb[16:24] = struct.pack(">II", 30000, 30000)  # IHDR claims 900 megapixels
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])) & 0xFFFFFFFF)
    (root / "bomb.png").write_bytes(bytes(bomb))
    return {
        "gray.jpg": "written", "colour.png": "written", "sub/alpha.png": "written",
        "sub/small.bmp": "written", "broken.jpg": "not a readable image", "notes.png": "not a readable image",
        "empty.jpg": "empty file", "truncated.jpg": "cannot decode", "bomb.png": "too large",
    }  # fmt: skip


def test_a_mixed_folder_end_to_end(checkpoint, tmp_path, capsys):
    src = tmp_path / "photos"
    expected = make_mixed_folder(src)
    before = {p: sha(p) for p in src.rglob("*") if p.is_file()}
    assert colorize.main([str(src), "--checkpoint", checkpoint]) == 1  # some were skipped
    out = tmp_path / "photos-colorized"
    captured = capsys.readouterr()
    for name, outcome in expected.items():
        if outcome == "written":
            with Image.open(src / name) as a, Image.open(out / name) as b:
                assert b.size == a.size and b.format == a.format
        else:
            assert not (out / name).exists()
            lines = [x for x in captured.err.splitlines() if x.startswith(str(src / name))]
            assert len(lines) == 1 and outcome in lines[0], (name, lines)
    assert Image.open(out / "sub" / "alpha.png").mode == "RGBA"
    summary = captured.out.strip().splitlines()[-1]
    assert summary.startswith(f"colorize: 4 written to {out}, 5 skipped (")
    assert "0 failed" in summary and "2 input(s) already in colour" in summary  # colour.png, alpha.png
    assert before == {p: sha(p) for p in src.rglob("*") if p.is_file()}  # inputs untouched
    assert not list(out.rglob(".*.tmp"))


def test_never_overwrite_unless_asked(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    photo(40, 40).convert("L").save(src / "a.png")
    photo(50, 30).convert("L").save(src / "b.jpg")
    assert colorize.main([str(src), "--checkpoint", checkpoint]) == 0
    out = tmp_path / "in-colorized"
    first = {p: sha(p) for p in out.rglob("*.*")}
    capsys.readouterr()
    assert colorize.main([str(src), "--checkpoint", checkpoint]) == 1
    assert "2 skipped (2 output exists)" in capsys.readouterr().out
    assert first == {p: sha(p) for p in out.rglob("*.*")}
    os.utime(out / "a.png", ns=(1, 1))
    assert colorize.main([str(src), "--checkpoint", checkpoint, "--overwrite"]) == 0
    assert (out / "a.png").stat().st_mtime_ns != 1


def test_output_options(checkpoint, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    photo(40, 30).convert("L").save(src / "a.jpg")
    photo(40, 30).convert("L").save(src / "b.png")
    out = tmp_path / "o"
    args = [str(src / "*.jpg"), "--checkpoint", checkpoint, "--out", str(out)]
    assert (
        colorize.main([*args, "--format", "png", "--side-by-side", "--size", "16", "--batch-size", "1"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # the glob took the jpg only
    with Image.open(out / "a.png") as im:
        assert im.size == (80, 30) and im.format == "PNG"


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_metadata_is_kept_in_every_format_that_holds_it(checkpoint, tmp_path, suffix):
    """EXIF and an sRGB profile travel to the output; TIFF outputs used to drop the EXIF."""
    src = tmp_path / "in"
    src.mkdir()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x013B] = "Ada Lovelace"  # Artist
    photo(40, 30).save(src / f"a{suffix}", icc_profile=icc, exif=exif.tobytes())
    assert colorize.main([str(src), "--checkpoint", checkpoint]) == 0
    with Image.open(tmp_path / "in-colorized" / f"a{suffix}") as im:
        assert im.info.get("icc_profile") == icc and im.getexif()[0x013B] == "Ada Lovelace"
        assert im.size == (40, 30)


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such checkpoint"),
    (lambda d: (d / "c.pt").write_bytes(b"junk" * 10), "not a readable checkpoint"),
    (lambda d: torch.save({"weights": torch.zeros(2)}, d / "c.pt"), "not a bw-colorization-checkpoint"),
])  # fmt: skip
def test_unusable_checkpoints_give_one_line_and_exit_2(tmp_path, capsys, setup, message):
    setup(tmp_path)
    photo(8, 8).save(tmp_path / "x.png")
    assert colorize.main([str(tmp_path / "x.png"), "--checkpoint", str(tmp_path / "c.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("colorize: error:") and message in err[0]


def test_usage_errors_exit_2(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    photo(8, 8).save(src / "x.png")
    assert colorize.main([str(src), "--checkpoint", checkpoint, "--out", str(src)]) == 2
    assert colorize.main([str(src), "--checkpoint", checkpoint, "--out", str(src / "o")]) == 2
    assert colorize.main([str(tmp_path / "nothing*"), "--checkpoint", checkpoint]) == 2
    assert colorize.main([str(src), "--checkpoint", checkpoint, "--format", "gif"]) == 2
    assert not (src / "o").exists() and sorted(p.name for p in src.iterdir()) == ["x.png"]


def test_memory_does_not_grow_with_the_number_of_images(model, tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    for i in range(240):
        photo(96, 64, i).convert("L").save(src / f"{i:03d}.png")
    files, _ = colorize.expand_inputs([str(src)])
    out, plan = colorize.plan_outputs(files, tmp_path / "out", None)

    def rss():
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    colorize.colorize_files(plan[:40], model, 32, 8, side=False, overwrite=False)
    start = rss()
    tally = colorize.colorize_files(plan[40:], model, 32, 8, side=False, overwrite=False)
    assert tally["written"] == 200
    assert rss() - start < 30e6


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "colorize"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--checkpoint" in done.stdout and "--side-by-side" in done.stdout


def test_the_model_sees_each_photo_with_its_own_aspect_ratio(model, checkpoint, tmp_path):
    """Not squeezed into a square: a 16:10 landscape is seen as 16:10 (in multiples of 8), resized
    once to that shape, and a batch of mixed shapes is predicted shape by shape, each output at
    its input's size."""
    seen = []
    hook = model.model.encoder.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    try:
        out = colorize.colorize_image(photo(160, 100).convert("L"), model, size=32)
        assert out.size == (160, 100) and seen == [(1, 1, 32, 48)]  # 100:160 at a shorter side of 32
        # resized once: a 1500 x 1000 photo at --size 100 is seen at 152 x 96 (shapes.working_shape,
        # 1.58:1 as the photo's 1.5:1 allows in multiples of 8), not resized again to 160 x 96
        seen.clear()
        colorize.colorize_image(photo(1500, 1000).convert("L"), model, size=100)
        assert seen == [(1, 1, 96, 152)] and shapes.working_shape(1000, 1500, 100) == (96, 152)
        src = tmp_path / "mixed"
        src.mkdir()
        for i, (w, h) in enumerate([(160, 100), (100, 160), (64, 64), (160, 100)]):
            photo(w, h, i).convert("L").save(src / f"{i}.png")
        files, _ = colorize.expand_inputs([str(src)])
        _, plan = colorize.plan_outputs(files, tmp_path / "out", None)
        seen.clear()
        tally = colorize.colorize_files(plan, model, 32, 4, side=False, overwrite=False)
        assert tally["written"] == 4 and sorted(seen) == [(1, 1, 32, 32), (1, 1, 48, 32), (2, 1, 32, 48)]
        for src_file, dst in plan:
            assert Image.open(dst).size == Image.open(src_file).size
    finally:
        hook.remove()


def test_vividness_is_refused_for_a_regression_checkpoint(checkpoint, tmp_path, capsys):
    photo(8, 8).save(tmp_path / "x.png")
    assert colorize.main([str(tmp_path / "x.png"), "--checkpoint", checkpoint, "--vividness", "0.5"]) == 2
    with pytest.raises(SystemExit):  # out of range: refused as argparse reads it (lib.options)
        colorize.main([str(tmp_path / "x.png"), "--checkpoint", checkpoint, "--vividness", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        "needs a classification head" in err[0]
        and "--vividness: must be a number in [0, 1], got '2'" in err[-1]
    )
    assert not (tmp_path / "x-colorized").exists()


def test_an_output_never_lands_on_or_beside_an_input_through_a_link(checkpoint, tmp_path, capsys):
    """An output folder holding a link into the inputs: with --overwrite the colorized file would
    replace the input, with --format it would land in the input folder. Both are refused by the
    one output check; the other photos are written."""
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    photo(40, 30).convert("L").save(src / "sub" / "x.png")
    photo(30, 40).convert("L").save(src / "y.png")
    out.mkdir()
    (out / "sub").symlink_to(src / "sub", target_is_directory=True)
    before = {p: sha(p) for p in src.rglob("*") if p.is_file()}
    for extra in (["--overwrite"], ["--format", "jpg"]):
        assert colorize.main([str(src), "--checkpoint", checkpoint, "--out", str(out), *extra]) == 1
        err = capsys.readouterr().err
        assert f"{src / 'sub' / 'x.png'}: skipped: its output would" in err and "Traceback" not in err
        assert before == {p: sha(p) for p in src.rglob("*") if p.is_file()}  # inputs untouched
    assert sorted(p.name for p in (src / "sub").iterdir()) == ["x.png"]  # nothing written beside it
    assert (out / "y.png").is_file() and (out / "y.jpg").is_file()


def test_two_inputs_on_one_output_are_both_refused_by_name_before_anything_is_written(
    checkpoint, tmp_path, capsys
):
    """a.gif and a.png both become a.png; x.png, x.jpg and x.bmp all become x.jpg with --format
    jpg; B.gif and b.PNG become B.png and b.PNG, one file where case is not told apart (macOS,
    Windows). Every input of a shared output is skipped, naming the output and the other input,
    with --overwrite or not; no file is written on that name; the others are written."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i, name in enumerate(["a.gif", "a.png", "B.gif", "b.PNG", "c.png"]):
        photo(30, 20, i).convert("P" if name.endswith(".gif") else "L").save(src / name)
    shared = {"a.gif": ("a.png", "a.png"), "a.png": ("a.png", "a.gif"), "B.gif": ("B.png", "b.PNG")}
    shared |= {"b.PNG": ("b.PNG", "B.gif")}
    for extra in ([], ["--overwrite"]):
        assert colorize.main([str(src), "--checkpoint", checkpoint, "--out", str(out), *extra]) == 1
        captured = capsys.readouterr()
        for name, (output, other) in shared.items():
            lines = [x for x in captured.err.splitlines() if x.startswith(f"{src / name}: skipped: ")]
            assert len(lines) == 1, (name, captured.err)
            assert f"its output is another input's too ({out / output}, also {src / other}'s" in lines[0]
        assert sorted(p.name for p in out.iterdir()) == ["c.png"]
        assert f"1 written to {out}, 4 skipped (4 its output is another input's too)" in captured.out
    twice = tmp_path / "twice"  # one input given twice (its folder, and itself) is planned once
    assert colorize.main([str(src), str(src / "c.png"), "--checkpoint", checkpoint, "--out", str(twice)]) == 1
    captured = capsys.readouterr()
    assert "c.png" not in captured.err and f"1 written to {twice}, 4 skipped" in captured.out
    for name in ("x.png", "x.jpg", "x.bmp", "y.png"):
        photo(30, 20).convert("L").save(tmp_path / name)
    jpg = tmp_path / "jpg"
    argv = [*(str(tmp_path / n) for n in ("x.png", "x.jpg", "x.bmp", "y.png")), "--out", str(jpg)]
    assert colorize.main([*argv, "--checkpoint", checkpoint, "--format", "jpg", "--overwrite"]) == 1
    captured = capsys.readouterr()
    for name in ("x.png", "x.jpg", "x.bmp"):
        lines = [x for x in captured.err.splitlines() if x.startswith(f"{tmp_path / name}: skipped: ")]
        assert len(lines) == 1 and f"({jpg / 'x.jpg'}, also " in lines[0], (name, captured.err)
    assert sorted(p.name for p in jpg.iterdir()) == ["y.jpg"] and "1 written" in captured.out


def test_no_output_lands_in_the_folder_of_an_input_given_as_a_file(checkpoint, tmp_path, capsys):
    """in/a.png --out in --format jpg would write in/a.jpg, the user's own photo (not an input):
    refused, --overwrite or not. A new folder below it is not an input's folder."""
    src = tmp_path / "in"
    src.mkdir()
    photo(40, 30).convert("L").save(src / "a.png")
    photo(40, 30, 1).save(src / "a.jpg")  # the user's own, not given
    before = {p: sha(p) for p in src.iterdir()}
    for extra in ([], ["--overwrite"]):
        argv = [str(src / "a.png"), "--checkpoint", checkpoint, "--out", str(src), "--format", "jpg"]
        assert colorize.main([*argv, *extra]) == 1
        err = capsys.readouterr().err.splitlines()
        assert err == [
            f"{src / 'a.png'}: skipped: its output would land in an input folder ({src / 'a.jpg'})"
        ]
        assert before == {p: sha(p) for p in src.iterdir()}
    argv = [str(src / "a.png"), "--checkpoint", checkpoint, "--out", str(src / "colour"), "--format", "jpg"]
    assert colorize.main(argv) == 0
    with Image.open(src / "colour" / "a.jpg") as im:
        assert im.size == (40, 30)


def test_a_model_call_never_sees_more_than_the_working_pixel_cap(model):
    """Photos of one working shape share a model call, --batch-size of them at most, and never more
    working pixels than the cap (shapes.MAX_WORKING_PIXELS by default): memory bounded by the cap,
    not by the batch size. The split leaves each photo's colours as they were."""
    assert inspect.signature(colorize.predict_by_shape).parameters["max_pixels"].default == (
        shapes.MAX_WORKING_PIXELS
    )
    seen = []
    hook = model.model.encoder.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    try:
        ls = [torch.rand(1, 1, 32, 48, generator=torch.Generator().manual_seed(i)) for i in range(5)]
        ls.insert(2, torch.rand(1, 1, 48, 32))
        split = colorize.predict_by_shape(model, ls, None, max_pixels=2 * 32 * 48)
        assert seen == [(2, 1, 32, 48), (2, 1, 32, 48), (1, 1, 32, 48), (1, 1, 48, 32)]
        seen.clear()
        whole = colorize.predict_by_shape(model, ls, None)
        assert seen == [(5, 1, 32, 48), (1, 1, 48, 32)]
        for a, b, l in zip(split, whole, ls, strict=True):
            assert a.shape == (2, *l.shape[-2:]) and torch.allclose(a, b, atol=1e-5)
    finally:
        hook.remove()


@pytest.mark.slow
def test_thin_and_huge_photos_are_skipped_before_they_take_memory(tmp_path):
    """Under a 6 GB address-space limit (importing torch takes some 3.8 of it), the reference model
    at --size 640: strips beyond 16:1 (a 3000 x 4 one would be seen at 640 x 480,000, a 17:1 one),
    a 11:1 photo that would be seen at 7040 x 640 (4.5 megapixels, some 3.5 GB), and a header
    claiming 900 megapixels are each skipped with one line, before any large tensor; the good
    photos beside them are all written, at their own sizes."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    good = {"a.png": (96, 64), "b.jpg": (64, 96), "c.png": (120, 120)}
    for i, (name, (w, h)) in enumerate(good.items()):
        photo(w, h, i).convert("L").save(src / name)
    refused = {"strip.png": "too elongated", "tall.png": "too elongated", "panorama.png": "too elongated"}
    refused |= {"wide.png": "too large for the model", "bomb.png": "too large to decode safely"}
    for name, (w, h) in {"strip.png": (3000, 4), "tall.png": (6, 2000), "panorama.png": (1700, 100)}.items():
        photo(w, h).convert("L").save(src / name)
    photo(1100, 100).convert("L").save(src / "wide.png")
    (src / "bomb.png").write_bytes(png_claiming(30000, 30000))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    done = subprocess.run(
        [sys.executable, "-m", "lib.colorize", str(src), "--out", str(out), "--size", "640"],
        capture_output=True, text=True, preexec_fn=limit, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    skipped = dict(line.split(": skipped: ", 1) for line in done.stderr.splitlines() if ": skipped: " in line)
    assert set(skipped) == {str(src / name) for name in refused}
    for name, reason in refused.items():
        assert skipped[str(src / name)].startswith(reason), (name, skipped[str(src / name)])
    assert sorted(p.name for p in out.iterdir()) == sorted(good)
    for name, size in good.items():
        with Image.open(out / name) as im:
            assert im.size == size
    assert "3 written" in done.stdout and "5 skipped" in done.stdout


def test_links_in_the_inputs_are_read_and_named_as_links(checkpoint, tmp_path, capsys):
    """A folder of links (to photos elsewhere) works, outputs named after the links; a broken
    link is one named skip; neither stops the run."""
    elsewhere, src = tmp_path / "elsewhere", tmp_path / "in"
    elsewhere.mkdir()
    src.mkdir()
    photo(40, 30).convert("L").save(elsewhere / "real.png")
    (src / "linked.png").symlink_to(elsewhere / "real.png")
    (src / "broken.png").symlink_to(tmp_path / "gone.png")
    photo(30, 40).convert("L").save(src / "plain.png")
    assert colorize.main([str(src), "--checkpoint", checkpoint]) == 1
    captured = capsys.readouterr()
    out = tmp_path / "in-colorized"
    assert sorted(p.name for p in out.iterdir()) == ["linked.png", "plain.png"]
    with Image.open(out / "linked.png") as im:
        assert im.size == (40, 30)
    lines = [x for x in captured.err.splitlines() if "broken.png" in x]
    assert len(lines) == 1 and "skipped" in lines[0] and "Traceback" not in captured.err


def test_out_naming_a_file_is_a_usage_error(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    photo(40, 30).convert("L").save(src / "x.png")
    (tmp_path / "out.png").write_bytes(b"mine")
    for extra in ([], ["--overwrite"]):
        assert (
            colorize.main([str(src), "--checkpoint", checkpoint, "--out", str(tmp_path / "out.png"), *extra])
            == 2
        )
        assert "is a file; give a folder" in capsys.readouterr().err
    assert (tmp_path / "out.png").read_bytes() == b"mine"


# --- hostile files: colorize decodes them as training and evaluation do ---------------------------


def jpeg_with_exif(path: Path, img: Image.Image, ifd_entries) -> None:
    """A JPEG whose APP1 EXIF block is written by hand, so that a tag can have the wrong type."""
    tiff = b"MM" + struct.pack(">HI", 42, 8) + struct.pack(">H", len(ifd_entries))
    for tag, kind, count, value in ifd_entries:
        tiff += struct.pack(">HHI", tag, kind, count) + value
    payload = b"Exif\x00\x00" + tiff + b"\0\0\0\0"
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    jpeg = buf.getvalue()
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:])


def adobe_rgb_profile() -> bytes:
    """The Adobe RGB (1998) profile of a real photo that ships with scikit-image (the rocket)."""
    with Image.open(skimage_photo("rocket.jpg")) as im:
        return im.info["icc_profile"]


def make_hostile_folder(root: Path) -> dict[str, str]:
    """Files that once crashed colorize or became wrong pictures: {name: "written" or the start of
    the reason it is refused with}."""
    root.mkdir()
    # orientation 6 beside a WhitePoint stored as text, on which ImageOps.exif_transpose raised
    jpeg_with_exif(
        root / "wrong_tag.jpg", photo(48, 32, 1), [(0x0112, 3, 1, b"\0\6\0\0"), (0x013E, 2, 4, b"abc\0")]
    )
    # an orientation of the wrong type (text): ignored, as viewers do
    jpeg_with_exif(root / "text_orientation.jpg", photo(48, 32, 2), [(0x0112, 2, 2, b"6\0\0\0")])
    v16 = np.random.default_rng(3).integers(0, 65536, (24, 40), dtype=np.uint16)
    Image.fromarray(v16.astype(np.int32), "I").save(root / "i32.tif")
    Image.fromarray(v16.astype(np.float32) / 65535, "F").save(root / "float.tif")
    frames = [photo(24, 24, i) for i in range(3)]
    for name in ("pages.tif", "anim.gif", "anim.webp"):
        frames[0].save(root / name, save_all=True, append_images=frames[1:])
    still = Image.fromarray((np.arange(600).reshape(20, 30) % 4).astype(np.uint8), "P")
    still.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30, 30, 30, 200])
    still.save(root / "still.gif", transparency=0)  # palette entry 0 is transparent
    (root / "eps.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n")
    buf = io.BytesIO()
    photo(64, 64, 5).save(buf, "JPEG")
    forged = bytearray(buf.getvalue())
    sof = forged.index(b"\xff\xc0")
    forged[sof + 5 : sof + 9] = struct.pack(">HH", 7000, 9000)  # claims 9000x7000 = 63 MP
    (root / "forged.jpg").write_bytes(bytes(forged))
    photo(40, 30, 6).save(root / "adobe.png", icc_profile=adobe_rgb_profile())
    photo(40, 30, 7).save(root / "junk_icc.png", icc_profile=b"not a profile" * 20)
    return {
        "wrong_tag.jpg": "written", "text_orientation.jpg": "written", "i32.tif": "written",
        "still.gif": "written", "adobe.png": "written",
        "float.tif": "32-bit floating-point pixels", "pages.tif": "3 frames", "anim.gif": "3 frames",
        "anim.webp": "3 frames", "eps.jpg": "not a readable image: EPS is not a supported image format",
        "forged.jpg": "truncated or forged", "junk_icc.png": "unreadable ICC colour profile",
    }  # fmt: skip


def test_hostile_files_are_read_or_refused_alike_by_every_command(checkpoint, tmp_path, capsys):
    """No crash, no wrong picture: each file is colorized or refused with one line, and a refused
    file is refused by training and evaluation with the very same reason."""
    src = tmp_path / "hostile"
    expected = make_hostile_folder(src)
    assert colorize.main([str(src), "--checkpoint", checkpoint]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and ", 0 failed" in captured.out
    out = tmp_path / "hostile-colorized"
    sizes = {"wrong_tag.jpg": (32, 48), "text_orientation.jpg": (48, 32), "i32.tif": (40, 24)}
    sizes |= {"still.png": (30, 20), "adobe.png": (40, 30)}
    assert {p.name: Image.open(p).size for p in out.iterdir()} == sizes  # a GIF's output is a PNG
    assert Image.open(out / "still.png").mode == "RGBA"  # its transparent entry kept as alpha
    for name, outcome in expected.items():
        lines = [x for x in captured.err.splitlines() if x.startswith(f"{src / name}: skipped: ")]
        if outcome == "written":
            assert lines == [], name
            continue
        assert len(lines) == 1 and lines[0].split(": skipped: ")[1].startswith(outcome), (name, lines)
        # training and evaluation: the header check, else the decode in the data set
        reason = images.check_header(src / name, min_side=1) or data.PhotoFolder(src, [name], 8)[0][1]
        assert lines[0] == f"{src / name}: skipped: {reason}", name


def test_a_gif_given_by_name_is_written_as_png(checkpoint, tmp_path):
    photo(30, 20).convert("P").save(tmp_path / "a.gif")
    assert colorize.main([str(tmp_path / "a.gif"), "--checkpoint", checkpoint]) == 0
    with Image.open(tmp_path.parent / f"{tmp_path.name}-colorized" / "a.png") as im:
        assert im.format == "PNG" and im.size == (30, 20)
    assert colorize.output_suffix(".GIF", None) == ".png" and colorize.output_suffix("", None) == ".png"
    assert colorize.output_suffix(".JPG", None) == ".JPG" and colorize.output_suffix(".gif", "JPG") == ".jpg"


def test_an_adobe_rgb_photo_is_colorized_from_its_srgb_pixels_and_written_as_srgb(model, tmp_path):
    """Its pixels are converted to sRGB before the lightness is taken (the model works in sRGB),
    and the output, sRGB, carries no Adobe RGB profile to mislabel it."""
    src = tmp_path / "in"
    src.mkdir()
    patches = np.array([[200, 150, 100], [100, 120, 180], [220, 60, 60], [40, 200, 200]], dtype=np.uint8)
    raw = Image.fromarray(np.repeat(np.repeat(patches[None], 8, 0), 8, 1))
    raw.save(src / "a.png", icc_profile=adobe_rgb_profile())
    srgb = ImageCms.profileToProfile(
        raw, io.BytesIO(adobe_rgb_profile()), ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
    )  # fmt: skip
    assert np.abs(lightness(srgb) - lightness(raw)).max() > 5  # the two readings differ
    files, _ = colorize.expand_inputs([str(src)])
    _, plan = colorize.plan_outputs(files, tmp_path / "out", None)
    assert colorize.colorize_files(plan, model, 32, 1, side=False, overwrite=False)["written"] == 1
    with Image.open(tmp_path / "out" / "a.png") as im:
        assert "icc_profile" not in im.info
        assert np.abs(lightness(im) - lightness(srgb)).max() <= 1.0


def test_a_glob_through_a_link_loop_colorizes_each_photo_once(checkpoint, tmp_path, capsys):
    """`in/loop` links back to `in`: a recursive glob used to walk it again and again, writing the
    same photos into ever deeper folders. Linked folders are not followed, as a folder's walk
    does not follow them; a linked file still is an input."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    photo(40, 30).convert("L").save(src / "a.png")
    photo(40, 30).convert("L").save(src / "sub" / "b.png")
    (src / "loop").symlink_to(src)
    (src / "c.png").symlink_to(src / "a.png")
    out = tmp_path / "out"
    code = colorize.main([f"{src}/**/*.png", "--checkpoint", checkpoint, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "c.png", "sub/b.png"]


def test_a_file_where_an_output_folder_must_be_is_named_not_taken_for_an_existing_output(
    checkpoint, tmp_path, capsys
):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    photo(40, 30).convert("L").save(src / "sub" / "x.png")
    photo(40, 30).convert("L").save(src / "y.png")
    out.mkdir()
    (out / "sub").write_text("a file of the user's")
    assert colorize.main([str(src), "--checkpoint", checkpoint, "--out", str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert (
        f"{src / 'sub' / 'x.png'}: skipped: a file stands where its output folder must be ({out / 'sub'})"
        in err
    )
    assert (out / "sub").read_text() == "a file of the user's" and (out / "y.png").exists()
