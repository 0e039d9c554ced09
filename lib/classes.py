"""Colour as classification (Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016).

A regression model trained with MSE predicts the mean of the plausible colours of a pixel, and the
mean of red and blue, or of many hues, is a grayish brown. Zhang et al. instead quantize the ab
plane into Q bins and predict a distribution over them:

  * the target of a pixel is a soft encoding: Gaussian weights (sigma 5) on its 5 nearest bins;
  * the loss is the cross-entropy, each pixel weighted by how rare its colour is (class
    rebalancing: w ~ 1 / ((1 - lambda) p + lambda / Q), from the empirical, smoothed prior p);
  * a colour comes back from a distribution by the annealed mean: the expectation of the bin
    centres under softmax(logits / T), T = 0.38, between the mean (T = 1, brownish) and the mode
    (T -> 0, vivid but patchy).

Units: every ab tensor here is on the model scale, ab = (a, b) / 128, shape (N, 2, H, W) (see
lib/lab.py); bin centres are in Lab units, because the grid (10) and sigma (5) are defined there.
"""

import functools

import torch
import torch.nn.functional as F

from lib import lab

GRID = 10  # bin size in Lab units
SIGMA = 5.0  # soft-encoding and prior-smoothing Gaussian, Lab units
NEIGHBOURS = 5  # bins that share a pixel's target
LAMBDA = 0.5  # mix of prior and uniform in the rebalancing weights
TEMPERATURE = 0.38  # annealed-mean temperature
VIVID_LAMBDA = 0.05  # the rebalancing applied when colorizing at vividness 1 (vividness_setting)

_CHUNK = 1 << 14  # pixels per distance step: 16384 x 261 bins x 2 floats, ~34 MB at most


@functools.lru_cache
def _bins(grid: int) -> torch.Tensor:
    # Every 8-bit colour on the surface of the RGB cube. The cube's surface maps onto the surface of
    # the gamut in Lab, and every line of constant (a, b) through the gamut crosses its surface, so
    # the surface reaches every (a, b) the solid does (checked once for all 2**24 8-bit colours: the
    # same bins).
    levels = torch.arange(256, dtype=torch.uint8)
    u, v = torch.meshgrid(levels, levels, indexing="ij")
    faces = []
    for axis in range(3):
        for value in (0, 255):
            planes = [u, v]
            planes.insert(axis, torch.full_like(u, value))
            faces.append(torch.stack(planes))
    ab = lab.rgb_to_lab(torch.stack(faces))[:, 1:].transpose(0, 1).reshape(2, -1)  # Lab units
    cells = torch.round(ab / grid).long()  # each colour's nearest grid point
    reach = int(cells.abs().max()) + 1
    codes = torch.unique((cells[0] + reach) * (2 * reach + 1) + (cells[1] + reach))  # sorted: a, then b
    return torch.stack((codes // (2 * reach + 1) - reach, codes % (2 * reach + 1) - reach), 1).float() * grid


def ab_bins(grid: int = GRID) -> torch.Tensor:
    """The bin centres (Q, 2) in Lab units (a, b), sorted by a, then b: the points of the grid-`grid`
    lattice (multiples of `grid`) whose cell, the square of side `grid` around the point, holds the
    (a, b) of some 8-bit sRGB colour at some lightness. So every colour a photo can hold has its
    nearest grid point among the bins, and every bin is the nearest grid point of such a colour
    (a bin's centre itself may lie just outside the gamut, as in Zhang's list).

    Q = 261 for grid 10. Why not Zhang's 313: the sRGB gamut's ab projection (a* from -86 to 98, b*
    from -108 to 94) covers about 220 cells' area; 261 is those plus the cells its boundary grazes.
    Zhang's list is wider than sRGB: it starts with (-90, 50), a cell no sRGB colour reaches. A
    stricter rule, "the centre itself is in gamut at some L", gives 229 and drops the outermost
    colours (pure green's nearest grid point, (-90, 80), is out of gamut).

    Computed from the gamut once per grid (393,216 colours, well under a second) and cached;
    returns a copy, so callers may modify it.
    """
    return _bins(grid).clone()


def nearest_bins(ab: torch.Tensor, bins: torch.Tensor, k: int = NEIGHBOURS):
    """The k nearest bins of each pixel: (squared distances in Lab units**2, bin indices), both
    (N, k, H, W), nearest first. ab is on the model scale; not differentiable (targets need none).

    Bins on the GRID lattice (ab_bins) are searched in a window: only the 6 x 6 lattice points
    around the pixel's cell are candidates (36 instead of Q = 261, about 5x faster). The window
    holds every point within 3 GRID of the pixel, so where its k-th nearest candidate is at most
    that far, the answer is exact; the few pixels where it is not (far outside the gamut, or k
    large) are searched over all bins, as are bins that are not on the lattice. Works through
    _CHUNK pixels at a time, so a (32, 2, 64, 64) batch never holds more than ~34 MB of distances.
    """
    n, _, h, w = ab.shape
    pixels = lab.denormalize_ab(ab.detach()).permute(0, 2, 3, 1).reshape(-1, 2)
    bins = bins.to(pixels)
    lattice = _lattice_table(bins)
    dist, index = [], []
    for piece in pixels.split(_CHUNK):
        if lattice and k <= len(_WINDOW) ** 2:
            d, i = _nearest_in_window(piece, bins, k, *lattice)
        else:
            d, i = _nearest_all(piece, bins, k)
        dist.append(d)
        index.append(i)

    def image(t):
        return torch.cat(t).reshape(n, h, w, k).permute(0, 3, 1, 2)

    return image(dist), image(index)


def _nearest_all(pixels, bins, k):
    # exact differences, not cdist's |x|^2 - 2xy + |y|^2, which loses ~1e-3 at these magnitudes
    d2 = (pixels[:, None, :] - bins[None]).square().sum(-1)
    return d2.topk(k, dim=1, largest=False)  # sorted, nearest first


_WINDOW = torch.arange(-2, 4)  # lattice offsets from the pixel's cell: 6 x 6 candidates


def _lattice_table(bins):
    """(table, reach) mapping lattice points (i, j) to bin indices (-1: not a bin), or None when
    the bins are not all on the GRID lattice."""
    cells = bins / GRID
    if len(bins) == 0 or not torch.equal(cells, cells.round()):
        return None
    cells = cells.round().long()
    reach = int(cells.abs().max()) + 1
    side = 2 * reach + 1
    table = torch.full((side * side,), -1, dtype=torch.long, device=bins.device)
    table[(cells[:, 0] + reach) * side + cells[:, 1] + reach] = torch.arange(len(bins), device=bins.device)
    return table, reach


def _nearest_in_window(pixels, bins, k, table, reach):
    side = 2 * reach + 1
    offsets = _WINDOW.to(pixels.device)
    base = torch.floor(pixels / GRID).long()  # the pixel's cell, (P, 2)
    ca, cb = base[:, :1] + offsets, base[:, 1:] + offsets  # (P, 6) lattice coordinates
    inside = ((ca.abs() <= reach)[:, :, None] & (cb.abs() <= reach)[:, None, :]).flatten(1)
    code = (ca.clamp(-reach, reach)[:, :, None] + reach) * side + cb.clamp(-reach, reach)[:, None, :] + reach
    cand = torch.where(inside, table[code.flatten(1)], -1)  # (P, 36) bin indices, -1 for none
    d2 = (pixels[:, None, :] - bins[cand.clamp(min=0)]).square().sum(-1)
    d2 = d2.masked_fill(cand < 0, float("inf"))
    d, j = d2.topk(k, dim=1, largest=False)
    i = cand.gather(1, j)
    far = ~(d[:, -1] <= (3 * GRID) ** 2)  # its k-th candidate may be beaten outside the window
    if far.any():
        d[far], i[far] = _nearest_all(pixels[far], bins, k)
    return d, i


def _gaussian(d2, sigma):
    """Normalized Gaussian weights from squared distances (N, k, H, W), nearest first. Subtracting
    the nearest distance changes nothing after normalizing, but keeps a pixel far from every bin
    from underflowing to 0 / 0."""
    w = torch.exp(-(d2 - d2[:, :1]) / (2 * sigma**2))
    return w / w.sum(1, keepdim=True)


def soft_encode(ab: torch.Tensor, bins: torch.Tensor, sigma: float = SIGMA, k: int = NEIGHBOURS):
    """Each pixel's target distribution (N, Q, H, W): weights exp(-d**2 / 2 sigma**2) on its k
    nearest bins (d in Lab units), summing to 1; zeros elsewhere. Dense, so 4 bytes x Q per pixel:
    class_loss does the same without building it."""
    d2, index = nearest_bins(ab, bins, k)
    n, _, h, w = ab.shape
    out = torch.zeros(n, len(bins), h, w, device=ab.device)
    return out.scatter_(1, index, _gaussian(d2, sigma))


def ab_prior(ab_batches, bins: torch.Tensor, smooth: float = SIGMA) -> torch.Tensor:
    """The empirical distribution (Q,) float64 of the nearest bin of every pixel of an iterable of
    ab batches (model scale, (N, 2, H, W) each), summing to 1.

    smooth > 0 (Lab units) then spreads each bin's mass over its neighbours with a Gaussian of that
    sigma over the ab plane, as Zhang et al. did (sigma 5): a colour that a small training set
    happens to miss is still plausible, and should not get the largest rebalancing weight for it.
    Each bin's Gaussian is normalized over the bins, so no mass leaks out at the gamut's edge.
    smooth=0 keeps the raw histogram.
    """
    counts = torch.zeros(len(bins), dtype=torch.float64)
    for ab in ab_batches:
        index = nearest_bins(ab, bins, 1)[1].flatten().cpu()
        counts += torch.bincount(index, minlength=len(bins)).double()
    if counts.sum() == 0:
        raise ValueError("ab_prior needs at least one pixel")
    prior = counts / counts.sum()
    if smooth > 0:
        centres = bins.double().cpu()
        spread = torch.exp(-torch.cdist(centres, centres).square() / (2 * smooth**2))  # [to, from]
        prior = (spread / spread.sum(0, keepdim=True)) @ prior
    return prior


def rebalancing_weights(prior: torch.Tensor, lam: float = LAMBDA) -> torch.Tensor:
    """Class weights (Q,) w ~ 1 / ((1 - lam) p + lam / Q), scaled so that sum(p * w) = 1: the loss
    keeps its size on average, while rare colours count more. lam = 1 gives all ones; lam -> 0 gives
    w ~ 1 / p, infinite for unseen bins, hence 0 < lam <= 1."""
    if not 0 < lam <= 1:
        raise ValueError(f"lam must be in (0, 1], got {lam}")
    p = prior.double()
    w = 1 / ((1 - lam) * p + lam / len(p))
    return (w / (p * w).sum()).to(prior.dtype if prior.is_floating_point() else torch.float32)


def class_loss(logits, ab, bins, weights, sigma: float = SIGMA, k: int = NEIGHBOURS) -> torch.Tensor:
    """Zhang's rebalanced cross-entropy: the mean over pixels of w(pixel's nearest bin) x
    -sum_q z_q log softmax(logits)_q, with z the soft encoding of ab.

    logits (N, Q, h, w) may be smaller than ab (N, 2, H, W): ab is first averaged down to (h, w)
    (area interpolation). Each logit pixel stands for a block of input pixels, and the block's mean
    colour is what the photo itself shows at that resolution; subsampling (nearest, or bilinear
    without antialiasing) would take one pixel of the block and alias fine texture.

    The soft target is never built densely: only its k nonzero entries are gathered from the
    log-probabilities, so the cost is one log_softmax plus the distances to the bins.
    """
    if ab.shape[-2:] != logits.shape[-2:]:
        ab = F.interpolate(ab, size=logits.shape[-2:], mode="area")
    d2, index = nearest_bins(ab, bins, k)
    target = _gaussian(d2, sigma)
    logp = F.log_softmax(logits.float(), dim=1)
    cross_entropy = -(target * logp.gather(1, index)).sum(1)  # (N, h, w)
    # the weight of the target's most likely bin, which is the nearest one
    return (weights.to(logp)[index[:, 0]] * cross_entropy).mean()


def annealed_mean(logits, bins, temperature: float = TEMPERATURE) -> torch.Tensor:
    """ab (N, 2, h, w), model scale: the mean of the bin centres under softmax(logits / T). This is
    Zhang's f_T(z) = exp(log z / T) / sum(...) applied to z = softmax(logits), since log z = logits
    minus a per-pixel constant, which the softmax removes."""
    p = F.softmax(logits.float() / temperature, dim=1)
    return lab.normalize_ab(torch.einsum("nqhw,qc->nchw", p, bins.to(p)))


def vividness_setting(vividness: float) -> tuple[float, float]:
    """(annealed-mean temperature T, rebalancing lambda) of a vividness in [0, 1].

    0 is faithful: T = 1, the mean of the distribution the model predicts as if trained without
    rebalancing (lambda = 1). 1 is vivid: Zhang's T = 0.38, with the distribution rebalanced at
    lambda = VIVID_LAMBDA. In between, T = 0.38 ** v and lambda = VIVID_LAMBDA ** v.

    Rebalancing when colorizing: a classifier trained with class weights w learns (roughly) the
    photos' colour distribution times w, so adding log(w' / w) to its logits gives the
    distribution it would have learnt with weights w' (the prior correction of a classifier for a
    changed class balance). So one trained model serves every setting, whatever lambda it was
    trained with. Why not the temperature alone: a lower T moves each pixel toward its most likely
    colour, and for a model trained without rebalancing that is a grayish one, so a lower T alone
    made the colours duller, not more vivid (lib/weights/README.md, the full model card).
    """
    if not 0 <= vividness <= 1:
        raise ValueError(f"vividness must be between 0 (faithful) and 1 (vivid), got {vividness}")
    return TEMPERATURE**vividness, VIVID_LAMBDA**vividness
