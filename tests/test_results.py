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
