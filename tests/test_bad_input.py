"""Every kind of bad input the reliability review found: one line on stderr, exit 2, no
traceback, and nothing stored changes (hash of the whole root before and after).

BAD_INPUTS is also the table the README points to: kind, command, the line's gist.
"""
import hashlib
import json
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY
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


# ------------------------------------------------------------------ reliability v3 (issue 26)
class _Reduced:
    """Pickles as `function(*arguments)`, then `state` (if given) through BUILD: a crafted pickle."""

    def __init__(self, function, arguments, state=None):
        self.reduced = (function, arguments) if state is None else (function, arguments, state)

    def __reduce__(self):
        return self.reduced


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct, as its pickles name it


def _batch_file(name: str, content):
    """A data case whose batch `name` is `content`: bytes as they are, else pickled."""
    def prepare(tmp, root):
        folder = _folder(tmp / "data")
        target = folder / name
        target.unlink()
        if content == "fifo":
            os.mkfifo(target)
        else:
            target.write_bytes(content if isinstance(content, bytes) else pickle.dumps(content))
        return ["run", "baseline", "--profile", "quick", "--root", str(root), "--data-dir", str(folder),
                "--set=data.source=auto"]
    return prepare


def _batch(data):
    return {b"data": data, b"labels": list(range(10)) * 5}


# an empty array (NumPy's pickle) whose state then promises 100,000 images and brings no bytes
_EMPTY_STATE = _Reduced(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (100_000, 3072), np.dtype(np.uint8), False, b""))
# protocol 4: PROTO 4, BINBYTES8 promising 2^40 bytes that the file does not hold, STOP
_LENGTH_BEYOND_FILE = b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"short" + b"."


def _alias_bomb(tmp) -> Path:
    """312 bytes of YAML whose aliases expand to 9^9 strings."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config_file(content):
    def prepare(tmp, root):
        path = tmp / "settings.yaml"
        if content == "fifo":
            os.mkfifo(path)
        elif content == "bomb":
            path = _alias_bomb(tmp)
        else:
            path.write_bytes(content)
        return ["run", "exp1", "--profile", "quick", "--root", str(root), *_settings(), f"--config={path}"]
    return prepare


def _json_edit(edit):
    def change(path: Path):
        content = json.loads(path.read_text())
        content = edit(content)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return change


def _nested(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def _npz_edit(key, value):
    def change(path: Path):
        with np.load(path) as archive:
            content = {name: archive[name] for name in archive.files}
        content[key] = value(content[key])
        with open(path, "wb") as handle:  # np.savez would add '.npz' to a name without it
            np.savez(handle, **content)
    return change


def _csv_edit(edit):
    def change(path: Path):
        lines = path.read_text().splitlines()
        path.write_text("\n".join(edit(lines)) + "\n")
    return change


def _non_numeric_loss(lines):
    step, epoch, _, rate = lines[2].split(",")
    return [lines[0], lines[1], f"{step},{epoch},lots,{rate}", *lines[3:]]


def _replace_with_file(path: Path):
    folder = path.parent
    shutil.rmtree(folder)
    folder.write_text("not a run")


def _summary(edit, command="figures", experiment="exp2"):
    return _damage(f"results/quick/{experiment}/summary.json", _json_edit(edit), command)


def _first_group(edit):
    def change(summary):
        edit(summary["groups"][0])
        return summary
    return change


def _marker_folder(tmp, root):
    marker = root / "results" / "quick" / "store.json"
    marker.unlink()
    marker.mkdir()
    return ["status", "--profile", "quick", "--root", str(root), *_settings()]


def _long_path(option):
    def prepare(tmp, root):
        path = str(tmp / ("d" * 5000))
        argv = ["status", "--profile", "quick", "--root", str(root), *_settings()]
        return argv[:4] + [path] + argv[5:] if option == "--root" else [*argv, option, path, "--set=data.source=auto"]
    return prepare


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
    # --- reliability v3: small inputs stay small
    "a batch that reconstructs a huge array": (_batch_file("data_batch_1", _batch(
        _Reduced(_RECONSTRUCT, (np.ndarray, (10**9, 3072), b"b")))), "reconstructs an array of shape (1000000000, "),
    "a batch array whose state brings none of its bytes": (_batch_file("data_batch_2", _batch(_EMPTY_STATE)),
                                                           "comes with 0 bytes"),
    "a batch of object arrays": (_batch_file("test_batch", _batch(np.array([None] * 50, dtype=object))),
                                 "holds an array of type 'O8', not plain numbers"),
    "a batch whose length field promises more than the file holds": (
        _batch_file("data_batch_3", _LENGTH_BEYOND_FILE), "is not a CIFAR-10 pickle batch"),
    "a FIFO as a data batch": (_batch_file("data_batch_4", "fifo"), "is not a regular file"),
    "a YAML alias bomb in --config": (_config_file("bomb"), "aliases (*name) are not allowed"),
    "duplicate keys in --config": (_config_file(b"training:\n  epochs: 3\ntraining:\n  seeds: [0]\n"),
                                   "duplicate key 'training'"),
    "a binary --config": (_config_file(bytes(range(256)) * 4), "is not UTF-8 text"),
    "a FIFO as --config": (_config_file("fifo"), "is not a regular file"),
    "a 100 kB --set value": (_run_with("--set=training.epochs=" + "x" * 100_000), "must be of type int, got 'xxx"),
    "a seed beyond 2^32": (_run_with("--set=training.seeds=[0, 4294967296]"), "integers in 0..2^32-1"),
    "exp1.ladder_factor just above 1": (_run_with("--set=exp1.ladder_factor=1.0001"), "would make a ladder of up to"),
    "compute.workers beyond any machine": (_run_with("--set=compute.workers=1000"), "must be an integer in 1..64"),
    "a 5,000-character --root": (_long_path("--root"), "File name too long"),
    "a 5,000-character --data-dir": (_long_path("--data-dir"), "File name too long"),
    "rehearse --json into a read-only place": (lambda tmp, root: ["rehearse", "--quick", "--json", "/sys/r.json"],
                                               "cannot write into /sys"),
    # --- damage caught where it is read
    "store.json that is a folder": (_marker_folder, "is not a valid store marker (Is a directory)"),
    "store.json nested 100,000 deep": (lambda tmp, root: (
        (root / "results/quick/store.json").write_text(_nested()),
        ["status", "--profile", "quick", "--root", str(root), *_settings()])[1], "is not a valid store marker"),
    "metrics.json nested 100,000 deep": (_damage("results/quick/runs/*/metrics.json",
                                                 lambda path: path.write_text(_nested())), "missing or damaged"),
    "gradients of the wrong dtype": (_damage("results/quick/runs/*/gradients.npz",
                                             _npz_edit("sum_sq", lambda v: v.astype(np.float32))),
                                     "missing or damaged"),
    "predictions of the wrong shape": (_damage("results/quick/runs/*/predictions.npz",
                                               _npz_edit("test_predictions", lambda v: v[:, None])),
                                       "missing or damaged"),
    "predictions with classes outside 0..9": (_damage("results/quick/runs/*/predictions.npz",
                                                      _npz_edit("test_predictions", lambda v: v + 10)),
                                              "missing or damaged"),
    "a non-numeric loss in steps.csv": (_damage("results/quick/runs/*/steps.csv", _csv_edit(_non_numeric_loss)),
                                        "missing or damaged"),
    "a run folder that is a file": (_damage("results/quick/runs/*/config.json", _replace_with_file),
                                    "missing or damaged"),
    "a summary nested 100,000 deep": (_damage("results/quick/exp2/summary.json",
                                              lambda path: path.write_text(_nested())), "nested too deeply"),
    "a summary without a key": (_summary(lambda summary: {k: v for k, v in summary.items() if k != "range_test"},
                                         experiment="exp1"),
                                "is damaged (exp1: lacks 'range_test')"),
    "a summary with a field of the wrong type": (_summary(lambda summary: {**summary, "range_test": [1]},
                                                          experiment="exp1"),
                                                 "is damaged (exp1.range_test: expected a mapping for RangeTest"),
    "a NUL in a summary's text": (_summary(lambda summary: {**summary, "description": "a\x00b"}),
                                  "a text with control characters at summary.description"),
    "TeX math as a summary's profile": (_summary(lambda summary: {**summary, "profile": "$\\frac{1"}),
                                        "is the summary of profile '$\\\\frac{1'"),
    "a summary naming a path as a run": (_summary(_first_group(lambda group: group["run_ids"].__setitem__(
        0, "../../../../outside"))), "'../../../../outside' where a run id (12 hex digits) belongs"),
    "a summary of valid JSON that is a list": (_summary(lambda summary: "[1, 2]", "report", "exp1"),
                                               "has summary schema None"),
    "report over a damaged run": (_damage("results/quick/runs/*/metrics.json", _drop_status, "report"),
                                  "summary, is damaged in"),
    "report over a missing run": (_damage("results/quick/runs/*/config.json",
                                          lambda path: shutil.rmtree(path.parent), "report"),
                                  "summary, is missing in"),
}


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
    assert len(lines[0]) <= 620, f"{len(lines[0])} characters"
    assert snapshot(root) == before
