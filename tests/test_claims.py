"""claims.py: every direction and significance word follows the numbers (synthetic summaries, no store).

`synthetic_summaries` builds exp1..exp3 summaries in the schema of summaries.py from
per-seed values whose effects point the way a test asks; test_tables and test_report
use it too.
"""
import math

import numpy as np
import pytest

from dnnls_tf.present import claims, readings, verdicts
from dnnls_tf.study import stats
from dnnls_tf.study.results import METRICS, SUMMARY_SCHEMA, TEST_SET_METRICS, adjust_family

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # near-constant seed arms

SEEDS = [0, 1, 2, 3, 4]
DESCRIPTION = "synthetic numbers for tests"
LAYERS = ("conv1", "conv2", "conv3", "fc1", "fc2")
DIRECTED = ("schedule", "dropout_best", "transfer", "batch_norm")  # effects a test can point either way


def _group(key, test, *, train=None, val=None, splits=("half_a", "half_b"), seeds=SEEDS, lr=0.01):
    """A summary group (summaries.group_entry's keys) from per-seed test accuracies (NaN: unstable run)."""
    test = np.asarray(test, dtype=float)
    train = np.asarray(train if train is not None else test + 0.25)
    val = np.asarray(val if val is not None else test + 0.01)
    train, val = np.where(np.isnan(test), np.nan, train), np.where(np.isnan(test), np.nan, val)
    values = {"test_accuracy": test, "val_accuracy": val, "train_accuracy": train,
              "generalization_gap": train - val, "train_test_gap": train - test}
    tag = "-".join(str(k) for k in key)
    mean = float(np.nanmean(test)) if np.isfinite(test).any() else math.nan
    return {"key": list(key), "kind": key[0], "value": key[1] if len(key) > 1 else None, "seeds": list(seeds),
            "run_ids": [f"{tag}-s{seed}" for seed in seeds], "splits": list(splits), "learning_rate": lr,
            "n_runs": len(seeds), "n_unstable": int(np.isnan(test).sum()), "n_diverged": 0,
            "metrics": {m: stats.summarize(values[m]) for m in METRICS},
            "best_epoch": stats.summarize([5.0] * len(seeds)),
            "test_interval": [mean - 0.03, mean + 0.03]}, values


class _Builder:
    """Groups and comparisons of one synthetic experiment."""

    def __init__(self):
        self.groups, self.values, self.comparisons = [], {}, []

    def add(self, key, test, **kwargs):
        entry, values = _group(key, test, **kwargs)
        self.groups.append(entry)
        self.values[tuple(key)] = values
        return entry

    def compare(self, name, first, second, metric, headline, paired=True, interval=None):
        a, b = self.values[tuple(first)][metric], self.values[tuple(second)][metric]
        result = stats.compare(a, b, paired)
        if interval is None and metric in TEST_SET_METRICS:
            d = result["difference"]
            interval = [d - 0.01, d + 0.01] if math.isfinite(d) else [math.nan, math.nan]
        self.comparisons.append({"name": name, "first": list(first), "second": list(second), "metric": metric,
                                 "headline": headline, **result, "p_holm": math.nan,
                                 "test_set_interval": interval or [math.nan, math.nan]})

    def base(self, experiment):
        return {"schema": SUMMARY_SCHEMA, "experiment": experiment, "profile": "quick", "description": DESCRIPTION,
                "library_version": "test", "data": {"holdout_train": 800, "holdout_val": 200, "half_a": 500,
                                                    "half_b": 500, "test": 300, "source": "folder"},
                "epochs": 6, "seeds": SEEDS, "groups": self.groups,
                "comparisons": adjust_family(self.comparisons, experiment)}


def _arm(base, effect, noise=0.004, offset=0):
    """Per-seed accuracies: base + effect with a small seed-dependent wiggle (paired tests: tiny p)."""
    return [base + effect + noise * math.sin(seed + offset) for seed in SEEDS]


def _per_class(*key):
    accuracy = np.linspace(0.2, 0.6, 10).tolist()
    return {"key": list(key), "accuracy": accuracy, "confusion": np.eye(10, dtype=int).tolist()}


def synthetic_exp1(effects):
    b, rates = _Builder(), [0.001, 0.002, 0.004, 0.008, 0.016]
    for rate, stable in ((0.064, False), (0.016, True), (0.004, True)):
        b.add(("probe", rate), [0.5 if stable else math.nan], seeds=[100], splits=("holdout_train", "holdout_val"))
    for i, rate in enumerate(rates):
        b.add(("rate", rate), _arm(0.40 + 0.02 * i, 0.0, offset=i), splits=("holdout_train", "holdout_val"), lr=rate)
    best = 0.016
    for i in range(2):
        b.add(("trial", i), [0.45 + 0.01 * i], seeds=[1000], splits=("holdout_train", "holdout_val"))
    constant = b.values["rate", best]["test_accuracy"]
    b.add(("schedule",), constant + effects["schedule"] + 0.003 * np.cos(SEEDS),
          splits=("holdout_train", "holdout_val"))
    b.add(("peak_constant",), _arm(0.47, 0.0, offset=7), splits=("holdout_train", "holdout_val"), lr=0.032)
    for name, first, second, metric, headline in (
            ("schedule_vs_best_constant", ("schedule",), ("rate", best), "test_accuracy", True),
            ("schedule_vs_best_constant", ("schedule",), ("rate", best), "generalization_gap", True),
            ("schedule_vs_peak_constant", ("schedule",), ("peak_constant",), "test_accuracy", True),
            ("peak_constant_vs_best_constant", ("peak_constant",), ("rate", best), "test_accuracy", True),
            ("schedule_vs_best_constant", ("schedule",), ("rate", best), "train_test_gap", False),
            ("schedule_vs_peak_constant", ("schedule",), ("peak_constant",), "generalization_gap", False)):
        b.compare(name, first, second, metric, headline)
    schedule = {"name": "warmup_cosine", "peak": 0.032, "warmup_epochs": 1, "final_fraction": 0.01}
    lr = np.geomspace(1e-4, 0.3, 20).tolist()
    return {**b.base("exp1"),
            "range_test": {"steps": 20, "lr_at_lowest_smoothed_loss": 0.05, "lowest_smoothed_loss": 1.9,
                           "anchor": 0.256, "blew_up": True, "lr": lr, "loss": np.linspace(2.3, 1.9, 20).tolist()},
            "rule": {"ladder_factor": 4.0, "ladder_rungs": 3, "probe_seeds": [100], "max_span": 16.0,
                     "saturation_gain": 0.01, "collapse_accuracy": 0.2},
            "ladder": [{"rate": 0.064, "probes": 1, "sweep_runs": 0, "unstable": 1, "stable": False, "gain": None,
                        "curve_source": "none"},
                       {"rate": 0.016, "probes": 1, "sweep_runs": 5, "unstable": 0, "stable": True, "gain": 0.004,
                        "curve_source": "sweep"},
                       {"rate": 0.004, "probes": 1, "sweep_runs": 5, "unstable": 0, "stable": True, "gain": 0.006,
                        "curve_source": "sweep"}],
            "grid": {"rates": rates, "top": 0.016, "bottom": 0.001,
                     "reasons": ["top 0.016: the highest rung at which every run is stable",
                                 "bottom 0.001: the lowest saturating rung"]},
            "grid_check": {"rates": [{"rate": r, "seeds": 5, "unstable": 0, "gain": 0.005, "saturated": True}
                                     for r in rates], "passed": True, "all_stable": True, "lowest_saturated": True},
            "best_constant_lr": best,
            "tuner": {"search_space": {"peak": [0.016, 0.064], "warmup_epochs": [0, 2],
                                       "final_fraction": [0.0, 0.01, 0.1]}, "budget": 2, "seed": 1000,
                      "trials": [{"index": i, "schedule": dict(schedule, warmup_epochs=i), "score": 0.45 + 0.01 * i,
                                  "run_id": f"trial{i}", "stable": True} for i in range(2)],
                      "chosen": 1},
            "schedule": schedule, "per_class": [_per_class("rate", best), _per_class("schedule")]}


def synthetic_exp2(effects, best=0.3):
    b, rates = _Builder(), [0.0, 0.15, 0.3, 0.45, 0.6]
    for i, p in enumerate(rates):
        if p == best:
            continue
        b.add(("dropout", p), _arm(0.40, 0.0, offset=i) if p < 0.6 else [math.nan] * 5)
    zero = b.values["dropout", 0.0]["test_accuracy"]
    b.add(("dropout", best), zero + effects["dropout_best"] + 0.003 * np.cos(SEEDS),
          train=zero + effects["dropout_best"] + 0.15)
    b.groups.sort(key=lambda g: g["value"])
    for p in (0.0, best):
        scratch = _arm(0.38, 0.0, offset=3)
        b.add(("transfer", p), np.asarray(scratch) + effects["transfer"] + 0.003 * np.cos(SEEDS),
              splits=("half_b", "half_a"))
        b.add(("scratch_b", p), scratch, splits=("half_b", "half_a"))
        b.add(("frozen_random", p), [0.30, math.nan, math.nan, math.nan, math.nan], splits=("half_b", "half_a"))
        b.add(("holdout", p), _arm(0.45, 0.0, offset=5), splits=("holdout_train", "holdout_val"))
    b.compare("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), "test_accuracy", True)
    b.compare("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), "generalization_gap", True)
    for p in (0.0, best):
        for control in ("scratch_b", "frozen_random", "holdout"):
            paired = control != "holdout"
            b.compare(f"transfer_vs_{control}", ("transfer", p), (control, p), "test_accuracy", True, paired)
            b.compare(f"transfer_vs_{control}", ("transfer", p), (control, p), "train_test_gap", False, paired)
        b.compare("transfer_vs_source", ("transfer", p), ("dropout", p), "test_accuracy", False, False)
        b.compare("frozen_random_vs_scratch_b", ("frozen_random", p), ("scratch_b", p), "test_accuracy", False)
    b.compare("dropout_best_vs_none", ("dropout", best), ("dropout", 0.0), "train_test_gap", False)
    return {**b.base("exp2"), "learning_rate": 0.016, "best_dropout": best, "dropout_rates": rates,
            "per_class": [_per_class(kind, p) for p in (0.0, best) for kind in ("dropout", "transfer")]}


def synthetic_exp3(effects, best=0.3):
    b = _Builder()
    none = _arm(0.40, 0.0, offset=1)
    b.add(("batch_norm",), np.asarray(none) + effects["batch_norm"] + 0.003 * np.cos(SEEDS))
    b.add(("dropout", 0.0), none)
    b.add(("dropout", best), _arm(0.41, 0.0, offset=2))
    b.compare("batch_norm_vs_none", ("batch_norm",), ("dropout", 0.0), "test_accuracy", True)
    b.compare("batch_norm_vs_none", ("batch_norm",), ("dropout", 0.0), "generalization_gap", True)
    b.compare("batch_norm_vs_none", ("batch_norm",), ("dropout", 0.0), "train_test_gap", False)
    rows = []
    for m, model in enumerate((["batch_norm"], ["dropout", 0.0], ["dropout", best])):
        for w, window in enumerate(("first", "last")):
            for layer, name in enumerate(LAYERS, start=1):
                size = 0.01 * (1 + m) / (1 + w) / layer
                row = {"model": model, "window": window, "layer": layer, "layer_name": name, "n": 5,
                       "mean": 1e-12 if name == "fc2" else 0.1 * size, "std": 2 * size, "mean_abs": size,
                       "grad_to_weight": 0.1 * (1 + m) / (1 + w), "temporal_snr": 0.2 + 0.01 * layer}
                rows.append({**row, **{f"{k}_ci": 0.1 * v for k, v in row.items()
                                       if k in ("mean", "std", "mean_abs", "grad_to_weight", "temporal_snr")}})
    return {**b.base("exp3"), "learning_rate": 0.016, "best_dropout": best, "window_epochs": 3, "gradients": rows,
            "per_class": [_per_class("batch_norm")]}


def synthetic_summaries(direction: int = 1, size: float = 0.05, **overrides) -> dict:
    """exp1..exp3 summaries whose directed effects are direction * size (accuracy fraction)."""
    effects = {name: direction * size for name in DIRECTED}
    effects.update(overrides)
    return {"exp1": synthetic_exp1(effects), "exp2": synthetic_exp2(effects), "exp3": synthetic_exp3(effects)}


def entry(summaries, experiment, name, metric, first=None):
    return verdicts.find(summaries[experiment], name, metric, first)


# ------------------------------------------------------------------ verdicts
def test_a_positive_significant_effect_raises():
    summaries = synthetic_summaries(+1)
    test = entry(summaries, "exp2", "dropout_best_vs_none", "test_accuracy")
    v = verdicts.verdict(test)
    assert v.significant and v.direction == 1 and v.adjusted and v.p < verdicts.ALPHA
    sentence = verdicts.effect_sentence(summaries["exp2"], test)
    assert sentence.startswith("Dropout 0.3 raises test accuracy by 5.0 pp")
    assert "lowers" not in sentence and "no significant" not in sentence and "Holm p" in sentence
    assert verdicts.help_phrase(test).startswith("dropout 0.3 helps test accuracy")
    assert verdicts.beats_phrase(test).startswith("dropout 0.3 beats no dropout")


def test_the_same_effect_pointing_the_other_way_flips_every_word():
    summaries = synthetic_summaries(-1)
    test = entry(summaries, "exp2", "dropout_best_vs_none", "test_accuracy")
    sentence = verdicts.effect_sentence(summaries["exp2"], test)
    assert sentence.startswith("Dropout 0.3 lowers test accuracy by 5.0 pp")
    assert "raises" not in sentence and "−5.0" not in sentence.split("(")[0]
    assert verdicts.help_phrase(test).startswith("dropout 0.3 hurts test accuracy")
    assert verdicts.beats_phrase(test).startswith("no dropout beats dropout 0.3")
    bn = entry(summaries, "exp3", "batch_norm_vs_none", "test_accuracy")
    assert "lowers test accuracy" in verdicts.effect_sentence(summaries["exp3"], bn)


def test_the_v1_sentence_cannot_be_written():
    """v1 printed "raises test accuracy by a narrowly significant -3.3 points (p = 0.800)"."""
    summaries = synthetic_summaries(dropout_best=-0.033)
    test = entry(summaries, "exp2", "dropout_best_vs_none", "test_accuracy")
    test.update(p=0.8, p_holm=0.8)
    sentence = verdicts.effect_sentence(summaries["exp2"], test)
    assert "no significant difference in test accuracy" in sentence
    assert "−3.3 pp" in sentence and "Holm p = 0.800" in sentence
    for word in ("raises", "lowers", "narrowly", "beats", "helps"):
        assert word not in sentence
    assert "is no help to test accuracy" in verdicts.help_phrase(test)


def test_a_nan_p_says_no_test_was_possible():
    summaries = synthetic_summaries(+1)
    frozen = entry(summaries, "exp2", "transfer_vs_frozen_random", "test_accuracy", ("transfer", 0.0))
    assert not verdicts.verdict(frozen).testable
    sentence = verdicts.effect_sentence(summaries["exp2"], frozen)
    assert "no test was possible" in sentence and "fewer than two seeds" in sentence
    for word in ("raises", "lowers", "significant"):
        assert word not in sentence
    assert verdicts.beats_phrase(frozen).startswith("no test was possible")
    welch = entry(summaries, "exp2", "transfer_vs_source", "test_accuracy", ("transfer", 0.0))
    welch.update(p=math.nan, n_second=1)
    assert "fewer than two stable runs" in verdicts.effect_sentence(summaries["exp2"], welch)


def test_a_nan_p_for_identical_arms_names_the_reason():
    summaries = synthetic_summaries(+1)
    exp1 = summaries["exp1"]
    peak = next(g for g in exp1["groups"] if g["kind"] == "peak_constant")
    best = next(g for g in exp1["groups"] if g["key"] == ["rate", 0.016])
    peak["run_ids"] = best["run_ids"]
    same = entry(summaries, "exp1", "peak_constant_vs_best_constant", "test_accuracy")
    same.update(p=math.nan, p_holm=math.nan)
    assert "both arms are the same runs" in verdicts.effect_sentence(exp1, same)
    assert "the ablation's constant arm is the best constant rate itself" in claims.exp1_claims(exp1)["ablation"]


def test_seeds_agree_but_the_test_set_interval_includes_zero():
    summaries = synthetic_summaries(+1)
    test = entry(summaries, "exp1", "schedule_vs_best_constant", "test_accuracy")
    test["test_set_interval"] = [-0.01, 0.11]
    v = verdicts.verdict(test)
    assert v.seeds_significant and not v.significant and v.direction == 0
    sentence = verdicts.effect_sentence(summaries["exp1"], test)
    assert "no significant difference" in sentence and "includes zero" in sentence and "raises" not in sentence


def test_holm_not_raw_p_decides_a_headline_comparison():
    summaries = synthetic_summaries(+1)
    test = entry(summaries, "exp2", "dropout_best_vs_none", "test_accuracy")
    test.update(p=0.02, p_holm=0.08)
    sentence = verdicts.effect_sentence(summaries["exp2"], test)
    assert "no significant difference" in sentence and "Holm p = 0.080" in sentence


def test_a_secondary_comparison_says_its_p_is_uncorrected():
    summaries = synthetic_summaries(+1)
    gap = entry(summaries, "exp1", "schedule_vs_best_constant", "train_test_gap")
    assert not gap["headline"] and not math.isfinite(gap["p_holm"])
    assert "uncorrected p = " in verdicts.effect_sentence(summaries["exp1"], gap)


def test_gap_metrics_get_their_article_and_no_test_set_interval():
    summaries = synthetic_summaries(+1)
    gap = entry(summaries, "exp2", "dropout_best_vs_none", "generalization_gap")
    assert verdicts.verdict(gap).interval is None
    assert "the train-minus-validation gap" in verdicts.effect_sentence(summaries["exp2"], gap)


# ------------------------------------------------------------------ experiment sentences
def test_grid_check_sentence_reports_pass_and_fail_honestly():
    exp1 = synthetic_summaries()["exp1"]
    assert claims.grid_check_sentence(exp1).startswith("The grid check passes: every one of the 25 sweep runs")
    check = exp1["grid_check"]
    check.update(passed=False, all_stable=False, lowest_saturated=False)
    check["rates"][0].update(gain=0.03, saturated=False)
    check["rates"][-1].update(unstable=2)
    sentence = claims.grid_check_sentence(exp1)
    assert sentence.startswith("The grid check fails: 2 of the 25 sweep runs are unstable (at 0.016: 2 of 5)")
    assert "the lowest rate, 0.001, gains +3.00 pp" in sentence and "has not saturated" in sentence


def test_gradient_claims_quote_the_measures():
    exp3 = synthetic_summaries()["exp3"]
    gradient = claims.gradient_claims(exp3)
    assert "in fc2, whose mean is zero up to rounding" in gradient["signed_mean"]
    assert "between 0.21 and 0.25" in gradient["snr"]
    # dropout 0.3's mean |g| is (1 + 2) / (1 + 1) of no dropout's in the synthetic rows
    assert gradient["dropout_mean_abs_last"].endswith("last window: 1.50, 1.50, 1.50, 1.50, 1.50.")


def test_every_claim_is_plain_text_and_answers_quote_the_numbers():
    summaries = synthetic_summaries(+1)
    everything = claims.all_claims(summaries)
    assert {"abstract", "answer_1", "answer_2", "answer_3", "headline_count"} <= set(everything)
    assert all(isinstance(text, str) and text and "\\" not in text for text in everything.values())
    assert "dropout 0.3 helps test accuracy" in everything["abstract"]
    assert "Dropout 0.3 raises test accuracy by 5.0 pp" in everything["answer_2"]
    assert "the tuned warm-up + cosine schedule beats the best constant rate" in everything["abstract"]
    flipped = claims.all_claims(synthetic_summaries(-1))
    assert "dropout 0.3 hurts test accuracy" in flipped["abstract"]
    assert "the best constant rate beats the tuned warm-up + cosine schedule" in flipped["abstract"]
    assert "Dropout 0.3 lowers test accuracy by 5.0 pp" in flipped["answer_2"]


def test_headline_count_counts_verdicts():
    summaries = synthetic_summaries(+1)
    sentence = claims.headline_count_sentence(summaries)
    decided = [verdicts.verdict(e) for s in summaries.values() for e in s["comparisons"] if e["headline"]]
    assert sentence.startswith(f"Of the {len(decided)} headline comparisons of the 3 experiments, "
                               f"{sum(v.significant for v in decided)} are significant")
    assert f"{sum(not v.testable for v in decided)} could not be tested" in sentence


@pytest.mark.parametrize("direction", [1, -1])
def test_find_raises_for_an_unknown_comparison(direction):
    with pytest.raises(KeyError):
        verdicts.find(synthetic_summaries(direction)["exp3"], "nothing", "test_accuracy")


# ------------------------------------------------------------------ readings (what several numbers mean together)
def test_the_ablation_reading_follows_both_verdicts():
    up, down = (readings.ablation_reading(synthetic_summaries(d)["exp1"]) for d in (+1, -1))
    assert "the gain comes from the warm-up and decay, not from the higher rate" in up
    assert "no clean separation" in down and "the schedule loses to a constant run at its peak" in down
    exp1 = synthetic_summaries(+1)["exp1"]
    peak = verdicts.find(exp1, "peak_constant_vs_best_constant", "test_accuracy")
    peak.update(difference=-0.04, p_holm=0.01, test_set_interval=[-0.05, -0.03])
    assert "the higher rate alone hurts" in readings.ablation_reading(exp1)


def test_the_transfer_reading_flips_with_each_control():
    up, down = (readings.transfer_reading(synthetic_summaries(d)["exp2"], 0.0) for d in (+1, -1))
    assert "a head on them beats the whole network trained on B" in up
    assert "the whole network trained on B beats a head on them" in down
    for text in (up, down):  # frozen random: one stable seed, no test
        assert "could not be tested against random ones (no test was possible)" in text
        assert "clean train-minus-test gap" in text
    exp2 = synthetic_summaries(+1)["exp2"]
    assert readings.transfer_best_brief(exp2) == readings.transfer_reading(exp2, 0.3)  # verdicts differ: in full
    for name, metric in readings.TRANSFER_COMPARISONS:  # the same verdicts at both rates: one short sentence
        zero, best = (verdicts.find(exp2, name, metric, ("transfer", p)) for p in (0.0, 0.3))
        best.update({key: zero[key] for key in ("difference", "p", "p_holm", "test_set_interval")})
    assert readings.transfer_best_brief(exp2).startswith("With dropout 0.3 every one of these verdicts is the same")


def test_the_grid_top_reading_names_the_unstable_rungs():
    exp1 = synthetic_summaries()["exp1"]
    text = readings.grid_top_sentence(exp1)
    assert "unstable at every rung from 0.064 up (1 collapsed)" in text and "blew up only at 0.256" in text
    for rung in exp1["ladder"]:
        rung["stable"] = True
    assert readings.grid_top_sentence(exp1).startswith("Every probed rung trained stably")


def test_the_dropout_trend_says_through_which_accuracy_the_gap_falls():
    exp2 = synthetic_summaries()["exp2"]
    for group, (train, val) in zip(readings.tables.group_entries(exp2, ("dropout",)),
                                   ((0.95, 0.45), (0.85, 0.46), (0.75, 0.45), (0.65, 0.44), (0.55, 0.43))):
        metrics = group["metrics"]
        metrics["train_accuracy"]["mean"], metrics["val_accuracy"]["mean"] = train, val
        metrics["generalization_gap"]["mean"] = train - val
        metrics["test_accuracy"]["mean"] = val - 0.01
    text = readings.dropout_trend(exp2)
    assert text.startswith("The train-minus-validation gap falls with every step up in p, from 50.0 pp at p = 0")
    assert "mostly because train accuracy falls" in text and "keeps the network from fitting half A" in text
    group = readings.tables.group_of(exp2, ("dropout", 0.45))
    group["metrics"]["generalization_gap"]["mean"] = 0.35  # a rise on the way: not "with every step"
    assert "gap falls overall" in readings.dropout_trend(exp2)
    group["metrics"]["generalization_gap"]["mean"] = 0.6
    readings.tables.group_of(exp2, ("dropout", 0.6))["metrics"]["generalization_gap"]["mean"] = 0.6
    text = readings.dropout_trend(exp2)
    assert "gap does not fall" in text and "mostly because" not in text and "fitting half A" not in text


def test_gradient_readings_explain_only_what_the_numbers_show():
    exp3 = synthetic_summaries()["exp3"]
    text = readings.dropout_gradients(exp3)
    assert "scales mean |g| by 1.50 (per layer) in the first window and by 1.50 in the last" in text
    assert "inverted dropout" not in text  # dropout's train accuracy is the higher one here: no explanation
    none = readings.tables.group_of(exp3, ("dropout", 0.0))["metrics"]["train_accuracy"]
    none["mean"] = 0.99
    assert "without dropout the network fits half A almost completely" in readings.dropout_gradients(exp3)
    assert "Scale invariance predicts" not in readings.bn_gradients(exp3)  # equal change in both models
    for row in exp3["gradients"]:
        if row["model"] == ["batch_norm"] and row["window"] == "last":
            row["grad_to_weight"] /= 4
    assert "Scale invariance predicts this" in readings.bn_gradients(exp3)


def test_the_checks_sentence_counts_where_seeds_and_test_set_disagree():
    summaries = synthetic_summaries(+1)
    test = entry(summaries, "exp1", "schedule_vs_best_constant", "test_accuracy")
    test.update(p_holm=0.2)  # the interval still excludes zero
    text = readings.checks_sentence(summaries)
    assert "1 has a test-set interval that excludes zero but a Holm p of at least 0.05" in text
    assert "the variation between seeds, more than the size of the test set, limits" in text
