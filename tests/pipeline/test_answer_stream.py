"""Streaming an answer while it is generated: what `AnswerStream` settles is checked text and stays in the final
answer whatever the model writes next; clause by clause, a listing's first value comes long before its sentence
ends."""

import pytest

from ktune.pipeline.answer import ground
from ktune.pipeline.answer_stream import AnswerStream
from ktune.pipeline.checker import Checker
from ktune.pipeline.claims import check_answer

OTITIS = {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"], "相关药物": ["阿莫西林胶囊"]}}
QUESTION = "急性中耳炎吃什么药？"
# what a model may write: good listings, a rewritten value, a predicate listed as a value, a loop, safety text,
# an unfinished sentence (the cap), a provenance-looking body
BODIES = [
    "急性中耳炎常用的药物有：阿莫西林、头孢菌素、镇痛药。具体用药请遵医嘱或咨询药师。",
    "急性中耳炎常用的药物有：阿莫西林、头孢类抗生素。具体用药请遵医嘱或咨询药师。",
    "急性中耳炎常用的药物有：阿莫西林、相关药物。急性中耳炎的药物治疗包括头孢菌素。",
    "急性中耳炎常用的药物有：阿莫西林、头孢菌素、阿莫西林、头孢菌素、阿莫西林",
    "具体用药请遵医嘱或咨询药师。急性中耳炎常用的药物有：阿莫西林，一天三次。",
    "急性中耳炎的药物治疗包括头孢菌素、镇痛药",
    "相关知识：{}",
    "急性中耳炎常用的药物有：阿莫西林\n相关知识：{}",
]
# what may follow any prefix of a body (the stream cannot know)
CONTINUATIONS = ["", "。", "、头孢类抗生素。", "、镇痛药。请遵医嘱。", "等。", "胡乱编造的内容"]


def _stream(body: str, clauses: bool, kb, knowledge=OTITIS, question=QUESTION) -> list[tuple[int, str]]:
    """(characters of the body written, text settled then) for each piece settled, feeding one character at a time."""
    stream = AnswerStream(knowledge, question, kb, clauses=clauses)
    out = []
    for n in range(1, len(body) + 1):
        piece = stream.update(body[:n])
        if piece:
            out.append((n, piece))
    return out


def _stop(body: str, kb, clauses: bool = True) -> int | None:
    """Characters of the body written when the stream failed (the body ends there), fed one at a time; None: never."""
    stream = AnswerStream(OTITIS, QUESTION, kb, clauses=clauses)
    return next((n for n in range(1, len(body) + 1) if (stream.update(body[:n]), stream.failed)[1]), None)


@pytest.mark.parametrize("clauses", [True, False], ids=["clause", "sentence"])
def test_what_is_streamed_stays_in_the_final_answer_whatever_comes_next(mini_kb, clauses):
    for body in BODIES:
        sent = ""
        for n, piece in [(0, "")] + _stream(body, clauses, mini_kb):
            sent += piece
            for rest in [body[n:], *CONTINUATIONS]:
                final = ground(body[:n] + rest, OTITIS, QUESTION, mini_kb).text
                assert final.startswith(sent), (body[:n], rest, sent, final)
        assert "".join(p for _, p in _stream(body, clauses, mini_kb)) == sent


def test_nothing_streamed_is_an_unchecked_claim(mini_kb):
    for body in BODIES:
        sent = ""
        for _, piece in _stream(body, True, mini_kb):
            sent += piece
            closed = sent if sent.endswith("。") else sent + "。"  # a verified head, closed as the answer would
            check = check_answer(closed, OTITIS, QUESTION, mini_kb)
            assert not check.dropped, (body, sent, check.dropped)


def test_a_listing_streams_value_by_value_and_a_sentence_only_when_complete(mini_kb):
    body = BODIES[0]
    # a clause is settled when the separator after it is written (n = characters written)
    assert _stream(body, True, mini_kb) == [
        (body.index("、") + 1, "急性中耳炎常用的药物有：阿莫西林"),
        (body.index("、镇痛药") + 1, "、头孢菌素"),
        (body.index("。") + 1, "、镇痛药。"),
        (len(body), "具体用药请遵医嘱或咨询药师。"),
    ]
    assert _stream(body, False, mini_kb) == [(body.index("。") + 1, "急性中耳炎常用的药物有：阿莫西林、头孢菌素、镇痛药。"),
                                             (len(body), "具体用药请遵医嘱或咨询药师。")]


def test_a_sentence_that_fails_after_verified_values_keeps_its_head(mini_kb):
    g = ground(BODIES[1], OTITIS, QUESTION, mini_kb)
    # the verified head, then what no kept sentence writes, listed from the knowledge: the rest of the field the
    # head began (药物治疗) and the field it never names (相关药物); what the model wrote after the dropped
    # sentence is not used
    assert g.text.split("\n")[0] == ("急性中耳炎常用的药物有：阿莫西林。根据知识库，急性中耳炎的药物治疗：头孢菌素、镇痛药。"
                                     "根据知识库，急性中耳炎的相关药物：阿莫西林胶囊。")
    assert [d.sentence for d in g.dropped] == ["急性中耳炎常用的药物有：阿莫西林、头孢类抗生素。"]  # still recorded
    # a loop is cut before the first repeated value, a trailing qualification is not a fact
    assert ground(BODIES[3], OTITIS, QUESTION, mini_kb).text.startswith(
        "急性中耳炎常用的药物有：阿莫西林、头孢菌素。根据知识库，急性中耳炎的药物治疗：镇痛药。"
        "根据知识库，急性中耳炎的相关药物：阿莫西林胶囊。\n")
    assert ground(BODIES[4], OTITIS, QUESTION, mini_kb).text.startswith(
        "具体用药请遵医嘱或咨询药师。急性中耳炎常用的药物有：阿莫西林。根据知识库，急性中耳炎的药物治疗：头孢菌素、镇痛药。"
        "根据知识库，急性中耳炎的相关药物：阿莫西林胶囊。\n")


def test_a_clause_is_verified_only_when_it_ends_before_a_separator_and_states_a_fact(mini_kb):
    checker = Checker(OTITIS, QUESTION, mini_kb)
    text = "急性中耳炎常用的药物有：阿莫西林、头孢"
    assert checker.clause(text, text.index("、")).facts[0].value == "阿莫西林"
    assert checker.clause(text, len(text) - 1) is None  # no separator after it yet: 头 may become 头孢菌素
    assert checker.clause("急性中耳炎常用的药物有：阿莫西林", 16) is None  # the cut must lie inside the text
    assert checker.clause("根据知识库，急性中耳炎", 5) is None  # states nothing


def test_a_sentence_end_inside_a_value_is_held_back_until_the_value_is_known():
    knowledge = {"X片": {"用法用量": ["口服。一次1片", "口服"]}}
    body = "X片的用法用量：口服。一次1片。请遵医嘱。"
    stream = AnswerStream(knowledge)
    sent = "".join(stream.update(body[:n]) for n in range(1, len(body) + 1))
    assert sent == ground(body, knowledge).text.split("\n")[0]
    assert sent.startswith("X片的用法用量：口服。一次1片。")  # one sentence, never cut at the value's 。
    stream = AnswerStream(knowledge)
    assert stream.update("X片的用法用量：口服。") == ""  # may be the value 口服。一次1片
    assert stream.update("X片的用法用量：口服。两次") == "X片的用法用量：口服。"  # it is not


def test_without_the_claim_check_the_body_streams_as_written(mini_kb):
    stream = AnswerStream(OTITIS, QUESTION, mini_kb, claim_check=False)
    assert stream.update("相关") == ""  # may still become a provenance line
    assert stream.update("相关的药物有 ") == "相关的药物有"


def test_a_field_no_kept_sentence_states_is_listed_after_the_answer_and_nothing_is_listed_twice(mini_kb):
    one = ground("急性中耳炎常用的药物有：阿莫西林、头孢菌素、镇痛药。", OTITIS, QUESTION, mini_kb)
    body = one.text.split("\n")[0]
    assert body == "急性中耳炎常用的药物有：阿莫西林、头孢菌素、镇痛药。根据知识库，急性中耳炎的相关药物：阿莫西林胶囊。"
    assert [f.predicate for f in one.sentences[-1].facts] == ["相关药物"]  # the listing cites its facts
    both = ground("急性中耳炎常用的药物有：阿莫西林、头孢菌素、镇痛药。相关药物有阿莫西林胶囊。", OTITIS, QUESTION, mini_kb)
    assert both.text.split("\n")[0].count("阿莫西林胶囊") == 1  # stated by the model: not listed again


def test_the_first_dropped_sentence_ends_the_answer_and_the_stream(mini_kb):
    body = "急性中耳炎常用的药物有：头孢类抗生素。具体用药请遵医嘱或咨询药师。急性中耳炎的相关药物：阿莫西林胶囊。"
    end = body.index("。") + 1
    g = ground(body, OTITIS, QUESTION, mini_kb)
    # nothing after the dropped sentence: the later (true) sentences are neither kept nor checked; every field
    # comes from the listing instead
    assert g.text.split("\n")[0] == ("根据知识库，急性中耳炎的药物治疗：阿莫西林、头孢菌素、镇痛药。"
                                     "根据知识库，急性中耳炎的相关药物：阿莫西林胶囊。")
    assert [d.sentence for d in g.dropped] == [body[:end]]
    for n in range(end, len(body) + 1):  # so stage 3 may stop generating anywhere after that sentence
        got = ground(body[:n], OTITIS, QUESTION, mini_kb)
        assert (got.text, got.sentences, got.dropped) == (g.text, g.sentences, g.dropped)
    stream = AnswerStream(OTITIS, QUESTION, mini_kb)
    assert [stream.update(body[:n]) for n in range(1, len(body) + 1)] == [""] * len(body)
    assert stream.failed
    # the policy is a setting: without it every sentence is checked on its own (the answer before session 8)
    old = ground(body, OTITIS, QUESTION, mini_kb, stop_at_failure=False)
    assert old.text.startswith("具体用药请遵医嘱或咨询药师。急性中耳炎的相关药物：阿莫西林胶囊。")
    stream = AnswerStream(OTITIS, QUESTION, mini_kb, stop_at_failure=False)
    assert "".join(stream.update(body[:n]) for n in range(1, len(body) + 1)).startswith("具体用药")
    assert not stream.failed


def test_a_value_listed_under_a_field_the_knowledge_lacks_ends_the_stream_at_once(mini_kb):
    # the model labels the drugs 用法用量: no continuation can make that sentence true, so the body ends there
    # instead of at the token cap, and the answer is the one the whole body would give
    body = "急性中耳炎的用法用量：阿莫西林、头孢菌素、镇痛药、阿莫西林胶囊。具体用药请遵医嘱。"
    cut = _stop(body, mini_kb)
    assert Checker(OTITIS, QUESTION, mini_kb).wrong_field("急性中耳炎的用法用量：阿莫西林、")
    assert cut <= len("急性中耳炎的用法用量：阿莫西林、")  # (this small knowledge's short values: a settled 用法用量 ends it first)
    assert ground(body[:cut], OTITIS, QUESTION, mini_kb).text == ground(body, OTITIS, QUESTION, mini_kb).text
    # a field the knowledge has, or a field name inside a longer one it has, is no reason to stop
    for fine in ("急性中耳炎的药物治疗：阿莫西林、", "急性中耳炎的相关药物：阿莫西林胶囊、"):
        stream = AnswerStream(OTITIS, QUESTION, mini_kb)
        stream.update(fine)
        assert not stream.failed, fine


def test_a_sentence_no_trained_frame_can_begin_ends_the_stream_at_its_first_listed_value(mini_kb):
    # "可用于" is how an 适应症 is stated: over this knowledge's drugs no frame can read the sentence, whatever comes
    # next, so the body ends at the first listed value instead of at the token cap, with the whole body's answer
    body = "急性中耳炎可用于：阿莫西林、头孢菌素、镇痛药、阿莫西林胶囊、阿莫西林、头孢菌素、镇痛药。具体用药请遵医嘱。"
    cut = _stop(body, mini_kb)
    assert cut <= len("急性中耳炎可用于：阿莫西林、")  # (the short values here settle 可用于 even before that)
    assert ground(body[:cut], OTITIS, QUESTION, mini_kb).text == ground(body, OTITIS, QUESTION, mini_kb).text
    assert Checker(OTITIS, QUESTION, mini_kb).dead("急性中耳炎可用于：阿莫西林、")
    # a trained frame's beginning, or a name still being written: no verdict
    checker = Checker(OTITIS, QUESTION, mini_kb)
    for alive in ("急性中耳炎常用的药物有：阿莫西林、头孢菌素、", "急性中耳炎常用的", "急性中耳炎的药物", "根据知识库，急性中",
                  "急性中耳炎常用的药物有：阿莫"):
        assert not checker.dead(alive), alive
    # before any value: the connective text that no frame over this knowledge begins with is settled once nothing
    # after it can still grow into a value, a name or a field name (可用于 is how an 适应症 is stated)
    for dead in ("急性中耳炎可用于：", "急性中耳炎可用于", "根据知识库，急性中耳炎含有"):
        assert checker.dead(dead), dead
    # a rewritten value once settled (头孢类抗生素 for 头孢菌素, values written after it) ends it too, with the
    # complete sentence's answer
    rewrite = "急性中耳炎常用的药物有：阿莫西林、头孢类抗生素、镇痛药、阿莫西林胶囊、头孢菌素"
    assert checker.dead(rewrite)
    assert ground(rewrite, OTITIS, QUESTION, mini_kb).text == ground(rewrite + "。", OTITIS, QUESTION, mini_kb).text


def test_where_a_stream_stops_the_answer_is_the_one_any_continuation_would_give(mini_kb):
    # the stop is a promise about every continuation: the answer of the body cut where the stream fails is the
    # answer of the body continued in any way (so stopping generation there changes nothing the user gets)
    bodies = BODIES + ["急性中耳炎可用于：阿莫西林、头孢菌素。", "根据知识库，急性中耳炎的治疗方案包括阿莫西林、头孢菌素。",
                       "急性中耳炎的药物治疗包括阿莫西林、头孢菌素、镇痛药，共3项（完整列表见相关知识）。",
                       "具体用药请遵医嘱或咨询药师。急性中耳炎可用于：阿莫西林、镇痛药、"]
    stops = []
    for body in bodies:
        n = _stop(body, mini_kb, clauses=False)
        if n is None:
            continue
        stops.append(body[:n])
        cut = ground(body[:n], OTITIS, QUESTION, mini_kb).text
        for more in CONTINUATIONS + [body[n:]]:
            assert ground(body[:n] + more, OTITIS, QUESTION, mini_kb).text == cut, (body[:n], more)
    # a later sentence stops before its first value, once its connective text begins no frame (可用 of 可用于)
    assert "具体用药请遵医嘱或咨询药师。急性中耳炎可用" in stops, stops


def test_a_model_looping_on_a_name_or_a_field_stops_before_it_lists_anything(mini_kb):
    # loops seen on the demo run ("盐酸二甲双胍片中的盐酸二甲双胍片中的…", "硝苯地平片中的药物分类：药物分类：…") list no
    # value, so the listed-value reading never settles; a span further from the end than the longest span reaches
    # settles the beginning (a name, or text no span covers), and no frame begins "X中的X中的" or "X中的药物分类："
    for loop in ("急性中耳炎中的" * 12, "急性中耳炎中的" + "药物治疗：" * 16, "急性中耳炎中的" + "药物分类：" * 16):
        cut = _stop(loop, mini_kb)
        assert cut is not None and cut < len(loop) / 2, (loop, cut)
        assert ground(loop[:cut], OTITIS, QUESTION, mini_kb).text == ground(loop, OTITIS, QUESTION, mini_kb).text
    # a frame's beginning read to a settled span is no verdict, however long the sentence grows before its values
    checker = Checker(OTITIS, QUESTION, mini_kb)
    for alive in ("根据知识库，急性中耳炎的药物治疗包括：", "急性中耳炎常用的药物有：阿莫西林胶囊、头孢菌素、镇痛药、阿莫西林"):
        assert not checker.dead(alive), alive


def test_a_check_without_a_question_still_stops_a_loop(mini_kb):
    # the question is optional for the public check (ground, check_answer): None reads as no question
    loop = "急性中耳炎中的" * 12
    assert Checker(OTITIS, None, mini_kb).dead(loop)
    assert ground(loop, OTITIS, None, mini_kb).text == ground(loop, OTITIS, "", mini_kb).text


def test_asking_a_failure_stop_about_drafts_records_nothing(mini_kb):
    from ktune.pipeline.answer_stream import FailureStop

    class Chars:  # one token per character
        @staticmethod
        def decode(ids, skip_special_tokens=True):
            return "".join(map(chr, ids))

    body = [ord(ch) for ch in "急性中耳炎常用的药物有：头孢类抗生素。"]
    stop = FailureStop([AnswerStream(OTITIS, QUESTION, mini_kb, clauses=False)], Chars())
    assert not stop(0, body[:5])
    assert not stop.would_stop(0, body[:10]) and stop.would_stop(0, body)  # drafts: 头孢类 begins no value
    assert stop.ends == [None] and not stop.streams[0].failed  # nothing recorded, the stream untouched
    assert stop.would_stop(0, body[:16]) and not stop.would_stop(0, body[:12])  # a shorter draft, read afresh
    assert stop(0, body) and stop.ends == [len("急性中耳炎常用的药物有：头孢类")]
