"""Files in, pictures out: the one decode path and the bad-input policy of every command.

Bad input never crashes a run and never silently becomes a wrong image. Every command (training,
evaluation, colorize) reads a file through the same two steps, `open_image` (header checks: the
allowed formats, the size cap, one frame, a JPEG long enough for its size) and `decode` (pixels,
orientation, bit depth, colour profile to sRGB), so a file that cannot be used is refused with
the same reason (a BadImage) everywhere; each file is either a correct image or skipped with one
line "<file>: skipped: <reason>". Training and evaluation add their own rules on top (no
grayscale photos, none smaller than the crop):
  * a cheap header scan at start-up (`scan`, `check_header`) skips what the header shows;
  * problems only visible on full decode (truncated or corrupt data, RGB files whose three channels
    are equal) are caught in lib.data's workers, travel with the batch (lib.data.collate) and are
    logged once by the main process (`record_skips`).
What a model is shown is bounded too (lib.shapes.working_shape): a photo beyond its limits is
skipped with its reason like a BadImage, before any tensor is made.
Files are never moved, renamed or written.
"""

import functools
import io
import logging
import os
import re
import stat
import struct
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageCms

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


_KINDS = {
    stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
}  # fmt: skip


def open_image(path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a file lazily (header only) and apply every check that needs no pixels. Raises BadImage.

    Refused: what is not a regular file (a folder, a FIFO, a socket, a device); an empty file; a
    format outside IMAGE_FORMATS (named when Pillow knows it); more than `max_pixels` pixels; more
    than one frame (an animation, a multi-page TIFF); 32-bit float pixels (see `decode`); a JPEG
    with far fewer bytes than its header's size needs.
    """
    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            raise BadImage(f"a broken symbolic link (to {os.readlink(path)})")
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read, a device never end
            raise BadImage(f"not a regular file ({_KINDS.get(stat.S_IFMT(info.st_mode), 'a special file')})")
        n_bytes = info.st_size
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
    if im.format == "PNG" and (damage := _png_damage(im.fp)):
        raise BadImage(damage)


def _png_damage(f) -> str | None:
    """Why a PNG's chunks are damaged (a CRC that does not match, a chunk cut short), or None.
    Pillow checks no CRC of the pixel data (IDAT), so a flipped bit could decode, without a word,
    into a wrong picture. Reads the file once, a MB at a time; leaves `f` where it was."""
    at, kind = f.tell(), b""
    try:
        f.seek(8)  # past the signature
        while kind != b"IEND" and len(header := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            crc, left = zlib.crc32(kind), length
            while left and (piece := f.read(min(1 << 20, left))):
                crc, left = zlib.crc32(piece, crc), left - len(piece)
            stored = f.read(4)
            if left or len(stored) < 4:
                return "truncated (a PNG chunk cut short)"
            if struct.unpack(">I", stored)[0] != crc:
                return f"damaged (a PNG {kind.decode('latin-1')} chunk whose checksum does not match)"
        return None if kind == b"IEND" else "truncated (no PNG end chunk)"
    finally:
        f.seek(at)


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
      * EXIF: an orientation of 1-8 is applied, here only. EXIF that cannot be read, or an orientation
        that is not an integer of 1-8, is ignored, as viewers ignore it: the pixels are used as stored.
        EXIF that can be read but not written back (a tag of the wrong type) is left out of `exif`.
      * Transparency becomes `alpha` (premultiplied modes are unpremultiplied; a palette's
        transparent entry counts).

    The Picture's images are new: `im` may be closed afterwards.
    """
    try:
        im, found = _as_stored(im)
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
        orientation, exif = found or _exif(im)
        if orientation in UPRIGHT:
            colour = colour.transpose(UPRIGHT[orientation])
            alpha = alpha.transpose(UPRIGHT[orientation]) if alpha is not None else None
    except BadImage:
        raise
    except Exception as e:
        raise BadImage(f"cannot convert ({type(e).__name__}: {e})") from None
    return Picture(colour, alpha, exif, icc)


def _as_stored(im: Image.Image) -> tuple[Image.Image, tuple[int, bytes | None] | None]:
    """(the image to load, its `_exif` if read here): a TIFF not yet loaded with its orientation tag
    made 1 in a copy of its bytes (no second decode), an XMP one dropped from the EXIF Pillow turns
    TIFFs by on load (libtiff too before Pillow 11.2, YCbCr strip by strip): `decode` alone turns."""
    if im.format != "TIFF" or not im.tile:  # the other formats are never turned while loading
        return im, None
    found, frame, tags = _exif(im), im.tell(), im.tag_v2
    if tags.get(ORIENTATION, 1) != 1:
        im.fp.seek(0)
        data = bytearray(im.fp.read())
        e, big = "<" if data[:2] == b"II" else ">", 43 in data[2:4]  # byte order; BigTIFF
        (n,), size = struct.unpack_from(e + ("Q" if big else "H"), data, tags.offset), 20 if big else 12
        for at in range(tags.offset + (8 if big else 2), len(data), size)[:n]:  # the IFD's entries
            if struct.unpack_from(e + "H", data, at)[0] == ORIENTATION:  # made SHORT, one value: 1
                struct.pack_into(e + ("HHQH6x" if big else "HHLH2x"), data, at, ORIENTATION, 3, 1, 1)
        im = Image.open(io.BytesIO(bytes(data)), formats=["TIFF"])
        im.seek(frame)
    im.getexif().pop(ORIENTATION, None)  # Pillow's cached EXIF, which it turns the TIFF by
    return im, found


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


# A TIFF's own layout tags, which Pillow's getexif lists with the metadata: they describe the
# input's pixels (size, samples, compression, strips, photometric, its ICC profile), so written
# into an output of other pixels they would contradict them (a CMYK TIFF's photometric on RGB).
TIFF_LAYOUT = {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 290, 291,
               292, 293, 317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 529, 530, 531, 532,
               34675}  # fmt: skip


def _exif(im: Image.Image) -> tuple[int, bytes | None]:
    """(EXIF orientation, 1 when absent or unusable; the EXIF without it and without a TIFF's
    layout (TIFF_LAYOUT), None when empty or unreadable). `im`'s own EXIF is left as it was."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF; we ignore such EXIF
        try:
            exif = im.getexif()
        except Exception:
            return 1, None
        value = exif.get(ORIENTATION, 1)
        orientation = value if type(value) is int and 1 <= value <= 8 else 1
        kept = Image.Exif()  # the metadata: not the orientation (applied), nor a TIFF's layout
        for tag, value in exif.items():
            if tag != ORIENTATION and tag not in TIFF_LAYOUT:
                kept[tag] = value
        try:
            return orientation, (kept.tobytes() if len(kept) else None)
        except Exception:  # readable but not writable back (a tag of the wrong type): left out
            return orientation, None


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


# --- listing image files and skipping bad ones -------------------------------------------------


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
