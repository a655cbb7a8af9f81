"""The answers suite scored from predictions files, and `ktune eval` end to end on the fixture KB."""

import json

import pytest

from ktune.cli.main import main
from ktune.eval.answers import aggregate_answers, run_answers_suite, score_answer
from ktune.eval.items import TestItem
from ktune.eval.suites import EvalConfig
from ktune.eval.systems import Prediction
from ktune.prompt import provenance_line

KNOW = {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"]}}
ITEM = TestItem("1", "急性中耳炎吃什么药？", "急性中耳炎", "药物治疗", KNOW, split="test_seen")
NO_KB = TestItem("2", "糖尿病足怎么治疗？", None, None, {}, kind="no_knowledge", split="test_no_knowledge")


def test_grounded_answer_states_knowledge_and_claims_nothing_else(mini_kb):
    pred = Prediction("急性中耳炎", "药物治疗", "急性中耳炎", KNOW, answer=f"可用阿莫西林、头孢菌素。\n{provenance_line(KNOW)}")
    row = score_answer(ITEM, pred, mini_kb)
    assert row["knowledge_recall"] == pytest.approx(2 / 3)
    assert row["unsupported_claims"] == [] and row["refusal_correct"]


def test_memory_answer_is_flagged_as_unsupported(mini_kb):
    pred = Prediction(None, None, None, {}, answer="急性中耳炎可以吃布洛芬缓释胶囊。")
    row = score_answer(ITEM, pred, mini_kb)
    assert row["unsupported_claims"] == ["布洛芬缓释胶囊"] and row["knowledge_recall"] == 0.0


def test_refusals_count_as_correct_only_without_knowledge(mini_kb):
    refusal = Prediction(None, None, None, {}, refused=True, answer="知识库中没有相关信息。")
    rows = [score_answer(NO_KB, refusal, mini_kb), score_answer(ITEM, refusal, mini_kb)]
    agg = aggregate_answers(rows)
    assert agg["refusal_correctness"]["k"] == 1 and agg["refusal_recall"]["value"] == 1.0
    assert agg["knowledge_recall"]["mean"] == 0.0 and agg["answered"] == 0


def test_a_question_term_repeated_by_the_answer_is_an_unsupported_claim(mini_kb):
    item = TestItem("3", "急性中耳炎可以用布洛芬缓释胶囊治疗吗？", "急性中耳炎", "药物治疗", KNOW, split="test_seen")
    pred = Prediction("急性中耳炎", "药物治疗", "急性中耳炎", KNOW,
                      answer=f"急性中耳炎可以用布洛芬缓释胶囊。\n{provenance_line(KNOW)}")
    assert score_answer(item, pred, mini_kb)["unsupported_claims"] == ["布洛芬缓释胶囊"]


def test_value_fidelity_and_predicate_as_value_are_read_from_the_sentences(mini_kb):
    know = {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素"], "相关药物": ["阿莫西林胶囊"]}}
    good = Prediction("急性中耳炎", "药物治疗", "急性中耳炎", know, answer="急性中耳炎常用的药物有：阿莫西林、头孢菌素。")
    bad = Prediction("急性中耳炎", "药物治疗", "急性中耳炎", know,
                     answer="急性中耳炎常用的药物有：阿莫西林、头孢类、相关药物。")
    rows = [score_answer(ITEM, good, mini_kb), score_answer(ITEM, bad, mini_kb)]
    assert (rows[0]["verbatim_values"], rows[0]["stated_values"]) == (2, 2)
    assert (rows[1]["verbatim_values"], rows[1]["stated_values"]) == (1, 3)
    assert rows[1]["predicates_as_values"] == ["相关药物"]
    agg = aggregate_answers(rows)
    assert agg["value_fidelity"]["value"] == pytest.approx(3 / 5)
    assert agg["predicate_as_value_rate"]["k"] == 1


def test_the_raw_model_body_is_scored_as_the_answer_without_the_claim_check(mini_kb):
    raw = "急性中耳炎可以吃布洛芬缓释胶囊。"
    checked = f"根据知识库，急性中耳炎的药物治疗：阿莫西林、头孢菌素、镇痛药。\n{provenance_line(KNOW)}"
    pred = Prediction("急性中耳炎", "药物治疗", "急性中耳炎", KNOW, answer=checked,
                      extra={"raw_answer": raw, "dropped_claims": [{"text": raw, "reason": "unsupported_term"}]})
    agg = aggregate_answers([score_answer(ITEM, pred, mini_kb)])
    assert agg["unsupported_claim_rate"]["value"] == 0.0 and agg["dropped_claim_rate"]["value"] == 1.0
    assert agg["value_fidelity"]["value"] == 1.0
    assert agg["without_claim_check"]["unsupported_claim_rate"]["value"] == 1.0


def test_answers_suite_compares_predictions_files(mini_kb, eval_data, tmp_path):
    grounded, memory = [], []
    for split in ("test_seen", "test_unseen", "test_no_knowledge"):
        for line in (eval_data / f"{split}.jsonl").read_text("utf-8").splitlines():
            rec = json.loads(line)
            ok = bool(rec["knowledge"])
            grounded.append({"question": rec["question"], "knowledge": rec["knowledge"], "refused": not ok,
                             "answer": rec["answer"], "query": {"entity": rec["entity"], "attribute": rec["attribute"]}})
            memory.append({"question": rec["question"], "answer": "建议服用布洛芬缓释胶囊。", "refused": False})
    for name, rows in (("kt.jsonl", grounded), ("it.jsonl", memory)):
        (tmp_path / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    cfg = EvalConfig(str(eval_data), out=str(tmp_path / "out"), suite="answers",
                     predictions=(str(tmp_path / "kt.jsonl"), str(tmp_path / "it.jsonl")), progress=False)
    m = run_answers_suite(mini_kb, cfg)
    kt, it = m["systems"]["predictions:kt"]["all_test"], m["systems"]["predictions:it"]["all_test"]
    assert kt["knowledge_recall"]["mean"] == pytest.approx(1.0)
    assert kt["refusal_correctness"]["value"] == 1.0 and it["refusal_recall"]["value"] == 0.0
    assert kt["unsupported_claim_rate"]["value"] == 0.0 and it["unsupported_claim_rate"]["value"] == 1.0
    assert (tmp_path / "out" / "answers" / "test_seen" / "predictions-kt.jsonl").is_file()


def test_eval_cli_writes_report_and_json_summary(mini_kb, eval_data, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval", "--data", str(eval_data), "--out", str(out), "--kb", str(mini_kb.store.path),
                 "--systems", "rules,bm25-char", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["retrieval"]["systems"]["rules (dictionary + intent)"]["test_seen"]["n"] == 4
    assert (out / "report.md").is_file() and (out / "metrics.json").is_file()
    assert main(["eval", "--data", str(eval_data), "--out", str(out), "--kb", str(mini_kb.store.path),
                 "--systems", "rules"]) == 0
    assert "paper: knowledge-tuned 7B" in capsys.readouterr().out


def test_eval_cli_reports_a_missing_dataset_in_one_line(mini_kb, tmp_path, capsys):
    code = main(["eval", "--data", str(tmp_path / "none"), "--out", str(tmp_path), "--kb", str(mini_kb.store.path)])
    assert code == 2 and "ktune data build" in capsys.readouterr().err


def test_h2_export_and_import_through_the_cli(tmp_path, capsys):
    adir = tmp_path / "eval" / "answers" / "test_seen"
    adir.mkdir(parents=True)
    rows = [{"system": s, "id": "q1", "split": "test_seen", "question": "问题", "answer": f"回答{s}"} for s in "ab"]
    for r in rows:
        (adir / f"{r['system']}.jsonl").write_text(json.dumps(r, ensure_ascii=False) + "\n", "utf-8")
    assert main(["eval", "h2-export", "--answers", str(tmp_path / "eval"), "--out", str(tmp_path / "h2"), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    text = open(paths["csv"], encoding="utf-8-sig").read().replace(",,,", ",4,5,")
    (tmp_path / "r1.csv").write_text(text, "utf-8")
    assert main(["eval", "h2-import", "--key", paths["key"], str(tmp_path / "r1.csv"), "--out",
                 str(tmp_path / "eval"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["means"]["a"]["helpfulness"]["mean"] == 4.0
    assert "H2: helpfulness" in (tmp_path / "eval" / "report.md").read_text("utf-8")


@pytest.mark.parametrize("argv", [["eval"], ["eval", "h2-export"], ["eval", "h2-import"]])
def test_eval_help_renders(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0 and "usage" in capsys.readouterr().out
