"""sRGB <-> CIE Lab in torch, and the one normalization every model uses.

Why Lab: L* carries the lightness a black-and-white photo already has; a* and b* carry the colour.
So a colorizer reads L and predicts (a, b), and the output keeps the photo's own lightness.

The conversion is the same as scikit-image's `rgb2lab` / `lab2rgb` (sRGB, D65 white, 2° observer,
the same matrix and the same constants), written for batched torch tensors of shape (N, 3, H, W)
on any device. It matches skimage to ~1e-4 Lab units in float32 (tests/test_lab.py checks it).

THE normalization (used by every model, loader, metric, plot and checkpoint):

    model input   l  = L / 100        L in [0, 100]   ->  l  in [0, 1]
    model target  ab = (a, b) / 128   a, b in ~[-128, 127] -> ab in ~[-1, 1]

ab / 128 is the original CNN's target scale, so a loss in normalized units is directly comparable
with the original notebook's MSE (0.0121); multiply by 128**2 to get Lab units**2.

This module is the one place that converts between images and model tensors; no other module
scales by L_SCALE or AB_SCALE or assembles Lab by hand:

    uint8 sRGB batch        -> (l, ab)       rgb_to_model       (a loader's batch, training, scoring)
    uint8 gray or sRGB      -> L*            image_to_lightness (a photo's full-resolution lightness)
    L*                      -> l             normalize_l        (what the model sees)
    (l, ab)                 -> float sRGB    model_to_rgb       (sample grids; gamut clipped)
    (L*, ab)                -> uint8 sRGB    lightness_ab_to_rgb8 (colorized photos; L* and hue kept)
    Lab <-> (l, ab), and each part alone     normalize, denormalize, normalize_l, normalize_ab, ...

Why chunks: on a 2-core CPU, converting a whole (64, 3, 256, 256) batch at once is slower than
skimage, because every intermediate is a 50 MB tensor and the time goes to memory traffic and to
page faults on fresh memory. rgb_to_lab works through ~130,000 pixels at a time in buffers it
allocates once per call, which keeps them in cache (4-5x faster than skimage per image). On a GPU,
big chunks are best.
"""

import torch

L_SCALE = 100.0
AB_SCALE = 128.0
NORMALIZATION = {"l": "L/100", "ab": "ab/128", "l_scale": L_SCALE, "ab_scale": AB_SCALE}

# skimage.color.colorconv.xyz_from_rgb and the D65 / 2° reference white.
_XYZ_FROM_RGB = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)

_CPU_CHUNK = 1 << 17  # pixels per step on the CPU (see module docstring)
_GPU_CHUNK = 1 << 26


def _consts(device):
    """Fold the reference white into the matrices, in float32 on the right device."""
    to_xyz = (_XYZ_FROM_RGB / _WHITE[:, None]).to(device, torch.float32)
    from_xyz = (_RGB_FROM_XYZ * _WHITE[None, :]).to(device, torch.float32)
    return to_xyz, from_xyz


def _chunked(fn, x, *consts, channels=3, dtype=torch.float32, into=False):
    """Apply fn to (B, 3, P) views of x in pieces of about _CHUNK pixels; returns (N, C, H, W).
    fn(piece, *consts) returns its result, or with into=True, fn(piece, out_piece, *consts) writes it."""
    n, _, h, w = x.shape
    flat = x.reshape(n, x.shape[1], h * w)
    out = torch.empty((n, channels, h * w), dtype=dtype, device=x.device)

    def run(piece, target):
        if into:
            fn(piece, target, *consts)
        else:
            target[...] = fn(piece, *consts)

    budget = _chunk(x.device)
    if h * w >= budget:  # one big image: walk along its pixels
        for i in range(n):
            for s in range(0, h * w, budget):
                run(flat[i : i + 1, :, s : s + budget], out[i : i + 1, :, s : s + budget])
    else:  # many small images: several at a time
        step = budget // (h * w)
        for s in range(0, n, step):
            run(flat[s : s + step], out[s : s + step])
    return out.reshape(n, channels, h, w)


def _chunk(device):
    return _GPU_CHUNK if device.type == "cuda" else _CPU_CHUNK


def _decode_lut(device):
    """8-bit sRGB -> linear RGB (256 entries, computed in float64): one gather instead of a pow."""
    return _linearize(torch.arange(256, dtype=torch.float64) / 255).float().to(device)


def _cielab_f(t, line):
    """CIE's f(t), in place in t (line: a buffer like t): the cube root above 0.008856, the tangent
    line below it. The line lies above the (concave) cube root everywhere, so a minimum picks the
    right branch without a mask; exp(log / 3) is ~1.5x faster than pow(1/3) on the CPU. Agrees with
    skimage's where/pow form to ~1e-6."""
    torch.mul(t, 7.787, out=line).add_(16 / 116)
    return torch.minimum(t.clamp_min_(0.008856).log_().div_(3).exp_(), line, out=t)


def _rgb_to_lab_block(rgb, out, to_xyz, lut, to_out, offset, work):
    """Writes Lab of the (B, 3, P) piece rgb into out. Every intermediate lives in `work`, buffers
    allocated once per call: a fresh multi-MB tensor per piece costs page faults that, on a small
    machine, took longer than the arithmetic (2-3x slower overall, and erratic)."""
    index, lin, xyz, line = (buf[: rgb.numel()].view(rgb.shape) for buf in work)
    if rgb.dtype == torch.uint8:  # 8-bit: linearize by table lookup (int32 index_select: 3x lut[long])
        torch.index_select(lut, 0, index.copy_(rgb).view(-1), out=lin.view(-1))
    else:
        lin.copy_(_linearize(rgb.float()))
    torch.matmul(to_xyz, lin, out=xyz)  # to_xyz already divides by the reference white
    f = _cielab_f(xyz, line)
    # (L, a, b) = to_out @ (fx, fy, fz) + offset: one fused step, with any output scaling folded in
    torch.baddbmm(offset.expand(len(f), 3, 1), to_out.expand(len(f), 3, 3), f, out=out)


def _lab_to_linear(lab, from_xyz):
    """Lab -> linear RGB, unclipped (values outside [0, 1] are out of the sRGB gamut)."""
    lab = lab.float()
    fy = (lab[:, 0] + 16) / 116
    fx = lab[:, 1] / 500 + fy
    fz = (fy - lab[:, 2] / 200).clamp_min(0)  # skimage clips negative z to 0 the same way
    f = torch.stack((fx, fy, fz), dim=1)
    xyz = torch.where(f > 0.2068966, f.pow(3), (f - 16 / 116) / 7.787)
    return from_xyz @ xyz  # reference white folded in


def _lab_to_rgb_block(lab, from_xyz):
    lin = _lab_to_linear(lab, from_xyz)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(0.0031308).pow(1 / 2.4) - 0.055, 12.92 * lin)
    return rgb.clamp(0, 1)


def _encode_lut(device):
    """linear RGB quantized to 16 bits -> 8-bit sRGB, exact to rounding (2**16 entries, 64 KB)."""
    lin = torch.linspace(0, 1, 65536, dtype=torch.float64)
    srgb = torch.where(lin > 0.0031308, 1.055 * lin.pow(1 / 2.4) - 0.055, 12.92 * lin)
    return (srgb * 255).round().to(torch.uint8).to(device)


def _outside(lin, tol=1e-4):
    return ((lin < -tol) | (lin > 1 + tol)).any(-2)


def _shrink_chroma(px, from_xyz, steps):
    """For Lab pixels px (3, P) out of gamut: the largest scale s in [0, 1] (to 1/2**steps) such
    that (L*, s a*, s b*) is in gamut, by bisection; returns their linear RGB (3, P) at that s."""
    fy = (px[0] + 16) / 116
    da, db = px[1] / 500, -px[2] / 200  # fx = fy + s da, fz = fy + s db

    def linear(s):
        f = torch.stack((fy + s * da, fy, (fy + s * db).clamp_min(0)))
        return from_xyz @ torch.where(f > 0.2068966, f * f * f, (f - 16 / 116) / 7.787)

    lo, hi = torch.zeros_like(fy), torch.ones_like(fy)  # gray always fits; the full colour does not
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = ~_outside(linear(mid)) & (fy + mid * db >= 0)  # z clipping would change the colour
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return linear(lo)


def _lab_to_rgb8_block(lab, from_xyz, lut, steps=8):
    lab = lab.float()
    lin = _lab_to_linear(lab, from_xyz)
    # skimage's z clipping (b* too large for L*) is also out of gamut: it would change the colour
    bad = _outside(lin) | ((lab[:, 0] + 16) / 116 - lab[:, 2] / 200 < 0)
    if bad.any():  # shrink the chroma of those pixels: same L*, same hue
        lin.permute(0, 2, 1)[bad] = _shrink_chroma(lab.permute(1, 0, 2)[:, bad], from_xyz, steps).T
    return lut[(lin.clamp(0, 1) * 65535).round().long()]


def _rgb_to_l_block(rgb, lut, weights):
    lin = lut[rgb.long()] if rgb.dtype == torch.uint8 else _linearize(rgb.float())
    y = (weights[None, :, None] * lin).sum(1, keepdim=True)  # relative luminance Y (white = 1)
    return _cielab_f(y, torch.empty_like(y)).mul_(116).sub_(16)


def _linearize(rgb):
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)


def _to_lab(rgb, scale):
    _check(rgb, "rgb")
    # L = 116 fy - 16, a = 500 (fx - fy), b = 200 (fy - fz); each row divided by its output scale
    to_out = torch.tensor([[0, 116, 0], [500, -500, 0], [0, 200, -200]], dtype=torch.float64)
    offset = torch.tensor([[-16], [0], [0]], dtype=torch.float64)
    to_out, offset = (t.div(torch.tensor(scale, dtype=torch.float64)[:, None]) for t in (to_out, offset))
    to_xyz, lut = _consts(rgb.device)[0], _decode_lut(rgb.device)
    to_out, offset = to_out.to(rgb.device, torch.float32), offset.to(rgb.device, torch.float32)
    size = 3 * min(_chunk(rgb.device), rgb[0, 0].numel() * len(rgb))
    work = [torch.empty(size, dtype=dt, device=rgb.device) for dt in (torch.int32,) + (torch.float32,) * 3]
    return _chunked(_rgb_to_lab_block, rgb, to_xyz, lut, to_out, offset, work, into=True)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB, uint8 in [0, 255] or float in [0, 1] -> float32 Lab (L in [0, 100])."""
    return _to_lab(rgb, (1.0, 1.0, 1.0))


def ab_spread(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB -> (N,) the smaller of each photo's standard deviations of a* and b*, in
    Lab units: large only for a photo whose colours vary along both colour axes."""
    ab = rgb_to_lab(rgb)[:, 1:].flatten(2)
    return ab.std(dim=2).min(dim=1).values


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) Lab -> float32 sRGB in [0, 1]; out-of-gamut colours are clipped as skimage does."""
    _check(lab, "lab")
    return _chunked(_lab_to_rgb_block, lab, _consts(lab.device)[1])


def lab_to_rgb8(lab: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) Lab -> uint8 sRGB, showing colours outside the sRGB gamut at the same L* and hue.

    lab_to_rgb clips each RGB channel, as skimage does, which changes a colour's lightness (by tens
    of L* units for saturated dark or bright colours). Here only the chroma of such a colour shrinks
    (bisection, 8 steps) until it fits, so the image shows exactly the given lightness. In-gamut
    colours are converted as lab_to_rgb does. Made for full-resolution outputs: one pass, 8-bit out.
    """
    _check(lab, "lab")
    lut = _encode_lut(lab.device)
    return _chunked(_lab_to_rgb8_block, lab, _consts(lab.device)[1], lut, dtype=torch.uint8)


def _check(x, name):
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3, H, W), got {tuple(x.shape)}")


# --- the normalization: Lab units <-> the model's scale --------------------------------------------
# Every scaling by L_SCALE or AB_SCALE in the project is one of these functions.


def normalize_l(lightness: torch.Tensor) -> torch.Tensor:
    """L* in Lab units ([0, 100]) -> the model's input l = L* / 100 ([0, 1]); any shape."""
    return lightness / L_SCALE


def denormalize_l(l: torch.Tensor) -> torch.Tensor:
    """The model's l ([0, 1]) -> float32 L* in Lab units ([0, 100]); any shape."""
    return l.float() * L_SCALE


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """(a*, b*) in Lab units (~[-128, 127]) -> the model's ab = (a*, b*) / 128 (~[-1, 1]); any shape."""
    return ab / AB_SCALE


def denormalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """The model's ab (~[-1, 1]) -> float32 (a*, b*) in Lab units; any shape. Also turns a difference
    of normalized ab into one in Lab units (errors, thresholds in Lab units)."""
    return ab.float() * AB_SCALE


def normalize_ab_mse(mse):
    """A mean squared ab error in Lab units² -> the same error on the model's scale (normalized
    units², the scale of the training loss): divided by 128². A float or a tensor."""
    return mse / AB_SCALE**2


def zero_ab(l: torch.Tensor) -> torch.Tensor:
    """The model's ab of no colour (a* = b* = 0) for lightness l (N, 1, H, W): float32 zeros
    (N, 2, H, W) on l's device. What the gray baseline predicts and a gray picture shows."""
    return torch.zeros(l.shape[0], 2, *l.shape[2:], device=l.device)


def normalize(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab (N, 3, H, W) in Lab units -> (l (N, 1, H, W), ab (N, 2, H, W)) on the model's scale."""
    return normalize_l(lab[:, :1]), normalize_ab(lab[:, 1:])


def denormalize(l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(l (N, 1, H, W), ab (N, 2, H, W)) on the model's scale -> float32 Lab (N, 3, H, W) in Lab units."""
    return torch.cat((denormalize_l(l), denormalize_ab(ab)), dim=1)


# --- images <-> model tensors ------------------------------------------------------------------
# Images: uint8 sRGB (N, 3, H, W) or uint8 gray (N, 1, H, W) batches, and a photo's own lightness
# L* (N, 1, H, W) in Lab units at its full resolution. Model tensors: l and ab on the model's scale.


def rgb_to_model(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 sRGB batch (N, 3, H, W), e.g. straight from a loader -> (model input l (N, 1, H, W),
    target ab (N, 2, H, W)), float32 on rgb's device. The normalization is folded into the
    conversion's last step, which saves two passes over the batch (so l and ab may differ from
    normalize(rgb_to_lab(rgb)) in the last bit of a float32)."""
    out = _to_lab(rgb, (L_SCALE, AB_SCALE, AB_SCALE))
    return out[:, :1], out[:, 1:]


def model_to_rgb(l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(l (N, 1, H, W), ab (N, 2, H, W)) on the model's scale -> float32 sRGB in [0, 1], shape
    (N, 3, H, W); colours outside the sRGB gamut are clipped per channel (lab_to_rgb)."""
    return lab_to_rgb(denormalize(l, ab))


def image_to_lightness(image: torch.Tensor) -> torch.Tensor:
    """A photo's own lightness, at full resolution: uint8 gray (N, 1, H, W) (R = G = B), or sRGB
    (N, 3, H, W), uint8 or float in [0, 1] -> float32 L* (N, 1, H, W) in Lab units ([0, 100]).

    Lightness alone, for big photos: a third of rgb_to_lab's output memory, and 1.2-1.4x faster
    on a 12 MP photo (2 cores). A gray image takes a 256-entry table (exact, ~10x faster again).
    Agrees with rgb_to_lab's L* to ~1e-4. normalize_l gives the model's input l."""
    if image.ndim == 4 and image.shape[1] == 1 and image.dtype == torch.uint8:
        levels = torch.arange(256, dtype=torch.uint8).expand(1, 3, 256)[..., None]  # (1, 3, 256, 1)
        table = _rgb_to_lightness(levels.contiguous()).flatten().to(image.device)
        return table[image.long()]
    if image.ndim == 4 and image.shape[1] == 3:
        return _rgb_to_lightness(image)
    raise ValueError(
        f"image must have shape (N, 1, H, W) (uint8 gray) or (N, 3, H, W) (sRGB), got "
        f"{tuple(image.shape)} {image.dtype}"
    )


def _rgb_to_lightness(rgb):
    weights = _XYZ_FROM_RGB[1].to(rgb.device, torch.float32)
    return _chunked(_rgb_to_l_block, rgb, _decode_lut(rgb.device), weights, channels=1)


def lightness_ab_to_rgb8(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """A photo's own L* (N, 1, H, W) in Lab units with ab (N, 2, H, W) on the model's scale, of the
    same size -> uint8 sRGB (N, 3, H, W): colours outside the sRGB gamut keep their L* and hue
    (lab_to_rgb8). The full-resolution output of a colorizer: the photo's lightness as it is
    (never through l and back), the predicted colour upsampled to it."""
    return lab_to_rgb8(torch.cat((lightness, denormalize_ab(ab)), dim=1))


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 1] -> uint8 (rounded), for saving or showing."""
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
