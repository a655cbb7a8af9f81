"""Entity pools and quotas: alias-closed entity groups, the held-out (unseen) groups, per-attribute quotas."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

from ktune.kb.linker import normalize


@dataclass
class EntityPools:
    kinds: dict[str, str]  # entity -> kind
    attrs: dict[str, list[str]]  # entity -> applicable schema attributes it has values for
    lacking: dict[str, list[str]]  # entity -> applicable attributes it has no values for
    group_of: dict[str, int]  # entity -> alias-group id
    groups: dict[int, list[str]]  # group id -> entities
    unseen: set[str]  # held-out entities (whole alias groups)

    def seen_pool(self) -> list[str]:
        return [e for e in sorted(self.attrs) if e not in self.unseen]


def alias_groups(entities: list[str], aliases) -> tuple[dict[str, int], dict[int, list[str]]]:
    """Union entities that share a (normalized) name or alias; returns entity -> group id and groups."""
    parent = {e: e for e in entities}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    by_surface: dict[str, list[str]] = defaultdict(list)
    for e in entities:
        by_surface[normalize(e)].append(e)
    for surface, entity, _ in aliases:
        if entity in parent:
            by_surface[normalize(surface)].append(entity)
    for members in by_surface.values():
        root = find(members[0])
        for m in members[1:]:
            r = find(m)
            if r != root:
                parent[r] = root
    roots: dict[str, int] = {}
    group_of = {}
    for e in sorted(entities):
        group_of[e] = roots.setdefault(find(e), len(roots))
    groups: dict[int, list[str]] = defaultdict(list)
    for e, g in group_of.items():
        groups[g].append(e)
    return group_of, dict(groups)


def entity_pools(kb, predicates_of: dict[str, set[str]], protected: set[str], config) -> EntityPools:
    """Classify entities, find their attributes, and hold out whole alias groups for test_unseen."""
    schema = kb.schema
    kinds = dict(kb.store.iter_entities())
    attrs = {}
    for e, kind in sorted(kinds.items()):
        have = predicates_of.get(e, set())
        if has := [a for a in schema.attributes_for_kind(kind) if have.intersection(schema.attributes[a].predicates)]:
            attrs[e] = has
    lacking = {e: _lacking(e, kinds, attrs, kb.linker.equivalents(e), schema) for e in attrs}
    group_of, groups = alias_groups(sorted(kinds), kb.store.iter_aliases())
    blocked = {group_of[e] for e in protected if e in group_of}
    unseen = _hold_out(attrs, group_of, groups, blocked, config)
    return EntityPools(kinds, attrs, lacking, group_of, groups, unseen)


def _lacking(entity: str, kinds: dict[str, str], attrs: dict[str, list[str]], equivalents, schema) -> list[str]:
    """The applicable attributes a question about `entity` is refused for: no attribute of the intent answers it
    (stage 2 falls back), in this entry or in one the KB names as the same condition or drug (stage 1's
    answering_entry moves there: 羊耳蒜's 采收 is 见血清's, CMeKG's 别称 of it)."""
    kind = kinds[entity]
    answered = set(attrs[entity])
    for other, _ in equivalents:
        if kinds.get(other) == kind:
            answered.update(attrs.get(other, ()))
    return [a for a in schema.attributes_for_kind(kind) if not set(schema.intent(a)).intersection(answered)]


def _hold_out(attrs, group_of, groups, blocked, config) -> set[str]:
    """Pick alias groups (small, fully eligible) so every attribute has held-out entities."""
    rng = random.Random(f"{config.seed}:unseen")
    by_attr: dict[str, list[str]] = defaultdict(list)
    for e, has in attrs.items():
        for a in has:
            by_attr[a].append(e)
    unseen: set[str] = set()
    for attr in sorted(by_attr, key=lambda a: (len(by_attr[a]), a)):
        pool = sorted(by_attr[attr])
        rng.shuffle(pool)
        want = min(max(2, math.ceil(len(pool) * config.unseen_entity_share)), len(pool) // 3)
        have = sum(e in unseen for e in pool)
        for e in pool:
            if have >= want:
                break
            g = group_of[e]
            if e in unseen or g in blocked or len(groups[g]) > config.max_group_size:
                continue
            unseen.update(groups[g])
            have += sum(attr in attrs.get(m, ()) for m in groups[g])
    return unseen


def allocate(total: int, capacity: dict) -> dict:
    """Split `total` as evenly as possible over keys, never above a key's capacity (water-filling)."""
    quota = {k: 0 for k in capacity}
    keys = sorted(k for k, c in capacity.items() if c > 0)
    left = total
    while left > 0 and keys:
        share = max(1, left // len(keys))
        for k in keys:
            add = min(share, capacity[k] - quota[k], left)
            quota[k] += add
            left -= add
            if left == 0:
                break
        keys = [k for k in keys if quota[k] < capacity[k]]
    return quota
