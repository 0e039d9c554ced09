"""Everything inference needs, and nothing of training: checkpoint files (write, load, verify),
the shipped reference model, the device, and prediction.

`colorize`, `evaluate` and the notebooks' analysis cells import this module, never lib.train, so
using a model does not pull in the training loop, tqdm's loops or torch.distributed (the
colorizers package of Zhang et al. keeps inference apart from training the same way).

A checkpoint is a dict saved with torch.save and loaded with weights_only=True:
  format          CHECKPOINT_FORMAT
  model, options  the name in models.MODELS and its constructor's options: enough to rebuild it
  head            its head's name (models.HEADS): how to read the model's output
  normalization   lib.lab.NORMALIZATION, which inference checks instead of guessing
  state_dict      the weights
  epoch, val_loss, data, git_commit   which training produced it, on what
  ab_prior        (a head that uses_prior) the training photos' colour prior, for vividness
  working_size, vividness   (the reference model) how it sees photos and its default setting

Precision: all inference runs in float32, outside any autocast (Inference), so a sample grid,
a score and a colorized file of the same photo come from the same numbers on every device.
"""

import dataclasses
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lib import lab, models, results, shapes

CHECKPOINT_FORMAT = "bw-colorization-checkpoint/1"
# The largest file read as a checkpoint: these networks' last.pt (weights and Adam's two moments)
# is under 50 MB, so 1 GiB is room for bigger networks; a bigger file is refused before it is read.
MAX_BYTES = 1 << 30

# The shipped reference model (README, "Model card"): trained once at scale, carried by the package.
# Its SHA-256 is checked at every load, so a damaged or replaced file is refused, never used.
REFERENCE = Path(__file__).resolve().parent / "weights" / "reference.pt"
REFERENCE_SHA256 = "bbf211307268e88d4e32df9e269d64405d4964115d6570f1e01c735bf6316ac0"


def pick_device(requested: str = "auto") -> torch.device:
    """ "auto" picks cuda, then mps, then cpu; anything else is passed to torch.device."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --- files ----------------------------------------------------------------------------------------


def make(model, name: str, options: dict, epoch: int, val_loss: float, description: dict, **extra) -> dict:
    """What a checkpoint file holds: weights plus everything needed to rebuild and judge them."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": name,
        "options": options,
        "head": model.head.kind,
        "normalization": lab.NORMALIZATION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "val_loss": val_loss,
        "data": description,
        "git_commit": results.CODE_COMMIT,
        **extra,
    }


def write(checkpoint: dict, path) -> Path:
    """torch.save through the project's one atomic writer (results.write_atomic): all or nothing.
    Serialized in memory first, so that a full disk is an OSError naming `path` (torch's own file
    writer reports it as a RuntimeError about zip positions)."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return results.write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def load(path, device="cpu") -> tuple["Inference", dict]:
    """Rebuild the model a checkpoint describes, load its weights and return (Inference,
    checkpoint): the model in eval mode on `device` with what inference needs from the checkpoint,
    its working size and default vividness where it records them (the reference model does), and
    a classification head's colour prior (for vividness settings). The checkpoint dict gets
    "sha256", the file's.

    path "reference" (or REFERENCE itself) is the shipped reference model, checked against
    REFERENCE_SHA256.

    Raises ValueError with one clear line naming the file for anything that is not one of our
    checkpoints: an unreadable file, another format or normalization, a key that it or its callers
    read missing or of the wrong type or range (see _malformed and _misfit; "data" may be None,
    nothing known of the training photos), NaN or infinite weights, weights of another model.
    """
    path = REFERENCE if str(path) == "reference" else Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    if problem := too_large(path):
        raise ValueError(f"{path}: {problem}")
    raw = path.read_bytes()  # read once: hashed, then loaded
    sha = hashlib.sha256(raw).hexdigest()
    if path.resolve() == REFERENCE and sha != REFERENCE_SHA256:
        raise ValueError(
            f"{path}: SHA-256 {sha[:16]}... is not the shipped reference model's "
            f"{REFERENCE_SHA256[:16]}... (a damaged or replaced file: restore it with git or pip)"
        )
    try:
        ckpt = torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (found {found!r})")
    problem = _malformed(ckpt)
    if problem:
        raise ValueError(f"{path}: malformed checkpoint: {problem}")
    if ckpt["normalization"] != lab.NORMALIZATION:
        found = _found(ckpt["normalization"])
        raise ValueError(f"{path}: trained with normalization {found}, this code uses {lab.NORMALIZATION}")
    # Never download weights to rebuild a model whose weights we are about to load anyway.
    options = {**ckpt["options"], **({"pretrained": False} if "pretrained" in ckpt["options"] else {})}
    try:
        model = models.build_model(ckpt["model"], **options)
    except (ValueError, TypeError) as e:  # an unknown model, head or option
        raise ValueError(f"{path}: does not fit this version's {ckpt['model']!r} model ({e})") from None
    state = models.upgrade_state_dict(model, ckpt["state_dict"])
    if problem := _other_weights(model.state_dict(), state):
        raise ValueError(f"{path}: does not fit this version's {ckpt['model']!r} model: {problem}")
    model.load_state_dict(state)
    problem = _misfit(ckpt, model)
    if problem:
        raise ValueError(f"{path}: malformed checkpoint: {problem}")
    if ckpt.get("ab_prior") is not None and model.head.uses_prior:
        model.head.set_prior(ckpt["ab_prior"], weights=False)  # the weights are the loaded ones
    ckpt["sha256"] = sha
    return Inference(model.to(device).eval(), ckpt, ckpt.get("working_size"), ckpt.get("vividness")), ckpt


def too_large(path: Path) -> str | None:
    """Why a file is too large to be read as a checkpoint (over MAX_BYTES), or None."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        return f"{size / 2**30:.1f} GiB, too large for a checkpoint (at most {MAX_BYTES / 2**30:g} GiB)"
    return None


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _count(x) -> bool:
    """A positive int (not a bool, which Python counts as an int)."""
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


_SCALARS = str | int | float | bool | type(None)  # what an option may be: a constructor argument, in JSON


def _found(x) -> str:
    """x for an error message, on one line: its repr if short and plain, else its type."""
    plain = isinstance(x, _SCALARS) or (
        isinstance(x, dict) and all(isinstance(v, _SCALARS) for v in x.values())
    )
    return repr(x) if plain and len(repr(x)) <= 200 else type(x).__name__


def _malformed(ckpt: dict) -> str | None:
    """What is wrong with a checkpoint dict before a model is built from it, or None: each key that
    `load` and its callers (colorize, evaluate, the notebooks) read, with its type and range.
    Checked here, once, so that no caller meets a KeyError or a TypeError in the middle of a run."""
    required = ("model", "options", "head", "normalization", "state_dict", "epoch", "val_loss", "data")
    missing = [k for k in required if k not in ckpt]
    if missing:
        return f"no {', '.join(repr(k) for k in missing)}"
    if not isinstance(ckpt["model"], str):
        return f"'model' must be a name (str), found {type(ckpt['model']).__name__}"
    options = ckpt["options"]
    if not isinstance(options, dict) or not all(
        isinstance(k, str) and isinstance(v, _SCALARS) for k, v in options.items()
    ):
        return "'options' must be a dict of names to plain values (str, number, bool, None)"
    if not isinstance(ckpt["head"], str) or ckpt["head"] not in models.HEADS:
        return f"'head' must be one of {', '.join(map(repr, models.HEADS))}, found {_found(ckpt['head'])}"
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        return "'state_dict' must be a dict of names to tensors"
    for key, value in state.items():  # NaN weights would give NaN colours, and NaN scores
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"weights {key!r} hold NaN or infinite values"
    if not isinstance(ckpt["epoch"], int) or isinstance(ckpt["epoch"], bool) or ckpt["epoch"] < 0:
        return f"'epoch' must be an int >= 0, found {_found(ckpt['epoch'])}"
    if not _number(ckpt["val_loss"]):
        return f"'val_loss' must be a number, found {_found(ckpt['val_loss'])}"
    described = ckpt["data"]
    if described is not None:
        if not isinstance(described, dict):
            return f"'data' must be a dict or None, found {type(described).__name__}"
        if described.get("size") is not None and not _count(described["size"]):
            return f"'data' size must be a positive int (pixels), found {_found(described['size'])}"
        if not isinstance(described.get("source"), str | type(None)):
            return f"'data' source must be a str, found {type(described['source']).__name__}"
    size = ckpt.get("working_size")
    if size is not None and shapes.working_size_problem(size):
        low, high = shapes.MIN_WORKING_SIZE, shapes.MAX_WORKING_SIZE
        return f"'working_size' must be an int from {low} to {high} (pixels), found {_found(size)}"
    v = ckpt.get("vividness")
    if v is not None and not (_number(v) and 0 <= v <= 1):
        return f"'vividness' must be a number from 0 to 1, found {_found(v)}"
    prior = ckpt.get("ab_prior")
    if prior is not None:
        if not isinstance(prior, list | tuple) or not all(_number(p) for p in prior):
            return "'ab_prior' must be a list of numbers"
        if not all(math.isfinite(p) and p >= 0 for p in prior) or not sum(prior) > 0:
            return "'ab_prior' must hold finite non-negative numbers with a positive sum"
    return None


def _other_weights(mine: dict, theirs: dict) -> str | None:
    """The first difference, by name, between a model's weights and a checkpoint's, or None:
    a tensor missing, one the model does not have, or one of another shape."""
    for name, tensor in mine.items():
        if name not in theirs:
            return f"it has no weights {name!r}"
        if tuple(theirs[name].shape) != tuple(tensor.shape):
            return f"its {name!r} is {tuple(theirs[name].shape)}, the model's {tuple(tensor.shape)}"
    extra = sorted(set(theirs) - set(mine))
    return f"its weights {extra[0]!r} are not the model's" if extra else None


def _misfit(ckpt: dict, model) -> str | None:
    """What of a checkpoint does not fit the model built from it, or None: its head, and what that
    head reads (models.Head.misfit: e.g. a vividness setting needs a head that takes one)."""
    if ckpt["head"] != model.head.kind:
        return f"'head' is {ckpt['head']!r}, but its options build a {model.head.kind} head"
    return model.head.misfit(ckpt)


def chosen(run: dict) -> dict:
    """A run record's checkpoint entry (epoch, path, val_loss) with the lowest validation loss:
    the one its dev part chose."""
    return min(run["checkpoints"], key=lambda c: c["val_loss"])


def best(run: dict) -> str:
    """The path of the checkpoint a run's dev part chose (chosen)."""
    return chosen(run)["path"]


# --- prediction -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inference:
    """A trained model as inference uses it: the one object colorize, evaluate, the metrics and the
    notebooks ask for colours (checkpoints.load returns it; a bare model is Inference(model)).

    working_size: the shorter side it sees photos at, in pixels, their aspect kept
    (shapes.working_shape; from shapes.MIN_WORKING_SIZE to shapes.MAX_WORKING_SIZE, ValueError
    otherwise); None: at their own size. vividness: its default setting, 0 (faithful) to 1
    (vivid), for a classification head (models.ClassificationHead); None: the head's own default.
    Both come from the checkpoint (the reference model records them); `replace` gives one with
    other settings. All prediction runs in float32 with autocast off, whatever the caller's context
    (the one precision policy of inference), in eval mode and without gradients."""

    model: torch.nn.Module
    checkpoint: dict = field(default_factory=dict)
    working_size: int | None = None
    vividness: float | None = None

    def __post_init__(self):
        """A working size out of range (shapes.working_size_problem) is refused here, where it is
        given (checkpoints.load, replace), not when a shape is computed from it."""
        if self.working_size is not None and (problem := shapes.working_size_problem(self.working_size)):
            raise ValueError(problem)

    @property
    def head(self):
        return self.model.head

    @property
    def training_size(self) -> int | None:
        """The crop size it was trained at, where its checkpoint records it."""
        return (self.checkpoint.get("data") or {}).get("size")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def replace(self, **settings) -> "Inference":
        """The same model with other settings (working_size, vividness); None keeps this one's."""
        return dataclasses.replace(self, **{k: v for k, v in settings.items() if v is not None})

    def shape(self, height: int, width: int, size: int | None = None) -> tuple[int, int]:
        """The (height, width) it sees a photo of this size at: the shorter side at `size`, else at
        its working size (shapes.working_shape); the photo's own when it has neither."""
        size = size or self.working_size
        return (height, width) if size is None else shapes.working_shape(height, width, size)

    @torch.no_grad()
    def colours(self, x: torch.Tensor, vividness: float | None = None) -> torch.Tensor:
        """float32 normalized ab (N, 2, h, w) for lightness x (N, 1, h, w) already at the shape the
        model is to see (shape): no resize here. vividness None: its default."""
        self.model.eval()
        vividness = self.vividness if vividness is None else vividness
        x = x.float()
        with torch.autocast(x.device.type, enabled=False):
            return self.head.to_ab(self.model(x).float(), x.shape[-2:], vividness)

    def predict_ab(self, l: torch.Tensor, vividness: float | None = None) -> torch.Tensor:
        """float32 normalized ab (N, 2, H, W) at the size of lightness l (N, 1, H, W): l resized
        once to shape() (bilinear, antialiased), its colours, upsampled (bilinear) to l's size."""
        size = tuple(l.shape[-2:])
        x = l.float()
        if self.shape(*size) != size:
            x = F.interpolate(x, size=self.shape(*size), mode="bilinear", antialias=True)
        ab = self.colours(x, vividness)
        if tuple(ab.shape[-2:]) != size:
            ab = F.interpolate(ab, size=size, mode="bilinear", align_corners=False)
        return ab

    __call__ = predict_ab  # a predictor of lib.metrics: lightness in, ab out

    def predict(self, rgb: torch.Tensor) -> torch.Tensor:
        """Normalized ab (on the CPU, float32) for a uint8 RGB batch: what the sample grids show."""
        l, _ = lab.rgb_to_model(rgb.to(self.device))
        return self.predict_ab(l).cpu()
