"""The one atomic writer every file of the project goes through, and the results-file helpers."""

import os
import stat

import pytest

from lib import results


def test_write_atomic_is_all_or_nothing_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "record.json"
    results.write_atomic(path, lambda tmp: tmp.write_text("one"))
    assert path.read_text() == "one"

    def fails(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        results.write_atomic(path, fails)
    assert path.read_text() == "one"  # the old file, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]  # no leftover


def test_write_atomic_never_reuses_a_leftover_and_can_refuse_to_replace(tmp_path):
    path = tmp_path / "a.png"
    stale = tmp_path / ".a.png.tmp"  # what the old writers named their temporary file
    stale.write_text("left by a killed writer")
    results.write_atomic(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and stale.read_text() == "left by a killed writer"
    with pytest.raises(FileExistsError):
        results.write_atomic(path, lambda tmp: tmp.write_text("newer"), replace=False)
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.png.tmp", "a.png"]


def test_written_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = results.write_atomic(tmp_path / "out.jpg", lambda tmp: tmp.write_bytes(b"x"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_a_record_of_other_parameters_is_refused_with_its_name():
    record = {"params": {"epochs": 10, "seed": 0}}
    results.check_same_parameters(record, {"epochs": 10, "seed": 0, "other": 1}, ("epochs", "seed"), "nb 3")
    with pytest.raises(ValueError, match="nb 3 ran with epochs=10, this notebook has epochs=12"):
        results.check_same_parameters(record, {"epochs": 12, "seed": 0}, ("epochs", "seed"), "nb 3")


def test_leftovers_of_killed_writers_are_removed_but_a_live_writers_file_is_kept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        target = tmp_path / "last.pt"
        of_dead = tmp_path / f".last.pt.{int(dead.stdout)}.0123abcd.tmp"
        of_alive = tmp_path / f".last.pt.{alive.pid}.0123abcd.tmp"
        old_style = tmp_path / ".last.pt.tmp"  # the old writers' name: no process to ask
        ancient = tmp_path / ".last.pt.tmp.orig.tmp"
        other = tmp_path / f".best.pt.{int(dead.stdout)}.0123abcd.tmp"  # another target's
        for f in (of_dead, of_alive, old_style, ancient, other):
            f.write_bytes(b"")
        day_ago = os.stat(ancient).st_mtime - results.LEFTOVER_AGE - 60
        os.utime(ancient, (day_ago, day_ago))
        results.write_atomic(target, lambda tmp: tmp.write_bytes(b"ok"))
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted([target.name, of_alive.name, old_style.name, other.name])
    finally:
        alive.kill()
        alive.wait()


def test_a_name_near_the_file_name_limit_still_gets_a_temporary_file(tmp_path):
    path = tmp_path / ("x" * 250 + ".png")
    results.write_atomic(path, lambda tmp: tmp.write_bytes(b"ok"))
    assert path.read_bytes() == b"ok" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_full_disk_names_the_file_wanted_not_the_temporary_one(tmp_path):
    import errno

    def full(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))  # as a real write names it

    with pytest.raises(OSError) as failed:
        results.write_atomic(tmp_path / "results.json", full)
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(tmp_path / "results.json")
    assert not list(tmp_path.iterdir())
