"""Protocol v3's rules on synthetic evidence: the plateau rule and the budget it sets, erratic rates, ties,
the minimum detectable effect, and the gradient measures against NumPy (no training)."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dnnls_tf.experiments.learning_rate import grid as grid_lib
from dnnls_tf.experiments.learning_rate import outcome
from dnnls_tf.study import gradients as measures
from dnnls_tf.study import stats
from dnnls_tf.study.plan import budget_by_plateau, select_by_validation
from dnnls_tf.study.results import Plateau
from fakes import plateau_curve, store_fake


def fake_run(curve, stable=True, val_loss=1.0, losses=None):
    history = pd.DataFrame({"val_accuracy": curve, "loss": np.linspace(2.0, 0.5, len(curve))})
    steps = pd.DataFrame({"epoch": np.repeat(np.arange(1, len(curve) + 1), 2),
                          "loss": losses if losses is not None else np.linspace(2.3, 0.5, 2 * len(curve))})
    return SimpleNamespace(history=history, steps=steps, stable=stable,
                           metrics={"val_accuracy": max(curve), "val_loss": val_loss})


# ------------------------------------------------------------------ the plateau rule
def test_a_rising_curve_fails_the_plateau_rule_and_a_flat_one_passes():
    rising = [fake_run(np.linspace(0.2, 0.5, 20)) for _ in range(3)]
    flat = [fake_run(plateau_curve(20, 8, 0.5)) for _ in range(3)]
    assert not Plateau.of(rising, 0.01).levelled and Plateau.of(rising, 0.01).gain > 0.01
    assert Plateau.of(flat, 0.01).levelled and Plateau.of(flat, 0.01).gain == pytest.approx(0.0)
    # the mean curve decides: one flat and one rising seed can still level off on average
    mixed = [fake_run(plateau_curve(20, 8, 0.5)), fake_run(plateau_curve(20, 17, 0.5))]
    gain = stats.last_quarter_gain([tuple(run.history["val_accuracy"]) for run in mixed])
    assert Plateau.of(mixed, 0.01).levelled == (gain < 0.01)
    collapsed = [fake_run([0.1] * 20, stable=False)]
    assert not Plateau.of(collapsed, 0.01).levelled and math.isnan(Plateau.of(collapsed, 0.01).gain)


def test_the_budget_doubles_until_every_group_levels_off(tiny_study):
    """At 2 epochs the fake curves still rise; at 4 they are flat: the rule stops at 4 (max 8)."""
    study = tiny_study

    def sweep_of(epochs):
        return {("dropout", p): [study.spec(seed, 0.05, dropout=p, epochs=epochs) for seed in study.seeds]
                for p in (0.0, 0.5)}

    epochs, steps, complete = budget_by_plateau(study, 2, 8, sweep_of)
    assert (epochs, steps, complete) == (2, [], False)  # nothing stored yet
    for specs in sweep_of(2).values():
        for spec in specs:
            store_fake(study, spec, val_curve=[0.3, 0.5])  # +20 pp in the last quarter
    epochs, steps, complete = budget_by_plateau(study, 2, 8, sweep_of, label=lambda key: f"p={key[1]:g}")
    assert epochs == 4 and not complete and steps[0].epochs == 2 and set(steps[0].rising) == {"p=0", "p=0.5"}
    for specs in sweep_of(4).values():
        for spec in specs:
            store_fake(study, spec, val_curve=[0.3, 0.5, 0.5, 0.5])
    epochs, steps, complete = budget_by_plateau(study, 2, 8, sweep_of)
    assert (epochs, complete) == (4, True) and [s.epochs for s in steps] == [2, 4] and not steps[-1].rising
    capped = budget_by_plateau(study, 2, 2, sweep_of)  # the limit: a rising group is reported, not hidden
    assert capped[0] == 2 and capped[2] and capped[1][-1].rising


# ------------------------------------------------------------------ erratic rates
def test_an_erratic_rate_is_not_stable_even_when_no_run_diverged():
    smooth = grid_lib.Outcome(True, tuple(plateau_curve(8, 3, 0.5)))
    spiky = grid_lib.Outcome(True, tuple(plateau_curve(8, 3, 0.5)), erratic=True)
    assert grid_lib.judge_rung(0.1, [smooth, smooth], [], False, 0.01).stable
    verdict = grid_lib.judge_rung(0.1, [smooth, spiky], [], False, 0.01)
    assert not verdict.stable and verdict.erratic == 1 and verdict.unstable == 0
    falling = grid_lib.Outcome(True, (0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.45, 0.45))  # -5 pp over the last quarter
    verdict = grid_lib.judge_rung(0.1, [falling, falling], [], False, 0.01)
    assert verdict.falling and not verdict.stable
    check = grid_lib.check_grid({0.1: [smooth] * 3, 0.2: [spiky] + [smooth] * 2},
                                grid_lib.GridRule(2.0, 4, 16.0, 0.01))
    assert not check.all_stable and check.rates[1]["erratic"] == 1


def test_a_run_is_erratic_when_its_loss_spikes_above_its_first_step_after_the_first_epoch():
    calm = fake_run(plateau_curve(4, 2, 0.5), losses=[2.3, 2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7])
    spike = fake_run(plateau_curve(4, 2, 0.5), losses=[2.3, 2.0, 1.5, 17.7, 1.0, 0.9, 0.8, 0.7])
    first_epoch = fake_run(plateau_curve(4, 2, 0.5), losses=[2.3, 2.9, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7])
    assert not outcome(calm).erratic and outcome(spike).erratic
    assert not outcome(first_epoch).erratic  # a first epoch may wobble


# ------------------------------------------------------------------ ties
def test_a_tie_on_validation_goes_to_the_lower_validation_loss_and_is_recorded():
    groups = {0.01: [fake_run([0.5243], val_loss=1.71)] * 2, 0.02: [fake_run([0.5237], val_loss=1.60)] * 2,
              0.04: [fake_run([0.40], val_loss=1.2)] * 2}
    selection = select_by_validation(groups, "rate", 0.005)
    assert selection.tie and sorted(selection.tied) == [0.01, 0.02] and selection.chosen == 0.02
    assert "within 0.5 pp of it a tie, broken by the lowest mean validation loss" in selection.rule
    clear = select_by_validation(groups, "rate", 0.0)
    assert not clear.tie and clear.chosen == 0.01


# ------------------------------------------------------------------ the smallest effect the design detects
def test_the_minimum_detectable_effect_matches_a_hand_worked_power_calculation():
    """Paired t, n = 5, sd of the differences 1: se = 1 / sqrt(5), df = 4. By hand, the textbook
    approximation (t_0.975,4 + t_0.80,4) x se = (2.776 + 0.941) / 2.236 = 1.662 has power 0.79 on the
    noncentral t; the exact 80%-power effect is a little larger."""
    se = 1 / math.sqrt(5)
    approximate = (2.7764451 + 0.9409646) * se
    assert approximate == pytest.approx(1.6625, abs=1e-4)
    assert stats.power_of_t_test(approximate, se, 4) == pytest.approx(0.7913, abs=5e-4)
    exact = stats.minimum_detectable_effect(se, 4)
    assert approximate < exact < 1.05 * approximate
    assert stats.power_of_t_test(exact, se, 4) == pytest.approx(0.8, abs=1e-9)
    assert stats.minimum_detectable_effect(se, 4, alpha=0.0125) > exact  # Holm's first step asks for more
    assert math.isnan(stats.minimum_detectable_effect(0.0, 4)) and math.isnan(stats.minimum_detectable_effect(se, 0))


def test_paired_comparisons_report_the_standard_error_behind_their_detectable_effect():
    result = stats.compare([0.50, 0.52, 0.51, 0.53, 0.49], [0.48, 0.49, 0.50, 0.50, 0.47], paired=True)
    differences = np.array([0.02, 0.03, 0.01, 0.03, 0.02])
    assert result["standard_error"] == pytest.approx(differences.std(ddof=1) / math.sqrt(5))


# ------------------------------------------------------------------ gradient measures against NumPy
def gradient_record(rng, epochs=4, steps=3):
    """Per-step gradients and weights of two layers (a kernel each) and their stored sums."""
    sizes = [6, 4]
    grads = [[rng.normal(size=(steps, n)) * 10 ** -layer for layer, n in enumerate(sizes)] for _ in range(epochs)]
    weights = [[rng.normal(size=n) + 1 for n in sizes] for _ in range(epochs)]
    names = np.array(["conv1", "fc2"])
    record = {"layer_names": names, "kernel_size": np.array(sizes, float),
              "count": np.array([[steps * n for n in sizes]] * epochs, float),
              "sum": np.array([[g.sum() for g in epoch] for epoch in grads]),
              "sum_sq": np.array([[(g ** 2).sum() for g in epoch] for epoch in grads]),
              "sum_abs": np.array([[np.abs(g).sum() for g in epoch] for epoch in grads]),
              "weight_sq": np.array([[(w ** 2).sum() for w in epoch] for epoch in weights]),
              "param_names": np.array(["conv1/kernel", "fc2/kernel"]),
              "param_cosine_sum": np.array([[sum(g @ w / np.linalg.norm(g) / np.linalg.norm(w) for g in layer)
                                             for layer, w in zip(epoch_g, epoch_w)]
                                            for epoch_g, epoch_w in zip(grads, weights)]),
              "param_cosine_steps": np.full((epochs, 2), float(steps))}
    return record, grads, weights


def test_weight_norms_angles_and_the_depth_ratio_equal_numpy():
    record, grads, weights = gradient_record(np.random.default_rng(3))
    assert measures.weight_norms(record) == pytest.approx(
        np.array([[np.linalg.norm(w) for w in epoch] for epoch in weights]))
    expected = np.array([[np.mean([g @ w / np.linalg.norm(g) / np.linalg.norm(w) for g in layer])
                          for layer, w in zip(epoch_g, epoch_w)] for epoch_g, epoch_w in zip(grads, weights)])
    assert measures.kernel_cosines(record) == pytest.approx(expected)
    window = [0, 1]
    rms = [np.sqrt(np.mean(np.concatenate([grads[e][layer].ravel() for e in window]) ** 2)) for layer in (0, 1)]
    assert measures.depth_ratio(record, window) == pytest.approx(rms[0] / rms[1])
    del record["param_cosine_sum"]
    assert np.isnan(measures.kernel_cosines(record)).all()  # runs that did not record angles


# ------------------------------------------------------------------ experiment 4
def test_experiment_4_plans_the_scale_curve_and_the_replication_from_the_earlier_choices(tmp_path):
    """On a fake store: the curve's sizes are nested class-balanced subsamples with more epochs for fewer
    images, the largest size trains every seed, transfer starts from its own seed's source; without its data
    the experiment is skipped in one line."""
    from conftest import tiny_config
    from dnnls_tf.core.data import parse_split
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.planner import plan_all
    from dnnls_tf.study.study import Study
    from fakes import fill_fakes

    study = Study(tiny_config(exp4__epochs=3, exp4__max_epochs=6), root=tmp_path, writable=True)
    plans = {plan.experiment: plan for plan in fill_fakes(study, ["exp4"])}
    plan, exp4 = plan_all(study, REGISTRY, ["exp4"])["exp4"], study.config.exp4
    assert plan.complete and plan.choices["sizes"] == list(exp4.sizes)
    for size in exp4.sizes:
        for model in ("constant", "dropout", "batch_norm"):
            specs = plan.groups[model, size]
            seeds = study.seeds if size == exp4.sizes[-1] else study.seeds[:exp4.curve_seeds]
            assert [s.seed for s in specs] == list(seeds)
            base, count = parse_split(specs[0].train_split)
            assert base == "holdout_train" and (count or study.splits.size("holdout_train")) == size
            assert specs[0].epochs == max(exp4.epochs, min(exp4.max_epochs, round(exp4.epochs * exp4.sizes[-1] / size)))
    assert plan.groups["dropout", exp4.sizes[0]][0].dropout == plans["exp2"].choices["best_dropout"]
    assert plan.groups["batch_norm", exp4.sizes[0]][0].learning_rate == plans["exp3"].choices["bn_rate"]
    source, transfer = (next(specs for key, specs in plan.groups.items() if key[0] == kind)
                        for kind in ("source", "transfer"))
    assert [t.init_from for t in transfer] == [s.run_id for s in source] and all(t.frozen for t in transfer)
    summary = REGISTRY.get("exp4").summarize(study, plans["exp4"])
    assert summary.epochs == exp4.epochs != study.config.training.epochs  # its own budget, not the profile's
    assert {c.name for c in summary.headline()} == {"schedule_vs_constant", "dropout_vs_none", "batch_norm_vs_none",
                                                    "transfer_vs_source"}
    assert {(r.experiment, r.of) for r in summary.replicates} >= {("exp1", "schedule_vs_best_constant"),
                                                                  ("exp2", "transfer_vs_source")}
    mirror = Study(tiny_config(exp4__source="mirror"), root=tmp_path / "mirror")
    mirror.missing_source = lambda source: "no CIFAR-10 (JPEG mirror) at /nowhere"  # as where there is none
    skipped = plan_all(mirror, REGISTRY, ["exp4"])
    assert skipped["exp4"].complete and not skipped["exp4"].groups
    assert "/nowhere" in skipped["exp4"].choices["skipped"]


def test_a_skipped_experiment_keeps_the_summary_its_runs_gave(tmp_path, caplog):
    """A copy of a study (a fresh clone of the committed store) on a machine without the JPEG mirror: `run`
    keeps experiment 4's stored summary instead of replacing it with "not run"; with no summary stored, the
    skipped summary is written."""
    from conftest import tiny_config
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.planner import plan_all
    from dnnls_tf.study.results import summary_path, write_summary
    from dnnls_tf.study.runner import write_summaries
    from dnnls_tf.study.study import Study
    from fakes import fill_fakes

    study = Study(tiny_config(), root=tmp_path, writable=True)
    plans = {plan.experiment: plan for plan in fill_fakes(study, ["exp4"])}
    write_summary(study, "exp4", REGISTRY.get("exp4").summarize(study, plans["exp4"]))
    path = summary_path(study.results_dir, "exp4")
    stored = path.read_bytes()
    study.missing_source = lambda source: "no CIFAR-10 (JPEG mirror) at /nowhere"
    skipped = plan_all(study, REGISTRY, ["exp4"])["exp4"]
    assert skipped.choices["skipped"]
    write_summaries(study, REGISTRY, [skipped])
    assert path.read_bytes() == stored and "its stored summary is kept" in caplog.text
    path.unlink()
    write_summaries(study, REGISTRY, [skipped])
    assert "/nowhere" in json.loads(path.read_text())["skipped"]


# ------------------------------------------------------------------ batch norm's moving statistics
def test_bn_momentum_reaches_every_bn_layer_and_only_bn_runs_carry_it(tmp_path):
    """The profile's BN momentum is in a BN run's spec (so in its id) and in each of its BN layers; a run
    without BN has the same id whatever the setting; a stored spec without the field reads back as Keras'
    default, the value v2's runs trained with."""
    from conftest import tiny_config
    from dnnls_tf.core.models import build_model
    from dnnls_tf.core.spec import RunSpec
    from dnnls_tf.study.study import Study

    studies = [Study(tiny_config(**{"model__bn_momentum": m}), root=tmp_path / str(m)) for m in (0.9, 0.5)]
    plain = [s.spec(0, 0.01) for s in studies]
    normed = [s.spec(0, 0.01, batch_norm=True) for s in studies]
    assert plain[0].run_id == plain[1].run_id and plain[0].bn_momentum == 0.99
    assert normed[0].run_id != normed[1].run_id and [s.bn_momentum for s in normed] == [0.9, 0.5]
    model = build_model(normed[1])
    momenta = [layer.momentum for layer in model.layers if layer.name.startswith("bn")]
    assert momenta == [0.5] * 4
    stored = normed[0].to_dict()
    del stored["bn_momentum"]
    assert RunSpec.from_dict(stored).bn_momentum == 0.99
