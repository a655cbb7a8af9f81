"""The full CMeKG: fetched with pip into this test's KTUNE_HOME cache, imported, counted (slow; needs PyPI)."""

import pytest

from ktune.kb import KnowledgeBase
from ktune.kb.cmekg import PICKLE_SHA256

RAW_FACTS = 967_409  # (entity, predicate, value) triples in cmekg.pkl before cleaning
KINDS = {"drug": 17_073, "disease": 6_290, "herb": 2_399, "other": 1_260, "formula": 381}


@pytest.mark.slow
def test_full_cmekg_import_counts_kinds_and_schema_coverage(tmp_path):
    with KnowledgeBase.open(tmp_path / "cmekg.sqlite", create=True) as kb:
        report = kb.import_cmekg()
        dropped = report.cleaning.get("empty_dropped", 0) + report.cleaning.get("duplicates_dropped", 0)
        assert report.records == report.entities_after == 27_403
        assert report.facts_read == report.facts_written + dropped == RAW_FACTS
        stats = kb.stats()
        assert stats["facts"] == report.facts_written and stats["predicates"] == 469
        assert stats["kinds"] == KINDS
        assert stats["unmapped_predicates_20plus"] == []
        assert kb.meta["source_sha256"] == PICKLE_SHA256 and "MIT" in kb.meta["attribution"]
        assert set(kb.acquire_knowledge("急性中耳炎", "药物治疗")["急性中耳炎"]["药物治疗"]) >= {"阿莫西林", "头孢菌素"}
        assert kb.link("感冒")[0].entity == "急性鼻炎"
        assert "二甲双胍" in kb.link("二甲双胍")[0].entity
        assert kb.link("尿素维e乳膏")[0].entity == "尿素维E乳膏"
