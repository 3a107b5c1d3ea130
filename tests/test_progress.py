"""What a user sees while runs train: a bar per experiment whose total is known up front, a line per finished
run that names experiment, group, rate and seed, and no keras-tuner display wiping the notebook's output."""
import shutil

import pytest

from conftest import tiny_config
from dnnls_tf.core.spec import WarmupCosine
from dnnls_tf.experiments import REGISTRY
from dnnls_tf.experiments.expected import expected_runs
from dnnls_tf.experiments.learning_rate import tuning
from dnnls_tf.study.runner import Runner, Task
from dnnls_tf.study.study import Study
from fakes import fill_fakes


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """A tiny study whose four experiments are complete with fake runs, and its plans."""
    study = Study(tiny_config(exp1__probe_seeds=[100, 101]), root=tmp_path_factory.mktemp("complete"), writable=True)
    return study, fill_fakes(study, list(REGISTRY.names))


def own_runs(plans) -> dict[str, list[str]]:
    """Each experiment's distinct runs, a shared run counted for the first plan that names it."""
    seen, own = set(), {}
    for plan in plans:
        own[plan.experiment] = [spec.run_id for spec in plan.specs() if spec.run_id not in seen]
        seen.update(own[plan.experiment])
    return own


def test_expected_runs_are_the_complete_plans_runs_but_for_a_grown_ladder_and_a_shared_peak(complete):
    study, plans = complete
    exp1, plan = study.config.exp1, plans[1]
    grown = len(plan.choices["rungs"]) - exp1.ladder_rungs  # rungs added below the first ladder
    sweep = {spec.run_id for key, specs in plan.groups.items() if key[0] == "rate" for spec in specs}
    shared_peak = len(sweep & {spec.run_id for spec in plan.groups["peak_constant",]})  # a peak on a grid rate
    expected = expected_runs(study.config)
    assert list(expected) == list(REGISTRY.names)
    counted = {name: len(ids) for name, ids in own_runs(plans).items()}
    exp3 = next(plan for plan in plans if plan.experiment == "exp3")
    own_is_plain = exp3.choices["bn_rate"] == exp3.choices["bn_rates"][0]  # batch norm's own rate is the plain one
    shared_own = (len(study.seeds) - study.config.exp3.selection_seeds) if own_is_plain else 0
    assert counted == {**expected, "exp1": expected["exp1"] + grown * len(exp1.probe_seeds) - shared_peak,
                       "exp3": expected["exp3"] - shared_own}


def without_three_exp2_runs(study, plans, tmp_path):
    """A copy of the complete study whose first three runs of experiment 2 are gone, and exp2's own runs."""
    shutil.copytree(study.root, tmp_path / "root")
    copy = Study(study.config, root=tmp_path / "root", writable=True)
    exp2 = own_runs(plans)["exp2"]
    for run_id in exp2[:3]:
        copy.store.discard(run_id, "a test removes it")
    return copy, exp2


def test_a_bar_per_unfinished_experiment_with_its_total_up_front(complete, tmp_path):
    study, plans = complete
    copy, exp2 = without_three_exp2_runs(study, plans, tmp_path)
    expected = {**expected_runs(study.config), "exp2": len(exp2) + 7}  # a plan that has not unfolded yet
    runner = Runner(copy, {}, REGISTRY, expected=expected, bars=True)
    plans[2].waiting.append("a stage not named yet")  # the plan as it stood before it unfolded
    try:
        runner._show_progress(plans)
    finally:
        plans[2].waiting.pop()
    assert list(runner.bars) == ["exp2"]  # the complete experiments get none
    bar = runner.bars["exp2"]
    assert (bar.n, bar.total) == (len(exp2) - 3, len(exp2) + 7) and bar.desc.startswith("exp2 (dropout and transfer)")
    runner._show_progress(plans)  # complete: the total is what the plan names, whatever was expected
    assert (bar.n, bar.total) == (len(exp2) - 3, len(exp2))
    bar.close()


def test_the_rate_counts_the_runs_this_process_trained_not_those_a_plan_found_stored(complete, tmp_path):
    """A resumed study: the bar starts on the runs its plan names so far, and more stored runs appear as the
    plan unfolds; the rate (and the time left) must count only what was trained here, never go negative."""
    study, plans = complete
    copy, exp2 = without_three_exp2_runs(study, plans, tmp_path)
    runner = Runner(copy, {}, REGISTRY, expected=expected_runs(study.config), bars=True)
    bar = None
    try:
        runner._show_progress(plans)
        bar = runner.bars["exp2"]
        assert bar.n - bar.initial == 0 and bar.format_dict["rate"] in (None, 0)
        runner.trained.append(exp2[0])  # one run trained here (the store does not hold it in this test)
        runner._show_progress(plans)
        assert bar.n - bar.initial == 1
        assert bar.format_dict["rate"] is None or bar.format_dict["rate"] > 0
    finally:
        if bar is not None:
            bar.close()


def test_a_run_line_names_experiment_group_rate_and_seed(tiny_study):
    spec = tiny_study.spec(3, 0.00848, dropout=0.2, init_from="abc", splits=("half_b", "half_a"))
    assert Task(spec, 0, 0.0, "exp2", "transfer", ("transfer", 0.2)).describe() == \
        "exp2 transfer, dropout 0.2, lr 0.00848, seed 3"
    assert Task(tiny_study.spec(0, 0.01), 0, 0.0, "exp2", "holdout", ("holdout", 0.0)).describe() == \
        "exp2 holdout, dropout 0, lr 0.01, seed 0"  # a group keyed by its dropout rate names it, 0 too
    assert Task(tiny_study.spec(100, 0.5), 0, 0.0, "exp1", "probe", ("probe", 0.5)).describe() == \
        "exp1 probe, lr 0.5, seed 100"
    assert Task(tiny_study.spec(1000, 0.02), 0, 0.0, "exp1", "trial", ("trial", 0)).describe() == \
        "exp1 trial, lr 0.02, seed 1000"  # a trial's index is no dropout rate
    assert Task(tiny_study.spec(1, 0.01, batch_norm=True), 0, 0.0, "exp3", "batch_norm", ("batch_norm",)).describe() \
        == "exp3 batch norm, batch norm, lr 0.01, seed 1"
    schedule = WarmupCosine(peak=0.02, warmup_epochs=2, final_fraction=0.01)
    assert Task(tiny_study.spec(4, schedule), 0, 0.0, "exp1", "schedule", ("schedule",)).describe() == \
        "exp1 schedule, lr warm-up 2 epochs to 0.02, cosine decay to 0.01 x peak, seed 4"


def test_keras_tuner_never_clears_the_notebook_output(monkeypatch):
    cleared = []
    monkeypatch.setattr("IPython.display.clear_output", lambda *args, **kwargs: cleared.append(True))
    space = tuning.ScheduleSpace(0.01, 0.04)
    trials = tuning.propose(space, 3, seed=1000)
    assert len(trials) == 3
    assert tuning.select(space, 3, 1000, [0.4, 0.6, 0.5]) == 1 and not cleared
