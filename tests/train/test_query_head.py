"""Query-step targets are scored over the KB's query vocabulary (as the pipeline decodes them), others over all."""

import pytest

from ktune.data.dataset import Dataset
from ktune.errors import ConfigError
from ktune.prompt import PromptFormat
from ktune.train.data import IGNORE, build_examples, collate
from ktune.train.loading import load_tokenizer


@pytest.fixture(scope="module")
def tiny_base(tiny_data, tmp_path_factory):
    from ktune.train.tiny import build_tiny_model, dataset_texts

    return build_tiny_model(tmp_path_factory.mktemp("base") / "tiny", dataset_texts(tiny_data))


@pytest.fixture
def fixture_kb(tiny_data):
    from ktune.kb import KnowledgeBase

    kb = KnowledgeBase.open(tiny_data.parent / "mini.sqlite")
    yield kb
    kb.close()


def _reference(model, batch, ids):
    """Full-vocabulary logits; at query-step targets every token outside `ids` masked to -inf."""
    import torch
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets, query = batch["labels"][:, 1:], batch["query_mask"][:, 1:]
    outside = torch.ones(logits.shape[-1], dtype=torch.bool)
    outside[ids] = False
    logits = torch.where(query[..., None] & outside, torch.tensor(float("-inf")), logits)
    keep = targets != IGNORE
    return F.cross_entropy(logits[keep], targets[keep], reduction="sum")


def test_query_targets_use_the_query_vocabulary_softmax_and_answer_targets_the_full_one(tiny_data, tiny_base, fixture_kb):
    import torch
    from transformers import AutoModelForCausalLM

    from ktune.query_vocab import query_token_ids
    from ktune.train.loss import TargetLoss

    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    examples, _ = build_examples(Dataset.load(tiny_data).records()[:6], tok, fmt)
    assert {e.step for e in examples} == {"query", "answer"}
    ids = query_token_ids(fixture_kb, tok, fmt)
    assert len(ids) < len(tok)
    batch = collate(examples, tok.pad_token_id, {})
    batch.pop("n_tokens")
    with torch.no_grad():
        loss_sum, _, _ = TargetLoss(model, ids)(**batch)
        full_sum, _, _ = TargetLoss(model)(**batch)
        expected = _reference(model, batch, ids)
    assert float(loss_sum) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss_sum) < float(full_sum)  # a smaller softmax: less probability mass to lose


def test_a_query_target_outside_the_query_vocabulary_is_refused(tiny_data, tiny_base):
    import torch
    from transformers import AutoModelForCausalLM

    from ktune.train.loss import TargetLoss

    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    examples, _ = build_examples(Dataset.load(tiny_data).records()[:2], tok, fmt)
    batch = collate([e for e in examples if e.step == "query"], tok.pad_token_id, {})
    batch.pop("n_tokens")
    with pytest.raises(ValueError, match="outside the query vocabulary"):
        TargetLoss(model, [tok.eos_token_id])(**batch)


def _config(tiny_data, tmp_path, **kw):
    from ktune.train import TrainConfig

    return TrainConfig(base="unused", data=str(tiny_data), out=str(tmp_path / "run"), **kw)


def test_query_head_auto_uses_the_datasets_kb_when_its_version_matches(tiny_data, tiny_base, fixture_kb, tmp_path):
    from ktune.train.trainer import query_head_ids

    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    examples, _ = build_examples(Dataset.load(tiny_data).records(), tok, fmt)
    kb_path = str(tiny_data.parent / "mini.sqlite")
    ids, info = query_head_ids(_config(tiny_data, tmp_path, kb=kb_path), {"kb_version": fixture_kb.version}, tok,
                               fmt, examples)
    assert info["mode"] == "kb" and info["outside"] == 0 and len(ids) == info["tokens"]
    ids, info = query_head_ids(_config(tiny_data, tmp_path, kb=kb_path), {"kb_version": "another"}, tok, fmt, examples)
    assert ids is None and info["mode"] == "full" and "another" in info["reason"]
    ids, info = query_head_ids(_config(tiny_data, tmp_path), {}, tok, fmt, examples)  # no default KB in this home
    assert ids is None and "no KB at" in info["reason"]


def test_query_head_kb_without_the_datasets_kb_names_the_fix(tiny_data, tiny_base, tmp_path):
    from ktune.train.trainer import query_head_ids

    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    with pytest.raises(ConfigError, match="--kb PATH"):
        query_head_ids(_config(tiny_data, tmp_path, query_head="kb"), {}, tok, fmt, [])
