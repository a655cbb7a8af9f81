"""Greedy query-step decoding and the generation check run during training (entity / attribute accuracy)."""

from __future__ import annotations

import logging

from ktune.prompt import PromptFormat, encode_pieces

log = logging.getLogger(__name__)


def stop_token_ids(tokenizer, fmt: PromptFormat) -> list[int]:
    """EOS plus the token the stop string (newline) encodes to when it is a single token."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stop = encode_pieces(tokenizer, [fmt.stop])
    if len(stop) == 1:
        ids.append(stop[0])
    return ids


def greedy_generate(model, tokenizer, fmt: PromptFormat, prompts: list[str], *, max_new_tokens: int = 48,
                    batch_size: int = 16) -> list[str]:
    """Greedy continuations of the prompts (encoded exactly as in training), cut at the stop string."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer, fmt)
    device = next(model.parameters()).device
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [fmt.encode_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
        width = max(len(e) for e in encoded)
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stops, pad_token_id=pad, use_cache=True)
        for row in out[:, width:].tolist():
            text = tokenizer.decode(row, skip_special_tokens=True)
            outputs.append(text.split(fmt.stop, 1)[0])
    return outputs


def greedy_queries(model, tokenizer, fmt: PromptFormat, questions: list[str], **kw) -> list[tuple[str | None, str | None]]:
    """Question -> (entity, attribute) as the model writes it (None, None for the no-query answer)."""
    texts = greedy_generate(model, tokenizer, fmt, [fmt.query_prompt(q) for q in questions], **kw)
    return [fmt.parse_query(t + fmt.stop) for t in texts]


def query_accuracy(model, tokenizer, fmt: PromptFormat, records: list[dict], *, batch_size: int = 16,
                   query_ids: list[int] | None = None) -> dict:
    """Exact-match accuracy of the generated entity, attribute and both, on records (entity None = no query).

    `query_ids`: decode over the query vocabulary only (as the pipeline does, and as training scored them)."""
    from ktune.query_vocab import SubsetHead, output_embeddings_owner, with_head

    if not records:
        return {"n": 0}
    was_training = model.training
    model.eval()
    place = output_embeddings_owner(model) if query_ids else None
    head = SubsetHead(getattr(*place), query_ids) if place else None
    try:
        preds = greedy_queries(with_head(model, head), tokenizer, fmt, [r["question"] for r in records],
                               batch_size=batch_size)
    finally:
        model.train(was_training)
    ent = att = both = 0
    for rec, (e, a) in zip(records, preds, strict=True):
        gold_e, gold_a = rec.get("entity"), rec.get("attribute") if rec.get("entity") else None
        ent += e == gold_e
        att += a == gold_a
        both += e == gold_e and a == gold_a
    n = len(records)
    return {"n": n, "entity_acc": ent / n, "attribute_acc": att / n, "query_acc": both / n,
            "examples": [{"question": r["question"], "gold": [r.get("entity"), r.get("attribute")], "pred": list(p)}
                         for r, p in list(zip(records, preds, strict=True))[:3]]}
