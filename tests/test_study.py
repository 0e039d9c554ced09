"""lib.study: bootstrap intervals that mean what they say, verdicts with the right direction, and
sentences that follow the numbers, on synthetic studies whose answer is known."""

import json

import numpy as np
import pytest

from lib import study

N, SEEDS, RESAMPLES = 200, (0, 1, 2), 2000
COSTS = {
    "A": {"seconds_per_epoch": 28.4, "parameters": 3_900_000},
    "C": {"seconds_per_epoch": 11.2, "parameters": 950_000},
}


def gray_scores(rng):
    """Gray baseline per photo: colourfulness 0 (no colour), so its ΔCF is the photo's own."""
    truth = rng.uniform(20, 60, N)
    return {"auc": rng.uniform(0.5, 0.7, N), "ab_mse": rng.uniform(100, 300, N),
            "colourfulness": np.zeros(N), "colourfulness_true": truth, "delta_cf": truth.copy()}  # fmt: skip


def zero_mean(rng, sd):
    """Noise whose mean over the photos is exactly zero (each draw and its negative): a tie by
    construction, whatever the generator gives."""
    half = rng.normal(0, sd, N // 2)
    return np.concatenate([half, -half])


def model(rng, gray, auc_shift, mse_shift, cf_share, seeds=SEEDS, tie=False):
    """One model's per-photo scores for each seed: gray's shifted by a known amount (plus a small
    seed-to-seed step when not a tie), plus noise."""
    out = {}
    for i, s in enumerate(seeds):
        noise = (lambda sd: zero_mean(rng, sd)) if tie else (lambda sd: rng.normal(0, sd, N))
        cf = gray["colourfulness_true"] * cf_share + noise(1.0)
        step = 0 if tie else 0.001 * i
        out[s] = {
            "auc": gray["auc"] + auc_shift + step + noise(0.005),
            "ab_mse": gray["ab_mse"] + mse_shift + noise(5.0),
            "colourfulness": cf,
            "delta_cf": gray["delta_cf"] + noise(1.0) if tie else np.abs(cf - gray["colourfulness_true"]),
        }
    return {s: {k: v.tolist() for k, v in m.items()} for s, m in out.items()}


def as_lists(gray):
    return {k: v.tolist() for k, v in gray.items()}


@pytest.fixture(scope="module")
def study_data():
    """A: a clear win over gray (AuC + 0.02, ab MSE − 20); B: gray plus zero-mean noise (a tie on
    every measure); C: a loss (AuC − 0.02, ab MSE + 20), its seeds named by strings."""
    rng = np.random.default_rng(7)
    gray = gray_scores(rng)
    per_image = {
        "A": model(rng, gray, 0.02, -20.0, 0.6),
        "B": model(rng, gray, 0.0, 0.0, 0.0, tie=True),
        "C": model(rng, gray, -0.02, 20.0, 0.3, seeds=("s0", "s1", "s2")),
    }
    return per_image, as_lists(gray)


@pytest.fixture(scope="module")
def summary(study_data):
    return study.summarize(*study_data, costs=COSTS, resamples=RESAMPLES)


def bullet(text, first, second):
    """The bullet of `first` vs `second`, split into its ranked part and its colourfulness part."""
    line = next(x for x in text.splitlines() if x.startswith(f"- **{first} vs {second}**: "))
    ranked, _, undirected = line.partition(" Colourfulness:")
    return ranked, undirected


def clause(ranked, word):
    """The clause of a bullet that starts with `word` ("better on", "worse on", "no difference")."""
    body = ranked.split("**: ", 1)[1]
    return next((c for c in body.split("; ") if c.startswith(word)), "")


# ---- paired_bootstrap ----------------------------------------------------------------------------


def test_paired_bootstrap_is_deterministic_for_a_seed_and_moves_with_it():
    d = np.random.default_rng(1).normal(0.3, 1.0, 300)
    assert study.paired_bootstrap(d, 3000, seed=5) == study.paired_bootstrap(d.tolist(), 3000, seed=5)
    assert study.paired_bootstrap(d, 3000, seed=5) != study.paired_bootstrap(d, 3000, seed=6)
    mean, low, high = study.paired_bootstrap(d, 3000)
    assert mean == pytest.approx(d.mean()) and low < mean < high


def test_paired_bootstrap_interval_has_the_width_and_coverage_of_normal_theory():
    mu, sd, n = 1.5, 2.0, 400
    d = np.random.default_rng(2).normal(mu, sd, n)
    mean, low, high = study.paired_bootstrap(d)
    assert low < mu < high
    assert high - low == pytest.approx(2 * 1.96 * d.std(ddof=1) / np.sqrt(n), rel=0.15)
    # coverage: the 95 % interval holds the true mean for about 95 % of data sets (binomial sd 1.5 %)
    rng = np.random.default_rng(3)
    hits = 0
    for i in range(200):
        _, lo, hi = study.paired_bootstrap(rng.normal(mu, sd, 100), resamples=2000, seed=i)
        hits += lo < mu < hi
    assert 0.89 <= hits / 200 <= 0.99


def test_paired_bootstrap_draws_in_chunks_without_changing_the_answer(monkeypatch):
    d = np.random.default_rng(4).normal(0, 1, 50)
    whole = study.paired_bootstrap(d, 1000)
    monkeypatch.setattr(study, "CHUNK", 50 * 1000)  # one chunk either way: the same draws
    assert study.paired_bootstrap(d, 1000) == whole
    monkeypatch.setattr(study, "CHUNK", 50 * 7)  # 7 resamples a chunk: 143 chunks, memory 7 x N
    mean, low, high = study.paired_bootstrap(d, 1000)
    assert (
        mean == whole[0]
        and low == pytest.approx(whole[1], abs=0.05)
        and high == pytest.approx(whole[2], abs=0.05)
    )


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, float("nan")]])
def test_paired_bootstrap_refuses_what_has_no_interval(bad):
    with pytest.raises(ValueError, match="paired_bootstrap"):
        study.paired_bootstrap(bad)


# ---- summarize -----------------------------------------------------------------------------------


def test_verdicts_against_gray_follow_the_known_answer_in_the_right_direction(summary):
    v = {m: {k: c["verdict"] for k, c in summary["vs_gray"][m].items()} for m in "ABC"}
    assert v["A"]["auc"] == "better" and v["B"]["auc"] == "tie" and v["C"]["auc"] == "worse"
    # ab MSE is lower-is-better: A's difference is negative and that is "better"
    assert summary["vs_gray"]["A"]["ab_mse"]["high"] < 0 and v["A"]["ab_mse"] == "better"
    assert summary["vs_gray"]["C"]["ab_mse"]["low"] > 0 and v["C"]["ab_mse"] == "worse"
    assert v["B"] == {"ab_mse": "tie", "colourfulness": None, "delta_cf": "tie", "auc": "tie"}
    assert all(v[m]["colourfulness"] is None for m in "ABC")
    assert summary["metrics"] == ["ab_mse", "colourfulness", "delta_cf", "auc"]  # REGISTRY order


def test_comparisons_are_seed_averaged_paired_differences(summary, study_data):
    per_image, gray = study_data
    a = np.mean([per_image["A"][s]["auc"] for s in SEEDS], axis=0)  # each photo over seeds
    c = np.mean([per_image["C"][s]["auc"] for s in ("s0", "s1", "s2")], axis=0)
    mean, low, high = study.paired_bootstrap(a - np.asarray(gray["auc"]), RESAMPLES)
    got = summary["vs_gray"]["A"]["auc"]
    assert (got["mean"], got["low"], got["high"]) == pytest.approx((mean, low, high))
    assert got["mean"] == pytest.approx(summary["models"]["A"]["auc"]["mean"] - summary["gray"]["auc"])
    assert got["mean"] == pytest.approx(0.02 + 0.001, abs=0.001)  # the shift, plus the mean seed step
    pair = next(p for p in summary["pairs"] if (p["a"], p["b"]) == ("A", "C"))
    assert (pair["auc"]["mean"], pair["auc"]["low"], pair["auc"]["high"]) == pytest.approx(
        study.paired_bootstrap(a - c, RESAMPLES)
    )


def test_pairs_are_every_unordered_pair_in_input_order_with_the_first_ones_verdict(summary):
    assert [(p["a"], p["b"]) for p in summary["pairs"]] == [("A", "B"), ("A", "C"), ("B", "C")]
    verdicts = {(p["a"], p["b"]): p["auc"]["verdict"] for p in summary["pairs"]}
    assert verdicts == {("A", "B"): "better", ("A", "C"): "better", ("B", "C"): "better"}
    ab = {(p["a"], p["b"]): p["ab_mse"]["verdict"] for p in summary["pairs"]}
    assert ab == {("A", "B"): "better", ("A", "C"): "better", ("B", "C"): "better"}


def test_means_min_and_max_are_over_the_seeds_means(summary, study_data):
    per_image, gray = study_data
    for name in "AC":
        per_seed = {str(s): float(np.mean(v["auc"])) for s, v in per_image[name].items()}
        got = summary["models"][name]["auc"]
        assert got["per_seed"] == pytest.approx(per_seed)
        assert got["min"] == min(per_seed.values()) and got["max"] == max(per_seed.values())
        assert got["mean"] == pytest.approx(np.mean(list(per_seed.values())))
        assert got["max"] - got["min"] == pytest.approx(0.002, abs=0.001)  # the seed steps 0, 0.001, 0.002
    assert summary["seeds"] == {"A": [0, 1, 2], "B": [0, 1, 2], "C": ["s0", "s1", "s2"]}
    assert summary["gray"]["auc"] == pytest.approx(np.mean(gray["auc"]))
    assert summary["truth"] == {"colourfulness": pytest.approx(np.mean(gray["colourfulness_true"]))}
    assert summary["models"]["A"]["cost"] == COSTS["A"] and summary["models"]["B"]["cost"] is None
    assert (summary["n_photos"], summary["resamples"], summary["level"]) == (N, RESAMPLES, 0.95)


def test_summary_is_plain_json_and_reproducible(summary, study_data):
    assert json.loads(json.dumps(summary)) == summary  # no numpy numbers, no non-string keys
    assert study.summarize(*study_data, costs=COSTS, resamples=RESAMPLES) == summary


def test_summarize_refuses_data_that_cannot_be_paired(study_data):
    per_image, gray = study_data
    short = {"A": {0: {k: v[:-1] for k, v in per_image["A"][0].items()}}}
    with pytest.raises(ValueError, match="A seed 0 has 199 photos of ab_mse"):
        study.summarize(short, gray)
    with pytest.raises(ValueError, match="gray baseline has 199 photos"):
        study.summarize(per_image, gray | {"colourfulness_true": gray["colourfulness_true"][1:]})
    with pytest.raises(ValueError, match="no photos"):
        study.summarize({"A": {0: {"auc": []}}}, {"auc": []})
    with pytest.raises(ValueError, match="lacks metrics"):
        study.summarize({"A": {0: {"auc": [0.5]}, 1: {"auc": [0.5], "ssim": [0.9]}}}, {"auc": [0.4]})
    with pytest.raises(ValueError, match="no results"):
        study.summarize(per_image, gray, costs={"D": {"seconds_per_epoch": 1.0, "parameters": 1}})
    with pytest.raises(ValueError, match="no seeds"):
        study.summarize({"A": {}}, {"auc": [0.4]})


# ---- words ---------------------------------------------------------------------------------------


def test_conclusions_say_better_tie_and_worse_as_the_numbers_do(summary):
    text = study.conclusions(summary)
    ranked, undirected = bullet(text, "A", "gray baseline")
    assert "AuC" in clause(ranked, "better on") and "ab MSE" in clause(ranked, "better on")
    assert clause(ranked, "worse on") == "" and clause(ranked, "no difference") == ""
    ranked, _ = bullet(text, "B", "gray baseline")
    assert "no difference beyond the noise on any measure" in ranked
    assert "better" not in ranked and "worse" not in ranked
    ranked, _ = bullet(text, "C", "gray baseline")
    assert "AuC" in clause(ranked, "worse on") and "ab MSE" in clause(ranked, "worse on")
    ranked, _ = bullet(text, "A", "C")
    assert "AuC" in clause(ranked, "better on")
    # the numbers quoted are the summary's, to the precision of the interval's width (±0.0004 here)
    auc = summary["vs_gray"]["A"]["auc"]
    assert f"AuC ({auc['mean']:+.4f}, interval {auc['low']:+.4f} to {auc['high']:+.4f})" in clause(
        bullet(text, "A", "gray baseline")[0], "better on"
    )


def test_colourfulness_is_described_never_ranked(summary):
    text = study.conclusions(summary)
    for line in (x for x in text.splitlines() if x.startswith("- ")):
        ranked, undirected = line.partition(" Colourfulness:")[::2]
        assert "olourfulness" not in ranked  # never in a better / worse / no-difference clause
        assert undirected and "better" not in undirected and "worse" not in undirected
    _, undirected = bullet(text, "A", "gray baseline")
    a, truth = summary["models"]["A"]["colourfulness"]["mean"], summary["truth"]["colourfulness"]
    assert f"A {a:.1f}, gray baseline 0, the photos' own {truth:.1f}." in undirected


def test_conclusions_give_costs_only_when_both_are_known_and_say_how_intervals_were_made(summary):
    text = study.conclusions(summary)
    assert "at 28 s an epoch and 3.9 M parameters against 11 s and 0.95 M" in bullet(text, "A", "C")[0]
    assert "an epoch" not in bullet(text, "A", "B")[0] and "an epoch" not in bullet(text, "B", "C")[0]
    last = text.splitlines()[-1]
    assert last.startswith(
        "Intervals: 95 % percentile bootstrap over the 200 held-out photos (2,000 resamples)"
    )
    assert "averaged over 3 seeds" in last and "includes zero is not a finding" in last
    assert len([x for x in text.splitlines() if x.startswith("- ")]) == 3 + 3  # per model, per pair


def test_conclusions_can_be_narrowed_to_some_metrics(summary):
    text = study.conclusions(summary, metrics=["auc"])
    ranked, undirected = bullet(text, "A", "gray baseline")
    assert "AuC" in ranked and "ab MSE" not in ranked and "ΔCF" not in ranked and undirected == ""


def test_answer_names_the_best_model_and_whether_its_lead_is_beyond_the_noise(summary):
    text = study.answer(summary)
    best = summary["models"]["A"]["auc"]["mean"]
    assert text.startswith(
        f"On AuC, A colorizes best ({best:.3f}); its lead over B and C is beyond the noise."
    )
    assert "Only A beats the gray baseline beyond the noise; C does worse than it." in text
    assert study.answer(summary, "ab_mse").startswith("On ab MSE, A colorizes best")  # lowest is best
    with pytest.raises(ValueError, match="no better direction"):
        study.answer(summary, "colourfulness")


def test_answer_says_which_leads_are_noise():
    rng = np.random.default_rng(8)
    gray = gray_scores(rng)
    a = model(rng, gray, 0.02, -20.0, 0.6)
    near = {
        s: {k: (np.asarray(v) + zero_mean(rng, 0.01)).tolist() for k, v in m.items()} for s, m in a.items()
    }
    per_image = {"A": a, "A twin": near, "C": model(rng, gray, -0.02, 20.0, 0.3)}
    text = study.answer(study.summarize(per_image, as_lists(gray), resamples=RESAMPLES))
    best = "A" if "On AuC, A colorizes" in text else "A twin"
    other = "A twin" if best == "A" else "A"
    assert f"On AuC, {best} colorizes best" in text
    assert f"its lead over C is beyond the noise, over {other} it is not." in text
    assert "Only A and A twin beat the gray baseline beyond the noise; C does worse than it." in text


def test_answer_with_only_tied_models_says_no_model_is_better():
    rng = np.random.default_rng(9)
    gray = gray_scores(rng)
    per_image = {"B1": model(rng, gray, 0, 0, 0, tie=True), "B2": model(rng, gray, 0, 0, 0, tie=True)}
    summary = study.summarize(per_image, as_lists(gray), resamples=RESAMPLES)
    text = study.answer(summary)
    assert text.startswith("On AuC, no model is better beyond the noise:")
    assert "within the noise" in text and "No model beats the gray baseline" in text
    assert "colorizes best" not in text
    ranked, _ = bullet(study.conclusions(summary), "B1", "B2")
    assert "no difference beyond the noise on any measure" in ranked


def test_table_gives_each_models_mean_and_seed_range_then_its_cost(summary, study_data):
    per_image, _ = study_data
    text = study.table(summary)
    metrics_table, costs_table = text.split("\n\n")[0], text.split("\n\n")[-1]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in metrics_table.splitlines()}
    means = [float(np.mean(s["auc"])) for s in per_image["A"].values()]
    auc = rows["A"][1 + summary["metrics"].index("auc")]
    assert auc.startswith(f"{np.mean(means):.4f} [") and f"{min(means):.4f}–{max(means):.4f}]" in auc
    assert "[" not in " ".join(rows["gray baseline"])  # one number a metric: gray has no seeds
    assert f"{summary['n_photos']} held-out photos" in text
    cost = COSTS["A"]
    assert f"| A | {cost['seconds_per_epoch']:.1f} | {cost['parameters']:,} |" in costs_table


def test_collect_refuses_results_scored_on_other_photos():
    record = {
        "model": "resnet18", "options": {}, "runs": {"0": {"history": [{"seconds": 2.0}], "parameters": 5}},
        "rows": {"": {"0": {"per_image": {"auc": [0.5, 0.6]}}}},
        "gray baseline": {"files": ["a.jpg", "b.jpg"], "per_image": {"auc": [0.4, 0.5]}},
    }  # fmt: skip
    per_image, gray, costs = study.collect({"one": record})
    assert per_image == {"ResNet18": {"0": {"auc": [0.5, 0.6]}}} and gray == {"auc": [0.4, 0.5]}
    assert costs == {"ResNet18": {"seconds_per_epoch": 2.0, "parameters": 5}}
    other = {**record, "gray baseline": {**record["gray baseline"], "files": ["a.jpg", "c.jpg"]}}
    with pytest.raises(ValueError, match="other held-out photos"):
        study.collect({"one": record, "two": other})
