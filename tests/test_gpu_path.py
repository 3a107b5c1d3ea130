"""The training step is fit for a GPU, checked on the CPU through TensorFlow's kernel registry.

The compiled epoch, evaluation, range-test step and frozen-feature encoder are built as
the full profile builds them (XLA, mixed precision, its batch sizes and model). Every op
that runs outside the XLA cluster must have a GPU kernel for its dtypes, and the data
arguments of those kernels must live in device memory (only scalars and shape vectors
may sit in host memory); nothing calls back into Python. The run's arrays are placed on
the device once, and every epoch gets the same tensors.
"""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import kernels as kernel_registry

from conftest import tiny_config
from dnnls_tf.core import trainer as trainer_lib
from dnnls_tf.core import training
from dnnls_tf.core.models import build_cnn, build_model
from dnnls_tf.experiments import load_config
from dnnls_tf.study.study import Study

HOST_CALLBACKS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "_Send", "_Recv", "_HostSend", "_HostRecv"}
SMALL = 8  # elements: a host-memory argument may be a scalar or a shape / begin / end vector, never data
# Ops the runtime executes itself, whatever the device (function arguments and results).
RUNTIME_OPS = {"_Arg", "_Retval", "Placeholder", "NoOp"}


def _gpu_kernels(op_type):
    """GPU kernels, and DEFAULT ones (TensorFlow registers int32 and control-flow kernels for any device)."""
    return [kernel for kernel in kernel_registry.get_registered_kernels_for_op(op_type).kernel
            if kernel.device_type in ("GPU", "DEFAULT")]


def _attr_types(op, name):
    value = op.node_def.attr[name]
    return list(value.list.type) if value.HasField("list") else [value.type]


def _gpu_kernel_for(op):
    """The GPU kernel registered for this op's type and dtypes, or None."""
    for kernel in _gpu_kernels(op.type):
        if all(name in op.node_def.attr and set(_attr_types(op, name)) <= set(constraint.allowed_values.list.type)
               for constraint in kernel.constraint for name in [constraint.name]):
            return kernel
    return None


def _is_xla(op) -> bool:
    return op.node_def.attr["_XlaMustCompile"].b if "_XlaMustCompile" in op.node_def.attr else False


def _function_graphs(op):
    """The graphs of the functions an op calls (a call's body, a while loop's cond and body, ...)."""
    graphs = []
    for name, value in op.node_def.attr.items():
        names = [value.func.name] if value.HasField("func") else [f.name for f in value.list.func]
        for function_name in names:
            if function_name:
                graphs.append(op.graph._get_function(function_name).graph)
    return graphs


def _is_loop(op) -> bool:
    return op.type in ("While", "StatelessWhile")


def _argument_tensors(op, arg_name):
    """The op's input or output tensors of the op-def argument `arg_name`."""
    op_def = op.op_def
    for args, tensors in ((op_def.input_arg, list(op.inputs)), (op_def.output_arg, list(op.outputs))):
        position = 0
        for arg in args:
            if arg.number_attr:
                size = op.get_attr(arg.number_attr)
            elif arg.type_list_attr:
                size = len(op.get_attr(arg.type_list_attr))
            else:
                size = 1
            if arg.name == arg_name:
                return tensors[position:position + size]
            position += size
    return []


def gpu_problems(graph, where="", seen=None, in_loop=False) -> list[str]:
    """What would not run on the GPU in `graph` and the functions it calls, or would cross to the
    host at every step or batch (XLA-compiled functions excepted: XLA compiles their ops for the
    device itself).

    Every op needs a GPU kernel for its dtypes. Inside a loop (a step or an evaluation batch),
    a kernel's host-memory arguments may only be scalars or short shape vectors; outside, once
    per call, they may be more (the predictions' lengths, the function's outputs).
    """
    seen = set() if seen is None else seen
    problems = []
    for op in graph.get_operations():
        label = f"{where}{op.type} ({op.name})"
        if op.type in HOST_CALLBACKS:
            problems.append(f"{label}: calls back to the host")
        if _is_xla(op):
            continue
        for function_graph in _function_graphs(op):
            if id(function_graph) not in seen:
                seen.add(id(function_graph))
                problems += gpu_problems(function_graph, f"{where}{function_graph.name}/", seen,
                                         in_loop or _is_loop(op))
        if op.type in RUNTIME_OPS:
            continue
        kernel = _gpu_kernel_for(op)
        if kernel is None:
            types = {name: [tf.dtypes.as_dtype(t).name for t in _attr_types(op, name)]
                     for name, value in op.node_def.attr.items() if value.HasField("type") or value.list.type}
            problems.append(f"{label}: no GPU kernel for {types}")
            continue
        for arg_name in kernel.host_memory_arg if in_loop else ():
            for tensor in _argument_tensors(op, arg_name):
                shape = tensor.shape
                if shape.rank is None or shape.rank > 1 or (shape.rank == 1 and (shape[0] is None or shape[0] > SMALL)):
                    problems.append(f"{label}: '{arg_name}' ({tensor.dtype.name}, shape {shape}) is in host memory")
    return problems


@pytest.fixture(scope="module")
def full_study(tmp_path_factory):
    """A small synthetic data set, with the full profile's model and training settings."""
    full = load_config("full")
    settings = {f"training.{name}": getattr(full.training, name)
                for name in ("batch_size", "eval_batch_size", "jit_compile", "mixed_precision", "optimizer", "momentum")}
    settings.update({"model.filters": list(full.model.filters), "model.fc_units": full.model.fc_units})
    return Study(tiny_config(**{key.replace(".", "__"): value for key, value in settings.items()}),
                 root=tmp_path_factory.mktemp("full"))


def _compiled(study, spec, source=None):
    steps = -(-study.splits.sizes()[spec.train_split] // spec.batch_size)
    training.clear_compiled()
    return training.compiled_for(spec, steps, build_model(spec, source))


def test_the_full_profile_builds_with_xla_and_mixed_precision(full_study):
    spec = full_study.spec(0, 0.05)
    assert spec.jit_compile and spec.mixed_precision and spec.batch_size == load_config("full").training.batch_size


@pytest.mark.usefixtures("fresh_compiled")  # traced afresh (and patched), apart from the cache
@pytest.mark.parametrize("kind", ["dropout_batch_norm", pytest.param("frozen", marks=pytest.mark.slow),
                                  pytest.param("schedule", marks=pytest.mark.slow)])
def test_every_op_of_the_full_profiles_epoch_and_evaluation_has_a_gpu_kernel(full_study, kind):
    from dnnls_tf.core.spec import WarmupCosine

    options = {"dropout_batch_norm": {"dropout": 0.3, "batch_norm": True},
               "frozen": {"batch_norm": True, "frozen": True}, "schedule": {}}[kind]
    rate = WarmupCosine(0.05, 1, 0.01) if kind == "schedule" else 0.05
    trainer = _compiled(full_study, full_study.spec(0, rate, **options)).trainer
    epoch = trainer.train_epoch.get_concrete_function()
    evaluation = trainer.evaluate.get_concrete_function()
    assert any(_is_xla(op) for graph in [epoch.graph] for op in _all_ops(graph)), "the step is not XLA-compiled"
    problems = gpu_problems(epoch.graph, "train_epoch/") + gpu_problems(evaluation.graph, "evaluate/")
    assert not problems, "\n".join(problems)


def _all_ops(graph):
    ops = list(graph.get_operations())
    for op in graph.get_operations():
        for function_graph in _function_graphs(op):
            ops += _all_ops(function_graph)
    return ops


@pytest.mark.usefixtures("fresh_compiled")  # traced afresh (and patched), apart from the cache
def test_the_gather_the_loop_used_before_has_no_gpu_kernel_and_the_check_says_so(full_study, monkeypatch):
    """The check can fail: with the uint8 gather of the previous loop (tf.gather on the images)."""
    monkeypatch.setattr(trainer_lib, "gather_rows", tf.gather)
    trainer = _compiled(full_study, full_study.spec(0, 0.05)).trainer
    problems = gpu_problems(trainer.train_epoch.get_concrete_function().graph)
    assert any("GatherV2" in problem and "uint8" in problem for problem in problems), problems
    int32_order = tf.function(lambda order, start: order[start:start + 4],
                              input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])
    problems = gpu_problems(int32_order.get_concrete_function().graph, in_loop=True)
    assert any("StridedSlice" in problem and "host memory" in problem for problem in problems), problems


@pytest.mark.usefixtures("fresh_compiled")  # traced afresh (and patched), apart from the cache
def test_the_frozen_feature_encoder_and_the_range_test_step_have_gpu_kernels(full_study):
    compiled = _compiled(full_study, full_study.spec(0, 0.05, batch_norm=True, frozen=True))
    assert not gpu_problems(compiled.encode.batch.get_concrete_function().graph)
    # The range test trains float32 without XLA: every op of its step needs a GPU kernel.
    model = build_cnn(filters=(16, 32, 64), seed=0)
    trainer = trainer_lib.Trainer(model, trainer_lib.make_optimizer("sgd", 0.9, 0.01), capture=False)
    problems = gpu_problems(trainer.train_batch.get_concrete_function().graph)
    assert not problems, "\n".join(problems)


def test_per_epoch_only_the_shuffle_runs_on_the_host_and_its_order_is_placed_once():
    # StatelessShuffle has no GPU kernel: epoch_order draws on the CPU and places the order once.
    shuffle = tf.function(lambda: tf.random.experimental.stateless_shuffle(tf.range(100), seed=[3, 1]))
    assert [p.partition("): ")[2] for p in gpu_problems(shuffle.get_concrete_function().graph)] == [
        "no GPU kernel for {'T': ['int32']}"]
    order = trainer_lib.epoch_order(100, 3, 1)
    assert order.dtype == tf.int64 and order.device.endswith(trainer_lib.compute_device().lstrip("/"))
    np.testing.assert_array_equal(np.sort(order.numpy()), np.arange(100))
    place = tf.function(trainer_lib.place,
                        input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8)]).get_concrete_function()
    sample = tf.function(trainer_lib.gather_rows, input_signature=[
        tf.TensorSpec([None, 32, 32, 3], tf.uint8), tf.TensorSpec([None], tf.int64)]).get_concrete_function()
    for function in (place, sample):
        problems = gpu_problems(function.graph, in_loop=True)
        assert not problems, "\n".join(problems)


def test_gathered_rows_are_the_same_bytes():
    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    index = np.array([7, 0, 49, 7, 12], np.int64)
    np.testing.assert_array_equal(trainer_lib.gather_rows(tf.constant(images), index).numpy(), images[index])
    features = np.random.default_rng(1).normal(size=(50, 10)).astype(np.float32)
    np.testing.assert_array_equal(trainer_lib.gather_rows(tf.constant(features), index).numpy(), features[index])
    odd = images[:, :1, :1, :1]  # 1 byte per row: not a whole int32 word, gathered directly
    np.testing.assert_array_equal(trainer_lib.gather_rows(tf.constant(odd), index).numpy(), odd[index])


def test_a_runs_arrays_are_placed_once_and_every_epoch_gets_the_same_tensors(monkeypatch, tmp_path):
    study = Study(tiny_config(), root=tmp_path)
    placed, epoch_inputs, evaluated = [], [], []
    place = trainer_lib.place

    def counting_place(array, dtype=None):
        placed.append(np.shape(array))
        return place(array, dtype)

    monkeypatch.setattr(training, "place", counting_place)
    original_evaluate = trainer_lib.Trainer.evaluate_arrays

    def recording_evaluate(self, arrays):
        evaluated.append(all(isinstance(a, tf.Tensor) for a in arrays))
        return original_evaluate(self, arrays)

    monkeypatch.setattr(trainer_lib.Trainer, "evaluate_arrays", recording_evaluate)
    spec = study.spec(0, 0.05)
    function = training.compiled_for(spec, 10, build_model(spec)).trainer.train_epoch  # traced once per session
    trainer = training._COMPILED[training.kind_key(spec, 10)].trainer
    monkeypatch.setattr(trainer, "train_epoch", lambda *args: (
        epoch_inputs.append(tuple(id(a) for a in args[:2])) or function(*args)))
    for epochs in (1, 3):
        placed.clear()
        training.train_run(dataclasses.replace(spec, epochs=epochs), study.splits)
        # train, validation and test: images and labels, once each, however many epochs
        assert len(placed) == 6, placed
    assert all(evaluated) and len(evaluated) == 2 * (1 + 3) + 2 * 3  # per epoch: val + sample; final: 3
    assert len(set(epoch_inputs[1:])) == 1  # the 3-epoch run passed the same tensors every epoch
