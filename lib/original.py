"""What the original 2022 notebooks reported, and, reproduced on purpose, what they really computed.

The numbers are the ones printed in the original notebooks, their PDF exports and slides (EliGithe/
Adv-ML-Project; see README, "How this differs from the original's claims"). The notebooks put them next to
ours; they are never used to compute anything of ours.
"""

import torch

from lib import lab

# --- numbers the original printed -------------------------------------------------------------------

# OriginalCNN: Keras train loss per epoch (MSE on ab/128, 100 steps of 50 images each) and the
# held-out MSE on 500 images (ab/128 scale: the same scale as our normalized loss).
ORIGINAL_CNN_TRAIN_LOSS = [0.0356, 0.0123, 0.0120, 0.0122, 0.0122, 0.0122, 0.0120, 0.0121, 0.0123, 0.0121]
ORIGINAL_CNN_HELDOUT_MSE = 0.012103937566280365

# EditedCNN ("after optimization"): the losses of a network that predicted G and B from R at tiny
# scales (see edited_cnn_inputs). Not comparable with anything.
EDITED_CNN_TRAIN_LOSS = [
    1.0075e-07, 4.0970e-09, 5.7941e-10, 3.3137e-10, 3.1500e-10,
    3.1438e-10, 3.1378e-10, 3.1338e-10, 3.1293e-10, 3.1083e-10,
]  # fmt: skip
EDITED_CNN_HELDOUT_MSE = 6.490140549431089e-07

# ResNet18: the "checkpoint analysis" (mean loss over the val set, (ab+128)/255 scale) of networks
# that were never loaded from their checkpoints, i.e. untrained networks.
RESNET_CHECKPOINT_EPOCHS = [1, 2, 6, 8, 18, 23, 26, 29, 31, 34, 35]
RESNET_UNTRAINED_VAL_LOSS = [
    0.2827994968891144, 0.2612108221054077, 0.27648071002960206, 0.2506919974088669,
    0.247973198056221, 0.28717456102371214, 0.27908602261543275, 0.3220686323642731,
    0.27302667713165285, 0.26702461671829225, 0.315522926568985,
]  # fmt: skip
RESNET_VAL_MSE_BAR_CHART = 0.0032  # the final bar chart's ResNet18 bar, (ab+128)/255 scale

# The final bar chart "MSE across All Architectures" (values read off the chart).
BAR_CHART = {"CNN (1st run)": 0.0121, "CNN after Optimization": 0.0, "Resnet18": 0.0032}

# How the original trained (lib.notebook.Notebook.recipe_text compares a run's parameters with
# these): the CNNs with Keras-style augmentation and Adam at 1e-3; the ResNet18 with random resized
# crops and Adam at 1e-2 (Melas-Kyriazi's recipe); both at a constant learning rate.
CNN_RECIPE = {"augment": "affine", "lr": 1e-3, "schedule": "constant"}
RESNET_RECIPE = {"augment": "crop", "lr": 1e-2, "schedule": "constant"}

# The ResNet notebook's target was (ab + 128)/255, ours (and the CNNs') is ab/128: an MSE on the
# ResNet scale times (255/128)^2 is the same error on our scale.
RESNET_TO_OUR_SCALE = (255 / 128) ** 2


# --- what the original EditedCNN really fed its network -----------------------------------------


def edited_cnn_inputs(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The original EditedCNN's "normalization", reproduced: no Lab conversion at all.

    It divided the raw RGB channels (0-255) by 100 (R) and 128 (G, B), then everything by 255, and
    its generator took channel 0 as input and channels 1: / 128 as target. So the network learned
    to predict green and blue from red, with inputs in [0, 0.01] and targets in [0, 6.1e-5].
    rgb: uint8 (N, 3, H, W). Returns (input (N, 1, H, W), target (N, 2, H, W)).
    """
    x = rgb.double()
    x[:, 0] /= 100.0
    x[:, 1:] /= 128.0
    x /= 255.0
    return x[:, :1].float(), (x[:, 1:] / 128.0).float()


def zero_prediction_mse(loader) -> float:
    """What the original ResNet's "checkpoint analysis" losses (0.25-0.32) really were: the MSE of
    predicting 0 for a target on its (a* + 128)/255 scale, over every image of a loader of uint8
    RGB batches. An untrained network's output starts near 0, so its loss is this number."""
    sq, n = 0.0, 0
    for rgb, _ in loader:
        _, ab = lab.rgb_to_model(rgb)
        target = (lab.denormalize_ab(ab) + 128) / 255  # a*, b* in Lab units, then the ResNet's scale
        sq, n = sq + target.double().pow(2).sum().item(), n + target.numel()
    return sq / n
