"""Transfer runs: frozen conv layers stay bit-identical, the head is fresh and retrained."""
import collections

import h5py
import numpy as np

from dnnls_tf.core import runtime
from dnnls_tf.core.models import build_model
from dnnls_tf.study.runner import execute
from dnnls_tf.study.study import HALVES, SWAPPED

# Keras names a layer's group in the .weights.h5 file by its class, in build order:
# conv2d, conv2d_1, conv2d_2 = conv1..conv3; dense, dense_1 = fc1, fc2;
# batch_normalization .. batch_normalization_3 = bn1..bn4.
CONV_GROUPS = ("layers/conv2d/", "layers/conv2d_1/", "layers/conv2d_2/")
FC_GROUPS = {"layers/dense/": "fc1", "layers/dense_1/": "fc2"}
FROZEN_BN_GROUPS = tuple(f"layers/batch_normalization{suffix}/" for suffix in ("", "_1", "_2"))


def _h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def _train(study, spec):
    execute(spec, study, runtime.start(study.config.compute))
    return study.store.get(spec.run_id)


def test_transfer_keeps_convs_bit_identical_and_retrains_a_fresh_head(tiny_study):
    source = _train(tiny_study, tiny_study.spec(0, 0.05, dropout=0.2, splits=HALVES))
    spec = tiny_study.spec(0, 0.05, dropout=0.2, splits=SWAPPED, init_from=source.run_id)
    transfer = _train(tiny_study, spec)
    assert transfer.config["init_from"] == source.run_id and transfer.spec.kind == "transfer"
    assert transfer.config["frozen"] == ["conv1", "conv2", "conv3"]
    before = _h5_arrays(tiny_study.store.weights_path(source.run_id))
    after = _h5_arrays(tiny_study.store.weights_path(transfer.run_id))
    conv_keys = [key for key in before if key.startswith(CONV_GROUPS)]
    fc_keys = [key for key in before if key.startswith(tuple(FC_GROUPS)) and key.endswith("vars/0")]
    assert len(conv_keys) == 6 and len(fc_keys) == 2
    for key in conv_keys:
        np.testing.assert_array_equal(before[key], after[key])
    fresh = build_model(spec, tiny_study.store.weights_path(source.run_id))  # the head before training
    for key in fc_keys:
        layer = FC_GROUPS[key[: key.index("vars")]]
        assert not np.array_equal(before[key], after[key])
        assert not np.array_equal(fresh.get_layer(layer).kernel.numpy(), after[key])
    assert transfer.gradients["count"][:, :3].sum() == 0  # frozen layers get no gradient


def test_batch_norm_statistics_of_frozen_blocks_are_untouched(tiny_study):
    source = _train(tiny_study, tiny_study.spec(0, 0.05, batch_norm=True, splits=HALVES))
    transfer = _train(tiny_study, tiny_study.spec(0, 0.05, batch_norm=True, splits=SWAPPED, init_from=source.run_id))
    before = _h5_arrays(tiny_study.store.weights_path(source.run_id))
    after = _h5_arrays(tiny_study.store.weights_path(transfer.run_id))
    bn_keys = [key for key in before if key.startswith(FROZEN_BN_GROUPS)]
    assert len(bn_keys) == 12  # gamma, beta, moving mean, moving variance for three blocks
    for key in bn_keys:
        np.testing.assert_array_equal(before[key], after[key])


def test_a_frozen_random_control_starts_from_the_same_head_as_transfer(tiny_study):
    source = _train(tiny_study, tiny_study.spec(1, 0.05, splits=HALVES))
    transfer = build_model(tiny_study.spec(1, 0.05, splits=SWAPPED, init_from=source.run_id),
                           tiny_study.store.weights_path(source.run_id))
    control = build_model(tiny_study.spec(1, 0.05, splits=SWAPPED, frozen=True))
    for name in ("fc1", "fc2"):
        np.testing.assert_array_equal(transfer.get_layer(name).kernel.numpy(), control.get_layer(name).kernel.numpy())
    assert not np.array_equal(transfer.get_layer("conv1").kernel.numpy(), control.get_layer("conv1").kernel.numpy())


def test_frozen_conv_features_computed_once_give_the_same_run_as_the_whole_model(tiny_study, monkeypatch):
    from dnnls_tf.core import training

    source = _train(tiny_study, tiny_study.spec(0, 0.05, dropout=0.2, batch_norm=True, splits=HALVES))
    for spec in (tiny_study.spec(0, 0.05, dropout=0.2, batch_norm=True, splits=SWAPPED, init_from=source.run_id),
                 tiny_study.spec(1, 0.05, dropout=0.2, splits=SWAPPED, frozen=True)):
        weights = tiny_study.store.weights_path(source.run_id) if spec.init_from else None
        fast = training.train_run(spec, tiny_study.splits, weights)
        with monkeypatch.context() as patch:
            patch.setattr(training, "frozen_features", lambda model, spec: (model, lambda arrays: arrays))
            patch.setattr(training, "_COMPILED", collections.OrderedDict())  # else `fast`'s compiled kind is reused
            whole = training.train_run(spec, tiny_study.splits, weights)
            (compiled,) = training._COMPILED.values()
            assert compiled.forward is compiled.network  # trained the whole model, not the head on features
        assert fast.history.equals(whole.history) and fast.steps.equals(whole.steps)
        for key in ("count", "sum", "sum_sq", "sum_abs", "weight_sq", "temporal_snr"):
            np.testing.assert_array_equal(fast.gradients[key], whole.gradients[key])
        np.testing.assert_array_equal(fast.predictions["test_predictions"], whole.predictions["test_predictions"])
        for a, b in zip(fast.model.weights, whole.model.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
