import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from dnnls_tf.config import load_config
from dnnls_tf.data import SHARED_SUBSET
from dnnls_tf.study import Study


def tiny_config(**training) -> dict:
    """The quick profile shrunk to a model and data set that train in about a second."""
    config = load_config("quick")
    config["data"].update(source="synthetic", max_train=None, max_test=None)
    config["model"].update(filters=[4, 8, 8], fc_units=16)
    config["training"].update(epochs=2, batch_size=50, seeds=[0, 1], progress=False, **training)
    config["compute"].update(workers=1)  # in-process; the parallel path has its own tests
    return config


@pytest.fixture
def tiny_study(tmp_path):
    return Study(config=tiny_config(), root=tmp_path)


@pytest.fixture(scope="session")
def _trained_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    study = Study(config=tiny_config(), root=root)
    study.run_all([study.run_config(0), study.run_config(1)])
    return root


@pytest.fixture
def trained_study(_trained_root, tmp_path):
    """A tiny study whose store already holds the runs of seeds 0 and 1 (a fresh copy per test)."""
    shutil.copytree(_trained_root, tmp_path / "root")
    return Study(config=tiny_config(), root=tmp_path / "root")


@pytest.fixture(scope="session")
def real_subset():
    if not SHARED_SUBSET.is_dir() and not os.environ.get("DNNLS_DATA_DIR"):
        pytest.skip("the real CIFAR-10 subset is not available")
    return os.environ.get("DNNLS_DATA_DIR") or str(SHARED_SUBSET)


def weights_by_name(model) -> dict[str, np.ndarray]:
    return {weight.path: weight.numpy() for weight in model.weights}
