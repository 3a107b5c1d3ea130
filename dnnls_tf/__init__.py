"""dnnls_tf: a reproducible three-experiment CIFAR-10 study of a small CNN."""
import os

# TensorFlow enables its oneDNN CPU kernels by default only on some Intel CPUs; on
# the project's AMD CPUs they train the CNN about 1.4x faster (see README, bench).
# Must be set before TensorFlow is imported; an explicit setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# NumPy advises Linux to back large arrays with huge pages. On the project's 2-core VMs a page fault
# then costs so much that a 150 MB array takes 2 s of system time to allocate instead of 0.07 s, and
# `run all` on the complete subset store took 27-29 s instead of 17-18 s (README). Read when
# NumPy is first imported (the CLI, its worker processes); an explicit setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

__version__ = "0.2.0"
STORE_FORMAT = 2  # bump when the run-store layout changes incompatibly
