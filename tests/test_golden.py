"""The committed subset study: its run ids are pinned, every run keeps the store's contract,
the plans of today's code name exactly the committed runs (nothing stale, nothing missing),
and today's code trains committed runs again bit for bit (on the CPU that trained them)."""
import hashlib
import json

import numpy as np
import pytest

from dnnls_tf.experiments import REGISTRY
from dnnls_tf.study.planner import plan_all, plan_one
from dnnls_tf.core import runtime
from dnnls_tf.experiments import load_config
from dnnls_tf.paths import PROJECT_ROOT
from dnnls_tf.study.store import RunStore
from dnnls_tf.study.study import Study

# sha256 of the 183 sorted run ids of results/subset (a change to the spec, the data or the
# hashing changes it: the committed study would then be stale and must be re-run)
SUBSET_RUN_IDS = "27770d36bd654e29"
BASELINE_RUN_ID = "09fec8ee94d9"


@pytest.fixture(scope="module")
def subset(real_subset):
    if not (PROJECT_ROOT / "results" / "subset" / "store.json").is_file():
        pytest.skip("no committed subset store")
    return Study(load_config("subset"), root=PROJECT_ROOT, data_dir=real_subset)


def test_the_committed_run_ids_are_pinned(subset):
    ids = sorted(subset.store.run_ids())
    assert len(ids) == 183
    assert hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16] == SUBSET_RUN_IDS
    assert plan_one(subset, REGISTRY, "baseline").specs()[0].run_id == BASELINE_RUN_ID


def _mirror_runs(study) -> set[str]:
    """Committed runs trained on the JPEG mirror (experiment 4 on the subset profile)."""
    return {run_id for run_id in study.store.run_ids() if study.store.get(run_id).spec.data_source == "mirror"}


def _skipped(plan) -> bool:
    """Experiment 4 without the mirror: its plan says why in one line and names no run."""
    return bool(plan.choices.get("skipped"))


def test_todays_plans_name_exactly_the_committed_runs(subset):
    planned, skipped = set(), False
    for name, plan in plan_all(subset, REGISTRY, REGISTRY.names).items():
        assert plan.complete, (name, [w.what for w in plan.waiting])
        planned |= {spec.run_id for spec in plan.specs()}
        skipped = skipped or _skipped(plan)
    committed = set(subset.store.run_ids())
    assert planned == (committed - _mirror_runs(subset) if skipped else committed)


def test_every_committed_run_keeps_the_contract(subset):
    store = RunStore(PROJECT_ROOT, "subset")
    for run_id in store.run_ids():
        assert store.problem(run_id) is None, run_id  # parses, hashes to its id, best_epoch = argmax val, ...
        run = store.get(run_id)
        assert set(run.gradients) >= {"weight_sq", "temporal_snr", "count", "sum", "sum_sq", "sum_abs"}
        assert len(run.steps) > 0 and "stable" in run.metrics
        if run.metrics["best_epoch"] is not None:  # the subset's test set, or the JPEG mirror's (experiment 4)
            assert len(run.predictions["test_predictions"]) == (10_000 if run.spec.data_source == "mirror" else 1017)


def test_the_committed_grid_passes_its_check(subset):
    summary = json.loads((subset.results_dir / "exp1" / "summary.json").read_text())
    check = summary["grid_check"]
    assert check["passed"] and all(row["unstable"] == 0 for row in check["rates"]) and check["rates"][0]["saturated"]
    assert summary["grid"]["rates"] == sorted(summary["grid"]["rates"]) and len(summary["grid"]["rates"]) == 5


def _trained_here(subset, here: str) -> list[tuple[int, str]]:
    """(images trained, run id) of the committed runs this CPU trained: a run records its CPU in
    metrics.json; a run stored before that has its CPU from the timeline of the last `run` command."""
    timeline = json.loads((subset.results_dir / "timeline" / "run-all.json").read_text())
    listed = ({e["run_id"]: e["images"] for e in timeline["timeline"] if "images" in e}
              if timeline["cpu_identity"] == here else {})
    trained = []
    for run_id in subset.store.run_ids():
        run = subset.store.get(run_id)
        recorded = run.metrics.get("cpu_identity")
        if recorded == here or (recorded is None and run_id in listed):
            images = run.spec.epochs * subset.splits_for(run.spec.data_source).size(run.spec.train_split)
            trained.append((images, run_id))
    return trained


@pytest.mark.slow
@pytest.mark.parametrize("which", ["the cheapest run", "the cheapest batch-norm run"])
def test_todays_code_trains_committed_runs_again_bit_for_bit(subset, which):
    """A committed run trained on this CPU (float results differ between CPUs), trained again by today's
    code: the same history, steps, gradient sums and predictions, bit for bit."""
    here = runtime.cpu_description()["cpu_identity"]
    entries = _trained_here(subset, here)
    if which != "the cheapest run":
        entries = [e for e in entries if subset.store.get(e[1]).spec.batch_norm]
    if not entries:
        pytest.skip(f"no committed {which[13:]} was trained on {here}: float results differ between CPUs")
    from dnnls_tf.core.training import train_run

    stored = subset.store.get(min(entries)[1])
    spec = stored.spec
    runtime.start(subset.config.compute)  # the study's thread pools
    result = train_run(spec, subset.splits_for(spec.data_source))
    for column in stored.history.columns:
        np.testing.assert_array_equal(result.history[column].to_numpy(), stored.history[column].to_numpy(), column)
    for column in stored.steps.columns:
        np.testing.assert_array_equal(result.steps[column].to_numpy(), stored.steps[column].to_numpy(), column)
    for key, value in stored.gradients.items():
        np.testing.assert_array_equal(np.asarray(result.gradients[key]), np.asarray(value), key)
    for key, value in stored.predictions.items():
        np.testing.assert_array_equal(result.predictions[key], value, key)


def test_a_setting_added_with_its_default_leaves_every_committed_run_id_unchanged():
    """A new spec field (weight decay, default 0: what every committed run did) keeps the 183 ids;
    a run that uses the setting gets a new id."""
    import dataclasses

    from dnnls_tf.core.spec import RunSpec

    extended = dataclasses.make_dataclass(
        "RunSpec", [("weight_decay", float, dataclasses.field(default=0.0))], bases=(RunSpec,), frozen=True)
    store = RunStore(PROJECT_ROOT, "subset")
    ids = store.run_ids()
    if not ids:
        pytest.skip("no committed subset store")
    for run_id in ids:
        config = json.loads((store.run_dir(run_id) / "config.json").read_text())
        spec = extended.from_dict(config)
        assert spec.weight_decay == 0.0 and spec.run_id == run_id
        assert dataclasses.replace(spec, weight_decay=1e-4).run_id != run_id


@pytest.mark.slow  # reads all 183 runs and recomputes five summaries (about 10 s): `make test` runs it
def test_summaries_recomputed_from_the_committed_runs_equal_the_committed_summaries(subset):
    """Today's plans and typed summaries, computed from the committed runs, give the committed numbers."""
    from dnnls_tf.study.codec import encode
    from dnnls_tf.study.results import load_summary

    for name, plan in plan_all(subset, REGISTRY, REGISTRY.names).items():
        if _skipped(plan):  # no JPEG mirror here: experiment 4's runs are committed but cannot be planned
            continue
        experiment = REGISTRY.get(name)
        committed = load_summary(subset.results_dir, name, "subset", experiment.summary_type)
        assert encode(experiment.summarize(subset, plan)) == encode(committed), name
