"""Images in, tensors out: folder datasets, the embedded photos, the three parts, bad-input policy.

The flow (see README): DataLoader workers only decode, orient, crop and resize, and hand over uint8
RGB (3, H, W). Colour conversion happens once per batch on the training device (`to_model`).
Nothing holds the data set in memory: a dataset is a list of file names.

Bad input never crashes a run and never silently becomes a wrong image. Every command (training,
evaluation, colorize) reads a file through the same two steps, `open_image` (header checks: the
allowed formats, the size cap, one frame, a JPEG long enough for its size) and `decode` (pixels,
orientation, bit depth, colour profile to sRGB), so a file that cannot be used is refused with
the same reason (a BadImage) everywhere; each file is either a correct image or skipped with one
line "<file>: skipped: <reason>". Training and evaluation add their own rules on top (no
grayscale photos, none smaller than the crop):
  * a cheap header scan at start-up (`scan`, `check_header`) skips what the header shows;
  * problems only visible on full decode (truncated or corrupt data, RGB files whose three channels
    are equal) are caught in the worker, travel with the batch (`collate`) and are logged once by the
    main process (`record_skips`).

Every source has three parts with three jobs (part_files): train trains, dev chooses the
checkpoint (and anything else a run tunes), held-out scores. Which part a photo is in depends on
the photo alone (its subfolder, a split file, or its name), never on a run's seed. Files are never
moved, renamed or written.
"""

import fnmatch
import functools
import hashlib
import io
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageCms
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from lib import datasets, lab, results

log = logging.getLogger(__name__)

# The formats read, by Pillow's name, with their file suffixes. Image.open is only ever allowed
# these plugins (its `formats=`), so a file in any other format is refused whatever its name: an
# EPS renamed .jpg is never handed to Ghostscript. A JPEG with extra pictures (MPO: a camera's
# photo with its previews) is read by the JPEG plugin.
IMAGE_FORMATS = {
    "JPEG": (".jpg", ".jpeg"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
    "GIF": (".gif",),
}
IMAGE_EXTENSIONS = {suffix for suffixes in IMAGE_FORMATS.values() for suffix in suffixes}
MAX_PIXELS = 64_000_000  # decoded-size cap: a 12-MP photo is fine, a 20,000² "bomb" is not
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
ORIENTATION = 0x0112  # the EXIF tag
# EXIF orientation -> the transposition that shows the photo upright (as ImageOps.exif_transpose)
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class BadImage(Exception):
    """A file that cannot become a correct RGB image; str(e) is the reason."""


class Picture(NamedTuple):
    """One decoded file (see `decode`): what training, evaluation and colorize all start from."""

    image: Image.Image  # 8-bit sRGB, orientation applied: "L" when the file is gray, else "RGB"
    alpha: Image.Image | None  # its 8-bit opacity ("L", the same size), None when it has none
    exif: bytes | None  # its EXIF without the orientation tag; None: none, or unreadable
    icc: bytes | None  # its own ICC profile when that is sRGB (pixels unchanged), else None


# --- one file -> one RGB image ----------------------------------------------------------------


def open_image(path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a file lazily (header only) and apply every check that needs no pixels. Raises BadImage.

    Refused: an empty file; a format outside IMAGE_FORMATS (named when Pillow knows it); more than
    `max_pixels` pixels; more than one frame (an animation, a multi-page TIFF); 32-bit float pixels
    (see `decode`); a JPEG with far fewer bytes than its header's size needs.
    """
    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            raise BadImage(f"a broken symbolic link (to {os.readlink(path)})")
        n_bytes = path.stat().st_size
        if n_bytes == 0:
            raise BadImage("empty file")
        with warnings.catch_warnings():
            # Pillow warns above 89 MP and raises above 179 MP; we want one clear reason instead.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)  # see decode
            im = Image.open(path, formats=list(IMAGE_FORMATS))
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"too large to decode safely ({e})") from None
    except Image.UnidentifiedImageError as e:
        raise BadImage(_unsupported(path) or f"not a readable image (UnidentifiedImageError: {e})") from None
    except Exception as e:  # Pillow raises many types on junk; all mean "not an image"
        raise BadImage(f"not a readable image ({type(e).__name__}: {e})") from None
    try:
        _check_open(im, n_bytes, max_pixels)
    except BadImage:
        im.close()
        raise
    except Exception as e:  # counting frames walks the file: a broken frame table surfaces here
        im.close()
        raise BadImage(f"not a readable image ({type(e).__name__}: {e})") from None
    return im


def _check_open(im: Image.Image, n_bytes: int, max_pixels: int) -> None:
    w, h = im.size
    if w * h > max_pixels:
        raise BadImage(f"too large: {w}x{h} = {w * h:,} pixels > cap {max_pixels:,}")
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":  # an MPO's first picture is the photo every viewer shows
        raise BadImage(
            f"{frames} frames: animations and multi-page files are not colorized; extract the frame you want"
        )
    if im.mode == "F":
        raise BadImage(FLOAT_REASON)
    # libjpeg fills the data missing from a JPEG with gray, without an error, so a header claiming
    # 9000x7000 in 4 KB decodes (in 90 s) to a 63-MP gray picture. Huffman coding spends at least
    # one bit per 8x8 block (its DC code), so no JPEG has fewer bytes than pixels/512 (a flat one
    # from libjpeg has pixels/250; photos have pixels/10 or more). Only an arithmetic-coded flat
    # image, which no camera writes, could come below pixels/1024.
    if im.format in ("JPEG", "MPO") and n_bytes < w * h / 1024:
        raise BadImage(
            f"truncated or forged: a {w}x{h} JPEG needs more than its {n_bytes:,} bytes "
            f"(at least {w * h // 1024:,})"
        )


FLOAT_REASON = (
    "32-bit floating-point pixels (mode F): their scale (0-1, 0-255, HDR) is not recorded in the "
    "file; save it as 8- or 16-bit"
)


def _unsupported(path: Path) -> str | None:
    """The reason for a file that a Pillow plugin outside IMAGE_FORMATS recognizes, or None.

    Only each plugin's check of the first bytes runs (Image.OPEN's accept); the file is never
    opened by that plugin."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(16)  # what Image.open itself looks at
    except OSError:
        return None
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        try:
            known = name not in IMAGE_FORMATS and accept is not None and accept(prefix)
        except Exception:  # an accept function that chokes on a short prefix
            known = False
        if known:
            supported = ", ".join(IMAGE_FORMATS)
            return f"not a readable image: {name} is not a supported image format (only {supported})"
    return None


def decode(im: Image.Image) -> Picture:
    """Decode the pixels of an image from `open_image` (or any PIL image) into a Picture, by the
    rules every command shares. Raises BadImage, whose str is the reason.

      * Pixel data: truncated or corrupt data is refused (Pillow's LOAD_TRUNCATED_IMAGES stays
        False).
      * Bit depth: 16-bit samples keep their 8 high bits, floor(v / 256): what libpng does by
        default and how Pillow reads 16-bit RGB(A) PNGs. 32-bit integer gray (mode I) is read as
        16-bit when every value lies in 0-65535, and refused otherwise; 32-bit float (mode F) is
        refused: nothing in the file says what 1.0 means.
      * Colour: pixels with an embedded ICC profile are converted from it to sRGB (relative
        colorimetric, LittleCMS), so every command sees sRGB; a profile within 1/255 of sRGB on
        every channel keeps the pixels unchanged (and is kept, in `icc`, for the outputs). A gray
        image with an RGB profile is read as R = G = B. A profile that cannot be parsed, is for
        other pixels (a CMYK profile on RGB) or cannot be converted is refused: the file's colours
        are then unknown. Without a profile the pixels are taken as sRGB; CMYK, palette, LAB and
        YCbCr pixels are converted by Pillow.
      * EXIF: an orientation of 1-8 is applied. EXIF that cannot be read, or an orientation that is
        not an integer of 1-8, is ignored, as viewers ignore it: the pixels are used as stored.
        EXIF that can be read but not written back (a tag of the wrong type) is left out of `exif`.
      * Transparency becomes `alpha` (premultiplied modes are unpremultiplied; a palette's
        transparent entry counts).

    The Picture's images are new: `im` may be closed afterwards.
    """
    try:
        im.load()
    except Exception as e:  # truncated / corrupt data surfaces only here
        raise BadImage(f"cannot decode ({type(e).__name__}: {e})") from None
    try:
        gray = im.mode in GRAY_MODES
        colour, alpha = _pixels(im)
        icc = im.info.get("icc_profile") or None
        if icc:
            transform, mode = _srgb_transform(icc, colour.mode)
            icc = icc if transform is None and _profile_space(icc) == "RGB" else None
            if transform is not None:
                colour = ImageCms.applyTransform(colour.convert(mode), transform)
        elif colour.mode not in ("L", "RGB"):
            colour = colour.convert("RGB")
        colour = colour.convert("L" if gray else "RGB")  # also a copy, independent of im
        orientation, exif = _exif(im)
        if orientation in UPRIGHT:
            colour = colour.transpose(UPRIGHT[orientation])
            alpha = alpha.transpose(UPRIGHT[orientation]) if alpha is not None else None
    except BadImage:
        raise
    except Exception as e:
        raise BadImage(f"cannot convert ({type(e).__name__}: {e})") from None
    return Picture(colour, alpha, exif, icc)


def _pixels(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """(8-bit colour: "L", "RGB", "CMYK" or another Pillow colour mode, alpha or None)."""
    if im.mode == "F":
        raise BadImage(FLOAT_REASON)
    if im.mode == "I" or im.mode.startswith("I;16"):
        a = np.asarray(im)
        if im.mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            raise BadImage(
                f"32-bit integer pixels from {a.min()} to {a.max()}: outside 0-65535, so their scale "
                "is unknown; save it as 8- or 16-bit"
            )
        return Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8), "L"), None
    if im.mode in ("LA", "La"):
        la = im.convert("LA")
        return la.getchannel("L"), la.getchannel("A")
    if im.mode in ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A")
    if im.mode == "1":
        return im.convert("L"), None
    return (im if im.mode in ("L", "RGB", "CMYK") else im.convert("RGB")), None


def _profile_space(icc: bytes) -> str:
    """An ICC profile's colour space ("RGB", "GRAY", "CMYK", ...); BadImage when unreadable."""
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.xcolor_space.strip()
    except Exception as e:
        raise BadImage(f"unreadable ICC colour profile ({type(e).__name__}: {e})") from None


SRGB = ImageCms.createProfile("sRGB")


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str) -> tuple[object | None, str]:
    """(the LittleCMS transform from `icc` to sRGB, None when it is sRGB already; the mode to give
    it) for pixels of `mode` ("L", "RGB", "CMYK"...). Raises BadImage.

    Cached (a pure function of the bytes): a folder's photos share a few profiles, and building
    one, with its check against sRGB, costs more than decoding a small photo."""
    space = _profile_space(icc)
    need = {"L": "GRAY", "RGB": "RGB", "CMYK": "CMYK"}.get(mode)
    if mode == "L" and space == "RGB":
        mode = "RGB"  # a gray image with an RGB profile (as Pillow's convert("L") leaves it)
    elif space != need:
        raise BadImage(f"its ICC colour profile is for {space} pixels, not {mode}")
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        intent = ImageCms.Intent.RELATIVE_COLORIMETRIC
        transform = ImageCms.buildTransform(profile, SRGB, mode, "RGB", intent)
    except Exception as e:
        raise BadImage(f"cannot convert its ICC colour profile to sRGB ({type(e).__name__}: {e})") from None
    if mode == "CMYK":
        return transform, mode
    # Probe: every 17th level of each channel, and every gray. The sRGB profile most photos carry
    # differs from LittleCMS's sRGB by at most 1/255; a profile that does is taken as sRGB.
    levels = np.arange(0, 256, 17, dtype=np.uint8)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    probe = np.concatenate([cube, np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)])
    probe = probe.reshape(1, -1, 3) if mode == "RGB" else probe[None, -256:, :1].reshape(1, -1)
    shown = np.asarray(ImageCms.applyTransform(Image.fromarray(probe, mode), transform), dtype=int)
    expected = probe.astype(int) if mode == "RGB" else np.repeat(probe.astype(int)[..., None], 3, -1)
    return (None if np.abs(shown - expected).max() <= 1 else transform), mode


def _exif(im: Image.Image) -> tuple[int, bytes | None]:
    """(EXIF orientation, 1 when absent or unusable; the EXIF without it, None when empty or
    unreadable). `im`'s own EXIF is left as it was."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF; we ignore such EXIF
        try:
            exif = im.getexif()
        except Exception:
            return 1, None
        value = exif.get(ORIENTATION, 1)
        orientation = value if type(value) is int and 1 <= value <= 8 else 1
        had = ORIENTATION in exif
        value = exif.pop(ORIENTATION, None)  # out for writing, put back below
        try:
            return orientation, (exif.tobytes() if len(exif) else None)
        except Exception:  # readable but not writable back (a tag of the wrong type): left out
            return orientation, None
        finally:
            if had:
                exif[ORIENTATION] = value


def read_image(path, max_pixels: int = MAX_PIXELS) -> Picture:
    """A file's Picture (open_image, then decode), the file closed again. Raises BadImage."""
    with open_image(path, max_pixels) as im:
        return decode(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """decode(im) as one 8-bit sRGB "RGB" image, what training and evaluation read: transparent
    pixels composited over white (what a viewer shows). Raises BadImage."""
    picture = decode(im)
    rgb = picture.image.convert("RGB")
    if picture.alpha is None:
        return rgb
    rgb.putalpha(picture.alpha)
    white = Image.new("RGBA", rgb.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgb).convert("RGB")


def is_gray(im: Image.Image) -> bool:
    """True when an RGB image has (almost) no colour: all three channels equal to within 2/255."""
    small = im.reduce(max(1, min(im.size) // 128))  # a thumbnail is enough to tell
    a = np.asarray(small, dtype=np.int16)
    return int(np.abs(a[..., 0] - a[..., 1]).max()) <= 2 and int(np.abs(a[..., 1] - a[..., 2]).max()) <= 2


def check_header(path, min_side: int, max_pixels: int = MAX_PIXELS) -> str | None:
    """Cheap start-up check of one training file: the reason to skip it, or None. The checks every
    command makes (open_image) come first, then training's own: colour, at least the crop's size."""
    try:
        with open_image(path, max_pixels) as im:
            w, h = im.size
            if im.mode in GRAY_MODES:
                return f"grayscale image (mode {im.mode}): no colour to learn from"
            if min(w, h) < min_side:
                return f"smaller than the {min_side}px crop ({w}x{h})"
    except BadImage as e:
        return str(e)
    return None


# --- listing and splitting ----------------------------------------------------------------------


def list_images(root) -> list[str]:
    """Sorted relative paths (posix style) of every image file below root, hidden files excluded."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                out.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(out)


def rank(files: Iterable[str], seed: int) -> list[str]:
    """Files in a seeded pseudo-random order that depends only on each name and the seed.

    Adding or removing files never reorders the others, so splits stay put as a folder grows.
    """
    key = lambda f: hashlib.sha256(f"{seed}/{f}".encode()).hexdigest()  # noqa: E731
    return sorted(files, key=key)


def scan(root, files: Iterable[str], min_side: int, limit: int | None = None):
    """Header-check files in order until `limit` good ones are found. Returns (good, skipped)."""
    good, skipped = [], []
    for f in files:
        if limit is not None and len(good) >= limit:
            break
        reason = check_header(Path(root, f), min_side)
        if reason is None:
            good.append(f)
        else:  # full paths, like the decode-time skips reported by the workers
            skipped.append((str(Path(root, f)), reason))
            log.warning("%s: skipped: %s", Path(root, f), reason)
    return good, skipped


def record_skips(seen: dict, skips: Iterable[tuple[str, str]]) -> None:
    """Log each decode-time skip once (workers cannot log for us) and remember it in `seen`."""
    for f, reason in skips:
        if f not in seen:
            seen[f] = reason
            log.warning("%s: skipped: %s", f, reason)


def skip_kind(reason: str) -> str:
    """A skip reason without its details, to count skips by: "cannot decode (OSError: ...)" is
    "cannot decode", "3 frames: animations ..." is "N frames" (a number is a detail too)."""
    return re.sub(r"\d[\d,]*", "N", reason.split(" (")[0].split(":")[0])


def count_skips(reasons: Iterable[str]) -> str:
    """How many skips of each kind (skip_kind), the most common first: "3 empty file, 1 cannot
    decode"; "" for none. The one summary of skips every command prints."""
    return ", ".join(f"{n} {kind}" for kind, n in Counter(map(skip_kind, reasons)).most_common())


# --- fixed splits of photo pools ----------------------------------------------------------------

SPLIT_FORMAT = "bw-colorization-split/1"
PARTS = {"train": 0.8, "dev": 0.1, "held-out": 0.1}  # fractions, in this order
# The split is fixed: a photo's part depends on its name and this seed only, never on a run's seed
# (which changes initialisation, order and augmentation), so every run is scored on the same photos.
SPLIT_SEED = 0


def split_part(name: str, seed: int = SPLIT_SEED) -> str:
    """The part ("train", "dev" or "held-out") a file belongs to: a pure function of its name (for
    example "photos-train/bsds500_test_100007.jpg") and the seed. Its SHA-256 as a number in [0, 1)
    falls into one of the PARTS' intervals, so a file's part never depends on the other files."""
    u = int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest(), 16) / 2**256
    edge = 0.0
    for part, fraction in PARTS.items():
        edge += fraction
        if u < edge:
            return part
    return part  # u within rounding of 1


def write_split(root, pools: list[str], out, seed: int = 0, pattern: str = "*.jpg") -> dict[str, int]:
    """Cut the image files named `pattern` of root/<pool>/ for each pool into PARTS by split_part
    and write the list (part, path relative to root, SHA-256) as a TSV file; never replaces an
    existing file. Returns the number of files per part. (The pattern keeps out what is not a
    photo of the pool, such as a contact sheet.)"""
    root, out = Path(root), Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: exists; a split is cut once (delete it to cut another)")
    rows = [
        (split_part(f"{pool}/{f}", seed), f"{pool}/{f}", datasets.sha256(root / pool / f))
        for pool in pools
        for f in list_images(root / pool)
        if fnmatch.fnmatch(f, pattern)
    ]
    header = f"# {SPLIT_FORMAT} seed={seed} parts=" + ",".join(f"{p}:{x}" for p, x in PARTS.items())
    lines = [header, "part\tpath\tsha256", *("\t".join(r) for r in rows)]
    # replace=False: a split file that appeared while we hashed is kept, not replaced
    results.write_atomic(out, lambda tmp: tmp.write_text("\n".join(lines) + "\n"), replace=False)
    return {p: sum(r[0] == p for r in rows) for p in PARTS}


def read_split(path) -> tuple[int, list[tuple[str, str, str]]]:
    """(seed, [(part, path, sha256), ...]) of a split file written by write_split."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable split file ({type(e).__name__})") from None
    if lines[:2] != lines[:1] + ["part\tpath\tsha256"] or not lines[0].startswith(f"# {SPLIT_FORMAT} seed="):
        raise ValueError(f"{path}: not a {SPLIT_FORMAT} file")
    header, _, *body = lines
    seed = int(header.split("seed=")[1].split()[0])
    rows = [tuple(line.split("\t")) for line in body if line]
    if any(len(r) != 3 or r[0] not in PARTS for r in rows):
        raise ValueError(f"{path}: malformed line (expected part, path, sha256 with a part of {list(PARTS)})")
    return seed, rows


def split_files(root, split_path, part: str) -> list[str]:
    """The files of one part of a split, relative to root, each checked against its SHA-256: a
    missing or changed file is an error naming it (a split that silently lost photos would score
    another set)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    _, rows = read_split(split_path)
    files = []
    for p, f, sha in rows:
        if p != part:
            continue
        path = Path(root, f)
        if not path.is_file():
            raise ValueError(f"{path}: listed in {split_path} but missing")
        if datasets.sha256(path) != sha:
            raise ValueError(f"{path}: its content differs from the SHA-256 in {split_path}")
        files.append(f)
    return files


def part_files(root, part: str, split_file=None) -> tuple[list[str], dict]:
    """The files of one part ("train", "dev" or "held-out") of a photo folder, relative to root,
    in name order, and how the folder was split (for the data description). Three kinds of folder,
    one rule each:
      * with `split_file` (write_split): the part's rows of that file, checked against their SHA-256;
      * a folder with train/, dev/ and held-out/ subfolders (the embedded photos, a test's few
        photos): the photos of that subfolder, so each part is what its author put there;
      * any other folder (a user's photos, a public set): the photos whose split_part(name) is
        `part`: 80/10/10 by a rule of the file's name, the same for every run and every seed."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    root = Path(root)
    if split_file is not None:
        how = {"rule": "split file", "file": Path(split_file).name, "sha256": datasets.sha256(split_file)}
        return split_files(root, split_file, part), how
    if all((root / p).is_dir() for p in PARTS):
        return [f"{part}/{f}" for f in list_images(root / part)], {"rule": "subfolders"}
    how = {"rule": "name", "seed": SPLIT_SEED, "fractions": PARTS}
    return [f for f in list_images(root) if split_part(f) == part], how


# --- the dataset ---------------------------------------------------------------------------------


def transform(size: int, augment: str, resize: int | None = None, crop_scale: float = 0.08):
    """PIL RGB -> uint8 tensor (3, size, size).

    "crop": RandomResizedCrop + flip (the ResNet notebook of the original, after Melas); each crop
      covers `crop_scale` to all of the photo's area (torchvision's default 0.08 zooms in up to
      3.5x: little of the scene's context is left for judging colour);
    "affine": Keras-style rotation 20°, shear 0.2 rad, zoom 0.8-1.2, flip (the original CNNs);
    "none": shorter side to `resize` (default: `size`), centre crop `size` (evaluation).
    """
    if augment == "crop":
        crop = v2.RandomResizedCrop(size, scale=(crop_scale, 1.0), antialias=True)
        steps = [crop, v2.RandomHorizontalFlip()]
    elif augment == "affine":
        steps = [
            v2.Resize(size, antialias=True),
            v2.RandomAffine(degrees=20, shear=float(np.degrees(0.2)), scale=(0.8, 1.2)),
            v2.RandomHorizontalFlip(),
            v2.CenterCrop(size),
        ]
    elif augment == "none":
        steps = [v2.Resize(resize or size, antialias=True), v2.CenterCrop(size)]
    else:
        raise ValueError(f"augment must be 'crop', 'affine' or 'none', got {augment!r}")
    return v2.Compose([*steps, v2.PILToTensor()])


class PhotoFolder(Dataset):
    """Colour photos under `root` named by `files`; items are uint8 (3, size, size) tensors.

    An item that fails to decode is returned as (path, reason) instead; `collate` sorts it out.
    """

    def __init__(
        self, root, files: list[str], size: int, augment: str = "none", resize: int | None = None,
        crop_scale: float = 0.08,
    ):  # fmt: skip
        self.root, self.files, self.size = Path(root), list(files), size
        self.transform = transform(size, augment, resize, crop_scale)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, None)
        path = self.root / self.files[i]
        try:
            with open_image(path) as im:
                rgb = to_rgb(im)
            if is_gray(rgb):
                raise BadImage("no colour: its three channels are equal")
        except BadImage as e:
            return (str(path), str(e))
        if seed is None:
            return self.transform(rgb)
        with torch.random.fork_rng(devices=[]):  # seed this item's augmentation, touch nothing else
            # The CPU generator alone: torch.manual_seed also queues lazy seeding of CUDA, XPU and
            # MTIA, with a stack trace each, which cost more than decoding the image.
            torch.default_generator.manual_seed(seed)
            return self.transform(rgb)


class EpochSampler(Sampler):
    """Yields (index, augmentation seed) pairs whose order and seeds depend only on (seed, epoch).

    Call set_epoch(e, seed) before each epoch (as with DistributedSampler; the run's seed, so that
    loaders need not be rebuilt for each seed of a study). Because each item carries its
    own seed, the augmentation is the same with 0, 1 or 8 workers, persistent or not, and a resumed
    run sees exactly the batches an uninterrupted one would have seen.

    Under torch.distributed (torchrun), process number `process` (0-based) of `processes` takes
    every processes-th item of the same permutation, padded by wrapping around so that all take the
    same number of batches; None means torch.distributed's rank and world size (0 and 1 without it).
    """

    def __init__(self, n: int, seed: int = 0, process: int | None = None, processes: int | None = None):
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.process = process if process is not None else torch.distributed.get_rank() if dist else 0
        self.processes = (
            processes if processes is not None else torch.distributed.get_world_size() if dist else 1
        )
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int, seed: int | None = None) -> None:
        self.epoch = epoch
        if seed is not None:
            self.seed = seed

    def __len__(self):
        return -(-self.n // self.processes)  # ceil: every process the same count

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        seeds = torch.randint(2**62, (self.n,), generator=g).tolist()
        pairs = list(zip(order, seeds, strict=True))
        pairs += pairs[: len(self) * self.processes - self.n]  # pad to a multiple of processes
        return iter(pairs[self.process :: self.processes])


def collate(items):
    """Stack good images into one uint8 batch; return (batch, [(path, reason), ...])."""
    good = [x for x in items if isinstance(x, torch.Tensor)]
    bad = [x for x in items if not isinstance(x, torch.Tensor)]
    batch = torch.stack(good) if good else torch.empty(0, 3, 1, 1, dtype=torch.uint8)
    return batch, bad


def sample_images(dataset: PhotoFolder, n: int = 6) -> torch.Tensor:
    """n images spread evenly over a dataset (the same ones every time), as a uint8 batch."""
    picks = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int)
    items = [dataset[int(i)] for i in picks]
    return torch.stack([x for x in items if isinstance(x, torch.Tensor)])


def held_out_photos(loader: DataLoader, n: int = 2) -> list[Path]:
    """The files of n photos of an evaluation loader (part_loader), spread evenly over its name
    order and never its first or last (which sample_images shows): whole photos, for the
    full-size figures."""
    ds = loader.dataset
    picks = np.linspace(0, len(ds) - 1, n + 2).round().astype(int)[1:-1]
    return [ds.root / ds.files[int(i)] for i in picks]


def to_model(rgb: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 batch from a loader -> (l, ab) on `device`: the only place training data becomes Lab."""
    rgb = rgb.to(device, non_blocking=True)
    return lab.rgb_to_model(rgb)


# --- loaders -----------------------------------------------------------------------------------------

# The embedded photos: real colour photos that ship in the repository (data/photos/README.md), cut
# into train/, dev/ and held-out/ subfolders. The repository's data/, whatever the working
# directory (notebooks run in notebooks/).
PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"


class Loaders(NamedTuple):
    train: DataLoader  # the train part, augmented, in each epoch's order (EpochSampler)
    val: DataLoader  # the dev part, whole photos: what chooses the checkpoint
    description: dict  # what the data was: goes into checkpoints and results files


def folder_loader(
    root, size: int = 256, resize: int | None = None, batch_size: int = 32, workers=None,
    files: list[str] | None = None,
):  # fmt: skip
    """Every usable colour photo of a folder (or the `files` below it, such as one part of a split),
    in name order, for evaluation: shorter side resized to `resize` (default: `size`), centre crop
    `size`. Returns (loader, skipped): the files the header check refused, each with its reason;
    files that fail to decode come with their batch."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    good, skipped = scan(root, sorted(files) if files is not None else list_images(root), min_side=1)
    if not good:
        raise ValueError(f"{root}: no usable colour image ({len(skipped)} skipped)")
    workers = default_workers() if workers is None else workers
    dataset = PhotoFolder(root, good, size, "none", resize)
    loader = DataLoader(
        dataset, batch_size=batch_size, collate_fn=collate, num_workers=workers, shuffle=False
    )
    return loader, skipped


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _first_process_first(make):
    """make()'s result; under torchrun the first process runs it while the others wait at a barrier,
    then they run it too and find its work done (a built or fetched data set), rather than all
    writing the same files at once. The first one's error, if any, is raised after the barrier (the
    others must not wait for ever); the others then try themselves, and fail likewise."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return make()
    first, done, error = torch.distributed.get_rank() == 0, None, None
    if first:
        try:
            done = make()
        except Exception as e:
            error = e
    torch.distributed.barrier()
    if error is not None:
        raise error
    return done if first else make()


def _skipped_why(skips) -> str:
    """'N file(s) skipped (3 empty file, 1 grayscale image)', for a part with no usable file."""
    if not skips:
        return "no image file found"
    return f"{len(skips)} file(s) skipped ({count_skips(r for _, r in skips)})"


def source_folder(source, data_root=None, fetch_options: dict | None = None) -> tuple[Path, dict]:
    """(the folder, its description) of a data source: "photos" (the embedded photos, PHOTOS), a
    public data set by name (a key of lib.datasets.DATASETS: "places205-test", "places365-val") or
    any folder of colour photos.

    A name is fetched on first use by lib.datasets (progress bar, size and checksum checks; a
    broken places205-test download resumes) into `data_root`/<name> (default
    lib.datasets.DEFAULT_ROOT, the repository's data/), under torchrun by the first process while
    the others wait; later calls find it extracted and download nothing. Its photo folder is then
    used as any folder; the description's "source" is the name and its "folder" that folder. A
    name wins over a folder of the same name in the working directory (write ./photos for that).
    `fetch_options`: keyword arguments for lib.datasets.fetch (url: a mirror; size, timeout), as
    for a test's local server. A fetch that fails raises ValueError "<name>: <lib.datasets'
    one-line reason>"; a source that is neither a name nor a folder, FileNotFoundError."""
    if str(source) == "photos":
        return PHOTOS, {"source": "photos"}
    if str(source) in datasets.DATASETS:
        name, data_root = str(source), Path(data_root or datasets.DEFAULT_ROOT)
        try:
            folder = _first_process_first(lambda: datasets.fetch(name, data_root, **(fetch_options or {})))
        except (datasets.FetchError, OSError) as e:  # OSError: disk full, permissions
            # ValueError: what the commands catch and print as one "error: ..." line
            raise ValueError(f"{name}: {' '.join(str(e).split())}") from None
        return Path(folder), {"source": name, "folder": str(Path(folder).resolve())}
    if not Path(source).is_dir():
        names = ", ".join(["photos", *datasets.DATASETS])
        raise FileNotFoundError(f"{source}: no such folder, nor a data set name ({names})")
    return Path(source), {"source": str(Path(source).resolve())}


def make_loaders(
    source="photos",
    size: int = 64,
    batch_size: int = 32,
    *,
    max_images: int | None = None,
    augment: str = "crop",
    workers: int | None = None,
    pin_memory: bool = False,
    split_file=None,
    crop_scale: float = 0.08,
    data_root=None,
    fetch_options: dict | None = None,
) -> Loaders:
    """The loaders a training run needs: its source's train part (augmented with `augment`) and
    its dev part (whole photos at `size`: shorter side resized, centre crop), which validates
    every epoch and chooses the checkpoint. The held-out part is never read here: it is for
    scoring (part_loader). `source` and the split: source_folder and part_files.

    `max_images` keeps the first N usable train photos of a fixed order (rank with SPLIT_SEED), so
    a bigger N keeps the smaller run's photos, whatever the run's seed. The run's seed sets each
    epoch's order and augmentation (EpochSampler.set_epoch), not the data.
    crop_scale: the smallest share of a photo's area a training crop covers (augment="crop").
    """
    workers = default_workers() if workers is None else workers
    root, desc = source_folder(source, data_root, fetch_options)
    train_all, how = part_files(root, "train", split_file)
    train_files, skip_t = scan(root, rank(train_all, SPLIT_SEED), size, max_images)
    dev_files, skip_v = scan(root, part_files(root, "dev", split_file)[0], size)
    for files, skips, part in ((train_files, skip_t, "train"), (dev_files, skip_v, "dev")):
        if not files:
            raise _no_usable(root, part, how, skips)
    desc |= {
        "split": how,
        "parts": {"train": "train", "val": "dev"},  # the val loader is the dev part
        "size": size,
        "max_images": max_images,
        "augment": augment,
        "crop_scale": crop_scale,
        "n_train": len(train_files),
        "n_val": len(dev_files),
        "skipped": [list(s) for s in skip_t + skip_v],
    }
    common = dict(
        batch_size=batch_size,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )
    train = DataLoader(
        PhotoFolder(root, sorted(train_files), size, augment, crop_scale=crop_scale),
        sampler=EpochSampler(len(train_files)),
        **common,
    )
    val = DataLoader(PhotoFolder(root, dev_files, size, "none"), shuffle=False, **common)
    return Loaders(train, val, desc)


def part_loader(
    source,
    part: str,
    size: int,
    batch_size: int = 32,
    workers=None,
    split_file=None,
    data_root=None,
    fetch_options: dict | None = None,
) -> tuple[DataLoader, dict]:
    """One part of a source (source_folder, part_files) for scoring: every usable photo in name
    order, shorter side resized to `size`, centre crop. Returns (loader, description: source,
    split, part, size, n_images, skipped). ValueError, one line, when the part has no usable photo."""
    root, desc = source_folder(source, data_root, fetch_options)
    files, how = part_files(root, part, split_file)
    good, skipped = scan(root, files, min_side=1)
    if not good:
        raise _no_usable(root, part, how, skipped)
    workers = default_workers() if workers is None else workers
    loader = DataLoader(
        PhotoFolder(root, good, size, "none"), batch_size=batch_size, collate_fn=collate,
        num_workers=workers, shuffle=False,
    )  # fmt: skip
    desc |= {"split": how, "part": part, "size": size, "n_images": len(good)}
    return loader, desc | {"skipped": [list(s) for s in skipped]}


def _no_usable(root, part: str, how: dict, skips) -> ValueError:
    """The one-line error of a part with no usable photo: the folder, the part, how the folder
    was cut into parts (part_files' description) and why each of the part's files was refused."""
    rule = {"split file": f"as {how.get('file')} lists", "subfolders": "its subfolder"}
    rule = rule.get(how["rule"], "parts by a rule of the file name")
    return ValueError(f"{root}: no usable colour image in its {part} part ({rule}): {_skipped_why(skips)}")
