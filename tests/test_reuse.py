"""Per-run costs paid once: runs of one kind share their compiled functions, and a reused trainer
computes exactly what a fresh one would."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from dnnls_tf.core import training
from dnnls_tf.study.study import Study

pytestmark = pytest.mark.usefixtures("empty_compiled")  # each test starts from no compiled kind

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return Study(tiny_config(data__train_eval_sample=60), root=tmp_path_factory.mktemp("reuse"))


def _traces() -> int:
    return sum(compiled.trainer.traces() for compiled in training._COMPILED.values())


def _assert_same_run(first, second):
    assert first.history.equals(second.history) and first.steps.equals(second.steps)
    assert set(first.gradients) == set(second.gradients)
    for key, value in first.gradients.items():
        np.testing.assert_array_equal(value, second.gradients[key], err_msg=key)
    for key, value in first.predictions.items():
        np.testing.assert_array_equal(value, second.predictions[key], err_msg=key)
    timings = {"wall_seconds", "cpu_seconds", "images_per_second", "images_per_cpu_second"}
    assert {k: v for k, v in first.metrics.items() if k not in timings} == \
        {k: v for k, v in second.metrics.items() if k not in timings}
    assert len(first.model.variables) == len(second.model.variables)
    for a, b in zip(first.model.variables, second.model.variables):  # weights, BN statistics, seed states
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_traces_grow_with_the_kinds_of_run_not_the_runs(study):
    def one_epoch(spec):
        return dataclasses.replace(spec, epochs=1, gradient_window=1)

    kinds = [lambda seed: one_epoch(study.spec(seed, 0.05, dropout=0.3)),
             lambda seed: one_epoch(study.spec(seed, 0.02 + seed / 100, batch_norm=True))]  # a constant rate is per run
    for kind in kinds:
        training.train_run(kind(0), study.splits)
    after_one_run_each = _traces()
    assert len(training._COMPILED) == 2 and after_one_run_each > 0
    for kind in kinds:
        training.train_run(kind(1), study.splits)
    assert _traces() == after_one_run_each and len(training._COMPILED) == 2
    training.train_run(one_epoch(study.spec(0, 0.05)), study.splits)  # a third kind: traced once more
    assert len(training._COMPILED) == 3 and _traces() > after_one_run_each


def test_a_schedule_with_other_constants_is_another_kind(study):
    from dnnls_tf.core.spec import WarmupCosine

    spec = study.spec(0, WarmupCosine(0.05, 1, 0.01))
    assert training.kind_key(spec, 10) == training.kind_key(dataclasses.replace(spec, seed=3), 10)
    assert training.kind_key(spec, 10) != training.kind_key(study.spec(0, WarmupCosine(0.04, 1, 0.01)), 10)
    assert training.kind_key(spec, 10) != training.kind_key(spec, 11)  # its steps are traced constants
    constant = study.spec(0, 0.05)
    assert training.kind_key(constant, 10) == training.kind_key(dataclasses.replace(constant, learning_rate=0.1,
                                                                                      epochs=7), 11)
    assert training.kind_key(constant, 10) != training.kind_key(dataclasses.replace(constant, dropout=0.2), 10)


@pytest.mark.parametrize("options", [{"dropout": 0.3, "batch_norm": True},
                                     pytest.param({"mixed_precision": True}, marks=pytest.mark.slow)],
                         ids=["dropout_batch_norm", "mixed_precision"])
def test_a_reused_trainer_trains_the_run_bit_for_bit_as_a_fresh_one(study, options):
    mixed = options.pop("mixed_precision", False)

    def spec(seed, rate=0.05):
        result = dataclasses.replace(study.spec(seed, rate, **options), epochs=2, gradient_window=1)
        return dataclasses.replace(result, mixed_precision=True) if mixed else result

    training.clear_compiled()
    fresh = training.train_run(spec(0), study.splits)
    training.train_run(spec(1, 0.08), study.splits)  # moves every piece of state: weights, slots, scale, seeds
    reused = training.train_run(spec(0), study.splits)
    assert len(training._COMPILED) == 1
    _assert_same_run(fresh, reused)


@pytest.mark.slow
def test_transfer_runs_reuse_the_head_and_its_frozen_features(study, tmp_path):
    from dnnls_tf.study.study import HALVES, SWAPPED

    source_spec = dataclasses.replace(study.spec(0, 0.05, batch_norm=True, splits=HALVES), epochs=2)
    source = training.train_run(source_spec, study.splits)
    weights = tmp_path / "source.weights.h5"
    source.model.save_weights(weights)

    def transfer(seed):
        return dataclasses.replace(study.spec(seed, 0.05, batch_norm=True, splits=SWAPPED,
                                              init_from=source_spec.run_id), epochs=2)

    training.clear_compiled()
    fresh = training.train_run(transfer(1), study.splits, weights)
    frozen_random = dataclasses.replace(study.spec(0, 0.05, batch_norm=True, splits=SWAPPED, frozen=True), epochs=2)
    training.train_run(frozen_random, study.splits)  # the same kind: random frozen layers this time
    reused = training.train_run(transfer(1), study.splits, weights)
    assert len(training._COMPILED) == 1
    _assert_same_run(fresh, reused)


COUNT_COMPILES = """
import dataclasses, json, sys
sys.path.insert(0, {tests!r})
from conftest import tiny_config
from dnnls_tf.core import training
from dnnls_tf.study.study import Study
study = Study(tiny_config(), root={root!r})
spec = dataclasses.replace(study.spec(0, 0.05), jit_compile=True, epochs=2)
for seed in range({runs}):
    training.train_run(dataclasses.replace(spec, seed=seed), study.splits)
"""


@pytest.mark.slow
def test_xla_compiles_grow_with_the_kinds_not_the_runs(tmp_path):
    """XLA's own count: each compilation dumps its module (XLA_FLAGS=--xla_dump_to)."""
    counts = []
    for runs in (1, 3):
        dump = tmp_path / f"dump{runs}"
        code = COUNT_COMPILES.format(tests=str(Path(__file__).parent), root=str(tmp_path / f"root{runs}"), runs=runs)
        environment = {**os.environ, "XLA_FLAGS": f"--xla_dump_to={dump}", "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run([sys.executable, "-c", code], check=True, env=environment, capture_output=True)
        counts.append(len(list(dump.glob("*before_optimizations.txt"))))
    assert counts[0] > 0 and counts[1] == counts[0], counts
