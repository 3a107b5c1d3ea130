import numpy as np

from dnnls_tf.models import (LAYER_NAMES, build_cnn, count_parameters, freeze_conv_layers,
                             reinitialize_fc_layers, training_flops_per_image)


def test_layers_shapes_and_logits():
    model = build_cnn()
    assert [layer.name for layer in model.layers if layer.name in LAYER_NAMES] == list(LAYER_NAMES)
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


def test_freeze_and_reinitialise():
    model = build_cnn(batch_norm=True)
    before = model.get_layer("fc1").kernel.numpy().copy()
    assert freeze_conv_layers(model) == ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"]
    assert not model.get_layer("conv2").trainable and model.get_layer("fc1").trainable
    reinitialize_fc_layers(model, seed=0)
    after = model.get_layer("fc1").kernel.numpy()
    assert not np.array_equal(before, after)
    reinitialize_fc_layers(model, seed=0)
    np.testing.assert_array_equal(after, model.get_layer("fc1").kernel.numpy())
