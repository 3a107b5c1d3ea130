"""The kinds of run a rehearsal covers, and how one kind is rehearsed, checked and timed.

A kind (KINDS) is what changes the code a run executes or its cost: its splits, dropout,
batch norm, a schedule, transferred or frozen conv layers. `rehearse_kind` sets a
representative run of a kind up from a `RunSpec` as `training.train_run` does, runs the
compiled epoch on a slice of the epoch's order twice (a warm-up call that traces and
compiles, then a timed call of as many steps), evaluates once on a validation-sized tensor,
and checks the outputs (`check_outputs`; frozen layers untouched; the transfer's conv layers
equal to its source's, its head fresh). The transfer's source is the dropout run on half A
of the same pass, saved to and loaded from the pass's temporary root. `rehearse_range_test`
times the LR range test (RANGE_TEST), which is not a kind of `RunSpec` run.
rehearse.py runs these over both passes and predicts the study's time from them.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnls_tf.core import data as data_lib
from dnnls_tf.core import runtime
from dnnls_tf.core.sources import make_synthetic
from dnnls_tf.core.spec import WarmupCosine
from dnnls_tf.study.study import HALVES, HOLDOUT, SWAPPED, Study

RANGE_TEST = "range_test"


@dataclass(frozen=True)
class Kind:
    """A kind of run: what changes the code a run executes or its cost."""

    name: str
    splits: tuple[str, str]
    dropout: bool = False
    batch_norm: bool = False
    schedule: bool = False       # warm-up + cosine decay instead of a constant rate
    transfer: bool = False       # conv layers from the source's saved weights, frozen; head re-initialised
    frozen_random: bool = False  # the same over the run's own random conv layers
    saves_source: bool = False   # its weights are the transfer's source


KINDS = (
    Kind("end_to_end_holdout", HOLDOUT),
    Kind("schedule_holdout", HOLDOUT, schedule=True),
    Kind("dropout_holdout", HOLDOUT, dropout=True),
    Kind("end_to_end_halves", HALVES),
    Kind("dropout_halves", HALVES, dropout=True, saves_source=True),
    Kind("batch_norm_halves", HALVES, batch_norm=True),
    Kind("transfer", SWAPPED, dropout=True, transfer=True),
    Kind("frozen_random", SWAPPED, frozen_random=True),
)
KIND_NAMES = (RANGE_TEST,) + tuple(kind.name for kind in KINDS)


def describe_settings(jit_compile: bool, mixed_precision: bool) -> str:
    return f"{'mixed float16' if mixed_precision else 'float32'}, {'XLA' if jit_compile else 'no XLA'}"


def _op_determinism_enabled() -> bool:
    try:
        from tensorflow.python.framework import config as tf_config  # no public getter

        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):
        return False


# ------------------------------------------------------------------ one kind
def kind_spec(study: Study, kind: Kind, source_id: str | None = None):
    """A representative run of `kind`: the first seed, the profile's baseline rate, a middle dropout rate."""
    config = study.config
    rate, dropouts = config.training.learning_rate, [r for r in config.exp2.dropout_rates if r > 0]
    return study.spec(config.training.seeds[0],
                      WarmupCosine(peak=2 * rate, warmup_epochs=1, final_fraction=0.01) if kind.schedule else rate,
                      splits=kind.splits, dropout=dropouts[len(dropouts) // 2] if kind.dropout else 0.0,
                      batch_norm=kind.batch_norm, init_from=source_id if kind.transfer else None,
                      frozen=kind.frozen_random)


def _kernels(model, names) -> dict[str, np.ndarray]:
    return {name: np.array(model.get_layer(name).kernel.numpy()) for name in names}


def _save_source(model, spec, study: Study) -> tuple[str, Path, dict]:
    """A source's weights, saved where a transfer run loads them from (the temporary root's store)."""
    from dnnls_tf.core.models import layer_names

    path = study.store.weights_path(spec.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)
    return spec.run_id, path, _kernels(model, layer_names(model))


def rehearse_kind(kind: Kind, study: Study, tensors: dict, steps: int, eval_images: int, sources: dict) -> dict:
    """Set a run of `kind` up, train `steps` steps twice (warm-up, timed), evaluate, check."""
    from dnnls_tf.core import trainer as trainer_lib
    from dnnls_tf.core import training
    from dnnls_tf.core.models import build_model, layer_names

    tf = runtime.import_tensorflow()
    source_id, source_path, source_kernels = sources.get("dropout_halves") or (None, None, None)
    if kind.transfer and source_id is None:  # the source kind did not run in this pass: an untrained source
        source_spec = kind_spec(study, dataclasses.replace(kind, splits=HALVES, transfer=False))
        source_id, source_path, source_kernels = _save_source(build_model(source_spec), source_spec, study)
    spec, problems = kind_spec(study, kind, source_id), []

    # As training.train_run sets a run up (keep the two in step).
    runtime.seed_run(spec.seed, spec.jit_compile)
    if spec.jit_compile and _op_determinism_enabled():
        problems.append("op determinism is on for an XLA run (an earlier run in this process left it on): on a "
                        "GPU, XLA has no deterministic max-pool gradient and such runs fail")
    model = build_model(spec, source_path if kind.transfer else None)
    frozen_before = _kernels(model, [name for name in layer_names(model) if name in spec.frozen])
    forward, encode = training.frozen_features(model, spec)
    encode_seconds = 0.0
    if forward is model:
        images, labels = tensors[spec.train_split][0], tf.cast(tensors[spec.train_split][1], tf.int64)
    else:  # frozen conv layers: their features are computed once, before the first epoch
        start = time.perf_counter()
        images, labels = encode(training.place_arrays(study.splits.arrays(spec.train_split)))
        encode_seconds = time.perf_counter() - start
    num_train = int(labels.shape[0])
    optimizer = trainer_lib.make_optimizer(
        spec.optimizer, spec.momentum,
        trainer_lib.make_learning_rate(spec.learning_rate, math.ceil(num_train / spec.batch_size), spec.epochs),
        loss_scaling=spec.mixed_precision)
    trainer = trainer_lib.Trainer(forward, optimizer, capture=spec.capture_gradients, jit_compile=spec.jit_compile,
                               eval_batch_size=spec.eval_batch_size, network=model, input_dtype=images.dtype,
                               batch_size=spec.batch_size)
    if kind.transfer:
        problems += [f"{name} was not loaded from the source's saved weights" for name in frozen_before
                     if name in source_kernels and not np.array_equal(frozen_before[name], source_kernels[name])]
        if np.array_equal(model.get_layer("fc1").kernel.numpy(), source_kernels["fc1"]):
            problems.append("fc1 kept the source's weights (the head must be re-initialised)")

    order, batch = trainer_lib.epoch_order(num_train, spec.seed, 1), spec.batch_size  # int64, as training passes it
    outputs, seconds, cpu_seconds = [], [], 0.0
    for call, first_window in enumerate((True, False)):  # warm-up (traces, compiles, fills the SNR window); timed
        start, cpu_start = time.perf_counter(), time.process_time()
        outputs.append({name: t.numpy() for name, t in trainer.train_epoch(
            images, labels, order[call * steps * batch:(call + 1) * steps * batch],
            tf.constant(first_window), tf.constant(False)).items()})
        seconds.append(time.perf_counter() - start)
        cpu_seconds = time.process_time() - cpu_start
    snr = trainer.window_snr(0)
    rate = trainer.current_learning_rate()

    val_images, val_labels = study.splits.arrays(spec.val_split)
    count = min(eval_images, len(val_labels))
    val_arrays = encode((val_images[:count], val_labels[:count]))
    trainer.evaluate_arrays((val_arrays[0][:256], val_arrays[1][:256]))  # traces the evaluation
    start = time.perf_counter()
    eval_loss, eval_accuracy, predictions = trainer.evaluate_arrays(val_arrays)
    eval_seconds = time.perf_counter() - start

    problems += check_outputs(spec, model, outputs, snr, steps)
    problems += [f"frozen layer {name} changed in training" for name, kernel in
                 _kernels(model, frozen_before).items() if not np.array_equal(kernel, frozen_before[name])]
    if forward is not model:
        whole = tf.argmax(model(val_images[:256], training=False), -1, output_type=tf.int32).numpy()
        if not np.array_equal(trainer.evaluate_arrays(encode((val_images[:256], val_labels[:256])))[2], whole):
            problems.append("the head on the frozen features does not predict what the whole model predicts")
    if not (math.isfinite(eval_loss) and 0 <= eval_accuracy <= 1 and len(predictions) == count):
        problems.append(f"evaluation gave loss {eval_loss}, accuracy {eval_accuracy}, {len(predictions)} predictions")
    if not (math.isfinite(rate) and rate > 0):
        problems.append(f"learning rate {rate}")
    if kind.saves_source:
        sources[kind.name] = _save_source(model, spec, study)
    per_step = seconds[1] / steps
    return {"run_id": spec.run_id, "seconds_per_step": per_step, "cpu_seconds_per_step": cpu_seconds / steps,
            "steps": steps,
            "overhead_seconds": max(seconds[0] - steps * per_step, 0.0),
            "encode_seconds_per_image": encode_seconds / num_train,
            "eval_seconds_per_image": eval_seconds / count, "eval_images": count,
            "settings": describe_settings(spec.jit_compile, spec.mixed_precision), "problems": problems}


def check_outputs(spec, model, outputs: list, snr: np.ndarray, steps: int) -> list[str]:
    """Problems in `Trainer.train_epoch` outputs of calls of `steps` steps (empty: sound).

    Losses and gradient sums finite; each trained layer's count = captured steps x
    kernel size (with loss scaling, steps it skipped are not captured), frozen layers 0;
    the temporal SNR finite exactly for the trained layers (once two steps were captured).
    """
    from dnnls_tf.core.models import captured_layers

    problems = []
    layers = captured_layers(model)
    sizes = np.array([np.prod(layer.kernel.shape) for layer in layers], dtype=float)
    trained = np.array([layer.name not in spec.frozen for layer in layers])
    first, captured = int(np.argmax(trained)), []
    for label, output in zip(("warm-up", "timed"), outputs):
        loss, sums, step_losses, weight_sq = (output[key] for key in ("loss", "gradients", "step_losses", "weight_sq"))
        if len(step_losses) != steps or not np.isfinite(step_losses).all() or not np.isfinite(loss):
            problems.append(f"{label} call: non-finite or missing step losses {step_losses[:4]}")
        if not np.isfinite(sums).all():
            bad = [layer.name for layer, row in zip(layers, sums) if not np.isfinite(row).all()]
            problems.append(f"{label} call: non-finite gradient sums for {', '.join(bad)}")
        captured.append(sums[first, 0] / sizes[first])
        allowed = range(steps + 1) if spec.mixed_precision else (steps,)
        if captured[-1] not in allowed or not np.array_equal(sums[:, 0], np.where(trained, captured[-1] * sizes, 0)):
            problems.append(f"{label} call: gradient counts {sums[:, 0].tolist()} are not steps x kernel sizes")
        if not np.isfinite(weight_sq).all():
            problems.append(f"{label} call: non-finite kernel norms")
    if np.isfinite(snr[~trained]).any() or (captured[0] >= 2 and not np.isfinite(snr[trained]).all()):
        problems.append(f"temporal SNR {np.round(snr, 3).tolist()}: expected finite for trained layers only")
    return problems


def rehearse_range_test(study: Study, steps: int) -> dict:
    """`training.lr_range_test` at two lengths (after a one-step warm-up): s/step and per-run overhead.

    Its rate rises only tenfold here, so that the loss does not blow up and end the test early.
    """
    from dnnls_tf.core import training

    from dnnls_tf.experiments.learning_rate import range_test_spec

    spec = range_test_spec(study)
    spec = dataclasses.replace(spec, train_split="half_a", epochs=1, max_lr=10 * spec.min_lr)
    lengths, seconds, counted = (1, max(4, steps), 3 * max(4, steps)), [], []
    for length in lengths:  # half_a of 2 x length batches holds `length` batches
        splits = data_lib.SplitData(make_synthetic(2 * length * spec.batch_size, 10, seed=1),
                                    study.config.data.split_seed, study.config.data.val_fraction)
        start = time.perf_counter()
        counted.append(len(training.lr_range_test(spec, splits)))
        seconds.append(time.perf_counter() - start)
    per_step = (seconds[2] - seconds[1]) / max(counted[2] - counted[1], 1)
    per_step = per_step if per_step > 0 else seconds[2] / counted[2]  # a noisy machine
    return {"seconds_per_step": per_step, "steps": counted[2] - counted[1],
            "overhead_seconds": max(seconds[1] - counted[1] * per_step, 0.0),
            "encode_seconds_per_image": 0.0, "eval_seconds_per_image": 0.0, "eval_images": 0,
            "settings": "float32, no XLA (as lr_range_test trains)",
            "problems": [] if counted == list(lengths) else [f"range test ran {counted} steps, not {list(lengths)}"]}
