"""lib.metrics against hand-computed cases and against scikit-image."""

import importlib.resources

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lib import lab, metrics, models


def photos(size=64):
    out = []
    for name in ["astronaut.png", "chelsea.png", "coffee.png"]:
        path = importlib.resources.files("skimage.data") / name
        with Image.open(str(path)) as im:
            out.append(np.asarray(im.convert("RGB").resize((size, size))))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def test_identical_images_score_perfectly():
    rgb = photos()
    _, ab = lab.rgb_to_model(rgb)
    m = metrics.image_metrics(rgb, ab)
    assert torch.allclose(m["ab_mse"], torch.zeros(3), atol=1e-6)
    assert torch.all(m["psnr"] > 60)
    assert torch.allclose(m["ssim"], torch.ones(3), atol=1e-4)
    assert torch.all(m["delta_e"] < 0.01)
    assert torch.all(m["delta_cf"] < 0.01)
    assert torch.allclose(m["auc"], torch.ones(3))


def test_gray_baseline_scores_the_mean_squared_chroma():
    rgb = photos()
    l, ab = lab.rgb_to_model(rgb)
    m = metrics.image_metrics(rgb, metrics.gray_baseline(l))
    ref_lab = np.stack([rgb2lab(x) for x in rgb.permute(0, 2, 3, 1).numpy()])  # skimage, float64
    expected = (ref_lab[..., 1:] ** 2).reshape(3, -1).mean(1)
    assert np.allclose(m["ab_mse"].numpy(), expected, rtol=1e-4)
    assert torch.all(m["colourfulness"] < 0.05)  # a = b = 0 is neutral gray
    assert torch.allclose(m["delta_cf"], m["colourfulness_true"], atol=0.05)
    assert torch.all(m["auc"] < 1)


def test_colourfulness_of_a_half_red_half_blue_image():
    img = torch.zeros(1, 3, 4, 4)
    img[:, 0, :2] = 255  # top half red (255, 0, 0)
    img[:, 2, 2:] = 255  # bottom half blue (0, 0, 255)
    # rg = R - G: 255 | 0      -> mean 127.5, sd 127.5
    # yb = (R + G)/2 - B: 127.5 | -255 -> mean -63.75, sd 191.25
    expected = np.hypot(127.5, 191.25) + 0.3 * np.hypot(127.5, -63.75)
    assert metrics.colourfulness(img).item() == pytest.approx(expected, rel=1e-6)
    assert metrics.colourfulness(torch.full((1, 3, 4, 4), 77.0)).item() == 0


def test_auc_equals_the_explicit_threshold_curve():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(2, 2, 16, 16, generator=g) * 40
    pred = true + torch.randn(2, 2, 16, 16, generator=g) * torch.tensor([10.0, 80.0]).view(2, 1, 1, 1)
    err = (pred - true).pow(2).sum(1).sqrt().flatten(1)
    curve = torch.stack([(err <= t).float().mean(1) for t in range(151)], 1)
    assert torch.allclose(metrics.auc(pred, true), curve.mean(1), atol=1e-6)
    assert metrics.auc(true, true).tolist() == [1.0, 1.0]
    far = true + 1000
    assert metrics.auc(far, true).tolist() == [0.0, 0.0]


def test_psnr_and_ssim_agree_with_scikit_image():
    rgb = photos()
    l, ab = lab.rgb_to_model(rgb)
    noisy = ab + 0.1 * torch.randn(ab.shape, generator=torch.Generator().manual_seed(0))
    m = metrics.image_metrics(rgb, noisy)
    shown = (lab.model_to_rgb(l, noisy) * 255).permute(0, 2, 3, 1).double().numpy()
    true = rgb.permute(0, 2, 3, 1).double().numpy()
    for i in range(3):
        sk_psnr = peak_signal_noise_ratio(true[i], shown[i], data_range=255)
        assert m["psnr"][i].item() == pytest.approx(sk_psnr, abs=1e-3)
        sk = structural_similarity(
            true[i], shown[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=255, channel_axis=-1,
        )  # fmt: skip
        assert m["ssim"][i].item() == pytest.approx(sk, abs=1e-6)


def test_larger_colour_errors_score_worse():
    rgb = photos()
    l, ab = lab.rgb_to_model(rgb)
    small = metrics.image_metrics(rgb, ab + 0.02)
    large = metrics.image_metrics(rgb, ab + 0.2)
    for k in ["ab_mse", "delta_e"]:
        assert torch.all(large[k] > small[k])
    for k in ["psnr", "ssim", "auc"]:
        assert torch.all(large[k] < small[k])


def test_evaluate_runs_models_and_the_baseline_through_the_same_code():
    rgb = photos(32)
    loader = [(rgb[:2], []), (rgb[2:], [("x.jpg", "empty file")])]
    seen = {}
    out = metrics.evaluate(metrics.gray_baseline, loader, seen_skips=seen)
    direct = metrics.image_metrics(rgb, metrics.gray_baseline(lab.rgb_to_model(rgb)[0]))
    assert out["n_images"] == 3
    assert out["ab_mse"] == pytest.approx(direct["ab_mse"].mean().item(), rel=1e-5)
    assert out["mse_normalized"] == pytest.approx(out["ab_mse"] / 128**2)
    assert seen == {"x.jpg": "empty file"}
    model = torch.nn.Conv2d(1, 2, 1)
    model.train()
    scored = metrics.evaluate(model, loader)
    assert model.training  # evaluate() restores the mode it found
    assert set(metrics.METRICS) <= set(scored)
    assert all(np.isfinite(scored[k]) for k in metrics.METRICS)


def test_evaluate_all_scores_every_predictor_as_evaluate_does_alone():
    rgb = photos(32)
    loader = [(rgb[:2], []), (rgb[2:], [])]
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 2, 1).train()
    both = metrics.evaluate_all({"model": model, "gray": metrics.gray_baseline}, loader)
    assert model.training  # its mode is restored
    for name, predict in (("model", model), ("gray", metrics.gray_baseline)):
        alone = metrics.evaluate(predict, loader)
        assert both[name]["n_images"] == alone["n_images"] == 3
        for k in metrics.METRICS:
            assert both[name][k] == pytest.approx(alone[k], rel=1e-6)
    assert both["model"]["ab_mse"] != both["gray"]["ab_mse"]


def test_evaluate_all_restores_the_modes_when_the_pass_fails():
    rgb = photos(32)

    def loader():  # one good batch, then the data source fails
        yield rgb[:2], []
        raise OSError("disk gone")

    model = models.build_model("original_cnn").train()
    with pytest.raises(OSError, match="disk gone"):
        metrics.evaluate_all({"model": model, "gray": metrics.gray_baseline}, loader())
    assert model.training and all(m.training for m in model.modules())


def test_psnr_of_an_exact_prediction_is_the_finite_cap():
    black = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)  # L = a = b = 0: the gray baseline is exact
    exact = metrics.image_metrics(black, metrics.gray_baseline(lab.rgb_to_model(black)[0]))
    assert torch.isfinite(exact["psnr"]).all()
    assert exact["psnr"].tolist() == pytest.approx([metrics.PSNR_MAX] * 2)
    rgb = photos(32)
    near = metrics.image_metrics(rgb, lab.rgb_to_model(rgb)[1])  # float round trip: ~140 dB uncapped
    assert near["psnr"].tolist() == pytest.approx([metrics.PSNR_MAX] * 3)
    loader = [(black, []), (rgb, [])]
    mean = metrics.evaluate(metrics.gray_baseline, loader)["psnr"]
    gray_rgb = metrics.image_metrics(rgb, metrics.gray_baseline(lab.rgb_to_model(rgb)[0]))["psnr"]
    assert np.isfinite(mean)
    assert mean == pytest.approx((2 * metrics.PSNR_MAX + gray_rgb.sum().item()) / 5, rel=1e-6)


def test_the_registry_names_every_metric_computed_and_drives_the_table():
    rgb = photos(32)
    computed = metrics.image_metrics(rgb, metrics.gray_baseline(lab.rgb_to_model(rgb)[0]))
    assert metrics.METRICS == tuple(m.key for m in metrics.REGISTRY)
    assert set(metrics.METRICS) == set(computed)
    columns = [m.key for m in metrics.REGISTRY if m.column]
    assert "colourfulness_true" in metrics.METRICS and "colourfulness_true" not in columns
    scores = {"gray baseline": metrics.evaluate(metrics.gray_baseline, [(rgb, [])])}
    header, rule, row = metrics.format_table(scores, markdown=True).splitlines()
    assert header == "| | " + " | ".join(columns) + " |"
    assert rule.count("|---:") == len(columns)
    shown = [format(scores["gray baseline"][m.key], m.fmt) for m in metrics.REGISTRY if m.column]
    assert row == "| gray baseline | " + " | ".join(shown) + " |"
    plain = metrics.format_table(scores).splitlines()
    assert plain[0].split() == [c[:9] for c in columns]
    assert len(plain[1].split()) == 2 + len(columns)  # "gray", "baseline", then one value per column
