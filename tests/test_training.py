"""The compiled loop against an eager NumPy copy of the same training."""
import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from dnnls_tf.core import runtime
from dnnls_tf.study.gradients import window_epochs, window_measures
from dnnls_tf.core.models import build_model, captured_layers, parameters
from dnnls_tf.core.spec import WarmupCosine
from dnnls_tf.study.study import Study
from dnnls_tf.core.trainer import epoch_order, make_learning_rate, make_optimizer
from dnnls_tf.core.training import train_run


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return Study(tiny_config(data__train_eval_sample=60), root=tmp_path_factory.mktemp("training"))


def _eager_gradients(spec, study, parameters_too=False):
    """Per epoch and step: each layer's kernel gradient, and each epoch's end-of-epoch kernels.

    With `parameters_too`, also per epoch and step each parameter's gradient and its value
    before the step's update, and each epoch's end-of-epoch parameters.
    """
    runtime.seed_run(spec.seed)
    model = build_model(spec)
    images, labels = study.splits.arrays(spec.train_split)
    steps_per_epoch = math.ceil(len(labels) / spec.batch_size)
    optimizer = make_optimizer(spec.optimizer, spec.momentum,
                               make_learning_rate(spec.learning_rate, steps_per_epoch, spec.epochs))
    kernels = [layer.kernel for layer in captured_layers(model)]
    params = [variable for _, variable in parameters(model)]
    steps, weights, param_steps, param_weights = [], [], [], []
    for epoch in range(1, spec.epochs + 1):
        epoch_steps, epoch_param_steps = [], []
        order = epoch_order(len(labels), spec.seed, epoch).numpy()
        for start in range(0, len(order), spec.batch_size):
            index = order[start:start + spec.batch_size]
            with tf.GradientTape() as tape:
                logits = model(images[index], training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels[index], logits,
                                                                                   from_logits=True))
            gradients = tape.gradient(loss, model.trainable_variables)
            by_variable = {id(v): g for v, g in zip(model.trainable_variables, gradients)}
            epoch_param_steps.append([(by_variable[id(p)].numpy().astype(np.float64), p.numpy().astype(np.float64))
                                      for p in params if id(p) in by_variable])
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            epoch_steps.append([by_variable[id(k)].numpy().astype(np.float64) for k in kernels])
        steps.append(epoch_steps)
        param_steps.append(epoch_param_steps)
        weights.append([k.numpy().astype(np.float64) for k in kernels])
        param_weights.append([p.numpy().astype(np.float64) for p in params])
    if parameters_too:
        return steps, weights, param_steps, param_weights
    return steps, weights


@pytest.fixture(scope="module")
def four_epochs(study):
    spec = dataclasses.replace(study.spec(0, 0.05), epochs=4, gradient_window=2)
    return spec, train_run(spec, study.splits), _eager_gradients(spec, study)


def test_captured_sums_equal_numpy_on_the_same_steps(four_epochs):
    spec, result, (steps, weights) = four_epochs
    for epoch, epoch_steps in enumerate(steps):
        for layer in range(len(result.gradients["layer_names"])):
            values = np.concatenate([step[layer].ravel() for step in epoch_steps])
            captured = [result.gradients[key][epoch, layer] for key in ("count", "sum", "sum_sq", "sum_abs")]
            expected = [values.size, values.sum(), (values**2).sum(), np.abs(values).sum()]
            # graph and eager float32 gradients differ by rounding; the signed sum can cancel to
            # nearly zero, so its tolerance is relative to the sum of |g|
            np.testing.assert_allclose(captured, expected, rtol=2e-5, atol=1e-6 * expected[3])
            np.testing.assert_allclose(result.gradients["weight_sq"][epoch, layer], (weights[epoch][layer]**2).sum(),
                                       rtol=1e-5)


def test_window_measures_equal_numpy_on_the_same_per_step_gradients(four_epochs):
    spec, result, (steps, weights) = four_epochs
    measures = window_measures(result.gradients, spec.gradient_window)
    first, last = window_epochs(spec.epochs, spec.gradient_window)
    assert list(first) == [0, 1] and list(last) == [2, 3]
    for name, index in (("first", first), ("last", last)):
        for layer in range(len(result.gradients["layer_names"])):
            per_step = np.stack([step[layer] for e in index for step in steps[e]])  # (T, *kernel)
            values = per_step.ravel()
            np.testing.assert_allclose(measures[name]["mean"][layer], values.mean(), atol=1e-5 * np.abs(values).mean())
            np.testing.assert_allclose(measures[name]["std"][layer], values.std(), rtol=1e-4)
            np.testing.assert_allclose(measures[name]["mean_abs"][layer], np.abs(values).mean(), rtol=1e-4)
            norms = np.sqrt((per_step.reshape(len(per_step), -1) ** 2).sum(axis=1))
            weight_norm = np.mean([np.sqrt((weights[e][layer] ** 2).sum()) for e in index])
            np.testing.assert_allclose(measures[name]["grad_to_weight"][layer],
                                       np.sqrt((norms**2).mean()) / weight_norm, rtol=1e-4)
            mean_t, std_t = per_step.mean(axis=0).ravel(), per_step.std(axis=0).ravel()
            varying = std_t > 0
            snr = np.mean(np.abs(mean_t[varying]) / std_t[varying])
            np.testing.assert_allclose(measures[name]["temporal_snr"][layer], snr, rtol=1e-3)


@pytest.fixture(scope="module")
def batch_norm_epochs(study):
    spec = dataclasses.replace(study.spec(1, 0.05, batch_norm=True), epochs=2, gradient_window=1)
    return spec, train_run(spec, study.splits), _eager_gradients(spec, study, parameters_too=True)


def test_every_parameters_gradient_sums_cosines_and_norms_equal_numpy(batch_norm_epochs):
    spec, result, (_, _, param_steps, param_weights) = batch_norm_epochs
    gradients = result.gradients
    names = list(gradients["param_names"])
    assert names == ["conv1/kernel", "bn1/gamma", "bn1/beta", "conv2/kernel", "bn2/gamma", "bn2/beta", "conv3/kernel",
                     "bn3/gamma", "bn3/beta", "fc1/kernel", "bn4/gamma", "bn4/beta", "fc2/kernel", "fc2/bias"]
    for key in ("param_count", "param_sum", "param_sum_sq", "param_sum_abs", "param_cosine_sum",
                "param_cosine_steps", "param_weight_sq"):
        assert gradients[key].shape == (2, len(names)) and gradients[key].dtype == np.float64, key
    for epoch, epoch_steps in enumerate(param_steps):
        for p, name in enumerate(names):
            values = np.concatenate([step[p][0].ravel() for step in epoch_steps])
            expected = [values.size, values.sum(), (values**2).sum(), np.abs(values).sum()]
            captured = [gradients[key][epoch, p] for key in ("param_count", "param_sum", "param_sum_sq", "param_sum_abs")]
            np.testing.assert_allclose(captured, expected, rtol=2e-5, atol=1e-6 * expected[3], err_msg=name)
            # cos(g_t, w_t) at the weights each step's gradient was taken at; undefined where w or g is 0
            cosines = [np.dot(g.ravel(), w.ravel()) / (np.linalg.norm(g) * np.linalg.norm(w))
                       for g, w in (step[p] for step in epoch_steps) if np.linalg.norm(g) * np.linalg.norm(w) > 0]
            assert gradients["param_cosine_steps"][epoch, p] == len(cosines), name
            np.testing.assert_allclose(gradients["param_cosine_sum"][epoch, p], np.sum(cosines), atol=2e-5 * len(cosines),
                                       err_msg=name)
            np.testing.assert_allclose(gradients["param_weight_sq"][epoch, p], (param_weights[epoch][p]**2).sum(),
                                       rtol=1e-5, err_msg=name)
    beta = names.index("bn1/beta")  # zero at the start: no angle at the first step
    assert gradients["param_cosine_steps"][0, beta] == len(param_steps[0]) - 1
    kernels = [names.index(f"{layer}/kernel") for layer in gradients["layer_names"]]
    for key in ("count", "sum", "sum_sq", "sum_abs", "weight_sq"):  # the kernels' arrays are their rows
        np.testing.assert_array_equal(gradients[key], gradients[f"param_{key}"][:, kernels])


def test_a_frozen_layers_parameters_have_no_gradients(tmp_path):
    study = Study(tiny_config(), root=tmp_path)
    spec = dataclasses.replace(study.spec(0, 0.05, batch_norm=True, frozen=True), epochs=1)
    gradients = train_run(spec, study.splits).gradients
    frozen = [p for p, name in enumerate(gradients["param_names"]) if name.split("/")[0] in spec.frozen]
    assert len(frozen) == 9 and not gradients["param_count"][:, frozen].any()
    assert not gradients["param_cosine_steps"][:, frozen].any()
    kernels = [p for p in frozen if gradients["param_names"][p].endswith("kernel")]
    assert len(kernels) == 3 and gradients["param_weight_sq"][:, kernels].all()  # their norms are still recorded
    trained = [p for p in range(len(gradients["param_names"])) if p not in frozen]
    assert gradients["param_count"][:, trained].all()


def test_history_steps_and_predictions_follow_the_contract(four_epochs):
    spec, result, _ = four_epochs
    assert list(result.history["epoch"]) == [1, 2, 3, 4]
    assert len(result.steps) == 4 * math.ceil(480 / 50) and list(result.steps["step"]) == list(range(1, 41))
    assert result.history["train_eval_accuracy"].between(0, 1).all()
    assert result.metrics["best_epoch"] == int(result.history["val_accuracy"].idxmax()) + 1
    assert len(result.predictions["test_predictions"]) == 200
    hits = (result.predictions["test_predictions"] == result.predictions["test_labels"]).mean()
    assert hits == pytest.approx(result.metrics["test_accuracy"])


def test_same_seed_same_run_other_seed_differs(study):
    spec = study.spec(1, 0.05, dropout=0.3)
    first, again = train_run(spec, study.splits), train_run(spec, study.splits)
    other = train_run(dataclasses.replace(spec, seed=2), study.splits)
    assert first.history.equals(again.history) and first.steps.equals(again.steps)
    for key in ("sum", "sum_sq", "temporal_snr"):
        np.testing.assert_array_equal(first.gradients[key], again.gradients[key])
    for a, b in zip(first.model.weights, again.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not first.history[["loss", "val_accuracy"]].equals(other.history[["loss", "val_accuracy"]])


def test_the_best_validation_epoch_is_restored(study):
    result = train_run(dataclasses.replace(study.spec(0, 0.05), epochs=3), study.splits)
    assert result.metrics["val_accuracy"] == pytest.approx(result.history["val_accuracy"].max())


def test_a_non_finite_loss_marks_the_run_diverged_and_unstable(study):
    result = train_run(study.spec(0, 1e30), study.splits)
    assert result.metrics["status"] == "diverged" and not result.metrics["stable"]
    assert result.metrics["diverged_epoch"] == len(result.history)
    assert not math.isfinite(result.history["loss"].iloc[-1])


def test_the_schedule_warms_up_then_decays(study):
    spec = dataclasses.replace(study.spec(0, WarmupCosine(0.05, 1, 0.0)), epochs=4)
    rates = train_run(spec, study.splits).history["lr"].to_numpy()
    assert math.isclose(rates[0], 0.05, rel_tol=1e-5)  # warm-up ends with the first epoch
    assert np.all(np.diff(rates) < 0) and rates[-1] < 1e-6


def test_mixed_precision_captures_unscaled_gradients(study):
    spec = dataclasses.replace(study.spec(0, 0.05), epochs=1, gradient_window=1)
    mixed = train_run(dataclasses.replace(spec, mixed_precision=True), study.splits)
    plain = train_run(spec, study.splits)
    assert mixed.metrics["status"] == "done"
    # float16 compute: the same gradients to about two digits, not multiplied by the loss scale
    np.testing.assert_allclose(mixed.gradients["sum_abs"], plain.gradients["sum_abs"], rtol=0.05)


@pytest.mark.slow  # an XLA compilation: about 20 CPU-s
def test_the_xla_path_of_the_gpu_profiles_compiles_and_captures_the_same_gradients(study):
    spec = dataclasses.replace(study.spec(0, 0.05), epochs=1, gradient_window=1)
    xla = train_run(dataclasses.replace(spec, jit_compile=True), study.splits)
    plain = train_run(spec, study.splits)
    assert xla.metrics["status"] == "done"
    for key in ("sum_sq", "sum_abs"):  # XLA reorders float32 reductions: equal to rounding
        np.testing.assert_allclose(xla.gradients[key], plain.gradients[key], rtol=1e-3)


def test_float16_steps_the_loss_scaling_skips_stay_out_of_the_gradient_sums(tmp_path):
    study = Study(tiny_config(), root=tmp_path)
    spec = dataclasses.replace(study.spec(0, 0.05), epochs=2, gradient_window=1, mixed_precision=True)
    result = train_run(spec, study.splits)
    gradients = result.gradients
    for key in ("sum", "sum_sq", "sum_abs"):
        assert np.isfinite(gradients[key]).all(), key
    steps = gradients["count"] / gradients["kernel_size"]  # captured steps per epoch, the same for every layer
    assert (steps == steps[:, :1]).all() and (steps <= len(result.steps) / 2).all()
    assert np.isfinite(gradients["temporal_snr"]).all()
