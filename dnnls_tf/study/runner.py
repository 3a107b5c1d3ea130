"""Look up, else train: drives the plans to completion, in worker processes when asked.

`Runner.complete(names)` asks the plans of the experiments `names` (and of those they
need; the registry is given, never imported: experiments sit above this layer) what
they need, trains what the store lacks and executes the stages they ask for (the LR
range test, keras-tuner's proposal and choice), most-needed and longest first, on
`compute.workers` processes, and asks again after every finished task, until every
plan is complete. Later stages
(the tuner's trials, transfer runs) start as soon as their inputs are stored, so
the workers stay busy across experiments. A worker writes a run exactly as the
parent would (same code, seed and thread pools: the same bits), atomically.
Workers ignore Ctrl-C and die with their parent (Linux: PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass

from dnnls_tf.core.data import check_fingerprint
from dnnls_tf.core.spec import RunSpec
from dnnls_tf.errors import UserError, describe_os_error
from dnnls_tf.study.plan import Registry
from dnnls_tf.study.planner import plan_all
from dnnls_tf.study.study import Study

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Task:
    spec: object  # a RunSpec, or a plan's Stage
    priority: int
    cost: float  # training images, weighted (frozen conv layers cost less)
    experiment: str = ""
    kind: str = "range_test"
    group: tuple = ()  # the key of the plan's first group that holds the run, e.g. ("dropout", 0.2)

    @property
    def run_id(self) -> str:
        return self.spec.run_id if isinstance(self.spec, RunSpec) else self.spec.stage_id

    def describe(self) -> str:
        """What the task trains, in words: experiment, group, dropout and batch norm where set, rate, seed."""
        if not isinstance(self.spec, RunSpec):
            return self.experiment
        spec, parts = self.spec, [f"{self.experiment} {self.kind.replace('_', ' ')}"]
        keyed_by_dropout = len(self.group) == 2 and isinstance(self.group[1], float) and self.group[1] == spec.dropout
        if spec.dropout or keyed_by_dropout:  # a group keyed by its dropout rate names it, 0 included
            parts.append(f"dropout {spec.dropout:g}")
        if spec.batch_norm:
            parts.append("batch norm")
        rate = spec.learning_rate
        parts += [f"lr {rate:g}" if isinstance(rate, float) else f"lr {rate.describe()}", f"seed {spec.seed}"]
        return ", ".join(parts)


def execute(spec, study: Study, pools: dict, progress: bool = False, observer=None) -> str:
    """Train one run and store it, or execute a plan's stage; returns a one-line description of the outcome
    (a run's: its status, validation accuracy, seconds and id; the runner prefixes what the run is).

    `observer(study, spec)`, if given, is a context manager yielding an `on_epoch` hook that
    watches the run train (tools.tensorboard.live_events: TensorBoard events as it goes).
    """
    from dnnls_tf.core import runtime, training

    start = time.perf_counter()
    if not isinstance(spec, RunSpec):
        return f"{spec.execute(study)} ({time.perf_counter() - start:.0f} s)"
    source = study.store.weights_path(spec.init_from) if spec.init_from else None
    if source is not None and not source.is_file():
        raise UserError(f"the weights of run {spec.init_from} (the source of transfer run {spec.run_id}) "
                        f"are missing; run the same command again to retrain the source")
    splits = study.splits_for(spec.data_source)
    check_fingerprint(splits, spec.data_fingerprint, spec.train_split, spec.val_split, f"run {spec.run_id}")
    with (observer(study, spec) if observer else contextlib.nullcontext()) as live:
        result = training.train_run(spec, splits, source, progress=progress, on_epoch=live)
    # the CPU too: float results of the same code differ between CPUs (oneDNN picks AVX-512 where there is one)
    recorded = {**pools, "workers": study.config.compute.workers, "data_source": splits.data.source,
                "cpu_identity": runtime.cpu_description()["cpu_identity"]}
    run = study.store.save(spec, result, recorded)
    accuracy = run.metrics.get("val_accuracy")
    return (f"{run.metrics['status']}{'' if run.stable else ' (unstable)'}, val "
            f"{'n/a' if accuracy is None else f'{accuracy:.3f}'} ({time.perf_counter() - start:.0f} s) "
            f"[run {spec.run_id}]")


# ---------------------------------------------------------------- workers
def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: an orphan finishes its run and exits
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_main(connection, parent_pid: int, config, root: str, data_dir: str | None, observer) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())  # not tqdm's default process-shared lock: a killed worker leaks none
    from dnnls_tf.core import runtime

    pools = runtime.start(config.compute)
    study = Study(config, root=root, data_dir=data_dir, writable=True)
    while True:
        spec = connection.recv()
        if spec is None:
            return
        try:
            connection.send(("ok", execute(spec, study, pools, observer=observer)))
        except UserError as error:
            connection.send(("error", str(error)))
        except OSError as error:  # disk full, a read-only store: the parent says it in one line
            connection.send(("error", f"run {spec.run_id}: {describe_os_error(error)}"))
        except RecursionError:
            connection.send(("error", f"run {spec.run_id}: an input is nested too deeply"))
        except Exception:  # a bug: the parent shows its traceback
            connection.send(("crash", traceback.format_exc()))


class DeferredInterrupt:
    """Ctrl-C while worker processes train: the handler only notes it, and the parent raises
    KeyboardInterrupt where it submits a run or waits for one (`check`).

    Python's own handler raises wherever the main thread happens to be, and inside a finalizer (an
    npz file the garbage collector closes while the parent plans) Python prints that exception and
    drops it: the study then ran on to its end (seen once under `make test`). Taken over only in the
    main thread and only from Python's default handler (a notebook kernel keeps its own); `stop`
    puts back what was there.
    """

    def __init__(self, enabled: bool = True):
        self.enabled, self.pending, self._previous = enabled, False, None

    def start(self) -> None:
        if (self.enabled and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame) -> None:
        self.pending = True

    def check(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def stop(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class WorkerPool:
    """Spawned processes, each training one run at a time: `size` at first, more by `grow` (never more
    than there are runs ready to train: each process holds TensorFlow and a copy of the data)."""

    def __init__(self, study: Study, size: int, observer=None):
        self.context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
        self.study, self.observer = study, observer
        self.idle, self.busy = [], {}  # busy: connection -> (process, task)
        self.processes = []
        self.grow(size)

    def grow(self, size: int) -> None:
        """Start processes until there are `size`."""
        while len(self.processes) < size:
            parent_end, child_end = self.context.Pipe()
            process = self.context.Process(target=_worker_main, daemon=True,
                                           args=(child_end, os.getpid(), self.study.config, str(self.study.root),
                                                 self.study.data_dir, self.observer))
            process.start()
            child_end.close()
            self.processes.append(process)
            self.idle.append((parent_end, process))

    def submit(self, task: Task) -> int:
        """Send the task to an idle worker; returns the worker's number."""
        connection, process = self.idle.pop()
        connection.send(task.spec)
        self.busy[connection] = (process, task)
        return self.processes.index(process)

    def wait(self, interrupt: DeferredInterrupt | None = None) -> tuple[Task, str, str]:
        """Block until a busy worker reports: (task, kind, message); a dead worker is a UserError. A Ctrl-C
        that `interrupt` noted is raised within a fifth of a second."""
        sentinels = {process.sentinel: connection for connection, (process, _) in self.busy.items()}
        ready = []
        while not ready:
            if interrupt is not None:
                interrupt.check()
            ready = multiprocessing.connection.wait(list(self.busy) + list(sentinels), timeout=0.2)
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
    """Trains what the plans of `names` lack until they are complete; returns the final plans.

    Progress: one bar per experiment (shown when `bars`, default the profile's `compute.progress`)
    whose total is known up front (`expected`: {experiment: runs}, see experiments/expected.py;
    it grows only if the plan outgrows it), and one logged line per finished run that names its
    experiment, group, rate and seed.
    """

    def __init__(self, study: Study, pools: dict, registry: Registry, observer=None,
                 expected: dict[str, int] | None = None, bars: bool | None = None):
        self.study, self.pools, self.registry, self.observer = study, pools, registry, observer
        self.expected = dict(expected or {})
        self.show_bars = study.config.compute.progress if bars is None else bars
        self.bars: dict[str, object] = {}  # experiment -> its tqdm bar, once it has something to train
        self.trained: list[str] = []
        self.read: set[str] = set()
        self.timeline: list[dict] = []  # one entry per trained task: worker, start, end (s since the start)
        self._pool: WorkerPool | None = None
        self._started = time.perf_counter()

    def _cost(self, spec) -> float:
        if not isinstance(spec, RunSpec):
            return 0.0
        images = self.study.splits_for(spec.data_source).size(spec.train_split) * spec.epochs  # subsamples too
        return images * (0.2 if spec.frozen else 1.0)  # frozen conv layers are computed once

    def _missing(self, plans: list, running: set[str]) -> list[Task]:
        store, tasks = self.study.store, {}
        for plan in plans:
            for stage in plan.stages:
                if stage.stage_id not in running and stage.stage_id not in tasks and not stage.done(self.study):
                    tasks[stage.stage_id] = Task(stage, plan.priorities.get(stage.kind, 0), 0.0, plan.experiment,
                                                 stage.kind)
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
                group = next(key for key, specs in plan.groups.items() if spec in specs)
                tasks[run_id] = Task(spec, plan.priority(spec), self._cost(spec), plan.experiment, group[0], group)
        return sorted(tasks.values(), key=lambda task: (task.priority, -task.cost, task.run_id))

    def _show_progress(self, plans: list) -> None:
        """Each experiment's bar: its runs in the store of the runs it trains (a shared run counts for the
        first plan that names it, as in `_missing`), out of the larger of `expected` and its plan so far
        (out of its plan's runs once the plan is complete)."""
        from tqdm.auto import tqdm

        seen: set[str] = set()
        for plan in plans:
            own = [spec.run_id for spec in plan.specs() if spec.run_id not in seen]
            seen.update(own)
            stored_runs = sum(1 for run_id in own if self.study.store.get(run_id) is not None)
            # a complete plan names all its runs (fewer than expected where a schedule's peak is a grid rate)
            total = len(own) if plan.complete else max(self.expected.get(plan.experiment, 0), len(own))
            bar = self.bars.get(plan.experiment)
            if bar is None:
                if plan.complete and stored_runs == len(own):
                    continue  # nothing to train here: no bar
                title = self.registry.get(plan.experiment).title
                bar = self.bars[plan.experiment] = tqdm(total=total, initial=stored_runs, unit="run", leave=True,
                                                        desc=f"{plan.experiment} ({title})", dynamic_ncols=True)
            # tqdm's rate and time left count from `initial`: runs this process trained, not runs a plan that
            # unfolded found already stored (else the rate goes negative, as it did when a resumed study began)
            trained_here = len(set(own) & set(self.trained))
            bar.total, bar.n, bar.initial = max(total, stored_runs), stored_runs, stored_runs - trained_here
            bar.refresh()

    def complete(self, names: list[str]) -> list:
        workers = self.study.config.compute.workers
        running: dict[str, Task] = {}
        interrupt = DeferredInterrupt(enabled=workers > 1)  # one process trains in this one: Ctrl-C at once
        interrupt.start()
        try:
            while True:
                if self.study.store.lease is not None:  # workers save runs: the parent checks its lease for them
                    self.study.store.lease.check()
                plans = list(plan_all(self.study, self.registry, names).values())
                tasks = self._missing(plans, set(running))
                if not tasks and not running:
                    stuck = [w for plan in plans for w in plan.waiting]
                    if stuck:
                        raise UserError(f"{stuck[0].what}: the plan cannot go on (is a run damaged?)")
                    planned = {spec.run_id for plan in plans for spec in plan.specs()}
                    self.read = planned - set(self.trained)
                    if self.bars:
                        self._show_progress(plans)
                    return plans
                if self.show_bars:
                    self._show_progress(plans)
                if workers == 1:
                    started = self._now()
                    message = execute(tasks[0].spec, self.study, self.pools, observer=self.observer,
                                      progress=self.study.config.compute.progress)
                    self._report(tasks[0], 0, started, message)
                    continue
                wanted = min(workers, len(running) + len(tasks))  # no idle processes: tasks ready, at most
                if self._pool is None:
                    if wanted < workers:
                        log.info("starting %d of the %d worker processes compute.workers allows: %d task(s) are ready "
                                 "(more start as tasks become ready)", wanted, workers, len(tasks))
                    self._pool = WorkerPool(self.study, wanted, self.observer)
                    self.pool_started = self._now()
                self._pool.grow(wanted)
                for task in tasks:
                    if not self._pool.idle:
                        break
                    interrupt.check()  # no run starts after Ctrl-C
                    worker = self._pool.submit(task)
                    running[task.run_id] = (task, worker, self._now())
                task, kind, message = self._pool.wait(interrupt)
                _, worker, started = running.pop(task.run_id)
                if kind == "error":
                    raise UserError(message)
                if kind == "crash":
                    raise RuntimeError(f"a worker failed on run {task.run_id}:\n{message}")
                self._report(task, worker, started, message)
        finally:
            interrupt.stop()
            for bar in self.bars.values():
                bar.close()
            if self._pool is not None:
                self._pool.close() if not running else self._pool.kill()
                self._pool = None

    def _now(self) -> float:
        return time.perf_counter() - self._started

    def _report(self, task: Task, worker: int, started: float, message: str) -> None:
        entry = {"run_id": task.run_id, "experiment": task.experiment, "kind": task.kind, "worker": worker,
                 "start": round(started, 3), "end": round(self._now(), 3)}
        if isinstance(task.spec, RunSpec):
            self.trained.append(task.run_id)
            run = self.study.store.get(task.run_id)  # also reads the new run into the store's cache
            entry.update(cpu_seconds=run.metrics["cpu_seconds"], images=run.metrics["images_trained"])
        self.timeline.append(entry)
        log.info(f"{task.describe()}: {message}")


def describe_timeline(timeline: list[dict], workers: int, wall_seconds: float) -> dict:
    """Where a `run` spent its time: per experiment and kind of run, and how busy the workers were."""
    by_kind: dict[str, dict] = {}
    for entry in timeline:
        row = by_kind.setdefault(f"{entry['experiment']}:{entry['kind']}", {"runs": 0, "worker_seconds": 0.0,
                                                                            "cpu_seconds": 0.0, "images": 0})
        row["runs"] += 1
        row["worker_seconds"] += entry["end"] - entry["start"]
        row["cpu_seconds"] += entry.get("cpu_seconds", 0.0)
        row["images"] += entry.get("images", 0)
    busy = sum(entry["end"] - entry["start"] for entry in timeline)
    first = min((entry["start"] for entry in timeline), default=0.0)
    last = max((entry["end"] for entry in timeline), default=0.0)
    return {"wall_seconds": wall_seconds, "workers": workers, "tasks": len(timeline),
            "first_task_started": first, "last_task_ended": last,
            "worker_busy_fraction": busy / (workers * (last - first)) if last > first else None,
            "images_trained": sum(entry.get("images", 0) for entry in timeline),
            "cpu_seconds_in_runs": sum(entry.get("cpu_seconds", 0.0) for entry in timeline),
            "by_kind": by_kind}


@dataclass
class RunOutcome:
    """What completing some experiments' plans did."""

    plans: list
    trained: list[str]
    read: set[str]
    minutes: float

    def describe(self, label: str, study: Study) -> str:
        if self.trained:
            return (f"{label} [{study.profile}]: trained {_runs(len(self.trained))}, "
                    f"{len(self.read)} already in the store, {self.minutes:.1f} min")
        return f"{label} [{study.profile}]: nothing to train, {_runs(len(self.read))} already in {study.store.runs_dir}"


def _runs(count: int) -> str:
    """"1 run", "3 runs" (no "run(s)" in what a user reads)."""
    return f"{count} run{'' if count == 1 else 's'}"


def write_summaries(study: Study, registry: Registry, plans: list) -> None:
    """Each complete plan's summary, computed by its experiment and written whole."""
    from dnnls_tf.study import results

    for plan in plans:
        skipped = plan.choices.get("skipped")
        if skipped and results.summary_path(study.results_dir, plan.experiment).is_file():
            # its data is missing here, but a summary of its runs is stored (a committed study, a copy of the
            # store): keep it rather than replace results with "not run"
            log.warning("%s is skipped here (%s); its stored summary is kept", plan.experiment, skipped)
            continue
        check_runs_match_data(study, plan)
        results.write_summary(study, plan.experiment, registry.get(plan.experiment).summarize(study, plan))


def check_runs_match_data(study: Study, plan) -> None:
    """Refuse (StoreError) a summary over any stored run whose fingerprint is not of the data the plan read."""
    from dnnls_tf.errors import StoreError

    for spec in plan.specs():
        run = study.store.get(spec.run_id)
        if run is None:
            continue  # the summary itself reports a missing run
        expected = study.splits_for(run.spec.data_source).fingerprint(run.spec.train_split, run.spec.val_split)
        if run.spec.data_fingerprint != expected:
            raise StoreError(f"run {spec.run_id} of {plan.experiment} was trained on data with fingerprint "
                             f"{run.spec.data_fingerprint}, not on the data read now ({expected}): no summary "
                             f"is written from it")


def complete_experiments(study: Study, registry: Registry, names: list[str], label: str | None = None,
                         observer=None, expected: dict[str, int] | None = None,
                         bars: bool | None = None) -> RunOutcome:
    """Train what the plans of `names` (and of the experiments they need) lack, under the store's
    lock, then write their summaries.

    The one implementation behind `python -m dnnls_tf run` and the notebooks' `run()`. The
    study must be writable (the runner then executes the plans' stages). A store on Google
    Drive is flushed when it returns or fails (drive.flush). When runs were
    trained, their timeline goes to results/<profile>/timeline/run-<label>.json. `observer`
    watches each run train (see `execute`); `expected` and `bars` set the progress bars (see `Runner`).
    """
    from dnnls_tf.atomic import write_json
    from dnnls_tf.core import runtime
    from dnnls_tf.study.drive import flushed_when_done
    from dnnls_tf.study.store import StoreLock

    if not study.writable:
        raise UserError("complete_experiments needs a writable Study (Study(..., writable=True))")
    with flushed_when_done(study.store.on_drive), StoreLock(study.store):
        removed = study.store.remove_orphans()
        if removed:
            print(f"removed {removed} partial file(s) left by a killed process")
        runner = Runner(study, runtime.start(study.config.compute), registry, observer, expected, bars)
        began = time.perf_counter()
        plans = runner.complete(list(names))
        write_summaries(study, registry, plans)
        if runner.timeline:
            record = describe_timeline(runner.timeline, study.config.compute.workers, time.perf_counter() - began)
            write_json(study.results_dir / "timeline" / f"run-{label or '+'.join(names)}.json",
                       {**record, "cpu": runtime.cpu_description()["cpu_model"],
                        "cpu_identity": runtime.cpu_description()["cpu_identity"], "timeline": runner.timeline})
    return RunOutcome(plans, list(runner.trained), set(runner.read), (time.perf_counter() - began) / 60)
