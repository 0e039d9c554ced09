"""lib.lab against scikit-image (the reference it claims to match) and its own contracts."""

import importlib.resources
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from lib import lab

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png"]


def to_nchw(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(hwc)).permute(2, 0, 1)[None]


def to_hwc(nchw: torch.Tensor) -> np.ndarray:
    return nchw[0].permute(1, 2, 0).double().numpy()


def sk_lab2rgb(lab_hwc: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # out-of-gamut Lab: skimage warns about negative Z
        warnings.simplefilter("ignore", UserWarning)
        return lab2rgb(lab_hwc)


def colour_image() -> np.ndarray:
    """Random pixels plus black, white, the primaries/secondaries and a coarse RGB cube."""
    rng = np.random.default_rng(0)
    special = np.array(
        [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
        + [[255, 255, 0], [0, 255, 255], [255, 0, 255], [1, 1, 1], [10, 11, 10], [128, 128, 128]],
        dtype=np.uint8,
    )
    v = np.arange(0, 256, 5, dtype=np.uint8)
    cube = np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(-1, 3)
    noise = rng.integers(0, 256, (4096, 3), dtype=np.uint8)
    px = np.concatenate([special, cube, noise])
    px = np.concatenate([px, np.zeros(((-len(px)) % 128, 3), np.uint8)])
    return px.reshape(-1, 128, 3)


def load_photo(name: str) -> np.ndarray:
    with Image.open(importlib.resources.files("skimage.data") / name) as im:
        return np.array(im.convert("RGB"))


# --- rgb_to_lab -------------------------------------------------------------------------------


def test_rgb_to_lab_random_uint8_matches_skimage():
    img = colour_image()
    assert np.abs(to_hwc(lab.rgb_to_lab(to_nchw(img))) - rgb2lab(img)).max() <= 1e-3


def test_rgb_to_lab_random_float_matches_skimage():
    img = (colour_image() / 255.0).astype(np.float32)
    img[:7, :7] = np.random.default_rng(1).random((7, 7, 3), dtype=np.float32)  # off-grid values
    out = lab.rgb_to_lab(to_nchw(img))
    assert out.dtype == torch.float32
    assert np.abs(to_hwc(out) - rgb2lab(img.astype(np.float64))).max() <= 1e-3


def test_rgb_to_lab_known_points():
    # black is L=0, white is L=100: checks the scale, independently of skimage
    px = torch.tensor([[0, 0, 0], [255, 255, 255]], dtype=torch.uint8).T.reshape(1, 3, 1, 2)
    out = lab.rgb_to_lab(px)[0, :, 0]
    assert out[:, 0].abs().max() < 1e-4
    assert abs(out[0, 1].item() - 100) < 1e-3 and out[1:, 1].abs().max() < 0.02


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_to_lab_photos_uint8(name):
    img = load_photo(name)
    assert np.abs(to_hwc(lab.rgb_to_lab(to_nchw(img))) - rgb2lab(img)).max() <= 1e-3


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_to_lab_photos_float(name):
    img = (load_photo(name) / 255.0).astype(np.float32)
    ours = to_hwc(lab.rgb_to_lab(to_nchw(img)))
    assert np.abs(ours - rgb2lab(img.astype(np.float64))).max() <= 1e-3


def test_uint8_and_float_inputs_agree():
    img = colour_image()
    a = lab.rgb_to_lab(to_nchw(img))
    b = lab.rgb_to_lab(to_nchw(img).float() / 255)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


# --- lab_to_rgb -------------------------------------------------------------------------------


def random_lab(n: int, seed: int = 0) -> np.ndarray:
    """Lab values over the whole box L in [0, 100], a, b in [-128, 127]: many out of gamut."""
    rng = np.random.default_rng(seed)
    lo, hi = np.array([0, -128, -128]), np.array([100, 127, 127])
    corners = np.stack(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij"), -1).reshape(-1, 3)
    px = np.concatenate([corners, lo + rng.random((n - len(corners), 3)) * (hi - lo)])
    return px.astype(np.float32)


def test_lab_to_rgb_matches_skimage_out_of_gamut():
    px = random_lab(64 * 64).reshape(64, 64, 3)
    ours = to_hwc(lab.lab_to_rgb(to_nchw(px)))
    ref = sk_lab2rgb(px.astype(np.float64))
    assert ((ref == 0) | (ref == 1)).mean() > 0.1  # the test does exercise clipping
    assert np.abs(ours - ref).max() <= 1e-4
    assert ours.min() >= 0 and ours.max() <= 1


def test_lab_to_rgb_in_gamut_photo_matches_skimage():
    ref_lab = rgb2lab(load_photo("coffee.png")).astype(np.float32)
    ours = to_hwc(lab.lab_to_rgb(to_nchw(ref_lab)))
    assert np.abs(ours - sk_lab2rgb(ref_lab.astype(np.float64))).max() <= 1e-4


# --- chunking ---------------------------------------------------------------------------------


def test_batch_larger_than_chunk_equals_per_image():
    """Many small images: the 'several at a time' branch, with a partial last step."""
    rng = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (42, 3, 128, 128), dtype=torch.uint8, generator=rng)
    assert x.shape[0] * 128 * 128 > lab._CPU_CHUNK > 128 * 128
    assert x.shape[0] % (lab._CPU_CHUNK // (128 * 128)) != 0
    whole = lab.rgb_to_lab(x)
    pieces = torch.cat([lab.rgb_to_lab(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(whole, pieces, atol=1e-4, rtol=0)
    back = lab.lab_to_rgb(whole)
    back_pieces = torch.cat([lab.lab_to_rgb(whole[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(back, back_pieces, atol=1e-5, rtol=0)


def test_image_larger_than_chunk_equals_strips():
    """One big image: the 'walk along its pixels' branch, including a partial last piece."""
    rng = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 3, 800, 800), dtype=torch.uint8, generator=rng)
    assert 800 * 800 > lab._CPU_CHUNK and (800 * 800) % lab._CPU_CHUNK != 0
    whole = lab.rgb_to_lab(x)
    strips = torch.cat([lab.rgb_to_lab(x[:, :, r : r + 200]) for r in range(0, 800, 200)], dim=2)
    torch.testing.assert_close(whole, strips, atol=1e-4, rtol=0)
    ref = rgb2lab(x[1].permute(1, 2, 0).numpy())  # the second image too, against skimage
    assert np.abs(whole[1].permute(1, 2, 0).double().numpy() - ref).max() <= 1e-3
    labs = torch.from_numpy(random_lab(2 * 800 * 800, seed=2).reshape(2, 800, 800, 3))
    labs = labs.permute(0, 3, 1, 2)
    back = lab.lab_to_rgb(labs)
    back_strips = [lab.lab_to_rgb(labs[:, :, r : r + 200]) for r in range(0, 800, 200)]
    torch.testing.assert_close(back, torch.cat(back_strips, dim=2), atol=1e-5, rtol=0)


# --- the normalization ----------------------------------------------------------------------


def random_rgb(n=3, h=17, w=23, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g)


def test_normalize_denormalize_round_trip():
    labs = lab.rgb_to_lab(random_rgb())
    l, ab = lab.normalize(labs)  # noqa: E741
    assert l.shape == (3, 1, 17, 23) and ab.shape == (3, 2, 17, 23)
    torch.testing.assert_close(l, labs[:, :1] / 100)
    torch.testing.assert_close(ab, labs[:, 1:] / 128)
    torch.testing.assert_close(lab.denormalize(l, ab), labs, atol=1e-5, rtol=0)


def test_rgb_to_model_ranges_and_scale():
    x = torch.cat([random_rgb(), torch.zeros(1, 3, 17, 23, dtype=torch.uint8)])
    x[-1, :, 0, 0] = 255  # a white pixel: l must reach (about) 1
    l, ab = lab.rgb_to_model(x)  # noqa: E741
    assert l.shape == (4, 1, 17, 23) and ab.shape == (4, 2, 17, 23)
    assert l.min() >= 0 and l.max() <= 1 + 1e-6
    assert l.max() > 1 - 1e-4 and l[-1, 0, 1, 1] == 0
    torch.testing.assert_close(ab, lab.rgb_to_lab(x)[:, 1:] / 128)
    assert ab.abs().max() <= 1


def test_model_to_rgb_inverts_rgb_to_model():
    x = torch.rand(2, 3, 31, 19, generator=torch.Generator().manual_seed(3))
    back = lab.model_to_rgb(*lab.rgb_to_model(x))
    assert back.shape == x.shape and back.dtype == torch.float32
    assert (back - x).abs().max() <= 1e-4
    u = random_rgb()
    assert (lab.model_to_rgb(*lab.rgb_to_model(u)) - u / 255).abs().max() <= 1e-4


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 4, 8, 8), (1, 1, 8, 8), (8, 8), (1, 8, 8, 3)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match="shape"):
        lab.rgb_to_lab(torch.zeros(shape, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        lab.lab_to_rgb(torch.zeros(shape))


def test_model_to_rgb_bad_channels_raise():
    with pytest.raises(ValueError):
        lab.model_to_rgb(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError):
        lab.model_to_rgb(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_each_part_of_the_normalization_is_its_own_scale():
    """normalize_l / normalize_ab and their inverses are exactly the documented scales (L*/100,
    (a*, b*)/128), normalize and denormalize are made of them, and an ab MSE in Lab units² goes
    to the training loss's scale: the MSE of the normalized values."""
    labs = lab.rgb_to_lab(random_rgb(seed=5))
    L, ab_units = labs[:, :1], labs[:, 1:]
    assert torch.equal(lab.normalize_l(L), L / 100)
    assert torch.equal(lab.normalize_ab(ab_units), ab_units / 128)
    l, ab = lab.normalize(labs)  # noqa: E741
    assert torch.equal(l, lab.normalize_l(L)) and torch.equal(ab, lab.normalize_ab(ab_units))
    assert torch.equal(lab.denormalize_l(l), l * 100) and torch.equal(lab.denormalize_ab(ab), ab * 128)
    assert torch.equal(lab.denormalize(l, ab), torch.cat((l * 100, ab * 128), 1))
    assert lab.denormalize_ab(ab.half()).dtype == torch.float32
    other = lab.rgb_to_lab(random_rgb(seed=6))[:, 1:]
    mse_units = (ab_units - other).pow(2).mean()
    mse_model = (lab.normalize_ab(ab_units) - lab.normalize_ab(other)).pow(2).mean()
    torch.testing.assert_close(lab.normalize_ab_mse(mse_units), mse_model)
    assert lab.normalize_ab_mse(128.0**2) == 1.0


def test_zero_ab_is_gray():
    """zero_ab: the ab of no colour, shaped for l; with any lightness it shows R = G = B."""
    l, _ = lab.rgb_to_model(random_rgb(seed=7))  # noqa: E741
    zero = lab.zero_ab(l)
    assert zero.shape == (3, 2, 17, 23) and zero.dtype == torch.float32 and not zero.any()
    rgb = lab.to_uint8(lab.model_to_rgb(l, zero))
    assert (rgb.int() - rgb[:, :1].int()).abs().max() <= 1  # gray, to rounding


def test_image_to_lightness_matches_rgb_to_lab():
    """A photo's lightness alone, from uint8 or float sRGB or from uint8 gray (by its table), is
    rgb_to_lab's L*, in Lab units, at the image's own size."""
    rgb = torch.randint(0, 256, (2, 3, 50, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    L = lab.rgb_to_lab(rgb)[:, :1]
    out = lab.image_to_lightness(rgb)
    assert out.shape == (2, 1, 50, 70) and out.dtype == torch.float32
    assert torch.allclose(out, L, atol=1e-3)
    assert torch.allclose(lab.image_to_lightness(rgb.float() / 255), L, atol=1e-3)
    gray = rgb[:, :1]
    gray_as_rgb = gray.expand(-1, 3, -1, -1)
    assert torch.allclose(lab.image_to_lightness(gray), lab.rgb_to_lab(gray_as_rgb)[:, :1], atol=1e-3)
    # the gray table is exact: the very values the sRGB path gives for R = G = B
    assert torch.equal(lab.image_to_lightness(gray), lab.image_to_lightness(gray_as_rgb))
    levels = lab.image_to_lightness(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2))
    torch.testing.assert_close(levels.flatten(), torch.tensor([0.0, 100.0]), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "image", [torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4, dtype=torch.uint8), torch.zeros(3, 4, 4)]
)
def test_image_to_lightness_refuses_what_is_not_a_gray_or_rgb_batch(image):
    with pytest.raises(ValueError, match="shape"):
        lab.image_to_lightness(image)


def test_lightness_ab_to_rgb8_keeps_the_photos_own_lightness():
    """A full-resolution L* with normalized ab is the uint8 photo of that Lab (lab_to_rgb8, bit for
    bit), and its lightness is the given L* even where the colour is outside the sRGB gamut."""
    g = torch.Generator().manual_seed(8)
    L = torch.rand(2, 1, 40, 30, generator=g) * 100
    ab = (torch.rand(2, 2, 40, 30, generator=g) - 0.5) * 2  # up to |a*|, |b*| = 128: many out of gamut
    rgb8 = lab.lightness_ab_to_rgb8(L, ab)
    assert rgb8.dtype == torch.uint8 and rgb8.shape == (2, 3, 40, 30)
    assert torch.equal(rgb8, lab.lab_to_rgb8(torch.cat((L, ab * 128), 1)))
    assert (lab.rgb_to_lab(rgb8)[:, :1] - L).abs().max() <= 1.0  # 8-bit rounding only
    gray = lab.lightness_ab_to_rgb8(L, lab.zero_ab(L))
    assert (gray.int() - gray[:, :1].int()).abs().max() <= 1


# --- to_uint8 ---------------------------------------------------------------------------------


def test_to_uint8_rounds_and_clamps():
    k = torch.arange(256, dtype=torch.float64)
    assert torch.equal(lab.to_uint8(k / 255), k.to(torch.uint8))
    assert torch.equal(lab.to_uint8((k + 0.3) / 255), k.to(torch.uint8))  # rounds down
    up = lab.to_uint8((k[:-1] + 0.7) / 255)
    assert torch.equal(up, (k[:-1] + 1).to(torch.uint8))  # rounds up, not truncates
    out = lab.to_uint8(torch.tensor([-0.5, -1e-6, 1 + 1e-6, 7.0]))
    assert out.dtype == torch.uint8 and out.tolist() == [0, 0, 255, 255]


def test_to_uint8_round_trip_through_lab():
    u = random_rgb(seed=4)
    assert torch.equal(lab.to_uint8(lab.lab_to_rgb(lab.rgb_to_lab(u))), u)
