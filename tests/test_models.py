import dataclasses

import numpy as np

from dnnls_tf.core.layout import cnn_layout
from dnnls_tf.core.models import (build_cnn, build_model, captured_layers, count_parameters, layer_names,
                                  parameters, training_flops_per_image)


def test_layers_shapes_and_logits():
    model = build_cnn()
    assert layer_names(model) == ("conv1", "conv2", "conv3", "fc1", "fc2")  # layer numbers 1..5
    assert model.output_shape == (None, 10)
    assert model.get_layer("conv3").output.shape[1:] == (8, 8, 64)
    logits = model(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert logits.shape == (2, 10) and logits.dtype == "float32"


def test_parameter_count_and_memory_are_pinned():
    # conv 3*3*3*16+16, 3*3*16*32+32, 3*3*32*64+64; fc1 1024*128+128; fc2 128*10+10
    expected = 448 + 4640 + 18496 + 131200 + 1290
    assert count_parameters(build_cnn()) == {"params": expected, "trainable_params": expected,
                                             "weight_bytes": 4 * expected}
    assert training_flops_per_image(build_cnn()) == 3 * 2 * (
        1024 * 16 * 27 + 256 * 32 * 144 + 64 * 64 * 288 + 1024 * 128 + 128 * 10)


def test_batch_norm_after_every_hidden_layer_and_dropout_before_fc():
    names = [layer.name for layer in build_cnn(batch_norm=True, dropout=0.3).layers]
    assert {"bn1", "bn2", "bn3", "bn4"} <= set(names)
    assert names.index("dropout1") < names.index("fc1") < names.index("dropout2") < names.index("fc2")
    assert "dropout1" not in [layer.name for layer in build_cnn().layers]


def test_seed_sets_the_initial_weights():
    first, again, other = build_cnn(seed=3), build_cnn(seed=3), build_cnn(seed=4)
    np.testing.assert_array_equal(first.get_layer("conv1").kernel.numpy(), again.get_layer("conv1").kernel.numpy())
    assert not np.array_equal(first.get_layer("conv1").kernel.numpy(), other.get_layer("conv1").kernel.numpy())


def test_a_frozen_spec_freezes_conv_and_bn_and_reinitialises_the_head(tiny_study):
    spec = tiny_study.spec(0, 0.05, batch_norm=True, frozen=True)
    assert spec.frozen == ("conv1", "conv2", "conv3", "bn1", "bn2", "bn3") and spec.kind == "frozen_random"
    frozen, plain = build_model(spec), build_model(dataclasses.replace(spec, frozen=()))
    assert sorted(layer.name for layer in frozen.layers if layer.weights and not layer.trainable) == sorted(spec.frozen)
    np.testing.assert_array_equal(frozen.get_layer("conv2").kernel.numpy(), plain.get_layer("conv2").kernel.numpy())
    assert not np.array_equal(frozen.get_layer("fc1").kernel.numpy(), plain.get_layer("fc1").kernel.numpy())
    np.testing.assert_array_equal(frozen.get_layer("fc1").kernel.numpy(), build_model(spec).get_layer("fc1").kernel.numpy())


def test_captured_layers_and_parameters_come_from_the_built_model_and_agree_with_its_layout():
    for filters, batch_norm in (((16, 32, 64), False), ((4, 8), True), ((4, 8, 8, 8), False)):
        model = build_cnn(filters=filters, batch_norm=batch_norm)
        layout = cnn_layout(filters, batch_norm)
        assert layer_names(model) == layout.kernel_layers
        assert [layer.kernel for layer in captured_layers(model)] == [model.get_layer(n).kernel for n in layout.kernel_layers]
        assert {n for n in layout.features} <= {layer.name for layer in model.layers}
    names = [name for name, _ in parameters(build_cnn(batch_norm=True))]
    assert names == ["conv1/kernel", "bn1/gamma", "bn1/beta", "conv2/kernel", "bn2/gamma", "bn2/beta", "conv3/kernel",
                     "bn3/gamma", "bn3/beta", "fc1/kernel", "bn4/gamma", "bn4/beta", "fc2/kernel", "fc2/bias"]
    assert [name for name, _ in parameters(build_cnn())] == [f"{layer}/{kind}" for layer in layer_names(build_cnn())
                                                            for kind in ("kernel", "bias")]


def test_a_frozen_models_parameters_are_listed_and_it_stays_frozen(tiny_study):
    spec = tiny_study.spec(0, 0.05, batch_norm=True, frozen=True)
    model = build_model(spec)
    trainable_before = [variable.path for variable in model.trainable_variables]
    listed = [name for name, _ in parameters(model)]
    assert listed == [name for name, _ in parameters(build_model(dataclasses.replace(spec, frozen=())))]
    assert "conv1/kernel" in listed and "bn1/gamma" in listed
    assert [variable.path for variable in model.trainable_variables] == trainable_before
    assert not model.get_layer("conv1").trainable and not model.get_layer("bn2").trainable
