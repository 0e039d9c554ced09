"""Photos in, tensors out: datasets, loaders and the embedded photos.

The flow (see README): DataLoader workers only decode (lib.images), orient, crop and resize, and
hand over uint8 RGB (3, H, W). Colour conversion happens once per batch on the training device
(lib.lab.rgb_to_model, the one conversion from images to model tensors). Nothing holds the data
set in memory: a dataset is a list of file names. Which photos a loader reads is lib.splits'
business: make_loaders reads the train and dev parts, part_loader the held-out one. A file that
cannot be used is skipped with its reason (lib.images' bad-input policy): scanned out at
start-up, or caught in a worker and reported once.
"""

import functools
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from lib import datasets, images, splits

# --- the dataset ---------------------------------------------------------------------------------


def transform(size: int, augment: str, resize: int | None = None, crop_scale: float = 0.08):
    """PIL RGB -> uint8 tensor (3, size, size).

    "crop": RandomResizedCrop + flip (the ResNet notebook of the original, after Melas); each crop
      covers `crop_scale` to all of the photo's area (torchvision's default 0.08 zooms in up to
      3.5x: little of the scene's context is left for judging colour);
    "affine": Keras-style rotation 20°, shear 0.2 rad, zoom 0.8-1.2, flip (the original CNNs);
    "none": shorter side to `resize` (default: `size`), centre crop `size` (evaluation).
    """
    if augment == "crop":
        crop = v2.RandomResizedCrop(size, scale=(crop_scale, 1.0), antialias=True)
        steps = [crop, v2.RandomHorizontalFlip()]
    elif augment == "affine":
        steps = [
            v2.Resize(size, antialias=True),
            v2.RandomAffine(degrees=20, shear=float(np.degrees(0.2)), scale=(0.8, 1.2)),
            v2.RandomHorizontalFlip(),
            v2.CenterCrop(size),
        ]
    elif augment == "none":
        steps = [v2.Resize(resize or size, antialias=True), v2.CenterCrop(size)]
    else:
        raise ValueError(f"augment must be 'crop', 'affine' or 'none', got {augment!r}")
    return v2.Compose([*steps, v2.PILToTensor()])


class PhotoFolder(Dataset):
    """Colour photos under `root` named by `files`; items are uint8 (3, size, size) tensors.

    An item that fails to decode is returned as (path, reason) instead; `collate` sorts it out.
    """

    def __init__(
        self, root, files: list[str], size: int, augment: str = "none", resize: int | None = None,
        crop_scale: float = 0.08,
    ):  # fmt: skip
        self.root, self.files, self.size = Path(root), list(files), size
        self.transform = transform(size, augment, resize, crop_scale)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, None)
        path = self.root / self.files[i]
        try:
            with images.open_image(path) as im:
                rgb = images.to_rgb(im)
            if images.is_gray(rgb):
                raise images.BadImage("no colour: its three channels are equal")
        except images.BadImage as e:
            return (str(path), str(e))
        if seed is None:
            return self.transform(rgb)
        with torch.random.fork_rng(devices=[]):  # seed this item's augmentation, touch nothing else
            # The CPU generator alone: torch.manual_seed also queues lazy seeding of CUDA, XPU and
            # MTIA, with a stack trace each, which cost more than decoding the image.
            torch.default_generator.manual_seed(seed)
            return self.transform(rgb)


class EpochSampler(Sampler):
    """Yields (index, augmentation seed) pairs whose order and seeds depend only on (seed, epoch).

    Call set_epoch(e, seed) before each epoch (as with DistributedSampler; the run's seed, so that
    loaders need not be rebuilt for each seed of a study). Because each item carries its
    own seed, the augmentation is the same with 0, 1 or 8 workers, persistent or not, and a resumed
    run sees exactly the batches an uninterrupted one would have seen.

    Under torch.distributed (torchrun), process number `process` (0-based) of `processes` takes
    every processes-th item of the same permutation, padded by wrapping around so that all take the
    same number of batches; None means torch.distributed's rank and world size (0 and 1 without it).
    """

    def __init__(self, n: int, seed: int = 0, process: int | None = None, processes: int | None = None):
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.process = process if process is not None else torch.distributed.get_rank() if dist else 0
        self.processes = (
            processes if processes is not None else torch.distributed.get_world_size() if dist else 1
        )
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int, seed: int | None = None) -> None:
        self.epoch = epoch
        if seed is not None:
            self.seed = seed

    def __len__(self):
        return -(-self.n // self.processes)  # ceil: every process the same count

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        seeds = torch.randint(2**62, (self.n,), generator=g).tolist()
        pairs = list(zip(order, seeds, strict=True))
        pairs += pairs[: len(self) * self.processes - self.n]  # pad to a multiple of processes
        return iter(pairs[self.process :: self.processes])


def collate(items):
    """Stack good images into one uint8 batch; return (batch, [(path, reason), ...])."""
    good = [x for x in items if isinstance(x, torch.Tensor)]
    bad = [x for x in items if not isinstance(x, torch.Tensor)]
    batch = torch.stack(good) if good else torch.empty(0, 3, 1, 1, dtype=torch.uint8)
    return batch, bad


def sample_images(dataset: PhotoFolder, n: int = 6) -> torch.Tensor:
    """n images spread evenly over a dataset (the same ones every time), as a uint8 batch."""
    picks = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int)
    items = [dataset[int(i)] for i in picks]
    return torch.stack([x for x in items if isinstance(x, torch.Tensor)])


# --- loaders -----------------------------------------------------------------------------------------

# The embedded photos: real colour photos that ship in the repository (data/photos/README.md), cut
# into train/, dev/ and held-out/ subfolders. The repository's data/, whatever the working
# directory (notebooks run in notebooks/).
PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"


class Loaders(NamedTuple):
    train: DataLoader  # the train part, augmented, in each epoch's order (EpochSampler)
    val: DataLoader  # the dev part, whole photos: what chooses the checkpoint
    description: dict  # what the data was: goes into checkpoints and results files


def folder_loader(
    root, size: int = 256, resize: int | None = None, batch_size: int = 32, workers=None,
    files: list[str] | None = None,
):  # fmt: skip
    """Every usable colour photo of a folder (or the `files` below it, such as one part of a split),
    in name order, for evaluation: shorter side resized to `resize` (default: `size`), centre crop
    `size`. Returns (loader, skipped): the files the header check refused, each with its reason;
    files that fail to decode come with their batch."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    files = sorted(files) if files is not None else images.list_images(root)
    good, skipped = images.scan(root, files, min_side=size)  # smaller than the crop: not upscaled
    if not good:
        raise ValueError(f"{root}: no usable colour image ({len(skipped)} skipped)")
    return _loader(PhotoFolder(root, good, size, "none", resize), batch_size, workers), skipped


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _first_process_first(make):
    """make()'s result; under torchrun the first process runs it while the others wait at a barrier,
    then they run it too and find its work done (a built or fetched data set), rather than all
    writing the same files at once. The first one's error, if any, is raised after the barrier (the
    others must not wait for ever); the others then try themselves, and fail likewise."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return make()
    first, done, error = torch.distributed.get_rank() == 0, None, None
    if first:
        try:
            done = make()
        except Exception as e:
            error = e
    torch.distributed.barrier()
    if error is not None:
        raise error
    return done if first else make()


def _skipped_why(skips) -> str:
    """'N file(s) skipped (3 empty file, 1 grayscale image)', for a part with no usable file."""
    if not skips:
        return "no image file found"
    return f"{len(skips)} file(s) skipped ({images.count_skips(r for _, r in skips)})"


def source_folder(source, data_root=None, fetch_options: dict | None = None) -> tuple[Path, dict]:
    """(the folder, its description) of a data source, one small function per kind: "photos"
    (embedded_photos), a public data set by name (named_set: a key of lib.datasets.DATASETS) or
    any folder of colour photos (photo_folder). A name wins over a folder of the same name in the
    working directory (write ./photos for that). How a folder is cut into its three parts (its
    subfolders, a split file, or a rule of the file name) is lib.splits.part_files' business."""
    if str(source) == "photos":
        return embedded_photos()
    if str(source) in datasets.DATASETS:
        return named_set(str(source), data_root, fetch_options)
    return photo_folder(source)


def embedded_photos() -> tuple[Path, dict]:
    """The photos that ship in data/photos/ (PHOTOS), in train/, dev/ and held-out/ subfolders."""
    return PHOTOS, {"source": "photos"}


def named_set(name: str, data_root=None, fetch_options: dict | None = None) -> tuple[Path, dict]:
    """A public data set by name, fetched on first use by lib.datasets (progress bar, size and
    checksum checks; a broken places205-test download resumes) into `data_root`/<name> (default
    lib.datasets.DEFAULT_ROOT, the repository's data/), under torchrun by the first process while
    the others wait; later calls find it extracted and download nothing. Its photo folder is then
    used as any folder; the description's "source" is the name and its "folder" that folder.
    `fetch_options`: keyword arguments for lib.datasets.fetch (url: a mirror; size, timeout), as
    for a test's local server. A fetch that fails raises ValueError "<name>: <lib.datasets'
    one-line reason>"."""
    data_root = Path(data_root or datasets.DEFAULT_ROOT)
    try:
        folder = _first_process_first(lambda: datasets.fetch(name, data_root, **(fetch_options or {})))
    except (datasets.FetchError, OSError) as e:  # OSError: disk full, permissions
        # ValueError: what the commands catch and print as one "error: ..." line
        raise ValueError(f"{name}: {' '.join(str(e).split())}") from None
    return Path(folder), {"source": name, "folder": str(Path(folder).resolve())}


def photo_folder(folder) -> tuple[Path, dict]:
    """Any folder of colour photos; FileNotFoundError, naming the data set names too, if there is none."""
    if not Path(folder).is_dir():
        names = ", ".join(["photos", *datasets.DATASETS])
        raise FileNotFoundError(f"{folder}: no such folder, nor a data set name ({names})")
    return Path(folder), {"source": str(Path(folder).resolve())}


def make_loaders(
    source="photos",
    size: int = 64,
    batch_size: int = 32,
    *,
    max_images: int | None = None,
    augment: str = "crop",
    workers: int | None = None,
    pin_memory: bool = False,
    split_file=None,
    crop_scale: float = 0.08,
    data_root=None,
    fetch_options: dict | None = None,
) -> Loaders:
    """The loaders a training run needs: its source's train part (augmented with `augment`) and
    its dev part (whole photos at `size`: shorter side resized, centre crop), which validates
    every epoch and chooses the checkpoint. The held-out part is never read here: it is for
    scoring (part_loader). `source` and the split: source_folder and splits.part_files.

    `max_images` keeps the first N usable train photos of a fixed order (splits.rank with
    splits.SPLIT_SEED), so a bigger N keeps the smaller run's photos, whatever the run's seed.
    The run's seed sets each epoch's order and augmentation (EpochSampler.set_epoch), not the
    data. crop_scale: the smallest share of a photo's area a training crop covers (augment="crop").
    """
    root, desc = source_folder(source, data_root, fetch_options)
    train_all, how = splits.part_files(root, "train", split_file)
    train_files, skip_t = images.scan(root, splits.rank(train_all, splits.SPLIT_SEED), size, max_images)
    dev_files, skip_v = images.scan(root, splits.part_files(root, "dev", split_file)[0], size)
    for files, skips, part in ((train_files, skip_t, "train"), (dev_files, skip_v, "dev")):
        if not files:
            raise _no_usable(root, part, how, skips)
    desc |= {
        "split": how, "parts": {"train": "train", "val": "dev"},  # the val loader is the dev part
        "size": size, "max_images": max_images, "augment": augment, "crop_scale": crop_scale,
        "n_train": len(train_files), "n_val": len(dev_files), "skipped": [list(s) for s in skip_t + skip_v],
    }  # fmt: skip
    load = functools.partial(_loader, batch_size=batch_size, workers=workers, pin_memory=pin_memory,
                             keep=True)  # fmt: skip
    train = PhotoFolder(root, sorted(train_files), size, augment, crop_scale=crop_scale)
    val = PhotoFolder(root, dev_files, size, "none")
    return Loaders(load(train, sampler=EpochSampler(len(train_files))), load(val), desc)


def part_loader(
    source,
    part: str,
    size: int,
    batch_size: int = 32,
    workers=None,
    split_file=None,
    data_root=None,
    fetch_options: dict | None = None,
) -> tuple[DataLoader, dict]:
    """One part of a source (source_folder, splits.part_files) for scoring: every usable photo in
    name order, shorter side resized to `size`, centre crop. Returns (loader, description: source,
    split, part, size, n_images, skipped). ValueError, one line, when the part has no usable photo."""
    root, desc = source_folder(source, data_root, fetch_options)
    files, how = splits.part_files(root, part, split_file)
    good, skipped = images.scan(root, files, min_side=size)  # as train skips one smaller than its crop
    if not good:
        raise _no_usable(root, part, how, skipped)
    loader = _loader(PhotoFolder(root, good, size, "none"), batch_size, workers)
    desc |= {"split": how, "part": part, "size": size, "n_images": len(good)}
    return loader, desc | {"skipped": [list(s) for s in skipped]}


def _loader(dataset, batch_size: int, workers=None, pin_memory=False, keep=False, sampler=None) -> DataLoader:
    """A DataLoader of a PhotoFolder: batches of uint8 photos and their skips (collate), in the
    dataset's order unless a `sampler` says otherwise; `workers` None: default_workers(); `keep`:
    its worker processes live from epoch to epoch (a training run's loaders)."""
    workers = default_workers() if workers is None else workers
    return DataLoader(
        dataset, batch_size=batch_size, collate_fn=collate, num_workers=workers, sampler=sampler,
        shuffle=False, persistent_workers=keep and workers > 0, pin_memory=pin_memory,
    )  # fmt: skip


def _no_usable(root, part: str, how: dict, skips) -> ValueError:
    """The one-line error of a part with no usable photo: the folder, the part, how the folder
    was cut into parts (part_files' description) and why each of the part's files was refused."""
    rule = {"split file": f"as {how.get('file')} lists", "subfolders": "its subfolder"}
    rule = rule.get(how["rule"], "parts by a rule of the file name")
    return ValueError(f"{root}: no usable colour image in its {part} part ({rule}): {_skipped_why(skips)}")
