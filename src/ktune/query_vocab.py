"""The query vocabulary: the tokens a KB query (`entity|attribute` or `无`) can contain, for one KB and tokenizer.

Stage 1 only ever emits these tokens (KB names and aliases, schema attributes, separator, stop, no-query,
end and pad), so both training and inference compute the query step's softmax over them alone:
ktune.train applies the LM head to these rows for query-step targets, ktune.pipeline swaps in a subset head
with the same rows while decoding queries. On Gemma-3 that is about 13k of 262k rows: the head, the largest
single cost of a CPU training step, shrinks about 20x, and training and inference see the same distribution.

`SubsetHead` is that head for decoding: full-width logits, computed only at the vocabulary's rows (others
-inf), so `generate()`, beam search and the grammar's logits processor work unchanged. Exact for constrained
decoding (the grammar never allows another token); for free decoding it restricts the output to KB tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn

from ktune.prompt import PromptFormat, encode_pieces


def query_token_ids(kb, tokenizer, fmt: PromptFormat, extra_ids: Iterable[int | None] = ()) -> list[int]:
    """Sorted token ids of every KB surface (names, aliases), attribute and query marker, plus `extra_ids`."""
    surfaces = set(kb.entities())
    surfaces.update(surface for surface, _entity, _pred in kb.store.iter_aliases())
    texts = sorted(s for s in surfaces if s) + list(kb.schema.names)
    ids: set[int] = set()
    for piece in (fmt.separator, fmt.stop, fmt.no_query):
        ids.update(encode_pieces(tokenizer, [piece]))
    for chunk in range(0, len(texts), 4096):
        for row in tokenizer(texts[chunk:chunk + 4096], add_special_tokens=False)["input_ids"]:
            ids.update(row)
    ids.update(special_end_ids(tokenizer))
    ids.update(i for i in extra_ids if i is not None)
    return sorted(ids)


def special_end_ids(tokenizer) -> list[int]:
    """EOS and pad: a query ends with EOS in training; pad fills finished rows of a decoding batch."""
    return [i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None]


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
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model's causal LM
    for owner in (inner, getattr(inner, "base_model", None)):
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
