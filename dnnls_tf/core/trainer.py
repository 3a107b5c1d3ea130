"""The compiled training loop, its gradient capture, and data placed on the device.

One `tf.function` call trains a whole epoch: a `tf.while_loop` over the steps
gathers each batch from the device-resident tensors by the epoch's shuffled order
(`epoch_order`), runs a GradientTape update, and keeps on the device, until the
epoch ends: each step's loss and learning rate and the gradient sums of
`GradientCapture` (float64). One host transfer per epoch, none per step. Evaluation is
one compiled pass over images (or frozen layers' features) in batches of
`eval_batch_size`.

Fit for a GPU (checked on the CPU through TensorFlow's kernel registry, tests/test_gpu_path.py):
TensorFlow 2.21 has no GPU kernel of GatherV2 for uint8, so `gather_rows` gathers the
images' bytes as int32 words (a bitcast, no copy, the same bytes) and the order is
int64 (int32 slices live in host memory on a GPU). `place` puts a run's arrays on the
compute device once; the functions take them as arguments.

Reuse: a `Trainer` serves every run of one kind and shape in a process
(`training.compiled_for`): `start_run` resets the optimizer's variables (slots,
iteration, loss scale) and the window sums, so its functions are traced (and
XLA-compiled) once per kind, not per run.

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

from dnnls_tf.core.models import captured_layers, parameters  # noqa: E402

PARAM_COLUMNS = ("sum", "sum_sq", "sum_abs", "cosine_sum", "cosine_steps")  # per parameter and step


def compute_device() -> str:
    """Where a run's data and computation live: the first GPU if there is one, else the CPU."""
    return "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"


def place(array, dtype=None):
    """`array` as a tensor on the compute device (one host-to-device copy; pass the result on)."""
    with tf.device(compute_device()):
        return tf.identity(tf.convert_to_tensor(array, dtype))


def epoch_order(num_examples: int, seed: int, epoch: int):
    """The epoch's shuffled order of example indices: an int64 permutation on the compute device.

    Depends only on (seed, epoch), not on TensorFlow's global seed. TensorFlow's
    StatelessShuffle has only a CPU kernel: the order is drawn on the host and copied
    once per epoch (8 bytes per image). int64, not int32: on a GPU, TensorFlow keeps
    int32 slices in host memory, which would copy each step's indices to the device.
    """
    with tf.device("/CPU:0"):
        order = tf.random.experimental.stateless_shuffle(tf.range(num_examples, dtype=tf.int32),
                                                         seed=tf.constant([seed, epoch], tf.int64))
    return place(order, tf.int64) if order.dtype == tf.int64 else place(tf.cast(order, tf.int64))


def gather_rows(data, index):
    """`data[index]` along the first axis, with a GPU kernel for every dtype the study uses.

    TensorFlow has no GPU GatherV2 for 1-byte types (uint8 images): their rows are gathered
    as int32 words instead (bitcasts share the buffer: no copy, the same bytes, so the same
    batch bit for bit). Other dtypes (float features, int32 labels) gather directly.
    """
    row_shape = data.shape[1:]
    row_bytes = int(np.prod(row_shape)) * data.dtype.size
    if data.dtype.size != 1 or row_bytes % 4:
        return tf.gather(data, index)
    words = tf.bitcast(tf.reshape(data, [-1, row_bytes // 4, 4]), tf.int32)
    return tf.reshape(tf.bitcast(tf.gather(words, index), data.dtype), [-1, *row_shape])


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
    """One step's float32 sum, sum of squares and sum of |g| of a parameter's gradient.

    Accumulated over steps in float64 by the caller. Without XLA the sum of squares is
    the square of TensorFlow's fused Euclidean-norm reduction (one pass over g, where
    sum(g * g) first writes g * g); XLA has no EuclideanNorm kernel but fuses g * g itself.
    """
    values = tf.reshape(tf.cast(gradient, tf.float32), [-1])
    squares = tf.reduce_sum(tf.square(values)) if xla else tf.square(tf.math.reduce_euclidean_norm(values))
    return [tf.reduce_sum(values), squares, tf.reduce_sum(tf.abs(values))]


class GradientCapture:
    """Which gradients a training step sums, and how: shared by the trainer and the benchmark.

    Layers (L): `captured_layers(network)`, the layers with kernels in order (layer numbers
    1..L). Parameters (P): `parameters(network)`, e.g. conv1/kernel, conv1/bias, bn1/gamma.
    A parameter is captured when it is among the trained `variables` (a frozen layer's are
    not: their count stays 0) and capture is on.
    """

    def __init__(self, network: keras.Model, variables: list, enabled: bool = True, xla: bool = False):
        self.xla = xla
        position = {id(v): i for i, v in enumerate(variables)}
        named = parameters(network)
        self.param_names = tuple(name for name, _ in named)
        self.param_variables = [variable for _, variable in named]
        param_of = {id(variable): p for p, variable in enumerate(self.param_variables)}
        layers = captured_layers(network)
        self.layer_names = tuple(layer.name for layer in layers)
        self.kernels = [layer.kernel for layer in layers]
        self.kernel_param = [param_of[id(kernel)] for kernel in self.kernels]  # each layer's kernel among the params
        # Index of each parameter among the trained variables (None: frozen, or capture off).
        self.variable_index = [position.get(id(v)) if enabled else None for v in self.param_variables]
        self.captured_params = [p for p, index in enumerate(self.variable_index) if index is not None]
        self.captured = [layer for layer, p in enumerate(self.kernel_param) if self.variable_index[p] is not None]
        self.param_sizes = [float(np.prod(v.shape)) if p in self.captured_params else 0.0
                            for p, v in enumerate(self.param_variables)]
        self.kernel_sizes = [self.param_sizes[p] for p in self.kernel_param]

    def captured_gradients(self, gradients: list, scale=None, finite=None) -> list:
        """dL/dw of each captured parameter (float32) from the step's gradients of the trained
        variables: divided by the loss scale when there is one, zero where the step is skipped."""
        result = []
        for p in self.captured_params:
            gradient = gradients[self.variable_index[p]]
            if scale is not None:  # capture dL/dw, not the scaled gradient
                gradient = tf.cast(gradient, tf.float32) / tf.cast(scale, tf.float32)
            if finite is not None:
                gradient = tf.where(finite, gradient, tf.zeros_like(gradient))
            result.append(gradient)
        return result

    def step_sums(self, gradients: list) -> tf.Tensor:
        """(P, 5) float64 of one step, per parameter: sum, sum of squares and sum of |g|, then
        cos(g, w) and 1, or 0 and 0 where the cosine is undefined (g or w exactly zero).

        `gradients` are `captured_gradients` (one per captured parameter); w is the value
        the step's gradient was taken at, so call this before the update is applied.
        """
        if not self.captured_params:
            return tf.zeros([len(self.param_names), len(PARAM_COLUMNS)], tf.float64)
        rows = []
        for p, gradient in zip(self.captured_params, gradients):
            total, squares, absolute = kernel_sums(gradient, self.xla)
            values = tf.reshape(tf.cast(gradient, tf.float32), [-1])
            weights = tf.reshape(tf.cast(self.param_variables[p], tf.float32), [-1])
            norms = tf.sqrt(squares) * tf.sqrt(tf.reduce_sum(tf.square(weights)))
            defined = norms > 0
            cosine = tf.where(defined, tf.reduce_sum(values * weights) / tf.where(defined, norms, 1.0), 0.0)
            rows.append(tf.stack([total, squares, absolute, cosine, tf.cast(defined, tf.float32)]))
        sums = tf.cast(tf.stack(rows), tf.float64)
        if len(self.captured_params) == len(self.param_names):
            return sums
        return tf.scatter_nd([[p] for p in self.captured_params], sums, [len(self.param_names), len(PARAM_COLUMNS)])

    def kernel_rows(self, param_sums) -> tf.Tensor:
        """(L, k) rows of each layer's kernel from (P, k) per-parameter sums."""
        return tf.gather(param_sums, self.kernel_param)

    def kernel_gradients(self, gradients: list) -> list:
        """The captured layers' kernel gradients among `captured_gradients`, in layer order."""
        position = {p: i for i, p in enumerate(self.captured_params)}
        return [gradients[position[self.kernel_param[layer]]] for layer in self.captured]

    def param_weight_sq(self) -> tf.Tensor:
        """(P,) float64 sum of squared elements of every parameter now (frozen ones too)."""
        return tf.stack([tf.reduce_sum(tf.square(tf.cast(v, tf.float64))) for v in self.param_variables])


class Trainer:
    """Compiled epoch and evaluation functions for one model and optimizer.

    `model` maps the inputs to logits; `network` (default: the model) is the whole CNN
    whose layers and parameters are captured. They differ when frozen conv layers are
    computed once (`frozen_features`): the model is then the head on their features.
    `input_shape`/`input_dtype`: one example of what the functions take (default: the
    model's input, uint8 images). Every function takes any number of examples: one trace.
    """

    def __init__(self, model: keras.Model, optimizer, capture: bool = True, jit_compile: bool = False,
                 eval_batch_size: int = 1024, network: keras.Model | None = None, input_dtype=None,
                 batch_size: int = 64):
        self.model, self.optimizer, self.jit_compile = model, optimizer, jit_compile
        self.network = network or model
        self.variables = list(model.trainable_variables)
        self.optimizer.build(self.variables)
        self._initial_optimizer_state = [v.numpy() for v in self.optimizer.variables]
        self.capture = GradientCapture(self.network, self.variables, capture, jit_compile)
        self.layer_names, self.param_names = self.capture.layer_names, self.capture.param_names
        # Per-weight sums of g and g^2 over the steps of the first (0) and last (1) window.
        self.window_sums = [[tf.Variable(tf.zeros(self.capture.kernels[layer].shape, tf.float64), trainable=False)
                             for layer in self.capture.captured] for _ in range(4)]
        self.window_steps = [tf.Variable(0.0, dtype=tf.float64, trainable=False) for _ in range(2)]
        self.loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._inner_optimizer = optimizer.inner_optimizer if self.loss_scaling else optimizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        # int64 labels: on a GPU TensorFlow keeps int32 slices and comparisons in host memory
        example = [tf.TensorSpec([None, *model.inputs[0].shape[1:]], input_dtype or tf.uint8),
                   tf.TensorSpec([None], tf.int64)]
        self._step = tf.function(self._train_step, jit_compile=jit_compile)
        self.train_epoch = tf.function(self._train_epoch, input_signature=[
            *example, tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.bool), tf.TensorSpec([], tf.bool)])
        self.train_batch = tf.function(self._train_batch, input_signature=[*example, tf.TensorSpec([None], tf.int64)])
        self.evaluate = tf.function(self._evaluate, input_signature=example)

    def start_run(self, learning_rate=None) -> None:
        """Make the trainer as a fresh one for the next run: the optimizer's variables (slots,
        iteration, loss scale) as they were when built, a constant `learning_rate` (a schedule
        is part of the trainer's kind), no window sums. The model's weights are the caller's."""
        for variable, value in zip(self.optimizer.variables, self._initial_optimizer_state):
            variable.assign(value)
        if learning_rate is not None:
            self._inner_optimizer.learning_rate = learning_rate
        for variable in (*self.window_steps, *(v for sums in self.window_sums for v in sums)):
            variable.assign(tf.zeros_like(variable))

    def traces(self) -> int:
        """How many times this trainer's functions were traced (each XLA-compiled function too)."""
        return sum(f.experimental_get_tracing_count() for f in (self._step, self.train_epoch, self.train_batch,
                                                                  self.evaluate))

    # ---------------------------------------------------------------- training
    def _train_step(self, images, labels):
        if self.jit_compile:  # inside the XLA cluster int32 stays on the device; XLA compiles what it did before
            labels = tf.cast(labels, tf.int32)
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            scaled_loss = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
        gradients = tape.gradient(scaled_loss, self.variables)
        rate = tf.cast(self._inner_optimizer.learning_rate, tf.float32)  # the rate this step applies
        # dL/dw before apply_gradients changes the loss scale (it doubles after 2000 finite steps);
        # a step whose scaled float16 gradients overflowed is skipped by the optimizer and not captured.
        finite = tf.constant(True)
        if self.loss_scaling:
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None])
        captured = self.capture.captured_gradients(gradients, self.optimizer.dynamic_scale if self.loss_scaling
                                                   else None, finite if self.loss_scaling else None)
        sums = self.capture.step_sums(captured)  # reads w before the update: cos(g, w) at the step's weights
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels), tf.float64))
        return loss, correct, sums, self.capture.kernel_gradients(captured), rate, finite

    def _train_batch(self, images, labels, index):
        """One step on `images[index]` (the LR range test): its loss."""
        return self._step(gather_rows(images, index), tf.gather(labels, index))[0]

    def _accumulate_window(self, which: int, kernels, finite) -> None:
        self.window_steps[which].assign_add(tf.cast(finite, tf.float64))
        for total, squares, gradient in zip(self.window_sums[2 * which], self.window_sums[2 * which + 1], kernels):
            values = tf.cast(gradient, tf.float64)
            total.assign_add(values)
            squares.assign_add(tf.square(values))

    def _train_epoch(self, images, labels, order, in_first, in_last):
        """One epoch over `images[order]` in batches of `batch_size` (the last may be short).

        `in_first` / `in_last` (bool tensors): the epoch lies in the first / last gradient
        window, so per-weight sums of g and g^2 are accumulated for the temporal SNR.

        Returns a dict: loss (mean training loss), accuracy, gradients ((L, 4) float64 count,
        sum, sum of squares, sum of |g| of each kernel), step_losses, step_rates, weight_sq
        ((L,) squared kernel weights at the epoch's end), params ((P, 6): count, then
        PARAM_COLUMNS summed over the steps) and param_weight_sq ((P,) at the epoch's end).
        """
        capture = self.capture
        num_examples = tf.shape(order)[0]
        loss_sum = tf.constant(0.0, tf.float64)
        correct = tf.constant(0.0, tf.float64)
        sums = tf.zeros([len(capture.param_names), len(PARAM_COLUMNS)], tf.float64)
        step_losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        step_rates = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        captured_steps = tf.constant(0.0, tf.float64)  # steps whose gradients entered the sums
        step = 0
        for start in tf.range(0, num_examples, self.batch_size):
            index = order[start:tf.minimum(start + self.batch_size, num_examples)]
            loss, step_correct, step_sums, kernels, rate, finite = self._step(gather_rows(images, index),
                                                                              tf.gather(labels, index))
            captured_steps += tf.cast(finite, tf.float64)
            if capture.captured:
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
        # x * (1 / n), not x / n: what TensorFlow's graph optimizer made of x / n when n was a
        # traced constant (the loop before any number of examples shared one trace), to the bit.
        per_example = tf.math.reciprocal(tf.cast(num_examples, tf.float64))
        param_counts = captured_steps * tf.constant(capture.param_sizes, tf.float64)  # values summed per parameter
        params = tf.concat([param_counts[:, None], sums], 1)
        param_weight_sq = capture.param_weight_sq()
        return {"loss": loss_sum * per_example, "accuracy": correct * per_example, "gradients": capture.kernel_rows(params[:, :4]),
                "step_losses": step_losses.stack(), "step_rates": step_rates.stack(),
                "weight_sq": capture.kernel_rows(param_weight_sq), "params": params,
                "param_weight_sq": param_weight_sq}

    def window_snr(self, which: int) -> np.ndarray:
        """(L,) mean over each kernel's weights of |mean_t g| / std_t g over the window's captured steps.

        Population std over steps (not counting those the loss scaling skipped); weights whose
        gradient did not vary (std 0) are left out of the mean. Resets the window's sums. NaN
        for layers not captured.
        """
        result = np.full(len(self.layer_names), np.nan)
        steps = max(float(self.window_steps[which].numpy()), 1.0)
        self.window_steps[which].assign(0.0)
        for layer, total, squares in zip(self.capture.captured, self.window_sums[2 * which],
                                         self.window_sums[2 * which + 1]):
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
        predictions = tf.TensorArray(tf.int64, size=0, dynamic_size=True, infer_shape=False)
        batch = 0
        for start in tf.range(0, num_examples, self.eval_batch_size):
            stop = tf.minimum(start + self.eval_batch_size, num_examples)
            logits = self.model(images[start:stop], training=False)
            batch_labels = labels[start:stop]
            losses = keras.losses.sparse_categorical_crossentropy(batch_labels, logits, from_logits=True)
            predicted = tf.argmax(logits, -1, output_type=tf.int64)
            loss_sum += tf.reduce_sum(tf.cast(losses, tf.float64))
            correct += tf.reduce_sum(tf.cast(tf.equal(predicted, batch_labels), tf.float64))
            predictions = predictions.write(batch, predicted)
            batch += 1
        seen = tf.cast(num_examples, tf.float64)
        return loss_sum / seen, correct / seen, tf.cast(predictions.concat(), tf.int32)

    def evaluate_arrays(self, arrays) -> tuple[float, float, np.ndarray]:
        """Loss, accuracy and predictions on (images, labels): placed tensors, or arrays (copied per call)."""
        labels = arrays[1] if isinstance(arrays[1], tf.Tensor) and arrays[1].dtype == tf.int64 else \
            tf.convert_to_tensor(np.asarray(arrays[1]), tf.int64)
        loss, accuracy, predictions = self.evaluate(tf.convert_to_tensor(arrays[0]), labels)
        return float(loss), float(accuracy), predictions.numpy()

    def current_learning_rate(self) -> float:
        rate = self._inner_optimizer.learning_rate
        return float(rate.numpy() if hasattr(rate, "numpy") else rate)
