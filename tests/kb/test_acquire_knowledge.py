import pytest

from ktune.errors import UnknownAttributeError


def test_acquire_knowledge_gathers_every_raw_predicate_of_the_attribute(mini_kb):
    got = mini_kb.acquire_knowledge("急性中耳炎", "药物治疗")
    assert got == {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"], "相关药物": ["阿莫西林胶囊"]}}


def test_acquire_knowledge_is_empty_when_the_entity_lacks_the_attribute(mini_kb):
    assert mini_kb.acquire_knowledge("偏头痛", "并发症") == {}
    assert mini_kb.acquire_knowledge("不存在的病", "临床表现") == {}


def test_fallback_answers_an_empty_attribute_from_its_intent_and_names_the_facts_used(mini_kb):
    # 肝胆管结石病 has treatment facts under 治疗 (治疗方案) only: "吃什么药" falls back to them
    assert mini_kb.acquire_knowledge("肝胆管结石病", "药物治疗") == {}
    assert mini_kb.acquire_knowledge("肝胆管结石病", "药物治疗", fallback=True) == {"肝胆管结石病": {"治疗": ["手术治疗"]}}


def test_fallback_prefers_the_asked_attribute_and_stays_inside_the_intent(mini_kb):
    asked = mini_kb.acquire_knowledge("急性中耳炎", "药物治疗")
    assert mini_kb.acquire_knowledge("急性中耳炎", "药物治疗", fallback=True) == asked
    assert mini_kb.acquire_knowledge("偏头痛", "并发症", fallback=True) == {}  # 并发症 has no fallback


def test_a_schema_fallback_must_name_another_attribute(tmp_path):
    import json

    from ktune.errors import KBError
    from ktune.kb.schema import DEFAULT_SCHEMA_PATH, Schema

    raw = json.loads(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    raw["attributes"]["预后"]["fallback"] = ["疗效"]
    bad = tmp_path / "schema.json"
    bad.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(KBError, match="falls back to"):
        Schema.load(bad)


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
