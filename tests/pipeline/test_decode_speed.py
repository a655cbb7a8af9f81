"""Speed paths that must not change what is decoded: draft-and-verify greedy equals whole-head greedy, the
stage-1 head is a view (the shared model is never changed, even while decoding on another thread), the head's
post-processing comes from the model, and inference threads follow the setting."""

import threading

import pytest
import torch

from ktune.pipeline.decode import Decoder, DraftStats
from ktune.prompt import PromptFormat
from ktune.query_vocab import SubsetHead, answer_draft_ids, head_logits, with_head
from tests.pipeline.conftest import QUESTIONS


def _generate(decoder: Decoder, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """The reference: transformers' generate() with the whole head, cut after the first end token."""
    ids, mask = decoder._pad(prompts)
    with torch.inference_mode():
        out = decoder.base_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                          num_beams=1, eos_token_id=decoder.end_ids, pad_token_id=decoder.pad_id)
    rows = []
    for row in out[:, ids.shape[1]:].tolist():
        cut = next((j + 1 for j, t in enumerate(row) if t in decoder.end_ids), len(row))
        rows.append(row[:cut])
    return rows


def _prompts(tok, n: int, seed: int) -> list[list[int]]:
    fmt, rng = PromptFormat(), torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)]
        cut = int(torch.randint(2, len(q) + 1, (1,), generator=rng))
        out.append(fmt.encode_prompt(tok, fmt.query_prompt(q[:cut])))
    return out


def _gemma(vocab_size: int, softcap: float | None, window: int = 6):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=window,
                           layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                           final_logit_softcapping=softcap, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return Gemma3ForCausalLM(cfg).eval()


@pytest.mark.parametrize("draft", ["none", "small", "answer"])
def test_draft_and_verify_gives_exactly_the_whole_head_greedy_tokens(tiny_lm, draft):
    model, tok = tiny_lm
    ids = {"none": [], "small": list(range(10, 40)), "answer": answer_draft_ids(tok)}[draft]
    decoder = Decoder(model, tok, PromptFormat(), draft_ids=ids)
    prompts = _prompts(tok, 6, seed=1)
    stats = DraftStats()
    got = decoder.draft_and_verify(prompts, 20, stats=stats)
    assert got == _generate(decoder, prompts, 20)
    assert [decoder.draft_and_verify([p], 20) for p in prompts] == [[row] for row in got]  # batch = single
    if draft != "answer":
        assert stats.rejected > 0  # the whole head did replace drafts (the test exercises the cache cut)
        assert stats.rounds == 1  # ... by cutting the KV cache back, not by a second prefill


def test_a_draft_that_keeps_missing_switches_to_the_whole_head_and_still_matches(tiny_lm):
    model, tok = tiny_lm
    decoder = Decoder(model, tok, PromptFormat(), draft_ids=[])
    prompts = _prompts(tok, 2, seed=6)
    stats = DraftStats()
    assert decoder.draft_and_verify(prompts, 48, stats=stats) == _generate(decoder, prompts, 48)
    assert stats.whole_head


@pytest.mark.parametrize("softcap, window", [(None, 6), (0.3, 6), (0.3, 64)])
def test_draft_and_verify_on_gemma3_with_sliding_window_and_softcap(tiny_lm, softcap, window):
    _, tok = tiny_lm
    model = _gemma(len(tok), softcap, window)
    decoder = Decoder(model, tok, PromptFormat(), draft_ids=list(range(5, 60)))
    prompts = _prompts(tok, 4, seed=2)
    stats = DraftStats()
    got = decoder.draft_and_verify(prompts, 24, stats=stats)
    assert got == _generate(decoder, prompts, 24)
    assert stats.rejected > 0
    # past its sliding window a layer keeps no older states: a replaced draft restarts with a new prefill
    assert (stats.rounds > 1) if window == 6 else (stats.rounds == 1)


def test_prompt_lookup_gives_the_plain_greedy_query_of_a_single_question(tiny_lm):
    model, tok = tiny_lm
    fmt = PromptFormat()
    head = SubsetHead(model.lm_head, list(range(len(tok))))
    plain, lookup = Decoder(model, tok, fmt).with_head(head), Decoder(model, tok, fmt).with_head(head, lookup=8)
    prompts = [fmt.query_prompt(q) for q in QUESTIONS] + [fmt.query_prompt(QUESTIONS[0] * 3)]
    for p in prompts:
        assert lookup.greedy([p], 24) == plain.greedy([p], 24)


def test_a_streamer_sees_what_generate_would_stream(tiny_lm):
    model, tok = tiny_lm

    class Collect:
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, value):
            self.puts.append(value.reshape(-1).tolist())

        def end(self):
            self.ended = True

    decoder = Decoder(model, tok, PromptFormat(), draft_ids=list(range(10, 40)))
    prompt = _prompts(tok, 1, seed=3)
    mine, ref = Collect(), Collect()
    decoder.draft_and_verify(prompt, 16, streamer=mine)
    ids, _ = decoder._pad(prompt)
    with torch.inference_mode():
        model.generate(input_ids=ids, max_new_tokens=16, do_sample=False, eos_token_id=decoder.end_ids,
                       pad_token_id=decoder.pad_id, streamer=ref)
    assert mine.ended and ref.ended
    assert mine.puts[0] == ref.puts[0]  # the prompt first
    flat_mine, flat_ref = sum(mine.puts[1:], []), sum(ref.puts[1:], [])
    assert flat_mine == flat_ref[:len(flat_mine)] and len(flat_mine) >= 1
    with pytest.raises(ValueError, match="one prompt"):
        decoder.draft_and_verify(prompt * 2, 4, streamer=Collect())


def test_draft_answers_equal_full_answers_through_the_pipeline(tiny_lm, mini_kb):
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig

    model, tok = tiny_lm
    knowledge = [mini_kb.acquire_knowledge("急性中耳炎", "药物治疗"), mini_kb.acquire_knowledge("感冒", "临床表现")]
    questions = QUESTIONS[:2]
    answers = {}
    for mode in ("draft", "full"):
        qa = KnowledgeTunedQA(model, tok, mini_kb, config=PipelineConfig(max_answer_tokens=24, answer_decoding=mode))
        answers[mode] = qa.answer_stage.run(questions, knowledge) + [qa.answer_stage.run([q], [k])[0]
                                                                       for q, k in zip(questions, knowledge, strict=True)]
    assert answers["draft"] == answers["full"]


def test_the_head_view_shares_every_parameter_and_leaves_the_model_alone(tiny_lm):
    model, tok = tiny_lm
    head = SubsetHead(model.lm_head, list(range(20)))
    before = dict(model._modules)
    view = with_head(model, head)
    assert view.lm_head is head and model.lm_head is before["lm_head"]
    assert dict(model._modules) == before
    assert view.model is model.model  # the body (and so every parameter) is shared, not copied
    ids = torch.tensor([_prompts(tok, 1, seed=4)[0]])
    with torch.inference_mode():
        sub = view(input_ids=ids).logits[0, -1]
        full = model(input_ids=ids).logits[0, -1]
    assert torch.isinf(sub[20:]).all() and torch.allclose(sub[:20], full[:20], atol=1e-5)


def test_stage_1_never_swaps_the_shared_model_head_while_or_after_decoding(qa):
    model = qa.decoder.base_model
    original_head, modules = model.lm_head, dict(model._modules)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    hook = model.model.register_forward_pre_hook(lambda mod, args: seen.append(model.lm_head is original_head))
    try:
        qa.query_stage.run(QUESTIONS, "fallback")
        qa.query_stage.free_attributes(QUESTIONS[:2], ["急性中耳炎", "感冒"])
    finally:
        hook.remove()
    assert seen and all(seen)
    assert model.lm_head is original_head and dict(model._modules) == modules
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())


def test_stage_1_and_stage_3_on_two_threads_give_the_sequential_outputs(qa, mini_kb):
    knowledge = [mini_kb.acquire_knowledge("急性中耳炎", "药物治疗")] * 3
    answer_qs = QUESTIONS[:3]
    expected_q = qa.query_stage.run(QUESTIONS, "fallback")
    expected_a = qa.answer_stage.run(answer_qs, knowledge)
    expected_full = qa.decoder.greedy([qa.fmt.query_prompt(q) for q in QUESTIONS], 12)
    results, errors = {"q": [], "a": [], "full": []}, []
    start = threading.Barrier(3)

    def work(name, fn):
        try:
            start.wait()
            for _ in range(3):
                results[name].append(fn())
        except Exception as exc:  # surfaced below with the thread's name
            errors.append((name, exc))

    threads = [threading.Thread(target=work, args=("q", lambda: qa.query_stage.run(QUESTIONS, "fallback"))),
               threading.Thread(target=work, args=("a", lambda: qa.answer_stage.run(answer_qs, knowledge))),
               threading.Thread(target=work, args=("full", lambda: qa.decoder.greedy(
                   [qa.fmt.query_prompt(q) for q in QUESTIONS], 12)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results["q"] == [expected_q] * 3
    assert results["a"] == [expected_a] * 3
    assert results["full"] == [expected_full] * 3


@pytest.mark.parametrize("arch", ["qwen2", "gemma3-softcap"])
def test_head_logits_are_the_model_logits_with_its_own_post_processing(tiny_lm, arch):
    model, tok = tiny_lm
    if arch != "qwen2":
        model = _gemma(len(tok), 0.2)
    ids = torch.tensor(_prompts(tok, 2, seed=5)[:1] * 2)
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
        hidden = model.model(input_ids=ids).last_hidden_state
        assert torch.allclose(head_logits(model, hidden), ref, atol=1e-6)
    if arch != "qwen2":
        assert float(ref.abs().max()) <= 0.2  # the softcap is applied


def test_inference_threads_follow_the_setting(fresh_run, mini_kb):
    from ktune.errors import ConfigError
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig

    before = torch.get_num_threads()
    try:
        KnowledgeTunedQA.from_pretrained(fresh_run, kb=mini_kb, config=PipelineConfig(threads=2))
        assert torch.get_num_threads() == 2
        KnowledgeTunedQA.from_pretrained(fresh_run, kb=mini_kb)  # auto: $KTUNE_THREADS (1 in tests)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="training only"):
        PipelineConfig(threads="adaptive")


@pytest.mark.parametrize("path", ["draft", "generate"])
def test_a_row_stop_ends_only_that_row_and_leaves_a_prefix_of_its_tokens(tiny_lm, path):
    model, tok = tiny_lm
    decoder = Decoder(model, tok, PromptFormat(), draft_ids=list(range(10, 60)) if path == "draft" else None)
    fmt = PromptFormat()
    prompts = [fmt.query_prompt(q) for q in QUESTIONS[:3]]
    full = decoder.greedy(prompts, 24)
    seen: dict[int, list[int]] = {}

    def stop(row: int, tokens: list[int]) -> bool:  # row 1 ends once it has 3 tokens
        seen.setdefault(row, []).append(len(tokens))
        return row == 1 and len(tokens) >= 3

    got = decoder.greedy(prompts, 24, stop=stop)
    assert [b.tokens for b in got][::2] == [b.tokens for b in full][::2]  # the other rows: exactly as before
    assert len(full[1].tokens) > 3, "the tiny model must write more than 3 tokens for this test to mean anything"
    cut = got[1].tokens
    assert 3 <= len(cut) < len(full[1].tokens) and full[1].tokens[:len(cut)] == cut
    assert all(n <= 24 for lengths in seen.values() for n in lengths)


def test_a_stop_that_sees_its_end_among_the_drafts_is_verified_then_not_drafts_later(tiny_lm):
    model, tok = tiny_lm
    decoder = Decoder(model, tok, PromptFormat(), draft_ids=list(range(tok.vocab_size)))  # every draft is right
    prompt = PromptFormat().encode_prompt(tok, PromptFormat().query_prompt(QUESTIONS[0]))
    full = decoder.draft_and_verify([prompt], 24)[0]
    assert len(full) > 8, "the tiny model must write more than 8 tokens for this test to mean anything"

    class Stop:  # the row ends at its 3rd token; `probe` adds would_stop, asked about unverified drafts
        def __init__(self, probe: bool):
            self.asked: list[int] = []
            if probe:
                self.would_stop = lambda row, tokens: self.asked.append(len(tokens)) or len(tokens) >= 3

        def __call__(self, row, tokens):
            return len(tokens) >= 3

    drafted = {}
    for probe in (False, True):
        stats, stop = DraftStats(), Stop(probe)
        got = decoder.draft_and_verify([prompt], 24, stats=stats, stop=stop)[0]
        assert got[:3] == full[:3] and full[:len(got)] == got  # the same tokens up to where the row ended
        drafted[probe] = stats.drafted
    assert drafted[True] == 3 < drafted[False]  # verified at the 3rd draft, not after VERIFY_EVERY of them
    assert stop.asked and max(stop.asked) == 3


def test_stage_3_stops_a_row_at_its_first_dropped_sentence_and_answers_as_from_the_whole_body(tiny_lm, mini_kb):
    """A decoder that writes fixed bodies character by character and honours the stage's stop (the tiny model
    writes no sentences): the stopped rows end where their first failing sentence can no longer be kept (a rewritten
    value settled, a field the knowledge lacks begun); a row with nothing to drop runs to the end."""
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig
    from ktune.pipeline.answer import ground
    from ktune.pipeline.decode import Beam

    model, tok = tiny_lm
    bodies = ["急性中耳炎常用的药物有：头孢类抗生素。急性中耳炎的相关药物：阿莫西林胶囊。具体用药请遵医嘱。",
              "急性中耳炎的用法用量：阿莫西林、头孢菌素、镇痛药。具体用药请遵医嘱。",
              "急性中耳炎常用的药物有：阿莫西林、头孢菌素、镇痛药。具体用药请遵医嘱。"]
    knowledge = [{"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"], "相关药物": ["阿莫西林胶囊"]}}] * 3
    questions = [f"急性中耳炎吃什么药？（{i}）" for i in range(3)]

    class Chars:  # one token per character (the tiny tokenizer lacks some of these characters)
        @staticmethod
        def decode(ids, skip_special_tokens=True):
            return "".join(map(chr, ids))

    class Writer:
        def __init__(self):
            self.tokenizer, self.written = Chars(), {}

        def greedy(self, prompts, max_new, grammar=None, forced=None, streamer=None, stop=None):
            out = []
            for row, prompt in enumerate(prompts):
                i = next(i for i, q in enumerate(questions) if q in prompt)
                ids = [ord(ch) for ch in bodies[i]]
                n = next((k for k in range(1, len(ids) + 1) if stop is not None and stop(row, ids[:k])), len(ids))
                self.written[i] = n
                out.append(Beam(bodies[i][:n], tuple(ids[:n]), 0.0))
            return out

    answers = {}
    for stop in (False, True):
        qa = KnowledgeTunedQA(model, tok, mini_kb, config=PipelineConfig(stop_at_failed_sentence=stop))
        qa.answer_stage.decoder = writer = Writer()
        answers[stop] = (qa.answer_stage.run(questions, knowledge), writer.written)
    (whole, n_whole), (stopped, n_stopped) = answers[False], answers[True]
    # 头孢类 begins no value (头孢菌素 would be 头孢菌); 的用 begins no field of this knowledge (用法用量 is not one)
    assert [g.raw for g in stopped][:2] == ["急性中耳炎常用的药物有：头孢类", "急性中耳炎的用"]
    assert stopped[2].raw == bodies[2] and n_stopped[2] == n_whole[2]  # nothing failed: written to the end
    for w, s_, q, k in zip(whole, stopped, questions, knowledge, strict=True):
        assert s_.text == ground(w.raw, k, q, mini_kb).text  # the answer the whole body gives under the policy
    assert whole[0].text != stopped[0].text  # the old policy kept the later true sentence


def test_a_batch_streams_row_by_row_to_a_streamer_that_follows_rows(tiny_lm):
    model, tok = tiny_lm

    class Rows:
        def __init__(self, n):
            self.rows, self.puts = [[] for _ in range(n)], 0

        def put(self, value):
            self.puts += 1

        def put_row(self, index, tokens):
            self.rows[index].extend(tokens)

        def end(self):
            pass

    decoder = Decoder(model, tok, PromptFormat(), draft_ids=list(range(10, 200)))
    prompts = _prompts(tok, 3, seed=5)
    plain = decoder.draft_and_verify(prompts, 20)
    rows = Rows(3)
    assert decoder.draft_and_verify(prompts, 20, streamer=rows) == plain
    assert rows.rows == plain and rows.puts == 0  # every verified token, in its row, and no batch-wide put
    fmt = PromptFormat()
    texts = [fmt.query_prompt(q) for q in QUESTIONS[:3]]
    rows = Rows(3)
    assert [b.tokens for b in decoder.greedy(texts, 20, streamer=rows)] == [b.tokens for b in decoder.greedy(texts, 20)]
    with pytest.raises(ValueError, match="one prompt"):
        decoder.draft_and_verify(prompts, 4, streamer=type("Plain", (), {"put": lambda s, v: None})())
