"""Questions that ask two things: every asked part the KB can answer is looked up (ktune.pipeline.parts)."""

import pytest

from ktune.pipeline import PipelineConfig
from ktune.pipeline.answer import retrieve
from ktune.pipeline.parts import asked_parts, question_parts
from ktune.pipeline.query import Query, QueryStage
from ktune.prompt import PromptFormat
from tests.conftest import kb_from_records

RECORDS = [
    {"中心词": "过敏性鼻炎", "常见症状": ["鼻痒", "打喷嚏"], "治疗": ["避免接触过敏原"], "就诊科室": ["耳鼻喉科"]},
    {"中心词": "胖大海", "毒性": ["小毒"]},
]


def test_only_clauses_that_ask_are_parts_and_only_when_there_are_two():
    assert question_parts("过敏性鼻炎有什么症状，怎么治？") == ["过敏性鼻炎有什么症状", "怎么治"]
    assert question_parts("感冒灵颗粒怎么吃？孕妇能吃吗") == ["感冒灵颗粒怎么吃", "孕妇能吃吗"]
    # patient context is no question, whatever numbers it holds (好几年, 前几天)
    assert question_parts("我妈妈有高血压好几年了，想知道高血压一般用哪些药") == []
    assert question_parts("前几天被猫抓伤了，担心狂犬病，狂犬病有哪些症状？") == []
    assert question_parts("过敏性鼻炎有什么症状") == []
    assert question_parts("备孕叶酸怎么吃，一天几片") == ["备孕叶酸怎么吃", "一天几片"]


class _Stage:
    """The one model call asked_parts makes: the attribute written for a clause after a given entity."""

    def __init__(self, attrs: dict[str, str | None]):
        self.attrs, self.calls = attrs, []

    def free_attributes(self, questions, entities):
        self.calls.append((list(questions), list(entities)))
        return [(self.attrs.get(q), f"{e}|{self.attrs.get(q)}") for q, e in zip(questions, entities, strict=True)]


def test_each_part_adds_the_attribute_the_model_writes_for_it_after_the_same_entity():
    stage = _Stage({"过敏性鼻炎有什么症状": "临床表现", "怎么治": "治疗方案"})
    q = Query("过敏性鼻炎", "治疗方案", "过敏性鼻炎", 1.0, "exact")
    out = asked_parts(stage, ["过敏性鼻炎有什么症状，怎么治？"], [q])
    assert out[0].also == ("临床表现",) and out[0].attribute == "治疗方案" and out[0].linked_entity == "过敏性鼻炎"
    assert stage.calls == [(["过敏性鼻炎有什么症状", "怎么治"], ["过敏性鼻炎", "过敏性鼻炎"])]


def test_single_questions_refusals_and_unread_parts_are_left_alone():
    stage = _Stage({"怎么治": None})
    single = Query("过敏性鼻炎", "治疗方案", "过敏性鼻炎", 1.0, "exact")
    unlinked = Query("鼻炎怪病", "治疗方案", None)
    out = asked_parts(stage, ["过敏性鼻炎怎么治", "鼻炎怪病有什么症状，怎么治"], [single, unlinked])
    assert out == [single, unlinked] and stage.calls == []
    assert asked_parts(stage, ["过敏性鼻炎是什么病，怎么治"], [single]) == [single]  # no attribute read: nothing added


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    kb = kb_from_records(tmp_path_factory.mktemp("parts"), RECORDS)
    yield kb
    kb.close()


def test_stage_two_gathers_every_part_the_kb_has_of_the_same_entity(kb):
    q = Query("过敏性鼻炎", "临床表现", "过敏性鼻炎", 1.0, "exact", also=("就诊科室",))
    knowledge, reason = retrieve(kb, q)
    assert reason is None
    assert knowledge == {"过敏性鼻炎": {"常见症状": ["鼻痒", "打喷嚏"], "就诊科室": ["耳鼻喉科"]}}
    assert kb.acquire_knowledge("过敏性鼻炎", "临床表现") == {"过敏性鼻炎": {"常见症状": ["鼻痒", "打喷嚏"]}}  # untouched


def test_a_part_the_kb_answers_is_answered_when_the_first_part_has_nothing_and_all_empty_is_refused(kb):
    knowledge, reason = retrieve(kb, Query("胖大海", "用法用量", "胖大海", 1.0, "exact", also=("毒性",)))
    assert (knowledge, reason) == ({"胖大海": {"毒性": ["小毒"]}}, None)
    knowledge, reason = retrieve(kb, Query("胖大海", "用法用量", "胖大海", 1.0, "exact", also=("性味",)))
    assert knowledge == {} and reason is not None


class _ScriptedStage(QueryStage):
    """Stage 1 with the model's outputs scripted: the whole question's query, then each clause's attribute."""

    def _decode(self, questions, mode):
        return [Query("过敏性鼻炎", "治疗方案", "过敏性鼻炎", 1.0, "exact") for _ in questions]

    def free_attributes(self, questions, entities):
        return [("临床表现" if "症状" in q else "治疗方案", "") for q in questions]


@pytest.mark.parametrize("on", [True, False])
def test_stage_one_adds_the_parts_unless_the_config_turns_it_off(kb, on):
    stage = _ScriptedStage(None, kb, PromptFormat(), PipelineConfig(multi_part=on, entry_rules=False))
    (q,) = stage.run(["过敏性鼻炎有什么症状，怎么治？"], mode="free")
    assert q.also == (("临床表现",) if on else ())
