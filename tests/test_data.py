"""lib.data on real files written by the tests: listing, splits, the bad-input policy, loaders."""

import gc
import hashlib
import importlib.resources
import io
import json
import logging
import os
import pickle
import re
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageFile

from lib import data, datasets, images, lab, splits

# --- helpers ------------------------------------------------------------------------------------


def skimage_photo(name: str) -> Path:
    """A photo that ships inside scikit-image's wheel (no download)."""
    return Path(str(importlib.resources.files("skimage.data").joinpath(name)))


def rng(seed=0):
    return np.random.default_rng(seed)


def noise(h, w, seed=0):
    return rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> np.ndarray:
    Image.fromarray(arr).save(path, **kw)
    return arr


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def write_png16_rgb(path: Path, arr: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): IHDR depth 16, colour type 2."""
    h, w, _ = arr.shape
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
    body += png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def write_png_claiming(path: Path, w: int, h: int) -> None:
    """A 1x1 PNG whose IHDR is patched to claim w x h (CRC recomputed): a tiny 'bomb'."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    assert b[12:16] == b"IHDR"
    b[16:24] = struct.pack(">II", w, h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.write_bytes(bytes(b))


def folder_state(root: Path) -> dict:
    """sha256 and mtime of every file below root."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    return {p.relative_to(root).as_posix(): (digest[p], p.stat().st_mtime_ns) for p in files}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def drain(loader, seen: dict):
    """All images of one pass as uint8 HWC arrays, plus every batch's skip list."""
    pictures, skips = [], []
    for batch, bad in loader:
        assert batch.dtype == torch.uint8
        images.record_skips(seen, bad)
        skips += bad
        pictures += [b.permute(1, 2, 0).numpy() for b in batch]
    return pictures, skips


def skip_records(caplog):
    return [r for r in caplog.records if r.name == "lib.images" and r.levelno == logging.WARNING]


# --- list_images ----------------------------------------------------------------------------------


def test_list_images_recursive_filtered_sorted(tmp_path):
    names = ["b.JPG", "a.jpeg", "c.png", "d.webp", "e.BMP", "f.tif", "g.TIFF", "sub/deep/h.Png"]
    names += ["sub/z.jpg", "notes.txt", "x.gif", "noext", "jpg", ".hidden.jpg", ".git/i.jpg"]
    names += ["sub/.cache/j.png", "sub/.k.png", "photo.jpg.txt"]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_bytes(b"")
    expected = ["a.jpeg", "b.JPG", "c.png", "d.webp", "e.BMP", "f.tif", "g.TIFF"]
    expected += ["sub/deep/h.Png", "sub/z.jpg", "x.gif"]  # GIF is read (a multi-frame one refused)
    assert images.list_images(tmp_path) == expected
    assert images.list_images(str(tmp_path)) == expected


def test_list_images_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        images.list_images(missing)
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="file.jpg"):
        images.list_images(tmp_path / "file.jpg")


# --- rank / split -------------------------------------------------------------------------------

FILES = [f"img_{i:03d}.jpg" for i in range(30)] + [f"sub/p{i}.png" for i in range(10)]


def test_rank_is_a_seeded_permutation():
    r0 = splits.rank(FILES, 0)
    assert sorted(r0) == sorted(FILES) and r0 != sorted(FILES)
    assert splits.rank(FILES, 0) == r0
    assert splits.rank(reversed(FILES), 0) == r0  # depends on names, not on input order
    assert splits.rank(FILES, 1) != r0


def test_rank_order_stable_when_files_added():
    old = splits.rank(FILES, 7)
    new = splits.rank(FILES + [f"new/{i}.jpg" for i in range(25)], 7)
    assert [f for f in new if f in set(FILES)] == old


# --- the bad-input folder -------------------------------------------------------------------------

VALID = ["good_a.jpg", "good_b.jpeg", "good_a.png", "good_b.png", "rgb16.png", "palette.png"]
VALID += ["cmyk.jpg", "rgba.png", "exif.jpg"]
INVALID = {
    "corrupt.jpg": "not a readable image",
    "text.png": "not a readable image",
    "empty.jpg": "empty",
    "truncated.jpg": "cannot decode",
    "gray_l.png": "grayscale",
    "gray16.png": "grayscale",
    "gray_la.png": "grayscale",
    "small.png": "smaller",
    "graycontent.png": "no colour",
    "bomb.png": "too large",
}
LOSSLESS = {"good_a.png", "good_b.png", "rgb16.png", "palette.png", "rgba.png"}
RED, BLUE = (230, 20, 20), (20, 40, 220)


def gradient(h, w, channel, base):
    a = np.empty((h, w, 3), np.uint8)
    a[:] = base
    a[..., channel] = np.linspace(20, 235, w, dtype=np.uint8)[None, :]
    return a


def write_exif_jpeg(path: Path) -> np.ndarray:
    """48 wide x 32 high, stored with EXIF orientation 6 (rotate 90° clockwise to view).

    A red 16x16 marker sits at the stored top-left: viewed, it lands top-right. Returns the
    expected viewed image.
    """
    a = np.empty((32, 48, 3), np.uint8)
    a[:] = BLUE
    a[:16, :16] = RED
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(path, quality=95, exif=exif)
    return np.rot90(a, k=-1)  # (48, 32, 3)


@pytest.fixture
def bad_folder(tmp_path):
    """The bad-input folder: (root, {valid name: expected 32x32 RGB as the loader gives it})."""
    root = tmp_path / "photos"
    root.mkdir()
    exp = {}
    exp["good_a.jpg"] = save(root / "good_a.jpg", gradient(32, 32, 0, (10, 120, 60)), quality=95)
    exp["good_b.jpeg"] = save(root / "good_b.jpeg", gradient(32, 32, 2, (180, 90, 0)), quality=95)
    exp["good_a.png"] = save(root / "good_a.png", noise(32, 32, 1))
    exp["good_b.png"] = save(root / "good_b.png", noise(32, 32, 2))

    v16 = rng(3).integers(0, 65536, (32, 32, 3), dtype=np.uint16)
    write_png16_rgb(root / "rgb16.png", v16)
    exp["rgb16.png"] = (v16 >> 8).astype(np.uint8)

    pal = rng(4).integers(0, 256, (16, 3), dtype=np.uint8)
    idx = rng(5).integers(0, 16, (32, 32), dtype=np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(pal.tobytes())
    p.save(root / "palette.png")
    exp["palette.png"] = pal[idx]

    Image.new("CMYK", (32, 32), (0, 200, 255, 0)).save(root / "cmyk.jpg", quality=95)
    exp["cmyk.jpg"] = np.full((32, 32, 3), (255, 55, 0), np.uint8)  # C,M,Y,K=0 -> 255 - C, ...

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :12] = (0, 255, 0, 0)  # fully transparent (its colour must not show)
    rgba[:, 12:20] = (200, 0, 0, 128)  # half transparent red
    rgba[:, 20:] = (30, 60, 200, 255)  # opaque blue
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    alpha = rgba[..., 3:] / 255.0
    exp["rgba.png"] = np.round(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)

    exp["exif.jpg"] = write_exif_jpeg(root / "exif.jpg")[8:40]  # centre crop of the 32x48 view

    (root / "corrupt.jpg").write_bytes(rng(6).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (root / "text.png").write_text("this is not a picture\n" * 20)
    (root / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(noise(64, 64, 7)).save(buf, "JPEG", quality=95)
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    save(root / "gray_l.png", rng(8).integers(0, 256, (40, 40), dtype=np.uint8))
    save(root / "gray16.png", rng(9).integers(0, 65536, (40, 40), dtype=np.uint16))
    Image.new("LA", (40, 40), (90, 200)).save(root / "gray_la.png")
    save(root / "small.png", noise(16, 16, 10))
    g = rng(11).integers(0, 256, (40, 40, 1), dtype=np.uint8)
    save(root / "graycontent.png", np.repeat(g, 3, axis=2))
    write_png_claiming(root / "bomb.png", 20000, 20000)

    assert sorted(os.listdir(root)) == sorted(VALID + list(INVALID))
    # preconditions about how Pillow sees the hand-made files
    with Image.open(root / "rgb16.png") as im:
        assert im.mode == "RGB"
    with Image.open(root / "gray16.png") as im:
        assert im.mode.startswith("I")
    with Image.open(root / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    return root, exp


def as_train_part(root: Path) -> Path:
    """A folder whose train part is `root` (a link to it) and whose dev and held-out parts are
    one good photo each (copies of good_a.png and good_b.png): make_loaders reads all of root."""
    parts = root.parent / "parts"
    for part, name in (("dev", "good_a.png"), ("held-out", "good_b.png")):
        (parts / part).mkdir(parents=True)
        (parts / part / name).write_bytes((root / name).read_bytes())
    (parts / "train").symlink_to(root, target_is_directory=True)
    return parts


def match(images: list, expected: dict) -> Counter:
    """Name each loader image by the expected image it is closest to; check it is close."""
    names = Counter()
    for img in images:
        diffs = {n: np.abs(img.astype(int) - e.astype(int)).mean() for n, e in expected.items()}
        best = min(diffs, key=diffs.get)
        assert diffs[best] < 4, f"no expected image looks like this one (closest: {best})"
        if best in LOSSLESS:  # PNG paths must be exact (alpha compositing may round by 1)
            assert np.abs(img.astype(int) - expected[best].astype(int)).max() <= 1, best
        names[best] += 1
    return names


def test_bad_input_folder(bad_folder, caplog):
    root, expected = bad_folder
    before = folder_state(root)
    caplog.set_level(logging.WARNING, logger="lib.images")
    kw = dict(size=32, batch_size=4, workers=0, augment="none")
    loaders = data.make_loaders(as_train_part(root), **kw)
    seen = {}
    images, skips = [], []
    for loader in (loaders.train, loaders.val):
        ims, sk = drain(loader, seen)
        images += ims
        skips += sk
    assert match(images, expected) == Counter(VALID) + Counter(["good_a.png"])  # once each (+ dev's)

    # every invalid file is reported exactly once, at scan time or at decode time
    reported = [(Path(f).name, r) for f, r in loaders.description["skipped"]]
    reported += [(Path(f).name, r) for f, r in seen.items()]
    assert Counter(n for n, _ in reported) == Counter(list(INVALID))
    for name, reason in reported:
        assert INVALID[name] in reason, (name, reason)
    assert {Path(f).name for f, _ in skips} == {Path(f).name for f in seen}

    # ... with exactly one log line naming the file, even after a second epoch
    drain(loaders.train, seen)
    drain(loaders.val, seen)
    logged = [Path(r.getMessage().split(": skipped: ")[0]).name for r in skip_records(caplog)]
    assert Counter(logged) == Counter(list(INVALID))
    assert folder_state(root) == before  # nothing written, renamed or touched


def test_bad_input_description(bad_folder):
    root, _ = bad_folder
    parts = as_train_part(root)
    desc = data.make_loaders(parts, size=32, workers=0).description
    assert desc["source"] == str(parts.resolve())
    # scan-time skips are the 8 header-visible problems; truncated and gray content pass it
    assert desc["n_val"] == 1 and desc["n_train"] == len(VALID) + 2
    assert {Path(f).name for f, _ in desc["skipped"]} == set(INVALID) - {
        "truncated.jpg",
        "graycontent.png",
    }


def test_exif_orientation_applied(bad_folder):
    root, _ = bad_folder
    with Image.open(root / "exif.jpg") as raw:
        assert raw.size == (48, 32)
    with images.open_image(root / "exif.jpg") as im:
        rgb = np.asarray(images.to_rgb(im))
    assert rgb.shape == (48, 32, 3)  # width and height swapped
    top_right, top_left, bottom = rgb[4:12, 20:28], rgb[4:12, 4:12], rgb[36:44, 4:28]
    assert np.abs(top_right.astype(int) - RED).max() < 20
    assert np.abs(top_left.astype(int) - BLUE).max() < 20
    assert np.abs(bottom.astype(int) - BLUE).max() < 20


def test_to_rgb_16bit_gray_keeps_high_byte(bad_folder):
    root, _ = bad_folder
    with Image.open(root / "gray16.png") as im:
        raw = np.asarray(im).astype(np.uint16)
    with images.open_image(root / "gray16.png") as im:
        rgb = np.asarray(images.to_rgb(im))
    hi = (raw >> 8).astype(np.uint8)
    assert all(np.array_equal(rgb[..., c], hi) for c in range(3))
    assert images.is_gray(Image.fromarray(rgb))


def test_check_header_caps(tmp_path):
    ok = tmp_path / "ok.png"
    save(ok, noise(40, 40))
    assert images.check_header(ok, min_side=32) is None
    reason = images.check_header(ok, min_side=1, max_pixels=1000)  # the explicit cap
    assert reason is not None and "too large" in reason and "40x40" in reason
    assert "smaller" in images.check_header(ok, min_side=41)

    # default cap (64 MP) on a header claiming 8500x8500 = 72 MP: ours, below Pillow's own limits
    write_png_claiming(tmp_path / "b1.png", 8500, 8500)
    reason = images.check_header(tmp_path / "b1.png", min_side=32)
    assert "too large" in reason and "8500x8500" in reason and "cap" in reason
    # above Pillow's warning (89 MP) and error (179 MP) limits: still one clear reason, no warning
    for side in (10_000, 20_000):
        write_png_claiming(tmp_path / f"b{side}.png", side, side)
        assert "too large" in images.check_header(tmp_path / f"b{side}.png", min_side=32)


def test_no_valid_image_raises_naming_folder(tmp_path):
    root = tmp_path / "hopeless"
    root.mkdir()
    save(root / "gray.png", rng().integers(0, 256, (40, 40), dtype=np.uint8))
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("hello")
    with pytest.raises(ValueError, match=re.escape(str(root))):
        data.make_loaders(root, size=32, workers=0)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ValueError, match=re.escape(str(empty))):
        data.make_loaders(empty, size=32, workers=0)


@pytest.mark.parametrize("split", [False, True])
def test_a_source_that_is_neither_a_folder_nor_a_name_lists_the_names(tmp_path, split):
    names = "photos, places205-test, places365-val"
    kw = {"split_file": tmp_path / "split.csv"} if split else {}
    for source in ("places205", tmp_path / "nope"):
        with pytest.raises(FileNotFoundError, match=f"^{re.escape(str(source))}: .*{names}"):
            data.make_loaders(source, size=32, workers=0, data_root=tmp_path, **kw)
    assert list(tmp_path.iterdir()) == []  # nothing fetched, nothing created


# --- hostile files: the one decode path every command shares ------------------------------------


def tiff_exif(entries) -> bytes:
    """Raw big-endian EXIF (a TIFF header and one IFD) from (tag, type, count, 4-byte value) entries,
    so that tests can write what Pillow would refuse to: tags of the wrong type."""
    out = b"MM" + struct.pack(">HI", 42, 8) + struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        out += struct.pack(">HHI", tag, kind, count) + value
    return out + b"\0\0\0\0"


def jpeg_with_app1(path: Path, arr: np.ndarray, payload: bytes) -> None:
    """A JPEG of arr with an APP1 segment holding payload (an "Exif" block) right after SOI."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    jpeg = buf.getvalue()
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:])


SHORT, ASCII, SSHORT = 3, 2, 8  # TIFF field types
ORIENT_6 = (0x0112, SHORT, 1, b"\x00\x06\x00\x00")
ARTIST = (0x013B, ASCII, 4, b"Ada\x00")


def test_corrupt_exif_is_ignored_by_every_command(tmp_path):
    """Unreadable EXIF, or an orientation of the wrong type, is ignored (pixels as stored, as a
    viewer shows them); readable EXIF with a tag of the wrong type still orients the photo (that tag
    made ImageOps.exif_transpose raise: training skipped the photo, colorize crashed)."""
    a = gradient(32, 48, 0, (10, 120, 60))
    exif = b"Exif\x00\x00"
    cases = {
        "garbage.jpg": (exif + rng(20).integers(0, 256, 60, dtype=np.uint8).tobytes(), (48, 32)),
        "bad_header.jpg": (exif + b"MM\x00\x2a\xff\xff\xff\xff", (48, 32)),
        # WhitePoint (0x013E) must be RATIONAL: as text it cannot be written back
        "wrong_tag.jpg": (exif + tiff_exif([ORIENT_6, (0x013E, ASCII, 4, b"abc\x00")]), (32, 48)),
        "text_orientation.jpg": (exif + tiff_exif([(0x0112, ASCII, 2, b"6\x00\x00\x00"), ARTIST]), (48, 32)),
        "orientation_9.jpg": (exif + tiff_exif([(0x0112, SHORT, 1, b"\x00\x09\x00\x00"), ARTIST]), (48, 32)),
        "orientation_minus_6.jpg": (exif + tiff_exif([(0x0112, SSHORT, 1, b"\xff\xfa\x00\x00")]), (48, 32)),
    }
    for name, (payload, viewed_size) in cases.items():
        jpeg_with_app1(tmp_path / name, a, payload)
        assert images.check_header(tmp_path / name, min_side=32) is None, name
        with images.open_image(tmp_path / name) as im:
            rgb = images.to_rgb(im)
        assert rgb.size == viewed_size, name
        if viewed_size == (48, 32):  # as stored: pixel for pixel the JPEG's own
            assert np.abs(np.asarray(rgb, dtype=int) - a).mean() < 2, name
    # what is left of the EXIF travels with the picture, when it can be written back
    for name in ("text_orientation.jpg", "orientation_9.jpg"):
        exif = Image.Exif()
        exif.load(images.read_image(tmp_path / name).exif)
        assert exif[0x013B] == "Ada" and 0x0112 not in exif, name
    assert images.read_image(tmp_path / "wrong_tag.jpg").exif is None
    assert images.read_image(tmp_path / "garbage.jpg").exif is None


def test_16_bit_and_32_bit_gray_are_scaled_or_refused(tmp_path):
    """16-bit samples keep their 8 high bits; 32-bit integers in 0-65535 are read as 16-bit (they
    were clipped to 0-255: mostly white); other 32-bit integers and 32-bit floats (all black) are
    refused, by the header check too, with the same reason."""
    v16 = rng(21).integers(0, 65536, (24, 40), dtype=np.uint16)
    Image.fromarray(v16).save(tmp_path / "i16.tif")
    Image.fromarray(v16.astype(np.int32), "I").save(tmp_path / "i32.tif")
    with Image.open(tmp_path / "i16.tif") as im, Image.open(tmp_path / "i32.tif") as im32:
        assert im.mode == "I;16" and im32.mode == "I"
    for name in ("i16.tif", "i32.tif"):
        with images.open_image(tmp_path / name) as im:
            rgb = np.asarray(images.to_rgb(im))
        assert all(np.array_equal(rgb[..., c], (v16 >> 8).astype(np.uint8)) for c in range(3)), name

    Image.fromarray(v16.astype(np.int32) * 16, "I").save(tmp_path / "i32_wide.tif")
    with images.open_image(tmp_path / "i32_wide.tif") as im, pytest.raises(images.BadImage) as e:
        images.to_rgb(im)
    assert "outside 0-65535" in str(e.value) and f"to {int(v16.max()) * 16}" in str(e.value)

    Image.fromarray(v16.astype(np.float32) / 65535, "F").save(tmp_path / "float.tif")
    with pytest.raises(images.BadImage, match="floating-point") as e:
        images.read_image(tmp_path / "float.tif")
    assert images.check_header(tmp_path / "float.tif", min_side=1) == str(e.value)


def save_frames(path: Path, n: int, **kw) -> None:
    frames = [Image.fromarray(noise(24, 24, i)) for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:], **kw)


@pytest.mark.parametrize("name", ["pages.tif", "anim.gif", "anim.webp", "anim.png"])
def test_multi_frame_files_are_refused_naming_the_frame_count(tmp_path, name):
    save_frames(tmp_path / name, 3)
    with Image.open(tmp_path / name) as im:
        assert im.n_frames == 3  # precondition: Pillow sees the frames
    reason = images.check_header(tmp_path / name, min_side=1)
    assert reason is not None and reason.startswith("3 frames: animations and multi-page files")
    with pytest.raises(images.BadImage) as e:
        images.open_image(tmp_path / name)
    assert str(e.value) == reason
    save_frames(tmp_path / f"one_{name}", 1)  # one frame of the same format is read
    assert images.check_header(tmp_path / f"one_{name}", min_side=1) is None


def test_a_single_frame_gif_is_read_and_an_mpo_jpeg_is_its_first_picture(tmp_path):
    pal = noise(24, 24, 22)
    Image.fromarray(pal).quantize(64).save(tmp_path / "one.gif")
    with Image.open(tmp_path / "one.gif") as im:
        expected = np.asarray(im.convert("RGB"))
    with images.open_image(tmp_path / "one.gif") as im:
        assert np.array_equal(np.asarray(images.to_rgb(im)), expected)
    # a camera JPEG with a preview (MPO, two pictures): the photo is the first, as viewers show
    first, preview = gradient(64, 64, 0, (10, 120, 60)), gradient(64, 64, 2, (200, 0, 0))
    Image.fromarray(first).save(
        tmp_path / "mpo.jpg", "MPO", save_all=True, append_images=[Image.fromarray(preview)]
    )
    with Image.open(tmp_path / "mpo.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert images.check_header(tmp_path / "mpo.jpg", min_side=32) is None
    with images.open_image(tmp_path / "mpo.jpg") as im:
        assert np.abs(np.asarray(images.to_rgb(im), dtype=int) - first).max() < 12


def test_only_the_allowed_formats_are_opened(tmp_path):
    """An EPS named .jpg is refused from its first bytes, naming its format: Pillow's EPS plugin
    (which runs Ghostscript to decode) never opens it. The same for any format not on the list."""
    (tmp_path / "eps.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n")
    Image.fromarray(noise(40, 40, 24)).save(tmp_path / "ppm.png", "PPM")
    Image.fromarray(noise(40, 40, 25)).save(tmp_path / "tga.jpg", "TGA")  # TGA has no magic bytes
    for name, fmt in (("eps.jpg", "EPS"), ("ppm.png", "PPM")):
        reason = images.check_header(tmp_path / name, min_side=1)
        assert (
            reason.startswith("not a readable image") and f"{fmt} is not a supported image format" in reason
        )
    assert images.check_header(tmp_path / "tga.jpg", min_side=1).startswith("not a readable image")
    # the list drives the suffixes listed; each suffix is one of its formats in Pillow's own table
    assert images.IMAGE_EXTENSIONS == {s for exts in images.IMAGE_FORMATS.values() for s in exts}
    assert {Image.registered_extensions()[s] for s in images.IMAGE_EXTENSIONS} == set(images.IMAGE_FORMATS)


def test_a_jpeg_too_short_for_its_header_is_refused_before_decoding(tmp_path):
    """A 3 KB JPEG whose header claims 9000x7000 decodes, without an error, to 63 MP of gray (in
    90 s). The byte count gives it away in the header check; a real flat JPEG, the most
    compressible there is, passes."""
    buf = io.BytesIO()
    Image.fromarray(noise(64, 64, 26)).save(buf, "JPEG")
    forged = bytearray(buf.getvalue())
    sof = forged.index(b"\xff\xc0")
    forged[sof + 5 : sof + 9] = struct.pack(">HH", 7000, 9000)  # height, width
    (tmp_path / "forged.jpg").write_bytes(bytes(forged))
    with Image.open(tmp_path / "forged.jpg") as im:
        assert im.size == (9000, 7000)  # precondition: below the 64-MP cap
    reason = images.check_header(tmp_path / "forged.jpg", min_side=32)
    assert reason is not None and "9000x7000" in reason and f"{len(forged):,} bytes" in reason
    Image.new("RGB", (2000, 2000), (90, 90, 90)).save(tmp_path / "flat.jpg", quality=1, optimize=True)
    assert (tmp_path / "flat.jpg").stat().st_size < 2000 * 2000 / 150  # really that compressible
    assert images.check_header(tmp_path / "flat.jpg", min_side=32) is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_a_truncated_file_of_each_format_is_refused_on_decode(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(noise(64, 64, 27)).save(buf, fmt)
    (tmp_path / "cut").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 3 // 4])
    with pytest.raises(images.BadImage, match="cannot decode|not a readable image|truncated"):
        images.read_image(tmp_path / "cut")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing in lib relaxes Pillow's check


# Adobe RGB (1998) -> sRGB, computed here from the published primaries (not by LittleCMS): its
# gamma 563/256 and RGB -> XYZ matrix, then sRGB's inverse matrix and encoding (both D65).
M_ADOBE = np.array([
    [0.5767309, 0.1855540, 0.1881852], [0.2973769, 0.6273491, 0.0752741], [0.0270343, 0.0706872, 0.9911085]
])  # fmt: skip
M_SRGB = np.array([
    [0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]
])  # fmt: skip
PATCHES = np.array([[200, 150, 100], [100, 120, 180], [128, 128, 128], [220, 60, 60], [40, 200, 200]])


def adobe_to_srgb(v: np.ndarray) -> np.ndarray:
    linear = np.clip((v / 255.0) ** (563 / 256) @ (np.linalg.inv(M_SRGB) @ M_ADOBE).T, 0, 1)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.round(encoded * 255)


def adobe_rgb_profile() -> bytes:
    """The Adobe RGB (1998) profile of a real photo that ships with scikit-image (the rocket)."""
    with Image.open(skimage_photo("rocket.jpg")) as im:
        icc = im.info["icc_profile"]
    assert b"Adobe RGB (1998)" in icc
    return icc


def test_an_icc_profile_is_converted_to_srgb(tmp_path):
    """Adobe RGB pixels were read as if sRGB (up to 34 levels off); now they are converted, and the
    picture keeps no profile. An sRGB profile keeps the pixels exactly (and is kept)."""
    arr = np.repeat(PATCHES[None].astype(np.uint8), 4, 0)
    Image.fromarray(arr).save(tmp_path / "adobe.png", icc_profile=adobe_rgb_profile())
    with images.open_image(tmp_path / "adobe.png") as im:
        rgb = np.asarray(images.to_rgb(im), dtype=int)
    assert np.abs(rgb - adobe_to_srgb(arr.astype(float))).max() <= 1
    assert images.read_image(tmp_path / "adobe.png").icc is None
    with Image.open(skimage_photo("astronaut.png")) as im:
        srgb = im.info["icc_profile"]
    assert b"sRGB IEC61966-2.1" in srgb
    Image.fromarray(noise(40, 40, 28)).save(tmp_path / "srgb.png", icc_profile=srgb)
    picture = images.read_image(tmp_path / "srgb.png")
    assert np.array_equal(np.asarray(picture.image), noise(40, 40, 28)) and picture.icc == srgb
    # a gray image that kept an RGB profile (as Pillow's convert("L") leaves it) stays gray
    Image.fromarray(noise(40, 40, 29)[..., 0]).save(tmp_path / "gray_srgb.png", icc_profile=srgb)
    picture = images.read_image(tmp_path / "gray_srgb.png")
    assert picture.image.mode == "L" and np.array_equal(np.asarray(picture.image), noise(40, 40, 29)[..., 0])


def gray_icc_profile(gamma: float) -> bytes:
    """A minimal ICC v2 gray display profile (white point D50, one gamma curve), written by hand:
    Pillow can make RGB and Lab profiles only."""

    def s15(x):  # s15Fixed16
        return struct.pack(">i", round(x * 65536))

    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = {
        b"wtpt": b"XYZ \0\0\0\0" + d50,
        b"kTRC": b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)),
    }
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for sig, payload in tags.items():
        table += sig + struct.pack(">II", offset + len(body), len(payload))
        body += payload + b"\0" * (-len(payload) % 4)
    header = struct.pack(">I", offset + len(body)) + b"\0" * 4 + struct.pack(">I", 0x02100000)
    header += b"mntrGRAYXYZ " + b"\0" * 12 + b"acsp" + b"\0" * 28 + d50
    return header + b"\0" * (128 - len(header)) + struct.pack(">I", len(tags)) + table + body


def test_a_gray_profile_converts_gray_pixels_to_srgb_and_keeps_them_gray(tmp_path):
    """Gray with gamma 2.2 (as some scanners tag it) is darker than sRGB's curve in the shadows."""
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(v).save(tmp_path / "gamma22.png", icc_profile=gray_icc_profile(2.2))
    linear = (v / 255.0) ** (563 / 256)  # the curve as stored: u8Fixed8 2.2 = 563/256
    expected = np.round(
        255 * np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    )
    assert np.abs(expected - v).max() > 5  # the two readings differ
    with images.open_image(tmp_path / "gamma22.png") as im:
        rgb = np.asarray(images.to_rgb(im), dtype=int)
    assert all(np.abs(rgb[..., c] - expected).max() <= 1 for c in range(3))
    picture = images.read_image(tmp_path / "gamma22.png")
    assert picture.image.mode == "L" and picture.icc is None  # a gray profile cannot tag an RGB output
    assert np.abs(np.asarray(picture.image, dtype=int) - expected).max() <= 1


def test_an_unusable_icc_profile_is_refused(tmp_path):
    """Without its profile a file's colours are unknown: a profile that cannot be parsed, or one
    for other pixels (Lab on RGB), refuses the file, in training and evaluation as in colorize."""
    Image.fromarray(noise(40, 40, 30)).save(tmp_path / "junk_icc.png", icc_profile=b"not a profile" * 20)
    lab_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(noise(40, 40, 31)).save(tmp_path / "lab_icc.png", icc_profile=lab_icc)
    for name, reason in (
        ("junk_icc.png", "unreadable ICC colour profile"),
        ("lab_icc.png", "for Lab pixels, not RGB"),
    ):
        with images.open_image(tmp_path / name) as im, pytest.raises(images.BadImage, match=reason):
            images.to_rgb(im)
    ds = data.PhotoFolder(tmp_path, ["junk_icc.png", "lab_icc.png"], 32)
    reasons = [ds[0][1], ds[1][1]]
    assert reasons[0].startswith("unreadable ICC colour profile (")
    assert reasons[1] == "its ICC colour profile is for Lab pixels, not RGB"


# --- the embedded photos ------------------------------------------------------------------------


def test_make_loaders_trains_on_the_train_part_and_validates_on_the_dev_part():
    """The embedded photos: train/, dev/ and held-out/ subfolders, each part its one job."""
    loaders = data.make_loaders("photos", size=32, workers=0, max_images=40)
    d = loaders.description
    assert d["source"] == "photos" and d["split"] == {"rule": "subfolders"}
    assert d["parts"] == {"train": "train", "val": "dev"} and d["skipped"] == []
    train, dev = loaders.train.dataset.files, loaders.val.dataset.files
    assert len(train) == d["n_train"] == 40 and all(f.startswith("train/") for f in train)
    assert dev == splits.part_files(data.PHOTOS, "dev")[0] and len(dev) == d["n_val"] > 150
    held_out = set(splits.part_files(data.PHOTOS, "held-out")[0])
    assert len(held_out) > 200 and not held_out & (set(train) | set(dev))
    batch, bad = next(iter(loaders.val))
    assert batch.shape == (32, 3, 32, 32) and batch.dtype == torch.uint8 and bad == []
    # max_images keeps the first photos of one fixed order: a bigger subset holds the smaller
    assert set(train) < set(
        data.make_loaders("photos", size=32, workers=0, max_images=80).train.dataset.files
    )


def test_a_plain_folder_is_cut_into_parts_by_a_rule_of_the_name_alone(tmp_path):
    """No subfolders: each file's part is split_part(its name), whatever the other files are; the
    part_loader of the held-out part reads exactly those files, in name order."""
    for i in range(60):
        save(tmp_path / f"photo_{i:03d}.png", noise(40, 40, i))
    parts = {p: splits.part_files(tmp_path, p)[0] for p in splits.PARTS}
    assert sorted(sum(parts.values(), [])) == images.list_images(tmp_path)
    assert all(splits.split_part(f) == p for p, files in parts.items() for f in files)
    assert all(len(files) > 0 for files in parts.values()) and len(parts["train"]) > 30
    (tmp_path / "extra.png").write_bytes((tmp_path / "photo_000.png").read_bytes())
    again = {p: splits.part_files(tmp_path, p)[0] for p in splits.PARTS}
    assert all(set(parts[p]) <= set(again[p]) for p in splits.PARTS)  # a new file moves no other
    loader, desc = data.part_loader(tmp_path, "held-out", 32, workers=0)
    assert loader.dataset.files == parts["held-out"] and desc["n_images"] == len(parts["held-out"])
    assert desc["split"]["rule"] == "name" and desc["part"] == "held-out"


def test_the_held_out_part_is_the_same_for_every_seed_and_never_read_by_training(tmp_path):
    """The split is fixed: a run's seed changes its initial weights, order and augmentation, never
    which photos are in which part."""
    from lib import train

    loaders = data.make_loaders("photos", size=32, workers=0, max_images=16, batch_size=8)
    held_out = splits.part_files(data.PHOTOS, "held-out")[0]
    seen = train.fit_seeds(train.Settings("resnet18", epochs=1, progress=False), loaders, tmp_path, (0, 1, 2))
    assert {run["settings"]["seed"] for run in seen.values()} == {0, 1, 2}
    assert all(run["data"]["split"] == {"rule": "subfolders"} for run in seen.values())
    assert all((tmp_path / f"seed-{s}" / "last.pt").exists() for s in seen)
    assert len({json.dumps(r["data"], sort_keys=True) for r in seen.values()}) == 1  # the same data
    assert data.part_loader("photos", "held-out", 32, workers=0)[0].dataset.files == held_out
    orders = set()
    for seed in (0, 1):
        loaders.train.sampler.set_epoch(1, seed)
        orders.add(tuple(i for i, _ in loaders.train.sampler))
    assert len(orders) == 2  # the seed does change the order


# --- streaming, workers --------------------------------------------------------------------------


def test_streaming_memory(tmp_path):
    """RSS stays flat over an epoch of 2,000 files.

    128x128 images: keeping every decoded train image (1,800 x 48 KB) would grow RSS by ~85 MB, so
    the 50 MB bound does catch a per-item cache (at 48x48 such a cache would be only 12 MB).
    """
    root = tmp_path / "many"
    root.mkdir()
    colours = rng(12).integers(0, 256, (2000, 3), dtype=np.uint8)
    colours[:, 2] = colours[:, 1] ^ 128  # never gray: blue and green always differ
    for i, c in enumerate(colours):
        a = np.empty((128, 128, 3), np.uint8)
        a[:] = c
        a[::4, ::4] = 255 - c
        Image.fromarray(a).save(root / f"{i:04d}.png", compress_level=1)
    loaders = data.make_loaders(root, size=32, batch_size=64, workers=0)
    ds = loaders.train.dataset
    n_train = len(ds)  # about 80 % of the files, by the rule of their names
    assert 1500 < n_train < 1700 and all(isinstance(f, str) for f in ds.files)
    assert len(pickle.dumps(ds)) < 200_000  # a list of names, not pixels

    n, start = 0, None
    for i, (batch, bad) in enumerate(loaders.train):
        assert bad == []
        lab.rgb_to_model(batch)
        n += len(batch)
        if i == 4:
            gc.collect()
            start = rss_bytes()
    gc.collect()
    assert n == n_train
    assert rss_bytes() - start < 50 * 2**20


def test_skips_travel_from_worker_processes(tmp_path, caplog):
    root = tmp_path / "w"
    for i in range(8):  # parts named by their folders: 6 good + 1 broken train photos, 2 dev
        part = root / ("train" if i < 6 else "dev")
        part.mkdir(parents=True, exist_ok=True)
        save(part / f"good_{i}.png", noise(40, 40, 20 + i))
    (root / "held-out").mkdir()
    save(root / "held-out" / "good_8.png", noise(40, 40, 28))
    buf = io.BytesIO()
    Image.fromarray(noise(64, 64, 30)).save(buf, "JPEG")
    (root / "train" / "broken.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # header OK
    caplog.set_level(logging.WARNING, logger="lib.images")
    loaders = data.make_loaders(root, size=32, batch_size=3, workers=2)
    assert loaders.train.num_workers == 2 and loaders.train.persistent_workers
    assert loaders.description["skipped"] == []  # only a worker can find this one
    seen, n, skips = {}, 0, []
    for loader in (loaders.train, loaders.val, loaders.train):  # two epochs of train
        ims, sk = drain(loader, seen)
        n += len(ims)
        skips += sk
    broken = str(root / "train" / "broken.jpg")
    in_train = any(f.endswith("broken.jpg") for f in loaders.train.dataset.files)
    n_train, n_val = len(loaders.train.dataset), len(loaders.val.dataset)
    assert n == 2 * (n_train - in_train) + (n_val - (not in_train))
    assert [f for f, _ in skips] == [broken] * (2 if in_train else 1)
    assert "cannot decode" in seen[broken]
    assert [r.getMessage() for r in skip_records(caplog)] == [f"{broken}: skipped: {seen[broken]}"]
    del loaders
    gc.collect()


def test_augmentation_is_the_same_with_or_without_worker_processes():
    """Each item carries its own seed (EpochSampler): 0 or 2 workers give the same batches."""
    batches = []
    for workers in (0, 2):
        loaders = data.make_loaders("photos", 32, 16, max_images=48, workers=workers)
        loaders.train.sampler.set_epoch(3)
        batches.append([rgb for rgb, _ in loaders.train])
    assert len(batches[0]) == 3 and all(torch.equal(a, b) for a, b in zip(*batches, strict=True))
    loaders.train.sampler.set_epoch(4)
    assert not torch.equal(next(iter(loaders.train))[0], batches[1][0])  # another epoch, other crops


# --- fixed splits of photo pools -------------------------------------------------------------------

SPLIT_FILE = Path(__file__).resolve().parents[1] / "data" / "splits" / "photos.tsv"


def test_the_committed_split_follows_its_rule():
    """The split of the two training pools (README, "Model card") is a pure function of each
    file's name and the seed: recomputing the rule gives every row's part."""
    seed, rows = splits.read_split(SPLIT_FILE)
    counts = {p: sum(r[0] == p for r in rows) for p in splits.PARTS}
    assert sum(counts.values()) == 2638 + 4882 == len({r[1] for r in rows})  # each photo once
    assert all(splits.split_part(path, seed) == part for part, path, _ in rows)
    assert counts == {"train": 6015, "dev": 736, "held-out": 769}
    assert all(len(sha) == 64 for *_, sha in rows)
    pools = {r[1].split("/")[0] for r in rows}
    assert pools == {"photos-train", "photos-train-2"} and all(r[1].endswith(".jpg") for r in rows)


def split_pools(root, n=12):
    for pool in ("a", "b"):
        (root / pool).mkdir(parents=True)
        for i in range(n):
            photo = np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(photo).save(root / pool / f"p{i:02d}.jpg")
    (root / "a" / "contact_sheet.png").write_bytes((root / "a" / "p00.jpg").read_bytes())


def test_a_split_is_cut_once_and_its_files_are_checked(tmp_path):
    split_pools(tmp_path / "pools")
    out = tmp_path / "split.tsv"
    counts = splits.write_split(tmp_path / "pools", ["a", "b"], out, seed=3)
    assert sum(counts.values()) == 24  # the contact sheet is not a photo of the pool
    with pytest.raises(FileExistsError, match="split.tsv: exists"):
        splits.write_split(tmp_path / "pools", ["a", "b"], out, seed=3)
    seed, rows = splits.read_split(out)
    assert seed == 3 and all(splits.split_part(path, 3) == part for part, path, _ in rows)
    parts = {p: splits.split_files(tmp_path / "pools", out, p) for p in splits.PARTS}
    assert sorted(sum(parts.values(), [])) == sorted(r[1] for r in rows)
    victim = parts["train"][0]
    Image.new("RGB", (40, 40), "red").save(tmp_path / "pools" / victim)
    with pytest.raises(ValueError, match=f"{victim}: its content differs"):
        splits.split_files(tmp_path / "pools", out, "train")
    (tmp_path / "pools" / victim).unlink()
    with pytest.raises(ValueError, match=f"{victim}: listed in .* but missing"):
        splits.split_files(tmp_path / "pools", out, "train")
    (tmp_path / "other.tsv").write_text("part\tpath\n")
    with pytest.raises(ValueError, match="other.tsv: not a bw-colorization-split/1 file"):
        splits.read_split(tmp_path / "other.tsv")


def test_loaders_from_a_split_train_on_train_validate_on_dev_and_never_read_held_out(tmp_path):
    split_pools(tmp_path / "pools", n=20)
    out = tmp_path / "split.tsv"
    splits.write_split(tmp_path / "pools", ["a", "b"], out)
    parts = {p: splits.split_files(tmp_path / "pools", out, p) for p in splits.PARTS}
    for f in parts["held-out"]:  # unreadable: a loader that touched them would skip or fail
        (tmp_path / "pools" / f).write_bytes(b"")
    loaders = data.make_loaders(tmp_path / "pools", 32, 4, split_file=out, workers=0, crop_scale=0.5)
    assert sorted(loaders.train.dataset.files) == sorted(parts["train"])
    assert loaders.val.dataset.files == parts["dev"]
    d = loaders.description
    assert d["skipped"] == [] and d["split"]["sha256"] == datasets.sha256(out) and d["crop_scale"] == 0.5
    assert d["n_train"] == len(parts["train"]) and d["n_val"] == len(parts["dev"])


def test_crop_scale_sets_how_much_of_the_photo_a_crop_keeps():
    """A crop covering at least 90 % of the photo holds almost all of a centred square; crops that
    may cover 5 % mostly hold less of it."""
    photo = np.zeros((100, 100, 3), dtype=np.uint8)
    photo[40:60, 40:60] = 255  # a white square, 4 % of the area
    im = Image.fromarray(photo)
    torch.manual_seed(0)

    def white_share(scale):
        t = data.transform(50, "crop", crop_scale=scale)
        return np.mean([float((t(im) > 127).float().mean()) for _ in range(200)])

    assert 0.03 < white_share(0.9) < 0.06 and white_share(0.05) > 0.08


def test_a_split_row_outside_its_data_folder_is_refused_whatever_its_hash(tmp_path):
    """A split file names photos of its own data folder: a row with .. or an absolute path would
    read (and train on, or score) files from anywhere, even with the right SHA-256."""
    split_pools(tmp_path / "pools")
    out = tmp_path / "split.tsv"
    splits.write_split(tmp_path / "pools", ["a", "b"], out, seed=3)
    Image.new("RGB", (40, 40), "red").save(tmp_path / "elsewhere.png")
    sha = datasets.sha256(tmp_path / "elsewhere.png")
    for row in ("../elsewhere.png", str(tmp_path / "elsewhere.png"), "a/../../elsewhere.png"):
        bad = tmp_path / "bad.tsv"
        bad.write_text(out.read_text() + f"train\t{row}\t{sha}\n")
        with pytest.raises(ValueError, match=f"bad.tsv: row '{re.escape(row)}' points outside"):
            splits.split_files(tmp_path / "pools", bad, "train")
