"""The answer streamer: tokens in, settled answer text out (checked clauses or sentences), a cap per row, an early
stop."""

import pytest
import torch

from ktune.pipeline.answer import ground
from ktune.pipeline.answer_stream import AnswerStream
from ktune.serve.stream import AnswerStreamer, GenerationStopped, RowStream

OTITIS = {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"]}}


def _as_written(clauses=False):
    """The body as the model writes it (no claim check), settled by sentence or as it comes."""
    return AnswerStream({}, claim_check=False, clauses=clauses)


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _feed(streamer, rows_text, tok, pad):
    """Prompt first, then one token per row per step, as generate() does (finished rows get pad)."""
    streamer.put(torch.zeros((len(rows_text), 3), dtype=torch.long))
    seqs = [_ids(tok, t) for t in rows_text]
    for step in range(max(map(len, seqs))):
        streamer.put(torch.tensor([s[step] if step < len(s) else pad for s in seqs]))
    streamer.end()


def test_sentences_are_sent_when_complete_and_provenance_lines_never(tiny_lm):
    _, tok = tiny_lm
    got = [[], []]
    rows = [RowStream(_as_written(), 100, got[0].append), RowStream(_as_written(), 100, got[1].append)]
    streamer = AnswerStreamer(tok, [tok.eos_token_id], tok.pad_token_id, rows)
    _feed(streamer, ["感冒会传染。二甲双胍有什么副作用？急性", "相关知识：{}。"], tok, tok.pad_token_id)
    assert got[0] == ["感冒会传染。", "二甲双胍有什么副作用？"]  # "急性" is unfinished: it comes with the final answer
    assert got[1] == []  # a provenance-looking line is never the model's answer text
    assert [len(r.tokens) for r in rows] == [len("感冒会传染。二甲双胍有什么副作用？急性"), len("相关知识：{}。")]


def test_a_row_stops_at_its_cap_and_is_marked_capped(tiny_lm):
    _, tok = tiny_lm
    rows = [RowStream(None, 3, None), RowStream(None, 50, None)]
    streamer = AnswerStreamer(tok, [tok.eos_token_id], tok.pad_token_id, rows)
    _feed(streamer, ["感冒会传染。", "感冒。"], tok, tok.pad_token_id)
    assert tok.decode(rows[0].tokens) == "感冒会" and rows[0].capped
    assert tok.decode(rows[1].tokens) == "感冒。" and not rows[1].capped


def test_generation_is_stopped_when_nobody_waits(tiny_lm):
    _, tok = tiny_lm
    streamer = AnswerStreamer(tok, [tok.eos_token_id], tok.pad_token_id, [RowStream(None, 9, None)],
                              should_stop=lambda: True)
    streamer.put(torch.zeros((1, 3), dtype=torch.long))
    with pytest.raises(GenerationStopped):
        streamer.put(torch.tensor([5]))


def test_checked_clauses_are_sent_as_they_are_verified_and_stay_in_the_final_answer(tiny_lm, mini_kb):
    _, tok = tiny_lm
    body = "根据知识库，急性中耳炎的药物治疗：阿莫西林，头孢菌素，头孢类。急性中耳炎的药物治疗：镇痛药。"
    assert tok.decode(_ids(tok, body)) == body  # the tiny tokenizer writes every character of it
    got = []
    row = RowStream(AnswerStream(OTITIS, "急性中耳炎吃什么药？", mini_kb), 100, got.append)
    _feed(AnswerStreamer(tok, [tok.eos_token_id], tok.pad_token_id, [row]), [body], tok, tok.pad_token_id)
    # each value as soon as the separator after it came, the rewritten value never, and nothing once the sentence
    # cannot be kept (at 头孢类, which begins no value): the final answer closes its verified head and lists 镇痛药
    # from the knowledge instead
    assert got == ["根据知识库，急性中耳炎的药物治疗：阿莫西林", "，头孢菌素"]
    assert ground(body, OTITIS, "急性中耳炎吃什么药？", mini_kb).text.startswith(
        "".join(got) + "。根据知识库，急性中耳炎的药物治疗：镇痛药。")


def test_one_row_takes_the_verified_tokens_of_draft_and_verify_several_at_a_time(tiny_lm, mini_kb):
    _, tok = tiny_lm
    body = "根据知识库，急性中耳炎的药物治疗：阿莫西林，头孢菌素。"
    one_by_one, chunked = [], []
    for got, chunk in ((one_by_one, 1), (chunked, 5)):
        row = RowStream(AnswerStream(OTITIS, "急性中耳炎吃什么药？", mini_kb), 100, got.append)
        streamer = AnswerStreamer(tok, [tok.eos_token_id], tok.pad_token_id, [row])
        streamer.put(torch.zeros((1, 3), dtype=torch.long))  # the prompt
        ids = _ids(tok, body)
        for i in range(0, len(ids), chunk):
            streamer.put(torch.tensor(ids[i:i + chunk]))
        streamer.end()
        assert row.tokens == ids
    assert "".join(chunked) == "".join(one_by_one) == body
