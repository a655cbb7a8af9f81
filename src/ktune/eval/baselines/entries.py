"""KB entries as retrieval units: one per (entity, schema attribute) with its values and the entity's aliases."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    entity: str
    attribute: str
    values: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def parts(self, max_values: int = 40) -> tuple[str, ...]:
        """The document's fields, tokenised one by one (normalising drops the spaces between them)."""
        return (self.entity, *self.aliases, self.attribute, *self.values[:max_values])


def entity_aliases(kb, max_per_entity: int = 8) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for surface, entity, _pred in kb.store.iter_aliases():
        if surface != entity and surface not in out[entity] and len(out[entity]) < max_per_entity:
            out[entity].append(surface)
    return out


def kb_entries(kb) -> list[Entry]:
    """Every (entity, attribute) the KB can answer, in a deterministic order."""
    pred_attr = kb.schema.predicate_attribute()
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, pred, value in kb.store.iter_facts():
        attr = pred_attr.get(pred)
        if attr is not None:
            grouped[(name, attr)].append(value)
    aliases = entity_aliases(kb)
    return [Entry(e, a, tuple(v), tuple(aliases.get(e, ()))) for (e, a), v in sorted(grouped.items())]
