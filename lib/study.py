"""A study's numbers and what they say: means over seeds, paired bootstrap intervals, sentences.

A study trains several models with several seeds each and scores every seed's best checkpoint
on the same held-out photos, keeping every photo's metrics (lib.metrics, "per_image"). Seeds
show how much training luck moves a model; photos show how much the choice of test photos moves
a difference. Here:

  summarize()   means over seeds (and their min and max), and for every model against the gray
                baseline and every pair of models, the mean over photos of the paired per-photo
                difference with a percentile bootstrap interval over photos, and a verdict;
  conclusions() that summary in plain English (Markdown bullets): the notebooks' Markdown holds
                no numbers, every number and ranking sentence a reader sees is written here;
  answer()      two or three sentences: which model colorizes best on one metric, and whether
                that is beyond the noise.

Each photo's metric is first averaged over a model's seeds, then differences are paired photo
by photo, so the interval is about these photos and these trained models (seed-to-seed spread
is reported as min-max, not folded into the interval). A difference whose interval includes
zero is reported as "no difference beyond the noise", never as a ranking.

collect() reads the notebooks' results files into summarize's inputs; table() shows a summary.
No matplotlib here (charts: lib.plots.margins). Model names are used as given.
"""

from itertools import combinations

import numpy as np

from lib import models
from lib.metrics import REGISTRY

# Short names for sentences, one per REGISTRY column key; a key missing here uses its REGISTRY label.
SHORT = {
    "ab_mse": "ab MSE",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "delta_e": "ΔE",
    "colourfulness": "colourfulness",
    "delta_cf": "ΔCF",
    "auc": "AuC",
}
GRAY = "gray baseline"
CHUNK = 1 << 20  # resampled indices held at once (8 MB of int64), whatever the number of photos
MINUS = "\u2212"  # typeset minus: "−0.012" rather than a hyphen


def paired_bootstrap(diffs, resamples: int = 10_000, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap of the mean of paired per-photo differences.

    `diffs`: 1-D, one difference per photo (any units; the result is in the same units).
    Returns (mean, low, high): the observed mean and the (1 - level)/2 and (1 + level)/2
    percentiles of the means of `resamples` resamples of the photos with replacement, drawn by
    numpy's PCG64 from `seed`: the same inputs give the same interval. Indices are drawn in
    chunks of at most CHUNK, so memory stays small for thousands of photos. Raises ValueError
    for no photos, a value that is not finite, resamples < 1 or a level outside (0, 1).
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"paired_bootstrap: need one difference per photo (1-D), got shape {d.shape}")
    return _bootstrap(d[None], resamples, seed, level)[0]


def _bootstrap(rows: np.ndarray, resamples: int, seed: int, level: float) -> list[tuple]:
    """paired_bootstrap of each row of a (K, N) array. The resampled photos are drawn once and
    used for every row: each row gets the interval paired_bootstrap gives it alone, and K
    comparisons cost one draw (drawing, not averaging, is most of the time)."""
    if not np.isfinite(rows).all():
        raise ValueError("paired_bootstrap: a difference is NaN or infinite")  # would poison every mean
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"paired_bootstrap: resamples {resamples} must be >= 1 and level {level} in (0, 1)")
    rng = np.random.Generator(np.random.PCG64(seed))
    n, means = rows.shape[1], np.empty((len(rows), resamples))
    step = max(1, CHUNK // n)  # depends on n only, so the draws (and the intervals) are reproducible
    for start in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - start), n))
        for j, row in enumerate(rows):
            means[j, start : start + len(idx)] = row[idx].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lows, highs = np.percentile(means, [tail, 100 - tail], axis=1)
    return [(float(r.mean()), float(lo), float(hi)) for r, lo, hi in zip(rows, lows, highs, strict=True)]


def verdict(low: float, high: float, higher: bool | None) -> str | None:
    """ "better", "worse" or "tie" for a difference (first minus second) with interval [low, high]:
    "better" when the interval lies wholly on the good side of zero (above it when `higher` is
    True, below it when False), "worse" when wholly on the other side, "tie" when it includes
    zero. None when `higher` is None: neither direction is better (colourfulness)."""
    if higher is None:
        return None
    if low > 0:
        return "better" if higher else "worse"
    if high < 0:
        return "worse" if higher else "better"
    return "tie"


def summarize(per_image: dict, gray: dict, costs: dict | None = None, resamples: int = 10_000,
              seed: int = 0) -> dict:  # fmt: skip
    """Means over seeds and paired bootstrap comparisons of a study, as plain JSON-ready data.

    per_image: {model: {seed: {metric key: [value per photo]}}}, seeds int or str, every list in
    the same photo order and of the same length N. gray: {metric key: [value per photo]}, the
    gray baseline on the same photos (its "<key>_true" lists, e.g. colourfulness_true, give the
    photos' own value). costs: {model: {"seconds_per_epoch": float, "parameters": int}}, any
    model may be missing. Metrics: the REGISTRY column keys found in the data, in REGISTRY order.

    Returns {"n_photos", "metrics": [keys], "seeds": {model: [seeds]}, "resamples", "level",
    "bootstrap_seed",
     "models": {model: {key: {"mean", "min", "max", "per_seed": {str(seed): mean}}, "cost": dict
                or None}}  (per-seed means over photos; mean, min, max over seeds),
     "gray": {key: mean}, "truth": {key: the photos' own mean, where "<key>_true" is given},
     "vs_gray": {model: {key: {"mean", "low", "high", "verdict"}}}  (model minus gray),
     "pairs": [{"a", "b", key: {...}}]  (a minus b, for every pair in input order, verdict as a's)}.
    Units are each metric's own. Every comparison uses the per-photo metric averaged over the
    model's seeds, and the same bootstrap seed (so the same resampled photos). Raises ValueError
    for no models, no seeds, no photos, lists of different lengths, a metric missing from part of
    the data, or costs of a model that has no results.
    """
    costs = costs or {}
    keys, n = _check_study(per_image, gray, costs)
    level = 0.95
    gray_photo = {k: np.asarray(gray[k], dtype=np.float64) for k in keys}
    # each photo's metric averaged over the model's seeds: the unit every comparison pairs
    photo = {
        name: {k: np.mean([np.asarray(s[k], dtype=np.float64) for s in seeds.values()], axis=0) for k in keys}
        for name, seeds in per_image.items()
    }
    c = _comparisons(photo | {GRAY: gray_photo}, list(per_image), keys, resamples, seed, level)
    pairs = [{"a": a, "b": b} | {k: c[a, b, k] for k in keys} for a, b in combinations(per_image, 2)]
    truth = {k: float(np.mean(gray[f"{k}_true"])) for k in keys if f"{k}_true" in gray}
    return {
        "n_photos": n,
        "metrics": keys,
        "seeds": {name: list(seeds) for name, seeds in per_image.items()},
        "resamples": int(resamples),
        "level": level,
        "bootstrap_seed": int(seed),
        "models": {
            name: {k: _over_seeds(seeds, k) for k in keys} | {"cost": _cost(costs.get(name))}
            for name, seeds in per_image.items()
        },
        "gray": {k: float(gray_photo[k].mean()) for k in keys},
        "truth": truth,
        "vs_gray": {name: {k: c[name, GRAY, k] for k in keys} for name in per_image},
        "pairs": pairs,
    }


def _check_study(per_image: dict, gray: dict, costs: dict) -> tuple[list[str], int]:
    """(the metric keys, the number of photos) of summarize's input, or ValueError naming what is
    wrong with it (see summarize)."""
    if not per_image:
        raise ValueError("summarize: no models in per_image")
    if GRAY in per_image:
        raise ValueError(f"summarize: a model may not be called {GRAY!r}: that name is the baseline's")
    keys = _metric_keys(per_image, gray)
    n = _check_lengths(per_image, gray, keys)
    unknown = [m for m in costs if m not in per_image]
    if unknown:
        raise ValueError(f"summarize: costs name models with no results: {unknown}")
    return keys, n


def _comparisons(photo: dict, models: list[str], keys: list[str], resamples: int, seed: int, level: float):
    """{(a, b, metric): {"mean", "low", "high", "verdict"}} of a minus b, photo by photo, for each
    of `models` against the gray baseline (GRAY) and each pair of models in their order. photo:
    {name: {metric: per-photo values}}, GRAY's too. Every comparison in one bootstrap pass: the same
    resampled photos for all."""
    wanted = [(name, GRAY, k) for name in models for k in keys]
    wanted += [(a, b, k) for a, b in combinations(models, 2) for k in keys]
    found = _bootstrap(np.stack([photo[a][k] - photo[b][k] for a, b, k in wanted]), resamples, seed, level)
    return {
        w: {"mean": mean, "low": low, "high": high, "verdict": verdict(low, high, _higher(w[2]))}
        for w, (mean, low, high) in zip(wanted, found, strict=True)
    }


def _metric_keys(per_image: dict, gray: dict) -> list[str]:
    """The REGISTRY column keys in the data, in REGISTRY order. A key found anywhere must be
    everywhere: one missing from one seed is a bug upstream, not a metric to skip."""
    tables = [("gray", gray)] + [
        (f"{name} seed {s}", values) for name, seeds in per_image.items() for s, values in seeds.items()
    ]
    keys = [m.key for m in REGISTRY if m.column and any(m.key in t for _, t in tables)]
    for where, t in tables:
        missing = [k for k in keys if k not in t]
        if missing:
            raise ValueError(f"summarize: {where} lacks metrics {missing} that the rest of the data has")
    if not keys:
        raise ValueError("summarize: the data holds none of the metrics of lib.metrics.REGISTRY")
    return keys


def _check_lengths(per_image: dict, gray: dict, keys: list[str]) -> int:
    """The number of photos N, after checking that every list (and every seed) has N of them."""
    for name, seeds in per_image.items():
        if not seeds:
            raise ValueError(f"summarize: model {name} has no seeds")
        if len({str(s) for s in seeds}) != len(seeds):
            raise ValueError(f"summarize: model {name} has two seeds with one name: {list(seeds)}")
    n = len(gray[keys[0]])
    lists = [(GRAY, k, gray[k]) for k in [*keys, *(f"{k}_true" for k in keys)] if k in gray]
    lists += [(f"{name} seed {s}", k, values[k]) for name, seeds in per_image.items()
              for s, values in seeds.items() for k in keys]  # fmt: skip
    for where, k, values in lists:
        if len(values) != n:
            raise ValueError(
                f"summarize: {where} has {len(values)} photos of {k}, the {GRAY} {n}: "
                "every list must hold the same photos in the same order"
            )
    if n == 0:
        raise ValueError("summarize: no photos")
    return n


def _over_seeds(seeds: dict, key: str) -> dict:
    """Each seed's mean over photos, and their mean, min and max over seeds."""
    per_seed = {str(s): float(np.mean(values[key])) for s, values in seeds.items()}
    v = list(per_seed.values())
    return {"mean": float(np.mean(v)), "min": min(v), "max": max(v), "per_seed": per_seed}


def _cost(entry: dict | None) -> dict | None:
    """A model's cost as plain numbers, or None when either number is unknown."""
    if not entry or entry.get("seconds_per_epoch") is None or entry.get("parameters") is None:
        return None
    return {"seconds_per_epoch": float(entry["seconds_per_epoch"]), "parameters": int(entry["parameters"])}


# ---- words -------------------------------------------------------------------------------------


def _higher(key: str) -> bool | None:
    """A metric's direction from REGISTRY: True when higher is better, False lower, None neither."""
    return next(m.higher for m in REGISTRY if m.key == key)


def short(key: str) -> str:
    """A metric's name in sentences."""
    return SHORT.get(key) or next(m.label for m in REGISTRY if m.key == key)


MAX_DECIMALS = 4  # no metric here is read to finer than 0.0001 (AuC, SSIM); smaller is zero


def _decimals(x: float, sig: int) -> int:
    """Decimals that show `sig` significant digits of x (at most MAX_DECIMALS)."""
    if x == 0 or not np.isfinite(x):
        return MAX_DECIMALS
    return min(MAX_DECIMALS, max(0, sig - 1 - int(np.floor(np.log10(abs(x))))))


def _fixed(x: float, decimals: int, sign: bool = False) -> str:
    """x with `decimals` decimals, a typeset minus, never e-notation (readers are students); a
    value that rounds to zero is "0" to that many decimals, with no sign: "−0.000" means nothing."""
    if round(x, decimals) == 0:
        return f"{0:.{decimals}f}"
    return f"{x:{'+' if sign else ''}.{decimals}f}".replace("-", MINUS)


def _digits(x: float, sig: int = 3) -> str:
    """x to `sig` significant digits (a mean, a cost); "0" when it rounds to zero."""
    text = _fixed(x, _decimals(x, sig))
    return "0" if float(text.replace(MINUS, "-")) == 0 else text


def _difference(c: dict, first: bool) -> str:
    """ "+0.012, 95 % interval +0.008 to +0.016": to one significant digit of the interval's
    half-width, so a number shows the precision the data has; to two of the mean when the mean
    is resolved (at least that half-width), so a clear difference keeps its first two digits."""
    half = (c["high"] - c["low"]) / 2
    decimals = _decimals(half, 1)
    if abs(c["mean"]) >= half:
        decimals = max(decimals, _decimals(c["mean"], 2))
    mean, low, high = (_fixed(c[k], decimals, sign=True) for k in ("mean", "low", "high"))
    return f"{mean}, {'95 % interval' if first else 'interval'} {low} to {high}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _compared(comparison: dict, keys: list[str]) -> list[str]:
    """The clauses of one bullet: better on ...; worse on ...; no difference beyond the noise on
    ... (metrics with no direction are left out: they are described, never ranked)."""
    groups = {"better": [], "worse": [], "tie": []}
    for k in keys:
        if comparison[k]["verdict"] is not None:
            groups[comparison[k]["verdict"]].append(k)
    clauses, first = [], True
    for word, ks in groups.items():
        parts = []
        for k in ks:
            parts.append(f"{short(k)} ({_difference(comparison[k], first)})")
            first = False
        if not parts:
            continue
        if word == "tie":
            anything = groups["better"] or groups["worse"]
            head = "no difference beyond the noise on " + ("" if anything else "any measure: ")
            clauses.append(head + (_and(parts) if anything else ", ".join(parts)))
        else:
            clauses.append(f"{word} on {_and(parts)}")
    return clauses


def _cost_clause(a: dict | None, b: dict | None) -> str | None:
    if a is None or b is None:
        return None
    sa, sb = _digits(a["seconds_per_epoch"], 2), _digits(b["seconds_per_epoch"], 2)
    pa, pb = _digits(a["parameters"] / 1e6, 2), _digits(b["parameters"] / 1e6, 2)
    return f"at {sa} s an epoch and {pa} M parameters against {sb} s and {pb} M"


def _undirected(summary: dict, keys: list[str], names: list[str]) -> str:
    """Sentences for metrics with no better direction (colourfulness): each one's value, and the
    photos' own where known; no ranking words."""
    out = []
    for k in (k for k in keys if _higher(k) is None):
        values = [f"{n} {_digits(summary['gray'][k] if n == GRAY else summary['models'][n][k]['mean'])}"
                  for n in names]  # fmt: skip
        if k in summary["truth"]:
            values.append(f"the photos' own {_digits(summary['truth'][k])}")
        out.append(f"{short(k).capitalize()}: {', '.join(values)}.")
    return " ".join(out)


def conclusions(summary: dict, metrics: list[str] | None = None) -> str:
    """Markdown: one bullet per model against the gray baseline, one per pair of models (costs
    when both are known), then a line saying what the intervals are. `metrics` (keys) narrows
    and orders what is said; by default every metric of the summary. Differences are the first
    named minus the second, in the metric's units; metrics with no better direction
    (colourfulness) are given as values and never called better or worse."""
    keys = [k for k in (metrics or summary["metrics"]) if k in summary["metrics"]]
    lines = []
    for name, comparison in summary["vs_gray"].items():
        clauses = _compared(comparison, keys)
        body = "; ".join(clauses) + "." if clauses else ""
        extra = _undirected(summary, keys, [name, GRAY])
        lines.append(f"- **{name} vs {GRAY}**: " + " ".join(t for t in (body, extra) if t))
    for pair in summary["pairs"]:
        a, b = pair["a"], pair["b"]
        clauses = _compared(pair, keys)
        cost = _cost_clause(summary["models"][a]["cost"], summary["models"][b]["cost"])
        clauses += [cost] if cost else []
        body = "; ".join(clauses) + "." if clauses else ""
        extra = _undirected(summary, keys, [a, b])
        lines.append(f"- **{a} vs {b}**: " + " ".join(t for t in (body, extra) if t))
    lines += ["", _method(summary)]
    return "\n".join(lines)


def _method(summary: dict) -> str:
    counts = sorted({len(s) for s in summary["seeds"].values()})
    seeds = (
        f"{counts[0]} seed{'s' if counts[0] != 1 else ''}"
        if len(counts) == 1
        else f"each model's seeds ({counts[0]}–{counts[-1]})"
    )
    return (
        f"Intervals: {summary['level'] * 100:g} % percentile bootstrap over the {summary['n_photos']} "
        f"held-out photos ({summary['resamples']:,} resamples) of each photo's metric averaged over "
        f"{seeds}; each difference is the first named minus the second; a difference whose interval "
        "includes zero is not a finding."
    )


def answer(summary: dict, metric: str = "auc") -> str:
    """Two or three sentences answering "which model colorizes better" on `metric`: the model
    with the best mean over seeds, whether its lead over each other model is beyond the noise
    (its pair's interval excludes zero), and which models beat the gray baseline beyond the
    noise. When no lead is beyond the noise, it says no model is better. Raises ValueError for
    a metric that is not in the summary or has no better direction (colourfulness)."""
    if metric not in summary["metrics"]:
        raise ValueError(f"answer: {metric} is not among the summary's metrics {summary['metrics']}")
    higher = _higher(metric)
    if higher is None:
        raise ValueError(f"answer: {metric} has no better direction, so it ranks no model")
    names = list(summary["models"])
    means = {n: summary["models"][n][metric]["mean"] for n in names}
    best = (max if higher else min)(names, key=means.get)  # first in input order on an exact tie
    m, value = short(metric), _digits(means[best])
    ahead, within = [], []
    for pair in summary["pairs"]:
        if best in (pair["a"], pair["b"]):
            other = pair["b"] if pair["a"] == best else pair["a"]
            v = pair[metric]["verdict"]
            v = v if pair["a"] == best else {"better": "worse", "worse": "better"}.get(v, v)
            (ahead if v == "better" else within).append(other)
    if len(names) == 1:
        first = f"On {m}, only {best} was studied ({value}), so there is no other model to rank it against."
    elif not ahead:
        first = (
            f"On {m}, no model is better beyond the noise: {best} has the best mean ({value}), "
            f"but its lead over {_and(within)} is within the noise."
        )
    elif not within:
        first = f"On {m}, {best} colorizes best ({value}); its lead over {_and(ahead)} is beyond the noise."
    else:
        first = (
            f"On {m}, {best} colorizes best ({value}); its lead over {_and(ahead)} is beyond the noise, "
            f"over {_and(within)} it is not."
        )
    verdicts = {n: summary["vs_gray"][n][metric]["verdict"] for n in names}
    beat = [n for n in names if verdicts[n] == "better"]
    lose = [n for n in names if verdicts[n] == "worse"]
    if not beat:
        second = f"No model beats the {GRAY} ({_digits(summary['gray'][metric])}) beyond the noise"
    elif len(beat) == len(names) > 1:
        second = f"Every model beats the {GRAY} ({_digits(summary['gray'][metric])}) beyond the noise"
    else:
        second = f"Only {_and(beat)} {'beats' if len(beat) == 1 else 'beat'} the {GRAY} beyond the noise"
    if lose:
        second += f"; {_and(lose)} {'does' if len(lose) == 1 else 'do'} worse than it"
    return f"{first} {second}."


def photo_margins(runs, gray: dict, metric: str = "auc") -> np.ndarray:
    """Each held-out photo's margin over the gray baseline on `metric`: the runs' mean value minus
    gray's, in the metric's units. `runs` are scores of the runs to average (lib.metrics
    evaluate_all's, e.g. every seed of a model) and `gray` the gray baseline's, all with
    "per_image" in the held-out part's order."""
    values = [np.asarray(r["per_image"][metric], dtype=float) for r in runs]
    return np.mean(values, axis=0) - np.asarray(gray["per_image"][metric], dtype=float)


def showcase(margins, percentiles=(90, 50, 10)) -> list[int]:
    """The photos a notebook shows, picked by a rule rather than by eye: for each percentile, the
    index of the photo at that rank of `margins` (photo_margins; ties in the part's order), so
    (90, 50, 10) is a photo the model colorizes well, a typical one and one of its worse ones."""
    order = np.argsort(np.asarray(margins), kind="stable")
    return [int(order[round(p / 100 * (len(order) - 1))]) for p in percentiles]


# ---- from the notebooks' results files ------------------------------------------------------------


def collect(records: dict) -> tuple[dict, dict, dict]:
    """summarize's inputs (per_image, gray, costs) from model chapters' results files, {name:
    record} (lib.notebook: each holds "runs" {seed: run record}, "rows" {setting: {seed:
    scores}} and "gray baseline"). A model's row label is its name for readers
    (models.display_name), with the setting in brackets where it has one ("ResNet18,
    classification head (faithful)"). Its cost is
    the median seconds per epoch over its seeds' epochs (the median: an epoch slowed by other
    work on the machine does not move it) and its number of parameters. Raises
    ValueError unless every record was scored on the same held-out photos, in the same order: a
    paired difference of two other photo sets would pair nothing."""
    per_image, costs, files, gray = {}, {}, None, None
    for name, record in records.items():
        scored = record["gray baseline"]["files"]
        if files is None:
            files, gray = scored, record["gray baseline"]["per_image"]
        elif scored != files:
            first = next(iter(records))
            raise ValueError(f"{name} was scored on other held-out photos than {first}: rerun it with "
                             "the same data parameters")  # fmt: skip
        runs = list(record["runs"].values())
        epochs = [h["seconds"] for run in runs for h in run["history"]]
        cost = {"seconds_per_epoch": float(np.median(epochs)), "parameters": runs[0]["parameters"]}
        base = models.display_name(record["model"], record["options"])
        for setting, seeds in record["rows"].items():
            label = f"{base} ({setting})" if setting else base
            per_image[label] = {seed: scores["per_image"] for seed, scores in seeds.items()}
            costs[label] = cost
    if not per_image:
        raise ValueError("no model's results found: run the model chapters first")
    return per_image, gray, costs


def table(summary: dict, *more: dict) -> str:
    """Two Markdown tables of a summary (and of `more` summaries of the same photos, such as the
    reference model's): one row per model, each REGISTRY column metric as "mean [min–max]" over
    its seeds (the mean alone for one seed), then the gray baseline, and the photos' own
    colourfulness under it; then what each model costs, its seconds per epoch and parameters (a
    second table, so the first fits a printed page)."""
    keys = summary["metrics"]
    lines = ["| | " + " | ".join(short(k) for k in keys) + " |", "|---" + "|---:" * len(keys) + "|"]
    costs = ["| | seconds per epoch | parameters |", "|---|---:|---:|"]
    for s in (summary, *more):
        for name, m in s["models"].items():
            cells = []
            for k in keys:
                v, spread = m[k], ""
                if len(m[k]["per_seed"]) > 1:
                    spread = f" [{_digits(v['min'], 4)}–{_digits(v['max'], 4)}]"
                cells.append(_digits(v["mean"], 4) + spread)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            if cost := m.get("cost"):
                costs.append(f"| {name} | {cost['seconds_per_epoch']:.1f} | {cost['parameters']:,} |")
    lines.append("| gray baseline | " + " | ".join(_digits(summary["gray"][k], 4) for k in keys) + " |")
    note = ""
    if "colourfulness" in summary.get("truth", {}):
        note = f"\n\nThe photos' own colourfulness: {_digits(summary['truth']['colourfulness'], 4)}."
    seeds = sorted({len(v) for v in summary["seeds"].values()})
    about = (
        f"\n\n{summary['n_photos']} held-out photos; {'/'.join(map(str, seeds))} seed(s) a model: "
        "mean over seeds [lowest–highest seed]."
    )
    return "\n".join(lines) + note + about + "\n\n" + "\n".join(costs)
