import math

import keras
import numpy as np
import tensorflow as tf

from dnnls_tf import data as data_lib
from dnnls_tf.gradients import pool_window, window_epochs
from dnnls_tf.models import LAYER_NAMES, build_cnn
from dnnls_tf.training import Trainer, make_optimizer, set_determinism, train_model

RUN = {"epochs": 2, "batch_size": 40, "seed": 0, "learning_rate": 0.05, "optimizer": "sgd", "momentum": 0.9}


def _arrays(n=120, seed=0):
    data = data_lib.make_synthetic(n, 10, seed)
    return data.images, data.labels


def _numpy_gradients(seed, arrays, epochs, dropout=0.0):
    """Per-step kernel gradients of an eager copy of the same training, as NumPy arrays."""
    set_determinism(seed)
    model = build_cnn(filters=(4, 8, 8), fc_units=16, seed=seed, dropout=dropout)
    optimizer = make_optimizer(RUN, RUN["learning_rate"], loss_scaling=False)
    kernels = [model.get_layer(name).kernel for name in LAYER_NAMES]
    steps = []  # per epoch, per step: list of L arrays
    for epoch in range(1, epochs + 1):
        epoch_steps = []
        order = data_lib.epoch_order(len(arrays[1]), seed, epoch)
        for index in data_lib.batch_indices(order, RUN["batch_size"]):
            images, labels = arrays[0][index], arrays[1][index]
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            by_variable = {id(v): g for v, g in zip(model.trainable_variables, gradients)}
            epoch_steps.append([by_variable[id(k)].numpy().astype(np.float64) for k in kernels])
        steps.append(epoch_steps)
    return steps


def _train(seed=0, arrays=None, **overrides):
    set_determinism(seed)
    model = build_cnn(filters=(4, 8, 8), fc_units=16, seed=seed, dropout=overrides.pop("dropout", 0.0))
    arrays = arrays or _arrays()
    history, gradients, summary = train_model(model, {**RUN, "seed": seed, **overrides}, arrays, arrays)
    return model, history, gradients, summary


def test_captured_sums_equal_numpy_on_the_same_steps():
    arrays = _arrays()
    _, _, captured, _ = _train(arrays=arrays)
    reference = _numpy_gradients(0, arrays, epochs=2)
    for epoch, epoch_steps in enumerate(reference):
        for layer in range(len(LAYER_NAMES)):
            values = np.concatenate([step[layer].ravel() for step in epoch_steps])
            expected = [values.size, values.sum(), (values**2).sum(), np.abs(values).sum()]
            # graph and eager float32 gradients differ only by rounding; the signed sum can
            # cancel to nearly zero, so its tolerance is relative to the sum of |g|
            np.testing.assert_allclose(captured.sums[epoch, layer], expected, rtol=2e-5, atol=1e-6 * expected[3])


def test_pooled_window_statistics_equal_numpy_on_concatenated_gradients():
    arrays = _arrays()
    _, _, captured, _ = _train(arrays=arrays, epochs=4)
    reference = _numpy_gradients(0, arrays, epochs=4)
    stored = captured.as_arrays()
    first, last = window_epochs(4, window=5)
    assert list(first) == [0, 1] and list(last) == [2, 3]
    for index in (first, last):
        pooled = pool_window(stored, index)
        for layer in range(len(LAYER_NAMES)):
            values = np.concatenate([step[layer].ravel() for e in index for step in reference[e]])
            np.testing.assert_allclose(pooled["mean"][layer], values.mean(), atol=1e-5 * np.abs(values).mean())
            np.testing.assert_allclose(pooled["std"][layer], values.std(), rtol=1e-4)
            np.testing.assert_allclose(pooled["mean_abs"][layer], np.abs(values).mean(), rtol=1e-4)


def test_same_seed_same_history_and_weights_other_seed_differs():
    model_a, history_a, gradients_a, _ = _train(seed=1, dropout=0.3)
    model_b, history_b, gradients_b, _ = _train(seed=1, dropout=0.3)
    _, history_c, _, _ = _train(seed=2, dropout=0.3)
    assert history_a.equals(history_b)
    np.testing.assert_array_equal(gradients_a.sums, gradients_b.sums)
    for a, b in zip(model_a.weights, model_b.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not history_a[["loss", "val_accuracy"]].equals(history_c[["loss", "val_accuracy"]])


def test_best_validation_epoch_is_restored():
    model, history, _, summary = _train(epochs=3)
    best = int(history["val_accuracy"].idxmax()) + 1
    assert summary["best_epoch"] == best
    trainer = Trainer(model, make_optimizer(RUN, 0.1, False))
    _, accuracy = trainer.evaluate(data_lib.make_eval_dataset(*_arrays(), 1024))
    assert math.isclose(float(accuracy), history["val_accuracy"].max())


def test_non_finite_loss_marks_the_run_diverged():
    _, history, _, summary = _train(learning_rate=1e30)
    assert summary["status"] == "diverged"
    assert summary["diverged_epoch"] == len(history)
    assert not math.isfinite(history["loss"].iloc[-1])


def test_schedules_are_logged_per_epoch():
    schedule = {"name": "warmup_cosine", "peak": 0.05, "warmup_epochs": 1, "final_fraction": 0.0}
    _, history, _, _ = _train(learning_rate=schedule, epochs=4)
    rates = history["lr"].to_numpy()
    assert math.isclose(rates[0], 0.05, rel_tol=1e-5)  # warm-up ends with the first epoch
    assert np.all(np.diff(rates) < 0) and rates[-1] < 1e-6
    _, history, _, _ = _train(learning_rate=lambda epoch: 0.1 / (epoch + 1), epochs=3)
    np.testing.assert_allclose(history["lr"], [0.1, 0.05, 0.1 / 3], rtol=1e-6)


def test_mixed_precision_captures_unscaled_gradients():
    arrays = _arrays()
    set_determinism(0)
    model = build_cnn(filters=(4, 8, 8), fc_units=16, seed=0, dtype="mixed_float16")
    _, gradients, summary = train_model(model, {**RUN, "epochs": 1}, arrays, arrays)
    _, _, reference, _ = _train(arrays=arrays, epochs=1)
    assert summary["status"] == "done"
    # float16 compute: the same gradients to about three digits, not scaled by the loss scale
    np.testing.assert_allclose(gradients.sums[0, :, 3], reference.sums[0, :, 3], rtol=0.05)
