"""One line of set-up for every notebook (as d2l's chapters have):

    nb = notebook.setup(globals(), augment="crop")

reads the notebook's parameters (the names its `parameters` cell defines), picks the device and
builds the data every notebook needs, one part for each job (lib.splits.part_files):
`nb.loaders` (the train part, with `augment`, and the dev part, which chooses each run's
checkpoint; None for a notebook that trains nothing), `nb.held_out` (the held-out part at
eval_size: every score a notebook reports, for every model of every notebook) and `nb.samples`
(n_samples of its photos, for sample grids). `nb.recipe` holds the training settings that come
from the parameters (fields of lib.train.Settings), `nb.score_runs` scores the runs' chosen
checkpoints on the held-out part, and `nb.figure` and `nb.save_results` write into the run folder
with the parameters and provenance every results file needs. Nothing here trains: a notebook
calls lib.train for that.
"""

import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from IPython.display import Markdown, display

from lib import checkpoints, data, metrics, models, options, plots, results, settings, study

REPO = Path(__file__).resolve().parents[1]  # the project's folder: where the README's commands run

# What each part did, recorded in every results file of a notebook (and checked by the tests):
# a score is reported only on a part that neither trained nor chose what it scores.
JOBS = {
    "train": "trains",
    "dev": "chooses each run's checkpoint",
    "held-out": "scores (every number reported)",
}


# Every parameter a notebook's `parameters` cell declares, with its declared type and range
# (lib.options; a test checks each notebook against it): what setup reads from the notebook's
# namespace and its results file records, and nothing else there (not IPython's In and Out, nor
# a name another cell happens to define).
PARAMETERS = options.PARAMETERS

# The parameters that make two notebooks' runs the same experiment but for the model.
RECIPE = (
    "dataset", "image_size", "augment", "crop_scale", "epochs", "batch_size", "lr", "schedule",
    "precision", "max_images", "seeds", "pretrained",
)  # fmt: skip


PRECISION_WORDS = {"fp32": "float32", "bf16": "bfloat16 autocast", "fp16": "float16 autocast"}


@dataclass
class Notebook:
    """What a notebook's set-up gives it."""

    params: dict  # the notebook's parameters, as its results file records them
    started: str  # when the set-up ran (results.now())
    out: Path  # the run folder: figures/, results/, checkpoints/
    device: torch.device
    loaders: data.Loaders | None  # train (augmented) and dev parts, for lib.train.fit
    held_out: torch.utils.data.DataLoader  # the held-out part at eval_size, in name order
    scored_on: dict  # what held_out is (lib.data.part_loader's description)
    samples: torch.Tensor  # uint8 (n_samples, 3, eval_size, eval_size), distinct held-out photos

    @property
    def recipe(self) -> dict:
        """The fields of lib.train.Settings that come from the parameters (all but the model, its
        options and the seed): the same for every run of a notebook."""
        p = self.params
        return {
            "epochs": p["epochs"], "lr": p["lr"], "schedule": p["schedule"], "precision": p["precision"],
            "device": self.device, "progress": p["progress"],
        }  # fmt: skip

    def score_runs(self, runs: dict, vividness: dict | None = None) -> dict:
        """Load each run's checkpoint (the one its dev part chose, loaded back from disk) and
        score them all and the gray baseline on the held-out part in one pass.

        runs: {seed: run record of lib.train.fit}, all of one model. vividness: {row name:
        setting} to score a classification head at several settings (None: one row, the
        checkpoint's default), e.g. {"faithful": 0, "default": None}. Returns {"gray baseline":
        scores, "rows": {row: {seed: scores}}} (lib.metrics.evaluate_all's scores, per photo too)."""
        vividness = vividness or {"": None}
        predictors = {}
        for seed, run in runs.items():
            model, _ = checkpoints.load(checkpoints.best(run), self.device)
            for row, v in vividness.items():
                predictors[(row, seed)] = model.replace(vividness=v)
        scores = metrics.evaluate_all(
            predictors | {"gray": metrics.gray_baseline}, self.held_out, self.device
        )
        rows = {row: {seed: scores[(row, seed)] for seed in runs} for row in vividness}
        return {"gray baseline": scores["gray"], "rows": rows}

    def photos(self, names=None) -> torch.Tensor:
        """The held-out photos named `names` (file names relative to the data's root, as results
        files list them; all when None), as the models see them: a uint8 (N, 3, eval_size,
        eval_size) batch."""
        ds = self.held_out.dataset
        at = {f: i for i, f in enumerate(ds.files)}
        return torch.stack([ds[at[n]] for n in (ds.files if names is None else names)])

    def paths(self, names) -> list[Path]:
        """The files of the held-out photos `names`: whole photos, for full-size figures."""
        return [self.held_out.dataset.root / n for n in names]

    def showcase(self, *scored: dict, percentiles=None) -> list[str]:
        """The names of the held-out photos a sample figure shows, picked by a rule, not by eye
        (lib.study.showcase): those at `percentiles` (by default n_samples of them, evenly spaced
        from the 90th down to the 10th) of each photo's AuC margin over the gray baseline,
        averaged over every row and seed of `scored` (score_runs' outputs, or results files that
        hold them). The first are photos the models colorize well, the last their worse ones."""
        if percentiles is None:
            percentiles = np.linspace(90, 10, self.params["n_samples"]).tolist()
        gray = scored[0]["gray baseline"]
        runs = [s for record in scored for seeds in record["rows"].values() for s in seeds.values()]
        picks = study.showcase(study.photo_margins(runs, gray), percentiles)
        return [gray["files"][i] for i in picks]

    def recipe_text(self, original: dict | None = None) -> str:
        """How this notebook's runs train, in words, from its parameters (Markdown); with
        `original` (lib.original.CNN_RECIPE, RESNET_RECIPE), whether that is how the original
        trained, and if not, what the original did: the text follows the parameters, so a
        profile that changes the recipe (the study's, shared by every model) is never described
        as the original's."""
        p, d = self.params, self.loaders.description
        seeds = ", ".join(map(str, p["seeds"]))
        augment = {
            "affine": "Keras-style rotations (up to 20°), shear, zoom (0.8–1.2) and flips",
            "crop": f"random resized crops covering {p['crop_scale']:.0%} to all of a photo, and flips",
            "none": "none",
        }
        schedule = {"constant": "constant", "onecycle": "one-cycle: warm-up, then cosine annealing"}
        text = (
            f"{len(p['seeds'])} run(s), seed(s) {seeds}: each {p['epochs']} epochs over the "
            f"{d['n_train']:,} photos of the train part at {p['image_size']} px, batch {p['batch_size']}, "
            f"Adam with learning rate {p['lr']:g} ({schedule[p['schedule']]}); augmentation: "
            f"{augment[p['augment']]}; "
            f"{PRECISION_WORDS[settings.precision_on(p['precision'], self.device)]}."
        )
        if original is None:
            return text
        differ = {k: v for k, v in original.items() if p[k] != v}
        if not differ:
            return text + " These are the original project's settings."
        was = ", ".join(f"{k} = {v!r}" for k, v in differ.items())
        return text + f" The original trained with {was}: this run's parameters change that."

    def check_same_recipe(self, record: dict, what: str) -> None:
        """Stop unless an earlier notebook's results (`what`, e.g. "notebook 3") were trained with
        this notebook's photos and recipe (RECIPE): two heads compared on other budgets would
        compare the budgets."""
        results.check_same_parameters(record, self.params, RECIPE, what)

    def figure(self, fig, name: str, shown) -> Path:
        """Write a chart as figures/<name>.png with the data it shows beside it (plots.save_figure)."""
        return plots.save_figure(fig, self.out / "figures" / name, shown)

    def save_results(self, name: str, **record) -> Path:
        """Write results/<name>.json: the record, the parameters, what each part did, what the
        scores were computed on (the held-out part) and the provenance."""
        where = self.out / "results" / f"{name}.json"
        prov = results.provenance(self.device, self.started)
        return results.save(
            where, params=self.params, parts=JOBS, scored_on=self.scored_on, **record, provenance=prov
        )

    def load_results(self, name: str) -> dict:
        """results/<name>.json of an earlier notebook of the same run folder."""
        return results.load(self.out / "results" / f"{name}.json")

    def model_runs(self) -> dict[str, dict]:
        """The results of every model chapter of this run folder, {model name: results}: the
        results/<name>.json of each name of models.MODELS and its classification head's, as the
        chapters wrote them (their "rows" hold each seed's held-out scores)."""
        names = [*models.MODELS, *(f"{n}-classification" for n in models.MODELS)]
        found = [self.out / "results" / f"{n}.json" for n in names]
        return {p.stem: results.load(p) for p in found if p.is_file()}


def setup(namespace: dict, augment: str | None = "crop") -> Notebook:
    """The set-up of a notebook from its namespace (globals() right after the parameters cell):
    the parameters dataset, eval_size, batch_size, max_images, device, workers, n_samples and
    out_dir; and, when `augment` is given (a notebook that trains), image_size and crop_scale for
    the training loaders (lib.data.make_loaders). Prints one line."""
    params = options.check_parameters({k: namespace[k] for k in PARAMETERS if k in namespace}, "notebook")
    p = params
    device = checkpoints.pick_device(p["device"])
    loaders = None
    if augment is not None:
        loaders = data.make_loaders(
            p["dataset"], p["image_size"], p["batch_size"], max_images=p["max_images"], augment=augment,
            workers=p["workers"], crop_scale=p["crop_scale"],
        )  # fmt: skip
    held_out, scored_on = data.part_loader(
        p["dataset"], "held-out", p["eval_size"], p["batch_size"], p["workers"]
    )
    scored_on["files"] = list(held_out.dataset.files)
    nb = Notebook(
        params=params, started=results.now(), out=Path(p["out_dir"]), device=device, loaders=loaders,
        held_out=held_out, scored_on=scored_on, samples=data.sample_images(held_out.dataset, p["n_samples"]),
    )  # fmt: skip
    if loaders:
        d = loaders.description
        print(f"device: {device}; train part {d['n_train']} photos, dev part {d['n_val']}, "
              f"held-out part {len(held_out.dataset)}")  # fmt: skip
    else:
        print(f"device: {device}; held-out part {len(held_out.dataset)} photos")
    print(f"results go to {nb.out.resolve()}")
    return nb


def seed_rows(models: dict) -> dict:
    """The rows of one table of several models' Notebook.score_runs output, {name: scored} (or
    results files that hold it): one per (model, setting, seed), then the gray baseline (the
    same photos for all: metrics.check_same_held_out)."""
    rows = {
        f"{name}{f', {row}' if row else ''}, seed {seed}": s
        for name, scored in models.items()
        for row, seeds in scored["rows"].items()
        for seed, s in seeds.items()
    }
    metrics.check_same_held_out({name: scored["gray baseline"] for name, scored in models.items()})
    return rows | {"gray baseline": next(iter(models.values()))["gray baseline"]}


def command(*args, comment: str | None = None, columns: int = 88) -> str:
    """A shell command as text to show (shell), with the run's real paths. Each argument is
    shell-quoted; an absolute path inside the project's folder (where the README's commands run)
    is shown relative to it; a command longer than `columns` continues on indented lines ending
    in a backslash, so that it can be copied as shown and prints unwrapped."""
    words = [shlex.quote(_shown(a)) for a in args]
    lines = [words[0]]
    for w in words[1:]:
        if len(lines[-1]) + 1 + len(w) + 2 > columns:  # room for " \\"
            lines[-1] += " \\"
            lines.append("    " + w)
        else:
            lines[-1] += " " + w
    if comment:
        lines[-1] += f"  # {comment}"
    return "\n".join(lines)


def shell(*commands: str) -> None:
    """Show shell commands (command's text) as one Markdown bash block."""
    display(Markdown("```bash\n" + "\n".join(commands) + "\n```"))


def _shown(arg) -> str:
    """An argument as a command shows it: an absolute path inside the project, relative to it."""
    path = Path(str(arg))
    inside = path.is_absolute() and path.resolve().is_relative_to(REPO)
    return str(path.resolve().relative_to(REPO)) if inside else str(arg)


def table(scores: dict) -> None:
    """Show a metrics table (metrics.format_table) as Markdown."""
    display(Markdown(metrics.format_table(scores, markdown=True)))


def markdown(text: str) -> None:
    """Show Markdown (e.g. models.layer_table) in the notebook."""
    display(Markdown(text))
