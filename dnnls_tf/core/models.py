"""The study's CNN, and the model a run spec describes (transfer surgery included)."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from dnnls_tf.core.layout import FEATURE_OUTPUT, cnn_layout
from dnnls_tf.core.sources import IMAGE_SHAPE, NUM_CLASSES
from dnnls_tf.core.spec import RunSpec

# Per-channel mean and standard deviation of the CIFAR-10 training images (0..1 scale).
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465])
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616])


def build_cnn(batch_norm: bool = False, dropout: float = 0.0, filters=(16, 32, 64),
              fc_units: int = 128, seed: int = 0, dtype: str | None = None,
              bn_momentum: float = 0.99) -> keras.Model:
    """The study's CNN: 3 x (conv 3x3, [BN], ReLU, max-pool 2) -> fc1 [BN] ReLU -> fc2.

    Args:
        batch_norm: batch normalisation after every hidden layer (conv1..fc1).
        dropout: dropout rate on the inputs of fc1 and of fc2.
        filters: output channels of conv1..conv3.
        fc_units: width of fc1.
        seed: seed of the weight initialisers (the dropout masks follow the global seed).
        dtype: a Keras dtype policy such as "mixed_float16" (None: float32).
        bn_momentum: momentum of BN's moving statistics (Keras' default 0.99 keeps about half of the
            initial mean 0 / variance 1 after 64 steps, so an epoch-1 evaluation of a short epoch
            normalises with statistics that are mostly not the data's; 0.9 keeps 0.1 %).

    Returns:
        An uncompiled model taking uint8-valued images (N, 32, 32, 3) and
        returning 10 float32 logits.
    """
    layout = cnn_layout(filters, batch_norm)
    init_seeds = iter(range(seed * 10, seed * 10 + 10))

    def kernel_init():
        return keras.initializers.HeUniform(seed=next(init_seeds))

    extra = {"dtype": dtype} if dtype else {}
    inputs = keras.Input(IMAGE_SHAPE, name="image")
    # Normalise on the device: (x / 255 - mean) / std as one affine map. Scale and offset
    # are given per pixel (32, 32, 3), not per channel (3,): the same values, so the same
    # results bit for bit, but TensorFlow's CPU kernels broadcast a (3,) vector over an
    # image 6-7x slower (0.8 vs 0.12 ms per batch of 64), about 4 % of a training step.
    scale, offset = (np.broadcast_to(v, IMAGE_SHAPE).copy()
                     for v in (1.0 / (255.0 * CIFAR_STD), -CIFAR_MEAN / CIFAR_STD))
    x = keras.layers.Rescaling(scale, offset, name="normalize", **extra)(inputs)
    norms = iter(layout.conv_norms)
    for index, (width, conv) in enumerate(zip(filters, layout.conv), start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm,
                                kernel_initializer=kernel_init(), name=conv, **extra)(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=bn_momentum, name=next(norms), **extra)(x)
        x = keras.layers.ReLU(name=f"relu{index}", **extra)(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{index}", **extra)(x)
    x = keras.layers.Flatten(name=FEATURE_OUTPUT, **extra)(x)
    hidden, logits = layout.head
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout1", **extra)(x)
    x = keras.layers.Dense(fc_units, use_bias=not batch_norm, kernel_initializer=kernel_init(), name=hidden, **extra)(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=layout.head_norm, **extra)(x)
    x = keras.layers.ReLU(name=f"relu{layout.conv_blocks + 1}", **extra)(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout2", **extra)(x)
    x = keras.layers.Dense(NUM_CLASSES, kernel_initializer=keras.initializers.GlorotUniform(seed=next(init_seeds)),
                           name=logits, **extra)(x)
    outputs = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="cnn_bn" if batch_norm else "cnn")


def captured_layers(model: keras.Model) -> list:
    """The layers whose gradients are captured: every layer with a kernel, in the model's order
    (conv1..conv3, fc1, fc2 for the study's CNN: layer numbers 1..L)."""
    return [layer for layer in model.layers if getattr(layer, "kernel", None) is not None]


def layer_names(model: keras.Model) -> tuple[str, ...]:
    """Names of `captured_layers(model)`, in order."""
    return tuple(layer.name for layer in captured_layers(model))


def parameters(model: keras.Model) -> list[tuple[str, object]]:
    """("layer/variable", variable) of every parameter, in the model's order: what training
    updates when no layer is frozen (kernels, biases, BN's gamma and beta; not BN's moving
    statistics nor dropout's seed state). Frozen layers' parameters are listed too (Keras
    marks them untrainable), so a model's list is the same whether or not it is frozen."""
    result = []
    for layer in model.layers:
        if not layer.weights:
            continue
        frozen = not layer.trainable
        layer.trainable = True  # Keras lists a frozen layer's would-be-trainable variables only while trainable
        try:
            result += [(f"{layer.name}/{variable.name}", variable) for variable in layer.trainable_weights]
        finally:
            layer.trainable = not frozen
    return result


def reinitialize_head(model: keras.Model, names, seed: int) -> None:
    """Give the head's layers `names` (fc1, fc2) fresh weights from new initialisers seeded with
    `seed`: He-uniform for the hidden layer, Glorot-uniform for the logits, as `build_cnn` does."""
    for offset, name in enumerate(names):
        layer = model.get_layer(name)
        initializer = (keras.initializers.HeUniform if offset < len(names) - 1 else keras.initializers.GlorotUniform)(
            seed=10_000 + seed * 10 + offset)
        layer.kernel.assign(initializer(layer.kernel.shape))
        if layer.bias is not None:
            layer.bias.assign(np.zeros(layer.bias.shape, dtype="float32"))


def build_model(spec: RunSpec, source_weights: Path | None = None) -> keras.Model:
    """The run's CNN, seeded by the spec; frozen layers fixed and the head re-initialised.

    A transfer run (`init_from`) loads its source's weights first; a frozen-random run
    keeps its own seeded conv layers. In both, the layers in `spec.frozen` are made
    untrainable (a frozen BN layer then runs in inference mode) and fc1/fc2 get fresh
    weights seeded by the spec, so the two kinds start from the same head.
    """
    model = build_cnn(batch_norm=spec.batch_norm, dropout=spec.dropout, filters=spec.filters,
                      fc_units=spec.fc_units, seed=spec.seed, bn_momentum=spec.bn_momentum,
                      dtype="mixed_float16" if spec.mixed_precision else None)
    if spec.init_from:
        if source_weights is None:
            raise ValueError(f"a transfer run needs the weights of run {spec.init_from}")
        model.load_weights(source_weights)
    if spec.frozen:
        for name in spec.frozen:
            model.get_layer(name).trainable = False
        reinitialize_head(model, spec.layout.head, spec.seed)
    return model


def count_parameters(model: keras.Model) -> dict:
    """Trainable and total parameter counts and the float32 weight memory in bytes."""
    total = int(sum(np.prod(w.shape) for w in model.weights))
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"params": total, "trainable_params": trainable, "weight_bytes": 4 * total}


def training_flops_per_image(model: keras.Model) -> int:
    """Multiply-adds x 2 of the conv and dense layers, x 3 for forward + backward."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, channels_out = layer.output.shape[1:]
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            flops += 2 * height * width * channels_out * kernel_h * kernel_w * channels_in
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * int(np.prod(layer.kernel.shape))
    return 3 * int(flops)
