"""Every chart of the notebooks. Each function takes plain numbers or images (usually read from
results files, so a chart can be redrawn without retraining) and returns a matplotlib Figure;
`save_figure` writes it as PNG together with a JSON file holding the data behind it. Models are
named by their keys ("resnet18"); `label` and `colour` give any name, known or not, its display
name and colour. Metrics come from lib.metrics.REGISTRY.
"""

import json
import textwrap
import zlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextPath

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
# width (about 7.1 in on A4, lib.pipeline's print CSS) when wider: charts are drawn at most WIDTH
# inches wide, so a font's size is its printed size and 8 pt is the smallest. A chart is never
# split across pages, so one that does not fit below the text jumps to the next page and leaves
# the rest of this one blank: at most HEIGHT tall, a chart never leaves more than about 40 % of
# an A4 page (11.7 in) blank. DPI keeps photos and lines sharp at that size (the notebook's
# inline images are drawn at the figure's dpi too).
WIDTH = 6.4
HEIGHT = 4.2
DPI = 150
GAP = 0.08  # inches between photos
TITLE = 0.42  # inches above a photo for its title: two lines at 9 pt


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
    """The dev loss of each saved checkpoint of model `name`, loaded back from disk (rows from
    lib.metrics.checkpoint_analysis: epoch, val_loss)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2), dpi=DPI)
    ax.plot([r["epoch"] for r in rows], [r["val_loss"] for r in rows], "-o", color=colour(name))
    ax.set(xlabel="epoch of the checkpoint", ylabel="dev MSE on (a, b)/128")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.set_title(f"{label(name)}: every saved checkpoint, loaded and evaluated on the dev part")
    return fig


def _hwc_uint8(rgb: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float [0, 1] or uint8 -> (N, H, W, 3) uint8 numpy for imshow."""
    if rgb.dtype != torch.uint8:
        rgb = lab.to_uint8(rgb)
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(columns: dict, title: str | None = None, cell: float = 1.6):
    """Rows of images, one row per image: `columns` maps a column title to an (N, 3, H, W) RGB
    batch. `cell` is each image's size in inches, at most: smaller when the grid would be wider
    than WIDTH or taller than HEIGHT, so that it prints whole and its 8-pt titles print at 8 pt.
    When the rows print larger that way, they run in two or more blocks side by side (rows 1-3 on
    the left, 4-6 on the right), each block headed by the titles, as a newspaper's columns. A
    column is never narrower than the longest word of the titles, so no title runs into the next;
    the titles wrap at the column's width."""
    titles, batches = list(columns), [_hwc_uint8(b) for b in columns.values()]
    n, m, room = len(batches[0]), len(titles), (0.9 if title else 0.5)  # room: the titles'
    word = max(_text_inches(w, 8) for t in titles for w in t.split()) + GAP  # a column's least width

    def size(blocks):  # each image's size with the rows in `blocks` blocks, 0.25 in between
        across = (WIDTH - 0.25 * (blocks - 1)) / (m * blocks)
        return min(cell, across, (HEIGHT - room) / -(-n // blocks)) if across >= word else 0.0

    blocks = max(range(1, n + 1), key=lambda k: (round(size(k), 2), -k))  # the fewest of the largest
    cell, per_block, pitch = size(blocks), -(-n // blocks), max(size(blocks), word)
    if cell == 0:
        raise ValueError(f"image_grid: {m} columns titled {titles} do not fit {WIDTH} in at 8 pt")
    spacer = 0.25 / pitch  # a blank column between blocks, in columns
    ratios = ([1] * m + [spacer]) * (blocks - 1) + [1] * m
    fig, axes = plt.subplots(
        per_block, len(ratios), figsize=(pitch * sum(ratios), cell * per_block + room), dpi=DPI,
        squeeze=False, width_ratios=ratios,
    )  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        block, row = divmod(i, per_block)
        for j, (t, imgs) in enumerate(zip(titles, batches, strict=True)):
            ax = axes[row, block * (m + 1) + j]
            ax.imshow(imgs[i])
            if row == 0:
                ax.set_title(_wrap(t, pitch - GAP, 8), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(w_pad=0.2, h_pad=0.2)
    return fig


def _text_inches(text: str, points: float) -> float:
    """How wide `text` prints in the default font at `points`, in inches."""
    return TextPath((0, 0), text, size=points, prop=FontProperties()).get_extents().width / 72


def _wrap(text: str, inches: float, points: float) -> str:
    """`text` in lines at most `inches` wide at `points` (a longer word on a line of its own)."""
    lines = []
    for w in text.split():
        if lines and _text_inches(f"{lines[-1]} {w}", points) <= inches:
            lines[-1] += f" {w}"
        else:
            lines.append(w)
    return "\n".join(lines)


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
        ax.set_title(_wrap(title, width, 9), fontsize=9)


def photo_row(images: dict, height: float = 3.2):
    """PIL images of one photo side by side in one row (any sizes), titled by the dict's keys.
    `height` (in inches) is at most: lower when the row would be wider than WIDTH. Every photo
    row of the notebooks is laid out this way, one row, never wrapped."""
    widths = [im.width / im.height for im in images.values()]
    fits = min(height, (WIDTH - GAP * (len(widths) - 1)) / sum(widths))
    fig, axes = _photo_figure(1, widths, fits, titled_rows=False)
    for ax, (title, im), w in zip(axes[0], images.items(), widths, strict=True):
        _photo(ax, title, im, fits * w)
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
    gray = lab.model_to_rgb(l, lab.zero_ab(l))
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


def lab_axis_colours(axis: int, lightness: float = 70.0, limit: float = 80.0, n: int = 256):
    """A colour map that runs through the real colours of one Lab axis: a* (axis 1) from green
    to red, or b* (axis 2) from blue to yellow, from -`limit` to +`limit` with the other axis at
    0 and L* = `lightness` (colours outside sRGB shown at the same L* and hue: lab.lab_to_rgb8),
    so a chart of a* or b* shows each value in the colour it stands for."""
    ramp = torch.zeros(1, 3, 1, n)
    ramp[0, 0], ramp[0, axis] = lightness, torch.linspace(-limit, limit, n)
    rgb = lab.lab_to_rgb8(ramp)[0, :, 0].T.numpy() / 255
    return ListedColormap(rgb, name=f"lab_{'ab'[axis - 1]}")


def lab_channels(rgb: torch.Tensor, limit: float = 80.0):
    """One photo (the first of the uint8 batch `rgb`) as the model sees it: L* (the input) and a*,
    b* (what it must predict), each in the colours its values stand for (lab_axis_colours, from
    -`limit` to +`limit` Lab units)."""
    x = lab.rgb_to_lab(rgb[:1])[0]
    fig, axes = plt.subplots(2, 2, figsize=(5.4, 4.2), dpi=DPI, layout="constrained")  # aligned columns
    axes = list(axes.flat)  # reading order: photo, L; a, b
    axes[0].imshow(_hwc_uint8(rgb[:1])[0])
    axes[0].set_title("colour photo", fontsize=10)
    axes[1].imshow(x[0], cmap="gray", vmin=0, vmax=100)
    axes[1].set_title("L*: lightness (the input)", fontsize=10)
    axis_titles = ((axes[2], 1, "a*: green (−) to red (+)"), (axes[3], 2, "b*: blue (−) to yellow (+)"))
    for ax, axis, title in axis_titles:
        shown = ax.imshow(x[axis], cmap=lab_axis_colours(axis, limit=limit), vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=10)
        fig.colorbar(shown, ax=ax, shrink=0.8, label="Lab units")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def original_chart_redrawn(as_published: dict, ours: dict):
    """The original's "MSE across All Architectures" as published, above this study's held-out
    MSEs on one scale, as horizontal bars (so that long names read across). Each maps a bar's
    name to its value: `as_published` is the original's numbers (its one colour, ORIGINAL),
    `ours` is keyed by model key or display label (LABELS). Every bar is labelled with the value
    it draws."""
    panels = [
        ("as published: two scales, different evaluation sets", as_published),
        ("this study: one scale, (a*, b*)/128, the same held-out photos", ours),
    ]
    fig, axes = plt.subplots(2, 1, figsize=(WIDTH, 1.6 + 0.3 * (len(as_published) + len(ours))), dpi=DPI,
                             height_ratios=[len(as_published) + 1, len(ours) + 1])  # fmt: skip
    for j, (ax, (title, values)) in enumerate(zip(axes, panels, strict=True)):
        rows = np.arange(len(values))[::-1]  # the first on top
        ax.barh(rows, list(values.values()), color=[colour(_key(k)) if j else ORIGINAL for k in values])
        ax.set_yticks(rows, [label(k) for k in values], fontsize=8)
        for y, v in zip(rows, values.values(), strict=True):
            ax.text(v, y, f" {v:.4f}" if v else " 0", va="center", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(x=0.18)
    axes[1].set_xlabel("MSE", fontsize=9)
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
