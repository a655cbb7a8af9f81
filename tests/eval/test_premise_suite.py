"""The adversarial premise set (built from the KB, committed) and the premise suite's scoring."""

import json

from ktune.cli.main import main
from ktune.eval.premise import (
    build_premise_set,
    gold_query_answers,
    load_premise_set,
    related,
    score_premise,
)


def test_the_set_is_deterministic_and_absent_terms_relate_to_no_value(premise_kb):
    items = build_premise_set(premise_kb, per_attribute=2)
    assert items == build_premise_set(premise_kb, per_attribute=2)
    present = [it for it in items if it["present"]]
    absent = [it for it in items if not it["present"]]
    assert present and absent
    for it in items:
        values = [v for p in premise_kb.acquire_knowledge(it["entity"], it["attribute"]).values() for vs in p.values()
                  for v in vs]
        assert related(premise_kb, it["term"], values) == it["present"], it
        assert it["split"] in ("dev", "test") and it["term"] in it["question"]
    assert ("利福平片", "肝胆管结石", "利福平可以治疗肝胆管结石吗？") in {(it["entity"], it["term"], it["question"])
                                                                for it in absent}


def test_the_committed_set_is_balanced_over_attributes_and_split_by_entity():
    items = load_premise_set(split="all")
    assert len(items) >= 400
    absent = [it for it in items if not it["present"]]
    assert abs(len(absent) - len(items) / 2) <= 10
    assert len({it["attribute"] for it in items}) >= 7
    assert {"famous", "sibling", "other_entity"} <= {it["source"] for it in absent}
    dev = {it["entity"] for it in items if it["split"] == "dev"}
    test = {it["entity"] for it in items if it["split"] == "test"}
    assert dev and test and not dev & test
    assert any(it["entity"] == "利福平片" and it["term"] == "肝胆管结石" for it in absent)


def _item(present, term="肝胆管结石"):
    return {"id": "x", "question": f"利福平可以治疗{term}吗？", "entity": "利福平片", "attribute": "适应症", "term": term,
            "present": present, "source": "famous" if not present else "value", "split": "test"}


def test_affirming_an_absent_term_is_a_false_affirmation_and_a_denial_of_a_present_one_a_false_denial(premise_kb):
    listed = {"answer": "", "premise": {"entity": "利福平片", "verdict": "listed",
                                        "matches": [{"predicate": "适应症", "value": "x"}]}}
    not_listed = {"answer": "", "premise": {"entity": "利福平片", "verdict": "not_listed", "matches": []}}
    model_yes = {"answer": "根据知识库，利福平片可用于治疗肝胆管结石。\n相关知识：{}"}
    model_no = {"answer": "知识库中利福平片的适应症没有列出“肝胆管结石”。\n相关知识：{}"}
    items = [_item(False), _item(False), _item(False), _item(True, "结核病")]
    m, rows = score_premise(items, [listed, model_yes, model_no, not_listed], premise_kb)
    assert [r["affirmed"] for r in rows] == [True, True, False, False]
    assert m["false_affirmation"]["k"] == 2 and m["false_affirmation"]["n"] == 3
    assert m["false_denial"]["k"] == 1 and m["false_denial"]["n"] == 1
    # an answer about the term alone (stage 1 took the term as the entity) relates nothing to the entity
    about_term = {"answer": "根据知识库，肝胆管结石病的常见症状：腹痛、黄疸。\n相关知识：{}"}
    assert not score_premise([_item(False, "肝胆管结石病")], [about_term], premise_kb)[1][0]["affirmed"]


def test_the_gold_query_decision_denies_the_famous_pair_and_affirms_the_values(premise_kb):
    items = build_premise_set(premise_kb, per_attribute=2)
    m, rows = score_premise(items, gold_query_answers(items, premise_kb), premise_kb)
    assert m["false_affirmation"]["k"] == 0 and m["detected"]["value"] == 1.0
    famous = next(r for r in rows if r["term"] == "肝胆管结石")
    assert famous["premise"]["verdict"] == "not_listed" and "结核病" in famous["answer"]


def test_ktune_eval_premise_writes_the_report(premise_kb, tmp_path, capsys):
    code = main(["eval", "--suite", "premise", "--out", str(tmp_path), "--kb", str(premise_kb.store.path),
                 "--premise-split", "all", "--limit", "3", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["premise"]["n_items"] == 6
    assert "Premise questions" in (tmp_path / "report.md").read_text("utf-8")
    assert (tmp_path / "premise").is_dir()
