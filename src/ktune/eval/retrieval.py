"""The retrieval task: every system on the same test items; per-item rows, then aggregates with Wilson CIs."""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path

from ktune.eval.items import REAL_SPLITS, TestItem
from ktune.eval.metrics import proportion_of, refusal_scores
from ktune.eval.systems import Prediction
from ktune.paths import atomic_write_text

log = logging.getLogger(__name__)
BATCH = 64


def slug(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "-", name.lower()).strip("-") or "system"


def is_kb_key(kb, surface: str) -> bool:
    """A valid KB key: an entity name or one of the KB's aliases, up to case and character width (维生素Ｃ丸 is
    维生素C丸: the same key written another way, not a guess)."""
    from ktune.kb.linker import normalize

    return kb.has_entity(surface) or surface in kb.linker.by_alias or normalize(surface) in kb.linker.surfaces


def score_item(item: TestItem, pred: Prediction, kb) -> dict:
    """One row: the gold entry, what the system did, and each correctness flag.

    off_kb_query: the query the system ended with names an entity that is neither a KB name nor alias, or an
    attribute outside the schema (a generated non-KB string; what constrained decoding rules out).
    invalid_query: such an off-KB query that the system still acted on, i.e. linked to a KB entity by a guess
    and looked up; an off-KB query that was refused ("not in the KB") looked nothing up and is not invalid.
    Retrieval is correct when the entity looked up and the attribute are the gold ones, or the fetched
    knowledge equals the gold knowledge. Labelled items (with gold predicates) are judged by what was fetched:
    a gold entity looked up and some gold predicate among the retrieved facts, whatever attribute fetched it.
    """
    looked_up = pred.linked_entity or pred.entity
    emitted = pred.entity is not None
    off_kb = emitted and not (is_kb_key(kb, pred.entity) and pred.attribute in kb.schema.attributes)
    refused = pred.refused or not pred.knowledge
    if item.gold_predicates:
        gold = set(item.gold_predicates)
        fetched = {p for ent, facts in pred.knowledge.items() if item.accepts(ent) for p, vs in facts.items() if vs}
        entry_match = item.accepts(looked_up) and bool(fetched & gold)
        asked = kb.schema.attributes.get(pred.attribute) if pred.attribute else None
        attribute_ok = asked is not None and bool(set(asked.predicates) & gold)
        retrieved = (not item.should_refuse) and not refused and entry_match
    else:
        entry_match = item.accepts(looked_up) and pred.attribute == item.attribute
        attribute_ok = item.attribute is not None and pred.attribute == item.attribute
        retrieved = (not item.should_refuse) and not refused and (entry_match or pred.knowledge == item.knowledge)
    return {
        "id": item.id,
        "split": item.split,
        "question": item.question,
        "gold_entity": item.entity,
        "gold_attribute": item.attribute,
        "gold_entities": list(item.gold_entities) if item.gold_predicates else None,
        "gold_predicates": list(item.gold_predicates) or None,
        "kind": item.kind,
        "template": item.template,
        "surface": item.surface,
        "surface_type": item.surface_type,
        "entity_kind": item.entity_kind,
        "pred_entity": pred.entity,
        "pred_attribute": pred.attribute,
        "linked_entity": pred.linked_entity,
        "knowledge": pred.knowledge,
        "refused": bool(refused),
        "should_refuse": item.should_refuse,
        "entity_correct": item.entity is not None and item.accepts(looked_up),
        "attribute_correct": bool(attribute_ok),
        "retrieval_correct": bool(retrieved),
        "off_kb_query": bool(off_kb),
        "invalid_query": bool(off_kb and pred.linked_entity is not None),
        "extra": pred.extra,
    }


def aggregate(rows: list[dict]) -> dict:
    """Entity / attribute / retrieval accuracy, invalid- and off-KB-query rates and refusal scores over `rows`."""
    with_entity = [r for r in rows if r["gold_entity"] is not None]
    with_attr = [r for r in with_entity if r["gold_attribute"] is not None or r.get("gold_predicates")]
    answerable = [r for r in rows if not r["should_refuse"]]
    return {
        "n": len(rows),
        "entity_accuracy": proportion_of(r["entity_correct"] for r in with_entity),
        "attribute_accuracy": proportion_of(r["attribute_correct"] for r in with_attr),
        "retrieval_accuracy": proportion_of(r["retrieval_correct"] for r in answerable),
        "invalid_query_rate": proportion_of(r["invalid_query"] for r in rows),
        "off_kb_query_rate": proportion_of(r.get("off_kb_query", r["invalid_query"]) for r in rows),
        "refusal": refusal_scores([r["should_refuse"] for r in rows], [r["refused"] for r in rows]),
    }


def error_breakdown(rows: list[dict], key: str) -> dict[str, dict]:
    """Retrieval accuracy on answerable rows grouped by `key` (gold_attribute, surface_type, template...)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        if not r["should_refuse"]:
            groups[str(r.get(key))].append(r["retrieval_correct"])
    return {k: proportion_of(v) for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))}


def predict_items(system, items: list[TestItem], progress: bool = False) -> list[Prediction]:
    """Run a system over items in batches (systems needing gold entities expose predict_items)."""
    if hasattr(system, "predict_items"):
        return system.predict_items(items, progress=progress)
    chunks = range(0, len(items), BATCH)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=system.name, unit="batch", leave=False)
    out: list[Prediction] = []
    for i in chunks:
        out.extend(system.predict([it.question for it in items[i : i + BATCH]]))
    if len(out) != len(items):
        raise RuntimeError(f"{system.name} returned {len(out)} predictions for {len(items)} questions")
    return out


def score_splits(system, splits: dict[str, list[TestItem]], score, aggregate_fn, out: Path | None, folder: str,
                 progress=False, rows_by_split: dict | None = None) -> tuple[dict, list[dict]]:
    """Run `system` on every split, score each item with `score(item, prediction)`, write the rows under
    out/<folder>/<split>/<system>.jsonl; returns per-split aggregates (+ "all_test") and the pooled test rows
    (and fills `rows_by_split` when given)."""
    result, all_rows = {}, []
    for split, items in splits.items():
        if hasattr(system, "covers_any") and not system.covers_any([it.question for it in items]):
            log.warning("%s has no predictions for split %s: skipped", system.name, split)
            continue
        preds = predict_items(system, items, progress)
        rows = [score(it, p) for it, p in zip(items, preds, strict=True)]
        all_rows.extend(rows)
        if rows_by_split is not None:
            rows_by_split[split] = rows
        if out is not None:
            write_rows(Path(out) / folder / split / f"{slug(system.name)}.jsonl", system.name, rows)
        result[split] = aggregate_fn(rows)
    # all_test pools the dataset's test splits (the real-style splits are reported on their own); a run on
    # labelled files only (`ktune eval --items`) pools those.
    pooled = [r for r in all_rows if r["split"] not in REAL_SPLITS] or all_rows
    result["all_test"] = aggregate_fn(pooled)
    return result, pooled


def evaluate_system(system, splits: dict[str, list[TestItem]], kb, out: Path | None = None, progress=False) -> dict:
    """Score one system on every split; write predictions/<split>/<system>.jsonl under `out`."""
    by_split: dict[str, list[dict]] = {}
    result, pooled = score_splits(system, splits, lambda it, p: score_item(it, p, kb), aggregate, out,
                                  "predictions", progress, by_split)
    result["errors"] = {
        "by_attribute": error_breakdown(pooled, "gold_attribute"),
        "by_surface_type": error_breakdown(pooled, "surface_type"),
        "by_template": error_breakdown(pooled, "template"),
    }
    if "real_test" in by_split:  # where real users' questions are missed: by question style and intent
        result["errors"]["real_test_by_style"] = error_breakdown(by_split["real_test"], "template")
        result["errors"]["real_test_by_attribute"] = error_breakdown(by_split["real_test"], "gold_attribute")
    return result


def write_rows(path: Path, system_name: str, rows: list[dict]) -> None:
    text = "".join(json.dumps({"system": system_name, **r}, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(path, text)
