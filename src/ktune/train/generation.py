"""Greedy query-step decoding and the generation check run during training (entity / attribute accuracy)."""

from __future__ import annotations

import logging

from ktune.data.dataset import DatasetRecord
from ktune.decoding import GreedyDecoder
from ktune.prompt import PromptFormat

log = logging.getLogger(__name__)


def greedy_queries(model, tokenizer, fmt: PromptFormat, questions: list[str], *, max_new_tokens: int = 48,
                   batch_size: int = 16, head=None) -> list[tuple[str | None, str | None]]:
    """Question -> (entity, attribute) as the model writes it (None, None for the no-query answer); decoded by
    the one greedy decoder (ktune.decoding), through `head` when given."""
    texts = GreedyDecoder(model, tokenizer, fmt, head).texts([fmt.query_prompt(q) for q in questions],
                                                             max_new_tokens, batch_size=batch_size)
    return [fmt.parse_query(t + fmt.stop) for t in texts]


def query_accuracy(model, tokenizer, fmt: PromptFormat, records: list[DatasetRecord], *, batch_size: int = 16,
                   query_ids: list[int] | None = None) -> dict:
    """Exact-match accuracy of the generated entity, attribute and both, on records (entity None = no query).

    `query_ids`: decode over the query vocabulary only (as the pipeline does, and as training scored them)."""
    from ktune.query_vocab import SubsetHead, output_embeddings_owner

    if not records:
        return {"n": 0}
    was_training = model.training
    model.eval()
    place = output_embeddings_owner(model) if query_ids else None
    head = SubsetHead(getattr(*place), query_ids) if place else None
    try:
        preds = greedy_queries(model, tokenizer, fmt, [r.question for r in records], batch_size=batch_size,
                               head=head)
    finally:
        model.train(was_training)
    ent = att = both = 0
    for rec, (e, a) in zip(records, preds, strict=True):
        gold_e, gold_a = rec.entity, rec.attribute if rec.entity else None
        ent += e == gold_e
        att += a == gold_a
        both += e == gold_e and a == gold_a
    n = len(records)
    return {"n": n, "entity_acc": ent / n, "attribute_acc": att / n, "query_acc": both / n,
            "examples": [{"question": r.question, "gold": [r.entity, r.attribute], "pred": list(p)}
                         for r, p in list(zip(records, preds, strict=True))[:3]]}
