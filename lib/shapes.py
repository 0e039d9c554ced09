"""The shape a model is shown a photo at, and its limits: memory bounded by the photo.

Every command that shows a model a whole photo (colorize, evaluate's --show, the notebooks'
full-size rows) asks working_shape, the one computation of that shape and the one check of its
limits; option checks (lib.options) and checkpoint checks (lib.checkpoints) use the same bounds.
"""

# A photo is seen with its shorter side at a working size (8 px, the networks' total stride, to
# 2048 px), its aspect ratio kept (working_shape), at most MAX_WORKING_ASPECT times longer than
# wide: a panorama fits, a strip does not (a scanner's edge: 4 x 3000 would be seen at 128 x
# 96,000). And at most MAX_WORKING_PIXELS pixels, the square at the largest working size, so that
# every square photo fits at every working size: the reference model takes some 775 bytes per
# working pixel (float32, CPU), some 3 GB at the cap, and no model call sees more
# (colorize.predict_by_shape). Torch-free, so that option checks can use them.
MIN_WORKING_SIZE, MAX_WORKING_SIZE = 8, 2048
MAX_WORKING_ASPECT = 16  # longer side / shorter side
MAX_WORKING_PIXELS = MAX_WORKING_SIZE**2  # 4,194,304


class UnworkableShape(ValueError):
    """A photo that no model is shown (working_shape): beyond MAX_WORKING_ASPECT or
    MAX_WORKING_PIXELS. str(e) is the reason, one line, what a command skips it with."""


def working_size_problem(size) -> str | None:
    """Why `size` cannot be a working size (the shorter side, in pixels, a model sees a photo at:
    an int from MIN_WORKING_SIZE to MAX_WORKING_SIZE), or None."""
    if isinstance(size, int) and not isinstance(size, bool) and MIN_WORKING_SIZE <= size <= MAX_WORKING_SIZE:
        return None
    found = repr(size) if isinstance(size, int | float | str) else type(size).__name__
    return (
        f"a working size must be an int from {MIN_WORKING_SIZE} to {MAX_WORKING_SIZE} pixels, found {found}"
    )


def working_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """The (height, width) a model sees a photo of height x width pixels at: its shorter side
    brought to `short_side` pixels, its aspect ratio kept, both sides rounded to multiples of 8
    (the networks' total stride). The one computation of that shape, and the one check of the
    limits (MAX_WORKING_ASPECT, MAX_WORKING_PIXELS), in arithmetic alone, so before any tensor is
    made: UnworkableShape for a photo beyond them, ValueError for a `short_side` that is no
    working size (working_size_problem)."""
    if problem := working_size_problem(short_side):
        raise ValueError(problem)
    long, short = max(height, width), min(height, width)
    if short < 1:
        raise UnworkableShape(f"no pixels: {width}x{height}")
    if long > MAX_WORKING_ASPECT * short:
        ratio = f"{long / short:.1f}".removesuffix(".0")
        raise UnworkableShape(
            f"too elongated for the model: {width}x{height} is {ratio}:1, over {MAX_WORKING_ASPECT}:1 "
            "(crop it, or cut it into pieces)"
        )
    scale = short_side / short
    shape = tuple(max(8, round(s * scale / 8) * 8) for s in (height, width))
    if shape[0] * shape[1] > MAX_WORKING_PIXELS:
        raise UnworkableShape(
            f"too large for the model: seen at {shape[1]}x{shape[0]} = {shape[0] * shape[1]:,} pixels "
            f"(shorter side {short_side}px), over its cap of {MAX_WORKING_PIXELS:,}; give a smaller "
            "working size"
        )
    return shape
