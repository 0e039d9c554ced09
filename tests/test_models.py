"""The three models: faithful parameter counts, shapes, and the details that make them what they are."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from lib.models import HEADS, MODELS, EditedCNN, OriginalCNN, ResNet18Colorizer, build_model, count_parameters

NAMES = list(MODELS)  # every registered network: a new one is tested as soon as it is registered


def test_parameter_counts_match_the_original():
    assert count_parameters(build_model("original_cnn")) == 3_892_194  # printed by model.summary()
    assert count_parameters(build_model("resnet18")) == 954_722  # Melas' ColorizationNet


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [64, 128, 224, 256, 72])
def test_normalized_l_in_normalized_ab_out_at_input_size(name, size):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        ab = model(torch.rand(2, 1, size, size))
    assert ab.shape == (2, 2, size, size)
    assert torch.isfinite(ab).all()


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        build_model("unet")


def test_original_cnn_tanh_before_the_last_nearest_upsampling_gives_2x2_blocks():
    model = OriginalCNN().eval()
    assert isinstance(model.head.layers[-2], nn.Tanh) and isinstance(model.head.layers[-1], nn.Upsample)
    with torch.no_grad():
        ab = model(torch.rand(1, 1, 64, 64))
    assert ab.abs().max() <= 1
    blocks = ab.unfold(2, 2, 2).unfold(3, 2, 2)  # every 2x2 block holds one value
    assert torch.equal(blocks.amax((-1, -2)), blocks.amin((-1, -2)))


def test_original_cnn_sees_l_unscaled_as_keras_did():
    """The original fed L* unscaled (0-100): the network's body sees the normalized input x 100."""
    torch.manual_seed(1)
    model = OriginalCNN().eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model.head(model.net(x * 100), x.shape[-2:]))
        assert not torch.allclose(model(x), model.head(model.net(x), x.shape[-2:]))


def test_original_cnn_uses_keras_initialisation():
    model = OriginalCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 12
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs)
    w = convs[6].weight  # 256 -> 512: Glorot bound sqrt(6 / (fan_in + fan_out))
    bound = (6 / (256 * 9 + 512 * 9)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_edited_cnn_changes():
    model = EditedCNN().eval()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 11
    assert isinstance(model.head.layers[-1], nn.Tanh) and model.head.layers[-2].mode == "bilinear"
    with torch.no_grad():
        ab = model(torch.rand(1, 1, 64, 64))
    assert ab.abs().max() <= 1
    blocks = ab.unfold(2, 2, 2).unfold(3, 2, 2)
    assert not torch.equal(blocks.amax((-1, -2)), blocks.amin((-1, -2)))  # smooth, not blocky


def test_resnet18_first_conv_is_the_rgb_conv_summed_to_one_channel():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=365)
    torch.manual_seed(0)
    model = ResNet18Colorizer()
    assert model.encoder[0].weight.shape == (64, 1, 7, 7)
    assert torch.allclose(model.encoder[0].weight, reference.conv1.weight.sum(1, keepdim=True))
    # the first six children of resnet18: conv1, bn1, relu, maxpool, layer1, layer2
    assert [type(m).__name__ for m in model.encoder] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Sequential", "Sequential"
    ]  # fmt: skip


def test_pretrained_weights_fail_with_a_clear_message_when_they_cannot_be_had(tmp_path, monkeypatch):
    """Offline (and on CI) the download fails: the error says what to do instead of a traceback."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # A corrupt file where the download would land: torch.hub uses it instead of the network.
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    target = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="could not get torchvision's pretrained ResNet-18"):
        build_model("resnet18", pretrained=True)


def test_the_working_shape_keeps_the_aspect_ratio_in_multiples_of_8():
    from lib.shapes import working_shape

    assert working_shape(1600, 2560, 176) == (176, 280)  # a 16:10 landscape
    assert working_shape(2560, 1600, 176) == (280, 176)
    assert working_shape(256, 256, 176) == (176, 176)
    assert working_shape(30, 480, 64) == (64, 1024) and working_shape(5, 5, 8) == (8, 8)


def test_the_working_shape_is_refused_beyond_the_documented_limits():
    """A photo is seen at most 16 times longer than wide and at most 2048² pixels, whatever the
    working size (8 to 2048 px): beyond, UnworkableShape, whose str is the reason a command skips
    it with. A working size out of range is the caller's error, a plain ValueError."""
    from lib.shapes import (
        MAX_WORKING_ASPECT,
        MAX_WORKING_PIXELS,
        MAX_WORKING_SIZE,
        MIN_WORKING_SIZE,
        UnworkableShape,
        working_shape,
    )

    assert (MIN_WORKING_SIZE, MAX_WORKING_SIZE, MAX_WORKING_ASPECT) == (8, 2048, 16)
    assert MAX_WORKING_PIXELS == MAX_WORKING_SIZE**2  # every square photo fits at every working size
    assert working_shape(100, 1600, 128) == (128, 2048) and working_shape(1600, 100, 128) == (2048, 128)
    assert working_shape(5000, 5000, MAX_WORKING_SIZE) == (2048, 2048)
    assert working_shape(1, 1, 2047) == (2048, 2048)  # rounded to the stride, still within the cap
    with pytest.raises(UnworkableShape, match=r"^too elongated for the model: 3000x4 is 750:1, over 16:1"):
        working_shape(4, 3000, 128)
    with pytest.raises(UnworkableShape, match=r"^too elongated for the model: 100x1700 is 17:1"):
        working_shape(1700, 100, 8)  # at any working size
    with pytest.raises(
        UnworkableShape, match=r"^too large for the model: seen at 5120x1024 = 5,242,880 pixels"
    ):
        working_shape(100, 500, 1024)  # 5:1 fits at 128 px, not at 1024
    assert working_shape(100, 500, 128) == (128, 640)
    with pytest.raises(UnworkableShape, match=r"^too large for the model: seen at 4096x2048 = 8,388,608"):
        working_shape(1000, 2000, 2048)
    for size in (MIN_WORKING_SIZE - 1, MAX_WORKING_SIZE + 1, 0, 10**6):
        with pytest.raises(ValueError, match=r"working size .* from 8 to 2048") as refused:
            working_shape(100, 100, size)
        assert not isinstance(refused.value, UnworkableShape)


def test_an_inference_refuses_a_working_size_out_of_range():
    from lib.checkpoints import Inference

    model = build_model("resnet18")
    assert Inference(model, working_size=2048).replace(working_size=8).working_size == 8
    for size in (7, 2049, 100_000):
        with pytest.raises(ValueError, match="working size"):
            Inference(model, working_size=size)
        with pytest.raises(ValueError, match="working size"):
            Inference(model).replace(working_size=size)


def test_a_colorizer_sees_the_working_shape_and_answers_at_the_input_size():
    from lib.checkpoints import Inference

    torch.manual_seed(0)
    model = build_model("resnet18", head="classification")
    seen = []
    model.encoder.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    ab = Inference(model, working_size=40).predict_ab(torch.rand(2, 1, 100, 160))
    assert ab.shape == (2, 2, 100, 160) and seen == [(40, 64)]
    at_own_size = Inference(model)  # a checkpoint that records no working size: the photo's own
    assert at_own_size.predict_ab(torch.rand(1, 1, 100, 160)).shape == (1, 2, 100, 160)
    assert seen[-1] == (100, 160)
    assert at_own_size.replace(working_size=48).shape(100, 160) == (48, 80)
    with pytest.raises(ValueError, match="classification head"):
        Inference(build_model("resnet18")).predict_ab(torch.rand(1, 1, 32, 32), vividness=0.5)


def test_vividness_runs_from_the_plain_mean_to_zhangs_rebalanced_annealed_mean():
    from lib import classes

    assert classes.vividness_setting(0) == (1.0, 1.0)  # T = 1, no rebalancing
    assert classes.vividness_setting(1) == pytest.approx((classes.TEMPERATURE, classes.VIVID_LAMBDA))
    settings = [classes.vividness_setting(v / 10) for v in range(11)]
    assert settings == sorted(settings, reverse=True)  # both fall as vividness rises
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 \\(faithful\\) and 1 \\(vivid\\)"):
            classes.vividness_setting(bad)


def test_a_vividness_setting_rebalances_from_how_the_model_was_trained():
    """Logits + log(wanted weights / trained weights): a model trained with lambda = 0.5 at
    vividness 0 is read as if trained without rebalancing; one trained with lambda = 1 is read as
    it is."""
    from lib import classes

    torch.manual_seed(0)
    prior = torch.distributions.Dirichlet(torch.ones(len(classes.ab_bins()))).sample().double()
    logits = torch.randn(2, len(prior), 4, 4)
    flat = ResNet18Colorizer(head="classification", rebalance=1.0)
    with pytest.raises(ValueError, match="colour prior"):
        flat.head.to_ab(logits, vividness=0)
    flat.head.set_prior(prior)
    bins = classes.ab_bins()
    expect = classes.annealed_mean(logits, bins, 1.0)
    torch.testing.assert_close(
        flat.head.to_ab(logits, (4, 4), vividness=0), nn.functional.interpolate(expect, (4, 4))
    )
    rebalanced = ResNet18Colorizer(head="classification")  # lambda 0.5
    rebalanced.head.set_prior(prior)
    w = classes.rebalancing_weights(prior, 0.5).float()
    undone = classes.annealed_mean(logits - torch.log(w)[None, :, None, None], bins, 1.0)
    torch.testing.assert_close(rebalanced.head.to_ab(logits, (4, 4), vividness=0), undone)
    t, lam = classes.vividness_setting(1)
    redone = logits + torch.log(classes.rebalancing_weights(prior, lam).float() / w)[None, :, None, None]
    torch.testing.assert_close(
        rebalanced.head.to_ab(logits, (4, 4), vividness=1), classes.annealed_mean(redone, bins, t)
    )


def test_more_soft_encoding_neighbours_change_the_loss_not_the_network():
    torch.manual_seed(0)
    five = ResNet18Colorizer(head="classification")
    torch.manual_seed(0)
    ten = ResNet18Colorizer(head="classification", neighbours=10)
    l, ab = torch.rand(2, 1, 32, 32), (torch.rand(2, 2, 32, 32) - 0.5) * 0.6
    with torch.no_grad():
        out = five(l)
        assert torch.equal(out, ten(l))
        assert five.head.loss(out, ab, l) != ten.head.loss(out, ab, l)
    with pytest.raises(ValueError, match="neighbours needs head='classification'"):
        ResNet18Colorizer(neighbours=10)


# The last layer of each network before the heads were parts (the shipped reference model is a
# resnet18 classifier of that layout): its weights were the body's container's entry at this index.
OLD_LAST_LAYER = {"original_cnn": "net.24.", "edited_cnn": "net.35.", "resnet18": "decoder.14."}


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("name", OLD_LAST_LAYER)
def test_checkpoints_of_the_old_layout_load_into_the_heads(name, head):
    from lib.models import upgrade_state_dict

    torch.manual_seed(0)
    model = build_model(name, head=head)
    new = model.state_dict()
    old = {}
    for key, value in new.items():  # the same weights under the keys the old code wrote
        key = key.replace("head.layers.0.", OLD_LAST_LAYER[name]).replace(
            "head.class_weights", "class_weights"
        )
        old[key] = value
    assert not any(k.startswith("head.") for k in old)
    fresh = build_model(name, head=head)
    fresh.load_state_dict(upgrade_state_dict(fresh, old))  # strict: every key found, none left over
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in new.items())
    assert upgrade_state_dict(fresh, new) is new  # today's keys pass unchanged


@pytest.mark.parametrize("name", NAMES)
def test_every_network_takes_either_head(name):
    torch.manual_seed(0)
    l, ab = torch.rand(2, 1, 32, 32), (torch.rand(2, 2, 32, 32) - 0.5) * 0.5
    for kind in HEADS:  # every registered head, a new one too
        model = build_model(name, head=kind)
        out = model(l)
        assert model.head.kind == kind and model.head.to_ab(out, (32, 32)).shape == (2, 2, 32, 32)
        loss = model.head.loss(out, ab, l)
        loss.backward()  # the head's loss reaches the body's first layer
        first = next(p for p in model.parameters() if p.grad is not None)
        assert torch.isfinite(loss) and first.grad.abs().sum() > 0


def test_inference_runs_in_float32_whatever_the_callers_autocast():
    """One precision policy for every inference path (sample grids, metrics, colorize): even
    inside a bfloat16 autocast (as training's validation uses), a Inference computes in float32."""
    from lib.checkpoints import Inference

    torch.manual_seed(0)
    model, l = build_model("resnet18", head="classification").eval(), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        plain = Inference(model).predict_ab(l)
        with torch.autocast("cpu", torch.bfloat16):
            inside = Inference(model).predict_ab(l)
            assert model(l).dtype == torch.bfloat16  # the context is really on
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)


def test_the_pretrained_encoder_comes_from_torchvisions_cache_offline(tmp_path, monkeypatch):
    """pretrained=True reads torchvision's ImageNet weights where torchvision keeps them
    (TORCH_HOME/hub/checkpoints/); a state dict placed there is used, with conv1 summed over RGB."""
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # no network: fail at once, not hang
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="pretrained ResNet-18 weights") as e:
        ResNet18Colorizer(pretrained=True)
    assert "\n" not in str(e.value) and "checkpoints" in str(e.value)
    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18()  # stands in for the published file
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)  # the failed download made it
    torch.save(imagenet.state_dict(), cache / Path(weights.url).name)
    model = ResNet18Colorizer(pretrained=True)
    summed = imagenet.conv1.weight.detach().sum(dim=1, keepdim=True)
    assert torch.equal(model.encoder.conv1.weight.detach(), summed)
    assert torch.equal(model.encoder.layer2[0].conv1.weight, imagenet.layer2[0].conv1.weight)
