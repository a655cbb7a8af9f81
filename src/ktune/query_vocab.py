"""The query vocabulary: the tokens a KB query (`entity|attribute` or `无`) can contain, for one KB and tokenizer.

Stage 1 only ever emits these tokens (KB names and aliases, schema attributes, separator, stop, no-query,
end and pad), so both training and inference compute the query step's softmax over them alone:
ktune.train applies the LM head to these rows for query-step targets, ktune.pipeline decodes queries through
a view of the model whose head has the same rows (`with_head`; the shared model is never changed). On Gemma-3 that is about 13k of 262k rows: the head, the largest
single cost of a CPU training step, shrinks about 20x, and training and inference see the same distribution.

`SubsetHead` is that head for decoding: full-width logits, computed only at the vocabulary's rows (others
-inf), so `generate()`, beam search and the grammar's logits processor work unchanged. Exact for constrained
decoding (the grammar never allows another token); for free decoding it restricts the output to KB tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from ktune.prompt import PromptFormat, encode_pieces, encode_texts


def query_token_ids(kb, tokenizer, fmt: PromptFormat, extra_ids: Iterable[int | None] = ()) -> list[int]:
    """Sorted token ids of every KB surface (names, aliases), attribute and query marker, plus `extra_ids`."""
    surfaces = set(kb.entities())
    surfaces.update(surface for surface, _entity, _pred in kb.store.iter_aliases())
    texts = sorted(s for s in surfaces if s) + list(kb.schema.names)
    ids: set[int] = set()
    for piece in (fmt.separator, fmt.stop, fmt.no_query):
        ids.update(encode_pieces(tokenizer, [piece]))
    for row in encode_texts(tokenizer, texts):
        ids.update(row)
    ids.update(special_end_ids(tokenizer))
    ids.update(i for i in extra_ids if i is not None)
    return sorted(ids)


def answer_draft_ids(tokenizer, texts: Iterable[str] = ()) -> list[int]:
    """The draft vocabulary of stage 3 (ktune.pipeline.decode): tokens of the packaged answer phrasing (the
    answer bank's frames, placeholders removed), ASCII and CJK punctuation and digits, `texts`, and the end
    tokens. The decoder adds each prompt's own tokens (question and knowledge values). Only speed depends on
    it: a token outside it is still produced, by the whole-head check."""
    import json
    import re

    from ktune.data.answers import BANK_PATH

    pieces: list[str] = list(texts)
    stack = [json.loads(BANK_PATH.read_text(encoding="utf-8"))]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            pieces.extend(p for p in re.split(r"\{[^{}]*\}", item) if p)
    pieces.extend(chr(c) for c in range(32, 127))
    pieces.extend("，。、；：？！“”‘’（）《》【】—…·～％")
    ids: set[int] = set()
    for chunk in range(0, len(pieces), 4096):
        for row in tokenizer(pieces[chunk:chunk + 4096], add_special_tokens=False)["input_ids"]:
            ids.update(row)
    ids.update(special_end_ids(tokenizer))
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


def with_head(model, head: nn.Module | None):
    """The causal LM inside `model` seen through another output head: a shallow copy whose `lm_head` is `head`
    and which shares every other module, parameter and buffer (nothing is copied or changed in `model`).

    Decoding through the view runs the model's own forward, so its logit post-processing (Gemma's final-logit
    softcapping) applies to `head`'s output as it does to the real head's. A PEFT model is seen through its
    causal LM, whose layers already carry the LoRA weights. The view is cheap (one dict copy): make one per
    call, so concurrent decodes with different heads never share a mutable object. `head` None, or a model
    whose head is hidden: `model` itself.
    """
    place = output_embeddings_owner(model) if head is not None else None
    if place is None:
        return model
    owner, name = place
    view = copy.copy(owner)
    view._modules = dict(owner._modules)
    view._modules[name] = head
    return view


def head_logits(model, hidden: torch.Tensor, head: nn.Module | None = None) -> torch.Tensor:
    """The model's logits for last-layer hidden states [..., hidden] through `head` (default: its own),
    post-processing included.

    Taken from the model itself, not re-implemented: its forward runs on a view whose decoder body only returns
    `hidden`, so whatever the architecture does after the head (Gemma's final-logit softcapping, another
    model's scaling) is applied exactly as in decoding.
    """
    place = output_embeddings_owner(model)
    if place is None:
        raise TypeError(f"{type(model).__name__} has no lm_head; cannot apply its head to hidden states")
    owner, name = place
    body = _body_name(owner)
    view = copy.copy(owner)
    view._modules = dict(owner._modules)
    view._modules[body] = _Replay(hidden.reshape(1, -1, hidden.shape[-1]))
    if head is not None:
        view._modules[name] = head
    n = hidden.reshape(-1, hidden.shape[-1]).shape[0]
    dummy = torch.zeros((1, n), dtype=torch.long, device=hidden.device)
    logits = view(input_ids=dummy, use_cache=False).logits
    return logits.reshape(*hidden.shape[:-1], logits.shape[-1])


def body_of(model) -> nn.Module:
    """The decoder body (the layers between the embedding and the LM head) of the causal LM inside `model`."""
    place = output_embeddings_owner(model)
    if place is None:
        raise TypeError(f"{type(model).__name__} has no lm_head; cannot find its decoder body")
    owner = place[0]
    return owner._modules[_body_name(owner)]


def _body_name(owner: nn.Module) -> str:
    body = owner.get_decoder() if hasattr(owner, "get_decoder") else getattr(owner, "model", None)
    for key, module in owner._modules.items():
        if module is body:
            return key
    raise TypeError(f"{type(owner).__name__}: cannot find its decoder body to apply the head to hidden states")


class _Replay(nn.Module):
    """Stands in for a decoder body: returns the given last hidden states whatever it is called with."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, *args, **kwargs):
        from transformers.modeling_outputs import BaseModelOutputWithPast

        return BaseModelOutputWithPast(last_hidden_state=self.hidden)
