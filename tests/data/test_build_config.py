"""`ktune data build --config FILE`: defaults <- file <- flags, and a bad file named with the key at fault."""

import json

from ktune.cli.main import main
from ktune.data.config import DataConfig

from .conftest import FIXTURE


def test_a_yaml_file_sets_the_build_and_flags_override_it(tmp_path, capsys):
    from ktune.kb import KnowledgeBase

    kb_path = tmp_path / "kb.sqlite"
    with KnowledgeBase.open(kb_path, create=True) as kb:
        kb.import_file(FIXTURE)
    out = tmp_path / "data"
    config = tmp_path / "build.yaml"
    config.write_text(f"data:\n  out: {out}\n  kb: {kb_path}\n  size: 100\n  dev_size: 7\n  seed: 3\n"
                      "  exports: false\n", encoding="utf-8")
    code = main(["data", "build", "--config", str(config), "--seed", "5", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["ok"]
    assert result["counts"]["train"] == 100  # size, from the file
    assert result["counts"]["dev"] == 7  # an explicit split size wins over the scaled one
    assert result["counts"]["test_seen"] == 10  # scaled from size
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 5  # the flag beats the file
    assert not (out / "exports").exists()


def _build_error(tmp_path, capsys, settings: dict, *flags: str) -> str:
    config = tmp_path / "build.json"
    config.write_text(json.dumps(settings), encoding="utf-8")
    code = main(["data", "build", "--config", str(config), "--kb", str(tmp_path / "none.sqlite"), *flags])
    assert code == 2
    return capsys.readouterr().err


def test_an_unknown_key_is_named_with_the_file(tmp_path, capsys):
    err = _build_error(tmp_path, capsys, {"out": str(tmp_path / "d"), "sise": 100})
    assert "unknown setting 'sise'" in err and str(tmp_path / "build.json") in err
    assert "train_size" in err  # the valid settings are listed


def test_a_value_of_the_wrong_type_is_named_with_the_file(tmp_path, capsys):
    err = _build_error(tmp_path, capsys, {"out": str(tmp_path / "d"), "seed": "three"})
    assert "setting 'seed'" in err and "must be int" in err and str(tmp_path / "build.json") in err


def test_the_output_folder_is_required_from_the_file_or_a_flag(tmp_path, capsys):
    err = _build_error(tmp_path, capsys, {"seed": 1})
    assert "--out DIR" in err and "--config" in err


def test_the_split_sizes_scale_from_train_size_when_size_is_not_given():
    cfg = DataConfig.from_settings({"train_size": 200, "test_seen_size": 3, "fewshot_sizes": [50, 100]})
    assert (cfg.train_size, cfg.dev_size, cfg.test_seen_size, cfg.fewshot_sizes) == (200, 20, 3, (50, 100))
    assert DataConfig.from_settings({}) == DataConfig.scaled(DataConfig.train_size)
