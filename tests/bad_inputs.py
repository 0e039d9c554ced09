"""A mixed folder of hostile and ordinary image files, generated (no binary fixtures): what every
command must survive. `make_corpus(root)` writes it and returns {relative path: kind}, where kind
is one of:
  "colour"   an ordinary colour photo: colorized, scored and trained on
  "gray"     a usable black-and-white photo: colorized; refused by evaluate and train (no colour)
  "bad"      a file no command can use: refused by all three with the same one-line reason
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(w=48, h=40, seed=0) -> Image.Image:
    """A colourful photo-like image: gradients, a disc and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 128 + 60 * np.sin(x / 5)], -1)
    base[(x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 4) ** 2] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (gray or RGB) written by hand: Pillow cannot write 16-bit RGB."""
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def png_claiming(w: int, h: int) -> bytes:
    """A PNG header (valid checksums) claiming w x h 8-bit gray pixels, with almost no data: a
    decompression bomb's shape, refused by the size cap before any decoding."""

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def jpeg_claiming(w: int, h: int) -> bytes:
    """A few kilobytes of JPEG whose header claims w x h: libjpeg would fill the rest with gray."""
    real = encoded(photo(64, 64), "JPEG", quality=80)
    i = real.index(b"\xff\xc0")  # the frame header: FF C0, length, precision, height, width
    return real[: i + 5] + struct.pack(">HH", h, w) + real[i + 9 :]


def with_exif_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(img, "JPEG", quality=92, exif=exif.tobytes())


def corrupt_exif_jpeg() -> bytes:
    """A JPEG whose APP1 "Exif" segment holds garbage after its signature."""
    good = encoded(photo(), "JPEG", quality=92)
    junk = b"Exif\x00\x00" + b"MM\x00\x2a\xff\xff\xff\xf0" + bytes(range(256)) * 2
    return good[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + good[2:]


def frames(fmt: str, n: int = 3, **kw) -> bytes:
    imgs = [photo(seed=i) for i in range(n)]
    buf = io.BytesIO()
    imgs[0].save(buf, fmt, save_all=True, append_images=imgs[1:], **kw)
    return buf.getvalue()


def make_corpus(root: Path, outside: Path) -> dict[str, str]:
    """Write the mixed folder under root (and the targets of its links under `outside`)."""
    root.mkdir(parents=True)
    outside.mkdir(parents=True, exist_ok=True)
    colour, gray = photo(), photo(seed=1).convert("L")
    files: dict[str, tuple[bytes | None, str]] = {
        # ordinary colour photos, in every format and mode a camera or an editor writes
        "colour.jpg": (encoded(colour, "JPEG", quality=92), "colour"),
        "colour.png": (encoded(photo(seed=2), "PNG"), "colour"),
        "colour.webp": (encoded(photo(seed=3), "WEBP", quality=90), "colour"),
        "colour.bmp": (encoded(photo(seed=4), "BMP"), "colour"),
        "colour.tif": (encoded(photo(seed=5), "TIFF"), "colour"),
        "rgba.png": (encoded(photo(seed=6).convert("RGBA"), "PNG"), "colour"),
        "palette.gif": (encoded(photo(seed=7).convert("P"), "GIF"), "colour"),
        "cmyk.jpg": (encoded(photo(seed=8).convert("CMYK"), "JPEG", quality=92), "colour"),
        "rgb16.png": (png16(np.asarray(photo(seed=9), dtype=np.uint16) * 257), "colour"),
        "rotated.jpg": (with_exif_orientation(photo(40, 48, seed=10), 6), "colour"),
        "sub/deep/nested.png": (encoded(photo(seed=11), "PNG"), "colour"),
        "wide.png": (encoded(photo(200, 36, seed=12), "PNG"), "colour"),
        # usable black-and-white photos
        "gray.png": (encoded(gray, "PNG"), "gray"),
        "gray.jpg": (encoded(gray, "JPEG", quality=92), "gray"),
        "gray_la.png": (encoded(gray.convert("LA"), "PNG"), "gray"),
        "gray16.png": (png16(np.asarray(gray, dtype=np.uint16)[..., None] * 257), "gray"),
        "bilevel.bmp": (encoded(gray.convert("1"), "BMP"), "gray"),
        "gray_as_rgb.jpg": (encoded(gray.convert("RGB"), "JPEG", quality=92), "gray"),
        # files nothing can use
        "empty.jpg": (b"", "bad"),
        "text.png": (b"this is not an image\n" * 20, "bad"),
        "html.jpg": (b"<html><body>404 not found</body></html>", "bad"),
        "random.webp": (np.random.default_rng(0).bytes(3000), "bad"),
        "truncated.jpg": (encoded(photo(96, 96), "JPEG", quality=95)[:900], "bad"),
        "truncated.png": (encoded(photo(96, 96), "PNG")[:700], "bad"),
        "claims_huge.jpg": (jpeg_claiming(9000, 7000), "bad"),
        "bomb.png": (png_claiming(30000, 30000), "bad"),
        "eps_renamed.jpg": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 48 40\nshowpage\n%%EOF\n", "bad"),
        "pages.tif": (frames("TIFF"), "bad"),
        "animated.gif": (frames("GIF", duration=100, loop=0), "bad"),
        "animated.webp": (frames("WEBP", duration=100, loop=0), "bad"),
        "float.tif": (encoded(Image.fromarray(np.asarray(gray, np.float32) / 255, "F"), "TIFF"), "bad"),
        "int32.tif": (encoded(Image.fromarray(np.asarray(gray, np.int32) * 70000, "I"), "TIFF"), "bad"),
        "broken_link.png": (None, "bad"),
        "link_outside.png": (None, "colour"),
        "corrupt_exif.jpg": (corrupt_exif_jpeg(), "colour"),
    }
    kinds = {}
    for name, (content, kind) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "broken_link.png":
            path.symlink_to(outside / "gone.png")
        elif name == "link_outside.png":
            (outside / "target.png").write_bytes(encoded(photo(seed=13), "PNG"))
            path.symlink_to(outside / "target.png")
        else:
            path.write_bytes(content)
        kinds[name] = kind
    return kinds
