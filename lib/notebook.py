"""One line of set-up for every notebook (as d2l's chapters have):

    nb = notebook.setup(globals(), augment="crop")

reads the notebook's parameters (the names its `parameters` cell defines), picks the device and
builds the data every notebook needs: `nb.loaders` (training and validation, with `augment`; None
for a notebook that trains nothing), `nb.held_out` (the held-out set at eval_size, the one every
model of every notebook is scored on), `nb.samples` (n_samples of its images, for sample grids).
`nb.figure` and `nb.save_results` write into the run folder with the parameters and provenance
every results file needs. Nothing here trains: a notebook calls lib.train for that.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from IPython.display import Markdown, display

from lib import checkpoints, data, metrics, models, plots, results


@dataclass
class Notebook:
    """What a notebook's set-up gives it."""

    params: dict  # the notebook's parameters, as its results file records them
    started: str  # when the set-up ran (results.now())
    out: Path  # the run folder: figures/, results/, checkpoints/
    device: torch.device
    loaders: data.Loaders | None
    held_out: torch.utils.data.DataLoader
    samples: torch.Tensor  # uint8 (n_samples, 3, eval_size, eval_size)

    def figure(self, fig, name: str, shown) -> Path:
        """Write a chart as figures/<name>.png with the data it shows beside it (plots.save_figure)."""
        return plots.save_figure(fig, self.out / "figures" / name, shown)

    def save_results(self, name: str, **record) -> Path:
        """Write results/<name>.json: the record, the parameters and the provenance."""
        where = self.out / "results" / f"{name}.json"
        prov = results.provenance(self.device, self.started)
        return results.save(where, params=self.params, **record, provenance=prov)

    def load_results(self, name: str) -> dict:
        """results/<name>.json of an earlier notebook of the same run folder."""
        return results.load(self.out / "results" / f"{name}.json")

    def model_runs(self) -> dict[str, dict]:
        """The results of every model trained into this run folder, {row name: results}: the
        chapters' results/<name>.json for each name of models.MODELS (notebooks 1-3), then
        checkpoints/*/results.json, which `python -m lib.train --out <run folder>/checkpoints/<name>`
        writes (any model, scored on its validation set: the held-out set when the data
        parameters are the notebooks'). Row names are models.label's."""
        found = [self.out / "results" / f"{n}.json" for n in models.MODELS]
        found += sorted((self.out / "checkpoints").glob("*/results.json"))
        runs = {}
        for path in (p for p in found if p.is_file()):
            record = results.load(path)
            runs[models.label(record["model"], record["options"])] = record
        return runs


def setup(namespace: dict, augment: str | None = "crop") -> Notebook:
    """The set-up of a notebook from its namespace (globals() right after the parameters cell):
    the parameters dataset, eval_size, batch_size, max_images, val_size, seed, device, workers,
    n_samples and out_dir; and, when `augment` is given (a notebook that trains), image_size
    for the training loaders (lib.data.make_loaders). Prints one line."""
    params = results.notebook_parameters(namespace)
    p = params
    device = checkpoints.pick_device(p["device"])
    common = dict(val_size=p["val_size"], max_images=p["max_images"], seed=p["seed"], workers=p["workers"])
    loaders = None
    if augment is not None:
        loaders = data.make_loaders(p["dataset"], p["image_size"], p["batch_size"], augment=augment, **common)
    held_out = data.make_loaders(p["dataset"], p["eval_size"], p["batch_size"], **common).val
    nb = Notebook(
        params=params, started=results.now(), out=Path(p["out_dir"]), device=device, loaders=loaders,
        held_out=held_out, samples=data.sample_images(held_out.dataset, p["n_samples"]),
    )  # fmt: skip
    trained = f"{loaders.description['n_train']} training, " if loaders else ""
    skipped = f", {len(loaders.description['skipped'])} files skipped" if loaders else ""
    print(f"device: {device}; {trained}{len(held_out.dataset)} held-out images{skipped}")
    print(f"results go to {nb.out.resolve()}")
    return nb


def table(scores: dict) -> None:
    """Show a metrics table (metrics.format_table) as Markdown."""
    display(Markdown(metrics.format_table(scores, markdown=True)))


def markdown(text: str) -> None:
    """Show Markdown (e.g. models.layer_table) in the notebook."""
    display(Markdown(text))
