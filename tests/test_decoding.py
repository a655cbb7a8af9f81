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


def test_training_check_decodes_as_before(lm):
    from ktune.decoding import GreedyDecoder
    from ktune.train.generation import greedy_generate

    model, tok = lm
    fmt = PromptFormat()
    prompts = [fmt.query_prompt(q) for q in QUESTIONS]
    old = greedy_generate(model, tok, fmt, prompts, max_new_tokens=24, batch_size=3)
    assert GreedyDecoder(model, tok, fmt).texts(prompts, 24, batch_size=3) == old


def test_eval_systems_decode_as_before(lm):
    from ktune.decoding import GreedyDecoder
    from ktune.eval.generation import generate_from_ids, instruction_prompt_ids, oracle_prompt_ids

    model, tok = lm
    fmt = PromptFormat()
    entities = ["急性中耳炎", "感冒", "二甲双胍", "阿莫仙", "偏头疼", "黄芪", "发烧"]
    ids = [oracle_prompt_ids(tok, fmt, q, e) for q, e in zip(QUESTIONS, entities, strict=True)]
    old = generate_from_ids(model, tok, fmt, ids, max_new_tokens=12, batch_size=4)
    forced = [encode_pieces(tok, [e, fmt.separator]) for e in entities]
    new = GreedyDecoder(model, tok, fmt).texts([fmt.query_prompt(q) for q in QUESTIONS], 12, forced=forced,
                                               batch_size=4)
    assert new == old
    ids = [instruction_prompt_ids(tok, fmt, q) for q in QUESTIONS]
    old = generate_from_ids(model, tok, fmt, ids, max_new_tokens=40, batch_size=4)
    assert GreedyDecoder(model, tok, fmt).texts([fmt.instruction_prompt(q) for q in QUESTIONS], 40,
                                                batch_size=4) == old
