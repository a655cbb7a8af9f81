import pytest

from ktune.errors import UnknownAttributeError


def test_acquire_knowledge_gathers_every_raw_predicate_of_the_attribute(mini_kb):
    got = mini_kb.acquire_knowledge("急性中耳炎", "药物治疗")
    assert got == {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"], "相关药物": ["阿莫西林胶囊"]}}


def test_acquire_knowledge_is_empty_when_the_entity_lacks_the_attribute(mini_kb):
    assert mini_kb.acquire_knowledge("偏头痛", "并发症") == {}
    assert mini_kb.acquire_knowledge("不存在的病", "临床表现") == {}


def test_acquire_knowledge_rejects_an_attribute_outside_the_schema(mini_kb):
    with pytest.raises(UnknownAttributeError, match="valid attributes"):
        mini_kb.acquire_knowledge("偏头痛", "颜色")


def test_import_cleans_markup_and_duplicates_and_reports_counts(tmp_path):
    from ktune.kb import KnowledgeBase
    from tests.conftest import FIXTURES

    kb = KnowledgeBase.open(tmp_path / "k.sqlite", create=True)
    report = kb.import_file(FIXTURES / "mini_kb.jsonl")
    assert kb.get("阿莫西林胶囊")["不良反应"] == ["腹泻", "皮疹"]
    assert report.cleaning["markup_removed"] == 1
    assert report.cleaning["duplicates_dropped"] == 1
