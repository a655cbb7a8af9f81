"""A tiny model learns the query step; runs save, reload and predict exactly what the trained model predicted."""

import dataclasses
import json

import pytest

from ktune.data.dataset import Dataset
from ktune.prompt import PromptFormat
from ktune.train import load_run
from ktune.train.generation import greedy_queries


def test_tiny_model_generates_the_exact_entity_and_attribute_of_a_training_question(tiny_run):
    run_dir, _ = tiny_run
    run = load_run(run_dir)
    preds = greedy_queries(run.model, run.tokenizer, run.prompt_format, ["盐酸二甲双胍片怎么吃？", "高血压应该挂什么科？"])
    assert preds == [("盐酸二甲双胍片", "用法用量"), ("高血压", "就诊科室")]


def test_tiny_model_answers_no_query_for_a_question_outside_the_kb(tiny_run):
    run = load_run(tiny_run[0])
    assert greedy_queries(run.model, run.tokenizer, run.prompt_format, ["量子康复胶囊有什么副作用？"]) == [(None, None)]


def test_reloaded_run_repeats_the_predictions_the_trained_model_made(tiny_run):
    run_dir, info = tiny_run
    final = info.metrics["evals"][-1]
    questions = [e["question"] for e in final["examples"]]
    for merge in (True, False):
        run = load_run(run_dir, merge=merge)
        preds = greedy_queries(run.model, run.tokenizer, run.prompt_format, questions)
        assert [list(p) for p in preds] == [e["pred"] for e in final["examples"]]


def test_run_folder_holds_adapter_tokenizer_prompt_format_and_info(tiny_run, tiny_data):
    run_dir, info = tiny_run
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    assert (run_dir / "curve.png").is_file()
    saved = json.loads((run_dir / "ktune.json").read_text(encoding="utf-8"))
    assert saved["kb_version"] == "kbhash" and saved["data_version"] == "test-1"
    assert saved["schema_version"] == "cmekg-attributes-1"
    assert saved["config"]["steps"] == 300 and saved["config"]["sources"]["steps"] == "python"
    assert saved["metrics"]["steps_done"] == 300
    assert [e["step"] for e in saved["metrics"]["evals"]] == [150, 300]
    assert saved["metrics"]["dev_entity_acc"] >= 0.9


def test_prompt_format_saved_with_the_run_is_the_one_loaded_for_inference(tiny_run):
    run = load_run(tiny_run[0])
    assert run.prompt_format == PromptFormat()
    assert json.loads((tiny_run[0] / "prompt_format.json").read_text(encoding="utf-8"))["query_template"] == "问题：{question}\n查询："


def test_generation_check_scores_dev_questions_by_exact_match(tiny_run, tiny_data):
    from ktune.train.generation import query_accuracy

    run = load_run(tiny_run[0])
    records = Dataset.load(tiny_data).records("dev")[:6]
    wrong = [dataclasses.replace(r, entity="不存在的药") for r in records]
    assert query_accuracy(run.model, run.tokenizer, run.prompt_format, wrong)["entity_acc"] == 0.0
    assert query_accuracy(run.model, run.tokenizer, run.prompt_format, records)["entity_acc"] == pytest.approx(1.0)


def test_lm_head_of_a_loaded_run_always_gets_contiguous_input_so_generate_does_not_copy_the_head(tiny_run):
    """Frozen weights + generate()'s non-contiguous last-position slice made matmul copy a batch-expanded head."""
    run = load_run(tiny_run[0])
    head = run.model.get_output_embeddings()
    assert not head.weight.requires_grad
    seen = []
    handle = head.register_forward_hook(lambda mod, args, out: seen.append(args[0].is_contiguous()))
    try:
        greedy_queries(run.model, run.tokenizer, run.prompt_format, ["高血压应该挂什么科？", "黄芪有什么功效？"])
    finally:
        handle.remove()
    assert seen and all(seen)
