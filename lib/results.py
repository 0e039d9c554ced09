"""Results files: one JSON per run or notebook, with the provenance every number needs.

Every chart and every number in README is drawn from these files, so each one records what was
run (parameters, history, metrics) and who ran it (git commit, package versions, device, times).
"""

import json
import os
import platform
import subprocess
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


def notebook_parameters(namespace: dict) -> dict:
    """The plain values (numbers, strings, booleans, None) defined so far in a notebook.

    Called first thing after the parameters cell (and papermill's injected one), that is exactly
    the notebook's parameters, which go into its results file.
    """
    plain = (int, float, str, bool, type(None))
    return {k: v for k, v in namespace.items() if not k.startswith("_") and isinstance(v, plain)}


def save(path, **record) -> Path:
    """Write a results file atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    os.replace(tmp, path)
    return path


def load(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file (run the notebook that writes it first)")
    return json.loads(path.read_text())
