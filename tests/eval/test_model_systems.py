"""The knowledge-tuned systems through the pipeline (constrained and free), the oracle ablation and few-shot."""

import json

import pytest

from ktune.eval.fewshot import available_sizes, cpu_schedule, run_fewshot_suite
from ktune.eval.suites import run_retrieval_suite


@pytest.fixture(scope="module")
def suite(tiny_eval_run, tmp_path_factory):
    from ktune.kb import KnowledgeBase

    kb_path, data, run = tiny_eval_run
    out = tmp_path_factory.mktemp("model_eval")
    with KnowledgeBase.open(kb_path) as kb:
        m = run_retrieval_suite(kb, data, run_dir=run, out=out, systems=("model", "model-free", "oracle"),
                                progress=False)
    return m, out


def test_model_systems_are_scored_on_every_split(suite):
    m, out = suite
    assert set(m["systems"]) == {"knowledge-tuned", "knowledge-tuned (free decoding)", "oracle entity + model attribute"}
    for _name, per in m["systems"].items():
        assert per["test_seen"]["n"] == 4 and per["test_no_knowledge"]["n"] == 3
    rows = (out / "predictions" / "test_seen" / "knowledge-tuned.jsonl").read_text("utf-8").splitlines()
    assert len(rows) == 4 and json.loads(rows[0])["system"] == "knowledge-tuned"


def test_trained_model_reproduces_its_training_queries(suite):
    m, _ = suite
    kt = m["systems"]["knowledge-tuned"]["all_test"]
    assert kt["retrieval_accuracy"]["value"] >= 0.75
    assert kt["invalid_query_rate"]["k"] == 0  # constrained decoding never emits a non-KB key


def test_oracle_gets_the_gold_entity_and_predicts_the_attribute(suite):
    m, out = suite
    oracle = m["systems"]["oracle entity + model attribute"]
    assert oracle["test_seen"]["entity_accuracy"]["value"] == 1.0
    assert oracle["test_seen"]["attribute_accuracy"]["value"] >= 0.75
    row = json.loads((out / "predictions" / "test_seen" / "oracle-entity-model-attribute.jsonl")
                     .read_text("utf-8").splitlines()[0])
    assert row["extra"]["oracle"] is True


def test_fewshot_trains_one_run_per_size_and_plots(tiny_eval_run, tmp_path):
    from ktune.eval.report import write_report
    from ktune.kb import KnowledgeBase
    from ktune.train import RunInfo, TrainConfig
    from ktune.train.tiny import build_tiny_run

    kb_path, data, run = tiny_eval_run
    assert available_sizes(data) == [4, 11]
    base = TrainConfig(base=RunInfo.load(run).base_model, batch_size=4)
    assert cpu_schedule(base, 11, epochs=2.0, max_steps=200).steps == 10
    trained = []

    def tiny_train(cfg):
        trained.append((cfg.subset, cfg.steps))
        return build_tiny_run(data, cfg.out, steps=cfg.steps, subset=cfg.subset)

    with KnowledgeBase.open(kb_path) as kb:
        fs = run_fewshot_suite(kb, data, tmp_path, base, train_fn=tiny_train, progress=False)
        assert [n for n, _ in trained] == [4, 11]
        assert set(fs["points"]) == {"4", "11"}
        assert fs["points"]["11"]["test_seen"]["retrieval_accuracy"]["n"] == 4
        trained.clear()
        with_run = run_fewshot_suite(kb, data, tmp_path / "all", base, train_fn=tiny_train, progress=False,
                                     full_run=run)
    n_all = RunInfo.load(run).metrics["data"]["records"]
    assert trained == [(4, 10)] and with_run["sizes"] == [4, n_all]  # the run stands for subsets >= its size
    assert with_run["points"][str(n_all)]["steps"] == RunInfo.load(run).metrics["steps_done"]
    files = write_report({"fewshot": fs}, tmp_path / "report")
    assert files["fewshot_png"].read_bytes()[:4] == b"\x89PNG"
    assert "| 11 |" in (tmp_path / "report" / "report.md").read_text("utf-8")


def test_answers_suite_runs_the_pipeline_and_the_instruction_baseline(tiny_eval_run, tmp_path):
    from ktune.eval.answers import run_answers_suite
    from ktune.eval.suites import EvalConfig
    from ktune.kb import KnowledgeBase

    kb_path, data, run = tiny_eval_run
    cfg = EvalConfig(str(data), str(run), str(tmp_path), suite="answers", baseline_run=str(run), limit=2,
                     real=False, progress=False)
    with KnowledgeBase.open(kb_path) as kb:
        m = run_answers_suite(kb, cfg)
    assert set(m["systems"]) == {"knowledge-tuned", "instruction-tuned (no KB)"}
    kt = m["systems"]["knowledge-tuned"]["all_test"]
    assert kt["n"] == 6 and kt["knowledge_recall"]["n"] == 4
    rows = [json.loads(x) for x in (tmp_path / "answers" / "test_seen" / "knowledge-tuned.jsonl")
            .read_text("utf-8").splitlines()]
    assert all(r["refused"] or "相关知识：" in r["answer"] for r in rows)  # answers carry provenance


def test_eval_quantize_reaches_the_run_pipeline(tiny_eval_run, tmp_path):
    from ktune.cli.main import make_parser
    from ktune.eval.suites import EvalConfig, build_systems
    from ktune.kb import KnowledgeBase

    kb_path, data, run = tiny_eval_run
    args = make_parser().parse_args(["eval", "--data", str(data), "--run", str(run), "--quantize", "int8"])
    assert args.quantize == "int8"
    cfg = EvalConfig(str(data), str(run), str(tmp_path), systems=("model",), real=False, progress=False,
                     quantize="int8")
    with KnowledgeBase.open(kb_path) as kb:
        (system,) = build_systems(kb, cfg)
        assert system.quantize == "int8" and "quantize int8" in system.note
        assert system._load().config.quantize == "int8"  # the loaded pipeline's own setting
