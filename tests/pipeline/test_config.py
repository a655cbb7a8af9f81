"""PipelineConfig validation: bad values name the valid choices."""

import json

import pytest

from ktune.errors import ConfigError
from ktune.pipeline.config import PipelineConfig


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"query_mode": "magic"}, "free, greedy"),
        ({"num_beams": 0}, "num_beams"),
        ({"dtype": "int4"}, "bf16"),
        ({"attribute_scope": "all"}, "entity, kind"),
        ({"refusal_template": "没有"}, "{entity}"),
    ],
)
def test_bad_pipeline_settings_raise_config_error_naming_the_choices(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PipelineConfig(**kwargs)


def test_config_file_values_are_overridden_by_flags(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"query_mode": "rerank", "num_beams": 6}), encoding="utf-8")
    cfg = PipelineConfig.from_json_file(path, query_mode="free", num_beams=None)
    assert (cfg.query_mode, cfg.num_beams) == ("free", 6)


def test_unknown_keys_in_a_config_file_are_rejected(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"beams": 6}), encoding="utf-8")
    with pytest.raises(ConfigError, match="beams"):
        PipelineConfig.from_json_file(path)
