"""Sentences: every direction and significance word follows the numbers (synthetic summaries, no store)."""
import math

import pytest

from dnnls_tf.experiments.dropout_transfer import sentences as exp2_words
from dnnls_tf.experiments.gradient_flow import sentences as exp3_words
from dnnls_tf.experiments.learning_rate import sentences as exp1_words
from dnnls_tf.present import sentences
from dnnls_tf.publish import report
from synthetic import find, synthetic_dicts, synthetic_summaries, typed

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # near-constant seed arms
NOUNS = {"exp1": exp1_words.noun, "exp2": exp2_words.noun, "exp3": exp3_words.noun}


def say(summaries, experiment):
    return sentences.Phrasing(summaries[experiment], NOUNS[experiment])


def entry(summaries, experiment, name, metric, first=None):
    return summaries[experiment].comparison(name, metric, first)


# ------------------------------------------------------------------ verdicts
def test_a_positive_significant_effect_raises():
    summaries = synthetic_summaries(+1)
    test = entry(summaries, "exp2", "dropout_best_vs_none", "test_accuracy")
    v = sentences.verdict(test)
    assert v.significant and v.direction == 1 and v.adjusted and v.p < sentences.ALPHA
    sentence = say(summaries, "exp2").effect(test)
    assert sentence.startswith("Dropout 0.3 raises test accuracy by 5.0 pp")
    assert "lowers" not in sentence and "no significant" not in sentence and "Holm p" in sentence
    assert say(summaries, "exp2").helps(test).startswith("dropout 0.3 helps test accuracy")
    assert say(summaries, "exp2").beats(test).startswith("dropout 0.3 beats no dropout")


def test_the_same_effect_pointing_the_other_way_flips_every_word():
    summaries = synthetic_summaries(-1)
    test = entry(summaries, "exp2", "dropout_best_vs_none", "test_accuracy")
    sentence = say(summaries, "exp2").effect(test)
    assert sentence.startswith("Dropout 0.3 lowers test accuracy by 5.0 pp")
    assert "raises" not in sentence and "−5.0" not in sentence.split("(")[0]
    assert say(summaries, "exp2").helps(test).startswith("dropout 0.3 hurts test accuracy")
    assert say(summaries, "exp2").beats(test).startswith("no dropout beats dropout 0.3")
    bn = entry(summaries, "exp3", "batch_norm_vs_none", "test_accuracy")
    assert "lowers test accuracy" in say(summaries, "exp3").effect(bn)


def test_a_non_significant_difference_is_never_called_an_absence_of_effect():
    """v1 printed "raises test accuracy by a narrowly significant -3.3 points (p = 0.800)"; v2 "is no help"."""
    dicts = synthetic_dicts(dropout_best=-0.033)
    find(dicts, "exp2", "dropout_best_vs_none", "test_accuracy").update(p=0.8, p_holm=0.8)
    summaries = typed(dicts)
    test = entry(summaries, "exp2", "dropout_best_vs_none", "test_accuracy")
    sentence = say(summaries, "exp2").effect(test)
    assert "no significant difference in test accuracy" in sentence
    assert "−3.3 pp" in sentence and "Holm p = 0.800" in sentence
    for word in ("raises", "lowers", "narrowly", "beats", "helps", "no help", "no effect"):
        assert word not in sentence
    helps = say(summaries, "exp2").helps(test)
    assert "by no significant amount (−3.3 pp" in helps and "no help" not in helps


def test_a_nan_p_says_no_test_was_possible():
    dicts = synthetic_dicts(+1)
    find(dicts, "exp2", "transfer_vs_holdout", "test_accuracy", ("transfer", 0.0)).update(
        p=math.nan, p_holm=math.nan, n_second=1)
    summaries = typed(dicts)
    frozen = entry(summaries, "exp2", "transfer_vs_frozen_random", "test_accuracy", ("transfer", 0.0))
    assert not sentences.verdict(frozen).testable
    sentence = say(summaries, "exp2").effect(frozen)
    assert "no test was possible" in sentence and "fewer than two seeds" in sentence
    for word in ("raises", "lowers", "significant"):
        assert word not in sentence
    assert say(summaries, "exp2").beats(frozen).startswith("no test was possible")
    welch = entry(summaries, "exp2", "transfer_vs_holdout", "test_accuracy", ("transfer", 0.0))
    assert "fewer than two stable runs" in say(summaries, "exp2").effect(welch)


def test_a_nan_p_for_identical_arms_names_the_reason():
    dicts = synthetic_dicts(+1)
    exp1 = dicts["exp1"]
    peak = next(g for g in exp1["groups"] if g["kind"] == "peak_constant")
    best = next(g for g in exp1["groups"] if g["key"] == ["rate", 0.016])
    peak["run_ids"] = best["run_ids"]
    find(dicts, "exp1", "peak_constant_vs_best_constant", "test_accuracy").update(p=math.nan, p_holm=math.nan)
    summaries = typed(dicts)
    same = entry(summaries, "exp1", "peak_constant_vs_best_constant", "test_accuracy")
    assert "both arms are the same runs" in say(summaries, "exp1").effect(same)
    assert "the ablation's constant arm is the best constant rate itself" in \
        exp1_words.sentences(summaries["exp1"])["ablation"]


def test_seeds_agree_but_the_test_set_interval_includes_zero():
    dicts = synthetic_dicts(+1)
    find(dicts, "exp1", "schedule_vs_best_constant", "test_accuracy")["test_set_interval"] = [-0.01, 0.11]
    summaries = typed(dicts)
    test = entry(summaries, "exp1", "schedule_vs_best_constant", "test_accuracy")
    v = sentences.verdict(test)
    assert v.seeds_significant and not v.significant and v.direction == 0
    sentence = say(summaries, "exp1").effect(test)
    assert "no significant difference" in sentence and "includes zero" in sentence and "raises" not in sentence


def test_holm_not_raw_p_decides_a_headline_comparison():
    dicts = synthetic_dicts(+1)
    find(dicts, "exp2", "dropout_best_vs_none", "test_accuracy").update(p=0.02, p_holm=0.08)
    summaries = typed(dicts)
    sentence = say(summaries, "exp2").effect(entry(summaries, "exp2", "dropout_best_vs_none", "test_accuracy"))
    assert "no significant difference" in sentence and "Holm p = 0.080" in sentence


def test_a_secondary_comparison_says_its_p_is_uncorrected():
    summaries = synthetic_summaries(+1)
    gap = entry(summaries, "exp1", "schedule_vs_best_constant", "train_test_gap")
    assert not gap.headline and not math.isfinite(gap.p_holm)
    assert "uncorrected p = " in say(summaries, "exp1").effect(gap)


def test_gap_metrics_get_their_article_and_no_test_set_interval():
    summaries = synthetic_summaries(+1)
    gap = entry(summaries, "exp2", "dropout_best_vs_none", "generalization_gap")
    assert sentences.verdict(gap).interval is None
    assert "the train-minus-validation gap" in say(summaries, "exp2").effect(gap)


# ------------------------------------------------------------------ experiment sentences
def test_grid_check_sentence_reports_pass_and_fail_honestly():
    dicts = synthetic_dicts()
    assert exp1_words.grid_check_sentence(typed(dicts)["exp1"]).startswith(
        "The grid check passes: every one of the 25 sweep runs")
    check = dicts["exp1"]["grid_check"]
    check.update(passed=False, all_stable=False, lowest_saturated=False)
    check["rates"][0].update(gain=0.03, saturated=False)
    check["rates"][-1].update(unstable=2)
    sentence = exp1_words.grid_check_sentence(typed(dicts)["exp1"])
    assert sentence.startswith("The grid check fails: 2 of the 25 sweep runs are unstable (at 0.016: 2 of 5)")
    assert "the lowest rate, 0.001, gains +3.00 pp" in sentence and "has not saturated" in sentence


def test_gradient_sentences_quote_the_measures():
    gradient = exp3_words.gradient_sentences(synthetic_summaries()["exp3"])
    assert "in fc2, whose mean is zero up to rounding" in gradient["signed_mean"]
    assert "between 0.21 and 0.25" in gradient["snr"]
    # dropout 0.3's mean |g| is (1 + 2) / (1 + 1) of no dropout's in the synthetic rows
    assert gradient["dropout_mean_abs_last"].endswith("last window: 1.50, 1.50, 1.50, 1.50, 1.50.")


def test_every_claim_is_plain_text_and_answers_quote_the_numbers():
    everything = report.all_claims(synthetic_summaries(+1))
    assert {"abstract", "answer_1", "answer_2", "answer_3", "headline_count"} <= set(everything)
    assert all(isinstance(text, str) and text and "\\" not in text for text in everything.values())
    assert "dropout 0.3 helps test accuracy" in everything["abstract"]
    assert "Comparing dropout 0.3 with no dropout: test accuracy is higher by 5.0 pp" in everything["answer_2"]
    assert "the tuned warm-up + cosine schedule beats the best constant rate" in everything["abstract"]
    flipped = report.all_claims(synthetic_summaries(-1))
    assert "dropout 0.3 hurts test accuracy" in flipped["abstract"]
    assert "the best constant rate beats the tuned warm-up + cosine schedule" in flipped["abstract"]
    assert "Comparing dropout 0.3 with no dropout: test accuracy is lower by 5.0 pp" in flipped["answer_2"]


def test_headline_count_counts_verdicts():
    summaries = synthetic_summaries(+1)
    sentence = sentences.headline_count_sentence(summaries)
    decided = [sentences.verdict(e) for s in summaries.values() for e in s.headline()]
    assert sentence.startswith(f"Of the {len(decided)} headline comparisons of the 3 experiments, "
                               f"{sum(v.significant for v in decided)} are significant")
    assert f"{sum(not v.testable for v in decided)} could not be tested" in sentence


@pytest.mark.parametrize("direction", [1, -1])
def test_an_unknown_comparison_is_a_key_error(direction):
    with pytest.raises(KeyError):
        synthetic_summaries(direction)["exp3"].comparison("nothing", "test_accuracy")


# ------------------------------------------------------------------ readings (what several numbers mean together)
def test_the_ablation_reading_follows_both_verdicts():
    up, down = (exp1_words.ablation_reading(synthetic_summaries(d)["exp1"]) for d in (+1, -1))
    assert "the gain comes from the warm-up and decay, not from the higher rate" in up
    assert "no clean separation" in down and "the schedule loses to a constant run at its peak" in down
    dicts = synthetic_dicts(+1)
    find(dicts, "exp1", "peak_constant_vs_best_constant", "test_accuracy").update(
        difference=-0.04, p_holm=0.01, test_set_interval=[-0.05, -0.03])
    assert "the higher rate alone hurts" in exp1_words.ablation_reading(typed(dicts)["exp1"])


def test_the_transfer_reading_flips_with_each_control():
    up, down = (exp2_words.transfer_reading(synthetic_summaries(d)["exp2"], 0.0) for d in (+1, -1))
    assert "a head on them beats the whole network trained on B" in up
    assert "the whole network trained on B beats a head on them" in down
    for text in (up, down):  # frozen random: one stable seed, no test
        assert "could not be tested against random ones (no test was possible)" in text
        assert "clean train-minus-test gap" in text
    exp2 = synthetic_summaries(+1)["exp2"]
    assert exp2_words.transfer_best_brief(exp2) == exp2_words.transfer_reading(exp2, 0.3)  # verdicts differ: in full
    dicts = synthetic_dicts(+1)
    for name, metric in exp2_words.TRANSFER_COMPARISONS:  # the same verdicts at both rates: one short sentence
        zero, best = (find(dicts, "exp2", name, metric, ("transfer", p)) for p in (0.0, 0.3))
        best.update({key: zero[key] for key in ("difference", "p", "p_holm", "test_set_interval")})
    assert exp2_words.transfer_best_brief(typed(dicts)["exp2"]).startswith(
        "With dropout 0.3 every one of these verdicts is the same")


def test_the_grid_top_reading_names_the_unstable_rungs():
    dicts = synthetic_dicts()
    text = exp1_words.grid_top_sentence(typed(dicts)["exp1"])
    assert "unstable at every rung from 0.064 up (1 collapsed)" in text and "blew up only at 0.256" in text
    for rung in dicts["exp1"]["ladder"]:
        rung["stable"] = True
    assert exp1_words.grid_top_sentence(typed(dicts)["exp1"]).startswith("Every probed rung trained stably")


def _group(dicts, experiment, key):
    return next(g for g in dicts[experiment]["groups"] if g["key"] == list(key))


def test_the_dropout_trend_says_through_which_accuracy_the_gap_falls():
    dicts = synthetic_dicts()
    groups = sorted((g for g in dicts["exp2"]["groups"] if g["kind"] == "dropout"), key=lambda g: g["value"])
    for group, (train, val) in zip(groups, ((0.95, 0.45), (0.85, 0.46), (0.75, 0.45), (0.65, 0.44), (0.55, 0.43))):
        metrics = group["metrics"]
        metrics["train_accuracy"]["mean"], metrics["val_accuracy"]["mean"] = train, val
        metrics["generalization_gap"]["mean"] = train - val
        metrics["test_accuracy"]["mean"] = val - 0.01
    text = exp2_words.dropout_trend(typed(dicts)["exp2"])
    assert text.startswith("The train-minus-validation gap falls with every step up in p, from 50.0 pp at p = 0")
    assert "mostly because train accuracy falls" in text and "keeps the network from fitting half A" in text
    group = _group(dicts, "exp2", ("dropout", 0.45))
    group["metrics"]["generalization_gap"]["mean"] = 0.35  # a rise on the way: not "with every step"
    assert "gap falls overall" in exp2_words.dropout_trend(typed(dicts)["exp2"])
    group["metrics"]["generalization_gap"]["mean"] = 0.6
    _group(dicts, "exp2", ("dropout", 0.6))["metrics"]["generalization_gap"]["mean"] = 0.6
    text = exp2_words.dropout_trend(typed(dicts)["exp2"])
    assert "gap does not fall" in text and "mostly because" not in text and "fitting half A" not in text


def test_gradient_readings_explain_only_what_the_numbers_show():
    dicts = synthetic_dicts()
    text = exp3_words.dropout_gradients(typed(dicts)["exp3"])
    assert "scales mean |g| by 1.50 (per layer) in the first window and by 1.50 in the last" in text
    assert "inverted dropout" not in text  # dropout's train accuracy is the higher one here: no explanation
    _group(dicts, "exp3", ("dropout", 0.0))["metrics"]["train_accuracy"]["mean"] = 0.99
    assert "without dropout the network fits half A almost completely" in \
        exp3_words.dropout_gradients(typed(dicts)["exp3"])
    assert "Scale invariance" not in exp3_words.bn_gradients(typed(dicts)["exp3"])  # no mechanism stated there


def test_the_bn_mechanism_follows_the_loss_not_the_weights_when_the_numbers_say_so():
    dicts = synthetic_dicts()
    text = exp3_words.bn_mechanism(typed(dicts)["exp3"])  # weights grow 0.9 %, ‖g‖/‖w‖ falls with the loss
    assert "the loss itself vanishing" in text and "‖w‖ changed by factors 1.01" in text
    trajectory = next(t for t in dicts["exp3"]["trajectories"] if t["model"] == ["batch_norm"])
    trajectory["weight_norm"] = [[1.0 + e] * 5 for e in range(12)]  # weights grow tenfold: no such reading
    assert "vanishing" not in exp3_words.bn_mechanism(typed(dicts)["exp3"])


def test_the_checks_sentence_counts_where_seeds_and_test_set_disagree():
    dicts = synthetic_dicts(+1)
    find(dicts, "exp1", "schedule_vs_best_constant", "test_accuracy").update(p_holm=0.2)  # interval excludes 0
    text = sentences.checks_sentence(typed(dicts))
    assert "1 has a test-set interval that excludes zero but a Holm p of at least 0.05" in text


def _shrink_dropout_first_window(dicts, factor):
    best = dicts["exp3"]["best_dropout"]
    for row in dicts["exp3"]["gradients"]:
        if row["model"] == ["dropout", best] and row["window"] == "first":
            row["mean_abs"] *= factor


def test_dropout_early_reduction_is_unexplained_unless_the_loss_explains_it():
    dicts = synthetic_dicts()
    _shrink_dropout_first_window(dicts, 0.4)  # 1.5 x 0.4: dropout's early mean |g| at 0.60 of none's
    text = exp3_words.dropout_gradients(typed(dicts)["exp3"])
    assert "in the first window" in text and "0.60" in text
    # dropout's loss falls more slowly (synthetic fit 0.1 against 0.15): higher, so no explanation by the errors
    assert "is not explained by the study's measurements" in text and "in every layer" in text
    assert "goes with a lower training loss" not in text
    for trajectory in dicts["exp3"]["trajectories"]:
        if trajectory["model"] == ["dropout", dicts["exp3"]["best_dropout"]]:
            trajectory["train_loss"] = [0.5 * value for value in trajectory["train_loss"]]
    text = exp3_words.dropout_gradients(typed(dicts)["exp3"])
    assert "goes with a lower training loss" in text and "not explained" not in text
    assert "unexplained" not in exp3_words.dropout_gradients(typed(synthetic_dicts())["exp3"])  # no reduction


def test_the_tuner_sentence_says_it_searched_on_one_seed_and_how_fine_that_is():
    dicts = synthetic_dicts()
    text = exp1_words.sentences(typed(dicts)["exp1"])["tuner"]
    assert "Every trial is a single run on one seed (1000)" in text
    assert "standard deviation of" in text and "over seeds at the best constant rate" in text
