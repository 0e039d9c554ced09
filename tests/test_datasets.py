"""lib.datasets against a real HTTP server on 127.0.0.1 serving small archives, misbehaving on demand."""

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib import data, datasets, splits, train

ARCHIVE = datasets.PLACES205_URL.rsplit("/", 1)[1]
MARKER = datasets.MARKER


class Handler(BaseHTTPRequestHandler):
    """Serves server.files; honours Range unless server.mode is "ignore-range"; "truncate" sends half."""

    def do_GET(self):
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        body = srv.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        start, rng = 0, self.headers.get("Range")
        if rng and srv.mode != "ignore-range":
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        try:
            self.wfile.write(payload[: len(payload) // 2] if srv.mode == "truncate" else payload)
        except ConnectionError:  # a client that only looked at the headers (torchvision does)
            pass

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.mode, srv.ranges = {}, "ok", []
    srv.url = lambda name: f"http://127.0.0.1:{srv.server_port}/{name}"
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def make_archive(members, mode="w:gz") -> bytes:
    """A tar archive of (TarInfo, bytes or None) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name, data=None, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, (data if data is not None or kind != tarfile.REGTYPE else b"")


def photos_archive(n=3, seed=0) -> bytes:
    """Like the real one: a flat folder testSet_resize/ of JPEGs."""
    files = [member(f"testSet_resize/{seed}_{i:02d}.jpg", jpeg(seed * 100 + i)) for i in range(n)]
    return make_archive([member("testSet_resize", kind=tarfile.DIRTYPE), *files])


def tree(root: Path) -> dict[str, int]:
    """Every path under root with its mtime, to see that nothing was written."""
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def served(server):
    """The server with a small photo archive on it; returns (server, archive bytes)."""
    body = photos_archive()
    server.files[ARCHIVE] = body
    return server, body


def fetch(server, root, size, **kw):
    return datasets.fetch_places205(root, server.url(ARCHIVE), size, **kw)


# --- download and extraction ----------------------------------------------------------------------


def test_full_download_and_extraction(served, tmp_path):
    server, body = served
    photos = fetch(server, tmp_path, len(body))
    folder = tmp_path / "places205-test"
    assert photos == folder / "testSet_resize"
    assert sorted(p.name for p in photos.iterdir()) == ["0_00.jpg", "0_01.jpg", "0_02.jpg"]
    for p in photos.iterdir():
        with Image.open(p) as im:
            assert im.size == (16, 16)
    assert (folder / ARCHIVE).read_bytes() == body
    record = json.loads((folder / "download.json").read_text())
    assert record["sha256"] == hashlib.sha256(body).hexdigest()
    assert record["size"] == len(body) and record["url"] == server.url(ARCHIVE) and record["date"]
    assert json.loads((folder / MARKER).read_text())["top"] == ["testSet_resize"]
    assert {p.name for p in folder.iterdir()} == {ARCHIVE, "download.json", MARKER, "testSet_resize"}


def test_rerun_is_a_no_op(served, tmp_path):
    server, body = served
    fetch(server, tmp_path, len(body))
    before = tree(tmp_path)
    time.sleep(0.01)
    fetch(server, tmp_path, len(body))
    assert tree(tmp_path) == before
    assert server.ranges == [None]  # one request, the first time


def test_truncated_transfer_resumes_with_range(served, tmp_path):
    server, body = served
    server.mode = "truncate"
    with pytest.raises(datasets.NetworkError, match="ended at .* run again to resume"):
        fetch(server, tmp_path, len(body))
    folder = tmp_path / "places205-test"
    part = folder / (ARCHIVE + ".part")
    half = len(body) // 2
    assert part.read_bytes() == body[:half]
    assert not (folder / ARCHIVE).exists() and not (folder / "download.json").exists()
    server.mode = "ok"
    fetch(server, tmp_path, len(body))
    assert server.ranges == [None, f"bytes={half}-"]
    assert (folder / ARCHIVE).read_bytes() == body and not part.exists()


def test_server_ignoring_range_restarts_cleanly(served, tmp_path):
    server, body = served
    folder = tmp_path / "places205-test"
    folder.mkdir()
    (folder / (ARCHIVE + ".part")).write_bytes(b"not the start of the archive")
    server.mode = "ignore-range"
    fetch(server, tmp_path, len(body))
    assert server.ranges == [f"bytes={len(b'not the start of the archive')}-"]
    assert (folder / ARCHIVE).read_bytes() == body


def test_wrong_size(served, tmp_path):
    server, body = served
    with pytest.raises(
        datasets.IntegrityError, match=f"offers {len(body):,} bytes, expected {len(body) + 1:,}"
    ):
        fetch(server, tmp_path, len(body) + 1)
    assert list((tmp_path / "places205-test").iterdir()) == []


@pytest.mark.parametrize("change", ["archive", "record"])
def test_changed_checksum_on_a_later_run(served, tmp_path, change):
    server, body = served
    fetch(server, tmp_path, len(body))
    folder = tmp_path / "places205-test"
    if change == "archive":
        (folder / ARCHIVE).write_bytes(photos_archive(seed=1))
    else:
        record = json.loads((folder / "download.json").read_text())
        (folder / "download.json").write_text(json.dumps(record | {"sha256": "0" * 64}))
    with pytest.raises(datasets.IntegrityError, match="the archive changed"):
        fetch(server, tmp_path, len(body))


@pytest.mark.parametrize("bad", ["random bytes", "truncated gzip"])
def test_corrupt_archive(server, tmp_path, bad):
    body = os.urandom(5000) if bad == "random bytes" else photos_archive()[:-200]
    server.files[ARCHIVE] = body
    with pytest.raises(datasets.ArchiveError, match="corrupt, not a readable tar archive") as e:
        fetch(server, tmp_path, len(body))
    assert "\n" not in str(e.value)
    # only the archive: not recorded as the truth, nothing extracted, no temporary folder left
    assert [p.name for p in (tmp_path / "places205-test").iterdir()] == [ARCHIVE]


def test_connection_refused_is_quick_and_clear(tmp_path, closed_port):
    t = time.perf_counter()
    with pytest.raises(datasets.NetworkError, match="cannot reach .*refused"):
        datasets.fetch_places205(tmp_path, f"http://127.0.0.1:{closed_port}/{ARCHIVE}", 100)
    assert time.perf_counter() - t < 5


def test_silent_server_times_out(tmp_path):
    with socket.socket() as s:  # listens (so the connection opens) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(datasets.NetworkError, match="timed out"):
            datasets.download(f"http://127.0.0.1:{s.getsockname()[1]}/x", tmp_path / "x", 10, timeout=0.3)


# --- unsafe archives ------------------------------------------------------------------------------------

SYM, HARD = tarfile.SYMTYPE, tarfile.LNKTYPE
# case: [(name, type, link target)]; each follows a good JPEG, so refusing must be decided before writing
UNSAFE = {
    "parent": [("../evil.txt", tarfile.REGTYPE, "")],
    "absolute": [("{tmp}/abs-evil.txt", tarfile.REGTYPE, "")],
    "symlink out": [("testSet_resize/passwd", SYM, "/etc/passwd")],
    "relative symlink out": [("testSet_resize/up", SYM, "../../evil")],
    "hard link out": [("testSet_resize/hl", HARD, "../evil.txt")],
    "device": [("testSet_resize/null", tarfile.CHRTYPE, "")],
    "through a link": [("testSet_resize/here", SYM, "."), ("testSet_resize/here/x.jpg", tarfile.REGTYPE, "")],
    # each link alone stays inside; together l -> a/../../evil = ./../../evil escapes
    "link chain": [("testSet_resize/a", SYM, "."), ("testSet_resize/l", SYM, "a/../../evil")],
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_archive_is_refused_whole(tmp_path, case):
    bad = [member(name.format(tmp=tmp_path), kind=t, linkname=link) for name, t, link in UNSAFE[case]]
    good = [member("testSet_resize", kind=tarfile.DIRTYPE), member("testSet_resize/ok.jpg", jpeg(0))]
    folder = tmp_path / "places205-test"
    folder.mkdir()
    archive = folder / ARCHIVE
    archive.write_bytes(make_archive(good + bad))
    before = tree(tmp_path)
    with pytest.raises(datasets.ArchiveError, match=f"refused: member '{bad[-1][0].name}'"):
        datasets.extract(archive, folder)
    assert tree(tmp_path) == before  # nothing written, inside or outside


def test_links_inside_are_fine(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(
        make_archive(
            [
                member("d/x.jpg", b"x"),
                member("d/sub/up", kind=tarfile.SYMTYPE, linkname="../x.jpg"),
                member("d/hard", kind=tarfile.LNKTYPE, linkname="d/x.jpg"),
            ],
            mode="w",
        )
    )
    assert datasets.extract(archive, tmp_path) == ["d"]
    assert (tmp_path / "d/sub/up").read_bytes() == b"x" and (tmp_path / "d/hard").read_bytes() == b"x"


def test_crash_leftovers(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(photos_archive())
    (tmp_path / ".extract-crashed").mkdir()  # a temporary folder a crash left: removed
    assert datasets.extract(archive, tmp_path) == ["testSet_resize"]
    assert not (tmp_path / ".extract-crashed").exists()
    # an extracted folder without the marker (crash before it was written) is not taken as complete
    (tmp_path / MARKER).unlink()
    with pytest.raises(datasets.FetchError, match="no complete extraction is recorded"):
        datasets.extract(archive, tmp_path)


# --- places365-val goes through torchvision ------------------------------------------------------------


def test_places365_is_registered_and_uses_torchvision(tmp_path, server, closed_port):
    assert datasets.DATASETS["places365-val"] is datasets.fetch_places365
    with pytest.raises(datasets.NetworkError, match="cannot reach"):
        datasets.fetch("places365-val", tmp_path, f"http://127.0.0.1:{closed_port}/")
    assert (tmp_path / "places365-val").is_dir()  # torchvision's root is data/<name>
    # a mirror serving the wrong bytes: torchvision's own MD5 check refuses them
    server.files["filelist_places365-standard.tar"] = b"not the file list"
    with pytest.raises(datasets.IntegrityError, match="MD5"):
        datasets.fetch("places365-val", tmp_path, server.url(""))


# --- command line ------------------------------------------------------------------------------------


def one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_cli_errors_are_one_line(served, tmp_path, closed_port, capsys):
    server, body = served
    cli = ["places205-test", "--root", str(tmp_path)]
    assert datasets.main([*cli, "--url", f"http://127.0.0.1:{closed_port}/x"]) == 2
    assert "cannot reach" in one_error(capsys)
    # the real expected size, a small archive
    assert datasets.main([*cli, "--url", server.url(ARCHIVE)]) == 2
    assert f"offers {len(body):,} bytes, expected 2,341,250,899" in one_error(capsys)
    fetch(server, tmp_path, len(body))
    folder = tmp_path / "places205-test"
    (folder / ARCHIVE).write_bytes(photos_archive(seed=1))
    capsys.readouterr()
    assert datasets.main(cli) == 2
    assert "the archive changed" in one_error(capsys)
    # a corrupt archive, as if just downloaded
    for name in ("download.json", MARKER, "testSet_resize"):
        (folder / name).rename(tmp_path / name)
    (folder / ARCHIVE).write_bytes(b"junk" * 100)
    assert datasets.main(cli) == 2
    assert "corrupt" in one_error(capsys)


def test_cli_entry_point(tmp_path, closed_port):
    args = ["places205-test", "--root", str(tmp_path), "--url", f"http://127.0.0.1:{closed_port}/x"]
    run = subprocess.run([sys.executable, "-m", "lib.datasets", *args], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: cannot reach")


# --- by name, through lib.data.make_loaders ----------------------------------------------------------


def test_a_named_set_is_fetched_on_first_use_only(server, tmp_path):
    body = photos_archive(n=4)
    server.files[ARCHIVE] = body
    mirror = {"url": server.url(ARCHIVE), "size": len(body)}
    kw = dict(data_root=tmp_path, fetch_options=mirror)
    folder, d = data.source_folder("places205-test", **kw)  # what make_loaders and part_loader call
    photos = tmp_path / "places205-test" / "testSet_resize"
    assert folder == photos and sorted(p.name for p in photos.iterdir()) == [
        f"0_{i:02d}.jpg" for i in range(4)
    ]
    assert d == {"source": "places205-test", "folder": str(photos.resolve())}
    parts = [splits.part_files(folder, p)[0] for p in splits.PARTS]  # cut by the rule of the name
    assert sorted(sum(parts, [])) == [f"0_{i:02d}.jpg" for i in range(4)]
    assert server.ranges == [None]
    before = tree(tmp_path)
    again = data.source_folder("places205-test", **kw)  # found extracted: no request, nothing written
    assert server.ranges == [None] and tree(tmp_path) == before
    assert again == (folder, d)


@pytest.mark.parametrize("name", ["places205-test", "places365-val"])
def test_make_loaders_gives_a_failed_download_as_one_line(tmp_path, closed_port, name):
    mirror = {"url": f"http://127.0.0.1:{closed_port}/{ARCHIVE if name == 'places205-test' else ''}"}
    mirror |= {"size": 100} if name == "places205-test" else {}
    with pytest.raises(ValueError, match=f"^{name}: cannot reach .*refused") as e:
        data.make_loaders(name, 16, workers=0, data_root=tmp_path, fetch_options=mirror)
    assert "\n" not in str(e.value)


def test_train_command_prints_a_failed_fetch_as_one_error_line(tmp_path, monkeypatch, capsys):
    """python -m lib.train --data places205-test, with a corrupt archive where the download goes."""
    folder = tmp_path / "places205-test"
    folder.mkdir()
    (folder / ARCHIVE).write_bytes(photos_archive()[:-200])  # as a broken download would leave it
    monkeypatch.setattr(datasets, "DEFAULT_ROOT", tmp_path)
    argv = ["--data", "places205-test", "--size", "16", "--workers", "0", "--out", str(tmp_path / "run")]
    assert train.main(argv) == 2
    assert "corrupt, not a readable tar archive" in one_error(capsys)
    assert not (tmp_path / "run").exists()


def test_places365_val_is_fetched_through_torchvision_on_loopback(server, tmp_path, monkeypatch):
    """dataset="places365-val" on a loopback mirror: torchvision downloads the file list and the
    256-px images, checks their MD5 (here of these small stand-ins: the real sums are of the real
    files) and extracts them; data/places365-val/val_256 is then used as a folder."""
    from torchvision.datasets import Places365

    names = [f"Places365_val_{i:08d}.jpg" for i in range(1, 5)]
    categories, file_list = b"/a/abbey 0\n", "".join(f"{n} 0\n" for n in names).encode()
    devkit = make_archive(
        [member("categories_places365.txt", categories), member("places365_val.txt", file_list)], "w"
    )
    images = make_archive([member(f"val_256/{n}", jpeg(i)) for i, n in enumerate(names)], "w")
    server.files |= {"filelist_places365-standard.tar": devkit, "val_256.tar": images}

    def md5(b: bytes) -> str:
        return hashlib.md5(b).hexdigest()

    monkeypatch.setattr(
        Places365, "_DEVKIT_META", {"standard": ("filelist_places365-standard.tar", md5(devkit))}
    )
    monkeypatch.setattr(Places365, "_CATEGORIES_META", ("categories_places365.txt", md5(categories)))
    monkeypatch.setattr(Places365, "_FILE_LIST_META", {"val": ("places365_val.txt", md5(file_list))})
    monkeypatch.setattr(Places365, "_IMAGES_META", {("val", True): ("val_256.tar", md5(images))})
    kw = dict(data_root=tmp_path, fetch_options={"url": server.url("")})
    folder, d = data.source_folder("places365-val", **kw)
    assert folder == tmp_path / "places365-val" / "val_256"
    assert d == {"source": "places365-val", "folder": str(folder.resolve())}
    assert sorted(sum((splits.part_files(folder, p)[0] for p in splits.PARTS), [])) == names
    requests = len(server.ranges)
    assert requests >= 2  # the file list and the images (torchvision probes for redirects too)
    assert data.source_folder("places365-val", **kw) == (folder, d)  # found there: used as it is
    assert len(server.ranges) == requests  # no new request
