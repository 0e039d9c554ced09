"""lib.plots: charts driven by the metric registry, any model name, and all-or-nothing figure files."""

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display is needed to draw and save

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.text as mtext  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from lib import classes, lab, metrics, original, plots, study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scores():
    """Real scores of a made-up predictor (a constant tint) and the gray baseline on three random
    16 px images."""
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (3, 3, 16, 16), generator=g, dtype=torch.uint8)

    def tint(l):
        return torch.full((len(l), 2, *l.shape[2:]), 0.1)

    return metrics.evaluate_all({"tiny_cnn": tint, "gray baseline": metrics.gray_baseline}, [(rgb, [])])


@pytest.mark.slow
def test_unknown_model_names_get_their_own_name_and_a_stable_palette_colour(scores):
    assert plots.label("resnet18") == "ResNet18" and plots.colour("resnet18") == plots.COLOURS["resnet18"]
    assert plots.label("tiny_cnn") == "tiny_cnn"
    c = plots.colour("tiny_cnn")
    assert c in plots.PALETTE and c == plots.colour("tiny_cnn")
    assert len({plots.colour(f"model {i}") for i in range(40)}) > 1  # the name chooses, not a constant
    code = "from lib import plots; print(plots.colour('tiny_cnn'))"
    for seed in ("1", "2"):  # Python's own str hash differs between these runs; the colour must not
        env = os.environ | {"PYTHONHASHSEED": seed, "MPLBACKEND": "Agg"}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.stdout.strip() == c, out.stderr
    # in a chart, by its name or a known model's display name (the name lib.study gives it)
    per_image = {name: {0: scores["tiny_cnn"]["per_image"]} for name in ("tiny_cnn", "ResNet18")}
    fig = plots.margins(study.summarize(per_image, scores["gray baseline"]["per_image"], resamples=100))
    drawn = {mcolors.to_hex(line.get_color()) for line in fig.axes[0].get_lines()}
    assert {c, plots.COLOURS["resnet18"]} <= drawn
    assert sorted(t.get_text() for t in fig.axes[0].get_yticklabels()) == ["ResNet18", "tiny_cnn"]
    plt.close(fig)


def test_loss_and_checkpoint_charts_draw_a_made_up_model(scores):
    hist = [{"epoch": e, "train_loss": 0.03 / e, "val_loss": 0.04 / e} for e in (1, 2, 3)]
    fig = plots.loss_curves({"tiny_cnn": hist}, "a made-up model")
    assert {mcolors.to_hex(line.get_color()) for line in fig.axes[0].get_lines()} == {
        plots.colour("tiny_cnn")
    }
    plt.close(fig)
    rows = [{"epoch": e, "val_loss": 0.04 / e} for e in (1, 2, 3)]
    fig = plots.checkpoint_analysis(rows, name="tiny_cnn")
    assert len(fig.axes) == 1  # the dev loss alone: no evaluation-time axis
    assert mcolors.to_hex(fig.axes[0].get_lines()[0].get_color()) == plots.colour("tiny_cnn")
    assert "tiny_cnn" in fig.axes[0].get_title()
    plt.close(fig)


def test_save_figure_writes_the_png_and_its_data(tmp_path):
    fig = plots.image_grid({"photo": torch.rand(2, 3, 8, 8)})
    path = plots.save_figure(fig, tmp_path / "fig" / "grid", {"mse": torch.tensor(0.5), "n": 2})
    plt.close(fig)
    assert path == tmp_path / "fig" / "grid.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 0
    assert json.loads(path.with_suffix(".json").read_text()) == {"mse": 0.5, "n": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.json", "grid.png"]  # no temporary left


def test_save_figure_writes_nothing_when_the_data_cannot_be_written(tmp_path):
    fig = plots.lab_channels(lab.lab_to_rgb8(torch.zeros(1, 3, 8, 8)))
    with pytest.raises(TypeError):
        plots.save_figure(fig, tmp_path / "chart", {"not a number": object()})
    plt.close(fig)
    assert list(tmp_path.iterdir()) == []  # no PNG without its data, no temporary file


PRINTED = 6.5  # inches: the text width of the PDF export (A4); a wider chart is scaled to it
# inches: the tallest chart that, jumping to the next page whole, leaves at most 40 % of an A4 page
# (11.7 in) blank: plots.HEIGHT and the 0.1 in of padding around a saved chart on each side
PAGE = plots.HEIGHT + 0.2


def every_chart():
    """Every chart function of lib.plots, each drawn with small real data the way the notebooks
    call it (five models, photos of 4:3, the original's numbers): {function name: [figures]}."""
    g = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (6, 3, 16, 16), generator=g, dtype=torch.uint8)
    names = ["original_cnn", "edited_cnn", "resnet18", plots.REFERENCE]

    def tint(v):
        return lambda l: torch.full((len(l), 2, *l.shape[2:]), v)

    predictors = {n: tint(0.05 * (i + 1)) for i, n in enumerate(names)} | {
        "gray baseline": metrics.gray_baseline
    }
    scores = metrics.evaluate_all(predictors, [(rgb, [])])
    hist = [{"epoch": e, "train_loss": 0.03 / e, "val_loss": 0.04 / e} for e in range(1, 11)]
    rows = [{"epoch": e, "val_loss": 0.04 / e} for e in (1, 2, 4, 8)]
    photo = Image.fromarray(rgb[0].permute(1, 2, 0).numpy()).resize((320, 240))
    long_titles = ["black and white", "this run's model", "reference model (trained at scale)", "original"]
    vivid = ["black and white", *(f"vividness {v:g}" for v in (0, 0.25, 0.5, 0.75, 1)), "original"]
    preds = {n: torch.full((6, 2, 16, 16), 0.1) for n in names}
    theirs = dict(original.BAR_CHART)
    bins = classes.ab_bins()
    per_image = {plots.label(n): {0: scores[n]["per_image"]} for n in names}
    summary = study.summarize(per_image, scores["gray baseline"]["per_image"], resamples=200)
    return {
        "margins": [plots.margins(summary)],
        "loss_curves": [
            plots.loss_curves({n: hist for n in names[:2]}, "OriginalCNN: loss per epoch (before optim.)",
                              reference={"original notebook, train": original.ORIGINAL_CNN_TRAIN_LOSS}),
        ],
        "checkpoint_analysis": [plots.checkpoint_analysis(rows)],
        "image_grid": [plots.image_grid({"photo": rgb, "input: R/100/255 (brightened)": rgb,
                                         "target: G and B": rgb}, title="The original EditedCNN: no Lab")],
        "sample_grid": [
            plots.sample_grid(rgb, preds),
            plots.sample_grid(rgb, dict(list(preds.items())[:1])),
            plots.sample_grid(rgb[:3], {k: p[:3] for k, p in preds.items()} | {  # chapter 4's: every model
                "ResNet18, classification head (faithful)": preds[names[2]][:3],
                "ResNet18, classification head (default)": preds[names[2]][:3],
            }),
        ],
        "photo_row": [plots.photo_row(dict.fromkeys(long_titles, photo)),
                      plots.photo_row({t: photo.convert("L") for t in vivid}, height=2.4)],
        "photo_grid": [plots.photo_grid([dict.fromkeys(long_titles, photo)] * 3)],
        "colour_bins": [plots.colour_bins(bins), plots.colour_bins(bins, torch.full((len(bins),), 1e-3))],
        "lab_channels": [plots.lab_channels(rgb)],
        "original_chart_redrawn": [plots.original_chart_redrawn(
            theirs, {plots.label(n): scores[n]["mse_normalized"] for n in [*names, "gray baseline"]},
        )],
    }  # fmt: skip


def printed_inches(fig):
    """The chart's width and height as saved (bbox_inches="tight", 0.1 in padding), in inches."""
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    return box.width + 0.2, box.height + 0.2


def test_every_chart_prints_its_text_at_8_pt_or_more_and_fits_a_page():
    charts = every_chart()
    public = {n for n, f in vars(plots).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert set(charts) == public - {"label", "colour", "save_figure", "lab_axis_colours"}  # every chart
    problems = []  # every chart's, so that one run names them all
    for name, figures in charts.items():
        for fig in figures:
            fig.canvas.draw()  # ticks and their labels exist once drawn
            width, height = printed_inches(fig)
            scale = min(1, PRINTED / max(width, fig.get_figwidth()))
            shown = [t for t in fig.findobj(mtext.Text) if t.get_visible() and t.get_text().strip()]
            assert len(shown) >= 3, name  # titles and labels were found
            small = [(t.get_text(), t.get_fontsize()) for t in shown if t.get_fontsize() * scale < 8]
            if small:
                problems.append(f"{name}: {width:.1f} in wide, under 8 pt when printed: {small[:3]}")
            if height * scale > PAGE:
                problems.append(f"{name}: {height * scale:.1f} in tall when printed")
            titles = [ax.title for ax in fig.axes if ax.title.get_text()]
            boxes = [t.get_window_extent() for t in titles]
            pairs = [(i, j) for i in range(len(titles)) for j in range(i + 1, len(titles))]
            overlaps = [
                (titles[i].get_text(), titles[j].get_text()) for i, j in pairs if boxes[i].overlaps(boxes[j])
            ]
            if overlaps:
                problems.append(f"{name}: titles overlap: {overlaps[:2]}")
            if fig.dpi < 150:  # blurred at its printed size
                problems.append(f"{name}: {fig.dpi:g} dpi")
            plt.close(fig)
    assert problems == [], "\n".join(problems)


def test_charts_are_saved_at_150_dpi(tmp_path):
    fig = plots.loss_curves({"tiny_cnn": [{"epoch": 1, "train_loss": 0.03, "val_loss": 0.04}]}, "one epoch")
    path = plots.save_figure(fig, tmp_path / "loss", {})
    plt.close(fig)
    with Image.open(path) as im:
        assert im.info["dpi"][0] == pytest.approx(150, abs=1)
