"""The command line as a user meets it: exit codes, one-line errors, kill and resume."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dnnls_tf.config import CONFIG_DIR

TINY_PROFILE = """
description: tiny synthetic profile for tests
data: {source: synthetic, max_train: 300, max_test: 100}
model: {filters: [4, 8, 8], fc_units: 16}
training: {epochs: 2, batch_size: 50, seeds: [0, 1], progress: false}
exp1: {range_test_epochs: 1, tuner_trials: 1}
"""


@pytest.fixture
def tiny_configs(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copy(CONFIG_DIR / "base.yaml", folder / "base.yaml")
    (folder / "quick.yaml").write_text(TINY_PROFILE)
    return folder


def _env(configs=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("DNNLS_PROFILE", None)
    if configs:
        env["DNNLS_CONFIG_DIR"] = str(configs)
    return env


def cli(*args, configs=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "dnnls_tf", *args], capture_output=True, text=True,
                          env=_env(configs), timeout=600, **kwargs)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_bad_input_is_one_line_exit_2_and_leaves_the_store_alone(tmp_path, tiny_configs):
    root = tmp_path / "root"
    assert cli("run", "baseline", "--profile", "quick", "--root", str(root), configs=tiny_configs).returncode == 0
    before = _snapshot(root)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_configs, broken)
    (broken / "quick.yaml").write_text(TINY_PROFILE.replace("epochs: 2", "epochs: -2"))
    bad_data = tmp_path / "no-such-folder"
    cases = [
        (("run", "exp9", "--profile", "quick"), tiny_configs, "unknown experiment 'exp9'"),
        (("run", "baseline", "--profile", "huge"), tiny_configs, "unknown profile 'huge'"),
        (("run", "baseline", "--profile", "quick"), broken, "'training.epochs' must be a positive integer"),
        (("frobnicate",), tiny_configs, "invalid choice"),
        (("run", "baseline", "--profile", "quick", "--bogus"), tiny_configs, "unrecognized arguments"),
    ]
    for args, configs, message in cases:
        result = cli(*args, "--root", str(root), configs=configs)
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines == [lines[0]] and lines[0].startswith("error:") and message in lines[0], result.stderr
    for args, message in ((("--threads", "1"), "expected 2 arguments"), (("--threads", "-1", "0"), "non-negative"),
                          (("--rounds", "0"), "positive integer")):
        result = cli("bench", *args, configs=tiny_configs)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, args
    fresh = cli("run", "baseline", "--profile", "subset", "--root", str(tmp_path / "other"),
                "--data-dir", str(bad_data), configs=None)
    assert fresh.returncode == 2 and "does not exist" in fresh.stderr and "Traceback" not in fresh.stderr
    marker = root / "results" / "quick" / "store.json"
    original = marker.read_bytes()
    marker.write_text('{"format": 0}')
    stale = cli("status", "--profile", "quick", "--root", str(root), configs=tiny_configs)
    assert stale.returncode == 2 and "store format 0" in stale.stderr
    marker.write_bytes(original)
    assert _snapshot(root) == before


def test_second_run_trains_nothing_and_says_so(tmp_path, tiny_configs):
    args = ("run", "baseline", "--profile", "quick", "--root", str(tmp_path))
    first = cli(*args, configs=tiny_configs)
    assert first.returncode == 0 and "trained 1 run(s)" in first.stdout
    second = cli(*args, configs=tiny_configs)
    assert second.returncode == 0 and "nothing to train" in second.stdout
    status = cli("status", "--profile", "quick", "--root", str(tmp_path), configs=tiny_configs)
    assert "baseline    1 planned: 1 done" in status.stdout


def _histories(root: Path) -> dict:
    runs = root / "results" / "quick" / "runs"
    return {p.name: pd.read_csv(p / "history.csv") for p in sorted(runs.iterdir())}


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_sweep_resumes_to_the_same_store(tmp_path, tiny_configs, workers):
    # one seed: the sweep is the range test, 5 rates, 1 tuner trial and the schedule
    profile = TINY_PROFILE.replace("seeds: [0, 1]", "seeds: [0]")
    (tiny_configs / "quick.yaml").write_text(
        profile + f"compute: {{workers: {workers}, intra_op_threads: 1, inter_op_threads: 1}}\n")
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    runs = killed_root / "results" / "quick" / "runs"
    process = subprocess.Popen([sys.executable, "-m", "dnnls_tf", "run", "exp1", "--profile", "quick",
                                "--root", str(killed_root)], env=_env(tiny_configs),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill while a later run is being trained
        if runs.is_dir() and len([p for p in runs.iterdir() if not p.name.startswith(".")]) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.name: (p / "metrics.json").stat().st_mtime_ns for p in runs.iterdir()
                if not p.name.startswith(".")}
    assert 2 <= len(finished) < 6
    time.sleep(3)  # workers die with their parent: none finishes a run after the kill
    assert {p.name for p in runs.iterdir() if not p.name.startswith(".")} == set(finished)
    resumed = cli("run", "exp1", "--profile", "quick", "--root", str(killed_root), configs=tiny_configs)
    assert resumed.returncode == 0, resumed.stderr
    for run_id, stamp in finished.items():  # nothing finished was trained twice
        assert (runs / run_id / "metrics.json").stat().st_mtime_ns == stamp
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]
    clean = cli("run", "exp1", "--profile", "quick", "--root", str(clean_root), configs=tiny_configs)
    assert clean.returncode == 0
    killed, reference = _histories(killed_root), _histories(clean_root)
    assert killed.keys() == reference.keys()
    for run_id in reference:
        assert killed[run_id].equals(reference[run_id]), run_id
