"""What a reader sees: the committed study exports (figures/notebooks/*.pdf) page by page, the
charts' data against the numbers the text states, the photos the figures show against the rule
the text gives, and shown commands that can be copied."""

import json
import re
import shlex
from pathlib import Path

import nbformat
import numpy as np
import pypdfium2
import pytest
import torch

from lib import data, lab, metrics, notebook, original, pipeline, plots, study

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
RESULTS = FIGURES / "results"
PDFS = sorted((FIGURES / "notebooks").glob("*.pdf"))
A4 = (595.28, 841.89)  # points


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def figure_data(name: str):
    return json.loads((FIGURES / f"{name}.json").read_text())


def markdown(notebook_name: str) -> str:
    nb = nbformat.read(ROOT / "notebooks" / f"{notebook_name}.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def blank_below(page) -> float:
    """The share of a page (rendered at 50 dpi, as pdftoppm -r 50) below its last non-white row."""
    gray = np.asarray(page.render(scale=50 / 72).to_pil().convert("L"))
    rows = np.flatnonzero((gray < 240).any(axis=1))
    return 1.0 - (rows.max() + 1 if len(rows) else 0) / gray.shape[0]


def test_every_notebook_has_a_committed_export():
    assert [p.stem for p in PDFS] == sorted(pipeline.NOTEBOOKS)


@pytest.mark.parametrize("pdf", PDFS, ids=lambda p: p.stem)
def test_exports_are_a4_without_half_empty_pages_prompts_or_bookkeeping(pdf):
    doc = pypdfium2.PdfDocument(pdf)
    holes, text = [], ""
    for i, page in enumerate(doc):
        assert page.get_size() == pytest.approx(A4, abs=1), f"{pdf.name} p.{i + 1} is not A4"
        if i < len(doc) - 1 and (blank := blank_below(page)) > 0.40:
            holes.append(f"p.{i + 1}: {blank:.0%} blank")
        text += page.get_textpage().get_text_range() + "\n"
    assert holes == [], f"{pdf.name}: {holes}"
    assert "nb.save_results" not in text and "fmt: skip" not in text  # bookkeeping cells hidden
    assert not re.search(r"In \[\d*\]", text)  # no prompt numbers
    assert "\\\\" not in text  # no literal double backslash in a shown command
    assert "$$" not in text and "\\frac" not in text  # equations typeset, not raw LaTeX


def test_bookkeeping_cells_are_tagged_to_leave_the_exports_and_stay_in_the_notebooks():
    for name in pipeline.NOTEBOOKS:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        saves = [c for c in nb.cells if "nb.save_results(" in c.source]
        assert len(saves) == 1 and saves[0].metadata.get("tags") == ["remove-cell"], name


def test_the_original_chart_draws_the_numbers_chapters_2_and_4_state():
    shown = figure_data("original_chart_one_scale")
    assert shown["as_published"] == original.BAR_CHART
    summary = load("comparison")["summary"]
    ours = {n: m["ab_mse"]["mean"] / 128**2 for n, m in summary["models"].items()}
    assert shown["ours"] == pytest.approx(ours | {"gray baseline": summary["gray"]["ab_mse"] / 128**2})
    text = markdown("04_Comparison")
    bars = original.BAR_CHART
    for stated in (
        f"the first CNN at {bars['CNN (1st run)']:.4f}",
        f'the "optimized" CNN at {bars["CNN after Optimization"]:g} (no visible',
        f"the ResNet18 at {bars['Resnet18']:.4f}",
        f"{bars['Resnet18']:.4f} × (255/128)² = {bars['Resnet18'] * original.RESNET_TO_OUR_SCALE:.4f}",
        f"held-out MSE was ${original.EDITED_CNN_HELDOUT_MSE:.1e}".replace("e-0", r" \cdot 10^{-") + "}$",
        f"training loss ${original.EDITED_CNN_TRAIN_LOSS[-1]:.0e}".replace("e-", r" \cdot 10^{-") + "}$",
    ):
        assert stated in " ".join(text.split()), stated
    assert f"held-out MSE, {original.EDITED_CNN_HELDOUT_MSE:.1e}," in " ".join(
        markdown("02_EditedCNN").split()
    )


def test_the_margins_chart_draws_the_study_and_the_reference_model():
    record = load("comparison")
    assert figure_data("margins") == record["summary"]["vs_gray"] | record["reference"]["vs_gray"]


def test_sample_figures_show_the_photos_the_stated_rule_picks():
    """Each chapter's sample grid shows n_samples held-out photos at evenly spaced ranks of the
    per-photo AuC margin over gray (90th to 10th percentile), of the model(s) it shows; each
    whole-photo row, the photos at the median and the 10th percentile."""

    def picks(*records, percentiles=None):
        n = records[0]["params"].get("n_samples", 6)
        gray = records[0]["gray baseline"]
        runs = [s for r in records for seeds in r["rows"].values() for s in seeds.values()]
        at = study.showcase(study.photo_margins(runs, gray), percentiles or np.linspace(90, 10, n).tolist())
        return [gray["files"][i] for i in at]

    cnn, edited, resnet, heads = (load(n) for n in ("original_cnn", "edited_cnn", "resnet18",
                                                    "resnet18-classification"))  # fmt: skip
    assert figure_data("samples_original_cnn")["photos"] == picks(cnn)
    assert figure_data("samples_cnn_before_after")["photos"] == picks(cnn, edited)
    assert figure_data("samples_resnet18")["photos"] == picks(resnet)
    assert figure_data("samples_heads")["photos"] == picks(resnet, heads)
    assert figure_data("samples")["photos"] == picks(cnn, edited, resnet, heads, percentiles=[90, 50, 10])
    for prefix, records in (("colorized", [resnet]), ("heads", [resnet, heads])):
        shown = sorted(p.stem.removeprefix(f"{prefix}_") for p in FIGURES.glob(f"{prefix}_*.json"))
        assert shown == sorted(Path(f).stem for f in picks(*records, percentiles=[50, 10])), prefix
    assert (
        Path(figure_data("vividness")["photo"]).stem == Path(picks(resnet, heads, percentiles=[50])[0]).stem
    )


def test_the_lab_figure_shows_the_held_out_photo_whose_a_and_b_vary_most():
    loader, _ = data.part_loader("photos", "held-out", 64, 64, 0)
    photos = torch.cat([rgb for rgb, _ in loader])
    spread = lab.ab_spread(photos)
    assert figure_data("lab_channels")["photo"] == loader.dataset.files[int(spread.argmax())]
    assert spread.max() > 2 * spread.median()  # a photo with both axes clearly in it


def test_the_lab_axis_colour_maps_run_through_the_colours_of_their_axis():
    for axis, (low, high) in ((1, ("green", "red")), (2, ("blue", "yellow"))):
        cmap = plots.lab_axis_colours(axis)
        ends = torch.tensor([cmap(0.0)[:3], cmap(0.5)[:3], cmap(1.0)[:3]]).T[None, :, None, :]
        l, a, b = lab.rgb_to_lab(ends.float())[0, :, 0]
        assert torch.allclose(l, torch.full((3,), 70.0), atol=1.5)  # one lightness: only colour varies
        other = b if axis == 1 else a
        along = a if axis == 1 else b
        assert along[0] < -20 and along[2] > 20 and abs(along[1]) < 2, (low, high)
        assert other.abs().max() < 12  # the other axis stays near 0 (gamut mapping keeps the hue)


def test_showcase_takes_the_photos_at_the_stated_ranks():
    margins = np.array([0.3, -0.1, 0.5, 0.0, 0.2, -0.4, 0.1, 0.4, -0.2, 0.6, 0.05])
    assert [margins[i] for i in study.showcase(margins, (90, 50, 10))] == [0.5, 0.1, -0.2]
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (5, 3, 16, 16), generator=g, dtype=torch.uint8)
    _, ab = lab.rgb_to_model(rgb)
    truth = {"truth": lambda l: ab, "gray": metrics.gray_baseline}  # the true colours beat gray
    scores = metrics.evaluate_all(truth, [(rgb, [])])
    margin = study.photo_margins([scores["truth"]], scores["gray"])
    assert margin.shape == (5,) and (margin >= 0).all()
    assert margin == pytest.approx(
        np.subtract(scores["truth"]["per_image"]["auc"], scores["gray"]["per_image"]["auc"])
    )


def test_a_shown_command_can_be_copied_as_shown():
    checkpoint = notebook.REPO / "runs" / "study" / "checkpoints" / ("model-" + "a" * 50 + ".pt")
    text = notebook.command("colorize", "my photos/", "--vividness", 0.8, "--checkpoint", checkpoint)
    lines = text.splitlines()
    assert len(lines) > 1 and all(len(line) <= 88 for line in lines)
    assert all(line.endswith(" \\") for line in lines[:-1]) and "\\\\" not in text
    relative = str(checkpoint.relative_to(notebook.REPO))
    args = ["colorize", "my photos/", "--vividness", "0.8", "--checkpoint", relative]
    assert shlex.split(text.replace("\\\n", " ")) == args  # what a shell runs
    assert (
        notebook.command("colorize", "x/", comment="the reference model")
        == "colorize x/  # the reference model"
    )
