"""The three parts of every source of photos, and their three jobs: train trains, dev chooses the
checkpoint (and anything else a run tunes), held-out scores (part_files). Which part a photo is
in depends on the photo alone (its subfolder, a split file, or its name), never on a run's seed.
Files are never moved, renamed or written.
"""

import fnmatch
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from lib import datasets, results
from lib.images import list_images


def rank(files: Iterable[str], seed: int) -> list[str]:
    """Files in a seeded pseudo-random order that depends only on each name and the seed.

    Adding or removing files never reorders the others, so splits stay put as a folder grows.
    """
    # os.fsencode: a name's bytes as the file system has them (a name that is not UTF-8 too)
    key = lambda f: hashlib.sha256(os.fsencode(f"{seed}/{f}")).hexdigest()  # noqa: E731
    return sorted(files, key=key)


SPLIT_FORMAT = "bw-colorization-split/1"
PARTS = {"train": 0.8, "dev": 0.1, "held-out": 0.1}  # fractions, in this order
# The split is fixed: a photo's part depends on its name and this seed only, never on a run's seed
# (which changes initialisation, order and augmentation), so every run is scored on the same photos.
SPLIT_SEED = 0


def split_part(name: str, seed: int = SPLIT_SEED) -> str:
    """The part ("train", "dev" or "held-out") a file belongs to: a pure function of its name (for
    example "photos-train/bsds500_test_100007.jpg") and the seed. Its SHA-256 as a number in [0, 1)
    falls into one of the PARTS' intervals, so a file's part never depends on the other files."""
    u = int(hashlib.sha256(os.fsencode(f"{seed}/{name}")).hexdigest(), 16) / 2**256
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
    """(seed, [(part, path, sha256), ...]) of a split file written by write_split; every path
    relative to the data folder and inside it (ValueError, one line, for a row that is not)."""
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
    outside = next((r[1] for r in rows if Path(r[1]).is_absolute() or ".." in Path(r[1]).parts), None)
    if outside is not None:  # a split names photos of its own data folder, never others
        raise ValueError(f"{path}: row {outside!r} points outside the data folder (absolute, or with ..)")
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
