"""dnnls_tf: a reproducible three-experiment CIFAR-10 study of a small CNN."""
import os

# TensorFlow enables its oneDNN CPU kernels by default only on some Intel CPUs; on
# the project's AMD CPUs they train the CNN about 1.4x faster (see README, bench).
# Must be set before TensorFlow is imported; an explicit setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.2.0"
STORE_FORMAT = 2  # bump when the run-store layout changes incompatibly
