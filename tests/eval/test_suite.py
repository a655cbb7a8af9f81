"""The retrieval suite end to end on the fixture KB: rows per item, metrics with CIs, report files."""

import json

import pytest

from ktune.errors import ConfigError, InputError
from ktune.eval.report import format_results_table
from ktune.eval.suites import EvalConfig, run_retrieval_suite
from tests.eval.conftest import QUESTIONS


def write_predictions(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def predict_line(rec, entity, attribute, kb, alias=None):
    """A `ktune predict` output line: the input record's fields + the pipeline's Answer fields."""
    know = kb.acquire_knowledge(entity, attribute) if entity and attribute and kb.has_entity(entity) else {}
    return {**{k: v for k, v in rec.items() if k not in ("knowledge", "answer")},
            "input_knowledge": rec["knowledge"], "query": {"entity": alias or entity, "attribute": attribute},
            "linked_entity": entity if know or (entity and kb.has_entity(entity)) else None,
            "knowledge": know, "answer": None, "refused": not know,
            "refusal_reason": None if know else "no_query"}


@pytest.fixture
def records(eval_data):
    out = []
    for split in ("test_seen", "test_unseen", "test_no_knowledge"):
        out += [json.loads(line) for line in (eval_data / f"{split}.jsonl").read_text("utf-8").splitlines()]
    return out


def test_suite_writes_rows_metrics_report_and_plot(mini_kb, eval_data, tmp_path):
    out = tmp_path / "eval"
    m = run_retrieval_suite(mini_kb, eval_data, out=out, systems=("rules", "bm25-char"), progress=False)
    assert set(m["systems"]) == {"rules (dictionary + intent)", "BM25 (char)"}
    rules = m["systems"]["rules (dictionary + intent)"]
    assert rules["test_seen"]["retrieval_accuracy"]["n"] == 4
    assert rules["test_seen"]["retrieval_accuracy"]["k"] == 4
    assert rules["test_no_knowledge"]["refusal"]["recall"]["value"] == 1.0
    lo, hi = rules["test_seen"]["retrieval_accuracy"]["ci95"]
    assert lo < 1.0 and hi == pytest.approx(1.0)
    rows = (out / "predictions" / "test_unseen" / "rules-dictionary-intent.jsonl").read_text("utf-8").splitlines()
    assert len(rows) == sum(1 for q in QUESTIONS if q[0] == "test_unseen")
    assert {"question", "gold_entity", "pred_entity", "retrieval_correct"} <= set(json.loads(rows[0]))
    saved = json.loads((out / "metrics.json").read_text("utf-8"))
    assert saved["retrieval"]["systems"]["BM25 (char)"]["test_seen"]["n"] == 4
    report = (out / "report.md").read_text("utf-8")
    assert "| rules (dictionary + intent) |" in report and "95% Wilson CI" in report and "71.4%" in report
    assert (out / "retrieval.png").read_bytes()[:4] == b"\x89PNG"


def test_results_table_lists_systems_and_the_papers_figures(mini_kb, eval_data, tmp_path):
    m = run_retrieval_suite(mini_kb, eval_data, out=tmp_path / "e", systems=("rules",), progress=False,
                            write_report=False)
    table = format_results_table(m)
    assert "rules (dictionary + intent)" in table and "86.7" in table and "~55" in table
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_a_predictions_file_is_scored_like_a_system(mini_kb, eval_data, records, tmp_path):
    lines = []
    for rec in records:
        if rec["question"] == "格华止的用法用量是什么？":  # right entry through an alias
            lines.append(predict_line(rec, "盐酸二甲双胍片", "用法用量", mini_kb, alias="格华止"))
        elif rec["question"] == "黄芪的功效是什么？":  # wrong attribute
            lines.append(predict_line(rec, "黄芪", "性味", mini_kb))
        elif rec["question"] == "偏头痛有哪些症状？":  # a query naming no KB key, refused: off-KB, not invalid
            lines.append(predict_line(rec, "偏头痛症", "临床表现", mini_kb))
        else:
            lines.append(predict_line(rec, rec["entity"], rec["attribute"], mini_kb))
    path = tmp_path / "pred.jsonl"
    write_predictions(path, lines)
    m = run_retrieval_suite(mini_kb, eval_data, out=tmp_path / "e", systems=(), predictions=(path,), progress=False)
    s = m["systems"]["predictions:pred"]
    assert (s["test_seen"]["retrieval_accuracy"]["k"], s["test_seen"]["retrieval_accuracy"]["n"]) == (3, 4)
    assert (s["test_unseen"]["retrieval_accuracy"]["k"], s["test_unseen"]["attribute_accuracy"]["k"]) == (3, 3)
    assert s["all_test"]["off_kb_query_rate"]["k"] == 1
    assert s["all_test"]["invalid_query_rate"]["k"] == 0
    assert s["test_no_knowledge"]["refusal"]["recall"]["value"] == 1.0


def test_a_predictions_file_missing_questions_is_refused(mini_kb, eval_data, records, tmp_path):
    path = tmp_path / "short.jsonl"
    write_predictions(path, [predict_line(records[0], records[0]["entity"], records[0]["attribute"], mini_kb)])
    with pytest.raises(InputError, match="no prediction for"):
        run_retrieval_suite(mini_kb, eval_data, out=tmp_path / "e", systems=(), predictions=(path,), progress=False)


def test_eval_config_names_bad_values(eval_data, tmp_path):
    with pytest.raises(ConfigError, match="bm25-word"):
        EvalConfig(str(eval_data), out=str(tmp_path), systems=("bm25",))
    with pytest.raises(ConfigError, match="ktune data build"):
        EvalConfig(str(tmp_path / "nope"), out=str(tmp_path))
    with pytest.raises(ConfigError, match="--out"):
        EvalConfig(str(eval_data))
    with pytest.raises(ConfigError, match="quantize 'int4' is not one of"):
        EvalConfig(str(eval_data), out=str(tmp_path), quantize="int4")


def test_a_dataset_from_another_kb_is_flagged_in_the_report(mini_kb, eval_data, tmp_path):
    manifest = json.loads((eval_data / "manifest.json").read_text("utf-8"))
    (eval_data / "manifest.json").write_text(json.dumps({**manifest, "kb_version": "other"}), "utf-8")
    m = run_retrieval_suite(mini_kb, eval_data, out=tmp_path / "e", systems=("rules",), progress=False)
    assert any("KB other" in w for w in m["warnings"])
    assert "**Warning:** dataset built on KB other" in (tmp_path / "e" / "report.md").read_text("utf-8")


def test_an_off_kb_query_is_invalid_only_when_the_system_acts_on_it(mini_kb, eval_data):
    from ktune.eval.items import load_split
    from ktune.eval.retrieval import score_item
    from ktune.eval.systems import Prediction, lookup

    item = next(it for it in load_split(eval_data, "test_seen") if it.entity == "偏头痛")
    valid = score_item(item, lookup(mini_kb, "偏头痛", "临床表现"), mini_kb)
    assert not valid["off_kb_query"] and not valid["invalid_query"] and valid["retrieval_correct"]
    refused = score_item(item, Prediction("偏头痛症", "临床表现", None, {}, True), mini_kb)
    assert refused["off_kb_query"] and not refused["invalid_query"]
    know = mini_kb.acquire_knowledge("偏头痛", "临床表现")
    guessed = score_item(item, Prediction("偏头痛症", "临床表现", "偏头痛", know, False), mini_kb)
    assert guessed["off_kb_query"] and guessed["invalid_query"] and guessed["retrieval_correct"]
