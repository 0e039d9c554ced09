"""The EXIF orientation, checked against an independent decode: for every format, mode and
compression the decode path admits (and that can carry EXIF: BMP and GIF cannot), a file in each
of the eight orientations must decode (images.read_image, what every command reads) to exactly its
orientation-1 twin turned by numpy here, by the EXIF spec alone. The twins share their compressed
bytes: only the orientation's value differs (and, in a PNG, its eXIf chunk's checksum), so lossy
formats are compared exactly too. Where the format is lossless, the orientation-1 decode is checked
against the pixels written, so the reference itself does not rest on Pillow's reading. An
orientation in XMP (tiff:Orientation, which Pillow reads as the EXIF tag when there is none) is
checked the same way.

TIFFs come in strips of a few rows and in tiles, so that a decoder turning each strip or tile by
itself (libtiff's TIFFRGBAImage does, for YCbCr pixels) shows as stripes."""

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, PngImagePlugin

from lib import images

W, H = 24, 16  # not square: a rotation shows in the shape
ORIENTATION = 0x0112


def source() -> np.ndarray:
    """A photo-like (H, W, 3) gradient with a distinct marker in its top-left corner."""
    y, x = np.mgrid[0:H, 0:W]
    a = np.stack([40 + 200 * x / (W - 1), 30 + 200 * y / (H - 1), 128 + 90 * np.sin(x / 3 + y / 4)], -1)
    a[:3, :5] = (250, 20, 200)
    return np.clip(a, 0, 255).astype(np.uint8)


def picture(mode: str) -> Image.Image:
    rgb = Image.fromarray(source())
    if mode in ("RGBA", "LA"):
        alpha = Image.fromarray((64 + 191 * np.mgrid[0:H, 0:W][1] / (W - 1)).astype(np.uint8))
        im = rgb.convert(mode[0] if mode == "LA" else "RGB")
        im.putalpha(alpha)
        return im
    if mode == "P":
        return rgb.quantize(32)
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257 + 100)
    return rgb.convert(mode)


def written(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(image, alpha) as the decode must give them back from a lossless file, computed with numpy
    from the pixels written; None where that needs a colour conversion (CMYK, YCbCr)."""
    a = np.asarray(im)
    if im.mode in ("RGB", "L"):
        return a, None
    if im.mode in ("RGBA", "LA"):
        return a[..., :-1].squeeze(-1) if im.mode == "LA" else a[..., :3], a[..., -1]
    if im.mode == "P":
        return np.array(im.getpalette("RGB"), np.uint8).reshape(-1, 3)[a], None
    if im.mode == "I;16":
        return (a >> 8).astype(np.uint8), None
    if im.mode == "1":
        return a.astype(np.uint8) * 255, None
    return None


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels `a` (rows first) as shown, by the EXIF spec's meaning of each value."""
    return {
        1: lambda: a,
        2: lambda: a[:, ::-1],  # mirror horizontal
        3: lambda: np.rot90(a, 2),  # rotate 180
        4: lambda: a[::-1],  # mirror vertical
        5: lambda: a.swapaxes(0, 1),  # transpose: the top-left corner stays
        6: lambda: np.rot90(a, -1),  # rotate 90 clockwise
        7: lambda: np.rot90(a, 2).swapaxes(0, 1),  # transverse: the bottom-right corner goes top-left
        8: lambda: np.rot90(a, 1),  # rotate 90 counter-clockwise
    }[orientation]()


# --- the files: one case per format x mode x compression (x layout) -----------------------------


def exif_1() -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = 1
    return exif.tobytes()


def pillow(fmt: str, **kw):
    return lambda im: _saved(im, fmt, exif=exif_1(), **kw)


def pillow_tiff(compression: str, rows: int = 4):
    """Pillow's TIFF writer (libtiff's for a compression), `rows` rows per strip."""
    return lambda im: _saved(im, "TIFF", compression=compression, tiffinfo={ORIENTATION: 1, 278: rows})


def tifffile_tiff(**kw):
    """tifffile's writer: tiles, planes, big-endian files, which Pillow does not write."""

    def write(im: Image.Image) -> bytes:
        a = np.asarray(im)
        photometric = {"L": "minisblack", "YCbCr": "ycbcr"}.get(im.mode, "rgb")
        extra = {"extrasamples": ["unassalpha"]} if im.mode == "RGBA" else {}
        if im.mode == "YCbCr":
            extra["subsampling"] = (1, 1)
        if kw.get("planarconfig") == "separate":
            a = np.moveaxis(a, -1, 0)
        buf = io.BytesIO()
        tifffile.imwrite(
            buf, a, photometric=photometric, extratags=[(ORIENTATION, 3, 1, 1, True)], **kw, **extra
        )
        return buf.getvalue()

    return write


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="1"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


def xmp(fmt: str, **kw):
    """An orientation in XMP only: a TIFF's tag 700, a PNG's iTXt chunk."""
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        return lambda im: _saved(im, fmt, pnginfo=info)
    return lambda im: _saved(im, fmt, tiffinfo={700: XMP, 278: 4}, **kw)


def _saved(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


LOSSLESS_TIFF = ["raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits", "lzma", "zstd"]
CASES = {
    **{f"JPEG-{m}": (m, pillow("JPEG", quality=90)) for m in ("L", "RGB", "CMYK")},
    "JPEG-RGB-progressive": ("RGB", pillow("JPEG", quality=90, progressive=True)),
    "JPEG-RGB-444": ("RGB", pillow("JPEG", quality=90, subsampling=0)),
    **{f"PNG-{m}": (m, pillow("PNG")) for m in ("1", "L", "LA", "RGB", "RGBA", "P", "I;16")},
    **{f"WEBP-{m}-lossy": (m, pillow("WEBP", quality=80)) for m in ("RGB", "RGBA")},
    **{f"WEBP-{m}-lossless": (m, pillow("WEBP", lossless=True, exact=True)) for m in ("RGB", "RGBA")},
    **{
        f"TIFF-{m}-{c}": (m, pillow_tiff(c))
        for c in LOSSLESS_TIFF
        for m in ("1", "L", "LA", "RGB", "RGBA", "P", "CMYK", "I;16", "YCbCr")
    },
    **{f"TIFF-1-{c}": ("1", pillow_tiff(c)) for c in ("group3", "group4")},
    **{f"TIFF-{m}-jpeg": (m, pillow_tiff("jpeg", rows=8)) for m in ("L", "RGB", "RGBA", "CMYK", "YCbCr")},
    **{
        f"TIFF-{m}-{c or 'raw'}-tiled": (m, tifffile_tiff(tile=(16, 16), compression=c))
        for c in (None, "zlib", "lzma")
        for m in ("L", "RGB", "RGBA", "YCbCr")
    },
    "TIFF-RGB-zlib-tiled-planar": (
        "RGB",
        tifffile_tiff(tile=(16, 16), compression="zlib", planarconfig="separate"),
    ),
    "TIFF-RGB-zlib-planar": (
        "RGB",
        tifffile_tiff(compression="zlib", rowsperstrip=4, planarconfig="separate"),
    ),
    "TIFF-YCbCr-zlib-bigendian": ("YCbCr", tifffile_tiff(compression="zlib", rowsperstrip=4, byteorder=">")),
    "TIFF-RGB-zlib-tiled-bigendian": ("RGB", tifffile_tiff(tile=(16, 16), compression="zlib", byteorder=">")),
    "TIFF-YCbCr-zlib-bigtiff": ("YCbCr", tifffile_tiff(compression="zlib", rowsperstrip=4, bigtiff=True)),
    "TIFF-RGB-zlib-tiled-bigtiff": ("RGB", tifffile_tiff(tile=(16, 16), compression="zlib", bigtiff=True)),
    "PNG-RGB-xmp": ("RGB", xmp("PNG")),
    "TIFF-RGB-raw-xmp": ("RGB", xmp("TIFF")),
    "TIFF-YCbCr-tiff_deflate-xmp": ("YCbCr", xmp("TIFF", compression="tiff_deflate")),
}


def lossy(name: str) -> bool:
    return "jpeg" in name.lower() or name.endswith("-lossy")


def entry(orientation: int, endian: str, big: bool = False) -> bytes:
    """The IFD entry of the orientation tag: SHORT, one value, held in the entry itself (BigTIFF:
    an 8-byte count)."""
    return struct.pack(endian + ("HHQH" if big else "HHIHH"), ORIENTATION, 3, 1, orientation, *[0][big:])


MARKS = [
    *(lambda o, e=e, big=big: entry(o, e, big) for e in "<>" for big in (False, True)),
    lambda o: b'tiff:Orientation="%d"' % o,
]


def twins(data: bytes) -> dict[int, bytes]:
    """The file `data` (orientation 1) in each orientation 1-8: the value in its one orientation
    entry (or XMP) changed, nothing else (in a PNG, that chunk's checksum is made again)."""
    found = [mark for mark in MARKS if mark(1) in data]
    assert len(found) == 1 and data.count(found[0](1)) == 1, "one orientation, where it can be found"
    mark, at = found[0], data.find(found[0](1))
    out = {o: data[:at] + mark(o) + data[at + len(mark(1)) :] for o in range(1, 9)}
    if data.startswith(b"\x89PNG"):
        out = {o: png_checksums(d) for o, d in out.items()}
    return out


def png_checksums(data: bytes) -> bytes:
    """The PNG with each chunk's CRC made again from its contents."""
    out, at = bytearray(data), 8
    while at < len(data):
        (n,) = struct.unpack(">I", data[at : at + 4])
        out[at + 8 + n : at + 12 + n] = struct.pack(">I", zlib.crc32(data[at + 4 : at + 8 + n]))
        at += 12 + n
    return bytes(out)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{case: {orientation: path}}, each case's eight files written once."""
    root, out = tmp_path_factory.mktemp("orientation"), {}
    for name, (mode, write) in CASES.items():
        suffix = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}[name.split("-")[0]]
        out[name] = {o: root / f"{name}-{o}{suffix}" for o in range(1, 9)}
        for o, data in twins(write(picture(mode))).items():
            out[name][o].write_bytes(data)
    return out


@pytest.mark.parametrize("name", CASES)
def test_twins_share_their_compressed_pixels(files, name):
    """Each file differs from its orientation-1 twin in one byte, the orientation's value (and, in
    a PNG, the 4 bytes of that chunk's checksum): the same compressed pixels, lossy ones too."""
    one = np.frombuffer(files[name][1].read_bytes(), np.uint8)
    for o in range(2, 9):
        other = np.frombuffer(files[name][o].read_bytes(), np.uint8)
        assert other.shape == one.shape
        differ = np.flatnonzero(other != one)
        assert differ.size == 1 or (name.startswith("PNG") and 1 < differ.size <= 5), (o, differ)


def arrays(picture: images.Picture) -> tuple[np.ndarray, np.ndarray | None]:
    alpha = None if picture.alpha is None else np.asarray(picture.alpha)
    return np.asarray(picture.image), alpha


@pytest.mark.parametrize("name", CASES)
def test_orientation_1_is_the_pixels_written(files, name):
    """The reference: where the file is lossless, its orientation-1 decode is what was written."""
    expected = None if lossy(name) else written(picture(CASES[name][0]))
    if expected is None:
        pytest.skip("lossy, or a colour conversion (CMYK, YCbCr) between the pixels written and sRGB")
    image, alpha = arrays(images.read_image(files[name][1]))
    np.testing.assert_array_equal(image, expected[0])
    np.testing.assert_array_equal(alpha, expected[1])


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("name", CASES)
def test_orientation_matches_numpy(files, name, orientation):
    """The decode of each orientation is the orientation-1 decode turned by numpy, exactly; the
    orientation, applied, is not passed on in the EXIF the outputs keep."""
    image, alpha = arrays(images.read_image(files[name][1]))
    picture = images.read_image(files[name][orientation])
    got_image, got_alpha = arrays(picture)
    assert got_image.shape[:2] == orient(image, orientation).shape[:2]
    np.testing.assert_array_equal(got_image, orient(image, orientation))
    if alpha is None:
        assert got_alpha is None
    else:
        np.testing.assert_array_equal(got_alpha, orient(alpha, orientation))
    if picture.exif is not None:  # the orientation is applied, so it is not passed on
        exif = Image.Exif()
        exif.load(picture.exif)
        assert ORIENTATION not in exif
