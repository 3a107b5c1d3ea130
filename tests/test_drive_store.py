"""A store shared through Google Drive: the lease (one machine writes), local staging, whole copies, the flush."""
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from conftest import tiny_config
from dnnls_tf.errors import StoreError
from dnnls_tf.study import drive, lease as lease_lib
from dnnls_tf.study.lease import LEASE_FILE, Holder, Lease
from dnnls_tf.study.store import RUN_FILES, RunStore, StoreLock, file_sha256
from dnnls_tf.study.study import Study

PROJECT = Path(__file__).resolve().parent.parent


def write_lease(folder: Path, host: str, pid: int, age: float) -> Path:
    """A lease file as another holder leaves it, its last heartbeat `age` seconds ago."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    path = folder / LEASE_FILE
    path.write_text(json.dumps({"host": host, "pid": pid, "token": "theirs", "acquired": now - age - 5,
                                "heartbeat": now - age}))
    return path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ------------------------------------------------------------------ the lease
def test_a_writer_on_another_host_is_refused_in_one_line_and_changes_nothing(tiny_study):
    store = tiny_study.store
    path = write_lease(store.results_dir, "colab-other", 4242, age=30)
    before = path.read_text()
    with pytest.raises(StoreError) as error:
        with StoreLock(store):
            pytest.fail("took a store another machine holds")
    message = str(error.value)
    assert "\n" not in message and "host colab-other (pid 4242, last heartbeat 30 s ago)" in message
    assert "goes stale 570 s after its last heartbeat" in message
    assert path.read_text() == before and store.lease is None
    path.unlink()
    with StoreLock(store):  # the local lock was released with the refusal
        assert Lease(store.results_dir).read().pid == os.getpid()


def test_the_cli_refuses_a_run_while_another_host_holds_the_store(tmp_path, capsys):
    from dnnls_tf.cli import main

    settings = [item for key, value in {"data.source": "synthetic", "training.epochs": 1, "compute.workers": 1,
                                        "model.filters": "[4,8,8]", "model.fc_units": 16}.items()
                for item in ("--set", f"{key}={value}")]
    write_lease(tmp_path / "results" / "quick", "colab-other", 4242, age=5)
    code = main(["run", "baseline", "--profile", "quick", "--root", str(tmp_path), *settings])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "being written by host colab-other" in error
    assert not (tmp_path / "results" / "quick" / "runs").exists()


def test_a_stale_lease_is_taken_over(tiny_study, caplog):
    path = write_lease(tiny_study.store.results_dir, "colab-gone", 4242, age=lease_lib.STALE_SECONDS + 1)
    with caplog.at_level(logging.WARNING, logger="dnnls_tf.study.lease"):
        with StoreLock(tiny_study.store) as lock:
            holder = Holder(**json.loads(path.read_text()))
            assert (holder.host, holder.pid, holder.token) == (lease_lib.this_host(), os.getpid(), lock.lease.token)
    assert "taking over the stale lease of host colab-gone" in caplog.text
    assert not path.exists()  # released


def test_on_one_host_a_dead_holder_s_lease_is_taken_at_once_and_a_live_one_s_is_not(tiny_study):
    folder = tiny_study.store.results_dir
    write_lease(folder, lease_lib.this_host(), dead_pid(), age=1)
    with StoreLock(tiny_study.store):  # a killed `run` on this machine: no need to wait 10 min
        pass
    write_lease(folder, lease_lib.this_host(), os.getppid(), age=1)  # a live process, outside our flock
    with pytest.raises(StoreError, match=f"pid {os.getppid()}"):
        with StoreLock(tiny_study.store):
            pass


def test_the_heartbeat_renews_the_lease_and_release_keeps_another_s(tmp_path):
    now = [1000.0]
    lease = Lease(tmp_path, clock=lambda: now[0], heartbeat=3600)
    lease.acquire()
    now[0] = 1059.0
    lease.renew()
    holder = lease.read()
    assert (holder.acquired, holder.heartbeat) == (1000.0, 1059.0)
    lease.release()
    assert not (tmp_path / LEASE_FILE).exists()

    beating = Lease(tmp_path, heartbeat=0.02)
    beating.acquire()
    first, deadline = beating.read().heartbeat, time.time() + 10
    while beating.read().heartbeat == first and time.time() < deadline:
        time.sleep(0.02)
    assert beating.read().heartbeat > first  # the daemon thread beats on its own
    write_lease(tmp_path, "colab-other", 4242, age=0)  # taken over meanwhile
    beating.release()
    assert Holder(**json.loads((tmp_path / LEASE_FILE).read_text())).host == "colab-other"


class FakeResult(types.SimpleNamespace):
    """What RunStore.save reads of a training.RunResult, taken from a stored run (no TensorFlow)."""


class FakeModel:
    def save_weights(self, path):
        Path(path).write_bytes(b"weights of " + Path(path).name.encode())


def result_of(run, model=None) -> FakeResult:
    recorded = {"data_source", "workers", "intra_op_threads", "inter_op_threads", "library_version",
                "weights_sha256", "cpu_identity"}
    return FakeResult(history=run.history, steps=run.steps, gradients=run.gradients, predictions=run.predictions,
                      metrics={k: v for k, v in run.metrics.items() if k not in recorded}, model=model)


def test_a_writer_whose_lease_was_taken_over_stops_before_saving(trained_study, tmp_path):
    run = trained_study.store.get(trained_study.spec(0, 0.05).run_id)
    store = RunStore(tmp_path / "other-root", trained_study.profile)
    with StoreLock(store):
        write_lease(store.results_dir, "colab-other", 4242, age=0)  # after our heartbeat went missing
        with pytest.raises(StoreError) as error:
            store.save(run.spec, result_of(run), {})
    assert "taken over by host colab-other" in str(error.value) and "\n" not in str(error.value)
    assert store.run_ids() == []


# ------------------------------------------------------------------ staging and whole copies
@pytest.fixture
def on_drive(tmp_path, monkeypatch):
    """A fake Drive mount in tmp_path (the store's root under it) and the default local staging folder."""
    monkeypatch.setattr(drive, "COLAB_DRIVE", tmp_path / "drive")
    monkeypatch.delenv("DNNLS_STAGING_DIR", raising=False)
    monkeypatch.setattr(drive.tempfile, "gettempdir", lambda: str(tmp_path / "local-tmp"))
    return tmp_path / "drive" / "MyDrive" / "dnnls_tf"


def test_a_store_on_drive_stages_runs_locally_and_copies_them_whole(trained_study, on_drive, tmp_path, monkeypatch):
    run = trained_study.store.get(trained_study.spec(0, 0.05).run_id)
    store = RunStore(on_drive, trained_study.profile)
    staging = tmp_path / "local-tmp" / drive.STAGING_FOLDER
    assert store.on_drive and store.staging == staging
    assert store.live_dir == staging / "results" / trained_study.profile  # live TensorBoard: local disk
    copies, real_copy = [], drive.copy_whole

    def watched_copy(source, target):
        assert staging in Path(source).parents and on_drive in Path(target).parents
        assert not target.exists() and store.get(run.run_id) is None  # nothing of the run in the store yet
        if Path(source).is_dir():  # the run's folder is complete locally before it is copied
            assert sorted(p.name for p in Path(source).iterdir()) == sorted(RUN_FILES)
        copies.append(Path(target).relative_to(on_drive).as_posix())
        real_copy(source, target)

    monkeypatch.setattr(drive, "copy_whole", watched_copy)
    saved = store.save(run.spec, result_of(run, FakeModel()), {"data_source": "test"})
    assert copies == [f"weights/{store.profile}/{run.run_id}.weights.h5", f"results/{store.profile}/runs/{run.run_id}"]
    assert saved.run_id == run.run_id and store.problem(run.run_id) is None
    assert sorted(p.name for p in store.run_dir(run.run_id).iterdir()) == sorted(RUN_FILES)
    assert saved.metrics["weights_sha256"] == file_sha256(store.weights_path(run.run_id))
    assert [p for p in staging.rglob("*") if p.is_file()] == []  # nothing left on local disk
    assert [p.name for p in store.runs_dir.iterdir()] == [run.run_id]


def test_a_failed_copy_leaves_no_half_run_and_the_next_save_completes(trained_study, on_drive, monkeypatch):
    run = trained_study.store.get(trained_study.spec(0, 0.05).run_id)
    store = RunStore(on_drive, trained_study.profile)
    copied, real = [], drive._copy_synced

    def failing(source, target):
        if len(copied) == 3:
            raise OSError(28, "No space left on device")
        copied.append(target)
        return real(source, target)

    monkeypatch.setattr(drive, "_copy_synced", failing)
    with pytest.raises(OSError):
        store.save(run.spec, result_of(run), {})
    assert len(copied) == 3 and store.status(run.run_id) == "missing"
    assert list(store.runs_dir.iterdir()) == []  # not even the temporary folder
    monkeypatch.setattr(drive, "_copy_synced", real)
    store.save(run.spec, result_of(run), {})
    assert store.status(run.run_id) == "done"


KILLED_COPY = """
import sys, time
from pathlib import Path
from dnnls_tf.study import drive
from types import SimpleNamespace
from dnnls_tf.study.store import RunStore

source, target, run_id = RunStore(Path(sys.argv[1]), "quick"), RunStore(Path(sys.argv[2]), "quick"), sys.argv[3]
real = drive._copy_synced
def slow(a, b):
    if Path(b).name == "history.csv":
        Path(sys.argv[4]).write_text("copying")
        time.sleep(60)
    return real(a, b)
drive._copy_synced = slow
run = source.get(run_id)
metrics = {k: v for k, v in run.metrics.items() if k != "weights_sha256"}
target.save(run.spec, SimpleNamespace(history=run.history, steps=run.steps, gradients=run.gradients,
                                      predictions=run.predictions, metrics=metrics, model=None), {})
"""


@pytest.mark.slow
def test_a_copy_killed_midway_leaves_no_run_in_the_store(trained_study, tmp_path):
    run_id = trained_study.spec(0, 0.05).run_id
    store_root, signal_file = tmp_path / "drive-store", tmp_path / "copying"
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "DNNLS_STAGING_DIR": str(tmp_path / "local")}
    process = subprocess.Popen([sys.executable, "-c", KILLED_COPY, str(trained_study.root), str(store_root), run_id,
                                str(signal_file)], env=env, cwd=PROJECT)
    deadline = time.time() + 120
    while not signal_file.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert signal_file.exists(), "the copy never started"
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = RunStore(store_root, "quick", staging=tmp_path / "local")
    partial = [p.name for p in store.runs_dir.iterdir()]
    assert len(partial) == 1 and partial[0].startswith(f".tmp-{process.pid}-")  # a temporary name only
    assert store.run_ids() == [] and store.status(run_id) == "missing"
    assert store.remove_orphans() >= 2  # the store's partial copy and the local staging folder
    assert list(store.runs_dir.iterdir()) == []


# ------------------------------------------------------------------ flushing Drive when `run` ends
def _fake_colab(monkeypatch, with_flush: bool) -> list:
    calls = []
    module = types.ModuleType("google.colab.drive")
    if with_flush:
        module.flush = lambda: calls.append("flush")
    colab = types.ModuleType("google.colab")
    colab.drive = module
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.drive", module)
    monkeypatch.setattr(drive.os, "sync", lambda: calls.append("os.sync"))
    return calls


@pytest.mark.parametrize("with_flush, expected", [(True, ["flush"]), (False, ["os.sync"])])
def test_flush_uses_colab_s_drive_flush_where_it_exists(monkeypatch, with_flush, expected):
    calls = _fake_colab(monkeypatch, with_flush)
    assert drive.flush() == ("google.colab.drive.flush()" if with_flush else "os.sync()")
    assert calls == expected


@pytest.mark.parametrize("fails", [False, True])
def test_run_flushes_a_drive_store_when_it_ends_or_fails(on_drive, monkeypatch, fails):
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study import runner

    calls = _fake_colab(monkeypatch, with_flush=True)
    study = Study(tiny_config(), root=on_drive, writable=True)
    if fails:
        monkeypatch.setattr(runner.Runner, "complete", lambda self, names: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt) if fails else contextlib.nullcontext():
        runner.complete_experiments(study, REGISTRY, [])
    assert calls == ["flush"]
    assert not (study.results_dir / LEASE_FILE).exists()


def test_a_local_store_is_not_staged_or_flushed(tiny_study, monkeypatch):
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study import runner

    monkeypatch.delenv("DNNLS_STAGING_DIR", raising=False)
    calls = _fake_colab(monkeypatch, with_flush=True)
    assert tiny_study.store.staging is None and tiny_study.store.live_dir == tiny_study.store.results_dir
    runner.complete_experiments(tiny_study, REGISTRY, [])
    assert calls == []
