"""The claim check: sentences keep only verbatim KB values of the knowledge used; failures are dropped and recorded."""

import pytest

from ktune.pipeline.answer import LIST_CAP, ground
from ktune.pipeline.claim_spans import Fact, split_sentences
from ktune.pipeline.claims import (
    OTHER_FIELD,
    PREDICATE_AS_VALUE,
    QUESTION_ONLY_TERM,
    UNSUPPORTED_TERM,
    UNVERIFIED_TEXT,
    check_answer,
    check_sentence,
)
from ktune.prompt import PROVENANCE_PREFIX, provenance_line

OTITIS = {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"], "相关药物": ["阿莫西林胶囊"]}}
AMOX = {"阿莫西林胶囊": {"适应症": ["中耳炎", "咽炎"]}}


def test_a_sentence_of_verbatim_values_in_a_trained_frame_is_kept_with_its_facts(mini_kb):
    check = check_sentence("急性中耳炎常用的药物有：阿莫西林、头孢菌素。", OTITIS, "急性中耳炎吃什么药？", mini_kb)
    assert check.ok
    assert check.facts == (Fact("急性中耳炎", "药物治疗", "阿莫西林"), Fact("急性中耳炎", "药物治疗", "头孢菌素"))


def test_a_rewritten_value_is_dropped_as_unverified_text(mini_kb):
    check = check_sentence("急性中耳炎常用的药物有：阿莫西林、头孢类抗生素。", OTITIS, "急性中耳炎吃什么药？", mini_kb)
    assert not check.ok and check.reason == UNVERIFIED_TEXT
    assert "头孢类抗生素" in check.terms


def test_a_value_with_a_stray_character_is_dropped():
    knowledge = {"薄荷": {"性状": ["有特殊的香气", "茎方柱形"]}}
    assert not check_sentence("薄荷的性状有有特殊的香气。", knowledge).ok
    assert check_sentence("薄荷的性状：有特殊的香气、茎方柱形。", knowledge).ok


def test_a_frame_of_another_attribute_is_a_new_claim_even_with_verbatim_values(mini_kb):
    adverse = {"盐酸二甲双胍片": {"不良反应": ["恶心", "腹泻"]}}
    assert not check_sentence("盐酸二甲双胍片含有恶心、腹泻。", adverse, "", mini_kb).ok  # a 成份 frame
    assert check_sentence("盐酸二甲双胍片的副作用包括恶心、腹泻。", adverse, "", mini_kb).ok
    assert check_sentence("阿莫西林胶囊的适应症：中耳炎、咽炎。", AMOX, "", mini_kb).ok


def test_a_value_stated_under_another_field_of_the_same_knowledge_is_dropped(mini_kb):
    # one knowledge, two fields: every value must lie under the field its frame states, by attribute or by name
    knowledge = {"阿莫西林胶囊": {"适应症": ["中耳炎"], "不良反应": ["恶心", "腹泻"]}}
    for sentence in ("根据知识库，阿莫西林胶囊可用于恶心。",  # an 适应症 frame over a 不良反应 value
                     "阿莫西林胶囊的副作用包括中耳炎。",  # a 不良反应 frame over an 适应症 value
                     "阿莫西林胶囊的适应症：中耳炎、恶心。",  # a field named, one value of another field
                     "阿莫西林胶囊的禁忌：恶心。"):  # a field the knowledge lacks, named
        check = check_sentence(sentence, knowledge, "", mini_kb)
        assert not check.ok, sentence
    assert check_sentence("阿莫西林胶囊的适应症：中耳炎、恶心。", knowledge, "", mini_kb).reason == OTHER_FIELD
    assert check_sentence("阿莫西林胶囊的适应症：中耳炎、恶心。", knowledge, "", mini_kb).terms == ("中耳炎", "恶心")
    for sentence in ("根据知识库，阿莫西林胶囊可用于中耳炎。", "阿莫西林胶囊的副作用包括恶心、腹泻。",
                     "阿莫西林胶囊的不良反应：恶心、腹泻。",
                     "知识库中阿莫西林胶囊的适应症没有列出“恶心”。"):  # a premise verdict relates nothing
        assert check_sentence(sentence, knowledge, "", mini_kb).ok, sentence
    # the claim check's answer: the misattributed sentence goes, the listing states each field under its name
    g = ground("阿莫西林胶囊可用于恶心、腹泻。", knowledge, "阿莫西林有什么用", mini_kb)
    assert [d.reason for d in g.dropped] == [OTHER_FIELD]
    assert "可用于恶心" not in g.text and "阿莫西林胶囊的不良反应：恶心、腹泻。" in g.text


def test_a_named_field_with_a_plain_copula_or_the_attribution_is_read_as_the_listing_reads_it(mini_kb):
    knowledge = {"阿莫西林胶囊": {"适应症": ["中耳炎"], "不良反应": ["恶心", "腹泻"]}}
    for sentence in ("阿莫西林胶囊的不良反应有：恶心、腹泻。", "阿莫西林胶囊的不良反应为恶心。",
                     "根据知识库，阿莫西林胶囊的不良反应有恶心、腹泻。",  # 根据知识库， before a frame
                     "根据知识库，阿莫西林胶囊的副作用包括恶心。", "阿莫西林胶囊的适应症是中耳炎。"):
        check = check_sentence(sentence, knowledge, "", mini_kb)
        assert check.ok and {f.predicate for f in check.facts} <= {"适应症", "不良反应"}, sentence
    for sentence in ("阿莫西林胶囊的适应症有：恶心。",  # the copula does not lift the field binding
                     "阿莫西林胶囊的特效药有中耳炎。"):  # a word that names no field of the KB
        assert not check_sentence(sentence, knowledge, "", mini_kb).ok, sentence


def test_a_predicate_name_listed_as_a_value_is_dropped(mini_kb):
    check = check_sentence("急性中耳炎常用的药物有：阿莫西林、头孢菌素、相关药物。", OTITIS, "", mini_kb)
    assert not check.ok and check.reason == PREDICATE_AS_VALUE and check.predicates_as_values == ("相关药物",)


def test_a_term_only_the_question_contains_is_never_support(mini_kb):
    sentence = "根据知识库，阿莫西林胶囊可用于偏头痛。"
    check = check_sentence(sentence, AMOX, "阿莫仙可以治疗偏头痛吗？", mini_kb)
    assert not check.ok and check.reason == QUESTION_ONLY_TERM and check.terms == ("偏头痛",)
    # the same sentence without the question: a KB name the knowledge used does not contain
    assert check_sentence(sentence, AMOX, "阿莫仙有什么用？", mini_kb).reason == UNSUPPORTED_TERM


def test_the_entitys_kb_alias_may_name_it(mini_kb):
    assert check_sentence("阿莫仙即知识库中的阿莫西林胶囊。", AMOX, "阿莫仙能治什么？", mini_kb).ok
    assert check_sentence("根据知识库，阿莫仙可用于中耳炎、咽炎。", AMOX, "", mini_kb).ok


def test_safety_sentences_state_no_fact_and_pass(mini_kb):
    check = check_sentence("具体用药请遵医嘱或咨询药师。", AMOX, "", mini_kb)
    assert check.ok and check.facts == ()


def test_sentences_are_never_cut_inside_a_value():
    knowledge = {"X片": {"用法用量": ["口服。一次1片"]}}
    assert split_sentences("X片的用法用量：口服。一次1片。请遵医嘱。", knowledge) == [
        "X片的用法用量：口服。一次1片。", "请遵医嘱。"]


def test_check_answer_keeps_good_sentences_and_records_the_dropped_ones(mini_kb):
    body = "急性中耳炎常用的药物有：阿莫西林、相关药物。急性中耳炎的药物治疗包括头孢菌素。"
    check = check_answer(body, OTITIS, "急性中耳炎吃什么药？", mini_kb)
    assert [c.sentence for c in check.kept] == ["急性中耳炎的药物治疗包括头孢菌素。"]
    assert [c.reason for c in check.dropped] == [PREDICATE_AS_VALUE]


def test_when_no_sentence_survives_the_answer_lists_the_facts_and_records_the_drop(mini_kb):
    g = ground("根据知识库，阿莫西林胶囊可用于偏头痛。", AMOX, "阿莫仙可以治疗偏头痛吗？", mini_kb)
    body, prov = g.text.split("\n")
    assert body == "根据知识库，阿莫西林胶囊的适应症：中耳炎、咽炎。"
    assert prov == provenance_line(AMOX)
    assert [d.reason for d in g.dropped] == [QUESTION_ONLY_TERM]
    assert g.sentences[0].facts == (Fact("阿莫西林胶囊", "适应症", "中耳炎"), Fact("阿莫西林胶囊", "适应症", "咽炎"))
    assert g.raw == "根据知识库，阿莫西林胶囊可用于偏头痛。"


def test_a_long_value_list_is_counted_and_the_provenance_keeps_all_of_it(mini_kb):
    values = [f"药物{i}号" for i in range(LIST_CAP + 5)]
    knowledge = {"急性中耳炎": {"药物治疗": values}}
    g = ground("", knowledge, "", mini_kb)
    body = g.text.split("\n")[0]
    assert f"共{len(values)}项" in body and values[LIST_CAP] not in body
    assert g.text.split("\n")[1].startswith(PROVENANCE_PREFIX) and all(v in g.text.split("\n")[1] for v in values)
    assert g.sentences[0].ok and len(g.sentences[0].facts) == LIST_CAP


@pytest.mark.parametrize("sentence", ["根据知识库，急性中耳炎的药物治疗：阿莫西林、头孢菌素、镇痛药。",
                                      "急性中耳炎的药物治疗包括阿莫西林等。"])
def test_ktunes_own_listing_sentences_pass_the_check(mini_kb, sentence):
    assert check_sentence(sentence, OTITIS, "", mini_kb).ok


def _model_writes(qa, monkeypatch, text):
    from ktune.pipeline.decode import Beam

    monkeypatch.setattr(qa.decoder, "greedy", lambda prompts, max_new, streamer=None, stop=None:
                        [Beam(text, (), 0.0) for _ in prompts])


MODEL_BODY = "根据知识库，利福平片可用于治疗肝胆管结石。利福平片主要用于治疗结核病、麻风。"


def test_the_pipeline_drops_a_model_sentence_the_knowledge_does_not_support(premise_tiny_qa, force_query, monkeypatch):
    from dataclasses import replace

    from ktune.pipeline.query import Query

    force_query(Query("利福平", "适应症", "利福平片", 0.9, "generic"))
    _model_writes(premise_tiny_qa, monkeypatch, MODEL_BODY)
    answer = premise_tiny_qa.ask("利福平片能治什么病？肝胆管结石呢？")
    assert answer.premise is None
    # nothing the model wrote after the dropped sentence is used: the KB's own listing answers, values verbatim
    assert answer.answer.split("\n")[0].startswith("根据知识库，利福平片的适应症包括不适、军团菌属严重感染、")
    assert "肝胆管结石" not in answer.answer.split("\n")[0]
    assert [d.sentence for d in answer.dropped_claims] == ["根据知识库，利福平片可用于治疗肝胆管结石。"]
    # checking every sentence on its own instead keeps the model's true second sentence
    config = replace(premise_tiny_qa.config, stop_at_failed_sentence=False)
    premise_tiny_qa.config = premise_tiny_qa.answer_stage.config = config
    answer = premise_tiny_qa.ask("利福平片能治什么病？肝胆管结石呢？")
    assert answer.answer.split("\n")[0].startswith("利福平片主要用于治疗结核病、麻风。根据知识库，利福平片的适应症包括")
    data = answer.to_json()
    assert data["dropped_claims"] == [{"text": "根据知识库，利福平片可用于治疗肝胆管结石。", "facts": [],
                                       "reason": QUESTION_ONLY_TERM, "terms": ["肝胆管结石"]}]
    assert [f["value"] for f in data["sentences"][0]["facts"]] == ["结核病", "麻风"]
    assert data["raw_answer"] == MODEL_BODY


def test_without_the_claim_check_the_model_text_is_kept_as_written(premise_tiny_qa, force_query, monkeypatch):
    from dataclasses import replace

    from ktune.pipeline.query import Query

    premise_tiny_qa.config = premise_tiny_qa.answer_stage.config = replace(premise_tiny_qa.config, claim_check=False)
    force_query(Query("利福平", "适应症", "利福平片", 0.9, "generic"))
    _model_writes(premise_tiny_qa, monkeypatch, MODEL_BODY)
    answer = premise_tiny_qa.ask("利福平可以治疗肝胆管结石吗？")
    assert answer.premise is None and answer.answer.split("\n")[0] == MODEL_BODY and answer.dropped_claims == ()


def test_ktune_ask_prints_the_citations_and_the_dropped_sentences(premise_tiny_qa, force_query, monkeypatch):
    from ktune.cli.ask import format_answer
    from ktune.pipeline.query import Query

    force_query(Query("利福平", "适应症", "利福平片", 0.9, "generic"))
    _model_writes(premise_tiny_qa, monkeypatch, "利福平片主要用于治疗结核病、麻风。根据知识库，利福平片可用于治疗肝胆管结石。")
    text = format_answer(premise_tiny_qa.ask("利福平片能治什么病？肝胆管结石呢？"))
    assert "[1] 利福平片主要用于治疗结核病、麻风。 <- 利福平片/适应症/结核病；利福平片/适应症/麻风" in text
    assert "已删除（question_only_term：肝胆管结石）" in text
