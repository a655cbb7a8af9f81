"""Entity linking: a surface string -> ranked KB entities, each with a score and the method that found it.

Tiers, tried in order (deterministic; ties broken by the shorter name, the richer entry, then by name):
  exact (1.0) > normalized name (0.93: full/half width, case, spaces) > alias (0.95, via 别称/通用名/...)
  > generic name -> products (0.9) > normalized alias (0.88) > pinyin homophone (0.8) > fuzzy (<= 0.75).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from ktune.kb.aliases import DERIVED

_PUNCT = re.compile(r"[\s·•\-—_/\\,，.。:：;；'\"“”‘’]+")
FUZZY_MIN = 0.6


@dataclass(frozen=True)
class Link:
    entity: str
    score: float
    method: str
    surface: str

    def to_json(self) -> dict:
        return {"entity": self.entity, "score": round(self.score, 4), "method": self.method, "surface": self.surface}


def normalize(text: str) -> str:
    """Full-width -> half-width, lower case, no spaces or light punctuation."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def _pinyin(text: str) -> str:
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(text))


class EntityLinker:
    def __init__(self, names: list[str], aliases: list[tuple[str, str, str]], richness: dict[str, int]):
        self.names = set(names)
        self.richness = richness
        self.by_norm: dict[str, set[str]] = defaultdict(set)
        for n in names:
            self.by_norm[normalize(n)].add(n)
        self.by_alias: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.by_alias_norm: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for surface, entity, pred in aliases:
            self.by_alias[surface].append((entity, pred))
            self.by_alias_norm[normalize(surface)].append((entity, pred))
        self.surfaces = {s: s for s in self.by_norm} | {s: s for s in self.by_alias_norm}
        self._grams: dict[str, list[str]] | None = None
        self._pinyin: dict[str, set[str]] | None = None
        self.max_len = max(map(len, self.surfaces), default=0)

    @classmethod
    def from_store(cls, store) -> EntityLinker:
        names = [n for n, _ in store.iter_entities()]
        rich = dict(
            store.conn.execute(
                "SELECT e.name, COUNT(*) FROM facts f JOIN entities e ON e.id=f.entity_id GROUP BY e.id"
            )
        )
        return cls(names, list(store.iter_aliases()), rich)

    # --- public -------------------------------------------------------------------------------
    def link(self, text: str, k: int = 5) -> list[Link]:
        text = text.strip()
        if not text:
            return []
        found: dict[str, Link] = {}
        if text in self.names:
            self._add(found, text, 1.0, "exact", text)
        norm = normalize(text)
        for e in self.by_norm.get(norm, ()):
            self._add(found, e, 0.93, "normalized", text)
        for e, pred in self.by_alias.get(text, ()):
            self._add(found, e, 0.9 if pred == DERIVED else 0.95, "generic" if pred == DERIVED else f"alias:{pred}", text)
        for e, pred in self.by_alias_norm.get(norm, ()):
            self._add(found, e, 0.88, "normalized_alias", text)
        if not found:
            self._pinyin_match(found, text)
        if not found:
            self._fuzzy(found, norm, text)
        ranked = sorted(found.values(), key=self._rank_key)
        return ranked[:k]

    def find_mentions(self, text: str) -> list[tuple[int, int, str]]:
        """Longest KB surface forms (names or aliases, normalized) in `text`, left to right, no overlaps."""
        norm = normalize(text)
        out, i = [], 0
        while i < len(norm):
            for j in range(min(len(norm), i + self.max_len), i + 1, -1):
                if norm[i:j] in self.surfaces:
                    out.append((i, j, norm[i:j]))
                    i = j
                    break
            else:
                i += 1
        return out

    def _rank_key(self, x: Link):
        # Within a tier prefer names that contain the surface (二甲双胍 -> 盐酸二甲双胍片, not the brand 亿恒),
        # then the plainest name (盐酸二甲双胍片 over 盐酸二甲双胍肠溶片), then the richest entry.
        return (-x.score, x.surface not in x.entity, len(x.entity), -self.richness.get(x.entity, 0), x.entity)

    # --- tiers --------------------------------------------------------------------------------
    def _add(self, found: dict[str, Link], entity: str, score: float, method: str, surface: str) -> None:
        if entity not in found or found[entity].score < score:
            found[entity] = Link(entity, score, method, surface)

    def _entities_of(self, norm_surface: str) -> list[tuple[str, str]]:
        ents = [(e, "name") for e in self.by_norm.get(norm_surface, ())]
        return ents + list(self.by_alias_norm.get(norm_surface, ()))

    def _pinyin_match(self, found: dict[str, Link], text: str) -> None:
        if not any("\u4e00" <= ch <= "\u9fff" for ch in text):
            return
        if self._pinyin is None:
            index: dict[str, set[str]] = defaultdict(set)
            for s in self.surfaces:
                if any("\u4e00" <= ch <= "\u9fff" for ch in s):
                    index[_pinyin(s)].add(s)
            self._pinyin = index
        for s in sorted(self._pinyin.get(_pinyin(normalize(text)), ())):
            for e, _ in self._entities_of(s):
                self._add(found, e, 0.8, "pinyin", text)

    def _fuzzy(self, found: dict[str, Link], norm: str, text: str) -> None:
        if len(norm) < 2:
            return
        if self._grams is None:
            grams: dict[str, list[str]] = defaultdict(list)
            for s in self.surfaces:
                for g in {s[i : i + 2] for i in range(len(s) - 1)}:
                    grams[g].append(s)
            self._grams = grams
        hits: Counter = Counter()
        for g in {norm[i : i + 2] for i in range(len(norm) - 1)}:
            hits.update(self._grams.get(g, ()))
        candidates = sorted(hits.items(), key=lambda x: (-x[1], len(x[0]), x[0]))[:64]
        for s, _ in candidates:
            sim = Levenshtein.normalized_similarity(norm, s)
            if sim >= FUZZY_MIN:
                for e, _ in self._entities_of(s):
                    self._add(found, e, round(0.75 * sim, 4), "fuzzy", text)
