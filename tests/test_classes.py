"""Colour classification (Zhang et al. 2016): bins, soft targets, prior, weights, loss, annealed mean,
and the ResNet's classification head."""

import pytest
import skimage.data
import torch
import torch.nn.functional as F

from lib import checkpoints, classes, lab, models, train
from lib.models import EditedCNN, OriginalCNN, ResNet18Colorizer, build_model, count_parameters, layer_table

BINS = classes.ab_bins()
Q = len(BINS)


def in_gamut_somewhere(a, b, tol):
    """(P,) bool: (a, b) in Lab units is inside the sRGB gamut at some L* in [0, 100] (steps of 0.5),
    by the inverse conversion (Lab -> linear RGB), not the forward one the bins are built with."""
    from_xyz = lab._consts(torch.device("cpu"))[1]
    found = torch.zeros(len(a), dtype=torch.bool)
    for L in torch.linspace(0, 100, 201):
        linear = lab._lab_to_linear(torch.stack((torch.full_like(a, L), a, b))[None], from_xyz)[0]
        fits = ((linear >= -tol) & (linear <= 1 + tol)).all(0)
        found |= fits & ((L + 16) / 116 - b / 200 >= 0)  # lab.py's clipped z would change the colour
    return found


def cell_points(centres, half, step):
    """Points on a square grid of half-width `half` around each centre: (a, b), each (len * M,)."""
    offsets = torch.arange(-half, half + 1e-9, step)
    da, db = (t.flatten() for t in torch.meshgrid(offsets, offsets, indexing="ij"))
    return (centres[:, None, 0] + da).flatten(), (centres[:, None, 1] + db).flatten(), len(da)


# --- bins ----------------------------------------------------------------------------------------


def test_bins_are_the_grid_cells_the_srgb_gamut_reaches():
    assert 250 < Q < 400
    assert Q == 261  # the rule's count (Zhang's list, 313, is wider than sRGB: see ab_bins)
    grid = {tuple(c) for c in BINS.long().tolist()}
    assert (0, 0) in grid and (110, -110) not in grid
    # every bin's cell (with a 1-unit margin) holds an in-gamut colour at some L...
    a, b, m = cell_points(BINS, 6, 2)
    assert in_gamut_somewhere(a, b, tol=1e-2).view(Q, m).any(1).all()
    # ...and no cell next to a bin does (shrunk by 1 unit): the set is not just "big enough"
    ring = {(x + dx, y + dy) for x, y in grid for dx in (-10, 0, 10) for dy in (-10, 0, 10)} - grid
    assert len(ring) > 40
    a, b, m = cell_points(torch.tensor(sorted(ring), dtype=torch.float32), 4, 1)
    assert not in_gamut_somewhere(a, b, tol=0).any()


def test_bins_lie_on_the_grid_and_form_one_solid_region():
    assert BINS.dtype == torch.float32 and BINS.shape == (Q, 2)
    assert torch.equal(BINS, BINS.round()) and (BINS.long() % 10 == 0).all()
    assert len(torch.unique(BINS, dim=0)) == Q
    # no holes: along every row and column of the grid, the bins are one contiguous run
    for axis in (0, 1):
        for value in BINS[:, axis].unique():
            run = BINS[BINS[:, axis] == value, 1 - axis].sort().values
            assert torch.equal(run, torch.arange(run[0], run[-1] + 1, 10.0))
    # the sRGB primaries and secondaries fall in (or next to) a bin: within half a diagonal
    corners = torch.tensor(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 255, 255], [255, 0, 255], [255, 255, 0]]
    )
    ab = lab.rgb_to_lab(corners.T[None, :, :, None].to(torch.uint8))[:, 1:] / lab.AB_SCALE
    assert (classes.nearest_bins(ab, BINS, 1)[0] <= 50).all()  # 5**2 + 5**2
    coarse = classes.ab_bins(20)
    assert (coarse.long() % 20 == 0).all() and 50 < len(coarse) < Q


def test_ab_bins_returns_a_copy():
    bins = classes.ab_bins()
    bins += 1
    assert torch.equal(classes.ab_bins(), BINS)


# --- nearest bins and soft encoding --------------------------------------------------------------


def random_ab(*shape, seed=0):
    """Model-scale ab, uniform over a box a bit larger than the gamut's."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) * 2 - 1) * 115 / lab.AB_SCALE


def test_nearest_bins_match_brute_force_across_chunks():
    ab = random_ab(3, 2, 100, 100)  # 30,000 pixels: two chunks
    d2, index = classes.nearest_bins(ab, BINS, 5)
    assert d2.shape == index.shape == (3, 5, 100, 100)
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2).double() * lab.AB_SCALE
    all_d2 = torch.cdist(pixels, BINS.double()).square()
    expect = all_d2.sort(1).values[:, :5].reshape(3, 100, 100, 5).permute(0, 3, 1, 2)
    assert torch.allclose(d2.double(), expect, atol=1e-2)
    chosen = all_d2.gather(1, index[:, 0].flatten()[:, None])[:, 0]
    assert torch.allclose(chosen, all_d2.min(1).values, atol=1e-2)  # the nearest, up to exact ties
    assert (d2.diff(dim=1) >= 0).all()  # nearest first


@pytest.mark.parametrize("k", [1, 5, 10])
def test_the_window_search_finds_what_a_search_of_every_bin_finds(k):
    """The 6 x 6 window around a pixel's cell, with its fallback, gives the nearest bins exactly:
    for real colours up to the gamut's corners (the RGB cube's edges), and far outside it."""
    g = torch.Generator().manual_seed(k)
    rgb = torch.randint(0, 256, (1, 3, 60, 60), dtype=torch.uint8, generator=g)
    rgb[0, :, :20] = (rgb[0, :, :20] > 127).to(torch.uint8) * 255  # pure primaries and secondaries
    ab = torch.cat((lab.rgb_to_lab(rgb)[:, 1:] / lab.AB_SCALE, random_ab(1, 2, 60, 60, seed=k) * 1.5), 3)
    d2, index = classes.nearest_bins(ab, BINS, k)
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2) * lab.AB_SCALE
    d_all, i_all = classes._nearest_all(pixels, BINS, k)
    assert torch.equal(d2.permute(0, 2, 3, 1).reshape(-1, k), d_all)
    chosen = index.permute(0, 2, 3, 1).reshape(-1, k)
    assert torch.equal((pixels[:, None] - BINS[chosen]).square().sum(-1), d_all)  # ties may swap bins
    assert (chosen == i_all).float().mean() > 0.98 and len(chosen.unique()) > 50


def test_soft_encode_is_a_gaussian_on_the_k_nearest_bins():
    ab = random_ab(2, 2, 8, 8, seed=1)
    z = classes.soft_encode(ab, BINS)
    assert z.shape == (2, Q, 8, 8)
    assert torch.allclose(z.sum(1), torch.ones(2, 8, 8), atol=1e-6)
    assert ((z > 0).sum(1) == classes.NEIGHBOURS).all()
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2) * lab.AB_SCALE
    all_d2 = torch.cdist(pixels.double(), BINS.double()).square()  # (P, Q)
    flat = z.permute(0, 2, 3, 1).reshape(-1, Q).double()
    nearest = all_d2.gather(1, flat.argmax(1, keepdim=True))[:, 0]
    assert torch.allclose(nearest, all_d2.min(1).values, atol=1e-2)  # largest weight on the nearest bin
    # weight ratios are exp(-(d_i^2 - d_j^2) / 2 sigma^2) against the most likely bin
    top = flat.argmax(1, keepdim=True)
    on = flat > 0
    ratio = flat / flat.gather(1, top)
    expect = torch.exp(-(all_d2 - all_d2.gather(1, top)) / (2 * classes.SIGMA**2))
    assert torch.allclose(ratio[on], expect[on], rtol=1e-4)


def test_soft_encode_of_a_bin_centre_with_one_neighbour_is_one_hot():
    picks = torch.tensor([0, 17, Q // 2, Q - 1])
    ab = (BINS[picks] / lab.AB_SCALE).T[None, :, :, None]  # (1, 2, 4, 1)
    z = classes.soft_encode(ab, BINS, k=1)
    assert torch.equal(z[0, :, :, 0].T, F.one_hot(picks, Q).float())


def test_soft_encode_survives_pixels_far_from_every_bin():
    ab = torch.full((1, 2, 1, 1), 3.0)  # (384, 384) Lab: exp(-d^2 / 50) alone would underflow
    z = classes.soft_encode(ab, BINS)
    assert torch.isfinite(z).all() and torch.allclose(z.sum(), torch.tensor(1.0))


# --- prior and rebalancing -----------------------------------------------------------------------


def test_prior_of_one_colour_is_its_bin_and_smoothing_spreads_it_to_the_neighbours():
    ab = torch.tensor([23.0, -41.0]).view(1, 2, 1, 1).expand(4, 2, 6, 6) / lab.AB_SCALE
    raw = classes.ab_prior([ab, ab[:1]], BINS, smooth=0)
    target = int(((BINS - torch.tensor([20.0, -40.0])).abs().sum(1) == 0).nonzero())
    assert raw.dtype == torch.float64
    assert torch.equal(raw, F.one_hot(torch.tensor(target), Q).double())
    smooth = classes.ab_prior([ab], BINS)
    assert abs(float(smooth.sum()) - 1) < 1e-12 and int(smooth.argmax()) == target
    neighbour = int(((BINS - torch.tensor([30.0, -40.0])).abs().sum(1) == 0).nonzero())
    diagonal = int(((BINS - torch.tensor([30.0, -30.0])).abs().sum(1) == 0).nonzero())
    assert float(smooth[neighbour] / smooth[target]) == pytest.approx(torch.e**-2)  # 10^2 / 2 sigma^2
    assert float(smooth[diagonal] / smooth[target]) == pytest.approx(torch.e**-4)


def test_prior_counts_pixels_over_batches():
    ab = random_ab(3, 2, 10, 10, seed=2)
    counts = torch.bincount(classes.nearest_bins(ab, BINS, 1)[1].flatten(), minlength=Q)
    prior = classes.ab_prior(iter([ab[:1], ab[1:]]), BINS, smooth=0)
    assert torch.allclose(prior, counts.double() / 300)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rebalancing_weights_have_expectation_one_and_favour_rare_bins(seed):
    g = torch.Generator().manual_seed(seed)
    prior = torch.rand(Q, generator=g, dtype=torch.float64) ** 4  # skewed, like real colour priors
    prior[::7] = 0  # unseen bins
    prior /= prior.sum()
    w = classes.rebalancing_weights(prior)
    assert abs(float((prior * w).sum()) - 1) < 1e-6 and torch.isfinite(w).all()
    order = prior.argsort()  # rare first: weights fall as the prior rises
    assert (w[order].diff() <= 1e-12).all() and w[order[0]] > 2 * w[order[-1]]
    assert torch.allclose(classes.rebalancing_weights(prior, lam=1.0), torch.ones(Q, dtype=torch.float64))
    assert w.max() / w.min() > classes.rebalancing_weights(prior, lam=0.9).max()  # lam=0.9: flatter
    with pytest.raises(ValueError):
        classes.rebalancing_weights(prior, lam=0)


# --- annealed mean -------------------------------------------------------------------------------


def test_annealed_mean_of_a_one_hot_is_its_bin_and_t1_is_the_softmax_mean():
    logits = torch.randn(2, Q, 3, 3, generator=torch.Generator().manual_seed(0))
    picks = torch.tensor([5, Q - 3])
    peaked = logits.clone()
    peaked[0, picks[0]] += 100
    peaked[1, picks[1]] += 100
    ab = classes.annealed_mean(peaked, BINS)
    assert ab.shape == (2, 2, 3, 3)
    expect = (BINS[picks] / lab.AB_SCALE)[:, :, None, None].expand(2, 2, 3, 3)
    assert torch.allclose(ab, expect, atol=1e-5)
    p = torch.softmax(logits, 1)
    mean = (p[:, :, None] * BINS[None, :, :, None, None]).sum(1) / lab.AB_SCALE
    assert torch.allclose(classes.annealed_mean(logits, BINS, temperature=1.0), mean, atol=1e-6)
    # Zhang's form: re-normalized z ** (1 / T) of z = softmax(logits)
    zt = p ** (1 / classes.TEMPERATURE)
    zt = zt / zt.sum(1, keepdim=True)
    mean_t = (zt[:, :, None] * BINS[None, :, :, None, None]).sum(1) / lab.AB_SCALE
    assert torch.allclose(classes.annealed_mean(logits, BINS), mean_t, atol=1e-5)


# --- the loss -------------------------------------------------------------------------------------


def test_class_loss_is_the_weighted_cross_entropy_with_the_soft_target():
    ab = random_ab(2, 2, 8, 8, seed=3) * 0.7
    logits = torch.randn(2, Q, 4, 4, generator=torch.Generator().manual_seed(1))
    weights = torch.rand(Q, generator=torch.Generator().manual_seed(2)) + 0.5
    loss = classes.class_loss(logits, ab, BINS, weights)
    small = F.avg_pool2d(ab, 2)  # 2x2 blocks averaged
    z = classes.soft_encode(small, BINS)
    per_pixel = -(z * torch.log_softmax(logits, 1)).sum(1)
    expect = (weights[z.argmax(1)] * per_pixel).mean()
    assert torch.isfinite(loss) and torch.allclose(loss, expect, rtol=1e-5)
    assert torch.allclose(classes.class_loss(logits, ab, BINS, 3 * weights), 3 * loss, rtol=1e-5)
    # only the pixels whose nearest bin has a weight count
    keep = torch.zeros(Q)
    keep[z.argmax(1)[0, 0, 0]] = 1
    only = (keep[z.argmax(1)] * per_pixel).mean()
    assert 0 < only < loss and torch.allclose(classes.class_loss(logits, ab, BINS, keep), only, rtol=1e-5)


def test_class_loss_falls_toward_the_target_and_has_the_softmax_gradient():
    ab = random_ab(2, 2, 6, 6, seed=4) * 0.7
    z = classes.soft_encode(ab, BINS)
    noise = torch.randn(2, Q, 6, 6, generator=torch.Generator().manual_seed(5))
    best = torch.log(z + 1e-6)
    ones = torch.ones(Q)
    losses = [float(classes.class_loss((1 - t) * noise + t * best, ab, BINS, ones)) for t in (0, 0.5, 1)]
    assert losses[0] > losses[1] > losses[2]
    entropy = float(-(z * torch.log(z.clamp_min(1e-30))).sum(1).mean())
    assert losses[2] == pytest.approx(entropy, abs=1e-3)  # the minimum of a cross-entropy
    logits = noise.clone().requires_grad_()
    weights = torch.rand(Q, generator=torch.Generator().manual_seed(6)) + 0.5
    classes.class_loss(logits, ab, BINS, weights).backward()
    pixel_w = weights[z.argmax(1)][:, None]
    expect = pixel_w * (torch.softmax(noise, 1) - z) / (2 * 6 * 6)
    assert torch.allclose(logits.grad, expect, atol=1e-7)


# --- the classification head ----------------------------------------------------------------------


def photo_crops(size=32):
    """Eight real-ish training images: astronaut and coffee shrunk 8x, cut into size x size crops."""
    crops = []
    for photo in (skimage.data.astronaut(), skimage.data.coffee()):
        rgb = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
        small = F.interpolate(rgb, scale_factor=1 / 8, mode="area").round().to(torch.uint8)
        for y, x in (
            (0, 0),
            (0, size),
            (size // 2, size // 2),
            (small.shape[2] - size, small.shape[3] - size),
        ):
            crops.append(small[:, :, y : y + size, x : x + size])
    return lab.rgb_to_model(torch.cat(crops))


def test_classification_head_learns_real_images():
    l, ab = photo_crops()
    torch.manual_seed(0)
    model = ResNet18Colorizer(head="classification")
    model.head.set_prior(classes.ab_prior([ab], model.head.bins))
    assert not torch.equal(model.head.class_weights, torch.ones(Q))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = model.head.loss(model(l), ab, l)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_heads_share_one_interface():
    regression = build_model("resnet18")
    assert count_parameters(regression) == 954_722 and regression.head.kind == "regression"
    assert "head.class_weights" not in regression.state_dict()
    for model in (regression, OriginalCNN(), EditedCNN()):
        out, ab, l = torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8), torch.rand(1, 1, 8, 8)
        assert model.head.kind == "regression" and model.head.to_ab(out) is out
        assert torch.equal(model.head.loss(out, ab, l), F.mse_loss(out, ab))
    with pytest.raises(ValueError, match="unknown head"):
        build_model("resnet18", head="regresion")


def test_classification_head_shapes_and_colours():
    torch.manual_seed(0)
    model = build_model("resnet18", head="classification").eval()
    assert count_parameters(model) == 954_722 - (32 * 9 * 2 + 2) + (32 * Q + Q)
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 64, 64))
        assert logits.shape == (2, Q, 32, 32)
        ab = model.head.to_ab(logits)
        assert ab.shape == (2, 2, 64, 64)
        assert (ab.abs() <= BINS.abs().max(0).values[None, :, None, None] / lab.AB_SCALE + 1e-6).all()
        odd = model(torch.rand(1, 1, 70, 70))  # sizes off the multiple of 8: ask for the input's size
        assert model.head.to_ab(odd, (70, 70)).shape == (1, 2, 70, 70)
    table = layer_table(model, size=64)
    assert f"Conv 1x1, 32 -> {Q}" in table and f"{Q} x 32 x 32" in table
    assert "Conv 3x3, 32 -> 2" in layer_table(build_model("resnet18"), size=64)


def test_class_weights_travel_in_the_state_dict():
    model = ResNet18Colorizer(head="classification")
    prior = torch.rand(Q, dtype=torch.float64)
    model.head.set_prior(prior / prior.sum())
    state = model.state_dict()
    assert "head.class_weights" in state and "head.bins" not in state
    fresh = ResNet18Colorizer(head="classification")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.head.class_weights, model.head.class_weights)
    assert torch.allclose(fresh.head.class_weights.double(), classes.rebalancing_weights(prior / prior.sum()))
    assert not hasattr(ResNet18Colorizer().head, "set_prior")  # a regression head has no prior


def test_rebalance_one_turns_rebalancing_off_and_is_remembered(tmp_path):
    prior = torch.rand(Q, dtype=torch.float64)
    model = ResNet18Colorizer(head="classification", rebalance=1.0)
    model.head.set_prior(prior / prior.sum())
    assert torch.equal(model.head.class_weights, torch.ones(Q))
    options = {"head": "classification", "rebalance": 1.0}
    ckpt = checkpoints.make(model, "resnet18", options, 1, 0.0, {"source": "a test"})
    checkpoints.write(ckpt, tmp_path / "c.pt")
    loaded, _ = checkpoints.load(tmp_path / "c.pt")
    assert loaded.head.rebalance == 1.0 and torch.equal(loaded.head.class_weights, torch.ones(Q))
    assert models.label("resnet18", options) == "resnet18 (classification, λ=1)"
    assert models.label("resnet18", {"head": "classification"}) == "resnet18 (classification)"
    assert models.label("resnet18", {}) == "resnet18"
    with pytest.raises(ValueError, match="needs head='classification'"):
        ResNet18Colorizer(rebalance=1.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ResNet18Colorizer(head="classification", rebalance=0.0)
    with pytest.raises(SystemExit):
        train.main(["--rebalance", "1", "--epochs", "1"])  # a regression run has nothing to rebalance
