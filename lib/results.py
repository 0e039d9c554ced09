"""Results files: one JSON per run or notebook, with the provenance every number needs.

Every chart and every number in README is drawn from these files, so each one records what was
run (parameters, history, metrics) and who ran it (git commit, package versions, device, times).
"""

import json
import os
import platform
import re
import secrets
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str:
    """The commit of the code that ran, with "-dirty" if it had uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# The code that runs is the code that was imported. Read once, here: a run of hours must not
# claim a commit made, or an edit begun, while it ran (results and checkpoints record this).
CODE_COMMIT = git_commit()


def cpu_name() -> str:
    """The processor's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device, started: str) -> dict:
    """Who computed this: code version, package versions, machine, device, start and end time."""
    import numpy
    import PIL
    import skimage
    import torchvision

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "git_commit": CODE_COMMIT,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": numpy.__version__,
            "pillow": PIL.__version__,
            "scikit-image": skimage.__version__,
        },
        "device": f"{device.type}: {name}",
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "started": started,
        "finished": now(),
    }


# A temporary file of write_atomic is ".<name>.<pid>.<random>.tmp" beside its target. A writer
# that is killed leaves it behind; the next write of the same target removes the leftovers whose
# process is gone (on this machine), and any older than LEFTOVER_AGE (from other machines, and
# the writers of earlier versions, ".<name>.tmp"). A live writer's file is never touched, so two
# processes writing into one folder at once both finish.
LEFTOVER_AGE = 24 * 3600  # seconds
_NAME_MAX = 255  # the usual file-name limit (ext4, APFS, NTFS)
_TEMP_PART = re.compile(r"(\d+)\.[0-9a-f]{8}")


def _temp_prefix(path: Path) -> str:
    """ ".<name>." cut so that the whole temporary name fits the file-name limit."""
    return f".{path.name[: _NAME_MAX - 30]}."


def process_gone(pid: int) -> bool:
    """Whether no process `pid` runs on this machine (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):  # someone else's live process, or cannot tell
        return False
    return False


def remove_leftovers(path) -> list[Path]:
    """Remove the temporary files that killed writers of `path` left (see LEFTOVER_AGE); returns
    what was removed."""
    path, prefix, removed = Path(path), _temp_prefix(Path(path)), []
    try:
        candidates = [
            f for f in path.parent.iterdir() if f.name.startswith(prefix) and f.name.endswith(".tmp")
        ]
    except OSError:
        return removed
    for f in candidates:
        middle = _TEMP_PART.fullmatch(f.name[len(prefix) : -len(".tmp")])
        try:
            stale = time.time() - f.lstat().st_mtime > LEFTOVER_AGE
            if stale or (
                middle and int(middle.group(1)) != os.getpid() and process_gone(int(middle.group(1)))
            ):
                f.unlink()
                removed.append(f)
        except OSError:  # gone already, or not ours to remove
            pass
    return removed


def write_atomic(path, write: Callable[[Path], object], replace: bool = True) -> Path:
    """The one way this project writes a file: all or nothing.

        `write(tmp)` fills a new temporary file beside `path` (".<name>.<pid>.<random>.tmp": hidden,
        never one that exists, short enough for the file-name limit); then it is renamed onto `path`.
        Whatever happens, the temporary file is gone afterwards, and leftovers of killed writers are
        removed first (remove_leftovers). replace=False never replaces a file: FileExistsError if
        `path` exists, even one that appeared while writing. The file gets the usual permissions
        (0666 less the umask). Returns `path`. A system error while writing (disk full, a file too
    large) is an OSError naming `path`, not the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = path.with_name(f"{_temp_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: a file that appeared meanwhile is kept
    except FileExistsError:
        raise
    except OSError as e:  # disk full, a file too large...: named by the file wanted, not the temporary
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save(path, **record) -> Path:
    """Write a results file (JSON) atomically."""
    text = json.dumps(record, indent=1, default=str)
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def check_same_parameters(record: dict, params: dict, keys, what: str) -> None:
    """Raise ValueError if a results file (`record`, written by `what`) was made with other
    values of `keys` than `params` (a notebook's parameters): comparing or reusing runs of
    different data or budgets would be silently wrong."""
    theirs = record.get("params", {})
    for k in keys:
        if theirs.get(k) != params.get(k):
            raise ValueError(
                f"{what} ran with {k}={theirs.get(k)!r}, this notebook has {k}={params.get(k)!r}: "
                f"rerun {what} with these parameters first"
            )


def load(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file (run the notebook that writes it first)")
    return json.loads(path.read_text())
