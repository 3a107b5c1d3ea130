import shutil

import pytest

from dnnls_tf.config import CONFIG_DIR, PROFILES, load_config
from dnnls_tf.errors import ConfigError


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads(profile):
    config = load_config(profile)
    assert config["profile"] == profile
    assert config["data"]["split_seed"] == 2023
    assert 0 in config["exp2"]["dropout_rates"]


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DNNLS_PROFILE", "quick")
    assert load_config()["profile"] == "quick"


def _profile_with(tmp_path, text):
    shutil.copy(CONFIG_DIR / "base.yaml", tmp_path / "base.yaml")
    (tmp_path / "quick.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, message", [
    ("training:\n  epohcs: 3\n", "unknown key 'training.epohcs'"),
    ("training:\n  epochs: three\n", "'training.epochs' must be of type int"),
    ("training:\n  epochs: -1\n", "'training.epochs' must be a positive integer"),
    ("training:\n  seeds: []\n", "'training.seeds' must be a non-empty list"),
    ("exp2:\n  dropout_rates: [0.0, 0.2, 0.4, 0.6, 1.0]\n", "'exp2.dropout_rates' must be five rates in [0, 1)"),
    ("exp2:\n  dropout_rates: [0.1, 0.2, 0.4, 0.6, 0.8]\n", "one of them 0"),
    ("training: [1, 2\n", "malformed YAML"),
    ("compute:\n  workers: 0\n", "'compute.workers' must be a positive integer"),
    ("compute:\n  intra_op_threads: -1\n", "'compute.intra_op_threads' must be a non-negative integer"),
    ("data: 3\n", "'data' must be a mapping"),
])
def test_bad_profile_is_one_clear_error(tmp_path, text, message):
    folder = _profile_with(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config("quick", config_dir=folder)
    assert message in str(error.value)
    assert "quick.yaml" in str(error.value)


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("huge")
