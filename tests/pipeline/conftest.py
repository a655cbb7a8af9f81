"""Pipeline fixtures: a tiny random Qwen2 + char tokenizer over the mini KB's text, and a pipeline on it."""

import json

import pytest

from tests.conftest import FIXTURES

QUESTIONS = [
    "急性中耳炎的药物治疗有哪些？",
    "感冒会传染吗？",
    "二甲双胍有什么副作用？",
    "阿莫仙是什么做的？",
    "偏头疼看什么科？",
]


def fixture_texts() -> list[str]:
    texts = list(QUESTIONS)
    for line in (FIXTURES / "mini_kb.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(line)
    from ktune.kb.schema import Schema

    texts.extend(Schema.load().names)
    texts.append("知识库中没有的信息，无法根据知识库回答这个问题。相关")
    return texts


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """A 64-wide model gains nothing from threads; on a shared 2-core machine they only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from ktune.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), fixture_texts(), seed=0)


@pytest.fixture(scope="session")
def tiny_lm(tiny_dir):
    """(model, tokenizer) in eval mode, fp32."""
    from transformers import AutoModelForCausalLM

    from ktune.train.loading import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.eval()
    return model, load_tokenizer(tiny_dir)


@pytest.fixture
def qa(tiny_lm, mini_kb):
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig

    model, tok = tiny_lm
    return KnowledgeTunedQA(model, tok, mini_kb, config=PipelineConfig(max_answer_tokens=24, max_query_tokens=24))


def read_jsonl(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


@pytest.fixture(scope="session")
def fresh_run(tiny_dir, tmp_path_factory):
    """A run folder by the contract (adapter/, tokenizer/, prompt_format.json, ktune.json) with an untrained
    LoRA adapter on the tiny model: loads through ktune.train.load_run like a trained one, in a second."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ktune.prompt import PromptFormat
    from ktune.train.loading import load_tokenizer
    from ktune.train.run import RunInfo
    from ktune.train.tiny import save_tokenizer

    run = tmp_path_factory.mktemp("fresh_run") / "run"
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(run / "adapter")
    save_tokenizer(load_tokenizer(tiny_dir), run / "tokenizer")
    PromptFormat().save_pretrained(run)
    RunInfo(base_model=str(tiny_dir), config={"infer_dtype": "fp32"}).save(run)
    return run


@pytest.fixture
def premise_tiny_qa(tiny_lm, premise_kb):
    """The tiny model's pipeline over the premise KB (stage 1 is forced in the tests that use it)."""
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig

    model, tok = tiny_lm
    return KnowledgeTunedQA(model, tok, premise_kb, config=PipelineConfig(max_answer_tokens=24, max_query_tokens=24))


@pytest.fixture
def force_query(premise_tiny_qa, monkeypatch):
    """force_query(Query(...)): stage 1 returns this query for every question."""
    def force(query):
        monkeypatch.setattr(premise_tiny_qa.query_stage, "run", lambda questions, mode=None: [query] * len(questions))
    return force


@pytest.fixture
def stub():
    """A CompletionsStub server playing a served run (its base URL, no /v1): 急性中耳炎用什么药？ gets a KB key
    freely; 急性中耳炎吃啥药 a near miss freely and the key under the grammar; 耳朵发炎吃啥药 no KB entry."""
    from tests.chat_stub import CompletionsStub, serving

    CompletionsStub.seen = []
    CompletionsStub.free = {"急性中耳炎用什么药？": "急性中耳炎|药物治疗", "急性中耳炎吃啥药": "急性中耳|药物治疗",
                            "耳朵发炎吃啥药": "耳朵发炎|药物治疗"}
    CompletionsStub.constrained = {"急性中耳炎吃啥药": "急性中耳炎|药物治疗"}
    with serving(CompletionsStub) as url:
        yield url
