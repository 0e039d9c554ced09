"""Fetch the public photo sets this project trains on into data/<name>/.

    make data DATASET=places205-test        # the original's photos: 41,000 JPEGs of 256x256, 2.3 GB
    python -m lib.datasets places365-val [--root data] [--url MIRROR]

Training takes the names too (lib.data.make_loaders, `python -m lib.train --data places205-test`,
a notebook's `dataset`): the set is fetched here on first use, and found extracted after that.

places205-test is the archive the original project used. Its server publishes no checksum, so we
check its size, record its SHA-256 once it has downloaded whole and extracted cleanly
(data/places205-test/download.json), and check every later run against that record: a changed
archive is an error, never silently different data. places365-val is Places365's validation set at
256 px (36,500 photos); torchvision downloads it and checks its MD5, so we only call torchvision.

Downloads resume: bytes arrive in <archive>.part, a re-run continues it with an HTTP Range request,
and the archive gets its own name only when complete. Extraction checks every member before writing
anything, writes into a temporary folder inside data/<name>/, renames into place and only then writes
extracted.json, so a crash never leaves a folder that looks complete; with the marker a re-run does
nothing. Failures raise FetchError with a one-line reason; the command line prints it as
"error: ..." and exits 2.
"""

import argparse
import contextlib
import gzip
import hashlib
import http.client
import json
import posixpath
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from lib import options, results

# The repository's data/, whatever the working directory (notebooks run in notebooks/).
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "data"
PLACES205_URL = "http://data.csail.mit.edu/places/places205/testSetPlaces205_resize.tar.gz"
PLACES205_SIZE = 2_341_250_899
PLACES205_DIR = "testSet_resize"
PLACES365_URL = "http://data.csail.mit.edu/places/places365/"  # torchvision's base URL
MARKER = "extracted.json"  # written last: its presence means the extraction is complete


class FetchError(RuntimeError):
    """A data set that cannot be fetched; str(e) is one line saying why."""


class NetworkError(FetchError):
    """The server could not be reached, or the transfer broke off."""


class IntegrityError(FetchError):
    """The bytes are not the expected ones: wrong size, or a checksum that changed."""


class ArchiveError(FetchError):
    """The archive is corrupt, or has a member that could write outside its folder."""


def _write_json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=1) + "\n"
    results.write_atomic(path, lambda tmp: tmp.write_text(text))  # a crash never leaves half a record


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --- download -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _network(url: str):
    """Turn the many ways a connection fails (refused, DNS, timeout, reset, HTTP error) into one line."""
    try:
        yield
    except urllib.error.HTTPError as e:
        raise NetworkError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise NetworkError(f"cannot reach {url}: {e.reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise NetworkError(f"{url}: connection lost ({type(e).__name__}: {e}); run again") from None


def download(url: str, dest, size: int | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, continuing `dest`.part if there is one; `dest` appears only when complete.

    `size` is the exact size expected (None: trust the server's Content-Length): a server offering
    another size is an error before any byte is written. A transfer that breaks off leaves the .part
    and raises NetworkError; the next call resumes it. Returns `dest`.
    """
    dest = Path(dest)
    # Not results.write_atomic: that removes its temporary file on failure, and an HTTP Range
    # resume needs this one to survive a broken transfer.
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # longer than the file: it cannot be a prefix of it
        part.unlink()
        have = 0
    if size is None or have < size:  # equal: complete, only the rename was missing
        _receive(url, part, have, size, timeout)
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()  # the server sent more than it announced: nothing here is worth resuming
        raise IntegrityError(f"{url}: received {got:,} bytes, expected {size:,}")
    part.replace(dest)
    return dest


def _receive(url: str, part: Path, have: int, size: int | None, timeout: float) -> None:
    headers = {"User-Agent": "bw-colorization"} | ({"Range": f"bytes={have}-"} if have else {})
    with (
        _network(url),
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r,
    ):
        if r.status == 206:
            start = r.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(have):  # appending at the wrong place would corrupt the file silently
                raise NetworkError(f"{url}: asked to resume at byte {have:,}, got a range from {start!r}")
        else:
            have = 0  # the server ignored Range (200): start over
        length = r.headers.get("Content-Length")
        total = have + int(length) if length is not None else size
        if size is not None and total != size:
            raise IntegrityError(f"{url}: the server offers {total:,} bytes, expected {size:,}")
        progress = dict(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=part.stem
        )
        with open(part, "ab" if have else "wb") as f, tqdm(**progress) as bar:
            while block := r.read(1 << 20):
                f.write(block)
                bar.update(len(block))
    # http.client returns short data without complaint when the server closes early
    got = part.stat().st_size
    if total is not None and got < total:
        raise NetworkError(f"{url}: the transfer ended at {got:,} of {total:,} bytes; run again to resume")


# --- safe extraction -----------------------------------------------------------------------------------


def _walk(start: str, path: str, links: set[str]) -> str | None:
    """Where `path`, read from folder `start`, leads inside the extraction folder: None if it is
    absolute, climbs out, or passes through one of the archive's links (which could lead anywhere)."""
    if path.startswith("/"):
        return None
    parts = list(PurePosixPath(start).parts)
    for c in PurePosixPath(path).parts:
        if parts and "/".join(parts) in links:
            return None
        if c == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(c)
    return "/".join(parts)


def _unsafe(m: tarfile.TarInfo, links: set[str]) -> str | None:
    name = PurePosixPath(m.name)
    if name.is_absolute():
        return "has an absolute path"
    if ".." in name.parts:
        return "has '..' in its path"
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        return "is a device or other special file"
    if not name.parts and not m.isdir():
        return "has no name"
    if _walk("", m.name, links) is None:
        return "would be written through a link"
    if m.issym() and _walk(posixpath.dirname(m.name), m.linkname, links) is None:
        return f"links to {m.linkname!r}, outside the folder or through another link"
    if m.islnk():
        target = _walk("", m.linkname, links)
        if target is None or target in links:  # a hard link to a symlink is that symlink, elsewhere
            return f"is a hard link to {m.linkname!r}, outside the folder or to a link"
    return None


def check_members(members: list[tarfile.TarInfo], archive="archive") -> None:
    """Refuse the whole archive (ArchiveError naming the member) if any member is absolute, has '..',
    is a device or other special file, would be written through a link, or links outside."""
    links = {"/".join(PurePosixPath(m.name).parts) for m in members if m.issym() or m.islnk()}
    for m in members:
        if why := _unsafe(m, links):
            raise ArchiveError(f"{archive}: refused: member {m.name!r} {why}; nothing was extracted")


def extract(archive, folder) -> list[str]:
    """Extract a tar archive (any compression) into `folder` once; return its top-level names.

    With `folder`/extracted.json present this does nothing. Otherwise every member is checked first
    (`check_members`), then tarfile's "data" filter checks each one again as it is written (it sees the
    links already on disk), into a temporary folder inside `folder`; the top-level entries are renamed
    into place and the marker written last.
    """
    archive, folder = Path(archive), Path(folder)
    marker = folder / MARKER
    if marker.exists():
        return json.loads(marker.read_text())["top"]
    for old in folder.glob(".extract-*"):  # left by a crash: ours, and incomplete by definition
        shutil.rmtree(old)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            check_members(members, archive)
            top = sorted({PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts})
            for t in top:
                if (folder / t).exists() or (folder / t).is_symlink():
                    raise FetchError(
                        f"{folder / t} exists but no complete extraction is recorded ({MARKER} is "
                        "missing): move it away and run again"
                    )
            tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=folder))
            try:
                tar.extractall(tmp, members=members, filter="data")
                for t in top:
                    (tmp / t).rename(folder / t)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except tarfile.FilterError as e:
        raise ArchiveError(f"{archive}: refused: {e}; nothing was extracted") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        reason = " ".join(str(e).split())  # tarfile lists each compression it tried, one per line
        raise ArchiveError(
            f"{archive}: corrupt, not a readable tar archive ({type(e).__name__}: {reason}); "
            "delete it and run again"
        ) from None
    _write_json(marker, {"archive": archive.name, "top": top, "members": len(members), "date": results.now()})
    return top


# --- the data sets -------------------------------------------------------------------------------------


def fetch_places205(
    root=DEFAULT_ROOT, url: str = PLACES205_URL, size: int = PLACES205_SIZE, timeout=60.0
) -> Path:
    """The Places205 test set (41,000 photos of 256x256) in root/places205-test/testSet_resize.

    The archive stays beside it, so that every run can check it against download.json; delete the
    archive to save 2.3 GB (later runs then trust the extraction marker).
    """
    folder = Path(root) / "places205-test"
    folder.mkdir(parents=True, exist_ok=True)
    archive, record = folder / PLACES205_URL.rsplit("/", 1)[1], folder / "download.json"
    if not archive.exists():
        if (folder / MARKER).exists():
            return folder / PLACES205_DIR
        download(url, archive, size, timeout)
    digest = sha256(archive)
    if record.exists():
        known = json.loads(record.read_text())
        if digest != known["sha256"]:
            raise IntegrityError(
                f"{archive}: SHA-256 {digest[:16]}... is not the {known['sha256'][:16]}... recorded in "
                f"{record} on {known['date']}: the archive changed; delete both files to accept the new one"
            )
    extract(archive, folder)
    if not record.exists():  # recorded only once whole and readable: a corrupt download is never the truth
        _write_json(
            record, {"url": url, "size": archive.stat().st_size, "sha256": digest, "date": results.now()}
        )
    return folder / PLACES205_DIR


def fetch_places365(root=DEFAULT_ROOT, url: str = PLACES365_URL) -> Path:
    """Places365's validation set at 256 px in root/places365-val/val_256, via torchvision (which
    downloads it and checks its MD5; it does not resume). `url` is a mirror of torchvision's base URL."""
    from torchvision.datasets import Places365  # imports torch: only this data set needs it

    folder = Path(root) / "places365-val"
    images, marker = folder / "val_256", folder / MARKER
    if images.exists() and not marker.exists():
        # torchvision takes any existing folder as complete; without our marker it is a crashed extraction
        print(f"{images}: incomplete extraction, extracting again", file=sys.stderr)
        shutil.rmtree(images)
    mirror = type("Places365Mirror", (Places365,), {"_BASE_URL": url.rstrip("/") + "/"})
    try:
        with _network(url):
            photos = mirror(folder, split="val", small=True, download=True)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise ArchiveError(f"places365-val: corrupt archive in {folder} ({type(e).__name__}: {e})") from None
    except FetchError:
        raise
    except RuntimeError as e:  # torchvision's MD5 check: "File not found or corrupted."
        raise IntegrityError(
            f"places365-val: torchvision: {e} (a download in {folder} failed its MD5)"
        ) from None
    if not marker.exists():
        _write_json(marker, {"top": [images.name], "photos": len(photos), "date": results.now()})
    return images


DATASETS = {"places205-test": fetch_places205, "places365-val": fetch_places365}


def fetch(name: str, root=DEFAULT_ROOT, url: str | None = None, **options) -> Path:
    """Fetch data set `name` (a key of DATASETS) into root/name; return the folder of its photos.

    `url`: a mirror (see main's --url); `options`: the data set's function's other keyword arguments
    (fetch_places205: size, timeout), as for a test's local server."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name](root, **({"url": url} if url else {}), **options)


# --- command line ----------------------------------------------------------------------------------


@options.command
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.datasets", description=__doc__.split("\n\n")[0])
    p.add_argument("name", metavar="NAME", choices=list(DATASETS), help=" or ".join(DATASETS))
    p.add_argument("--root", default=DEFAULT_ROOT, type=Path, help="where data sets go (default: data/)")
    p.add_argument("--url", help="a mirror: the archive's URL (places205-test) or base URL (places365-val)")
    a = p.parse_args(argv)
    try:
        photos = fetch(a.name, a.root, a.url)
    except (FetchError, OSError) as e:  # OSError: disk full, permissions
        print("error:", " ".join(str(e).split()), file=sys.stderr)  # one line, whatever raised it
        return 2
    print(f"{a.name}: ready in {photos} (train on it: make run PROFILE=full DATA={photos})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
