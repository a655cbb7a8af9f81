"""Target-only causal-LM loss: run the decoder body, apply the LM head only where labels are set.

The head's output goes through the model's own post-processing (ktune.query_vocab.head_logits: Gemma's final-logit
softcap, another architecture's logit scaling), so the loss is the one of the model's full logits.

Gemma-3's 262k-token LM head dominates CPU cost; knowledge-tuning targets are a few tokens per example,
so projecting only those hidden states skips most of the work (same loss as the full-logits version).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ktune.query_vocab import head_logits
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

    `query_ids` (ktune.query_vocab): query-step targets (marked by the batch's `query_mask`) are scored by a
    softmax over those vocabulary rows only, the distribution the pipeline decodes queries from; other targets
    (answer step, instruction) over the whole vocabulary. None: every target over the whole vocabulary.
    A module of its own so DDP/FSDP/DeepSpeed wrappers see the forward call (accelerate.prepare wraps this).
    """

    def __init__(self, model, query_ids: list[int] | None = None):
        super().__init__()
        self.model = model
        self.query_ids = None if query_ids is None else torch.tensor(sorted(set(query_ids)), dtype=torch.long)
        self._rows = None  # (the frozen head rows of query_ids, full id -> row index), built on first use

    def forward(self, input_ids, labels, weights, attention_mask=None, position_ids=None, query_mask=None):
        causal_lm = unwrap_causal_lm(self.model)
        hidden = decoder_body(causal_lm)(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                         use_cache=False)
        hidden = hidden.last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        keep = targets != IGNORE
        w = weights[:, 1:]
        head = causal_lm.get_output_embeddings()
        if self.query_ids is None or query_mask is None:
            parts = [(hidden[keep], None, targets[keep], w[keep])]
        else:
            in_query = keep & query_mask[:, 1:].bool()
            other = keep & ~in_query
            rows, row_of = self._subset_rows(head)
            sub_targets = row_of[targets[in_query]]
            if bool((sub_targets < 0).any()):
                raise ValueError("a query-step target token is outside the query vocabulary (ktune.query_vocab)")
            bias = getattr(head, "bias", None)
            sub_head = _Rows(rows, None if bias is None else bias[self.query_ids.to(bias.device)])
            parts = [(hidden[in_query], sub_head, sub_targets, w[in_query]),
                     (hidden[other], None, targets[other], w[other])]
        loss_sum = hidden.new_zeros((), dtype=torch.float32)
        for h, part_head, tgt, tw in parts:
            if tgt.numel() == 0:
                continue
            # the model's own head post-processing (Gemma's softcap, Granite's scaling) applies, see head_logits
            logits = head_logits(causal_lm, h, part_head)
            token_loss = F.cross_entropy(logits.float(), tgt, reduction="none")
            loss_sum = loss_sum + (token_loss * tw.to(token_loss.dtype)).sum()
        return loss_sum, w[keep].sum(), keep.sum()

    def _subset_rows(self, head):
        """(head rows of query_ids, full id -> row index); the rows are cached while the head is frozen (LoRA)."""
        weight = head.weight
        if self._rows is None or self._rows[1].device != weight.device:
            ids = self.query_ids.to(weight.device)
            row_of = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
            row_of[ids] = torch.arange(len(ids), device=weight.device)
            self._rows = (None, row_of)
        ids = self.query_ids.to(weight.device)
        if weight.requires_grad:
            return weight[ids], self._rows[1]
        if self._rows[0] is None or self._rows[0].dtype != weight.dtype:
            self._rows = (weight.detach()[ids].contiguous(), self._rows[1])
        return self._rows


class _Rows(nn.Module):
    """An output head of some rows of the LM head: logits for those tokens only (the query step's softmax)."""

    def __init__(self, rows: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.rows, self.bias = rows, bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden @ self.rows.T
        return logits if self.bias is None else logits + self.bias


def full_logits_loss(model, input_ids, attention_mask, labels, position_ids=None) -> torch.Tensor:
    """Reference: mean token loss through the model's own forward (all-position logits); used in tests."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    logits = out.logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=IGNORE)
