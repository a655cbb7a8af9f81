"""A subset LM head for the query step: logits only for the tokens a KB query can contain.

Gemma-3's head has 262,144 rows and costs more than the rest of the model per decoded token on CPU.
A query (`entity|attribute` or `无`) only ever uses the tokens of KB names, aliases, attributes, the
separator, stop and end tokens (~1/10 of the vocabulary), so during stage 1 the head is swapped for one
that multiplies only those rows and leaves every other logit at -inf. Ids stay in the full vocabulary, so
`generate()`, beam search and the grammar's logits processor work unchanged. Exact for constrained
decoding (the grammar never allows another token); for free decoding it restricts the output to KB tokens.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class SubsetHead(nn.Module):
    """Drop-in for `lm_head`: full-width logits, computed only at `token_ids` (others -inf)."""

    def __init__(self, head: nn.Module, token_ids: list[int]):
        super().__init__()
        weight = head.weight
        self.vocab_size = weight.shape[0]
        self.register_buffer("index", torch.tensor(sorted(set(token_ids)), dtype=torch.long, device=weight.device))
        self.register_buffer("weight_subset", weight.detach()[self.index].contiguous())
        bias = getattr(head, "bias", None)
        self.register_buffer("bias_subset", None if bias is None else bias.detach()[self.index].contiguous())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        sub = hidden @ self.weight_subset.T
        if self.bias_subset is not None:
            sub = sub + self.bias_subset
        out = sub.new_full((*hidden.shape[:-1], self.vocab_size), float("-inf"))
        out[..., self.index] = sub
        return out


def output_embeddings_owner(model) -> tuple[nn.Module, str] | None:
    """(module, attribute name) holding the output projection, or None when the model hides it."""
    for owner in (model, getattr(model, "base_model", None)):
        if owner is not None and isinstance(getattr(owner, "lm_head", None), nn.Linear):
            return owner, "lm_head"
    return None


@contextmanager
def subset_head(model, head: SubsetHead | None):
    """Temporarily use `head` as the model's lm_head (no-op when head is None)."""
    place = output_embeddings_owner(model) if head is not None else None
    if place is None:
        yield
        return
    owner, name = place
    original = getattr(owner, name)
    setattr(owner, name, head)
    try:
        yield
    finally:
        setattr(owner, name, original)
