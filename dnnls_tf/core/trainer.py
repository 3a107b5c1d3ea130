"""The compiled training loop and its gradient capture.

One `tf.function` call trains a whole epoch: a `tf.while_loop` over the steps
gathers each batch from the cached uint8 tensors by the epoch's shuffled order
(`epoch_order`), runs a GradientTape update, and keeps on the device, until the
epoch ends: each step's loss and learning rate, the per-layer sums of dL/dw (count,
sum, sum of squares, sum of |g|, float64) and, in the first and last gradient
windows, the per-weight sums of g and g^2 over steps (for the temporal
signal-to-noise ratio). One host transfer per epoch, none per step. Evaluation is
one compiled pass over uint8 tensors (or frozen layers' features) in batches of
`eval_batch_size`.

Measured per CPU-second in interleaved epochs, as `python -m dnnls_tf bench` does:
iterating a tf.data pipeline inside the epoch function cost 4-5 % more than the
in-graph gather, and a bare `for ... in dataset` about 10 % more again.
"""
from __future__ import annotations

import numpy as np

from dnnls_tf.core.runtime import import_tensorflow
from dnnls_tf.core.spec import WarmupCosine

tf = import_tensorflow()
import keras  # noqa: E402  (after TensorFlow's quiet import)

from dnnls_tf.core.models import LAYER_NAMES  # noqa: E402


def epoch_order(num_examples: int, seed: int, epoch: int):
    """The epoch's shuffled order of example indices (an int32 tensor of a permutation).

    Depends only on (seed, epoch), not on TensorFlow's global seed.
    """
    return tf.random.experimental.stateless_shuffle(tf.range(num_examples, dtype=tf.int32),
                                                    seed=tf.constant([seed, epoch], tf.int64))


def make_learning_rate(rate, steps_per_epoch: int, epochs: int):
    """A constant or a Keras LearningRateSchedule from a run's learning rate."""
    if isinstance(rate, (int, float)):
        return float(rate)
    if isinstance(rate, WarmupCosine):
        warmup_steps = int(round(rate.warmup_epochs * steps_per_epoch))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=rate.peak / 10 if warmup_steps else rate.peak,
            decay_steps=max(steps_per_epoch * epochs - warmup_steps, 1), alpha=rate.final_fraction,
            warmup_target=rate.peak if warmup_steps else None, warmup_steps=warmup_steps)
    raise ValueError(f"unknown learning rate {rate!r}")


def make_optimizer(optimizer: str, momentum: float, learning_rate, loss_scaling: bool = False):
    if optimizer == "sgd":
        result = keras.optimizers.SGD(learning_rate, momentum=momentum)
    else:
        result = keras.optimizers.Adam(learning_rate)
    return keras.optimizers.LossScaleOptimizer(result) if loss_scaling else result


def kernel_sums(gradient, xla: bool = False) -> list:
    """One step's float32 sum, sum of squares and sum of |g| of a kernel's gradient.

    Accumulated over steps in float64 by the caller. Without XLA the sum of squares is
    the square of TensorFlow's fused Euclidean-norm reduction (one pass over g, where
    sum(g * g) first writes g * g); XLA has no EuclideanNorm kernel but fuses g * g itself.
    """
    values = tf.reshape(tf.cast(gradient, tf.float32), [-1])
    squares = tf.reduce_sum(tf.square(values)) if xla else tf.square(tf.math.reduce_euclidean_norm(values))
    return [tf.reduce_sum(values), squares, tf.reduce_sum(tf.abs(values))]


class Trainer:
    """Compiled epoch and evaluation functions for one model and optimizer.

    `model` maps the inputs to logits; `network` (default: the model) is the whole CNN
    whose layers conv1..fc2 are captured. They differ when frozen conv layers are
    computed once (`frozen_features`): the model is then the head on their features.
    """

    def __init__(self, model: keras.Model, optimizer, capture: bool = True, jit_compile: bool = False,
                 eval_batch_size: int = 1024, network: keras.Model | None = None, input_dtype=None):
        self.model, self.optimizer, self.capture, self.jit_compile = model, optimizer, capture, jit_compile
        self.network = network or model
        self.variables = list(model.trainable_variables)
        self.optimizer.build(self.variables)
        position = {id(v): i for i, v in enumerate(self.variables)}
        kernels = [self.network.get_layer(name).kernel for name in LAYER_NAMES]
        # Index of each layer's kernel among the trainable variables (None: frozen or not captured).
        self.kernel_index = [position.get(id(kernel)) if capture else None for kernel in kernels]
        self.captured = [layer for layer, index in enumerate(self.kernel_index) if index is not None]
        self.kernels = kernels
        self.kernel_sizes = [float(np.prod(kernels[layer].shape)) if layer in self.captured else 0.0
                             for layer in range(len(LAYER_NAMES))]
        # Per-weight sums of g and g^2 over the steps of the first (0) and last (1) window.
        self.window_sums = [[tf.Variable(tf.zeros(kernels[layer].shape, tf.float64), trainable=False)
                             for layer in self.captured] for _ in range(4)]
        self.window_steps = [tf.Variable(0.0, dtype=tf.float64, trainable=False) for _ in range(2)]
        self.loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._inner_optimizer = optimizer.inner_optimizer if self.loss_scaling else optimizer
        self.eval_batch_size = eval_batch_size
        self._step = tf.function(self._train_step, jit_compile=jit_compile)
        self.train_epoch = tf.function(self._train_epoch)
        # uint8 images (or float features of frozen layers); any number of them: one trace
        signature = [tf.TensorSpec([None, *model.inputs[0].shape[1:]], input_dtype or tf.uint8),
                     tf.TensorSpec([None], tf.int32)]
        self.evaluate = tf.function(self._evaluate, input_signature=signature)

    # ---------------------------------------------------------------- training
    def _train_step(self, images, labels):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            scaled_loss = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
        gradients = tape.gradient(scaled_loss, self.variables)
        rate = tf.cast(self._inner_optimizer.learning_rate, tf.float32)  # the rate this step applies
        # dL/dw before apply_gradients changes the loss scale (it doubles after 2000 finite steps);
        # a step whose scaled float16 gradients overflowed is skipped by the optimizer and not captured.
        kernels = [self._true_gradient(gradients[self.kernel_index[layer]]) for layer in self.captured]
        finite = tf.constant(True)
        if self.loss_scaling:
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None])
            kernels = [tf.where(finite, kernel, tf.zeros_like(kernel)) for kernel in kernels]
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                 tf.cast(labels, tf.int32)), tf.float64))
        return loss, correct, self._gradient_sums(kernels), kernels, rate, finite

    def _true_gradient(self, gradient):
        if self.loss_scaling:  # capture dL/dw, not the scaled gradient
            return tf.cast(gradient, tf.float32) / tf.cast(self.optimizer.dynamic_scale, tf.float32)
        return gradient

    def _gradient_sums(self, kernels) -> tf.Tensor:
        """(L, 3) float64: sum, sum of squares and sum of |g| of each captured kernel's gradient."""
        if not self.captured:
            return tf.zeros([len(LAYER_NAMES), 3], tf.float64)
        values = [value for gradient in kernels for value in kernel_sums(gradient, self.jit_compile)]
        sums = tf.reshape(tf.cast(tf.stack(values), tf.float64), [len(self.captured), 3])
        if len(self.captured) == len(LAYER_NAMES):
            return sums
        return tf.scatter_nd([[layer] for layer in self.captured], sums, [len(LAYER_NAMES), 3])

    def _accumulate_window(self, which: int, kernels, finite) -> None:
        self.window_steps[which].assign_add(tf.cast(finite, tf.float64))
        for total, squares, gradient in zip(self.window_sums[2 * which], self.window_sums[2 * which + 1], kernels):
            values = tf.cast(gradient, tf.float64)
            total.assign_add(values)
            squares.assign_add(tf.square(values))

    def _train_epoch(self, images, labels, order, batch_size: int, in_first, in_last):
        """One epoch over `images[order]` in batches of `batch_size` (the last may be short).

        `in_first` / `in_last` (bool tensors): the epoch lies in the first / last gradient
        window, so per-weight sums of g and g^2 are accumulated for the temporal SNR.

        Returns (mean training loss, training accuracy, (L, 4) float64 gradient sums,
        per-step losses, per-step learning rates, (L,) sum of squared kernel weights at the epoch's end).
        """
        num_examples = tf.shape(order)[0]
        loss_sum = tf.constant(0.0, tf.float64)
        correct = tf.constant(0.0, tf.float64)
        sums = tf.zeros([len(LAYER_NAMES), 3], tf.float64)
        step_losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        step_rates = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        captured_steps = tf.constant(0.0, tf.float64)  # steps whose gradients entered the sums
        step = 0
        for start in tf.range(0, num_examples, batch_size):
            index = order[start:tf.minimum(start + batch_size, num_examples)]
            loss, step_correct, step_sums, kernels, rate, finite = self._step(tf.gather(images, index),
                                                                              tf.gather(labels, index))
            captured_steps += tf.cast(finite, tf.float64)
            if self.captured:
                if in_first:
                    self._accumulate_window(0, kernels, finite)
                if in_last:
                    self._accumulate_window(1, kernels, finite)
            loss_sum += tf.cast(loss, tf.float64) * tf.cast(tf.size(index), tf.float64)
            correct += step_correct
            sums += step_sums
            step_losses = step_losses.write(step, tf.cast(loss, tf.float32))
            step_rates = step_rates.write(step, rate)
            step += 1
        seen = tf.cast(num_examples, tf.float64)
        counts = captured_steps * tf.constant(self.kernel_sizes, tf.float64)  # values summed per layer
        weight_sq = tf.stack([tf.reduce_sum(tf.square(tf.cast(kernel, tf.float64))) for kernel in self.kernels])
        return (loss_sum / seen, correct / seen, tf.concat([counts[:, None], sums], 1), step_losses.stack(),
                step_rates.stack(), weight_sq)

    def window_snr(self, which: int) -> np.ndarray:
        """(L,) mean over each kernel's weights of |mean_t g| / std_t g over the window's captured steps.

        Population std over steps (not counting those the loss scaling skipped); weights whose
        gradient did not vary (std 0) are left out of the mean. Resets the window's sums. NaN
        for layers not captured.
        """
        result = np.full(len(LAYER_NAMES), np.nan)
        steps = max(float(self.window_steps[which].numpy()), 1.0)
        self.window_steps[which].assign(0.0)
        for layer, total, squares in zip(self.captured, self.window_sums[2 * which], self.window_sums[2 * which + 1]):
            with np.errstate(invalid="ignore", over="ignore"):  # a diverged window's sums are not finite
                mean = total.numpy() / steps
                std = np.sqrt(np.maximum(squares.numpy() / steps - mean**2, 0.0))
            varying = std > 0
            if varying.any():
                result[layer] = float(np.mean(np.abs(mean[varying]) / std[varying]))
            total.assign(tf.zeros_like(total))
            squares.assign(tf.zeros_like(squares))
        return result

    # -------------------------------------------------------------- evaluation
    def _evaluate(self, images, labels):
        """Mean loss, accuracy and predicted classes of the model in inference mode."""
        num_examples = tf.shape(labels)[0]
        loss_sum = tf.constant(0.0, tf.float64)
        correct = tf.constant(0.0, tf.float64)
        predictions = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False)
        batch = 0
        for start in tf.range(0, num_examples, self.eval_batch_size):
            stop = tf.minimum(start + self.eval_batch_size, num_examples)
            logits = self.model(images[start:stop], training=False)
            batch_labels = labels[start:stop]
            losses = keras.losses.sparse_categorical_crossentropy(batch_labels, logits, from_logits=True)
            predicted = tf.argmax(logits, -1, output_type=tf.int32)
            loss_sum += tf.reduce_sum(tf.cast(losses, tf.float64))
            correct += tf.reduce_sum(tf.cast(tf.equal(predicted, batch_labels), tf.float64))
            predictions = predictions.write(batch, predicted)
            batch += 1
        seen = tf.cast(num_examples, tf.float64)
        return loss_sum / seen, correct / seen, predictions.concat()

    def evaluate_arrays(self, arrays) -> tuple[float, float, np.ndarray]:
        loss, accuracy, predictions = self.evaluate(tf.convert_to_tensor(arrays[0]),
                                                    tf.convert_to_tensor(arrays[1], tf.int32))
        return float(loss), float(accuracy), predictions.numpy()

    def current_learning_rate(self) -> float:
        rate = self._inner_optimizer.learning_rate
        return float(rate.numpy() if hasattr(rate, "numpy") else rate)
