"""lib.plots.margins: the chart of each model's difference from the gray baseline, right always better."""

import matplotlib

matplotlib.use("Agg")  # headless: no display is needed to draw

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.text as mtext  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lib import plots, study  # noqa: E402

PRINTED = 6.5  # inches: the PDF export's text width (as tests/test_plots.py); a wider chart is scaled to it
NAMES = ["resnet18", "edited_cnn", "original_cnn", "tiny_cnn", plots.REFERENCE]


@pytest.fixture(scope="module")
def summary():
    """A real lib.study summary: five models on 60 photos, each shifted from gray by its own amount."""
    rng = np.random.default_rng(0)
    n = 60
    gray = {"auc": rng.uniform(0.5, 0.7, n), "ab_mse": rng.uniform(100, 300, n), "colourfulness": np.zeros(n),
            "delta_cf": rng.uniform(20, 60, n)}  # fmt: skip
    per_image = {}
    for i, name in enumerate(NAMES):
        shift = {
            "auc": 0.01 * (i - 2),
            "ab_mse": 10.0 * (2 - i),
            "colourfulness": 5.0 * i,
            "delta_cf": -3.0 * i,
        }
        per_image[name] = {
            s: {
                k: (v + shift[k] + rng.normal(0, 0.02 * max(1.0, v.mean()), n)).tolist()
                for k, v in gray.items()
            }
            for s in (0, 1)
        }
    return study.summarize(per_image, {k: v.tolist() for k, v in gray.items()}, resamples=500)


def dots_and_lines(ax):
    """(x of each dot, (low, high) of each interval line, y of each dot), top row first."""
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    spans = [ln for ln in ax.get_lines() if ln.get_marker() != "o" and len(set(ln.get_ydata())) == 1]
    spans = [ln for ln in spans if list(ln.get_xdata()) != [0, 0]]  # not the zero line
    xs = [float(d.get_xdata()[0]) for d in dots]
    ys = [float(d.get_ydata()[0]) for d in dots]
    return xs, [tuple(map(float, s.get_xdata())) for s in spans], ys, dots


def test_margins_plots_one_row_per_model_right_always_better(summary):
    fig = plots.margins(summary)
    assert [ax.get_title().replace("\n", " ") for ax in fig.axes] == [
        "AuC (ab error ≤ t, t = 0–150)",
        "ab MSE (Lab units²)",
        "ΔCF",
    ]
    for ax, key, sign in zip(fig.axes, ("auc", "ab_mse", "delta_cf"), (1, -1, -1), strict=True):
        xs, spans, ys, dots = dots_and_lines(ax)
        c = [summary["vs_gray"][n][key] for n in NAMES]
        assert xs == pytest.approx([sign * x["mean"] for x in c])  # lower-is-better: negated
        expected = [sorted((sign * x["low"], sign * x["high"])) for x in c]  # the interval, same sign
        np.testing.assert_allclose(spans, expected)
        assert ys == sorted(ys, reverse=True) and len(ys) == len(NAMES)  # first model on top
        assert [mcolors.to_hex(d.get_color()) for d in dots] == [plots.colour(n) for n in NAMES]
        assert ax.get_xlim()[0] < 0 < ax.get_xlim()[1]  # the gray baseline's zero is in view
        assert any(list(ln.get_xdata()) == [0, 0] for ln in ax.get_lines())  # and drawn
        assert "better →" in ax.get_xlabel()
        assert ("gray − model" in ax.get_xlabel()) == (sign == -1)
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [plots.label(n) for n in NAMES]
    # the right-most dot is the model that is best on that metric: ab MSE's is the lowest difference
    xs, _, _, _ = dots_and_lines(fig.axes[1])
    lowest = min(NAMES, key=lambda n: summary["vs_gray"][n]["ab_mse"]["mean"])
    assert NAMES[int(np.argmax(xs))] == lowest == NAMES[-1]  # ab MSE shifted by 10 (2 - i)
    plt.close(fig)


def test_margins_prints_every_text_at_8_pt_or_more_within_the_page_width(summary):
    for keys in (("auc", "ab_mse", "delta_cf"), ("auc", "ab_mse", "colourfulness", "delta_cf")):
        fig = plots.margins(summary, metrics=keys)
        fig.canvas.draw()  # ticks and their labels exist once drawn
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        width, height = box.width + 0.2, box.height + 0.2  # as saved: bbox_inches="tight", 0.1 in padding
        scale = min(1, PRINTED / max(width, fig.get_figwidth()))
        shown = [t for t in fig.findobj(mtext.Text) if t.get_visible() and t.get_text().strip()]
        assert len(shown) >= 10
        small = [(t.get_text(), t.get_fontsize()) for t in shown if t.get_fontsize() * scale < 8]
        assert small == []
        assert fig.get_figwidth() <= plots.WIDTH and fig.get_figheight() <= 4 and height * scale <= 4.5
        assert fig.dpi >= 150
        plt.close(fig)


def test_margins_never_calls_a_side_better_for_colourfulness_and_skips_absent_metrics(summary):
    fig = plots.margins(summary, metrics=("colourfulness", "psnr"))  # no psnr in this summary
    assert len(fig.axes) == 1 and "better →" not in fig.axes[0].get_xlabel()
    xs, _, _, _ = dots_and_lines(fig.axes[0])
    assert xs == pytest.approx([summary["vs_gray"][n]["colourfulness"]["mean"] for n in NAMES])  # not negated
    plt.close(fig)
    with pytest.raises(ValueError, match="margins: none of"):
        plots.margins(summary, metrics=("psnr",))
