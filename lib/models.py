"""The three colorizers, by name (`build_model("original_cnn" | "edited_cnn" | "resnet18")`), and
their two heads.

Every model takes the normalized lightness l = L/100, shape (N, 1, H, W), and is a body (its own
layers, up to 32 channels at half the input's size) followed by `model.head`, a Head (HEADS):
  RegressionHead      predicts normalized ab = (a, b)/128, shape (N, 2, H, W), at the input size
                      (see lib/lab.py); its loss is the MSE. Every model's default, with the
                      network's own last layers (the original's tanh and upsampling kept).
  ClassificationHead  predicts logits over the ab bins of lib/classes.py at half the input's size
                      (Zhang et al. 2016); its loss is the rebalanced cross-entropy.
So that no code need tell them apart, every head has `kind` (its name in HEADS),
`to_ab(output, size, vividness)` (the model's output -> ab at `size`), `loss(output, ab, l)` and
capabilities that callers ask instead of its name (Head). Any network takes any head:
`build_model(name, head="classification", rebalance=..., ...)`.

A new network is one class here, registered in MODELS; a new head is one subclass of Head, which
registers itself (README, "Train, score, and add a model").
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lib import classes


def _match_size(ab, size):
    """Sizes that are not multiples of 8 lose pixels on the way down; put them back."""
    if ab.shape[-2:] != tuple(size):
        ab = F.interpolate(ab, size=tuple(size), mode="bilinear", align_corners=False)
    return ab


# The heads, by name: a head registers itself by subclassing Head with its name (the `kind` that
# checkpoints record and --head chooses), so a new head is one class here and nothing else.
HEADS: dict[str, type["Head"]] = {}
DEFAULT_HEAD = "regression"  # every network's own: a model without a "head" option has this one


class Head(nn.Module):
    """What every head shares: built from the body's `features` channels and the network's own
    last layers (`own_layers()`, a list of modules, which only a head that uses them calls, so a
    head's random initial weights never depend on layers it does not have), plus its `options`.

    forward(features, size): the raw output (ab, or logits). to_ab(output, size, vividness): that
    output as normalized ab (N, 2, H, W) at `size`. loss(output, ab, l): the training loss for
    normalized target ab and the lightness l the model saw. Capabilities, which callers ask instead
    of the head's name: `takes_vividness` (to_ab takes a vividness setting) and `uses_prior` (the
    head needs the training photos' colour prior: set_prior, before the first epoch)."""

    kind: str
    options: tuple[str, ...] = ()  # the constructor's keyword options, by name
    takes_vividness = False
    uses_prior = False

    def __init_subclass__(cls, kind: str, **kw):
        super().__init_subclass__(**kw)
        cls.kind = kind
        HEADS[kind] = cls

    @classmethod
    def note(cls, options: dict) -> str:
        """What a model's name adds for this head's options (label, display_name): "" by default."""
        return ""

    def misfit(self, ckpt: dict) -> str | None:
        """What of a checkpoint (lib.checkpoints) this head cannot use, or None."""
        if ckpt.get("vividness") is not None and not self.takes_vividness:
            return f"'vividness' is set, which needs a {_vivid_heads()} head"
        return None


class RegressionHead(Head, kind="regression"):
    """Predict ab directly: the network's own last layers (to 2 channels, and its upsampling),
    brought to the input's size; the loss is the MSE on normalized ab."""

    def __init__(self, features: int, own_layers):
        super().__init__()
        self.layers = nn.Sequential(*own_layers())

    def forward(self, features, size):
        return _match_size(self.layers(features), size)

    def to_ab(self, output, size=None, vividness=None):
        if vividness is not None:
            raise ValueError(f"a vividness setting needs a model with the {_vivid_heads()} head")
        return output

    def loss(self, output, ab, l):  # noqa: E741
        return F.mse_loss(output, ab)


class ClassificationHead(Head, kind="classification"):
    """Predict a distribution over the Q ab bins of lib/classes.py (Zhang et al. 2016): a 1x1
    conv from the body's features to Q logits, at the features' size (half the input's: at full
    size, Q = 261 channels would take 4x the memory).

    `to_ab` turns logits into ab (annealed mean, then bilinear upsampling), and `loss` is the
    rebalanced cross-entropy with the weights in the buffer `class_weights` (ones until
    `set_prior`; saved in checkpoints). The bin centres are recomputed, not saved. `rebalance`
    is Zhang's lambda, the rebalancing's mix of prior and uniform: 0.5 as the paper; 1 turns
    rebalancing off (every colour counts the same). `neighbours` is the number of bins that
    share a pixel's soft target (the paper's 5; Zhang's code uses 10). `prior` is the training
    photos' colour prior (Q,), which vividness settings need (set_prior, or checkpoints.load).
    """

    options = ("rebalance", "neighbours")
    takes_vividness = True
    uses_prior = True

    def __init__(self, features: int, own_layers, rebalance=classes.LAMBDA, neighbours=classes.NEIGHBOURS):
        super().__init__()
        if not 0 < rebalance <= 1:
            raise ValueError(f"rebalance (lambda) must be in (0, 1], got {rebalance}")
        if not 1 <= neighbours <= 32:
            raise ValueError(f"neighbours must be in 1..32, got {neighbours}")
        self.rebalance, self.neighbours = rebalance, neighbours
        bins = classes.ab_bins()
        self.layers = nn.Sequential(nn.Conv2d(features, len(bins), 1))
        self.register_buffer("bins", bins, persistent=False)
        self.register_buffer("class_weights", torch.ones(len(bins)))
        self.prior = None

    @classmethod
    def note(cls, options: dict) -> str:
        lam = options.get("rebalance", classes.LAMBDA)
        return "" if lam == classes.LAMBDA else f", λ={lam:g}"

    def forward(self, features, size):
        return self.layers(features)

    def to_ab(self, output, size=None, vividness=None):
        """Logits -> ab (N, 2, H, W): the annealed mean upsampled (bilinear) to `size`, by default
        twice the logits' size (the input's for sizes that are multiples of 8). vividness (0 to
        1, classes.vividness_setting) sets the temperature and rebalances the predicted
        distribution from the colour prior; None: the annealed mean at T = 0.38 of the
        distribution as trained."""
        t = classes.TEMPERATURE
        if vividness is not None:
            if self.prior is None:
                raise ValueError(
                    "this model has no colour prior (set_prior), which a vividness setting needs"
                )
            t, lam = classes.vividness_setting(vividness)
            wanted = classes.rebalancing_weights(self.prior.to(output.device, torch.float64), lam)
            shift = torch.log(wanted).float() - torch.log(self.class_weights.float())
            output = output.float() + shift[None, :, None, None]
        ab = classes.annealed_mean(output, self.bins, t)
        size = tuple(size) if size is not None else tuple(2 * s for s in output.shape[-2:])
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)

    def loss(self, output, ab, l):  # noqa: E741
        return classes.class_loss(output, ab, self.bins, self.class_weights, k=self.neighbours)

    def set_prior(self, prior, weights: bool = True):
        """Keep the training set's colour prior (classes.ab_prior) and, with weights=True, set the
        rebalancing weights from it (checkpoints.load keeps the weights it loaded)."""
        self.prior = torch.as_tensor(prior, dtype=torch.float64).cpu()
        if weights:
            self.class_weights.copy_(classes.rebalancing_weights(self.prior, self.rebalance))

    def misfit(self, ckpt: dict) -> str | None:
        """What of a checkpoint this head cannot use, or None: its colour prior must have one
        probability per bin, and a default vividness needs one."""
        prior = ckpt.get("ab_prior")
        if prior is not None and len(prior) != len(self.bins):
            return f"'ab_prior' has {len(prior)} values, one per colour bin would be {len(self.bins)}"
        if prior is None and ckpt.get("vividness") is not None:
            return "'vividness' is set without the 'ab_prior' that a vividness setting needs"
        return None


def _vivid_heads() -> str:
    return " or ".join(k for k, h in HEADS.items() if h.takes_vividness)


def head_class(kind: str, options) -> type[Head]:
    """The head registered as `kind` (HEADS), if it takes every option named in `options`.
    ValueError, one line, for an unknown head or an option it does not take."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(map(repr, HEADS))}")
    unknown = sorted(set(options) - set(HEADS[kind].options))
    if unknown:
        takes = [k for k, h in HEADS.items() if set(unknown) <= set(h.options)]
        if takes:
            raise ValueError(f"{', '.join(unknown)} needs head={takes[0]!r}")
        raise ValueError(f"{', '.join(unknown)}: not an option of the {kind!r} head")
    return HEADS[kind]


def make_head(kind: str, own_layers, features: int = 32, **options) -> Head:
    """A network's head by name (head_class), from the body's `features` channels and the
    network's own last layers (`own_layers()`, see Head), with the head's `options`."""
    return head_class(kind, options)(features, own_layers, **options)


class Colorizer(nn.Module):
    """What every network shares: forward(l) = head(body(l), l's size). A subclass sets
    `self.head` (make_head) and defines `features(l)`, its body: (N, 1, H, W) normalized
    lightness -> (N, 32, H/2, W/2)."""

    def forward(self, l):  # noqa: E741
        return self.head(self.features(l), l.shape[-2:])


class OriginalCNN(Colorizer):
    """The original notebook's Keras network (Emil Wallner's "beta" colorizer), ported faithfully.

    15 layers, 3,892,194 parameters: eight 3x3 ReLU convolutions down to 1/8 resolution (three with
    stride 2), three 3x3 convolutions with x2 nearest upsampling in between, a 2-channel tanh
    output, and a last x2 nearest upsampling, so predicted ab come in 2x2 blocks.

    Faithful details: Keras' Glorot-uniform weights and zero biases; and the normalized input is
    multiplied back by 100, because the original fed L unscaled (0-100) while its targets were
    ab/128. (Keras pads stride-2 convolutions on the bottom/right only; PyTorch pads both sides. The
    output sizes are the same; the features shift by half a pixel.)
    """

    def __init__(self, head: str = DEFAULT_HEAD, **head_options):
        super().__init__()

        def conv(cin, cout, stride=1):
            return [nn.Conv2d(cin, cout, 3, stride, padding=1), nn.ReLU()]

        up = nn.Upsample(scale_factor=2, mode="nearest")
        self.net = nn.Sequential(
            *conv(1, 64),
            *conv(64, 64, 2),
            *conv(64, 128),
            *conv(128, 128, 2),
            *conv(128, 256),
            *conv(256, 256, 2),
            *conv(256, 512),
            *conv(512, 256),
            *conv(256, 128),
            up,
            *conv(128, 64),
            up,
            *conv(64, 32),
        )
        self.head = make_head(head, lambda: [nn.Conv2d(32, 2, 3, padding=1), nn.Tanh(), up], **head_options)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, l):  # noqa: E741
        return self.net(l * 100.0)  # the original fed L* unscaled


class EditedCNN(Colorizer):
    """What the original "optimization" meant to do, done properly, on the same CNN.

    The original EditedCNN divided *RGB* channels by 100 and 128 and never converted to Lab; its
    1e-10 loss measured nothing (see notebooks and README). Here:
      * the input is properly scaled Lab lightness (L/100, in [0, 1]), not raw 0-100 L: inputs of
        order 1 keep the first layers' activations and gradients in a sane range;
      * Lab is computed once per batch on the training device (lib.lab.rgb_to_model), not per image
        in numpy on the CPU; the data is never held in RAM as float64;
      * BatchNorm after every hidden convolution (its bias replaces the conv bias): the 15-layer
        stack then trains at Adam's 1e-3 without stalling at the "predict brown" plateau as quickly;
      * bilinear instead of nearest upsampling, and the tanh output *after* the last upsampling, so
        predicted colours are smooth instead of 2x2 blocks;
      * PyTorch's default (Kaiming-uniform) initialisation, which suits ReLU layers.
    Same widths and depth as OriginalCNN, so the comparison is about these changes alone.
    """

    def __init__(self, head: str = DEFAULT_HEAD, **head_options):
        super().__init__()

        def conv(cin, cout, stride=1):
            return [nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.net = nn.Sequential(
            *conv(1, 64),
            *conv(64, 64, 2),
            *conv(64, 128),
            *conv(128, 128, 2),
            *conv(128, 256),
            *conv(256, 256, 2),
            *conv(256, 512),
            *conv(512, 256),
            *conv(256, 128),
            up,
            *conv(128, 64),
            up,
            *conv(64, 32),
        )
        self.head = make_head(head, lambda: [nn.Conv2d(32, 2, 3, padding=1), up, nn.Tanh()], **head_options)

    def features(self, l):  # noqa: E741
        return self.net(l)


class ResNet18Colorizer(Colorizer):
    """Luke Melas-Kyriazi's ColorizationNet, as the original ResNet notebook used it.

    Encoder: torchvision resnet18 (random init by default, as in the original), conv1's weights
    summed over RGB into one input channel, then its first six children (conv1, bn1, relu, maxpool,
    layer1, layer2): 128 channels at 1/8 resolution. Decoder: Conv-BN-ReLU blocks with two x2
    nearest upsamplings, to 32 channels at 1/2 resolution; the regression head is a linear
    3x3 conv to 2 channels and a last x2 nearest upsampling. 954,722 parameters (with the
    classification head, 962,757: notebook 5).

    `pretrained=True` starts the encoder from torchvision's ImageNet weights (a download).
    """

    def __init__(self, pretrained: bool = False, head: str = DEFAULT_HEAD, **head_options):
        super().__init__()
        self.pretrained = pretrained
        if pretrained:
            resnet = _pretrained_resnet18()
        else:
            resnet = torchvision.models.resnet18(num_classes=365)  # as the original; fc is dropped
        conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        conv1.weight.data = resnet.conv1.weight.data.sum(dim=1, keepdim=True)
        resnet.conv1 = conv1
        # conv1, bn1, relu, maxpool, layer1, layer2 (named, so tables and state dicts read well)
        self.encoder = nn.Sequential(OrderedDict(list(resnet.named_children())[0:6]))

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.decoder = nn.Sequential(
            *block(128, 128),
            nn.Upsample(scale_factor=2),
            *block(128, 64),
            *block(64, 64),
            nn.Upsample(scale_factor=2),
            *block(64, 32),
        )

        def regression():
            return [nn.Conv2d(32, 2, 3, padding=1), nn.Upsample(scale_factor=2)]

        self.head = make_head(head, regression, **head_options)

    def features(self, l):  # noqa: E741
        return self.decoder(self.encoder(l))


def _pretrained_resnet18():
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    try:
        return torchvision.models.resnet18(weights=weights)
    except Exception as e:  # URLError, HTTPError, timeouts, a half-written file...
        raise RuntimeError(
            f"could not get torchvision's pretrained ResNet-18 weights ({weights.url}): {e}. "
            f"Train from scratch (pretrained=False) or place the file in {torch.hub.get_dir()}/checkpoints/"
        ) from None


MODELS = {"original_cnn": OriginalCNN, "edited_cnn": EditedCNN, "resnet18": ResNet18Colorizer}


def upgrade_state_dict(model: Colorizer, state: dict) -> dict:
    """The weights of a checkpoint written before the heads were parts (the shipped reference
    model is one), with their keys renamed to today's: the last layers of `net` or `decoder`
    beyond today's body are the head's (`head.layers.<i>`), and a classifier's `class_weights`
    is `head.class_weights`. Today's keys pass unchanged. The one place old keys are mapped."""
    if any(k.startswith("head.") for k in state):
        return state
    body = model.net if hasattr(model, "net") else model.decoder
    prefix = "net." if hasattr(model, "net") else "decoder."
    out = {}
    for key, value in state.items():
        if key == "class_weights":
            key = "head.class_weights"
        elif key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            if int(index) >= len(body):
                key = f"head.layers.{int(index) - len(body)}.{rest}"
        out[key] = value
    return out


def build_model(name: str, **options) -> nn.Module:
    """A fresh model by name; options go to its constructor (e.g. resnet18's pretrained=True)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](**options)


# Names for readers (charts, tables, sentences); the registry's keys are names for code.
DISPLAY = {"original_cnn": "OriginalCNN", "edited_cnn": "EditedCNN", "resnet18": "ResNet18"}


def _head(options: dict) -> tuple[str, str] | None:
    """(head, its note, e.g. ", λ=1") of a model whose head is not the default one, else None:
    what label and display_name add to a model's name."""
    head = options.get("head", DEFAULT_HEAD)
    if head == DEFAULT_HEAD:
        return None
    return head, HEADS[head].note(options)


def display_name(name: str, options: dict) -> str:
    """A model's name for readers: "ResNet18", "ResNet18, classification head", "ResNet18,
    classification head, λ=1" (label's information, in DISPLAY's names)."""
    head = _head(options)
    return DISPLAY.get(name, name) + (f", {head[0]} head{head[1]}" if head else "")


def label(name: str, options: dict) -> str:
    """A row name for tables: "resnet18", "resnet18 (classification)", "resnet18 (classification,
    λ=1)" for a run without the paper's rebalancing."""
    head = _head(options)
    return name + (f" ({head[0]}{head[1]})" if head else "")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _describe(name: str, m: nn.Module) -> str:
    if isinstance(m, nn.Conv2d):
        s = " stride 2" if m.stride[0] == 2 else ""
        return f"Conv {m.kernel_size[0]}x{m.kernel_size[1]}, {m.in_channels} -> {m.out_channels}{s}"
    if isinstance(m, nn.Upsample):
        return f"Upsample x2 ({m.mode})"
    if isinstance(m, nn.MaxPool2d):
        return "MaxPool 3x3 stride 2"
    if isinstance(m, nn.Sequential):  # a ResNet stage
        return f"ResNet {name}: {len(m)} BasicBlocks"
    return type(m).__name__


def layer_table(model: nn.Module, size: int = 256) -> str:
    """A Markdown table of the model's layers: output shape and parameters, for a size x size input.

    Activations and BatchNorm are folded into the row of the layer they follow, as Keras'
    model.summary() shows the original CNN's 15 layers.
    """
    rows, hooks = [], []
    body = [m for m in model.children() if isinstance(m, nn.Sequential)]
    for seq in [*body, model.head.layers]:
        for name, child in seq.named_children():

            def hook(mod, inp, out, name=name):
                n_params = count_parameters(mod)
                if isinstance(mod, (nn.ReLU, nn.Tanh, nn.BatchNorm2d)) and rows:
                    rows[-1][0] += f" + {type(mod).__name__}"
                    rows[-1][1], rows[-1][2] = tuple(out.shape[1:]), rows[-1][2] + n_params
                else:
                    rows.append([_describe(name, mod), tuple(out.shape[1:]), n_params])

            hooks.append(child.register_forward_hook(hook))
    was_training = model.training
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    lines = ["| # | layer | output (C x H x W) | parameters |", "|---|---|---|---:|"]
    for i, (desc, shape, n) in enumerate(rows, 1):
        lines.append(f"| {i} | {desc} | {' x '.join(map(str, shape))} | {n:,} |")
    lines.append(f"| | **total** | | **{count_parameters(model):,}** |")
    return "\n".join(lines)
