"""`ktune eval --config FILE`: defaults <- file <- flags, defaults in --help read from the code, bad files named."""

import inspect
import json

import pytest

from ktune.cli.main import main


def _write(path, settings: dict):
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


def _real_split_warnings(caplog) -> int:
    n = sum("real-style split" in r.getMessage() for r in caplog.records)
    caplog.clear()
    return n


def test_a_json_file_sets_the_evaluation_and_flags_override_it(mini_kb, eval_data, tmp_path, capsys, caplog):
    settings = {"data": str(eval_data), "out": str(tmp_path / "report"), "kb": str(mini_kb.store.path),
                "systems": ["rules"]}
    config = _write(tmp_path / "eval.json", {"eval": {**settings, "no_real": True}})
    assert main(["eval", "--config", str(config), "--json"]) == 0
    systems = json.loads(capsys.readouterr().out)["retrieval"]["systems"]
    assert list(systems) == ["rules (dictionary + intent)"]
    assert systems["rules (dictionary + intent)"]["test_seen"]["n"] == 4
    # the mini KB lacks the real-style splits' entities: loading them logs a warning, no_real skips them
    assert _real_split_warnings(caplog) == 0
    assert main(["eval", "--config", str(_write(tmp_path / "real.json", settings)), "--json"]) == 0
    capsys.readouterr()
    assert _real_split_warnings(caplog) > 0
    assert main(["eval", "--config", str(config), "--systems", "bm25-char", "--limit", "2", "--json"]) == 0
    systems = json.loads(capsys.readouterr().out)["retrieval"]["systems"]
    assert len(systems) == 1 and "rules (dictionary + intent)" not in systems  # the flags beat the file
    assert next(iter(systems.values()))["test_seen"]["n"] == 2


@pytest.mark.parametrize("settings,expected", [
    ({"sytems": "rules"}, "unknown setting 'sytems'"),
    ({"limit": "2"}, "setting 'limit'"),
    ({"suite": "retreival"}, "'retreival', not one of retrieval, answers"),
])
def test_a_bad_setting_is_named_with_the_file(tmp_path, capsys, settings, expected):
    config = _write(tmp_path / "eval.json", settings)
    assert main(["eval", "--config", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(config) in err


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    assert main(["eval", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "config file" in capsys.readouterr().err


def test_help_shows_the_defaults_the_code_uses(capsys):
    from ktune.eval.fewshot import run_fewshot_suite
    from ktune.eval.suites import ALL_SYSTEMS, EvalConfig

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    max_steps = inspect.signature(run_fewshot_suite).parameters["max_steps"].default
    assert f"step cap per few-shot run (default {max_steps})" in text
    assert f"default {EvalConfig.suite};" in text
    assert f"subset of {ALL_SYSTEMS[0]},{ALL_SYSTEMS[1]}" in text and f"{ALL_SYSTEMS[-1]} (default: all)" in text
    assert "--config FILE" in text
