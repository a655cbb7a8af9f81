"""The prompt format (plain or chat template) travels with the run; CLI commands answer --help and fail in one line."""

import json

import pytest

from ktune.prompt import PromptFormat

CHAT = ("{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|bot|>{% endif %}")


def test_chat_template_run_saves_a_chat_prompt_format_and_inference_uses_it(tiny_data, tmp_path):
    from ktune.train import load_run
    from ktune.train.generation import greedy_queries
    from ktune.train.tiny import build_tiny_run

    build_tiny_run(tiny_data, tmp_path / "run", steps=150, chat_template=CHAT, answer_fraction=0.0)
    saved = json.loads((tmp_path / "run" / "prompt_format.json").read_text(encoding="utf-8"))
    assert saved["chat_template"] is True
    run = load_run(tmp_path / "run")
    assert run.prompt_format.chat_template
    ids = run.prompt_format.encode_prompt(run.tokenizer, run.prompt_format.query_prompt("高血压应该挂什么科？"))
    assert run.tokenizer.decode(ids) == "<bos><|user|>问题：高血压应该挂什么科？\n查询：\n<|bot|>"
    assert greedy_queries(run.model, run.tokenizer, run.prompt_format, ["高血压应该挂什么科？"]) == [("高血压", "就诊科室")]


def test_plain_prompt_format_is_forced_even_when_the_tokenizer_has_a_chat_template(tiny_data, tmp_path):
    from ktune.train.tiny import build_tiny_run

    build_tiny_run(tiny_data, tmp_path / "run", steps=2, chat_template=CHAT, prompt_format="plain")
    assert PromptFormat.from_pretrained(tmp_path / "run") == PromptFormat()


def test_chat_prompt_format_without_a_chat_template_is_a_clear_error(tiny_data, tmp_path):
    from ktune.errors import ConfigError
    from ktune.train.tiny import build_tiny_run

    with pytest.raises(ConfigError, match="no chat template"):
        build_tiny_run(tiny_data, tmp_path / "run", steps=2, prompt_format="chat")


@pytest.mark.parametrize("argv", [["train", "--help"], ["models", "--help"], ["export", "--help"]])
def test_cli_commands_print_help(argv, capsys):
    from ktune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: ktune" in capsys.readouterr().out


def test_cli_train_reports_missing_data_in_one_line(tmp_path, capsys):
    from ktune.cli.main import main

    assert main(["train", "--base", "x", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ktune data build" in err[0]


def test_cli_train_then_export_writes_a_merged_model_that_predicts_the_same(tiny_run, tmp_path, capsys):
    from ktune.cli.main import main
    from ktune.train import load_run
    from ktune.train.generation import greedy_queries
    from ktune.train.loading import load_tokenizer

    run_dir, _ = tiny_run
    assert main(["export", str(run_dir), "--merge", str(tmp_path / "merged"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["merged"] == str(tmp_path / "merged")
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    tok = load_tokenizer(tmp_path / "merged")
    fmt = PromptFormat.from_pretrained(tmp_path / "merged")
    run = load_run(run_dir)
    qs = ["盐酸二甲双胍片怎么吃？", "黄芪有什么功效？"]
    assert greedy_queries(merged, tok, fmt, qs) == greedy_queries(run.model, run.tokenizer, run.prompt_format, qs)


def test_resolve_base_names_a_folder_without_config_and_passes_hub_ids_through(tmp_path):
    from ktune.errors import ConfigError
    from ktune.models import resolve_base

    assert resolve_base("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_base(str(tmp_path))
    with pytest.raises(ConfigError, match="not prepared"):
        resolve_base("gemma3-270m", prepare_missing=False)


def test_cli_train_reads_a_config_file_applies_flag_overrides_and_records_sources(tiny_data, tmp_path, capsys):
    from ktune.cli.main import main
    from ktune.train.tiny import build_tiny_model, dataset_texts

    base = build_tiny_model(tmp_path / "base", dataset_texts(tiny_data))
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"base: {base}\ndata: {tiny_data}\nsteps: 50\nlr: 0.002\ndtype: fp32\nthreads: 1\n"
                   "eval_every: 0\nsave_every: 0\ntarget_modules: [q_proj, v_proj]\n", encoding="utf-8")
    argv = ["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--steps", "3", "--batching", "pack", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["steps_done"] == 3 and "loss_history" not in out["metrics"]
    sources = out["config"]["sources"]
    assert sources["steps"] == "cli" and sources["lr"] == f"file:{cfg}" and sources["seed"] == "default"
    adapter = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
