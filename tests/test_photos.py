"""The embedded real photos (data/photos/, written by data/build_photos.py): every file listed in
manifest.tsv with its SHA-256 and nothing unlisted, each in the part the project's split gives its
pool file, 128×128 RGB JPEGs, balanced sources, a licence (and an author for CC-BY) on every row,
within the size budget, and README's counts table true to the manifest."""

import collections
import csv
import hashlib
import io
import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "data" / "photos"
MANIFEST = PHOTOS / "manifest.tsv"
SPLIT = ROOT / "data" / "splits" / "photos.tsv"
PARTS = ("train", "dev", "held-out")
COLUMNS = [
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
]
MAX_BYTES = 16_000_000


def read_tsv(path: Path) -> tuple[str, list[str], list[dict]]:
    """A TSV with a comment first line: (comment, header, rows as dicts); every row has all fields."""
    text = path.read_text(encoding="utf-8")
    comment, _, rest = text.partition("\n")
    reader = csv.reader(io.StringIO(rest), delimiter="\t", quoting=csv.QUOTE_NONE)
    header, *rows = list(reader)
    assert all(len(r) == len(header) for r in rows), f"{path}: a row with the wrong number of fields"
    return comment, header, [dict(zip(header, r, strict=True)) for r in rows]


def source(file: str) -> str:
    return Path(file).name.split("_", 1)[0]


@pytest.fixture(scope="module")
def manifest() -> list[dict]:
    comment, header, rows = read_tsv(MANIFEST)
    assert re.fullmatch(
        r"# bw-colorization-photos/1 built by data/build_photos.py from free-photos.tsv "
        r"\(sha256 [0-9a-f]{64}\)",
        comment,
    )
    assert header == COLUMNS
    assert [r["file"] for r in rows] == sorted(r["file"] for r in rows)
    assert len({r["file"] for r in rows}) == len(rows)
    return rows


def test_every_listed_file_exists_with_its_sha256_and_none_is_unlisted(manifest):
    for r in manifest:
        path = PHOTOS / r["file"]
        assert path.is_file(), r["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == r["sha256"], r["file"]
    on_disk = {f"{p.parent.name}/{p.name}" for part in PARTS for p in (PHOTOS / part).iterdir()}
    assert on_disk == {r["file"] for r in manifest}
    assert {p.name for p in PHOTOS.iterdir() if p.is_dir()} == set(PARTS)


def test_each_photo_keeps_the_part_of_its_pool_file_in_the_split(manifest):
    comment, header, rows = read_tsv(SPLIT)
    assert comment.startswith("# ") and header == ["part", "path", "sha256"]
    split = {r["path"]: r for r in rows}
    for r in manifest:
        folder, name = r["file"].split("/")
        assert r["part"] == folder, r["file"]
        assert name == Path(r["pool_file"]).name, r["file"]
        assert r["pool_file"] in split, r["file"]
        assert split[r["pool_file"]]["part"] == r["part"], r["file"]
        assert split[r["pool_file"]]["sha256"] == r["pool_sha256"], r["file"]


def test_every_photo_is_a_128_by_128_rgb_jpeg(manifest):
    for r in manifest:
        with Image.open(PHOTOS / r["file"]) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (128, 128)), r["file"]
            im.load()  # decodes the whole image: a truncated file fails here


def test_parts_are_filled_and_no_source_dominates_a_part(manifest):
    parts = collections.Counter(r["part"] for r in manifest)
    assert all(parts[p] > 0 for p in PARTS) and set(parts) == set(PARTS)
    assert parts["held-out"] >= 200
    by_source = collections.Counter((r["part"], source(r["file"])) for r in manifest)
    for (part, src), n in by_source.items():
        assert n <= 0.38 * parts[part], f"{src} is {n} of {parts[part]} photos of {part}"


def test_every_row_has_a_licence_and_cc_by_rows_credit_someone(manifest):
    for r in manifest:
        assert r["licence"].strip(), r["file"]
        assert r["source"].strip() and r["original_path"].strip(), r["file"]
        if re.match(r"CC[- ]BY", r["licence"], re.IGNORECASE):
            # An author of its own, or the licence text names who or what the source credits
            # (the source's LICENSE, README or references file, its contributors or authors).
            credited = bool(r["author"].strip()) or re.search(
                r"author|contribut|LICENSE|README|references", r["licence"], re.IGNORECASE
            )
            assert credited, f"{r['file']}: {r['licence']!r} names no author"
        if r["page"]:
            assert re.match(r"https?://\S+$", r["page"]), r["file"]


def test_total_size_is_within_budget(manifest):
    total = sum((PHOTOS / r["file"]).stat().st_size for r in manifest)
    assert total <= MAX_BYTES, f"{total:,} bytes"


def test_readme_counts_table_matches_the_manifest(manifest):
    """The table in data/photos/README.md: | source | where from | train | dev | held-out | all |."""
    lines = (PHOTOS / "README.md").read_text(encoding="utf-8").splitlines()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    header, _rule, *body = rows
    assert header == ["source", "where from", *PARTS, "all"]
    counts = collections.Counter((r["part"], source(r["file"])) for r in manifest)
    sources = {source(r["file"]) for r in manifest}
    seen = set()
    for name, _where, *numbers in body:
        numbers = [int(n) for n in numbers]
        if name == "**all**":
            expected = [sum(r["part"] == p for r in manifest) for p in PARTS]
        else:
            expected = [counts[p, name] for p in PARTS]
            seen.add(name)
        assert numbers == [*expected, sum(expected)], name
    assert seen == sources and "**all**" in [b[0] for b in body]
