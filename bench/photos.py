"""Generated photo folders for the benchmarks: square JPEGs cut from scikit-image's sample photos
(no download; the speed of decoding or training does not depend on what the photos show)."""

import importlib.resources
from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(root: Path, n: int, size: int) -> list[Path]:
    """n size x size JPEGs (quality 90) in root, random square crops of four photos, resized."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    photos = []
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):
        with Image.open(str(importlib.resources.files("skimage.data") / name)) as im:
            photos.append(im.convert("RGB"))
    files = []
    for i in range(n):
        p = photos[i % len(photos)]
        s = int(rng.integers(size, min(p.size) + 1))
        x, y = int(rng.integers(0, p.width - s + 1)), int(rng.integers(0, p.height - s + 1))
        files.append(root / f"p{i:05d}.jpg")
        p.crop((x, y, x + s, y + s)).resize((size, size)).save(files[-1], quality=90)
    return files
