"""Labelled question files (`ktune eval --items`, the real-style splits): format, scoring by gold predicates,
label checks against a KB, and the CLI end to end on the fixture KB."""

import json
import os

import pytest

from ktune.cli.main import main
from ktune.errors import InputError
from ktune.eval.items import REAL_SPLITS, load_labelled, load_real, read_labels, real_split_path
from ktune.eval.realstyle import check_files, check_labels, split_of
from ktune.eval.retrieval import score_item
from ktune.eval.systems import Prediction, lookup

TREATMENT = ["治疗", "治疗方案", "药物治疗", "相关药物", "辅助治疗", "手术治疗"]
ITEMS = [
    {"id": "q1", "question": "孩子急性中耳炎了怎么办", "gold_entities": ["急性中耳炎"], "gold_predicates": TREATMENT,
     "in_kb": True, "attribute": "治疗方案", "style": "lay_name"},
    {"id": "q2", "question": "偏头疼是什么症状", "gold_entities": ["偏头痛"],
     "gold_predicates": ["常见症状", "临床症状及体征"], "in_kb": True, "style": "typo"},
    {"id": "q3", "question": "偏头痛怎么预防", "gold_entities": ["偏头痛"], "gold_predicates": ["预防"], "in_kb": False},
    {"id": "q4", "question": "失眠吃什么药好", "gold_entities": [], "gold_predicates": [], "in_kb": False},
    {"id": "q5", "question": "阿莫西林能治什么", "entity": "阿莫西林胶囊", "attribute": "适应症"},
]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    "utf-8")
    return path


@pytest.fixture
def items_file(tmp_path):
    return write_jsonl(tmp_path / "mine.jsonl", ITEMS)


def test_both_record_forms_load_as_items_with_gold_predicates(mini_kb, items_file):
    items = {it.id: it for it in load_labelled(items_file, mini_kb)}
    assert items["q1"].split == "mine" and items["q1"].template == "real/lay_name"
    assert items["q1"].knowledge == {"急性中耳炎": {"治疗": ["全身治疗", "局部治疗"], "药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"],
                                                 "相关药物": ["阿莫西林胶囊"]}}
    assert items["q3"].should_refuse and items["q3"].entity == "偏头痛"  # a KB entity the KB has no 预防 facts for
    assert items["q4"].should_refuse and items["q4"].entity is None
    single = items["q5"]
    assert single.gold_predicates == mini_kb.schema.attributes["适应症"].predicates and not single.should_refuse


def test_in_kb_left_out_is_read_from_the_kb(mini_kb, tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"question": "偏头痛怎么预防", "gold_entities": ["偏头痛"],
                                               "gold_predicates": ["预防"]},
                                              {"question": "偏头痛挂什么科", "gold_entities": ["偏头痛"],
                                               "gold_predicates": ["就诊科室"]}])
    prevent, dept = load_labelled(path, mini_kb)
    assert prevent.should_refuse and not dept.should_refuse and prevent.id == "f-1"


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"gold_entities": [], "gold_predicates": [], "in_kb": false}', "non-empty string `question`"),
    ('{"question": "x", "gold_entities": ["偏头痛"]}', "missing gold_predicates"),
    ('{"question": "x", "gold_entities": "偏头痛", "gold_predicates": ["预防"]}', "gold_entities must be a list"),
    ('{"question": "x", "gold_entities": [], "gold_predicates": [], "in_kb": "yes"}', "in_kb must be true or false"),
    ('{"question": "x", "gold_entities": [], "gold_predicates": [], "in_kb": true}', "in_kb is true but"),
    ('{"question": "x", "entity": "偏头痛", "gold_entities": ["偏头痛"], "gold_predicates": []}', "not both"),
    ('{"question": "x", "entity": "偏头痛"}', "needs an attribute"),
    ('{"question": "x", "entity": "偏头痛", "attribute": "疗效"}', "attribute '疗效' is not in the schema"),
])
def test_a_malformed_record_names_file_and_line(mini_kb, tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [ITEMS[0], line])
    with pytest.raises(InputError, match=message) as exc:
        read_labels(path, mini_kb.schema)
    assert f"{path}:2:" in str(exc.value)


def test_a_repeated_id_is_an_error(mini_kb, tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [ITEMS[0], ITEMS[0]])
    with pytest.raises(InputError, match="id 'q1' already used on line 1"):
        read_labels(path, mini_kb.schema)


def test_retrieval_is_right_for_any_attribute_that_fetches_a_gold_predicate(mini_kb, items_file):
    treat = next(it for it in load_labelled(items_file, mini_kb) if it.id == "q1")
    # 治疗方案 fetches 治疗, 药物治疗 fetches 药物治疗 / 相关药物: both answer "怎么办"
    for attribute in ("治疗方案", "药物治疗"):
        row = score_item(treat, lookup(mini_kb, "急性中耳炎", attribute), mini_kb)
        assert row["retrieval_correct"] and row["entity_correct"] and row["attribute_correct"], attribute
    symptoms = score_item(treat, lookup(mini_kb, "急性中耳炎", "临床表现"), mini_kb)
    assert symptoms["entity_correct"] and not symptoms["retrieval_correct"] and not symptoms["attribute_correct"]


def test_a_wrong_entity_is_wrong_even_with_a_gold_predicate(mini_kb, items_file):
    treat = next(it for it in load_labelled(items_file, mini_kb) if it.id == "q1")
    row = score_item(treat, lookup(mini_kb, "肝胆管结石病", "治疗方案"), mini_kb)
    assert not row["entity_correct"] and not row["retrieval_correct"]


def test_facts_of_another_entity_in_the_knowledge_do_not_count(mini_kb, items_file):
    treat = next(it for it in load_labelled(items_file, mini_kb) if it.id == "q1")
    pred = Prediction("急性中耳炎", "治疗方案", "急性中耳炎", {"肝胆管结石病": {"治疗": ["手术治疗"]}})
    assert not score_item(treat, pred, mini_kb)["retrieval_correct"]


def test_out_of_kb_items_score_refusals_and_still_score_the_entity(mini_kb, items_file):
    prevent = next(it for it in load_labelled(items_file, mini_kb) if it.id == "q3")
    refused = score_item(prevent, lookup(mini_kb, "偏头痛", "预防"), mini_kb)
    assert refused["should_refuse"] and refused["refused"] and refused["entity_correct"]
    answered = score_item(prevent, lookup(mini_kb, "偏头痛", "临床表现"), mini_kb)
    assert not answered["refused"] and not answered["retrieval_correct"]


def test_label_check_reports_every_disagreement_with_the_kb(mini_kb, tmp_path):
    rows = [*ITEMS,
            {"id": "bad1", "question": "a", "gold_entities": ["不存在的病"], "gold_predicates": ["常见症状"], "in_kb": False},
            {"id": "bad2", "question": "b", "gold_entities": ["偏头痛"], "gold_predicates": ["预防"], "in_kb": True},
            {"id": "bad3", "question": "c", "gold_entities": ["偏头痛"], "gold_predicates": ["就诊科室"], "in_kb": False},
            {"id": "bad4", "question": "d", "gold_entities": ["偏头痛"], "gold_predicates": ["门诊时间"], "in_kb": False}]
    labels = read_labels(write_jsonl(tmp_path / "l.jsonl", rows), mini_kb.schema)
    problems = check_labels(labels, mini_kb)
    assert [p.split(" ")[0] for p in problems] == ["bad1", "bad2", "bad3", "bad4"]
    assert "不存在的病" in problems[0] and f"{tmp_path / 'l.jsonl'}:6" in problems[0]
    assert "labelled in_kb but no gold entity" in problems[1] and "偏头痛 has values" in problems[2]
    assert "门诊时间" in problems[3]
    assert "q5" in check_labels(labels, mini_kb, require_in_kb=True)[0]  # the shipped splits must state in_kb


def test_the_check_command_exits_1_on_problems(mini_kb, tmp_path, capsys):
    from ktune.eval.realstyle import main as check_main

    good = write_jsonl(tmp_path / "good.jsonl", ITEMS)
    assert check_main(["check", str(good), "--kb", str(mini_kb.store.path)]) == 0
    bad = write_jsonl(tmp_path / "bad.jsonl", [{**ITEMS[0], "in_kb": False}])
    assert check_main(["check", str(bad), "--kb", str(mini_kb.store.path)]) == 1
    assert "PROBLEM q1" in capsys.readouterr().out


def test_eval_items_runs_the_rules_baseline_end_to_end(mini_kb, items_file, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--items", str(items_file), "--out", str(out), "--kb", str(mini_kb.store.path),
                 "--systems", "rules", "--json"])
    assert code == 0
    m = json.loads(capsys.readouterr().out)["retrieval"]
    assert m["splits"] == {"mine": 5} and m["items"] == [str(items_file)]
    rules = m["systems"]["rules (dictionary + intent)"]["mine"]
    assert rules["retrieval_accuracy"]["n"] == 3 and rules["refusal"]["recall"]["n"] == 2
    rows = [json.loads(x) for x in (out / "predictions" / "mine" / "rules-dictionary-intent.jsonl").read_text(
        "utf-8").splitlines()]
    assert {r["id"] for r in rows} == {"q1", "q2", "q3", "q4", "q5"}
    assert next(r for r in rows if r["id"] == "q1")["gold_predicates"] == TREATMENT
    assert main(["eval", "--items", str(items_file), "--out", str(out), "--kb", str(mini_kb.store.path),
                 "--systems", "rules"]) == 0
    table = capsys.readouterr().out
    assert "mine (n=5; answerable=3, to refuse=2)" in table and "rules (dictionary + intent)" in table


def test_eval_items_names_a_malformed_file_line_in_one_line(mini_kb, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [ITEMS[0], '{"question": "x", "gold_entities": ["偏头痛"]}'])
    code = main(["eval", "--items", str(bad), "--out", str(tmp_path / "o"), "--kb", str(mini_kb.store.path),
                 "--systems", "rules"])
    assert code == 2 and f"{bad}:2: missing gold_predicates" in capsys.readouterr().err


def test_eval_needs_data_or_items(mini_kb, tmp_path, capsys):
    assert main(["eval", "--out", str(tmp_path), "--kb", str(mini_kb.store.path)]) == 2
    assert "--items FILE.jsonl" in capsys.readouterr().err


def test_shipped_splits_are_package_data_and_skipped_on_another_kb(mini_kb, caplog):
    for split in REAL_SPLITS:
        path = real_split_path(split)
        assert path.is_file() and path.parent.name == "questions" and "tests" not in path.parts
    assert load_real(mini_kb) == {}
    assert "labelled against CMeKG" in caplog.text


def test_shipped_splits_follow_the_split_rule_and_sizes():
    from ktune.kb.schema import Schema

    schema = Schema.load()
    labels = {s: read_labels(real_split_path(s), schema) for s in REAL_SPLITS}
    assert all(split_of(lb) == s for s, ls in labels.items() for lb in ls)
    dev, test = labels["real_dev"], labels["real_test"]
    assert sum(bool(lb.in_kb) for lb in dev) >= 150 and sum(bool(lb.in_kb) for lb in test) >= 250
    new = [lb for lb in dev + test if lb.id.startswith("rs")]
    assert len(new) >= 620 and sum(not lb.in_kb for lb in new) >= 0.3 * len(new)
    assert {lb.id for lb in dev if lb.id.startswith("h")} == {f"h{n:03d}" for n in range(1, 122)}
    assert not {lb.group for lb in dev if lb.id.startswith("rs")} & {lb.group for lb in test}


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("KTUNE_FULL_KB"), reason="set KTUNE_FULL_KB to the full CMeKG SQLite file")
def test_every_shipped_label_agrees_with_the_full_kb():
    from ktune.kb import KnowledgeBase

    with KnowledgeBase.open(os.environ["KTUNE_FULL_KB"]) as kb:
        problems, stats = check_files([real_split_path(s) for s in REAL_SPLITS], kb, shipped=True)
    assert problems == []
    assert stats["realstyle_test.jsonl"]["in_kb"] >= 250


def test_retrieval_suite_adds_the_real_splits_in_full_next_to_the_dataset(mini_kb, eval_data, tmp_path, monkeypatch):
    import ktune.eval.items as items_mod
    from ktune.eval.report import format_results_table
    from ktune.eval.suites import run_retrieval_suite

    files = {"real_dev": write_jsonl(tmp_path / "dev.jsonl", ITEMS[:2]),
             "real_test": write_jsonl(tmp_path / "test.jsonl", ITEMS)}
    monkeypatch.setattr(items_mod, "real_split_path", lambda split: files[split])
    m = run_retrieval_suite(mini_kb, eval_data, limit=1, out=tmp_path / "e", systems=("rules",), progress=False)
    assert m["splits"] == {"test_seen": 1, "test_unseen": 1, "test_no_knowledge": 1, "real_dev": 2, "real_test": 5}
    rules = m["systems"]["rules (dictionary + intent)"]
    assert rules["all_test"]["n"] == 3  # the dataset's splits only; the real-style ones are reported apart
    assert rules["real_test"]["refusal"]["recall"]["n"] == 2
    assert set(rules["errors"]["real_test_by_style"]) == {"real/lay_name", "real/typo", "real"}  # answerable ones
    header = format_results_table(m).splitlines()[0]
    assert "real retr" in header and "real refusal" in header
    assert "### real_test" in (tmp_path / "e" / "report.md").read_text("utf-8")
