"""Process-wide TensorFlow set-up, done once at each entry point (CLI, worker, notebook, bench).

`start(compute)` imports TensorFlow quietly, sizes its thread pools before its
first operation and turns GPU memory growth on (several workers can then share one
GPU); `seed_run(seed, jit_compile)` seeds one run. Nothing else in the
library touches process-wide TensorFlow state. Importing this module does not
import TensorFlow.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

from dnnls_tf.errors import UserError

log = logging.getLogger(__name__)
_REFUSED_POOLS: set[tuple[int, int]] = set()  # pool requests already warned about


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 to the null device (Python exceptions still raise as usual).

    TensorFlow writes its C++ start-up lines (CUDA probing on a CPU-only machine, CPU
    instruction notes) before TF_CPP_MIN_LOG_LEVEL applies.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real file descriptor 2 (some notebook front ends)
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def import_tensorflow():
    """TensorFlow, imported once with its start-up noise dropped."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe prints here, once
    tf.get_logger().setLevel("ERROR")  # each run traces its own functions: retracing notes are noise
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tf


def configure_threads(intra_op: int, inter_op: int) -> dict:
    """Size TensorFlow's thread pools (0: TensorFlow's default, one thread per core).

    Pools can only be sized before TensorFlow runs its first operation; after that a
    different request is logged once and the pools stay as they are. A different
    intra-op size can change the last bits of reductions, so every run records them.

    Returns the pool sizes in effect: {"intra_op_threads": n, "inter_op_threads": m}.
    """
    tf = import_tensorflow()
    threading = tf.config.threading
    current = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
    if current != (intra_op, inter_op):
        try:
            threading.set_intra_op_parallelism_threads(intra_op)
            threading.set_inter_op_parallelism_threads(inter_op)
        except RuntimeError:  # TensorFlow has already started in this process
            if (intra_op, inter_op) not in _REFUSED_POOLS:
                _REFUSED_POOLS.add((intra_op, inter_op))
                log.warning("TensorFlow's thread pools are already fixed at %s intra-op / %s inter-op threads "
                            "(asked for %s / %s): set them before any TensorFlow operation", *current,
                            intra_op, inter_op)
    return {"intra_op_threads": threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": threading.get_inter_op_parallelism_threads()}


def configure_gpus() -> dict:
    """Memory growth on every GPU, before TensorFlow initialises them.

    Without it the first process to touch a GPU reserves nearly all of its memory and a
    second worker process on the same card runs out. Returns {"gpus": n, "memory_growth":
    whether it is on for all of them} (False when TensorFlow had already initialised a
    GPU in this process: growth can then no longer be set).
    """
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    growing = True
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the GPU is initialised already: its allocator is fixed
            growing = growing and bool(tf.config.experimental.get_memory_growth(gpu))
    return {"gpus": len(gpus), "memory_growth": growing}


def start(compute) -> dict:
    """Import TensorFlow quietly, size its pools from the profile and let GPU memory grow; returns
    the pools in effect.

    `compute.workers` > 1 on a GPU needs memory growth in every process (each worker sets
    it when it starts); if this process initialised its GPU without it, it would hold the
    card's memory while the workers train, so that is refused in one line.
    """
    pools = configure_threads(compute.intra_op_threads, compute.inter_op_threads)
    gpus = configure_gpus()
    if gpus["gpus"] and not gpus["memory_growth"] and compute.workers > 1:
        raise UserError(f"compute.workers = {compute.workers} share the GPU only if TensorFlow lets GPU memory grow, "
                        f"and this process has already reserved the GPU without it: restart it (or the notebook's "
                        f"runtime) before any TensorFlow work, or use --set compute.workers=1")
    return pools


def seed_run(seed: int, jit_compile: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow for one run and make TF ops deterministic.

    XLA has no deterministic max-pool gradient on a GPU, so a jit-compiled run is
    seeded but not bit-reproducible (op determinism stays off there).
    """
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    if not jit_compile:
        tf.config.experimental.enable_op_determinism()
    else:  # process-wide: an earlier run in this process (a notebook, a test) may have turned it on
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()


def cpu_description() -> dict:
    """The CPU's model name, instruction-set flags and identity (model, family, model number, whether
    it has AVX-512) from /proc/cpuinfo, else lscpu."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        try:
            output = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            output = ""
        for line in output.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault({"Model name": "model name", "Flags": "flags"}.get(key.strip(), key.strip()),
                              value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = fields.get("flags", "")
    # Float results of the same code differ between CPUs whose kernels differ (oneDNN picks AVX-512 where
    # there is one): the identity names what decides them, beyond the often generic model name.
    identity = (f"{model} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}, "
                f"avx512 {'yes' if 'avx512f' in flags.split() else 'no'})")
    return {"cpu_model": model, "cpu_flags": flags, "cpu_identity": identity}
