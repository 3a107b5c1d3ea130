"""Command line: parse, dispatch, and turn bad input into one line and exit code 2."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from dnnls_tf.errors import UserError

EXPERIMENT_CHOICES = ("baseline", "exp1", "exp2", "exp3", "all")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + exits 2; keep it to one line
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dnnls_tf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_common(sub):
        sub.add_argument("--profile", help="full, subset or quick (default: $DNNLS_PROFILE, else subset)")
        sub.add_argument("--data-dir", help="a cifar-10-batches-py folder (default: $DNNLS_DATA_DIR)")
        sub.add_argument("--root", help="folder for results/, weights/, figures/ (default: the project)")

    run = commands.add_parser("run", help="train what is missing and summarise an experiment")
    run.add_argument("experiment", help=", ".join(EXPERIMENT_CHOICES))
    add_common(run)
    add_common(commands.add_parser("status", help="runs done / missing / diverged"))
    add_common(commands.add_parser("figures", help="figures and summaries from the store, no training"))
    add_common(commands.add_parser("report", help="generated tables and the PDF"))
    add_common(commands.add_parser("bundle", help="zip of report, notebooks, library, configs and weights"))
    bench = commands.add_parser("bench", help="training throughput: loop vs model.fit")
    bench.add_argument("--json", help="write the results to this JSON file")
    bench.add_argument("--rounds", type=int, default=24, help="measured rounds after the warm-up (default 24)")
    bench.add_argument("--threads", type=int, nargs=2, metavar=("INTRA", "INTER"),
                       help="TensorFlow intra-op and inter-op pool sizes (default: the subset profile's; "
                            "0 0 = TensorFlow's default)")
    return parser


def _study(args, allow_training: bool = True):
    from dnnls_tf.study import Study

    return Study(args.profile, root=args.root, data_dir=args.data_dir, allow_training=allow_training)


def command_run(args) -> None:
    if args.experiment not in EXPERIMENT_CHOICES:
        raise UserError(f"unknown experiment '{args.experiment}': expected one of {', '.join(EXPERIMENT_CHOICES)}")
    study = _study(args)
    study.data  # read and validate the data before TensorFlow starts (and prints its banners)
    study.configure_runtime()  # thread pools: before TensorFlow's first operation
    from dnnls_tf.experiments import run_experiment

    removed = study.store.clean_temporaries()
    if removed:
        print(f"removed {removed} partial run(s) left by an interrupted process")
    start = time.perf_counter()
    run_experiment(args.experiment, study)
    minutes = (time.perf_counter() - start) / 60
    if study.trained:
        print(f"{args.experiment} [{study.profile}]: trained {len(study.trained)} run(s), "
              f"{len(set(study.reused))} already in the store, {minutes:.1f} min")
    else:
        print(f"{args.experiment} [{study.profile}]: nothing to train, all {len(set(study.reused))} run(s) "
              f"already in {study.store.runs_dir}")


def command_status(args) -> None:
    from dnnls_tf.experiments import run_counts

    for name, row in run_counts(_study(args, allow_training=False)).items():
        planned = row.pop("planned")
        print(f"{name:9s} {planned:3d} planned: " + ", ".join(f"{v} {k}" for k, v in row.items()))


def command_figures(args) -> None:
    from dnnls_tf.experiments import run_experiment

    study = _study(args, allow_training=False)
    for name in ("exp1", "exp2", "exp3"):
        try:
            run_experiment(name, study)
            print(f"{name}: figures in {study.figures_dir}")
        except UserError as error:
            print(f"{name}: skipped ({error})")


def command_report(args) -> None:
    from dnnls_tf.report import build_report

    print(build_report(_study(args, allow_training=False)))


def command_bundle(args) -> None:
    from dnnls_tf.bundle import write_bundle

    path, weights = write_bundle(_study(args, allow_training=False))
    print(f"{path} ({weights} weights files)")


def command_bench(args) -> None:
    from dnnls_tf.bench import main as bench_main

    if args.rounds < 1:
        raise UserError("--rounds must be a positive integer")
    if args.threads and min(args.threads) < 0:
        raise UserError("--threads takes two non-negative integers")
    bench_main(args.json, args.rounds, tuple(args.threads) if args.threads else None)


COMMANDS = {"run": command_run, "status": command_status, "figures": command_figures,
            "report": command_report, "bundle": command_bundle,
            "bench": command_bench}


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are stored; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
