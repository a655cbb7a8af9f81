"""Each baseline on the fixture KB: the right entries for plain questions, refusals where nothing matches."""

import pytest

from ktune.errors import ConfigError
from ktune.eval.baselines import BM25Retriever, DenseRetriever, RuleSystem
from ktune.eval.baselines.bm25 import tokenize
from ktune.eval.baselines.entries import kb_entries

PLAIN = [  # questions naming the canonical entity and a clear intent
    ("急性中耳炎吃什么药？", "急性中耳炎", "药物治疗"),
    ("偏头痛有哪些症状？", "偏头痛", "临床表现"),
    ("阿莫西林胶囊有什么副作用？", "阿莫西林胶囊", "不良反应"),
    ("黄芪的功效是什么？", "黄芪", "功效"),
]


def queries(system, questions):
    return [(p.linked_entity, p.attribute) for p in system.predict(questions)]


def test_kb_entries_cover_every_answerable_entity_attribute(mini_kb):
    entries = {(e.entity, e.attribute) for e in kb_entries(mini_kb)}
    assert ("急性中耳炎", "药物治疗") in entries and ("黄芪", "功效") in entries
    for entity, attribute in entries:
        assert mini_kb.acquire_knowledge(entity, attribute)


@pytest.mark.parametrize("tokenizer", ["word", "char"])
def test_bm25_finds_plain_questions_entries(mini_kb, tokenizer):
    system = BM25Retriever(mini_kb, tokenizer)
    got = queries(system, [q for q, _, _ in PLAIN])
    assert got == [(e, a) for _, e, a in PLAIN]


def test_bm25_returns_the_fetched_knowledge_and_refuses_on_no_overlap(mini_kb):
    system = BM25Retriever(mini_kb, "char")
    hit, miss = system.predict(["黄芪的功效是什么？", "zzz"])
    assert hit.knowledge == mini_kb.acquire_knowledge("黄芪", "功效") and not hit.refused
    assert miss.entity is None and miss.refused


def test_bm25_rejects_an_unknown_tokenizer(mini_kb):
    with pytest.raises(ConfigError, match="word"):
        BM25Retriever(mini_kb, "bpe")


def test_word_tokenizer_keeps_fields_apart():
    assert tokenize("伤风", "word") + tokenize("感冒", "word") == ["伤风", "感冒"]
    assert tokenize("AOM，头痛", "char") == ["a", "o", "m", "头", "痛"]


def test_rules_match_the_longest_name_and_the_intent_keyword(mini_kb):
    system = RuleSystem(mini_kb)
    assert queries(system, [q for q, _, _ in PLAIN]) == [(e, a) for _, e, a in PLAIN]
    alias, = system.predict(["格华止一天吃几次？"])
    assert (alias.linked_entity, alias.attribute) == ("盐酸二甲双胍片", "用法用量")


def test_rules_fall_back_to_no_query_without_entity_or_intent(mini_kb):
    system = RuleSystem(mini_kb)
    no_entity, no_intent = system.predict(["糖尿病足怎么治疗？", "说说高血压"])
    assert no_entity.entity is None and no_entity.refused and no_entity.extra["fallback"]
    assert no_intent.entity is None and no_intent.refused and no_intent.extra["matched_entity"] == "高血压"


def test_dense_links_entities_and_caches_the_embeddings(mini_kb, tmp_path):
    cache = tmp_path / "dense"
    system = DenseRetriever(mini_kb, cache=cache)
    got = queries(system, ["偏头痛有哪些症状？", "黄芪的功效是什么？"])
    assert [e for e, _ in got] == ["偏头痛", "黄芪"]
    files = list(cache.glob("*.npy"))
    assert len(files) == 1 and mini_kb.version[:16] in files[0].name
    again = DenseRetriever(mini_kb, cache=cache)
    assert queries(again, ["偏头痛有哪些症状？"])[0][0] == "偏头痛"
    assert list(cache.glob("*.npy")) == files


def test_bm25_index_is_cached_per_kb_version_and_reused(mini_kb, tmp_path):
    cache = tmp_path / "bm25"
    first = BM25Retriever(mini_kb, "char", cache=cache)
    expected = queries(first, ["黄芪的功效是什么？"])
    cached = list(cache.iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("char-")
    again = BM25Retriever(mini_kb, "char", cache=cache)
    assert queries(again, ["黄芪的功效是什么？"]) == expected
    assert list(cache.iterdir()) == cached
