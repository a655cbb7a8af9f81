"""Target-only causal-LM loss: run the decoder body, apply the LM head only where labels are set.

Gemma-3's 262k-token LM head dominates CPU cost; knowledge-tuning targets are a few tokens per example,
so projecting only those hidden states skips most of the work (same loss as the full-logits version).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ktune.train.data import IGNORE


def unwrap_causal_lm(model):
    """The transformers *ForCausalLM inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_body(causal_lm):
    body = getattr(causal_lm, "model", None)
    if body is None and hasattr(causal_lm, "get_decoder"):
        body = causal_lm.get_decoder()
    if body is None:
        raise TypeError(f"{type(causal_lm).__name__} has no decoder body (.model); cannot compute the target-only loss")
    return body


class TargetLoss(nn.Module):
    """Wraps a (PEFT) causal LM; forward returns (weighted loss sum, weight sum, token count).

    A module of its own so DDP/FSDP/DeepSpeed wrappers see the forward call (accelerate.prepare wraps this).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, labels, weights, attention_mask=None, position_ids=None):
        causal_lm = unwrap_causal_lm(self.model)
        hidden = decoder_body(causal_lm)(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                         use_cache=False)
        hidden = hidden.last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = causal_lm.get_output_embeddings()(hidden[keep])
        softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        token_loss = F.cross_entropy(logits.float(), targets[keep], reduction="none")
        w = weights[:, 1:][keep].to(token_loss.dtype)  # per-token weights, shifted like the labels
        return (token_loss * w).sum(), w.sum(), keep.sum()


def full_logits_loss(model, input_ids, attention_mask, labels, position_ids=None) -> torch.Tensor:
    """Reference: mean token loss through the model's own forward (all-position logits); used in tests."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    logits = out.logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=IGNORE)
