"""Process-wide set-up: GPU memory growth for several workers on one GPU (faked GPUs: this CPU has none)."""
import pytest
import tensorflow as tf

from conftest import tiny_config
from dnnls_tf.core import runtime
from dnnls_tf.errors import UserError

GPUS = [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{index}", device_type="GPU") for index in range(2)]


def _fake_gpus(monkeypatch, initialised: bool):
    growth = {}

    def set_memory_growth(device, enable):
        if initialised:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        growth[device.name] = enable

    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: GPUS if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", set_memory_growth)
    monkeypatch.setattr(tf.config.experimental, "get_memory_growth", lambda device: growth.get(device.name, False))
    return growth


def test_start_lets_every_gpus_memory_grow_so_workers_can_share_one(monkeypatch):
    growth = _fake_gpus(monkeypatch, initialised=False)
    config = tiny_config(compute__workers=2).compute
    runtime.start(config)
    assert growth == {gpu.name: True for gpu in GPUS}
    assert runtime.configure_gpus() == {"gpus": 2, "memory_growth": True}


def test_several_workers_on_a_gpu_reserved_without_growth_are_refused_in_one_line(monkeypatch):
    _fake_gpus(monkeypatch, initialised=True)
    assert runtime.configure_gpus() == {"gpus": 2, "memory_growth": False}
    with pytest.raises(UserError, match="compute.workers = 2 share the GPU only if") as error:
        runtime.start(tiny_config(compute__workers=2).compute)
    assert "\n" not in str(error.value)
    runtime.start(tiny_config(compute__workers=1).compute)  # one worker: the process may keep its GPU


def test_without_a_gpu_nothing_is_set_or_refused(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert runtime.configure_gpus() == {"gpus": 0, "memory_growth": True}
    runtime.start(tiny_config(compute__workers=2).compute)


@pytest.mark.parametrize("setting, advised", [(None, False), ("1", True)], ids=["default", "explicit"])
def test_numpy_imported_after_the_library_advises_no_huge_pages_unless_asked(setting, advised):
    """A process that imports the library before NumPy (the CLI, its workers) allocates large arrays
    without huge-page advice; an explicit NUMPY_MADVISE_HUGEPAGE wins."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "NUMPY_MADVISE_HUGEPAGE"}
    if setting is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = setting
    probe = ("import dnnls_tf, numpy\n"
             "from numpy._core.multiarray import _set_madvise_hugepage\n"
             "print(_set_madvise_hugepage(True))")  # returns the advice in effect before the call
    output = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == str(advised)
