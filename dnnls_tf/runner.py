"""Look up, else train: drives the plans to completion, in worker processes when asked.

`Runner.complete(names)` asks the experiments' plans what they need, trains what the
store lacks (most-needed and longest first, on `compute.workers` processes), and
asks again after every finished run, until every plan is complete. Later stages
(the tuner's trials, transfer runs) start as soon as their inputs are stored, so
the workers stay busy across experiments. A worker writes a run exactly as the
parent would (same code, seed and thread pools: the same bits), atomically.
Workers ignore Ctrl-C and die with their parent (Linux: PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from dataclasses import dataclass

from dnnls_tf import experiments
from dnnls_tf.errors import UserError
from dnnls_tf.spec import RangeTestSpec, RunSpec
from dnnls_tf.study import Study

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Task:
    spec: RunSpec | RangeTestSpec
    priority: int
    cost: float  # training images, weighted (frozen conv layers cost about a third)

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def execute(spec: RunSpec | RangeTestSpec, study: Study, pools: dict, progress: bool = False) -> str:
    """Train one run (or the range test) and store it; returns a one-line description."""
    from dnnls_tf import training

    start = time.perf_counter()
    if isinstance(spec, RangeTestSpec):
        table = training.lr_range_test(spec, study.splits)
        study.store.save_range_test(spec, table)
        return f"range test {spec.run_id}: {len(table)} steps ({time.perf_counter() - start:.0f} s)"
    source = study.store.weights_path(spec.init_from) if spec.init_from else None
    if source is not None and not source.is_file():
        raise UserError(f"the weights of run {spec.init_from} (the source of transfer run {spec.run_id}) "
                        f"are missing; run the same command again to retrain the source")
    result = training.train_run(spec, study.splits, source, progress=progress)
    recorded = {**pools, "workers": study.config.compute.workers, "data_source": study.splits.data.source}
    run = study.store.save(spec, result, recorded)
    accuracy = run.metrics.get("val_accuracy")
    return (f"run {spec.run_id}: {run.metrics['status']}{'' if run.stable else ' (unstable)'}, val "
            f"{'n/a' if accuracy is None else f'{accuracy:.3f}'} ({time.perf_counter() - start:.0f} s)")


# ---------------------------------------------------------------- workers
def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: an orphan finishes its run and exits
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_main(connection, parent_pid: int, config, root: str, data_dir: str | None) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())  # not tqdm's default process-shared lock: a killed worker leaks none
    from dnnls_tf import runtime

    pools = runtime.start(config.compute)
    study = Study(config, root=root, data_dir=data_dir, writable=True)
    while True:
        spec = connection.recv()
        if spec is None:
            return
        try:
            connection.send(("ok", execute(spec, study, pools)))
        except UserError as error:
            connection.send(("error", str(error)))
        except Exception:  # a bug: the parent shows its traceback
            connection.send(("crash", traceback.format_exc()))


class WorkerPool:
    """`size` spawned processes, each training one run at a time."""

    def __init__(self, study: Study, size: int):
        context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
        self.idle, self.busy = [], {}  # busy: connection -> (process, task)
        self.processes = []
        for _ in range(size):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker_main, daemon=True,
                                      args=(child_end, os.getpid(), study.config, str(study.root), study.data_dir))
            process.start()
            child_end.close()
            self.processes.append(process)
            self.idle.append((parent_end, process))

    def submit(self, task: Task) -> None:
        connection, process = self.idle.pop()
        connection.send(task.spec)
        self.busy[connection] = (process, task)

    def wait(self) -> tuple[Task, str, str]:
        """Block until a busy worker reports: (task, kind, message); a dead worker is a UserError."""
        sentinels = {process.sentinel: connection for connection, (process, _) in self.busy.items()}
        ready = multiprocessing.connection.wait(list(self.busy) + list(sentinels))
        connection = next((r for r in ready if r in self.busy), None) or sentinels[ready[0]]
        process, task = self.busy.pop(connection)
        try:
            kind, message = connection.recv()
        except (EOFError, OSError):
            raise UserError(f"a training worker died while training run {task.run_id} (killed, or out of memory?): "
                            f"finished runs are stored; run the same command again to resume") from None
        self.idle.append((connection, process))
        return task, kind, message

    def close(self) -> None:
        for connection, _ in self.idle:
            try:
                connection.send(None)
            except OSError:
                pass
        for process in self.processes:
            process.join(timeout=10)
        self.kill()

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join()


class Runner:
    """Trains what the plans of `names` lack until they are complete; returns the final plans."""

    def __init__(self, study: Study, pools: dict):
        self.study, self.pools = study, pools
        self.trained: list[str] = []
        self.read: set[str] = set()
        self._pool: WorkerPool | None = None

    def _cost(self, spec) -> float:
        if isinstance(spec, RangeTestSpec):
            return 0.0
        images = self.study.splits.sizes()[spec.train_split] * spec.epochs
        return images * (0.35 if spec.frozen else 1.0)

    def _missing(self, plans: list, running: set[str]) -> list[Task]:
        store, tasks = self.study.store, {}
        for plan in plans:
            for spec in plan.range_tests:
                if store.range_test(spec) is None and spec.run_id not in running:
                    tasks[spec.run_id] = Task(spec, 0, 0.0)
            for spec in plan.specs():
                run_id = spec.run_id
                if run_id in running or run_id in tasks:
                    continue
                problem = store.problem(run_id)
                if problem:
                    store.discard(run_id, problem)
                if store.get(run_id) is not None:
                    continue
                if spec.init_from and not store.has_weights(spec.init_from) and spec.init_from not in running:
                    if store.get(spec.init_from) is not None:  # a fresh clone: stored runs, no weights
                        store.discard(spec.init_from, "its weights are missing and a transfer run needs them")
                    continue  # the source is planned again by its own experiment
                tasks[run_id] = Task(spec, plan.priority(spec), self._cost(spec))
        return sorted(tasks.values(), key=lambda task: (task.priority, -task.cost, task.run_id))

    def _check_prerequisites(self, plans: list, names: list[str]) -> None:
        for plan in plans:
            for waiting in plan.waiting:
                if waiting.needs not in names:
                    raise UserError(f"{plan.experiment} waits for {waiting.what}: run `python -m dnnls_tf run "
                                    f"{waiting.needs} --profile {self.study.profile}` first (or `run all`)")

    def complete(self, names: list[str]) -> list:
        from dnnls_tf.training import progress_bar

        workers = self.study.config.compute.workers
        running: dict[str, Task] = {}
        bar = progress_bar(0, self.study.config.compute.progress, "runs", unit="run", leave=True)
        try:
            while True:
                plans = [experiments.plan(self.study, name) for name in names]
                self._check_prerequisites(plans, names)
                tasks = self._missing(plans, set(running))
                if not tasks and not running:
                    stuck = [w for plan in plans for w in plan.waiting]
                    if stuck:
                        raise UserError(f"{stuck[0].what}: the plan cannot go on (is a run damaged?)")
                    planned = {spec.run_id for plan in plans for spec in plan.specs()}
                    self.read = planned - set(self.trained)
                    return plans
                bar.total = len(self.trained) + len(running) + len(tasks)
                bar.refresh()
                if workers == 1:
                    self._report(bar, tasks[0], "ok", execute(tasks[0].spec, self.study, self.pools,
                                                              progress=self.study.config.compute.progress))
                    continue
                if self._pool is None:
                    self._pool = WorkerPool(self.study, workers)
                for task in tasks:
                    if not self._pool.idle:
                        break
                    self._pool.submit(task)
                    running[task.run_id] = task
                task, kind, message = self._pool.wait()
                running.pop(task.run_id)
                if kind == "error":
                    raise UserError(message)
                if kind == "crash":
                    raise RuntimeError(f"a worker failed on run {task.run_id}:\n{message}")
                self._report(bar, task, kind, message)
        finally:
            bar.close()
            if self._pool is not None:
                self._pool.close() if not running else self._pool.kill()
                self._pool = None

    def _report(self, bar, task: Task, kind: str, message: str) -> None:
        if isinstance(task.spec, RunSpec):
            self.trained.append(task.run_id)
        self.study.store.problem(task.run_id)  # read the new run into the store's cache
        log.info(message)
        bar.update(1)
        bar.set_postfix_str(message.split(":")[0], refresh=True)
