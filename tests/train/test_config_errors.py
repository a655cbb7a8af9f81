"""Bad settings, missing data and unloadable models fail with one clear message naming the value and the fix."""

import json

import pytest

from ktune.errors import ConfigError
from ktune.train import TrainConfig, train


def test_unknown_method_names_the_valid_choices():
    with pytest.raises(ConfigError, match=r"method 'lora' is not one of \('knowledge', 'instruction'\)"):
        TrainConfig(method="lora")


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("lr", 0.0), ("lora_dropout", 1.5), ("subset", 0),
                                         ("answer_fraction", 2.0), ("dtype", "int8"), ("steps", -1)])
def test_out_of_range_settings_are_rejected_with_the_setting_name(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_config_file_then_cli_overrides_and_each_source_is_recorded(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("train:\n  lr: 0.001\n  steps: 40\n  base: gemma3-270m\n", encoding="utf-8")
    cfg = TrainConfig.from_sources(path, {"steps": 7, "batch_size": None})
    assert (cfg.lr, cfg.steps, cfg.base, cfg.batch_size) == (0.001, 7, "gemma3-270m", 8)
    assert cfg.sources["lr"] == f"file:{path}" and cfg.sources["steps"] == "cli"
    assert cfg.sources["batch_size"] == "default"


def test_unknown_setting_in_a_config_file_is_named(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"learning_rate": 1e-4}), encoding="utf-8")
    with pytest.raises(ConfigError, match="learning_rate") as exc:
        TrainConfig.from_sources(path)
    assert str(path) in str(exc.value)


def test_missing_dataset_folder_says_how_to_build_one(tmp_path):
    cfg = TrainConfig(base=str(tmp_path), data=str(tmp_path / "nodata"), out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="ktune data build"):
        train(cfg, progress=False)


def test_base_model_folder_that_does_not_exist_is_named(tiny_data, tmp_path):
    cfg = TrainConfig(base=str(tmp_path / "no_model"), data=str(tiny_data), out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="no_model.*does not exist"):
        train(cfg, progress=False)


def test_base_model_folder_without_weights_is_a_clear_error(tiny_data, tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}", encoding="utf-8")
    cfg = TrainConfig(base=str(tmp_path / "broken"), data=str(tiny_data), out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="cannot load base model"):
        train(cfg, progress=False)


def test_missing_required_paths_are_named():
    with pytest.raises(ConfigError, match="--base"):
        train(TrainConfig(data="x", out="y"), progress=False)
