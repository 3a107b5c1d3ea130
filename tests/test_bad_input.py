"""Every kind of bad input the reliability review found: one line on stderr, exit 2, no
traceback, and nothing stored changes (hash of the whole root before and after).

BAD_INPUTS is also the table the README points to: kind, command, the line's gist.
"""
import hashlib
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, tiny_config
from dnnls_tf.cli import main

BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def _settings() -> list[str]:
    return [f"--set={key}={json.dumps(value)}" for key, value in TINY.items()]


def _folder(path: Path, labels=None, data=None) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    for name in BATCHES:
        batch = {b"data": rng.integers(0, 256, (50, 3072), dtype=np.uint8) if data is None else data,
                 b"labels": list(np.arange(50) % 10) if labels is None else labels}
        (path / name).write_bytes(pickle.dumps(batch))
    return path


def _data_case(**batch):
    def prepare(tmp, root):
        folder = _folder(tmp / "data", **batch)
        return ["run", "baseline", "--profile", "quick", "--root", str(root), "--data-dir", str(folder),
                "--set=data.source=auto"]
    return prepare


def _run_with(*settings):
    def prepare(tmp, root):
        return ["run", "exp1", "--profile", "quick", "--root", str(root), *_settings(), *settings]
    return prepare


def _damage(relative_glob: str, edit, command: str = "figures"):
    def prepare(tmp, root):
        path = sorted(root.glob(relative_glob))[0]
        edit(path)
        return [command, "--profile", "quick", "--root", str(root), *_settings()]
    return prepare


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_status(path: Path):
    metrics = json.loads(path.read_text())
    metrics.pop("status")
    path.write_text(json.dumps(metrics))


def _cut_last_value(path: Path):
    text = path.read_text().rstrip("\n")
    path.write_text(text[: text.rindex(",")] + "\n")


def _archive(tmp, root):
    folder = _folder(tmp / "cifar-10-batches-py")
    archive = tmp / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(folder, arcname="cifar-10-batches-py")
    return ["run", "baseline", "--profile", "quick", "--root", str(root), "--data-dir", str(archive),
            "--set=data.source=auto"]


def _marker(value):
    def prepare(tmp, root):
        (root / "results" / "quick" / "store.json").write_text(json.dumps({"format": value}))
        return ["status", "--profile", "quick", "--root", str(root), *_settings()]
    return prepare


def _root_is_a_file(command):
    def prepare(tmp, root):
        (tmp / "file").write_text("")
        return [command, *(["baseline"] if command == "run" else []), "--profile", "quick", "--root",
                str(tmp / "file"), *_settings()]
    return prepare


def _unwritable_root(tmp, root):
    return ["run", "baseline", "--profile", "quick", "--root", "/sys/dnnls-tf-test", *_settings()]


# kind -> (prepare(tmp, root) -> argv, what the one line says)
BAD_INPUTS = {
    "string labels in a batch": (_data_case(labels=["cat"] * 50), "labels must be integers"),
    "float labels in a batch": (_data_case(labels=[0.5] * 50), "labels must be integers"),
    "labels outside 0..9": (_data_case(labels=list(np.arange(50) % 10 + 1)), "labels must lie in 0..9"),
    "images of the wrong shape": (_data_case(data=np.zeros((50, 1024), np.uint8)), "must have shape (N, 3072)"),
    "a data folder that does not exist": (lambda tmp, root: ["run", "baseline", "--profile", "quick", "--root",
                                                             str(root), "--data-dir", str(tmp / "nowhere")],
                                          "does not exist"),
    "an archive with the wrong checksum": (_archive, "is not the official cifar-10-python.tar.gz"),
    "--root pointing at a file (run)": (_root_is_a_file("run"), "is a file"),
    "--root pointing at a file (status)": (_root_is_a_file("status"), "is a file"),
    "a store that cannot be written": (_unwritable_root, "cannot write to the store"),
    "learning_rate: .inf": (_run_with("--set=training.learning_rate=.inf"), "must be a finite number"),
    "max_train: 1 (no validation images)": (_run_with("--set=data.max_train=1"), "'data.max_train' must be"),
    "too few images to hold out validation": (_run_with("--set=data.max_train=10", "--set=data.val_fraction=0.01"),
                                              "too few to hold out validation"),
    "dropout_rates: [0, 0, 0, 0, 0]": (_run_with("--set=exp2.dropout_rates=[0,0,0,0,0]"), "five different rates"),
    "an unknown setting": (_run_with("--set=training.epohcs=3"), "unknown key 'training.epohcs'"),
    "a setting of the wrong type": (_run_with("--set=training.epochs=three"), "must be of type int"),
    "a config file that does not exist": (_run_with("--config=/no/such/file.yaml"), "no such file"),
    "status --profile ''": (lambda tmp, root: ["status", "--profile", "", "--root", str(root)], "--profile is empty"),
    "metrics.json without status": (_damage("results/quick/runs/*/metrics.json", _drop_status), "missing or damaged"),
    "a truncated history.csv row": (_damage("results/quick/runs/*/history.csv", _cut_last_value),
                                    "missing or damaged"),
    "a truncated summary.json": (_damage("results/quick/exp2/summary.json", _truncate), "is damaged (not JSON)"),
    "a truncated summary.json (report)": (_damage("results/quick/exp1/summary.json", _truncate, "report"),
                                          "is damaged (not JSON)"),
    "a store of format 1": (_marker(1), "holds runs of store format 1"),
    "a store marked with format '1' (a string)": (_marker("1"), "names store format '1'"),
    "bench --json into a missing folder": (lambda tmp, root: ["bench", "--json", str(tmp / "no" / "b.json")],
                                           "does not exist"),
}


@pytest.fixture(scope="module")
def complete_root(tmp_path_factory):
    """A complete fake store of the tiny config, with its summaries (no figures: every bad input
    is refused before they would be read)."""
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.runner import write_summaries
    from dnnls_tf.study.study import Study
    from fakes import fill_fakes

    root = tmp_path_factory.mktemp("complete")
    study = Study(tiny_config(), root=root, writable=True)
    write_summaries(study, REGISTRY, fill_fakes(study, ["baseline", "exp1", "exp2", "exp3"]))
    return root


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_no_traceback_and_the_store_unchanged(kind, complete_root, tmp_path, capsys):
    prepare, message = BAD_INPUTS[kind]
    root = tmp_path / "root"
    shutil.copytree(complete_root, root)
    argv = prepare(tmp_path, root)
    before = snapshot(root)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0] and "Traceback" not in err, lines[0]
    assert snapshot(root) == before
