"""Experiment 1's grid rule on synthetic evidence (no training)."""
import math

import numpy as np
import pandas as pd
import pytest

from dnnls_tf.experiments.learning_rate.grid import (GridRule, NoStableRate, Outcome, anchor_rate, check_grid, judge_rung, ladder, place_grid,
                           saturation_gain)

RULE = GridRule(ladder_factor=2.0, ladder_rungs=7, max_span=16.0, saturation_gain=0.01)
EPOCHS = 20


def curve(plateau_at: int, top: float = 0.5) -> tuple:
    """Validation accuracy rising linearly to `top` at epoch `plateau_at`, flat after it."""
    epochs = np.arange(1, EPOCHS + 1)
    return tuple(np.minimum(epochs / plateau_at, 1.0) * (top - 0.1) + 0.1)


def range_test(blow_up_at: float) -> pd.DataFrame:
    """A synthetic range test: the loss falls, then rises past 4x its minimum at `blow_up_at`."""
    rates = np.geomspace(1e-4, 3.0, 200)
    loss = 2.3 - 0.8 * np.exp(-((np.log(rates) - np.log(blow_up_at / 6)) ** 2))
    loss = np.where(rates >= blow_up_at, 4.5 * loss.min() + 1, loss)
    stop = int(np.argmax(rates >= blow_up_at)) + 1
    return pd.DataFrame({"lr": rates[:stop], "loss": loss[:stop]})


def verdicts(rates, unstable=(), slow=(), sweep=None):
    """Probes (2 seeds) per rung: `unstable` rates collapse, `slow` rates do not saturate."""
    result = []
    for rate in rates:
        shape = curve(30) if rate in slow else curve(8)
        probes = [Outcome(rate not in unstable, shape), Outcome(True, shape)]
        swept = (sweep or {}).get(rate, [])
        result.append(judge_rung(rate, probes, swept, len(swept) == 5))
    return result


def test_the_ladder_starts_where_the_range_test_blows_up():
    assert anchor_rate(range_test(0.31), max_lr=3.0) == pytest.approx(0.31, rel=0.05)
    never = pd.DataFrame({"lr": np.geomspace(1e-4, 3.0, 50), "loss": np.linspace(2.3, 1.0, 50)})
    assert anchor_rate(never, max_lr=3.0) == 3.0
    assert ladder(0.31, RULE) == [0.31, 0.155, 0.0775, 0.0387, 0.0194, 0.00969, 0.00484]


def test_saturation_gain_compares_the_last_two_quarters_of_the_mean_curve():
    assert saturation_gain([curve(8), curve(8)]) == pytest.approx(0.0)
    assert saturation_gain([curve(30)]) > 0.05
    assert math.isnan(saturation_gain([]))


def test_the_grid_excludes_a_rate_that_collapses():
    rates = ladder(0.31, RULE)
    decision = place_grid(verdicts(rates, unstable={0.31, 0.155}), RULE)
    assert decision.top == 0.0775 and max(decision.grid) == 0.0775
    assert len(decision.grid) == 5 and decision.grid == sorted(decision.grid)
    assert decision.bottom == pytest.approx(0.00484) and decision.bottom_saturates
    assert "0.31" in decision.reasons[1] and "0.155" in decision.reasons[1]


def test_a_lone_stable_rung_is_not_the_top_and_the_grid_never_spans_an_unstable_rung():
    rates = ladder(0.31, RULE)
    decision = place_grid(verdicts(rates, unstable={0.31, 0.0775}), RULE)  # 0.155 stable, alone
    assert decision.top == 0.0387 and decision.bottom == pytest.approx(0.00484)
    decision = place_grid(verdicts(rates, unstable={0.0387}), RULE)
    assert decision.top == 0.31 and decision.bottom == 0.0775  # stops above the unstable rung


def test_the_grid_moves_up_when_the_lowest_rate_does_not_saturate():
    rates = ladder(0.31, RULE)
    first = place_grid(verdicts(rates, unstable={0.31, 0.155}), RULE)
    assert min(first.grid) == pytest.approx(0.00484)
    # the sweep at the lowest rate has not saturated: its 5 curves override the probes' verdict
    slow_sweep = {0.00484: [Outcome(True, curve(30))] * 5}
    moved = place_grid(verdicts(rates, unstable={0.31, 0.155}, sweep=slow_sweep), RULE)
    assert min(moved.grid) == pytest.approx(0.00969) and moved.top == 0.0775
    assert any("not saturated: 0.00484" in reason for reason in moved.reasons)


def test_a_sweep_seed_that_collapses_moves_the_top_down():
    rates = ladder(0.31, RULE)
    sweep = {0.0775: [Outcome(True, curve(8))] * 4 + [Outcome(False, curve(8))]}
    decision = place_grid(verdicts(rates, unstable={0.31, 0.155}, sweep=sweep), RULE)
    assert decision.top == 0.0387


def test_without_a_saturating_rung_the_grid_still_has_five_rates_and_says_so():
    rates = ladder(0.31, RULE)
    decision = place_grid(verdicts(rates, unstable={0.31, 0.155}, slow=set(rates)), RULE)
    assert len(decision.grid) == 5 and not decision.bottom_saturates
    assert "grid check will fail" in decision.reasons[-1]


def test_no_stable_rung_is_an_error():
    with pytest.raises(NoStableRate, match="no two neighbouring rungs"):
        place_grid(verdicts([0.3, 0.15], unstable={0.3, 0.15}), RULE)


def test_rates_too_low_to_learn_do_not_hide_the_top():
    rates = ladder(0.31, RULE, 9)  # the lowest two "collapse": too slow to reach 0.2 in the epochs
    decision = place_grid(verdicts(rates, unstable={0.31, rates[-1], rates[-2]}), RULE)
    assert decision.top == 0.155 and decision.bottom == pytest.approx(0.00969)


def test_the_grid_check_counts_unstable_seeds_and_the_lowest_rates_saturation():
    good = {0.01: [Outcome(True, curve(8))] * 5, 0.1: [Outcome(True, curve(4))] * 5}
    check = check_grid(good, RULE)
    assert check.passed and check.all_stable and check.lowest_saturated
    assert [row["unstable"] for row in check.rates] == [0, 0]
    bad = {0.01: [Outcome(True, curve(40))] * 5, 0.1: [Outcome(False, curve(4))] + [Outcome(True, curve(4))] * 4}
    check = check_grid(bad, RULE)
    assert not check.passed and not check.all_stable and not check.lowest_saturated
    assert check.rates[1]["unstable"] == 1


def test_the_ladder_grows_until_it_reaches_max_span_below_its_stable_top():
    from dnnls_tf.experiments.learning_rate.grid import rungs_needed

    rates = ladder(2.17, RULE, 6)  # 2.17 .. 0.0678: every rung collapses
    assert rungs_needed(verdicts(rates, unstable=set(rates)), RULE) == 6 + 5
    rates = ladder(2.17, RULE, 11)  # top 0.0339 (index 6) needs 4 rungs below it: 16x
    grown = verdicts(rates, unstable=set(rates[:6]))
    assert rungs_needed(grown, RULE) == 11
    decision = place_grid(grown, RULE)
    assert decision.top == rates[6] and decision.bottom == rates[10] == pytest.approx(rates[6] / 16, rel=0.01)
    assert rungs_needed(verdicts(ladder(0.31, RULE, 7)), RULE) == 7  # stable top 0.31: 4 below suffice
