
import pytest

from dnnls_tf.experiments import load_config
from dnnls_tf.study.config import CONFIG_DIR, PROFILES, parse_setting
from dnnls_tf.errors import ConfigError


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads(profile):
    config = load_config(profile)
    assert config.profile == profile
    assert config.data.split_seed == 2023
    assert 0 in config.exp2.dropout_rates
    assert not set(config.exp1.probe_seeds) & set(config.training.seeds)


def test_subset_trains_twenty_epochs_with_five_seeds():
    config = load_config("subset")
    assert config.training.epochs == 20 and config.training.seeds == (0, 1, 2, 3, 4)
    assert config.window_epochs == 5 and config.training.window_epochs == 5


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DNNLS_PROFILE", "quick")
    assert load_config().profile == "quick"


def _folder_with(tmp_path, profile_text="", base_edit=None):
    folder = tmp_path / "configs"
    folder.mkdir()
    base = (CONFIG_DIR / "base.yaml").read_text()
    (folder / "base.yaml").write_text(base_edit(base) if base_edit else base)
    (folder / "quick.yaml").write_text(profile_text)
    return folder


@pytest.mark.parametrize("text, message", [
    ("training:\n  epohcs: 3\n", "unknown key 'training.epohcs'"),
    ("training:\n  epochs: three\n", "'training.epochs' must be of type int"),
    ("training:\n  epochs: -1\n", "'training.epochs' must be a positive integer"),
    ("training:\n  seeds: []\n", "'training.seeds' must be a non-empty list"),
    ("training:\n  seeds: [0, 0]\n", "distinct"),
    ("training:\n  learning_rate: .inf\n", "'training.learning_rate' must be a finite number"),
    ("training:\n  momentum: .nan\n", "'training.momentum' must be a finite number"),
    ("exp2:\n  dropout_rates: [0.0, 0.2, 0.4, 0.6, 1.0]\n", "'exp2.dropout_rates' must be five different rates"),
    ("exp2:\n  dropout_rates: [0.1, 0.2, 0.4, 0.6, 0.8]\n", "one of them 0"),
    ("exp2:\n  dropout_rates: [0, 0, 0, 0, 0]\n", "five different rates"),
    ("exp1:\n  probe_seeds: [0]\n", "probe and tuner seeds must differ"),
    ("exp1:\n  tuner_seed: 3\n", "probe and tuner seeds must differ"),
    ("data:\n  max_train: 1\n", "'data.max_train' must be null or an integer >= 10"),
    ("training: [1, 2\n", "malformed YAML"),
    ("compute:\n  workers: 0\n", "'compute.workers' must be an integer in 1..64"),
    ("compute:\n  workers: 65\n", "'compute.workers' must be an integer in 1..64"),
    ("training:\n  seeds: [0, 4294967296]\n", "'training.seeds' must be a non-empty list of distinct integers in "
                                             "0..2^32-1"),
    ("exp1:\n  tuner_seed: 4294967296\n", "'exp1.tuner_seed' must be an integer in 0..2^32-1"),
    ("exp1:\n  ladder_factor: 1.0001\n", "'exp1.ladder_factor' 1.0001 would make a ladder of up to 103,095 rungs"),
    ("exp1:\n  max_span: 1.0e+9\n", "'exp1.max_span' 1e+09 is wider than the range test's span"),
    ("exp1:\n  tuner_trials: 100000\n", "'exp1.tuner_trials' must be an integer in 1..200"),
    ("training:\n  epochs: 3\ntraining:\n  seeds: [0]\n", "malformed YAML at line 3 (duplicate key 'training')"),
    ("training:\n  epochs: 3\n  epochs: 4\n", "duplicate key 'epochs'"),
    ("a: &a [1, 2]\nb: *a\n", "aliases (*name) are not allowed in settings"),
    ("data: 3\n", "'data' must be a mapping"),
])
def test_bad_profile_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_config("quick", config_dir=_folder_with(tmp_path, text))
    assert message in str(error.value) and "quick.yaml" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_typo_in_base_yaml_is_an_error_not_schema(tmp_path):
    folder = _folder_with(tmp_path, base_edit=lambda text: text.replace("  momentum: 0.9", "  momentun: 0.9"))
    with pytest.raises(ConfigError, match="base.yaml: unknown key 'training.momentun'"):
        load_config("quick", config_dir=folder)


def test_settings_and_files_override_the_profile(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("training:\n  epochs: 7\n")
    config = load_config("quick", config_file=extra, settings={"exp1.tuner_trials": 3})
    assert config.training.epochs == 7 and config.exp1.tuner_trials == 3
    assert parse_setting("training.seeds=[0, 1]") == ("training.seeds", [0, 1])
    with pytest.raises(ConfigError, match="unknown key 'training.epohcs'"):
        load_config("quick", settings={"training.epohcs": 3})
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_setting("epochs")


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("huge")
    with pytest.raises(ConfigError, match="unknown profile ''"):
        load_config("")
