"""A command's edges: every value a user gives, checked where it enters, and how a command ends.

One declared type and range for each option
of every command (as argparse's `type=`) and for each parameter of every notebook (PARAMETERS:
papermill's values, the pipeline's profiles and its --set). A bad value is one line naming the
option and what it must be, before any work.

A check is a callable: check(value) -> the value in its declared type, or BadValue (a ValueError,
and the error argparse prints as "argument --epochs: must be an int from 1 up, got '0'"). Text,
as a command line or --set gives it, is converted first ("3" -> 3, "1e-4" -> 0.0001, "null" ->
None), so `--set lr=1e-4` reaches a notebook as a number, not as YAML's string.

Every command's main is wrapped by `command`: Ctrl-C and system errors end it with one line.

This module imports no torch: lib.pipeline checks every notebook's parameters before it starts one.
"""

import argparse
import functools
import math
import re
import signal
import sys
import threading

import yaml

from lib.settings import PRECISIONS, SCHEDULES
from lib.shapes import MAX_WORKING_SIZE, MIN_WORKING_SIZE


class BadValue(argparse.ArgumentTypeError, ValueError):
    """A value outside its option's declared type or range: one line, what it must be."""


class Check:
    """A declared type and range: `what` says it in words ("an int from 1 up"), `convert` turns a
    value (or its text) into that type, raising ValueError or TypeError when it cannot, and `fits`
    says whether a converted value is in range."""

    def __init__(self, what: str, convert, fits=lambda v: True):
        self.what, self.convert, self.fits = what, convert, fits

    def __call__(self, value):
        try:
            converted = self.convert(value)
        except (TypeError, ValueError):
            converted = None
        else:
            if self.fits(converted):
                return converted
        raise BadValue(f"must be {self.what}, got {value!r}")

    def __repr__(self) -> str:  # argparse names a type by it in some messages
        return self.what


def _int(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise TypeError(value)
    return int(value.strip()) if isinstance(value, str) else int(value)


def _float(value) -> float:
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value.strip()) if isinstance(value, str) else float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def count(low: int = 1, high: int | None = None) -> Check:
    """An int from `low` (to `high`)."""
    what = f"an int from {low} up" if high is None else f"an int from {low} to {high}"
    return Check(what, _int, lambda v: v >= low and (high is None or v <= high))


def number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False) -> Check:
    """A finite number from `low` to `high`; *_open leaves that end out ("in (0, 1]")."""
    if high is None:
        what = f"a number {'above' if low_open else 'from'} {low:g}" + ("" if low_open else " up")
    else:
        what = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Check(
        what,
        _float,
        lambda v: (
            (v > low if low_open else v >= low) and (high is None or (v < high if high_open else v <= high))
        ),
    )


def one_of(*choices: str) -> Check:
    return Check(f"one of {', '.join(choices)}", str, lambda v: v in choices)


def optional(check: Check) -> Check:
    """None (or its text: "null", "none"), or a value of `check`."""

    def convert(value):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none")):
            return None
        return check(value)

    return Check(f"{check.what}, or null", convert)


def flag(value) -> bool:
    """True or False (also from text: true/false, yes/no, 1/0)."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise BadValue(f"must be true or false, got {value!r}")


def seeds(value) -> list[int]:
    """A list of seeds (ints from 0), or their text: "0,1,2" or "[0, 1, 2]"."""
    given = value
    if isinstance(value, str):
        value = [v for v in value.strip().strip("[]").split(",") if v.strip()]
    try:
        if not isinstance(value, list | tuple) or not value:
            raise BadValue(value)
        return [count(0)(v) for v in value]
    except BadValue:
        raise BadValue(f"must be a list of seeds (ints from 0), got {given!r}") from None


def text(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadValue(f"must be a text (a name or a path), got {value!r}")
    return value


def device(value) -> str:
    """A device this machine has: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps. One
    that torch cannot see is refused here, by name, rather than failing later as something else."""
    name = value.strip().lower() if isinstance(value, str) else None
    if not name or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise BadValue(f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
    import torch  # here, not above: no other check needs torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadValue(
            f"must be a device this machine has: no CUDA GPU is visible to torch here, got {value!r}"
        )
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise BadValue(
            f"must be a GPU this machine has (cuda:0 to cuda:{torch.cuda.device_count() - 1}), got {value!r}"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise BadValue(f"must be a device this machine has: no Apple GPU (mps) here, got {value!r}")
    return name


SIZE = count(MIN_WORKING_SIZE, MAX_WORKING_SIZE)  # a side a model may see a photo at, pixels
VIVIDNESS = number(0, 1)

# Every parameter a notebook's `parameters` cell declares (a test checks each notebook against
# it), with its check: what lib.notebook.setup reads and a results file records, and what the
# pipeline's profiles and --set may set.
PARAMETERS = {
    "dataset": text,
    "image_size": SIZE,
    "eval_size": SIZE,
    "augment": one_of("crop", "affine", "none"),
    "crop_scale": number(0, 1, low_open=True),
    "epochs": count(1),
    "batch_size": count(1),
    "lr": number(0, low_open=True),
    "schedule": one_of(*SCHEDULES),
    "precision": one_of("auto", *PRECISIONS),
    "max_images": optional(count(1)),
    "seeds": seeds,
    "device": device,
    "workers": optional(count(0)),
    "progress": flag,
    "pretrained": flag,
    "n_samples": count(1),
    "out_dir": text,
}


def _no_unknown(names, where: str) -> None:
    """BadValue, naming them and the known ones, for names that are no parameter."""
    if unknown := sorted(set(names) - set(PARAMETERS)):
        raise BadValue(
            f"{where}: no parameter {', '.join(unknown)}; the parameters are {', '.join(PARAMETERS)}"
        )


def check_parameters(values: dict, where: str) -> dict:
    """`values` ({name: value}) checked against PARAMETERS and converted to their types. A name
    that is not a parameter, or a bad value, is one ValueError naming it and `where` it came from
    (a profile, --set, a notebook)."""
    _no_unknown(values, where)
    checked = {}
    for name, value in values.items():
        try:
            checked[name] = PARAMETERS[name](value)
        except BadValue as e:
            raise BadValue(f"{where}: parameter {name} {e}") from None
    return checked


def check_profile(profile, sections, where: str) -> dict:
    """A pipeline profile: a mapping of parameters, and of notebook names (`sections`) to mappings
    of their own, every name a parameter. Its values are checked once merged (check_parameters),
    as a profile may leave one to the command line (the full profile's dataset: null)."""
    inner = [profile.get(s) for s in sections if s in profile] if isinstance(profile, dict) else []
    for part in [profile, *inner]:
        if not isinstance(part, dict):
            raise BadValue(
                f"{where}: must map parameters to values (name: value), found {type(part).__name__}"
            )
        _no_unknown(set(part) - set(sections), where)
    return profile


def parse_set(settings: list[str]) -> dict:
    """The pipeline's --set NAME=VALUE options as {name: value}, each value read as YAML ("3",
    "null", "[0, 1]") and checked against its parameter's type ("1e-4" is a number). BadValue, one
    line, for a missing "=", an unknown name or a bad value."""
    pairs = {}
    for setting in settings:
        name, eq, value = setting.partition("=")
        if not eq:
            raise BadValue(f"--set {setting}: give NAME=VALUE (e.g. --set epochs=2)")
        try:
            pairs[name.strip()] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            pairs[name.strip()] = value
    return check_parameters(pairs, "--set")


class Stopped(KeyboardInterrupt):
    """SIGTERM (a kill, a scheduler ending a job), raised where Ctrl-C's KeyboardInterrupt would
    be: the command stops the same way, with what a shell reports for it (143)."""


def _stop(signum, frame):
    raise Stopped


def command(main):
    """Wrap a command's main(argv) -> exit code with the edges every command shares. Ctrl-C ends
    it with one line and exit code 130 (a shell's code for SIGINT; SIGTERM likewise, 143), and
    nothing is left half written: every file goes through results.write_atomic, a training run
    resumes exactly with --resume, and the pipeline's notebook kernel is stopped at once. A system
    error on a named file (disk full, no permission, a path that cannot be) is one line naming it,
    exit code 2. Anything else keeps its traceback: an error nobody foresaw must be seen."""

    @functools.wraps(main)
    def run(argv=None) -> int:
        main_thread = threading.current_thread() is threading.main_thread()
        before = signal.signal(signal.SIGTERM, _stop) if main_thread else None
        try:
            return main(argv)
        except KeyboardInterrupt as e:
            print(
                "interrupted: nothing was left half-written (a training run continues with --resume)",
                file=sys.stderr,
            )
            return 143 if isinstance(e, Stopped) else 130
        except OSError as e:
            if e.filename is None:
                raise
            print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
            return 2
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, before)

    return run
