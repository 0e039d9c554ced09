"""How a command ends when it cannot go on: Ctrl-C, a full disk, an unusable run state. One line,
an exit code that says which, and nothing half-written (lib.options.command, results.write_atomic)."""

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib import runs, train

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--size", "32", "--epochs", "1", "--max-images", "32", "--workers", "0"]


def start(args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def no_leftovers(folder: Path) -> bool:
    """No temporary file of results.write_atomic and no run lock left anywhere below `folder`."""
    return not [p for p in folder.rglob(".*") if p.name.endswith(".tmp") or p.name == ".lock"]


@pytest.mark.slow
def test_ctrl_c_ends_training_with_one_line_and_130_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    run = start(["lib.train", *TRAIN, "--epochs", "50", "--out", str(out)])
    while not (out / "last.pt").exists():  # wait for a saved epoch: the run is well under way
        assert run.poll() is None, run.communicate()
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in err
    assert no_leftovers(out)
    state = runs.read_last(out / "last.pt", "cpu")  # whole: what --resume continues from
    epochs = [h["epoch"] for h in state["run"]["history"]]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 50


@pytest.mark.slow
def test_ctrl_c_ends_colorize_with_one_line_and_130_and_every_written_photo_whole(tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (400, 600), dtype=np.uint8)).save(photos / f"{i:02d}.png")
    run = start(["lib.colorize", str(photos), "--out", str(tmp_path / "out"), "--batch-size", "1"])
    while not list((tmp_path / "out").glob("*.png")):
        assert run.poll() is None, run.communicate()
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and err.strip().splitlines()[-1].startswith("interrupted"), err
    written = list((tmp_path / "out").glob("*.png"))
    assert 0 < len(written) < 40 and no_leftovers(tmp_path / "out")
    for f in written:
        with Image.open(f) as im:
            im.load()  # whole: a half-written PNG would fail here


@pytest.mark.slow  # a training process of its own
def test_a_full_disk_while_saving_a_checkpoint_is_one_line_naming_the_file(tmp_path):
    """RLIMIT_FSIZE (with SIGXFSZ ignored) makes every write past 64 KB fail as a full disk does."""

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    out = tmp_path / "run"
    run = start(["lib.train", *TRAIN, "--max-images", "16", "--out", str(out)], preexec_fn=small_files)
    _, err = run.communicate(timeout=300)
    lines = [line for line in err.strip().splitlines() if not line.startswith("epoch")]
    assert run.returncode == 2 and "Traceback" not in err, err
    assert lines[-1].startswith(f"error: {out}/") and lines[-1].endswith(".pt: File too large"), lines[-1]
    assert no_leftovers(out)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train.main([*TRAIN, "--max-images", "16", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable checkpoint"),
        (lambda p: p.write_bytes(b"\\x00" * 100), "not a readable checkpoint"),
        (lambda p: torch.save({"weights": torch.zeros(2)}, p), "not the state of a run of lib.train"),
        (lambda p: (p.unlink(), p.mkdir()), "not a regular file"),
        (lambda p: (p.unlink(), os.mkfifo(p)), "not a regular file"),
        (lambda p: os.truncate(p, 2 << 30), "2.0 GiB, too large for a checkpoint (at most 1 GiB)"),  # sparse
    ],
    ids=["truncated", "garbage", "foreign", "a folder", "a FIFO", "2 GiB"],
)
def test_resume_with_an_unusable_last_pt_says_what_is_wrong_and_what_to_do(
    finished_run, tmp_path, capsys, damage, reason
):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    damage(out / "last.pt")
    assert train.main([*TRAIN, "--max-images", "16", "--epochs", "2", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {out / 'last.pt'}: cannot resume: {reason}")
    assert err[-1].endswith("start the run in another folder (this one's checkpoints stay as they are)")


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (Linux: /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the kernel through /proc")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_pipeline_stops_its_training_kernel_at_once(tmp_path, sig, code):
    out = tmp_path / "run"
    run = start(
        ["lib.pipeline", "--out", str(out), "--no-pdf", "--set", "epochs=50", "--set", "max_images=64"]
    )
    while not (kernels := children(run.pid)) or not (out / "01_OriginalCNN.ipynb").exists():
        assert run.poll() is None, run.communicate()
        time.sleep(0.2)
    time.sleep(3)  # the kernel is in its training cell
    run.send_signal(sig)
    _, err = run.communicate(timeout=30)
    assert run.returncode == code and err.strip().splitlines()[-1].startswith("interrupted"), err
    deadline = time.time() + 5
    while any(alive(k) for k in kernels) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(k) for k in kernels), "the notebook's kernel still runs"


def test_an_out_folder_under_a_regular_file_is_one_line_naming_it(tmp_path, capsys):
    from lib import pipeline

    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "run"
    assert train.main([*TRAIN, "--max-images", "16", "--out", str(out)]) == 2
    assert pipeline.main(["--out", str(out), "--no-pdf"]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert (
            line.startswith(f"error: {out}")
            and line.endswith(": Not a directory")
            or line.startswith("data:")
        )


def test_a_multi_gigabyte_checkpoint_is_refused_before_it_is_read(tmp_path, capsys):
    from lib import colorize, evaluate

    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:
        f.truncate(3 << 30)  # a sparse file: 3 GiB that take no disk and would take 3 GiB of memory
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (48, 40), "teal").save(photos / "a.png")
    assert colorize.main([str(photos), "--checkpoint", str(huge), "--out", str(tmp_path / "c")]) == 2
    argv = ["--checkpoint", str(huge), "--data", str(photos), "--out", str(tmp_path / "s.json")]
    assert evaluate.main(argv) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert line.endswith(f"{huge}: 3.0 GiB, too large for a checkpoint (at most 1 GiB)")
