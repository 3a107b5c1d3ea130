"""The command line's small courtesies: help pages that describe, hints that keep the user's options, typos
that name the nearest key, and a Makefile that honours DNNLS_PROFILE."""
import os
import subprocess

import pytest

from dnnls_tf.cli import build_parser, main
from dnnls_tf.paths import PROJECT_ROOT


def test_every_subcommand_has_a_description():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) >= {"run", "status", "figures", "report", "bundle", "rehearse", "tensorboard", "bench", "fork"}
    for name, parser in commands.items():
        assert parser.description and len(parser.description.split()) >= 8, name
        assert parser.description.split(".")[0].lower() in parser.format_help().lower().replace("\n", " "), name


def test_a_suggested_command_keeps_the_root_settings_and_config_the_user_gave(tmp_path, capsys):
    root, extra = tmp_path / "my root", tmp_path / "extra.yaml"
    extra.write_text("training:\n  epochs: 3\n")
    code = main(["figures", "--profile", "quick", "--root", str(root), "--config", str(extra),
                 "--set", "training.batch_size=32"])
    (line,) = capsys.readouterr().err.splitlines()
    assert code == 2 and (f"`python -m dnnls_tf run exp1 --profile quick --root '{root}' --config {extra} "
                          f"--set training.batch_size=32` writes it") in line


def test_without_options_a_suggestion_stays_as_it_was(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DNNLS_ROOT", str(tmp_path))
    assert main(["figures", "--profile", "quick"]) == 2
    assert "`python -m dnnls_tf run exp1 --profile quick` writes it" in capsys.readouterr().err


@pytest.mark.parametrize("setting, hint", [("training.epocs=3", "'training.epochs'"), ("trainig.epochs=3", "'training'"),
                                           ("exp1.tuner_trails=3", "'exp1.tuner_trials'")])
def test_a_mistyped_setting_names_the_nearest_key(tmp_path, capsys, setting, hint):
    assert main(["status", "--profile", "quick", "--root", str(tmp_path), "--set", setting]) == 2
    assert f"(did you mean {hint}?)" in capsys.readouterr().err


def test_a_setting_like_no_other_names_none(tmp_path, capsys):
    assert main(["status", "--profile", "quick", "--root", str(tmp_path), "--set", "training.zzz=3"]) == 2
    assert "did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize("environment, arguments, profile", [
    ({}, [], "subset"), ({"DNNLS_PROFILE": "quick"}, [], "quick"), ({"DNNLS_PROFILE": "quick"}, ["PROFILE=full"], "full")])
def test_make_honours_dnnls_profile(tmp_path, environment, arguments, profile):
    env = {key: value for key, value in os.environ.items() if key not in ("DNNLS_PROFILE", "PROFILE", "MAKEFLAGS")}
    result = subprocess.run(["make", "-n", "study", f"VENV={tmp_path / 'venv'}", *arguments], cwd=PROJECT_ROOT,
                            env={**env, **environment}, capture_output=True, text=True, check=True)
    assert f"-m dnnls_tf run all --profile {profile}\n" in result.stdout
