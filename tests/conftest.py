import collections
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from dnnls_tf.experiments import load_config
from dnnls_tf.core.data import SHARED_SUBSET
from dnnls_tf.study.study import Study

TINY = {"data.source": "synthetic", "data.max_train": None, "data.max_test": None, "data.train_eval_sample": 100,
        "model.filters": [4, 8, 8], "model.fc_units": 16, "training.epochs": 2, "training.batch_size": 50,
        "training.seeds": [0, 1], "compute.workers": 1, "compute.progress": False,
        "compute.intra_op_threads": 1, "compute.inter_op_threads": 1}


def tiny_config(**settings):
    """The quick profile shrunk to a model and data set that train in about a second."""
    return load_config("quick", settings={**TINY, **{key.replace("__", "."): value for key, value in settings.items()}})


@pytest.fixture
def fresh_compiled(monkeypatch):
    """An empty cache of compiled kinds for this test, dropped after it (for a test that patches what gets
    traced, or builds kinds no other test runs); the session's cache comes back afterwards."""
    from dnnls_tf.core import training

    monkeypatch.setattr(training, "_COMPILED", collections.OrderedDict())


@pytest.fixture
def empty_compiled(monkeypatch):
    """An empty cache of compiled kinds for this test (it counts traces); the kinds it traced join the
    session's cache afterwards, so later tests do not trace them again (a trace costs seconds)."""
    from dnnls_tf.core import training

    kept = training._COMPILED
    monkeypatch.setattr(training, "_COMPILED", collections.OrderedDict())
    yield
    for key, compiled in training._COMPILED.items():
        kept.setdefault(key, compiled)


@pytest.fixture
def tiny_study(tmp_path):
    return Study(tiny_config(), root=tmp_path, writable=True)


@pytest.fixture(scope="session")
def _trained_root(tmp_path_factory):
    from dnnls_tf.core import runtime
    from dnnls_tf.study.runner import execute

    root = tmp_path_factory.mktemp("trained")
    study = Study(tiny_config(), root=root, writable=True)
    pools = runtime.start(study.config.compute)
    for seed in (0, 1):
        execute(study.spec(seed, 0.05), study, pools)
    return root


@pytest.fixture
def trained_study(_trained_root, tmp_path):
    """A tiny study whose store holds the holdout runs of seeds 0 and 1 at rate 0.05 (a fresh copy per test)."""
    shutil.copytree(_trained_root, tmp_path / "root")
    return Study(tiny_config(), root=tmp_path / "root", writable=True)


@pytest.fixture(scope="session")
def complete_root(tmp_path_factory):
    """A complete fake store of the tiny config, with its summaries (no figures). Copy it before changing it."""
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.runner import write_summaries
    from fakes import fill_fakes

    root = tmp_path_factory.mktemp("complete")
    study = Study(tiny_config(), root=root, writable=True)
    write_summaries(study, REGISTRY, fill_fakes(study, list(REGISTRY.names)))
    return root


@pytest.fixture(scope="session")
def real_subset():
    if not SHARED_SUBSET.is_dir() and not os.environ.get("DNNLS_DATA_DIR"):
        pytest.skip("the real CIFAR-10 subset is not available")
    return os.environ.get("DNNLS_DATA_DIR") or str(SHARED_SUBSET)


def weights_by_name(model) -> dict:
    return {weight.path: weight.numpy() for weight in model.weights}
