"""A mixed folder of hostile and ordinary image files, generated (no binary fixtures): what every
command must survive. `make_corpus(root)` writes it and returns {relative path: kind}, where kind
is one of:
  "colour"     an ordinary colour photo: colorized, scored and trained on
  "gray"       a usable black-and-white photo: colorized; refused by evaluate and train (no colour)
  "small"      a colour photo smaller than the crop: colorized; refused by evaluate and train
  "elongated"  a colour photo over 16:1: refused by colorize (too elongated for the model); scored
               and trained on (square crops)
  "strip"      a few pixels wide and thousands long: refused by colorize (too elongated) and by
               evaluate and train (smaller than the crop)
  "bad"        a file no command can use: refused by all three with the same one-line reason
Not regular files (a FIFO, a socket, links to devices) and a folder named like an image are among
them. FIXED holds the cases that lib mishandled until issue 21, each with the bug it had.
"""

import io
import os
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms


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


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (gray or RGB) written by hand: Pillow cannot write 16-bit RGB."""
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def png_claiming(w: int, h: int) -> bytes:
    """A PNG header (valid checksums) claiming w x h 8-bit gray pixels, with almost no data: a
    decompression bomb's shape, refused by the size cap before any decoding."""
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


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """A PNG's chunks as (type, data), in order."""
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        out.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + n]))
        i += 12 + n
    return out


def png_of(chunks) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunk(t, d) for t, d in chunks)


def png_with_chunk(kind: bytes, data: bytes, seed: int) -> bytes:
    """A photo's PNG with one more chunk before its pixels (IDAT)."""
    chunks = png_chunks(encoded(photo(seed=seed), "PNG"))
    i = next(i for i, (t, _) in enumerate(chunks) if t == b"IDAT")
    return png_of([*chunks[:i], (kind, data), *chunks[i:]])


def png_idat_cut() -> bytes:
    """A PNG whose IDAT chunk holds half of its compressed pixels, with a valid CRC: the chunks are
    well formed, the pixel data ends early."""
    chunks = png_chunks(encoded(photo(96, 96, seed=30), "PNG"))
    return png_of([(t, d[: len(d) // 2] if t == b"IDAT" else d) for t, d in chunks])


def png_damaged(where: str) -> bytes:
    """A PNG with one byte damaged and its chunk's CRC left as it was: "header" in IHDR's CRC,
    "pixels" in the middle of IDAT's compressed data (zlib's own checksum no longer matches)."""
    good = bytearray(encoded(photo(seed=31), "PNG"))
    i = good.index(b"IDAT")
    (n,) = struct.unpack(">I", good[i - 4 : i])
    good[29 if where == "header" else i + 4 + n // 2] ^= 0x10  # 29: IHDR's CRC (8 + 4 + 4 + 13)
    return bytes(good)


def png_crc_only_check() -> bytes:
    """A PNG whose pixels were changed after it was written, so that only the IDAT chunk's CRC
    tells: uncompressed (stored) deflate with its own checksum recomputed, one pixel inverted."""
    a = np.asarray(photo(seed=40))
    h, w, _ = a.shape
    raw = bytearray(b"".join(b"\x00" + a[y].tobytes() for y in range(h)))
    written = zlib.compress(bytes(raw), 0)
    k = 1 + (h // 2) * (1 + 3 * w) + 3 * (w // 2)  # the middle pixel
    raw[k : k + 3] = bytes(255 - v for v in raw[k : k + 3])
    changed = zlib.compress(bytes(raw), 0)
    idat = struct.pack(">I", len(changed)) + b"IDAT" + changed
    idat += struct.pack(">I", zlib.crc32(b"IDAT" + written) & 0xFFFFFFFF)  # the CRC of what was written
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + chunk(b"IEND", b"")


def gif_claiming(w: int, h: int) -> bytes:
    """A one-pixel GIF whose screen and image descriptors claim w x h."""
    real = bytearray(encoded(Image.new("P", (1, 1)), "GIF"))
    real[6:10] = struct.pack("<HH", w, h)  # the logical screen
    i = real.index(b"\x2c")  # the image descriptor: 2C, left, top, width, height
    real[i + 5 : i + 9] = struct.pack("<HH", w, h)
    return bytes(real)


def bmp_claiming(w: int, h: int) -> bytes:
    real = bytearray(encoded(photo(seed=38), "BMP"))
    real[18:26] = struct.pack("<ii", w, h)  # BITMAPINFOHEADER's width and height
    return bytes(real)


def jpeg_with_app1(payload: bytes, seed: int) -> bytes:
    """A JPEG photo with an APP1 segment holding `payload` (EXIF: b"Exif\0\0" + a TIFF block)."""
    good = encoded(photo(seed=seed), "JPEG", quality=92)
    return good[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + good[2:]


def orientation_of_type(kind: int, count: int, value: bytes, extra: bytes = b"") -> bytes:
    """A JPEG whose EXIF orientation has TIFF type `kind` (2 ASCII, 5 RATIONAL ...), not SHORT."""
    entry = struct.pack(">HHI", 0x0112, kind, count) + value
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + entry + b"\x00\x00\x00\x00" + extra
    return jpeg_with_app1(b"Exif\x00\x00" + tiff, seed=19)


def with_profile(img: Image.Image, fmt: str, profile: str, **kw) -> bytes:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile(profile)).tobytes()
    return encoded(img, fmt, icc_profile=icc, **kw)


def la_half_transparent() -> bytes:
    la = np.array(photo(seed=28).convert("LA"))
    la[:10, :, 1] = 0
    return encoded(Image.fromarray(la, "LA"), "PNG")


def fifo(path: Path, outside: Path) -> None:
    os.mkfifo(path)


def unix_socket(path: Path, outside: Path) -> None:
    """A Unix socket's file; bound from its folder when the full path is too long for bind."""
    s = socket.socket(socket.AF_UNIX)
    here = os.getcwd()
    try:
        if len(str(path)) < 100:
            s.bind(str(path))
        else:
            os.chdir(path.parent)
            s.bind(path.name)
    finally:
        os.chdir(here)
        s.close()


def link_to(target):
    def make(path: Path, outside: Path) -> None:
        path.symlink_to(target)

    return make


def broken_link(path: Path, outside: Path) -> None:
    path.symlink_to(outside / "gone.png")


def photo_outside(path: Path, outside: Path) -> None:
    (outside / "target.png").write_bytes(encoded(photo(seed=13), "PNG"))
    path.symlink_to(outside / "target.png")


def corpus() -> dict:
    """{relative path: (its bytes, or a function (path, outside) that makes it; its kind)}."""
    colour, gray = photo(), photo(seed=1).convert("L")
    return {
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
        "palette_trns.png": (encoded(photo(seed=27).convert("P"), "PNG", transparency=5), "colour"),
        "transparent.gif": (transparent_gif(), "colour"),  # one frame, one palette entry transparent
        "jpeg_named.png": (encoded(photo(seed=29), "JPEG", quality=92), "colour"),  # the content decides
        "folder.png/inside.jpg": (encoded(photo(seed=39), "JPEG", quality=92), "colour"),  # a folder
        # usable black-and-white photos
        "gray.png": (encoded(gray, "PNG"), "gray"),
        "gray.jpg": (encoded(gray, "JPEG", quality=92), "gray"),
        "gray_la.png": (encoded(gray.convert("LA"), "PNG"), "gray"),
        "gray16.png": (png16(np.asarray(gray, dtype=np.uint16)[..., None] * 257), "gray"),
        "bilevel.bmp": (encoded(gray.convert("1"), "BMP"), "gray"),
        "gray_as_rgb.jpg": (encoded(gray.convert("RGB"), "JPEG", quality=92), "gray"),
        "la_transparent.png": (la_half_transparent(), "gray"),
        # EXIF oddities: used as stored
        "orientation_0.jpg": (with_exif_orientation(photo(seed=14), 0), "colour"),
        "orientation_9.jpg": (with_exif_orientation(photo(seed=15), 9), "colour"),
        "orientation_255.jpg": (with_exif_orientation(photo(seed=16), 255), "colour"),
        "orientation_text.jpg": (orientation_of_type(2, 2, b"6\x00\x00\x00"), "colour"),  # ASCII "6"
        "orientation_rational.jpg": (  # 13/2
            orientation_of_type(5, 1, struct.pack(">I", 26), struct.pack(">II", 13, 2)),
            "colour",
        ),
        "corrupt_exif.jpg": (corrupt_exif_jpeg(), "colour"),
        "exif_garbage.png": (png_with_chunk(b"eXIf", b"MM\x00\x2a" + bytes(range(200)), seed=17), "colour"),
        "exif_huge_count.jpg": (  # an IFD of 65,535 entries in 250 bytes
            jpeg_with_app1(b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + bytes(range(7, 250)), seed=21),
            "colour",
        ),
        # shapes
        "elongated_17to1.png": (encoded(photo(544, 32, seed=36), "PNG"), "elongated"),
        # files nothing can use
        "empty.jpg": (b"", "bad"),
        "empty.webp": (b"", "bad"),
        "text.png": (b"this is not an image\n" * 20, "bad"),
        "notes.jpg": (b"shopping list\n- milk\n- film, 36 exposures\n", "bad"),
        "html.jpg": (b"<html><body>404 not found</body></html>", "bad"),
        "random.webp": (np.random.default_rng(0).bytes(3000), "bad"),
        "truncated.jpg": (encoded(photo(96, 96), "JPEG", quality=95)[:900], "bad"),
        "truncated.png": (encoded(photo(96, 96), "PNG")[:700], "bad"),
        "idat_cut.png": (png_idat_cut(), "bad"),
        "bad_crc_header.png": (png_damaged("header"), "bad"),
        "bad_crc_pixels.png": (png_damaged("pixels"), "bad"),
        "claims_huge.jpg": (jpeg_claiming(9000, 7000), "bad"),
        "bomb.png": (png_claiming(30000, 30000), "bad"),
        "claims_900mp.gif": (gif_claiming(30000, 30000), "bad"),
        "claims_900mp.bmp": (bmp_claiming(30000, 30000), "bad"),
        "eps_renamed.jpg": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 48 40\nshowpage\n%%EOF\n", "bad"),
        "pages.tif": (frames("TIFF"), "bad"),
        "two_pages.tif": (frames("TIFF", n=2), "bad"),
        "animated.gif": (frames("GIF", duration=100, loop=0), "bad"),
        "animated.webp": (frames("WEBP", duration=100, loop=0), "bad"),
        "animated_lossless.webp": (frames("WEBP", n=2, duration=100, loop=0, lossless=True), "bad"),
        "apng.png": (frames("PNG", duration=100, loop=0), "bad"),  # not animated.png: animated.gif's output
        "float.tif": (encoded(Image.fromarray(np.asarray(gray, np.float32) / 255, "F"), "TIFF"), "bad"),
        "int32.tif": (encoded(Image.fromarray(np.asarray(gray, np.int32) * 70000, "I"), "TIFF"), "bad"),
        "huge_iccp.png": (  # 3 MB of zeros as its colour profile
            png_with_chunk(b"iCCP", b"junk\x00\x00" + zlib.compress(bytes(3_000_000)), seed=41),
            "bad",
        ),
        "garbage_iccp.png": (  # 200 kB of noise as its colour profile
            png_with_chunk(
                b"iCCP", b"junk\x00\x00" + zlib.compress(np.random.default_rng(1).bytes(200_000)), 42
            ),
            "bad",
        ),
        "lab_profile.png": (with_profile(photo(seed=23), "PNG", "LAB"), "bad"),  # not an RGB profile
        "srgb_profile_on_cmyk.jpg": (with_profile(photo(seed=24).convert("CMYK"), "JPEG", "sRGB"), "bad"),
        # not regular files, and links
        "broken_link.png": (broken_link, "bad"),
        "dangling.tif": (link_to("nowhere/x.tif"), "bad"),
        "link_outside.png": (photo_outside, "colour"),
        "fifo.png": (fifo, "bad"),
        "socket.jpg": (unix_socket, "bad"),
        "null.png": (link_to("/dev/null"), "bad"),
        "zero.jpg": (link_to("/dev/zero"), "bad"),
    }


def transparent_gif() -> bytes:
    img = photo(seed=22).convert("P")
    return encoded(img, "GIF", transparency=int(img.getpixel((0, 0))))


# Cases that lib mishandled until this round (issue 21), each with the bug it had: kept apart so
# that the bug stays on record; make_corpus writes them with the others.
FIXED = {
    "loop.png": (link_to("loop.png"), "bad", "colorize and evaluate stopped with a traceback (Path.resolve: "
                 "RuntimeError, symlink loop) in colorize.real_inputs"),
    "loop_a.jpg": (link_to("loop_b.jpg"), "bad", "as loop.png"),
    "loop_b.jpg": (link_to("loop_a.jpg"), "bad", "as loop.png"),
    os.fsdecode(b"caf\xe9.png"): (b"not a PNG", "bad", "train stopped, naming no file: splits.rank (and "
                                  "split_part) encoded names as strict UTF-8"),
    os.fsdecode(b"photo\xff.jpg"): (encoded(photo(seed=33), "JPEG", quality=92), "colour", "as caf\\xe9.png"),
    "one_pixel.png": (encoded(Image.new("RGB", (1, 1), (200, 40, 30)), "PNG"), "small", "evaluate scored "
                      "photos smaller than its crop, upscaled (data.folder_loader scanned with min_side=1)"),
    "small.jpg": (encoded(photo(24, 20, seed=37), "JPEG", quality=92), "small", "as one_pixel.png"),
    "strip_3000x4.png": (encoded(photo(3000, 4, seed=34), "PNG"), "strip", "as one_pixel.png"),
    "strip_4x3000.png": (encoded(photo(4, 3000, seed=35), "PNG"), "strip", "as one_pixel.png"),
    "crc_only.png": (png_crc_only_check(), "bad", "every command used a wrong picture: Pillow never "
                     "checks IDAT chunks' CRCs"),
    "cmyk.tif": (encoded(photo(seed=25).convert("CMYK"), "TIFF"), "colour", "colorize wrote an RGB TIFF "
                 "that Pillow cannot open: the input's own TIFF tags (photometric CMYK ...) went into it as "
                 "its EXIF"),
    "gray16.tif": (encoded(Image.fromarray(np.asarray(photo(seed=1).convert("L"), np.uint16) * 257), "TIFF"),
                   "gray", "as cmyk.tif (16 bits per sample, photometric gray)"),
}  # fmt: skip


def make_corpus(root: Path, outside: Path) -> dict[str, str]:
    """Write the mixed folder under root (and the targets of its links under `outside`), FIXED's
    cases included. Returns {relative path: kind}."""
    root.mkdir(parents=True)
    outside.mkdir(parents=True, exist_ok=True)
    files = corpus() | {name: (content, kind) for name, (content, kind, _) in FIXED.items()}
    kinds = {}
    for name, (content, kind) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path, outside)
        else:
            path.write_bytes(content)
        kinds[name] = kind
    return kinds
