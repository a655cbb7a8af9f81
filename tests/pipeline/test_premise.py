"""Premise questions ("X可以治疗Y吗") decided by X's KB values, never by the question; the pipeline answers them."""

import json

import pytest

from ktune.pipeline.answer import premise_answer
from ktune.pipeline.premise import decide_premise, detect_premise, match_term, premise_knowledge


def _decide(kb, question, entity):
    pq = detect_premise(question, entity, kb)
    assert pq is not None, question
    knowledge = premise_knowledge(kb, pq)
    return pq, decide_premise(pq, knowledge, kb), knowledge


def test_rifampicin_is_not_affirmed_for_hepatolithiasis_and_the_real_indications_are_shown(premise_kb):
    pq, premise, knowledge = _decide(premise_kb, "利福平可以治疗肝胆管结石吗？", "利福平片")
    assert (pq.relation, pq.term, pq.attributes) == ("treat", "肝胆管结石", ("适应症",))
    assert not premise.listed and premise.matches == ()
    text = premise_answer(premise, knowledge, premise_kb).text
    body = text.split("\n")[0]
    assert body.startswith("知识库中利福平片的适应症没有列出“肝胆管结石”。")
    assert "结核病" in body and "共13项（完整列表见相关知识）" in body and "麻风" in text.split("\n")[1]
    assert "可用于治疗肝胆管结石" not in text


def test_a_present_pair_is_affirmed_citing_the_matching_values(premise_kb):
    _, premise, knowledge = _decide(premise_kb, "利福平能治结核病吗？", "利福平片")
    assert premise.listed
    assert {(m.fact.value, m.how) for m in premise.matches} == {("结核病", "exact"), ("各种结核病的初治", "value_contains")}
    answer = premise_answer(premise, knowledge, premise_kb)
    assert answer.text.split("\n")[0] == "根据知识库，利福平片的适应症包括：各种结核病的初治、结核病。"
    assert {f.value for f in answer.sentences[0].facts} == {"结核病", "各种结核病的初治"}


@pytest.mark.parametrize(("question", "entity", "relation", "term"), [
    ("利福平片有恶心的副作用吗？", "利福平片", "adverse", "恶心"),
    ("吃利福平会头痛吗？", "利福平片", "adverse", "头痛"),
    ("利福平片含有利福平吗？", "利福平片", "contain", "利福平"),
    ("头痛是高血压的症状吗？", "高血压", "symptom", "头痛"),
    ("糖尿病会引起高血压吗？", "糖尿病", "cause", "高血压"),
    ("得了糖尿病可以吃盐酸二甲双胍片吗？", "糖尿病", "use", "盐酸二甲双胍片"),
    ("孕妇能吃利福平吗？", "利福平片", "use", "孕妇"),
    ("麻烦问下，哺乳期可以吃利福平片吗？", "利福平片", "use", "哺乳期"),
    ("阿莫仙能治中耳炎吗？", "阿莫西林胶囊", "treat", "中耳炎"),
])
def test_the_term_is_the_part_of_the_question_opposite_the_entity(premise_kb, question, entity, relation, term):
    pq = detect_premise(question, entity, premise_kb)
    assert (pq.relation, pq.term) == (relation, term)


@pytest.mark.parametrize("question", ["急性鼻炎的药物治疗有哪些？", "利福平可以治疗什么病？", "利福平片怎么吃？",
                                      "糖尿病会遗传吗？", "利福平片主治什么？", "糖尿病会导致什么",
                                      "糖尿病能治好吗？", "得了糖尿病还能恢复吗？"])
def test_questions_that_state_no_premise_are_left_to_the_answer_step(premise_kb, question):
    entity = "急性鼻炎" if "鼻炎" in question else "糖尿病" if "糖尿病" in question else "利福平片"
    assert detect_premise(question, entity, premise_kb) is None


def test_matching_is_whole_terms_not_any_overlap(premise_kb):
    assert match_term("结核病", "结核病") == "exact"
    assert match_term("结核病", "各种结核病的初治") == "value_contains"
    assert match_term("结核", "非结核分枝杆菌感染的治疗") is None  # negated, and not the head of the phrase
    assert match_term("结核病", "结核") == "affix"
    assert match_term("尿路感染", "感染") is None  # the KB says something more general: not an affirmation
    assert match_term("1型糖尿病", "2型糖尿病") is None
    assert match_term("感冒", "急性鼻炎", premise_kb) == "same_entity"  # an alias of the same KB entity


def test_the_pipeline_answers_a_premise_question_from_the_kb_and_reports_the_verdict(premise_tiny_qa, force_query):
    from ktune.pipeline.query import Query

    force_query(Query("利福平", "注意事项", "利福平片", 0.9, "generic"))  # even with another attribute chosen
    answer = premise_tiny_qa.ask("利福平可以治疗肝胆管结石吗？")
    data = answer.to_json()
    assert not answer.refused and answer.knowledge == premise_tiny_qa.kb.acquire_knowledge("利福平片", "适应症")
    assert data["premise"]["verdict"] == "not_listed" and data["premise"]["term"] == "肝胆管结石"
    assert data["answer"].startswith("知识库中利福平片的适应症没有列出“肝胆管结石”。")
    assert data["sentences"][0]["facts"] == []
    assert {"entity": "利福平片", "predicate": "适应症", "value": "结核病"} in data["sentences"][1]["facts"]
    assert data["dropped_claims"] == [] and data["raw_answer"] is None
    json.dumps(data, ensure_ascii=False)


def test_premise_answers_pass_the_claim_check_sentence_by_sentence(premise_kb):
    from ktune.pipeline.claims import check_sentence

    for question, entity in (("利福平可以治疗肝胆管结石吗？", "利福平片"), ("利福平能治结核病吗？", "利福平片"),
                             ("得了糖尿病会失明吗？", "糖尿病")):
        _, premise, knowledge = _decide(premise_kb, question, entity)
        for sentence in premise_answer(premise, knowledge, premise_kb).sentences:
            assert check_sentence(sentence.sentence, knowledge, question, premise_kb).ok, sentence.sentence


def test_when_stage_1_resolves_the_term_the_premise_is_read_about_the_other_entity(premise_tiny_qa, force_query):
    from ktune.pipeline.query import Query

    force_query(Query("恶心", "临床表现", "恶心", 1.0, "exact"))
    answer = premise_tiny_qa.ask("恶心是利福平片的不良反应吗？")
    assert answer.linked_entity == "利福平片" and answer.premise.entity == "利福平片"
    assert answer.premise.listed and answer.knowledge == premise_tiny_qa.kb.acquire_knowledge("利福平片", "不良反应")
