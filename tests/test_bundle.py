import zipfile

from dnnls_tf.tools.bundle import write_bundle


def test_bundle_holds_library_notebooks_results_and_weights_but_no_data(trained_study):
    path, weights = write_bundle(trained_study)
    names = zipfile.ZipFile(path).namelist()
    assert weights == 2
    assert {"README.md", "requirements.txt", "dnnls_tf/core/training.py", "configs/base.yaml", "report/main.tex",
            "notebooks/01_learning_rate.ipynb", "weights/README.md"} <= set(names)
    assert sum(name.endswith(".weights.h5") for name in names) == 2
    assert sum(name.endswith("/history.csv") and name.startswith("results/quick/runs/") for name in names) == 2
    assert not [name for name in names if "data_batch" in name or "test_batch" in name or "/tensorboard/" in name]
    assert not list(path.parent.glob(".tmp-*"))
