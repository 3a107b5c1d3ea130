import collections
import gc
import os
import shutil

# The package's own import (light: it only sets environment variables) before any test module imports NumPy
# or TensorFlow: their settings then are the CLI's (oneDNN kernels, quiet logs, no huge-page advice for NumPy,
# which on these machines made a 150 MB allocation take 2 s of system time instead of 0.07 s).
import dnnls_tf  # noqa: F401


def _scratch_in_memory(folder: str = "/dev/shm", needed: int = 2 << 30) -> None:
    """Tests write about 40,000 throwaway files (stores copied, damaged, read back). On these machines' ext4
    (mounted with `discard`) deleting them takes 3 s of wall time, on a RAM file system 0.2 s: pytest's
    tmp_path folders go there when it has room (a small /dev/shm, as in a container, is left alone)."""
    try:
        if os.environ.get("PYTEST_DEBUG_TEMPROOT") is None and shutil.disk_usage(folder).free >= needed:
            os.environ["PYTEST_DEBUG_TEMPROOT"] = folder
    except OSError:  # no such folder
        pass


_scratch_in_memory()

import pytest

# The library is imported inside the fixtures and helpers: pytest-xdist's controller, which runs no test,
# starts the workers a second sooner without it.

TINY = {"data.source": "synthetic", "data.max_train": None, "data.max_test": None, "data.train_eval_sample": 100,
        "model.filters": [4, 8, 8], "model.fc_units": 16, "training.epochs": 2, "training.batch_size": 50,
        "training.seeds": [0, 1], "compute.workers": 1, "compute.progress": False,
        "compute.intra_op_threads": 1, "compute.inter_op_threads": 1}


def pytest_configure(config):
    """One intra-op and one inter-op thread per process that runs tests, as every profile that runs here
    trains (two single-threaded workers on two cores): set before any TensorFlow operation, or it is too
    late. pytest-xdist's controller runs no test and does not import TensorFlow."""
    if hasattr(config, "workerinput") or config.getoption("dist", "no") == "no":
        from dnnls_tf.core import runtime

        runtime.configure_threads(1, 1)


def pytest_unconfigure(config):
    """The process ends next: without this its last garbage collections walk every object TensorFlow made
    (about a second per worker, with the suite waiting)."""
    gc.freeze()


# Modules whose tests trace TensorFlow functions or read all of the JPEG mirror: a test there takes
# seconds. They run first, so that the two workers of `-n 2 --dist worksteal` end together on short tests.
HEAVY_FIRST = ("test_transfer", "test_training", "test_reuse", "test_golden", "test_bench", "test_gpu_path",
               "test_mirror", "test_plans")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.stem
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=rank)  # stable: the order within a module, and of the other modules, stays


def tiny_config(**settings):
    """The quick profile shrunk to a model and data set that train in about a second."""
    from dnnls_tf.experiments import load_config

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


def _tiny_study(root):
    from dnnls_tf.study.study import Study

    return Study(tiny_config(), root=root, writable=True)


@pytest.fixture
def tiny_study(tmp_path):
    return _tiny_study(tmp_path)


@pytest.fixture(scope="session")
def _trained_root(tmp_path_factory):
    from dnnls_tf.core import runtime
    from dnnls_tf.study.runner import execute

    root = tmp_path_factory.mktemp("trained")
    study = _tiny_study(root)
    pools = runtime.start(study.config.compute)
    for seed in (0, 1):
        execute(study.spec(seed, 0.05), study, pools)
    return root


@pytest.fixture
def trained_study(_trained_root, tmp_path):
    """A tiny study whose store holds the holdout runs of seeds 0 and 1 at rate 0.05 (a fresh copy per test)."""
    shutil.copytree(_trained_root, tmp_path / "root")
    return _tiny_study(tmp_path / "root")


@pytest.fixture(scope="session")
def complete_root(tmp_path_factory):
    """A complete fake store of the tiny config, with its summaries (no figures). Copy it before changing it."""
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.runner import write_summaries
    from fakes import fill_fakes

    root = tmp_path_factory.mktemp("complete")
    study = _tiny_study(root)
    write_summaries(study, REGISTRY, fill_fakes(study, list(REGISTRY.names)))
    return root


@pytest.fixture(scope="session")
def real_subset():
    from dnnls_tf.core.data import SHARED_SUBSET

    if not SHARED_SUBSET.is_dir() and not os.environ.get("DNNLS_DATA_DIR"):
        pytest.skip("the real CIFAR-10 subset is not available")
    return os.environ.get("DNNLS_DATA_DIR") or str(SHARED_SUBSET)


def weights_by_name(model) -> dict:
    return {weight.path: weight.numpy() for weight in model.weights}
