"""The target-only loss is the loss of the model's own full logits, whatever the architecture does after its head."""

import pytest
import torch
import torch.nn.functional as F

from ktune.train.data import IGNORE
from ktune.train.loss import TargetLoss

VOCAB = 97


def _model(arch: str):
    """Random tiny models: no post-processing (Qwen2), Gemma-3's final-logit softcap, Granite's logit scaling."""
    import transformers as tf

    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, pad_token_id=0, eos_token_id=1, bos_token_id=2, initializer_range=0.5)
    if arch == "qwen2":
        return tf.Qwen2ForCausalLM(tf.Qwen2Config(**common))
    if arch == "gemma3-softcap":
        cfg = tf.Gemma3TextConfig(**common, head_dim=8, sliding_window=4, final_logit_softcapping=0.5,
                                  layer_types=["sliding_attention", "full_attention"])
        return tf.Gemma3ForCausalLM(cfg)
    return tf.GraniteForCausalLM(tf.GraniteConfig(**common, logits_scaling=7.0))


def _batch():
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, VOCAB, (3, 12), generator=g)
    labels = torch.full_like(input_ids, IGNORE)
    labels[:, 5:] = input_ids[:, 5:]
    labels[2, 9:] = IGNORE
    query_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    query_mask[0, 5:] = query_mask[1, 5:8] = True
    return {"input_ids": input_ids, "labels": labels, "weights": torch.ones(input_ids.shape),
            "attention_mask": torch.ones_like(input_ids), "query_mask": query_mask}


def _reference(model, batch, query_ids=None):
    """Summed token loss from model(...).logits; query-step targets scored over `query_ids` only."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    if query_ids is not None:
        outside = torch.ones(VOCAB, dtype=torch.bool)
        outside[query_ids] = False
        logits = torch.where(batch["query_mask"][:, 1:, None] & outside, torch.tensor(float("-inf")), logits)
    keep = targets != IGNORE
    return F.cross_entropy(logits[keep], targets[keep], reduction="sum")


@pytest.mark.parametrize("arch", ["qwen2", "gemma3-softcap", "granite-scaling"])
def test_target_only_loss_equals_the_full_logits_loss(arch):
    model = _model(arch).eval()
    batch = _batch()
    query_targets = batch["labels"][:, 1:][batch["query_mask"][:, 1:] & (batch["labels"][:, 1:] != IGNORE)]
    query_ids = sorted({*query_targets.tolist(), *range(3, 40)})
    with torch.no_grad():
        reference = _reference(model, batch)
        full, _, n = TargetLoss(model)(**batch)
        subset, _, _ = TargetLoss(model, query_ids)(**batch)
        assert int(n) == int((batch["labels"][:, 1:] != IGNORE).sum())
        assert float(full) == pytest.approx(float(reference), rel=1e-5)
        assert float(subset) == pytest.approx(float(_reference(model, batch, query_ids)), rel=1e-5)
        if arch != "qwen2":  # the post-processing matters here: the head's raw logits give another loss
            head = model.get_output_embeddings()
            hidden = model.model(input_ids=batch["input_ids"]).last_hidden_state[:, :-1]
            keep = batch["labels"][:, 1:] != IGNORE
            raw = F.cross_entropy(head(hidden[keep]), batch["labels"][:, 1:][keep], reduction="sum")
            assert abs(float(raw) - float(reference)) > 1e-2


def test_the_target_only_loss_trains_the_head_rows_through_the_post_processing():
    model = _model("gemma3-softcap").train()
    batch = _batch()
    loss, _, _ = TargetLoss(model, list(range(VOCAB)))(**batch)
    loss.backward()
    expected = model.get_output_embeddings().weight.grad.clone()
    model.zero_grad()
    _reference(model, batch, list(range(VOCAB))).backward()
    assert torch.allclose(model.get_output_embeddings().weight.grad, expected, atol=1e-5)
