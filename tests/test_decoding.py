"""One batched greedy decoder (ktune.decoding) for training's check, the eval-only systems and the pipeline."""

import pytest

from ktune.prompt import PromptFormat, encode_pieces

QUESTIONS = ["急性中耳炎的药物治疗有哪些？", "感冒会传染吗？", "二甲双胍有什么副作用？", "阿莫仙是什么做的？",
             "偏头疼看什么科？", "黄芪有什么用", "宝宝发烧怎么办？"]


@pytest.fixture(scope="module", params=[0, 1, 2])
def lm(request, tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM

    from ktune.train.loading import load_tokenizer
    from ktune.train.tiny import build_tiny_model

    torch.set_num_threads(1)
    path = build_tiny_model(tmp_path_factory.mktemp("tiny"), QUESTIONS + ["感冒|传染性\n无|"], seed=request.param)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, load_tokenizer(path)


def reference(model, tok, fmt, prompt, max_new_tokens, forced=()):
    """Greedy decoding the plain way: one prompt, no padding, no cache, argmax until an end or pad token."""
    import torch

    from ktune.decoding import GreedyDecoder

    rules = GreedyDecoder(model, tok, fmt)
    ids, out = fmt.encode_prompt(tok, prompt) + list(forced), []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            t = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            if t in rules.end_ids or t == rules.pad_id:
                break
            out.append(t)
    return tok.decode(out, skip_special_tokens=True).split(fmt.stop, 1)[0]


def test_batched_greedy_is_the_plain_greedy_of_each_prompt(lm):
    from ktune.decoding import GreedyDecoder

    model, tok = lm
    fmt = PromptFormat()
    prompts = [fmt.query_prompt(q) for q in QUESTIONS] + [fmt.instruction_prompt(q) for q in QUESTIONS[:3]]
    expected = [reference(model, tok, fmt, p, 20) for p in prompts]
    assert GreedyDecoder(model, tok, fmt).texts(prompts, 20, batch_size=4) == expected


def test_forced_tokens_are_continued_as_if_they_were_part_of_the_prompt(lm):
    """The oracle-entity system: the gold entity and the separator follow the prompt, the model writes the rest."""
    from ktune.decoding import GreedyDecoder

    model, tok = lm
    fmt = PromptFormat()
    entities = ["急性中耳炎", "感冒", "二甲双胍"]
    forced = [encode_pieces(tok, [e, fmt.separator]) for e in entities]
    prompts = [fmt.query_prompt(q) for q in QUESTIONS[:3]]
    expected = [reference(model, tok, fmt, p, 12, f) for p, f in zip(prompts, forced, strict=True)]
    assert GreedyDecoder(model, tok, fmt).texts(prompts, 12, forced=forced) == expected


def test_the_pipeline_decoder_follows_the_same_rules(lm):
    """Stage 1's free decoding (generate()) and stage 3's draft-and-verify give the shared decoder's texts."""
    from ktune.decoding import GreedyDecoder
    from ktune.pipeline.decode import Decoder

    model, tok = lm
    fmt = PromptFormat()
    prompts = [fmt.query_prompt(q) for q in QUESTIONS]
    expected = GreedyDecoder(model, tok, fmt).texts(prompts, 20)
    for decoder in (Decoder(model, tok, fmt), Decoder(model, tok, fmt, draft_ids=list(range(40)))):
        assert [b.text.split(fmt.stop, 1)[0] for b in decoder.greedy(prompts, 20)] == expected
