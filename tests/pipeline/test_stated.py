"""A search-box fragment that names a field in the KB's own words asks that field (ktune.pipeline.stated)."""

import pytest

from ktune.kb.schema import Schema
from ktune.pipeline.parts import is_fragment
from ktune.pipeline.stated import stated_attribute, stated_attributes

SCHEMA = Schema.load()


@pytest.mark.parametrize(
    "question,names,kind,model,expected",
    [
        ("哮喘 并发症", ("哮喘",), "disease", "多发人群", "并发症"),  # the model's attribute of another intent
        ("美林布洛芬混悬滴剂6个月宝宝用量", ("美林",), "drug", "药物分类", "用法用量"),  # a raw predicate (用量)
        ("糖尿病 症状", ("糖尿病",), "disease", "病因", "临床表现"),  # 常见症状 written as 症状
        ("高血压 用药 治疗", ("高血压",), "disease", "药物治疗", None),  # 治疗方案 / 药物治疗: one intent
        ("奥司他韦 预防", ("奥司他韦",), "drug", "适应症", None),  # 预防 is no field of a drug
        ("症状性癫痫 治疗", ("症状性癫痫",), "disease", "治疗方案", None),  # the name's own 症状 names nothing
        ("哮喘 症状 并发症", ("哮喘",), "disease", "多发人群", None),  # two fields: left to the multi-part rule
        ("哮喘 并发症", ("哮喘",), "disease", "并发症", None),  # already the model's
        # 功效, a herb's field, asked of a drug: its intent's drug field (the schema's fallback)
        ("金匮肾气丸的功效与作用", ("金匮肾气丸",), "drug", "成份", "适应症"),
        ("金匮肾气丸的功效与作用", ("金匮肾气丸",), "drug", "适应症", None),
        ("丝瓜 功效", ("丝瓜",), "herb", "性味", "功效"),  # a herb's own field stays itself
        ("胺碘酮 相互作用", ("胺碘酮",), "drug", "不良反应", "药物相互作用"),  # 药物相互作用 written as 相互作用
        ("高血压 治疗", ("高血压",), "disease", "多发人群", "治疗方案"),  # 治疗 stays 治疗方案's (not 药物治疗's)
    ],
)
def test_the_field_a_fragment_names_replaces_a_model_attribute_of_another_intent(question, names, kind, model,
                                                                                 expected):
    assert stated_attribute(question, names, kind, model, SCHEMA) == expected


def test_a_field_word_counts_only_as_a_whole_word():
    assert "检查" not in stated_attributes("体检查出左肾结石", ("肾结石",), SCHEMA)  # 体检|查出
    assert stated_attributes("肾结石 检查", ("肾结石",), SCHEMA) == {"检查"}


@pytest.mark.parametrize(
    "question,fragment",
    [("哮喘 并发症", True), ("宝宝用量", True), ("哮喘有什么并发症", False), ("哮喘并发症？", False),
     ("这几天症状反复，怎么办", False), ("能吃布洛芬吗", False)],
)
def test_only_search_box_fragments_are_read_for_a_stated_field(question, fragment):
    # sentences name fields in their context too (这几天症状反复): those are left to the model
    assert is_fragment(question) is fragment
