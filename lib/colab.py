"""What a notebook's first cell does in Google Colab once it has fetched the project (elsewhere the
cell does nothing and this module is never imported): install the few packages Colab lacks and
work in the project's notebooks/ folder, so that the notebook's relative paths (profiles, data,
runs) mean what they mean in Jupyter. Colab has torch, numpy, PIL, PyYAML and most of the rest."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# import name: the package pip installs it from
NEEDED = {
    "torchvision": "torchvision",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
}


def setup(home) -> None:
    """Install (pip, quietly) what of NEEDED is missing, then change to `home`/notebooks."""
    missing = [pip for module, pip in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    os.chdir(Path(home) / "notebooks")
