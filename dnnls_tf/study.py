"""A study of one profile: its config, data, run store, and train-or-load for runs."""
from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path

from dnnls_tf import data as data_lib
from dnnls_tf.config import PROJECT_ROOT, load_config
from dnnls_tf.errors import UserError
from dnnls_tf.store import RunStore, StoredRun, run_id_of

log = logging.getLogger(__name__)


class Study:
    """Everything one profile's experiments share.

    Args:
        profile: full, subset or quick (default: $DNNLS_PROFILE, else subset).
        root: folder that holds results/, weights/ and figures/ (default: $DNNLS_ROOT,
            else the project folder).
        data_dir: a cifar-10-batches-py folder (default: $DNNLS_DATA_DIR, the shared subset).
        allow_training: False for commands that only read the store (a missing run is an error).
    """

    def __init__(self, profile: str | None = None, root: str | Path | None = None,
                 data_dir: str | Path | None = None, config: dict | None = None,
                 allow_training: bool = True):
        self.config = config or load_config(profile)
        self.profile = self.config["profile"]
        self.root = Path(root or os.environ.get("DNNLS_ROOT") or PROJECT_ROOT)
        self.data_dir = data_dir
        self.store = RunStore(self.root, self.profile)
        self.source_kind, _ = data_lib.resolve_source(self.config, data_dir)
        self.allow_training = allow_training
        self.threads: dict | None = None  # TensorFlow's pool sizes, once training has set them
        self.trained: list[str] = []
        self.reused: list[str] = []

    @cached_property
    def data(self) -> data_lib.CifarData:
        return data_lib.load_cifar10(self.config, self.data_dir)

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures" / self.profile

    def experiment_dir(self, name: str) -> Path:
        return self.store.results_dir / name

    def run_config(self, seed: int, *, learning_rate=None, dropout: float = 0.0, batch_norm: bool = False,
                   train_split: str = "holdout_train", val_split: str = "holdout_val",
                   init_from: str | None = None, epochs: int | None = None) -> dict:
        """The fully resolved config of one run, with its run_id (a hash of the rest)."""
        data, model, training = self.config["data"], self.config["model"], self.config["training"]
        frozen = ["conv1", "conv2", "conv3"] + ([f"bn{i}" for i in (1, 2, 3)] if batch_norm else []) if init_from else []
        config = {
            "profile": self.profile,
            "dataset": "synthetic" if self.source_kind == "synthetic" else "cifar10",
            "max_train": data["max_train"], "max_test": data["max_test"],
            "split_seed": data["split_seed"], "val_fraction": data["val_fraction"],
            "filters": list(model["filters"]), "fc_units": model["fc_units"],
            "seed": seed, "epochs": epochs or training["epochs"], "batch_size": training["batch_size"],
            "optimizer": training["optimizer"], "momentum": training["momentum"],
            "learning_rate": training["learning_rate"] if learning_rate is None else learning_rate,
            "dropout": float(dropout), "batch_norm": batch_norm,
            "train_split": train_split, "val_split": val_split,
            "init_from": init_from, "frozen": frozen,
            "mixed_precision": self.mixed_precision,
        }
        config["run_id"] = run_id_of(config)
        return config

    @cached_property
    def mixed_precision(self) -> bool:
        from dnnls_tf.training import gpu_available

        return bool(self.config["training"]["mixed_precision"]) and gpu_available()

    @cached_property
    def jit_compile(self) -> bool:
        from dnnls_tf.training import gpu_available

        setting = self.config["training"]["jit_compile"]
        return gpu_available() if setting == "auto" else bool(setting)

    def lookup(self, run_config: dict) -> StoredRun | None:
        """The stored run of this config, or None (a corrupt one is discarded)."""
        run_id = run_config["run_id"]
        problem = self.store.problem(run_id)
        if problem:
            self.store.discard(run_id, problem)
            return None
        return self.store.load(run_id)

    def run(self, run_config: dict) -> StoredRun:
        """The stored run of this config; trains and stores it first if absent or corrupt."""
        stored = self.lookup(run_config)
        if stored is not None:
            if stored.run_id not in self.trained:  # not trained a moment ago by a worker
                self.reused.append(stored.run_id)
            return stored
        if not self.allow_training:
            raise UserError(f"run {run_config['run_id']} is not in {self.store.runs_dir}: "
                            f"python -m dnnls_tf run <experiment> --profile {self.profile} trains it")
        stored = self._train(run_config)
        self.trained.append(stored.run_id)
        return stored

    def run_status(self, run_id: str) -> str:
        """done, diverged, missing or corrupt (read only)."""
        if self.store.problem(run_id):
            return "corrupt"
        stored = self.store.load(run_id)
        if stored is None:
            return "missing"
        return "diverged" if stored.diverged else "done"

    def run_all(self, run_configs: list[dict]) -> list[StoredRun]:
        """The stored runs of independent configs; missing ones are trained, in parallel
        worker processes when the profile has `compute.workers` > 1."""
        workers = self.config["compute"]["workers"]
        if self.allow_training and workers > 1:
            missing = {}
            for config in run_configs:
                if config["run_id"] not in missing and self.lookup(config) is None:
                    missing[config["run_id"]] = config
            if len(missing) > 1:
                for config in missing.values():  # a transfer run's source, here, not in two workers
                    if config["init_from"]:
                        self.weights_file(config["init_from"])
                from dnnls_tf.workers import train_in_workers

                self.trained += train_in_workers(self, list(missing.values()), workers)
        return [self.run(config) for config in run_configs]

    def configure_runtime(self) -> dict:
        """Size TensorFlow's thread pools from the profile (before its first operation)."""
        from dnnls_tf.training import configure_threads

        compute = self.config["compute"]
        self.threads = configure_threads(compute["intra_op_threads"], compute["inter_op_threads"])
        return self.threads

    def weights_file(self, run_id: str) -> Path:
        """The weights of a stored run; retrains it (deterministically) if the file is gone."""
        path = self.store.weights_path(run_id)
        if not path.exists():
            stored = self.store.load(run_id)
            if stored is None:
                raise FileNotFoundError(f"run {run_id} is not in the store {self.store.runs_dir}")
            log.warning("weights of run %s are missing: training it again", run_id)
            self.store.discard(run_id, "weights file missing")
            self.run(stored.config)
        return path

    def build_model(self, run_config: dict):
        """The run's CNN, seeded; for a transfer run loaded from its source, frozen and re-headed."""
        from dnnls_tf.models import build_cnn, freeze_conv_layers, reinitialize_fc_layers
        from dnnls_tf.training import set_determinism

        self.configure_runtime()
        set_determinism(run_config["seed"], deterministic_ops=not self.jit_compile)
        model = build_cnn(batch_norm=run_config["batch_norm"], dropout=run_config["dropout"],
                          filters=tuple(run_config["filters"]), fc_units=run_config["fc_units"],
                          seed=run_config["seed"],
                          dtype="mixed_float16" if run_config["mixed_precision"] else None)
        if run_config["init_from"]:
            model.load_weights(self.weights_file(run_config["init_from"]))
            freeze_conv_layers(model)
            reinitialize_fc_layers(model, run_config["seed"])
        return model

    def _train(self, run_config: dict) -> StoredRun:
        from dnnls_tf import training
        from dnnls_tf.models import count_parameters

        model = self.build_model(run_config)
        train_arrays = data_lib.split_arrays(self.data, run_config["train_split"], self.config)
        val_arrays = data_lib.split_arrays(self.data, run_config["val_split"], self.config)
        settings = self.config["training"]
        history, gradients, summary = training.train_model(
            model, run_config, train_arrays, val_arrays, capture=settings["capture_gradients"],
            progress=settings["progress"], jit_compile=self.jit_compile,
            eval_batch_size=settings["eval_batch_size"])
        metrics = dict(summary, data_source=self.data.source, num_train=len(train_arrays[1]),
                       num_val=len(val_arrays[1]), **self.threads, **count_parameters(model))
        metrics.update(dict.fromkeys(("train_accuracy", "val_accuracy", "val_loss", "test_accuracy", "test_loss",
                                      "generalization_gap", "train_test_gap")))
        if summary["best_epoch"] is not None:
            metrics.update(training.evaluate_final(model, self.data, train_arrays, val_arrays,
                                                   settings["eval_batch_size"]))
        log.info("run %s: %s, val %.4f", run_config["run_id"], metrics["status"],
                 metrics.get("val_accuracy", float("nan")))
        return self.store.save(run_config, history, gradients.as_arrays(), metrics, model)
