"""Command line: parse, check the arguments, dispatch; every expected failure is one line and exit code 2.

TensorFlow is imported only by the commands that train (`run`, `bench`, `rehearse`),
and only after the arguments, the config and the data have been checked. `main` is the
one place failures become messages (`failure_line`): bad input, I/O errors (disk full,
read-only or missing places, names too long), a closed output pipe, input nested too
deeply, summaries of an unexpected shape. DNNLS_DEBUG=1 adds the traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys
import traceback
from pathlib import Path

from dnnls_tf.errors import UserError, describe_os_error, shorten

DEBUG_VARIABLE = "DNNLS_DEBUG"  # set (to anything but 0 or empty) for tracebacks with the one-line errors
LINE_LIMIT = 600  # characters of an error line
SUMMARY_READERS = ("figures", "report")  # commands that render summaries (their shape errors are the data's)


def experiment_choices() -> tuple[str, ...]:
    """The registered experiments' names, then `all` (the registry: dnnls_tf/experiments/__init__.py)."""
    from dnnls_tf.experiments import REGISTRY

    return (*REGISTRY.names, "all")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + exits 2; keep it to one line
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dnnls_tf", description="A reproducible CIFAR-10 study of a small CNN.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_command(name: str, summary: str, details: str = ""):
        # `help` is the line in `python -m dnnls_tf --help`; `description` heads the command's own --help page
        return commands.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. {details}")

    def add_common(sub, data: bool = True):
        sub.add_argument("--profile", help="full, subset or quick (default: $DNNLS_PROFILE, else subset)")
        sub.add_argument("--root", help="folder for results/, weights/, figures/ (default: $DNNLS_ROOT, else the project)")
        sub.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                         help="override one setting of the profile (repeatable; YAML value)")
        sub.add_argument("--config", metavar="FILE", help="a YAML file of settings that override the profile's")
        if data:
            sub.add_argument("--data-dir", help="a cifar-10-batches-py folder or cifar-10-python.tar.gz "
                                                "(default: $DNNLS_DATA_DIR, else the shared subset, Keras' cache)")

    run = add_command("run", "train what the experiment's plan lacks and write its summary",
                      "Finished runs are read from the store, so running the command again (after Ctrl-C, a kill "
                      "or a crash) trains only what is missing. The experiments an experiment needs are completed "
                      "first. The only command that may download CIFAR-10.")
    run.add_argument("experiment", help=", ".join(experiment_choices()))
    add_common(run)
    add_common(add_command("status", "runs done / missing / unstable / damaged, per experiment",
                           "Reads the store and the data, never trains or downloads. Each row counts the runs "
                           "its experiment's plan names so far, including runs it shares with another experiment; "
                           "the last line counts each distinct run once."))
    add_common(add_command("figures", "figures from the summaries and runs (never trains)",
                           "PNG and PDF files under figures/<profile>/, from the store only."), data=False)
    add_common(add_command("report", "generated LaTeX and the PDF from the summaries",
                           "Tables and numbers under report/generated/<profile>/ and the PDF, from the summaries and "
                           "figures only; the same store gives the same PDF, byte for byte."), data=False)
    add_common(add_command("bundle", "the submission zip: code, notebooks, results, weights, PDF",
                           "Written to <root>/build/dnnls_tf_<profile>.zip; no data set inside. Unzipped, or "
                           "uploaded to a Colab session, it is a working copy of the project."), data=False)
    rehearse = add_command("rehearse", "every kind of run for a few steps on synthetic data of the profile's sizes: "
                           "checks, seconds per step, the study's predicted time here",
                           "Nothing is stored: a rehearsal checks code paths and predicts, it does not train the study.")
    rehearse.add_argument("--profile", default="full", help="the profile to rehearse (default: full)")
    rehearse.add_argument("--quick", action="store_true", help="fewer steps on fewer images, under a minute (CI)")
    rehearse.add_argument("--steps", type=int, help="timed steps per kind (default 50; --quick 6)")
    rehearse.add_argument("--json", help="write the result to this JSON file")
    fork = add_command("fork", "point the notebooks' Colab install cells and badges at your fork",
                       "Rewrites the one setting (dnnls_tf/notebook.py's REPO_URL) and what derives from it: the "
                       "install cell and badge of each notebook and the README's badges. Commit and push them, "
                       "then the badges open your fork's notebooks, which clone your fork.")
    fork.add_argument("url", nargs="?", help="https://github.com/<you>/<name> (default: the `origin` remote)")
    tensorboard = add_command("tensorboard", "TensorBoard event files of every stored run",
                              "Written under results/<profile>/tensorboard/ (git-ignored); prints the command that "
                              "views them.")
    add_common(tensorboard, data=False)
    tensorboard.add_argument("--force", action="store_true", help="rewrite runs already exported")
    bench = add_command("bench", "training speed: the study's run vs one Keras fit call, and a per-epoch breakdown",
                        "Whole runs in pairs of fresh processes (ours, one model.fit call), then interleaved "
                        "per-epoch rounds in several fresh processes, pooled; medians and bootstrap intervals.")
    bench.add_argument("--json", help="write the results to this JSON file")
    bench.add_argument("--rounds", type=int, default=8,
                       help="measured rounds per process, after its warm-up round (default 8)")
    bench.add_argument("--processes", type=int, default=3,
                       help="fresh processes whose rounds are pooled (default 3)")
    bench.add_argument("--runs", type=int, default=3,
                       help="pairs of whole runs (ours, one fit call), each in a fresh process (default 3)")
    bench.add_argument("--threads", type=int, nargs=2, metavar=("INTRA", "INTER"),
                       help="TensorFlow intra-op and inter-op pool sizes (default: the subset profile's; "
                            "0 0 = TensorFlow's default)")
    return parser


# A command the library suggests in a message, e.g. `python -m dnnls_tf run exp1 --profile quick` (those that
# take the store options; every suggestion names its profile)
_SUGGESTED_COMMAND = re.compile(r"python -m dnnls_tf (?:run|status|figures|report|bundle|tensorboard)"
                                r"(?: (?!--)[^\s`'\"]+)* --profile [^\s`'\"]+")


def keep_user_options(message: str, args) -> str:
    """`message` with the user's store options (--root, --data-dir, --config, --set) added to every command
    it suggests, so that the suggestion acts on the store and settings the user named."""
    extra = []
    for option in ("root", "data_dir", "config"):
        value = getattr(args, option, None)
        if value:
            extra.append(f"--{option.replace('_', '-')} {shlex.quote(str(value))}")
    extra += [f"--set {shlex.quote(setting)}" for setting in getattr(args, "set", None) or []]
    if not extra:
        return message
    return _SUGGESTED_COMMAND.sub(lambda match: f"{match.group(0)} {' '.join(extra)}", message)


def _config(args):
    from dnnls_tf.experiments import load_config
    from dnnls_tf.study.config import parse_setting

    settings = dict(parse_setting(text) for text in args.set)
    if args.config and not Path(args.config).exists():
        raise UserError(f"--config {shorten(args.config, 200)}: no such file")
    return load_config(args.profile, settings=settings, config_file=args.config)


def _study(args, writable: bool = False):
    from dnnls_tf.study.study import Study

    if args.profile is not None and not args.profile.strip():
        raise UserError("--profile is empty: expected full, subset or quick")
    return Study(_config(args), root=args.root, data_dir=getattr(args, "data_dir", None), writable=writable)


def command_run(args) -> None:
    from dnnls_tf.experiments import REGISTRY

    choices = experiment_choices()
    if args.experiment not in choices:
        raise UserError(f"unknown experiment '{args.experiment}': expected one of {', '.join(choices)}")
    names = list(REGISTRY.names) if args.experiment == "all" else [args.experiment]
    study = _study(args, writable=True)
    from dnnls_tf.core.data import downloads_allowed

    with downloads_allowed():  # the one command that may download CIFAR-10
        study.splits  # read and validate the data before the runner starts
    from dnnls_tf.study.runner import complete_experiments

    if not study.config.compute.progress:  # no bar: one line per finished run, on stdout
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        runner_log = logging.getLogger("dnnls_tf.study.runner")
        runner_log.addHandler(handler)
        runner_log.setLevel(logging.INFO)
        runner_log.propagate = False

    from dnnls_tf.experiments.expected import expected_runs
    from dnnls_tf.tools.tensorboard import live_events

    outcome = complete_experiments(study, REGISTRY, names, args.experiment, observer=live_events,
                                   expected=expected_runs(study.config))
    print(outcome.describe(args.experiment, study))


def command_status(args) -> None:
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.planner import plan_all, status_lines

    study = _study(args)
    study.splits  # a data error is an error here too, not a plan that waits
    for line in status_lines(study, REGISTRY):
        print(line)
    try:
        planned = {spec.run_id for plan in plan_all(study, REGISTRY, REGISTRY.names).values() for spec in plan.specs()}
    except UserError:  # a plan that cannot go on: said on every line above
        return
    strays = [name for name in study.store.entries() if name not in planned]
    if strays:
        print(f"{'store':9s} {len(strays):3d} entries in {study.store.runs_dir} that no plan names (runs of other "
              f"settings or data, or copies; left alone): {', '.join(shorten(name, 20) for name in strays[:3])}"
              f"{' ...' if len(strays) > 3 else ''}")


def command_figures(args) -> None:
    from dnnls_tf.atomic import remove_orphans
    from dnnls_tf.publish.figures import draw_all

    study = _study(args)
    remove_orphans(study.figures_dir)  # what a killed `figures` left half-written
    for path in draw_all(study):
        print(path)


def command_report(args) -> None:
    from dnnls_tf.atomic import remove_orphans
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.publish.report import build_report, pdf_path
    from dnnls_tf.study.results import check_named_runs

    study = _study(args)
    check_named_runs(study, REGISTRY.names)  # as `figures` refuses: no report over missing or damaged runs
    remove_orphans(pdf_path(study).parent)  # what a killed `report` left half-written
    print(build_report(study))


def command_bundle(args) -> None:
    from dnnls_tf.tools.bundle import write_bundle

    path, weights = write_bundle(_study(args))
    print(f"{path} ({weights} weights files)")


def command_bench(args) -> None:
    if args.rounds < 1:
        raise UserError("--rounds must be a positive integer")
    if args.processes < 1:
        raise UserError("--processes must be a positive integer")
    if args.runs < 1:
        raise UserError("--runs must be a positive integer")
    if args.threads and min(args.threads) < 0:
        raise UserError("--threads takes two non-negative integers")
    _check_json_folder(args.json)
    from dnnls_tf.tools.bench import main as bench_main

    bench_main(args.json, args.rounds, tuple(args.threads) if args.threads else None, args.processes, args.runs)


def _check_json_folder(path: str | None) -> None:
    """Refuse an output file that cannot be written before the (long) command runs."""
    if not path:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UserError(f"--json {shorten(path, 200)}: the folder {shorten(folder, 200)} does not exist")
    if Path(path).is_dir():
        raise UserError(f"--json {shorten(path, 200)} is a folder, expected a file name")
    import tempfile

    try:  # a real write: permission bits say nothing to root, nor about read-only file systems
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".tmp-{os.getpid()}-probe-"):
            pass
    except OSError as error:
        raise UserError(f"--json {shorten(path, 200)}: cannot write into {shorten(folder, 200)} "
                        f"({error.strerror or error})") from None


def command_rehearse(args) -> None:
    from dnnls_tf.study.config import resolve_profile

    resolve_profile(args.profile)  # an unknown profile: one line, before TensorFlow starts
    if args.steps is not None and args.steps < 1:
        raise UserError("--steps must be a positive integer")
    _check_json_folder(args.json)
    from dnnls_tf.tools.rehearse import main as rehearse_main

    result = rehearse_main(args.profile, args.steps, args.quick)
    if args.json:
        from dnnls_tf.atomic import write_json

        write_json(Path(args.json), result)
    if result["failures"]:
        raise UserError(f"rehearsal of the {args.profile} profile: {len(result['failures'])} code path(s) failed "
                        f"(listed above)")


def command_tensorboard(args) -> None:
    from dnnls_tf.tools.tensorboard import export_store

    root = export_store(_study(args), force=args.force)
    print(f"{root}\nview it with: tensorboard --logdir {root}")


def command_fork(args) -> None:
    from dnnls_tf.notebook import point_at_repository

    changed = point_at_repository(args.url)
    print("\n".join(str(path) for path in changed) if changed else "nothing to change: already pointing there")


COMMANDS = {"fork": command_fork, "run": command_run, "status": command_status, "figures": command_figures,
            "report": command_report, "bundle": command_bundle, "bench": command_bench,
            "rehearse": command_rehearse, "tensorboard": command_tensorboard}


def failure_line(error: BaseException, command: str | None) -> str | None:
    """The one line an expected failure is reported as; None for a bug (which keeps its traceback)."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, BrokenPipeError):
        return "the output was closed before everything was written (a pipe into `head`?)"
    if isinstance(error, OSError):
        return describe_os_error(error)
    if isinstance(error, RecursionError):
        return "an input is nested too deeply to read (a damaged JSON file?)"
    if isinstance(error, MemoryError):
        return "out of memory"
    if command in SUMMARY_READERS and isinstance(error, (KeyError, TypeError, ValueError, IndexError,
                                                         AttributeError)):
        return (f"a summary has an unexpected structure ({type(error).__name__}: {shorten(error, 80)}): "
                f"`python -m dnnls_tf run all` writes the summaries again ({DEBUG_VARIABLE}=1 shows where)")
    return None


def _silence_stdout() -> None:
    """After a broken pipe: send what is still buffered to /dev/null, so that exiting does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (under a test's capture)
        pass


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args, command = None, None
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        COMMANDS[command](args)
        sys.stdout.flush()  # a closed pipe fails here, inside the handler, not at exit
    except KeyboardInterrupt:
        print("interrupted: finished runs are stored; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as error:
        line = failure_line(error, command)
        if line is None:
            raise
        if isinstance(error, UserError) and args is not None:
            line = keep_user_options(line, args)  # suggested commands act on the user's own store and settings
        if isinstance(error, BrokenPipeError):
            _silence_stdout()
        if os.environ.get(DEBUG_VARIABLE, "0") not in ("", "0"):
            traceback.print_exc()
        try:
            print(f"error: {shorten(line, LINE_LIMIT)}", file=sys.stderr)
        except OSError:  # stderr closed too: the exit code still says it
            pass
        return 2
    return 0
