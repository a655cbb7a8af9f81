"""`quantize="int8"`: the decoder body's linears become dynamic int8; the LM head, the stage-1 subset head and the
pipeline's contract (knowledge, provenance, refusals) stay as they are."""

import pytest
import torch
from torch import nn

from ktune.errors import ConfigError
from ktune.pipeline.quantize import quantize_engine


def _linears(module):
    return [m for m in module.modules() if type(m) is nn.Linear]


def _wrapped(module):
    from ktune.pipeline.quantize import Int8TokenLinear

    return [m for m in module.modules() if isinstance(m, Int8TokenLinear)]


def test_quantize_settings_are_checked():
    from ktune.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match="quantize 'int4' is not one of auto, none, int8"):
        PipelineConfig(quantize="int4")
    with pytest.raises(ConfigError, match="on the CPU from fp32 weights"):
        PipelineConfig(quantize="int8", dtype="bf16")
    with pytest.raises(ConfigError, match="on the CPU from fp32 weights"):
        PipelineConfig(quantize="int8", device="cuda")
    assert PipelineConfig().quantize == "none"
    assert PipelineConfig(device="cuda").resolved_quantize() == "none"
    assert PipelineConfig(dtype="bf16").resolved_quantize() == "none"
    assert PipelineConfig(quantize="none").resolved_quantize() == "none"
    assert PipelineConfig(quantize="auto").resolved_quantize() == ("int8" if quantize_engine() else "none")


@pytest.mark.skipif(quantize_engine() is None, reason="this PyTorch build has no quantized CPU engine")
def test_int8_runs_only_answer_decode_steps_and_keeps_prompts_stage_1_and_the_head_fp32(tiny_dir):
    from transformers import AutoModelForCausalLM

    from ktune.pipeline.precision import int8_steps
    from ktune.pipeline.quantize import quantize_int8
    from ktune.query_vocab import body_of

    ref = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    n_body = len(_linears(body_of(model)))
    head = model.lm_head.weight.detach().clone()
    assert quantize_int8(model)
    assert len(_wrapped(body_of(model))) == n_body > 0
    assert type(model.lm_head) is nn.Linear and torch.equal(model.lm_head.weight, head)  # the head stays fp32
    step, prompt = torch.tensor([[5], [9]]), torch.tensor([[5, 9, 13, 21, 8, 3]])
    with torch.inference_mode():
        a = ref(input_ids=step).logits
        assert torch.equal(model(input_ids=step).logits, a)  # outside the answer stage: fp32
        assert torch.equal(model(input_ids=prompt).logits, ref(input_ids=prompt).logits)
        with int8_steps():
            b = model(input_ids=step).logits
            assert torch.equal(model(input_ids=prompt).logits, ref(input_ids=prompt).logits)  # prompts: fp32
    assert not torch.equal(a, b)  # an answer decode step: int8
    # a random 64-wide model: about 8% of the largest logit; a broken quantization is off by about 100%
    assert (a - b).abs().max() < 0.15 * a.abs().max()


@pytest.mark.skipif(quantize_engine() is None, reason="this PyTorch build has no quantized CPU engine")
def test_no_row_sets_the_int8_scale_of_another():
    from ktune.pipeline.precision import int8_steps
    from ktune.pipeline.quantize import Int8TokenLinear

    torch.manual_seed(0)
    linear = nn.Linear(640, 48)
    layer = Int8TokenLinear(linear)
    x = torch.randn(1, 1, 640)
    g = torch.Generator().manual_seed(3)  # rows where (high - mid) / half rounds to 1 + 1.2e-7 in float32
    others = (torch.randn(6, 640, generator=g) * torch.rand(6, 1, generator=g) * 30
              + torch.randn(6, 1, generator=g) * 3)[:, None]
    with torch.inference_mode(), int8_steps():
        alone = layer(x)
        assert torch.equal(layer(torch.cat([others[:3], x, others[3:]]))[3], alone[0])
        prompt = torch.cat([others[0, None], x], dim=1)  # more than one position per row: a prompt, fp32
        assert torch.equal(layer(prompt), linear(prompt))
        want = linear(x)
    assert not torch.equal(alone, want)
    assert (alone - want).abs().max() < 0.05 * want.abs().max()  # the bias is added, not scaled


def test_int8_refuses_weights_it_cannot_quantize(tiny_dir):
    from transformers import AutoModelForCausalLM

    from ktune.pipeline.quantize import quantize_int8

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16).eval()
    assert quantize_int8(model) is False
    assert _wrapped(model) == []


@pytest.mark.skipif(quantize_engine() is None, reason="this PyTorch build has no quantized CPU engine")
def test_an_int8_pipeline_answers_with_knowledge_and_provenance(fresh_run, mini_kb):
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig
    from ktune.query_vocab import body_of

    qa = KnowledgeTunedQA.from_pretrained(fresh_run, kb=mini_kb, config=PipelineConfig(quantize="auto"))
    assert _wrapped(body_of(qa.backend.model)) and qa.config.quantize == "int8"
    assert qa.backend.mode(qa.config)["quantize"] == "int8"
    plain = KnowledgeTunedQA.from_pretrained(fresh_run, kb=mini_kb)  # the default: the weights as loaded
    assert _wrapped(plain.backend.model) == [] and plain.config.quantize == "none"
    for ans in qa.ask_batch(["急性中耳炎的药物治疗有哪些？", "二甲双胍有什么副作用？", "知识库里没有的东西怎么治？"]):
        assert ans.kb_version == mini_kb.version
        if ans.refused:
            assert ans.refusal_reason and not ans.answer.startswith("根据知识库")
        else:
            assert ans.linked_entity and ans.knowledge


def test_quantize_never_changes_a_given_loaded_run_in_place(fresh_run, mini_kb):
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig
    from ktune.train.run import load_run

    run = load_run(fresh_run)
    with pytest.raises(ConfigError, match="change the given LoadedRun's model in place"):
        KnowledgeTunedQA.from_pretrained(run, kb=mini_kb, config=PipelineConfig(quantize="int8"))
    assert _wrapped(run.model) == []
    qa = KnowledgeTunedQA.from_pretrained(run, kb=mini_kb, config=PipelineConfig(quantize="auto"))  # as given
    assert _wrapped(run.model) == [] and qa.config.quantize == "none"
