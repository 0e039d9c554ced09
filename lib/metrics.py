"""One scale for everything: every model and the gray baseline are scored by the same code.

Per image, then averaged over images (all numbers are means over the evaluation set):
  ab_mse          mean over pixels and both channels of (a_pred - a_true)^2, (b_pred - b_true)^2,
                  in Lab units^2. Divide by 128^2 to get the normalized training loss scale
                  (the original CNN's scale: its 0.0121 is 198 Lab units^2).
  psnr            on RGB in 0-255: 10 log10(255^2 / MSE), higher is better, capped at PSNR_MAX =
                  100 dB (the MSE floored at 255^2 / 10^10): an exact prediction would otherwise
                  score infinity and make the mean over images infinite. 100 dB is an RMS error
                  of 0.0026 of one 8-bit level, far below what a display shows; this float32
                  pipeline's own Lab round trip of a photo already scores ~140 dB, so every image
                  above the cap is exact for all practical purposes.
  ssim            on RGB in 0-255, per channel then averaged; Gaussian window (sigma 1.5, 11 taps),
                  borders excluded, as Wang et al. 2004 and skimage.metrics.structural_similarity
                  (used here). Not torchmetrics: its version averages the reflect-padded borders
                  into the score, which moves SSIM by ~0.04 on 64 px images. 1 = identical.
  delta_e         mean CIEDE2000 colour difference between the true image and the prediction as
                  displayed (after conversion to RGB, with out-of-gamut colours clipped, and back to
                  Lab). CIEDE2000 (skimage.color.deltaE_ciede2000) because it tracks perceived
                  differences better than the Euclidean CIE76 distance; ~2.3 is "just noticeable".
  colourfulness   Hasler & Süsstrunk (2003), the M^(3) metric on 0-255 RGB:
                  sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), rg = R - G,
                  yb = (R + G)/2 - B. Gray images score 0; ~30 is "moderately colourful".
  colourfulness_true  the same for the ground truth, for reference.
  delta_cf        |colourfulness(prediction) - colourfulness(truth)| per image, averaged.
  auc             Zhang et al. (2016): for thresholds t = 0, 1, ..., 150 (Lab units), the fraction
                  of pixels whose ab error sqrt(da^2 + db^2) is <= t; the mean of that curve
                  (area under it, normalized to [0, 1]); 1 = every pixel exact.
The gray baseline predicts a = b = 0 everywhere.

REGISTRY is the one list of these metrics: their keys, chart labels, directions, table formats and
which are table and chart columns; METRICS, format_table and lib.plots read it.
"""

import time
from typing import NamedTuple

import torch
from skimage.color import deltaE_ciede2000
from skimage.metrics import structural_similarity

from lib import checkpoints, images, lab, models


class Metric(NamedTuple):
    """One metric. key: its name in image_metrics() and evaluate() output; label: its name on
    charts, with its unit; higher: True when higher is better, False when lower is, None when
    neither (colourfulness: closer to the truth is better, which delta_cf scores); fmt: its format
    spec in tables; column: whether tables and charts show it (False for a reference value)."""

    key: str
    label: str
    higher: bool | None
    fmt: str = ".4g"
    column: bool = True


REGISTRY = (
    Metric("ab_mse", "ab MSE (Lab units²)", False),
    Metric("psnr", "PSNR (dB)", True),
    Metric("ssim", "SSIM", True),
    Metric("delta_e", "ΔE (CIEDE2000)", False),
    Metric("colourfulness", "colourfulness", None),
    Metric("colourfulness_true", "colourfulness of the truth", None, column=False),  # reference line
    Metric("delta_cf", "ΔCF", False),
    Metric("auc", "AuC (ab error ≤ t, t = 0–150)", True),
)
METRICS = tuple(m.key for m in REGISTRY)  # every key evaluate() averages
AUC_THRESHOLDS = 151  # t = 0..150
PSNR_MAX = 100.0  # dB, see the module docstring


def colourfulness(rgb255: torch.Tensor) -> torch.Tensor:
    """Hasler & Süsstrunk M^(3) per image; rgb255 is (N, 3, H, W) float in 0-255."""
    r, g, b = rgb255[:, 0].flatten(1), rgb255[:, 1].flatten(1), rgb255[:, 2].flatten(1)
    rg, yb = r - g, 0.5 * (r + g) - b
    sd = torch.sqrt(rg.var(1, correction=0) + yb.var(1, correction=0))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return sd + 0.3 * mean


def auc(ab_pred: torch.Tensor, ab_true: torch.Tensor) -> torch.Tensor:
    """Per-image area under the ab-error CDF over integer thresholds 0..150, in [0, 1].

    The number of thresholds t in {0..150} with err <= t is 151 - ceil(err) (0 when err > 150),
    so the curve's mean is computed in one pass without a 151-fold tensor.
    """
    err = (ab_pred - ab_true).float().pow(2).sum(1).sqrt().flatten(1)  # (N, H*W), Lab units
    hits = (AUC_THRESHOLDS - torch.ceil(err)).clamp(0, AUC_THRESHOLDS)
    return hits.mean(1) / AUC_THRESHOLDS


def image_metrics(rgb_true: torch.Tensor, ab_pred: torch.Tensor, lab_true=None) -> dict[str, torch.Tensor]:
    """Every metric per image. rgb_true: uint8 (N, 3, H, W); ab_pred: normalized (N, 2, H, W);
    lab_true: rgb_true in Lab, when the caller has it already."""
    lab_true = lab.rgb_to_lab(rgb_true) if lab_true is None else lab_true
    l_true, ab_true = lab.normalize(lab_true)
    ab_pred = ab_pred.float()
    rgb_pred = lab.model_to_rgb(l_true, ab_pred) * 255
    rgb_t = rgb_true.float()

    ab_err = lab.denormalize_ab(ab_pred - ab_true)  # Lab units
    lab_shown = lab.rgb_to_lab(rgb_pred / 255)  # what a viewer sees, gamut-clipped
    de = deltaE_ciede2000(_hwc_float64(lab_true), _hwc_float64(lab_shown), channel_axis=-1)
    true_np, pred_np = _hwc_float64(rgb_t), _hwc_float64(rgb_pred)
    ssim = [
        structural_similarity(
            t,
            p,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1,
        )  # fmt: skip
        for t, p in zip(true_np, pred_np, strict=True)
    ]
    cf_pred, cf_true = colourfulness(rgb_pred), colourfulness(rgb_t)
    rgb_mse = (rgb_pred - rgb_t).pow(2).flatten(1).mean(1).clamp(min=255**2 / 10 ** (PSNR_MAX / 10))
    return {
        "ab_mse": ab_err.pow(2).flatten(1).mean(1),
        "psnr": 10 * torch.log10(255**2 / rgb_mse),
        "ssim": torch.tensor(ssim, dtype=torch.float32),
        "delta_e": torch.from_numpy(de.reshape(len(de), -1).mean(1)).float(),
        "colourfulness": cf_pred,
        "colourfulness_true": cf_true,
        "delta_cf": (cf_pred - cf_true).abs(),
        "auc": auc(lab.denormalize_ab(ab_pred), lab.denormalize_ab(ab_true)),
    }


def _hwc_float64(x: torch.Tensor):
    """(N, C, H, W) tensor -> (N, H, W, C) float64 numpy, for scikit-image."""
    return x.permute(0, 2, 3, 1).double().cpu().numpy()


def gray_baseline(l: torch.Tensor) -> torch.Tensor:
    """The "no colour" prediction: a = b = 0 everywhere (normalized, same shape a model returns)."""
    return lab.zero_ab(l)


def evaluate(predict, loader, device="cpu", seen_skips: dict | None = None) -> dict:
    """Score `predict` (a model, or gray_baseline) on every image of a loader.

    Returns the mean of each metric, the number of images, the mean normalized MSE (the training
    loss scale) and the evaluation time.
    """
    return evaluate_all({"": predict}, loader, device, seen_skips)[""]


def evaluate_all(predictors: dict, loader, device="cpu", seen_skips: dict | None = None) -> dict:
    """evaluate() for several predictors {name: a checkpoints.Inference, a models.Colorizer
    (scored as Inference(model)) or any callable from lightness to ab, such as gray_baseline} in
    one pass over the
    loader: each batch is decoded and converted to Lab once, then scored by every predictor.
    Returns {name: scores}; "seconds" is the time of the whole pass. Besides the means, scores
    keep every image's metrics, "per_image" {metric: [value per image]}, in the loader's order,
    and "files", the names (relative to the dataset's root) of the images scored, in that order
    (when the loader's dataset has files; those that failed to decode are left out of both), so
    that differences between models can be paired photo by photo (lib.study). Models are scored
    in eval mode and get back the mode they had, also when the pass raises."""
    predictors = {
        n: checkpoints.Inference(p) if isinstance(p, models.Colorizer) else p for n, p in predictors.items()
    }
    nets = {n: p.model if isinstance(p, checkpoints.Inference) else p for n, p in predictors.items()}
    modes = {n: m.training for n, m in nets.items() if isinstance(m, torch.nn.Module)}
    try:
        for name in modes:
            nets[name].eval()
        return _evaluate_all(predictors, loader, device, seen_skips)
    finally:
        for name, was_training in modes.items():
            nets[name].train(was_training)


@torch.inference_mode()
def _evaluate_all(predictors: dict, loader, device, seen_skips: dict | None) -> dict:
    """The pass of evaluate_all, its models already in eval mode."""
    per_image = {name: {k: [] for k in METRICS} for name in predictors}
    failed, n, t0 = set(), 0, time.perf_counter()
    for rgb, skips in loader:
        images.record_skips(seen_skips if seen_skips is not None else {}, skips)
        failed |= {f for f, _ in skips}
        if len(rgb) == 0:
            continue
        rgb = rgb.to(device)
        lab_true = lab.rgb_to_lab(rgb)  # once per batch: the models' input and the metrics' truth
        l = lab.normalize_l(lab_true[:, :1])
        for name, predict in predictors.items():
            # our models through their head (a classifier's logits become ab); any other callable as is
            ab = predict(l)
            for k, v in image_metrics(rgb, ab.float(), lab_true).items():
                per_image[name][k] += v.double().tolist()
        n += len(rgb)
    if n == 0:
        raise ValueError("evaluate: the loader yielded no image")
    ds = getattr(loader, "dataset", None)
    files = [f for f in ds.files if str(ds.root / f) not in failed] if hasattr(ds, "files") else None
    seconds, out = time.perf_counter() - t0, {}
    for name, values in per_image.items():
        out[name] = {k: sum(v) / n for k, v in values.items()}
        out[name]["mse_normalized"] = lab.normalize_ab_mse(out[name]["ab_mse"])
        # 6 significant digits: far finer than any difference between photos, and results files
        # that keep a few hundred photos' metrics for every model and seed stay small
        rounded = {k: [float(f"{x:.6g}") for x in v] for k, v in values.items()}
        out[name] |= {"n_images": n, "seconds": seconds, "per_image": rounded, "files": files}
    return out


def format_table(rows: dict[str, dict], markdown: bool = False) -> str:
    """One row per model (or baseline), one column per REGISTRY column (headed by its key, values
    in its format): plain text, or Markdown."""
    cols = [m for m in REGISTRY if m.column]
    if markdown:
        lines = ["| | " + " | ".join(c.key for c in cols) + " |", "|---" + "|---:" * len(cols) + "|"]
        lines += [
            f"| {n} | " + " | ".join(f"{m[c.key]:{c.fmt}}" for c in cols) + " |" for n, m in rows.items()
        ]
        return "\n".join(lines)
    width = max(14, *(len(n) + 1 for n in rows))
    lines = [f"{'':<{width}}" + "".join(f"{c.key[:9]:>10}" for c in cols)]
    lines += [f"{n:<{width}}" + "".join(f"{m[c.key]:>10{c.fmt}}" for c in cols) for n, m in rows.items()]
    return "\n".join(lines)


def check_same_held_out(grays: dict[str, dict]) -> None:
    """Scores of the gray baseline from several results files {where: scores}: the same numbers
    mean the same held-out images (the gray baseline depends on nothing else). Raises ValueError
    naming the first that differs, so a comparison never mixes two held-out sets."""
    (first, ref), *rest = grays.items()
    for where, g in rest:
        if any(g[k] != ref[k] for k in (*METRICS, "n_images")):
            raise ValueError(
                f"{where} was scored on other held-out images than {first}: "
                "rerun the notebooks with the same data parameters"
            )


def checkpoint_analysis(run: dict, loader, device="cpu") -> list[dict]:
    """Load every checkpoint a run record lists and score it on `loader`: one row per checkpoint
    with its epoch, its held-out loss (normalized MSE, the training scale), the seconds the
    evaluation took and every metric. (The original's "checkpoint analysis" never loaded one.)"""
    rows = []
    for c in run["checkpoints"]:
        model, ckpt = checkpoints.load(c["path"], device)
        s = evaluate(model, loader, device)
        rows.append({"epoch": ckpt["epoch"], "val_loss": s["mse_normalized"], "seconds": s["seconds"],
                     "metrics": s})  # fmt: skip
    return rows
