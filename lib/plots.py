"""Every chart of the notebooks. Each function takes plain numbers or images (usually read from
results files, so a chart can be redrawn without retraining) and returns a matplotlib Figure;
`save_figure` writes it as PNG together with a JSON file holding the data behind it. Models are
named by their keys ("resnet18"); `label` and `colour` give any name, known or not, its display
name and colour. Metrics come from lib.metrics.REGISTRY.
"""

import json
import math
import textwrap
import zlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from lib import lab, metrics, models, results

GRAY = "#8c8c8c"
# The shipped reference model's row name in the notebooks' tables: it was not trained in the run.
REFERENCE = "reference (trained on the pools, not in this run)"
COLOURS = {"original_cnn": "#c0392b", "edited_cnn": "#2471a3", "resnet18": "#1e8449", "gray baseline": GRAY}
COLOURS[REFERENCE] = "#7d3c98"
LABELS = {**models.DISPLAY, "gray baseline": "gray baseline", REFERENCE: "reference (pools)"}
# Colours of models with no entry in COLOURS: matplotlib's tab10 less its red, green, blue, purple
# and gray, which would pass for the known models' colours.
PALETTE = ("#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
ORIGINAL = "#7b241c"  # the original notebook's own published numbers
# Sizes for paper. The PDF export prints a chart at its own size, or scaled to the output area's
# width (about 6.6 in on A4 and Letter, lib.pipeline's print CSS) when wider: charts are drawn at
# most WIDTH inches wide and HEIGHT tall (a page's text height is about 10 in; a chart is never
# split), so a font's size is its printed size and 8 pt is the smallest. DPI keeps photos and
# lines sharp at that size (the notebook's inline images are drawn at the figure's dpi too).
WIDTH = 6.4
HEIGHT = 8.5
DPI = 150
GAP = 0.08  # inches between photos
TITLE = 0.42  # inches above a photo for its title: two lines at 9 pt
SMALLEST_PHOTO = 1.1  # inches: photo_row starts a second row rather than print its photos smaller


def label(name: str) -> str:
    """A model's display name: its LABELS entry, else the name itself."""
    return LABELS.get(name, name)


def colour(name: str) -> str:
    """A model's colour: its COLOURS entry, else one of PALETTE chosen by a CRC-32 of the name, so
    a name gets the same colour in every chart and every run (Python's hash() of a str changes
    from run to run). A display name (LABELS) gets its model's colour."""
    if _key(name) in COLOURS:
        return COLOURS[_key(name)]
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def save_figure(fig, path, data) -> Path:
    """Write fig as `path` with suffix .png and `data` (what it shows; numbers such as tensors
    become floats) as JSON beside it, each file all or nothing (results.write_atomic). Returns
    the PNG path. Data that cannot be written raises before either file is touched."""
    path = Path(path).with_suffix(".png")
    text = json.dumps(data, indent=1, default=float)
    results.write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight"))
    results.write_atomic(path.with_suffix(".json"), lambda tmp: tmp.write_text(text))
    return path


def loss_curves(histories: dict, title: str, reference: dict | None = None):
    """Train (dashed) and validation (solid) loss per epoch, one colour per model.

    `histories` maps a model name to its history list (lib.train). All on the normalized scale
    ((a, b)/128, the original CNN's), so curves from different models are comparable.
    `reference` maps a label to a list of per-epoch losses to draw in black (e.g. the original's).
    """
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8), dpi=DPI)
    for name, losses in (reference or {}).items():
        ax.plot(range(1, len(losses) + 1), losses, ":x", color="k", ms=4, label=name)
    for name, hist in histories.items():
        epochs = [h["epoch"] for h in hist]
        c = colour(name)
        ax.plot(epochs, [h["train_loss"] for h in hist], "--", color=c, label=f"{label(name)} train")
        ax.plot(epochs, [h["val_loss"] for h in hist], "-o", ms=3, color=c, label=f"{label(name)} val")
    ax.set(xlabel="epoch", ylabel="MSE on (a, b)/128", title=title)
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def checkpoint_analysis(rows: list[dict], name: str = "resnet18"):
    """Validation loss and evaluation time of each saved checkpoint of model `name` (rows from the
    notebook: epoch, val_loss, seconds)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8), dpi=DPI)
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["val_loss"] for r in rows], "-o", color=colour(name), label="val loss")
    ax.set(xlabel="checkpoint epoch", ylabel="val MSE on (a, b)/128 (all val images)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax2 = ax.twinx()
    ax2.plot(epochs, [r["seconds"] for r in rows], "-s", color="#b03a2e", label="evaluation time")
    ax2.set_ylabel("seconds to evaluate all val images")
    ax2.set_ylim(0, max(r["seconds"] for r in rows) * 1.3)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    ax.set_title(f"{label(name)}: every saved checkpoint, loaded and evaluated")
    return fig


def _hwc_uint8(rgb: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float [0, 1] or uint8 -> (N, H, W, 3) uint8 numpy for imshow."""
    if rgb.dtype != torch.uint8:
        rgb = lab.to_uint8(rgb)
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(columns: dict, title: str | None = None, cell: float = 1.6):
    """Rows of images: `columns` maps a column title to an (N, 3, H, W) RGB batch. `cell` is each
    image's size in inches, at most: smaller when the grid would be wider than WIDTH or taller
    than HEIGHT, so that it prints whole and its 8-pt titles print at 8 pt."""
    titles, batches = list(columns), [_hwc_uint8(b) for b in columns.values()]
    n = len(batches[0])
    cell = min(cell, WIDTH / len(titles), (HEIGHT - 0.6) / n)  # 0.6 in: titles
    fig, axes = plt.subplots(n, len(titles), figsize=(cell * len(titles), cell * n), dpi=DPI, squeeze=False)
    for j, (t, imgs) in enumerate(zip(titles, batches, strict=True)):
        for i in range(n):
            axes[i, j].imshow(imgs[i])
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        # ~14 characters an inch; a word longer than that is kept whole (and may run a little wide)
        axes[0, j].set_title(textwrap.fill(t, max(10, int(cell * 14)), break_long_words=False), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _photo_figure(rows: int, widths: list, height: float, titled_rows: bool):
    """A figure of rows x len(widths) photo cells `height` inches tall (widths: each column's
    width / height), GAP apart, with TITLE inches above the first row (above every row when
    `titled_rows`); laid out exactly, so no title takes room from the photos. Returns fig, axes."""
    row_gap = TITLE if titled_rows else GAP
    fig_w = height * sum(widths) + GAP * (len(widths) - 1)
    fig_h = TITLE + rows * height + (rows - 1) * row_gap
    grid = dict(left=0, right=1, bottom=0, top=1 - TITLE / fig_h, hspace=row_gap / height)
    grid["wspace"] = GAP / (height * sum(widths) / len(widths))  # a share of the mean cell width
    fig, axes = plt.subplots(
        rows, len(widths), figsize=(fig_w, fig_h), width_ratios=widths, dpi=DPI, squeeze=False,
        gridspec_kw=grid,
    )  # fmt: skip
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _photo(ax, title: str | None, im, width: float) -> None:
    """One PIL image in its cell, titled in lines that fit the cell's `width` (inches) at 9 pt."""
    ax.imshow(im, cmap="gray" if im.mode == "L" else None, vmin=0, vmax=255)
    if title is not None:
        # ~13 characters an inch; a word longer than that is kept whole
        ax.set_title(textwrap.fill(title, max(8, int(width * 13)), break_long_words=False), fontsize=9)


def photo_row(images: dict, height: float = 3.2):
    """PIL images of one photo side by side (any sizes), titled by the dict's keys. `height` (in
    inches) is at most: lower when the row would be wider than WIDTH; when that would make them
    smaller than SMALLEST_PHOTO, they continue on a second row (and more), in the same order."""
    widths = [im.width / im.height for im in images.values()]
    n, rows = len(images), 1
    while True:
        per_row = math.ceil(n / rows)
        columns = widths if rows == 1 else [max(widths)] * per_row  # more rows: cells of one size
        fits = min(height, (WIDTH - GAP * (per_row - 1)) / sum(columns))
        if fits >= SMALLEST_PHOTO or per_row == 1:
            break
        rows += 1
    fig, axes = _photo_figure(rows, columns, fits, titled_rows=True)
    for ax, (title, im), w in zip(axes.flat, images.items(), widths, strict=False):
        _photo(ax, title, im, fits * w)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig


def photo_grid(rows: list[dict], height: float = 2.2):
    """Several photos, one row each: every row a dict {column title: PIL image} with the same
    titles (each row's images of one size); the titles head the first row. `height` (in inches,
    a row's) is at most: lower when the grid would be wider than WIDTH (not for many rows: a grid
    of evaluate --show is a file to view, not a page)."""
    widths = [im.width / im.height for im in rows[0].values()]
    height = min(height, (WIDTH - GAP * (len(widths) - 1)) / sum(widths))
    fig, axes = _photo_figure(len(rows), widths, height, titled_rows=False)
    for i, row in enumerate(rows):
        for ax, (title, im), w in zip(axes[i], row.items(), widths, strict=True):
            _photo(ax, title if i == 0 else None, im, height * w)
    return fig


def sample_grid(rgb_true: torch.Tensor, predictions: dict):
    """gray input | each model | ground truth, for the same images.

    `predictions` maps a model name to its predicted normalized ab for `rgb_true` (uint8 batch).
    """
    l, _ = lab.rgb_to_model(rgb_true)
    gray = lab.model_to_rgb(l, torch.zeros(l.shape[0], 2, *l.shape[2:]))
    cols = {"gray input": gray}
    cols |= {label(k): lab.model_to_rgb(l, ab) for k, ab in predictions.items()}
    cols["ground truth"] = rgb_true
    return image_grid(cols)


def colour_bins(bins: torch.Tensor, prior: torch.Tensor | None = None, lightness: float = 60.0):
    """The ab bins of the classification head (lib.classes) as cells of the ab plane, each in its
    own colour at L* = `lightness`; with a prior, a second panel shades each bin by the share of
    training pixels that fall in it (log scale)."""
    bins = bins.float()
    step = float(bins[:, 0].unique().diff().min())
    ij = ((bins + 120) / step).round().long()  # cell of each bin on a fixed -120..120 raster
    size = int(240 / step) + 1
    lab_px = torch.cat((torch.full((len(bins), 1), lightness), bins), 1).T[None, :, :, None]  # (1, 3, Q, 1)
    colours = lab.lab_to_rgb8(lab_px)[0, :, :, 0].T.numpy() / 255  # (Q, 3)
    image = np.ones((size, size, 3))
    image[ij[:, 1], ij[:, 0]] = colours  # rows: b*, columns: a*
    panels = [("colour", image)]
    if prior is not None:
        shade = np.full((size, size), np.nan)
        shade[ij[:, 1], ij[:, 0]] = np.log10(np.maximum(np.asarray(prior, dtype=float), 1e-7))
        panels.append(("prior", shade))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), dpi=DPI, squeeze=False)
    half = step / 2
    for ax, (kind, img) in zip(axes[0], panels, strict=True):
        shown = ax.imshow(img, origin="lower", extent=(-120 - half, 120 + half, -120 - half, 120 + half),
                          cmap="viridis" if kind == "prior" else None)  # fmt: skip
        if kind == "prior":
            fig.colorbar(shown, ax=ax, label="log10 share of training pixels")
            ax.set_title("how often each bin occurs\n(the prior)", fontsize=10)
        else:
            ax.set_title(f"{len(bins)} colour bins\n(shown at L* = {lightness:g})", fontsize=10)
        ax.set_xlabel("a*  (green - red)")
        ax.set_ylabel("b*  (blue - yellow)")
    fig.tight_layout()
    return fig


def lab_channels(rgb: torch.Tensor):
    """One photo as the model sees it: L (the input) and a, b (what it must predict)."""
    x = lab.rgb_to_lab(rgb[:1])[0]
    fig, axes = plt.subplots(2, 2, figsize=(5.4, 4.6), dpi=DPI, layout="constrained")  # aligned columns
    axes = list(axes.flat)  # reading order: photo, L; a, b
    axes[0].imshow(_hwc_uint8(rgb[:1])[0])
    axes[0].set_title("colour photo", fontsize=10)
    axes[1].imshow(x[0], cmap="gray", vmin=0, vmax=100)
    axes[1].set_title("L: lightness (input)", fontsize=10)
    shown_a = axes[2].imshow(x[1], cmap="RdYlGn_r", vmin=-80, vmax=80)
    axes[2].set_title("a: green (-) to red (+)", fontsize=10)
    shown_b = axes[3].imshow(x[2], cmap="coolwarm", vmin=-80, vmax=80)
    axes[3].set_title("b: blue (-) to yellow (+)", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, shown in ((axes[2], shown_a), (axes[3], shown_b)):  # each channel its own colour scale
        fig.colorbar(shown, ax=ax, shrink=0.8, label="Lab units")
    return fig


def original_chart_redrawn(as_published: dict, one_scale: dict, ours: dict):
    """The original's "MSE across All Architectures" as published, on one scale, and ours.

    Each maps a bar's name to its value: the first two are the original's numbers, drawn in its
    one colour (ORIGINAL); `ours` is keyed by model key or display label (LABELS). One panel a
    row, so the bars' names read across."""
    panels = [
        ("as published (mixed scales)", as_published),
        ("the same numbers on one scale\n(a*, b*)/128", one_scale),
        ("ours: one scale, one held-out set", ours),
    ]
    fig, axes = plt.subplots(3, 1, figsize=(WIDTH, 6.6), dpi=DPI)
    for j, (ax, (title, values)) in enumerate(zip(axes, panels, strict=True)):
        colours = [colour(_key(k)) if j == 2 else ORIGINAL for k in values]
        ax.bar(range(len(values)), list(values.values()), color=colours)
        names = [textwrap.fill(k, 14, break_long_words=False) for k in values]  # long model names
        ax.set_xticks(range(len(values)), names, fontsize=8 if j == 2 else 9)
        for i, v in enumerate(values.values()):
            ax.text(i, v, f"{v:.4f}" if v >= 1e-4 else f"{v:.1e}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
    for ax in axes:
        ax.set_ylabel("final MSE", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def _key(shown: str) -> str:
    """The model key behind a display label (for colours)."""
    return {v: k for k, v in LABELS.items()}.get(shown, shown)


def margins(summary: dict, metrics=("auc", "ab_mse", "delta_cf"), title: str | None = None,
            registry=metrics.REGISTRY):  # fmt: skip
    """Does any model beat no colour, and which by more: one panel per metric, one row per model
    (top to bottom in the summary's order), its mean difference from the gray baseline as a dot
    and the interval of that difference as a line, zero (the gray baseline) as a vertical line.

    `summary` is lib.study.summarize output ("vs_gray": model minus gray, in the metric's units,
    averaged over the held-out photos; intervals at its "level"); `metrics` are keys of
    `registry` (lib.metrics.Metric entries), those missing from the summary left out. Right is
    always better: for a lower-is-better metric the difference is drawn negated (gray minus
    model), and its axis says so; a metric with no better direction (colourfulness) is drawn as
    model minus gray, with no arrow. WIDTH wide and at most 4 in tall, text at 8 pt or more."""
    keys = [k for k in metrics if k in summary["metrics"]]
    if not keys:
        raise ValueError(f"margins: none of {list(metrics)} is in the summary ({summary['metrics']})")
    names, by_key = list(summary["vs_gray"]), {m.key: m for m in registry}
    axis = {  # by Metric.higher: right is better, so a lower-is-better difference is negated
        True: "model − gray\nbetter →",
        False: "gray − model\n(lower is better)\nbetter →",
        None: "model − gray\n(no better side)",
    }
    rows = np.arange(len(names))[::-1]  # first model on top
    fig, axes = plt.subplots(1, len(keys), figsize=(WIDTH, min(4.0, 1.5 + 0.3 * len(names))), dpi=DPI,
                             sharey=True, squeeze=False)  # fmt: skip
    for ax, key in zip(axes[0], keys, strict=True):
        m = by_key[key]
        sign = -1.0 if m.higher is False else 1.0  # so that right is better on every panel
        for y, name in zip(rows, names, strict=True):
            c = summary["vs_gray"][name][key]
            low, high = sorted((sign * c["low"], sign * c["high"]))
            ax.plot([low, high], [y, y], "-", color=colour(name), lw=2, solid_capstyle="butt")
            ax.plot([sign * c["mean"]], [y], "o", color=colour(name), ms=5)
        ax.axvline(0, color="k", lw=0.8)
        ax.margins(x=0.15)
        lo, hi = ax.get_xlim()
        ax.set_xlim(min(lo, -0.05 * (hi - lo)), max(hi, 0.05 * (hi - lo)))  # zero always in view
        ax.xaxis.set_major_locator(plt.MaxNLocator(3))
        ax.set_title(textwrap.fill(m.label, 18), fontsize=9)
        ax.set_xlabel(axis[m.higher], fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_yticks(rows, [label(n) for n in names], fontsize=8)
    axes[0, 0].set_ylim(-0.6, len(names) - 0.4)
    level, n = f"{summary['level'] * 100:g} %", summary["n_photos"]
    default = f"Against the gray baseline (0): mean difference over {n} photos, line: {level} interval"
    fig.suptitle(title or default, fontsize=9)
    fig.tight_layout()
    return fig
