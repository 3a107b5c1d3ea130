"""Each experiment's plan, its choices and its summary, on a store of fake runs (no training)."""
import json
import math
import subprocess
import sys

import pytest

from conftest import tiny_config
from dnnls_tf.experiments import REGISTRY, dropout_transfer, gradient_flow, learning_rate
from dnnls_tf.study import results as summaries
from dnnls_tf.study.codec import encode
from dnnls_tf.study.planner import plan_one, run_counts
from dnnls_tf.errors import UserError
from dnnls_tf.study.study import HALVES, HOLDOUT, SWAPPED, Study
from fakes import fill_fakes, range_table, store_fake


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """A tiny study whose three experiments are complete with fake runs."""
    study = Study(tiny_config(exp1__probe_seeds=[100, 101]), root=tmp_path_factory.mktemp("plans"), writable=True)
    plans = fill_fakes(study, ["exp1", "exp2", "exp3"])
    return study, {plan.experiment: plan for plan in plans}


def test_exp1_is_planned_stage_by_stage_from_the_store(tiny_study):
    plan = plan_one(tiny_study, REGISTRY, "exp1")
    assert not plan.groups and plan.waiting[0].needs == "exp1"
    assert [stage.kind for stage in plan.stages] == ["range_test"] and not plan.stages[0].done(tiny_study)
    tiny_study.store.save_range_test(plan.stages[0].spec, range_table(0.3))
    plan = plan_one(tiny_study, REGISTRY, "exp1")
    rungs = [key[1] for key in plan.groups if key[0] == "probe"]
    assert rungs[0] == 0.3 and len(rungs) == tiny_study.config.exp1.ladder_rungs
    assert all(spec.seed == 100 for specs in plan.groups.values() for spec in specs)
    assert "needs the probes" in plan.waiting[0].what


def test_exp1_places_the_grid_by_the_rule_and_the_tuner_uses_other_seeds(complete):
    study, plans = complete
    plan = plans["exp1"]
    decision = plan.choices["decision"]
    rates = [key[1] for key in plan.groups if key[0] == "rate"]
    assert rates == decision.grid and len(rates) == 5 and max(rates) <= 0.1  # the fake collapses above 0.1
    assert plan.choices["check"].all_stable
    assert plan.choices["best_rate"] in rates
    trials = [specs[0] for key, specs in plan.groups.items() if key[0] == "trial"]
    assert trials and all(spec.seed == study.config.exp1.tuner_seed for spec in trials)
    assert all(spec.learning_rate.peak <= decision.top for spec in trials)  # capped at the highest stable rate
    schedule = plan.groups["schedule",]
    assert [spec.seed for spec in schedule] == list(study.seeds)
    assert [spec.learning_rate for spec in plan.groups["peak_constant",]] == [schedule[0].learning_rate.peak] * 2


def test_exp2_reuses_exp1_runs_through_the_shared_spec_and_chains_transfer_to_its_sources(complete):
    study, plans = complete
    plan, best_rate = plans["exp2"], plans["exp1"].choices["best_rate"]
    assert plan.groups["holdout", 0.0] == plans["exp1"].groups["rate", best_rate]  # trained once
    best = plan.choices["best_dropout"]
    assert best == 0.2  # the fake's best validation accuracy
    for p in (0.0, best):
        sources = plan.groups["dropout", p]
        assert [(s.train_split, s.val_split) for s in sources] == [HALVES] * 2
        transfer = plan.groups["transfer", p]
        assert [t.init_from for t in transfer] == [s.run_id for s in sources]
        assert all((t.train_split, t.val_split) == SWAPPED and t.frozen for t in transfer)
        assert all(s.frozen and not s.init_from for s in plan.groups["frozen_random", p])
        assert all((s.train_split, s.val_split) == HOLDOUT for s in plan.groups["holdout", p])


def test_exp3_reads_exp2_runs_and_adds_batch_norm(complete):
    study, plans = complete
    plan, best = plans["exp3"], plans["exp2"].choices["best_dropout"]
    assert plan.groups["dropout", best] == plans["exp2"].groups["dropout", best]
    assert all(spec.batch_norm for spec in plan.groups["batch_norm",])


def test_an_experiment_waits_for_the_one_before_it(tiny_study):
    plan = plan_one(tiny_study, REGISTRY, "exp2")
    assert not plan.specs() and plan.waiting[0].needs == "exp1"
    counts = run_counts(tiny_study, REGISTRY)
    assert counts["exp2"]["planned"] == 0 and "experiment 1" in counts["exp2"]["waiting"]


def test_status_counts_the_same_plan(complete):
    study, plans = complete
    counts = run_counts(Study(study.config, root=study.root), REGISTRY)
    for name in ("exp1", "exp2", "exp3"):
        assert counts[name]["planned"] == len(plans[name].specs())
        assert counts[name]["done"] + counts[name]["unstable"] == counts[name]["planned"]
        assert counts[name]["waiting"] == ""


def test_plans_never_write_keras_tuner_is_a_stage_the_runner_executes(tmp_path):
    """A store whose sweep is complete but whose tuner record is absent: the plan asks for the proposal
    stage and waits; planning writes nothing and imports neither keras-tuner nor TensorFlow."""
    script = f"""
import sys
sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
from conftest import tiny_config
from dnnls_tf.experiments import REGISTRY
from dnnls_tf.study.planner import plan_one
from dnnls_tf.study.study import Study
plan = plan_one(Study(tiny_config(), root={str(tmp_path)!r}), REGISTRY, "exp1")
print(plan.waiting[0].what.split(' (')[0], [s.kind for s in plan.stages], 'keras_tuner' in sys.modules,
      'tensorflow' in sys.modules)
"""
    study = Study(tiny_config(), root=tmp_path, writable=True)
    plan = plan_one(study, REGISTRY, "exp1")
    study.store.save_range_test(plan.stages[0].spec, range_table())
    for _ in range(5):
        plan = plan_one(study, REGISTRY, "exp1")
        for spec in plan.specs():
            if study.store.get(spec.run_id) is None:
                from fakes import default_outcome
                store_fake(study, spec, **default_outcome(spec))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=str(
        __import__('pathlib').Path(__file__).parent))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the tuner's trials ['tuner_proposal'] False False"
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written


def test_summaries_carry_tests_holm_and_test_set_intervals(complete):
    study, plans = complete
    for name in ("exp1", "exp2", "exp3"):
        experiment = REGISTRY.get(name)
        summary = summaries.write_summary(study, name, experiment.summarize(study, plans[name]))
        loaded = summaries.load_summary(study.results_dir, name, study.profile, experiment.summary_type)
        assert json.dumps(encode(loaded), sort_keys=True) == json.dumps(encode(summary), sort_keys=True)
        assert loaded.schema == summaries.SUMMARY_SCHEMA and loaded.experiment == name
        headline = loaded.headline()
        assert headline and all(c.family.startswith(name) for c in headline)
        for entry in headline:
            assert entry.test in ("paired t", "Welch t")
            if entry.metric == "test_accuracy":
                low, high = entry.test_set_interval
                assert low <= high
        text = summaries.summary_path(study.results_dir, name).read_text()
        assert json.loads(text) and "NaN" not in text  # strict JSON
        assert len(summary.groups) == len(plans[name].groups)
    exp2 = summaries.load_summary(study.results_dir, "exp2", study.profile, REGISTRY.get("exp2").summary_type)
    tests = {(c.name, c.first[1]): c.test for c in exp2.comparisons if c.metric == "test_accuracy"}
    assert tests["transfer_vs_scratch_b", 0.0] == "paired t" and tests["transfer_vs_holdout", 0.0] == "Welch t"
    exp1 = summaries.load_summary(study.results_dir, "exp1", study.profile, REGISTRY.get("exp1").summary_type)
    assert exp1.grid_check.passed in (True, False) and len(exp1.grid.rates) == 5


def test_holm_is_applied_over_the_declared_family(complete):
    study, plans = complete
    exp2 = REGISTRY.get("exp2").summarize(study, plans["exp2"])
    headline = exp2.headline()
    assert {c.family for c in headline} == {"exp2 dropout (2 headline tests, Holm)",
                                            "exp2 transfer (12 headline tests, Holm)"}
    assert len(headline) == 14 and all(c.mde_alpha == 0.05 / (2 if "dropout" in c.family else 12) for c in headline)
    source = [c for c in headline if c.name == "transfer_vs_source"]
    assert len(source) == 6 and all(c.test == "paired t" for c in source)  # paired by seed across the halves
    finite = [c for c in headline if math.isfinite(c.p)]
    assert all(c.p_holm >= c.p for c in finite)


@pytest.mark.parametrize("content, message", [
    (None, "is missing"), ("{", "is damaged"), ('{"schema": 99, "experiment": "exp1", "groups": []}', "schema 99"),
])
def test_a_missing_or_damaged_summary_is_one_clear_error(tmp_path, content, message):
    path = summaries.summary_path(tmp_path, "exp1")
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        summaries.load_summary(tmp_path, "exp1", "quick")
    assert "python -m dnnls_tf run exp1 --profile quick" in str(error.value)


def test_every_headline_comparison_carries_its_held_out_sampling_interval(complete):
    study, plans = complete
    for name in ("exp1", "exp2", "exp3"):
        summary = REGISTRY.get(name).summarize(study, plans[name])
        for entry in summary.headline():
            low, high = entry.sampling_interval
            assert entry.sampling_source and low <= entry.difference <= high, entry


def test_the_validation_interval_is_the_binomial_one():
    from types import SimpleNamespace

    def runs(accuracy):
        return [SimpleNamespace(stable=True, metrics={"val_accuracy": accuracy, "num_val": 1000})] * 3

    low, high = summaries.validation_interval(runs(0.5), runs(0.4), 0.1)
    half = 1.96 * math.sqrt(0.5 * 0.5 / 1000 + 0.4 * 0.6 / 1000)
    assert low == pytest.approx(0.1 - half) and high == pytest.approx(0.1 + half)
