"""Runs trained by parallel worker processes are the runs the parent would have trained."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd

from conftest import tiny_config
from dnnls_tf.study import Study


def _configs(study):
    configs = [study.run_config(seed, dropout=0.2) for seed in (0, 1)] + [study.run_config(0, batch_norm=True)]
    source = study.run_config(0)
    return source, configs + [study.run_config(0, init_from=source["run_id"], train_split="half_b")]


def _stored(study, run_id):
    run = study.store.load(run_id)
    return run.history, run.gradients, run.metrics["weights_sha256"]


def test_workers_store_the_same_runs_as_one_process(tmp_path):
    import tensorflow as tf

    # The workers get this process's thread pools (fixed once earlier tests started
    # TensorFlow): pool sizes change the last bits of a run, workers must not.
    pools = {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
             "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}
    serial_config = tiny_config()
    serial_config["compute"].update(pools)
    serial = Study(config=serial_config, root=tmp_path / "serial")
    parallel_config = tiny_config()
    parallel_config["compute"].update(pools, workers=2)
    parallel = Study(config=parallel_config, root=tmp_path / "parallel")
    for study in (serial, parallel):
        source, configs = _configs(study)
        study.run(source)  # a transfer run's source is trained before the batch
        study.run_all(configs + configs[:1])  # a config listed twice is trained once
    ids = [config["run_id"] for config in configs]
    assert sorted(parallel.trained[1:]) == sorted(ids) and parallel.reused == []  # trained now, not read
    for run_id in ids:
        history_a, gradients_a, weights_a = _stored(serial, run_id)
        history_b, gradients_b, weights_b = _stored(parallel, run_id)
        pd.testing.assert_frame_equal(history_a, history_b)
        for name in ("count", "sum", "sum_sq", "sum_abs"):
            np.testing.assert_array_equal(gradients_a[name], gradients_b[name])
        assert weights_a == weights_b
        metrics = json.loads((parallel.store.run_dir(run_id) / "metrics.json").read_text())
        assert "intra_op_threads" in metrics and "inter_op_threads" in metrics


SCRIPT = """
import logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
from dnnls_tf.training import configure_threads
import tensorflow as tf
print(configure_threads(1, 1))
tf.constant(1.0) + 1.0  # TensorFlow starts: the pools are fixed from here on
print(configure_threads(1, 1))
print(configure_threads(2, 0))
"""


def test_thread_pools_are_set_before_tensorflow_starts_and_kept_after():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    pools = "{'intra_op_threads': 1, 'inter_op_threads': 1}"
    assert lines[0] == lines[1] == lines[-1] == pools
    assert "already fixed at 1 intra-op / 1 inter-op threads (asked for 2 / 0)" in lines[2]
