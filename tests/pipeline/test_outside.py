"""A question asking what no KB field records (cost, which hospital, a hospital stay) is refused as such."""

import pytest

from ktune.pipeline import KnowledgeTunedQA, PipelineConfig
from ktune.pipeline.outside import outside_field


@pytest.mark.parametrize(
    "question,field",
    [
        ("白内障手术大概多少钱", "费用"),
        ("做一次胃镜的费用是多少？", "费用"),
        ("强迫症去哪个医院看比较好", "医院"),
        ("北京治白癜风哪家医院好？", "医院"),
        ("急性阑尾炎手术要住几天院", "住院天数"),
        ("阑尾炎术后住院多久能出院", "住院天数"),
        ("偏头痛吃什么药？", None),
        ("失眠去哪看，挂什么科？", None),  # a department is an answer the KB has
        ("阿莫西林可以医保报销吗？", None),  # CMeKG records 是否纳入医保 / 医保药品 for drugs
        ("肺炎住院必须做哪些检查？", None),  # 住院 alone asks no stay
        ("布洛芬一次吃多少？", None),
        ("痛风治好要花多少时间？", None),  # a duration, not a cost
    ],
)
def test_the_asks_no_kb_field_records_are_read_from_their_words(question, field):
    assert outside_field(question) == field


def test_a_question_asking_a_cost_is_refused_saying_the_kb_does_not_record_it(tiny_lm, mini_kb):
    model, tok = tiny_lm
    config = PipelineConfig(max_answer_tokens=8, max_query_tokens=24)
    answer = KnowledgeTunedQA(model, tok, mini_kb, config=config).ask("偏头痛吃药一个月要花多少钱？")
    assert answer.refused and answer.refusal_reason == "outside_kb" and answer.knowledge == {}
    assert answer.answer == config.outside_refusal
    config = PipelineConfig(max_answer_tokens=8, max_query_tokens=24, outside_fields=False)
    answer = KnowledgeTunedQA(model, tok, mini_kb, config=config).ask("偏头痛吃药一个月要花多少钱？")
    assert answer.refusal_reason != "outside_kb"
