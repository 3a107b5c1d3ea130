"""Independent runs trained at the same time, one per worker process.

A sweep's runs do not depend on each other, so `Study.run_all` hands the missing
ones to `compute.workers` processes (spawned, each with its own TensorFlow and its
profile's thread pools) and then reads them back from the store. A worker writes
a run exactly as the parent would (same code, same seed, same pools: the same
bits), atomically, so a killed sweep resumes as usual. Workers die with their
parent (Linux: PR_SET_PDEATHSIG), so no orphan keeps training after a kill.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

from dnnls_tf.errors import UserError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_study = None  # the worker process's Study


def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: orphans finish their run and exit
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _initialize(parent_pid: int, config: dict, root: str, data_dir: str | None) -> None:
    global _study
    _die_with_parent(parent_pid)
    from dnnls_tf.study import Study

    config["training"]["progress"] = False  # this process's copy; the parent shows one bar over the runs
    _study = Study(config=config, root=root, data_dir=data_dir)


def _train(run_config: dict) -> tuple[str, str, float | None, float]:
    start = time.perf_counter()
    run = _study.run(run_config)
    return run.run_id, run.metrics["status"], run.metrics.get("val_accuracy"), time.perf_counter() - start


def train_in_workers(study, run_configs: list[dict], workers: int) -> list[str]:
    """Train `run_configs` (all missing from the store) in `workers` processes.

    Returns the run ids in the order they finished. A worker's error is raised
    here; runs finished before it stay in the store.
    """
    context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    finished = []
    from dnnls_tf.training import progress_bar

    bar = progress_bar(len(run_configs), study.config["training"]["progress"],
                       f"{len(run_configs)} runs on {workers} workers", unit="run", leave=True)
    with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(workers, len(run_configs)), mp_context=context, initializer=_initialize,
            initargs=(os.getpid(), study.config, str(study.root), study.data_dir)) as pool:
        futures = [pool.submit(_train, config) for config in run_configs]
        try:
            for future in concurrent.futures.as_completed(futures):
                run_id, status, val_accuracy, seconds = future.result()
                finished.append(run_id)
                log.info("run %s: %s, val %.4f (%.0f s in a worker)", run_id, status,
                         float("nan") if val_accuracy is None else val_accuracy, seconds)
                bar.update(1)
                bar.set_postfix(last=f"{run_id} {status} {seconds:.0f}s")
        except BrokenProcessPool:
            raise UserError(f"a training worker died after {len(finished)} of {len(run_configs)} runs "
                            f"(killed, or out of memory?): finished runs are stored; run the same "
                            f"command again to resume") from None
        finally:
            for future in futures:
                future.cancel()
            bar.close()
    return finished

