"""Build data/photos/: the embedded set of real colour photos that ships inside the repository.

Usage: .venv/bin/python data/build_photos.py /path/to/pool

The pool folder holds free-photos.tsv (columns path, part, sha256, source, original_path, licence:
the project's training-pool photos whose licences allow copies in the repository) and the 256×256
JPEGs it lists. Per part (train, dev, held-out; each photo keeps its part) the set takes every
photo of the five small sources (less the one GFDL photo: its copies must carry the GFDL's full
text) and k clothing and k nips17 photos, with
k = min(#clothing, #nips17, floor(1.5 × #small-source photos)) in that part, so that no source is
above 3/8 of its part; the k are the first in order of the SHA-256 (hex) of the file's base name.
Each photo is resized to 128×128 (Lanczos) and saved as JPEG quality 85, 4:4:4, optimised, without
EXIF or ICC data. Writes data/photos/<part>/<base name>, manifest.tsv and README.md (replacing the
folder), and prints the counts and the total size. Standard library, Pillow and numpy only; running
it twice writes byte-identical files.
"""

import collections
import csv
import hashlib
import html
import io
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PARTS = ("train", "dev", "held-out")
SMALL = ("mdex", "dreambooth", "gcompris", "cq100", "exifsamples")
LARGE = ("clothing", "nips17")
SOURCES = SMALL + LARGE
SIZE = 128
QUALITY = 85
MAX_BYTES = 16_000_000
FORMAT = "bw-colorization-photos/1"
COLUMNS = (
    "file",
    "sha256",
    "part",
    "source",
    "original_path",
    "pool_file",
    "pool_sha256",
    "licence",
    "author",
    "page",
)
OUT = Path(__file__).resolve().parent / "photos"


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def prefix(name: str) -> str:
    """The source of a pool file, from its base name: "nips17_000b7d55b6184b08.jpg" -> "nips17"."""
    return name.split("_", 1)[0]


def author_and_page(licence: str) -> tuple[str, str]:
    """The author and source page that a licence text of the list names, or empty strings.
    nips17: "CC-BY-2.0; author: X; https://..."; cq100: "CC BY-SA 4.0 (https://...; author: X); via
    CQ100 ..."; gcompris: "CC-BY-SA-3.0 (X; debian/copyright Files: ...)". HTML entities in the
    list's author names (&#x27; &amp; &quot;) are decoded."""
    patterns = (
        r"^[^;]*; author: (?P<author>.*); (?P<page>https?://\S+)$",
        r"^[^(]*\((?P<page>https?://[^;]+); author: (?P<author>.*)\); via ",
        r"^[^(]*\((?P<author>.*); debian/copyright ",
    )
    for pattern in patterns:
        m = re.match(pattern, licence)
        if m:
            d = m.groupdict()
            return html.unescape(d["author"]).strip(), html.unescape(d.get("page") or "").strip()
    return "", ""


def select(rows: list[dict]) -> list[dict]:
    """The rows of the set, by the rule in this module's docstring."""
    chosen = []
    for part in PARTS:
        by_source = collections.defaultdict(list)
        for r in rows:
            # GFDL: a copy must carry the licence's full text, which a photo set of CC and CC0
            # photos should not need for one photo (there is one such photo in the list)
            if r["part"] == part and not r["licence"].startswith("GFDL"):
                by_source[prefix(Path(r["path"]).name)].append(r)
        small = [r for s in SMALL for r in by_source[s]]
        k = min(len(by_source["clothing"]), len(by_source["nips17"]), math.floor(1.5 * len(small)))
        chosen += small
        for s in LARGE:
            ranked = sorted(by_source[s], key=lambda r: sha256_bytes(Path(r["path"]).name.encode()))
            chosen += ranked[:k]
    return chosen


def shrink(data: bytes) -> bytes:
    """A 256×256 photo as a 128×128 JPEG (Lanczos, quality 85, 4:4:4, optimised, no metadata)."""
    with Image.open(io.BytesIO(data)) as im:
        if im.size != (2 * SIZE, 2 * SIZE):
            raise ValueError(f"is {im.size[0]}×{im.size[1]}, not {2 * SIZE}×{2 * SIZE}")
        rgb = im.convert("RGB")
    small = rgb.resize((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=None)
    # A fresh image from the pixels alone: no EXIF, ICC profile, comment or dpi carried over.
    clean = Image.fromarray(np.asarray(small, dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    clean.save(buf, "JPEG", quality=QUALITY, subsampling=0, optimize=True)
    return buf.getvalue()


def licence_family(licence: str) -> str:
    """A short name for the kind of licence, for README's summary line."""
    head = licence.replace(" ", "-").upper()
    if head.startswith("CC0"):
        return "CC0"
    if head.startswith("CC-BY-SA"):
        return "CC-BY-SA"
    if head.startswith("CC-BY"):
        return "CC-BY"
    if head.startswith("PUBLIC-DOMAIN"):
        return "public domain"
    if head.startswith("GFDL"):
        return "GFDL"
    if "FREE TO USE" in licence.upper():
        return "free to use (mdex)"
    return "other"


def readme(manifest: list[dict]) -> str:
    counts = collections.Counter((r["part"], prefix(Path(r["file"]).name)) for r in manifest)
    parts = collections.Counter(r["part"] for r in manifest)
    families = collections.Counter(licence_family(r["licence"]) for r in manifest)
    example = {s: next(r["source"] for r in manifest if prefix(Path(r["file"]).name) == s) for s in SOURCES}
    lines = [
        "# photos/: the embedded real photos",
        "",
        f"{len(manifest):,} real colour photos at 128×128 (JPEG), small enough to ship inside the",
        "repository, for runs and tests without any download. One folder per part:",
        "",
        "| source | where from | " + " | ".join(PARTS) + " | all |",
        "|---|---|" + "---:|" * (len(PARTS) + 1),
    ]
    for s in SOURCES:
        row = [counts[p, s] for p in PARTS]
        lines.append(f"| {s} | `{example[s]}` | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    lines.append("| **all** | | " + " | ".join(str(parts[p]) for p in PARTS) + f" | {len(manifest)} |")
    lines += [
        "",
        "**Licences.** The photos are NOT under the code's MIT licence: each keeps its own, given per",
        "row of `manifest.tsv` with its author and source page where the source names them:",
        ", ".join(f"{f} {n}" for f, n in families.most_common()) + ".",
        "Resized copies of CC-BY-SA photos stay CC-BY-SA. Credit the author and page of a CC-BY or",
        "CC-BY-SA photo when you show it; `source` and `original_path` name where each came from.",
        "",
        "**How it was made.** From the pools' `free-photos.tsv` (the photos whose licences allow copies",
        "here), per part: every photo of the five small sources (mdex, dreambooth, gcompris, cq100,",
        "exifsamples; less one GFDL photo, whose copies must carry the GFDL's text), plus k clothing",
        "and k nips17 photos, k = min(#clothing, #nips17,",
        "floor(1.5 × #small-source photos)), taken in order of the SHA-256 of the file's base name, so",
        "no source is above 3/8 of a part. Each 256×256 pool photo was resized to 128×128 (Lanczos)",
        "and saved as JPEG quality 85, 4:4:4, without metadata, by",
        "`.venv/bin/python data/build_photos.py <pool folder>` (deterministic: byte-identical reruns).",
        "",
        "**Parts.** Each photo keeps the part it has in `data/splits/photos.tsv` (`pool_file`,",
        "`pool_sha256`), so the shipped reference model, trained on the pools' train part, never saw a",
        "dev or held-out photo of this set: report results on `held-out/` only.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: build_photos.py POOL_FOLDER (the folder with free-photos.tsv)", file=sys.stderr)
        return 2
    pool = Path(argv[0])
    listing = pool / "free-photos.tsv"
    try:
        tsv = listing.read_bytes()
    except OSError as e:
        print(f"build_photos: cannot read {listing}: {e.strerror}", file=sys.stderr)
        return 1
    rows = list(csv.DictReader(io.StringIO(tsv.decode("utf-8")), delimiter="\t"))
    unknown = sorted({prefix(Path(r["path"]).name) for r in rows} - set(SOURCES))
    if unknown or any(r["part"] not in PARTS for r in rows):
        print(f"build_photos: {listing}: unknown source or part ({', '.join(unknown)})", file=sys.stderr)
        return 1

    data = {}
    for r in rows:  # every listed file, before anything is written
        try:
            b = (pool / r["path"]).read_bytes()
        except OSError as e:
            print(f"build_photos: refusing: cannot read {pool / r['path']}: {e.strerror}", file=sys.stderr)
            return 1
        if sha256_bytes(b) != r["sha256"]:
            got = sha256_bytes(b)
            print(
                f"build_photos: refusing: {r['path']} has SHA-256 {got}, the list says {r['sha256']}",
                file=sys.stderr,
            )
            return 1
        data[r["path"]] = b

    manifest = []
    files = {}
    for r in select(rows):
        name = Path(r["path"]).name
        try:
            out = shrink(data[r["path"]])
        except (OSError, ValueError) as e:
            print(f"build_photos: refusing: {r['path']} {e}", file=sys.stderr)
            return 1
        file = f"{r['part']}/{name}"
        author, page = author_and_page(r["licence"])
        files[file] = out
        manifest.append(
            {
                "file": file,
                "sha256": sha256_bytes(out),
                "part": r["part"],
                "source": r["source"],
                "original_path": r["original_path"],
                "pool_file": r["path"],
                "pool_sha256": r["sha256"],
                "licence": r["licence"],
                "author": author,
                "page": page,
            }
        )
    manifest.sort(key=lambda m: m["file"])
    for m in manifest:
        for k, v in m.items():
            if "\t" in v or "\n" in v or "\r" in v:
                print(f"build_photos: refusing: {m['file']}: field {k} has a tab or newline", file=sys.stderr)
                return 1
    total = sum(len(b) for b in files.values())
    if total > MAX_BYTES:
        print(f"build_photos: refusing: {total:,} bytes is over {MAX_BYTES:,}", file=sys.stderr)
        return 1

    lines = [f"# {FORMAT} built by data/build_photos.py from free-photos.tsv (sha256 {sha256_bytes(tsv)})"]
    lines.append("\t".join(COLUMNS))
    lines += ["\t".join(m[c] for c in COLUMNS) for m in manifest]

    tmp = OUT.with_name(OUT.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for part in PARTS:
        (tmp / part).mkdir(parents=True)
    for file, b in sorted(files.items()):
        (tmp / file).write_bytes(b)
    (tmp / "manifest.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    (tmp / "README.md").write_text(readme(manifest), encoding="utf-8", newline="\n")
    shutil.rmtree(OUT, ignore_errors=True)
    tmp.rename(OUT)

    counts = collections.Counter((m["part"], prefix(Path(m["file"]).name)) for m in manifest)
    print(f"{'part':<10}" + "".join(f"{s:>12}" for s in SOURCES) + f"{'all':>8}")
    for part in PARTS:
        row = [counts[part, s] for s in SOURCES]
        print(f"{part:<10}" + "".join(f"{n:>12}" for n in row) + f"{sum(row):>8}")
    print(f"{len(manifest)} photos, {total:,} bytes of JPEG in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
