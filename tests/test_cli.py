"""The command line as a user meets it: one-line errors with exit code 2, status without
TensorFlow, kill and resume, two writers on one store, workers that store the same bits."""
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

from dnnls_tf.cli import main
from dnnls_tf.study.config import CONFIG_DIR

TINY_PROFILE = """
description: tiny synthetic profile for tests
data: {source: synthetic, max_train: null, max_test: null, train_eval_sample: 100}
model: {filters: [4, 8, 8], fc_units: 16}
training: {epochs: 4, batch_size: 50, seeds: [0, 1]}
compute: {workers: 1, progress: false, intra_op_threads: 1, inter_op_threads: 1}
exp1: {range_test_epochs: 1, tuner_trials: 1, probe_seeds: [100], ladder_factor: 4.0, ladder_rungs: 5,
       saturation_gain: 0.5}  # 4 epochs on synthetic images: a few pp of validation noise is no falling curve
exp4: {source: profile, sizes: [100, 200, 400], curve_seeds: 1, epochs: 2, max_epochs: 4}
"""


@pytest.fixture
def tiny_configs(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copy(CONFIG_DIR / "base.yaml", folder / "base.yaml")
    (folder / "quick.yaml").write_text(TINY_PROFILE)
    return folder


def _env(configs=None, **extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("DNNLS_PROFILE", None)
    if configs:
        env["DNNLS_CONFIG_DIR"] = str(configs)
    return env


def cli(*args, configs=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "dnnls_tf", *args], capture_output=True, text=True,
                          env=_env(configs), timeout=600, **kwargs)


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args, message", [
    (["run", "exp9", "--profile", "quick"], "unknown experiment 'exp9'"),
    (["run", "baseline", "--profile", "huge"], "unknown profile 'huge'"),
    (["status", "--profile", ""], "--profile is empty"),
    (["run", "baseline", "--profile", "quick", "--set", "training.epohcs=3"], "unknown key 'training.epohcs'"),
    (["run", "baseline", "--profile", "quick", "--set", "training.learning_rate=.inf"], "must be a finite number"),
    (["run", "baseline", "--profile", "quick", "--set", "epochs"], "section.key=value"),
    (["run", "baseline", "--profile", "quick", "--config", "/no/such.yaml"], "no such file"),
    (["run", "baseline", "--profile", "subset", "--data-dir", "/no/such/folder"], "does not exist"),
    (["frobnicate"], "invalid choice"),
    (["run", "baseline", "--bogus"], "unrecognized arguments"),
    (["bench", "--threads", "1"], "expected 2 arguments"),
    (["bench", "--threads", "-1", "0"], "non-negative"),
    (["bench", "--rounds", "0"], "positive integer"),
    (["bench", "--processes", "0"], "positive integer"),
    (["bench", "--json", "/no/such/folder/bench.json"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    root = tmp_path / "root"
    code = main(args + (["--root", str(root)] if args[0] in ("run", "status") else []))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], captured.err
    assert not root.exists() or not any(root.rglob("*.json"))


@pytest.mark.slow  # a fresh process: what it imports
def test_status_does_not_import_tensorflow(tmp_path):
    script = ("import sys; from dnnls_tf.cli import main; code = main(['status', '--profile', 'quick', "
              f"'--root', {str(tmp_path)!r}]); print('tensorflow' in sys.modules, 'keras_tuner' in sys.modules, code)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False False 0", result.stdout + result.stderr
    assert "baseline" in result.stdout and "waiting for" in result.stdout


@pytest.mark.slow
def test_second_run_trains_nothing_and_says_so(tmp_path, tiny_configs):
    args = ("run", "baseline", "--profile", "quick", "--root", str(tmp_path))
    first = cli(*args, configs=tiny_configs)
    assert first.returncode == 0 and "trained 1 run," in first.stdout, first.stderr
    before = snapshot(tmp_path)
    second = cli(*args, configs=tiny_configs)
    assert second.returncode == 0 and "nothing to train" in second.stdout
    status = cli("status", "--profile", "quick", "--root", str(tmp_path), configs=tiny_configs)
    assert "baseline    1 planned: 1 done" in status.stdout
    assert snapshot(tmp_path) == before or {k for k, v in snapshot(tmp_path).items() if before.get(k) != v} <= {
        "results/quick/.lock"}  # the lock names its holder


def _histories(root: Path) -> dict:
    runs = root / "results" / "quick" / "runs"
    return {p.name: pd.read_csv(p / "history.csv") for p in sorted(runs.iterdir()) if not p.name.startswith(".")}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_run_resumes_to_the_same_store(tmp_path, tiny_configs, workers):
    (tiny_configs / "quick.yaml").write_text(TINY_PROFILE.replace("workers: 1", f"workers: {workers}"))
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    runs = killed_root / "results" / "quick" / "runs"
    process = subprocess.Popen([sys.executable, "-m", "dnnls_tf", "run", "exp1", "--profile", "quick",
                                "--root", str(killed_root)], env=_env(tiny_configs),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill while later runs are being trained
        if runs.is_dir() and len([p for p in runs.iterdir() if not p.name.startswith(".")]) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.name: (p / "metrics.json").stat().st_mtime_ns for p in runs.iterdir() if not p.name.startswith(".")}
    assert 3 <= len(finished)
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


@pytest.mark.slow
def test_two_runs_on_one_store_neither_loses_nor_corrupts_a_run(tmp_path, tiny_configs):
    root = tmp_path / "root"
    command = [sys.executable, "-m", "dnnls_tf", "run", "exp1", "--profile", "quick", "--root", str(root)]
    first = subprocess.Popen(command, env=_env(tiny_configs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    time.sleep(2)
    second = subprocess.run(command, env=_env(tiny_configs), capture_output=True, text=True, timeout=600)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, err + second.stderr
    assert "waiting for pid" in second.stderr or "nothing to train" in second.stdout
    status = cli("status", "--profile", "quick", "--root", str(root), configs=tiny_configs)
    assert "damaged" in status.stdout and " 0 damaged" in status.stdout and " 0 missing" in status.stdout.split("\n")[1]


@pytest.mark.slow
def test_workers_store_the_same_runs_as_one_process(tmp_path, tiny_configs):
    roots = {}
    for workers in (1, 2):
        (tiny_configs / "quick.yaml").write_text(TINY_PROFILE.replace("workers: 1", f"workers: {workers}"))
        roots[workers] = tmp_path / f"w{workers}"
        result = cli("run", "exp1", "--profile", "quick", "--root", str(roots[workers]), configs=tiny_configs)
        assert result.returncode == 0, result.stderr
    one, two = roots[1] / "results" / "quick", roots[2] / "results" / "quick"
    for name in ("runs", "range_tests"):
        files = {p.relative_to(one) for p in (one / name).rglob("*") if p.is_file() and p.name != "metrics.json"}
        assert files == {p.relative_to(two) for p in (two / name).rglob("*")
                         if p.is_file() and p.name != "metrics.json"}
        for relative in files:  # the same bits (metrics.json differs in timings)
            assert (one / relative).read_bytes() == (two / relative).read_bytes(), relative


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    """A complete fake store (all three experiments and their summaries) of the tiny config."""
    from conftest import tiny_config
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.runner import write_summaries
    from dnnls_tf.study.study import Study
    from fakes import fill_fakes

    root = tmp_path_factory.mktemp("fake")
    study = Study(tiny_config(), root=root, writable=True)
    write_summaries(study, REGISTRY, fill_fakes(study, list(REGISTRY.names)))
    return root


@pytest.mark.parametrize("command", ["figures", "report"])
def test_figures_and_report_on_a_store_that_lacks_a_run_exit_2_and_change_nothing(tmp_path, fake_root, capsys,
                                                                                  monkeypatch, command):
    from conftest import TINY

    root = tmp_path / "root"
    shutil.copytree(fake_root, root)
    victim = sorted((root / "results" / "quick" / "runs").iterdir())[-1]
    shutil.rmtree(victim)
    before = snapshot(root)
    settings = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={json_value(value)}")]
    code = main([command, "--profile", "quick", "--root", str(root), *settings])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "python -m dnnls_tf " in lines[0], lines  # names the command
    assert snapshot(root) == before


def json_value(value) -> str:
    import json

    return json.dumps(value)


@pytest.mark.slow  # a fresh process: what it imports
def test_reading_commands_import_neither_keras_tuner_nor_tensorflow(tmp_path, fake_root):
    from conftest import TINY

    settings = [f"--set={key}={json_value(value)}" for key, value in TINY.items()]
    script = (f"import sys; from dnnls_tf.cli import main; codes = [main([c, '--profile', 'quick', '--root', "
              f"{str(tmp_path)!r}, *{settings!r}]) for c in ('status', 'figures', 'report')]; "
              f"print(codes, 'keras_tuner' in sys.modules, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "[0, 2, 2] False False", result.stdout + result.stderr


def _complete_files(folder: Path) -> list[str]:
    """Files under `folder` that are not whole (a PDF without its end marker, a PNG that does not decode)."""
    import matplotlib.image

    broken = []
    for path in sorted(folder.rglob("*")):
        if path.name.startswith(".tmp-"):  # a killed writer's temporary: readers ignore it
            continue
        if path.suffix == ".pdf" and not path.read_bytes().rstrip().endswith(b"%%EOF"):
            broken.append(path.name)
        if path.suffix == ".png":
            try:
                matplotlib.image.imread(path)
            except Exception:
                broken.append(path.name)
    return broken


@pytest.mark.slow
@pytest.mark.parametrize("command", ["figures", "report"])
def test_a_killed_figures_or_report_leaves_whole_files_and_the_next_call_succeeds(tmp_path, fake_root, command):
    from conftest import TINY

    root = tmp_path / "root"
    shutil.copytree(fake_root, root)
    settings = [f"--set={key}={json_value(value)}" for key, value in TINY.items()]
    args = [sys.executable, "-m", "dnnls_tf", command, "--profile", "quick", "--root", str(root), *settings]
    if command == "report":
        assert subprocess.run([*args[:3], "figures", *args[4:]], env=_env(), capture_output=True).returncode == 0
    for delay in (1.0, 2.0, 3.5, 5.0):  # kill it at several moments of its work
        process = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert _complete_files(root / "figures") == [] and _complete_files(root / "report") == []
    again = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert _complete_files(root / "figures") == [] and _complete_files(root / "report") == []
    assert not list((root / "figures").rglob(".tmp-*")) and not list((root / "report").glob(".tmp-*"))
    if command == "report":
        assert (root / "report" / "dnnls_tf_report_quick.pdf").is_file()


@pytest.mark.slow
def test_ctrl_c_stops_at_once_in_one_line_without_worker_tracebacks(tmp_path, tiny_configs):
    (tiny_configs / "quick.yaml").write_text(TINY_PROFILE.replace("workers: 1", "workers: 2"))
    runs = tmp_path / "results" / "quick" / "runs"
    # SIGINT as in a terminal: pytest-xdist's workers ignore it, and a child would inherit that (Python then
    # never raises KeyboardInterrupt, and the run finished with exit code 0 under `make test -n 2`)
    process = subprocess.Popen([sys.executable, "-m", "dnnls_tf", "run", "exp1", "--profile", "quick",
                                "--root", str(tmp_path)], env=_env(tiny_configs), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not (runs.is_dir() and any(not p.name.startswith(".") for p in runs.iterdir())):
        time.sleep(0.05)
    stored = {p.name for p in runs.iterdir() if not p.name.startswith(".")}
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (process.returncode, stored, out[-2000:], err[-2000:])
    # "at once": no run starts after Ctrl-C (at most the two in flight finish their save); no timing is asserted,
    # as a loaded CI machine once took 26 s to tear down the workers
    after = {p.name for p in runs.iterdir() if not p.name.startswith(".")}
    assert stored <= after and len(after - stored) <= 2, (stored, after)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["interrupted: finished runs are stored; run the same command again to resume"], err
    status = cli("status", "--profile", "quick", "--root", str(tmp_path), configs=tiny_configs)
    assert " 0 damaged" in status.stdout.splitlines()[1]


def test_ctrl_c_noted_inside_a_finalizer_is_raised_where_the_parent_waits():
    """Python's own handler raises KeyboardInterrupt wherever the main thread is; inside a finalizer Python
    prints it and drops it. The runner's handler only notes it, and `check` raises it at a safe point."""
    import gc

    from dnnls_tf.study.runner import DeferredInterrupt

    class Closed:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while the garbage collector closes a file

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, not an xdist worker
    try:
        interrupt = DeferredInterrupt()
        interrupt.start()
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        Closed()
        gc.collect()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        interrupt.check()  # raised once
        interrupt.stop()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        disabled = DeferredInterrupt(enabled=False)  # one process trains in the parent: Ctrl-C stays immediate
        disabled.start()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
