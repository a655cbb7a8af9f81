"""Entity linking: a surface string -> ranked KB entities, each with a score and the method that found it.

Tiers, tried in order (deterministic; ties broken by containment, the shorter name, the richer entry,
then by name):
  exact (1.0) > alias (0.95, via 别称/通用名/...) > normalized name (0.93: full/half width, case, spaces)
  > generic name -> products (0.9) > normalized alias (0.88) > pinyin homophone (0.8)
  > fuzzy (0.68-0.8: edit distance over character bigram and skip-bigram candidates, a bonus when the
  text is contained in the surface, e.g. 肝胆管结石 -> 肝胆管结石病).
The pinyin and fuzzy indexes are built on first use (about 0.3 s on the full CMeKG).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from ktune.kb.aliases import DERIVED

_PUNCT = re.compile(r"[\s·•\-—_/\\,，.。:：;；'\"“”‘’]+")
FUZZY_MIN = 0.6  # normalized Levenshtein similarity below which nothing is returned
FUZZY_BASE, FUZZY_SPAN = 0.5, 0.3  # fuzzy score = BASE + SPAN * similarity, in [0.68, 0.8)
FUZZY_CANDIDATES = 256
_SKIP = "\x00"  # marks skip-bigram keys (chars i and i+2) in the candidate index


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
    # NFKC again at the end: removing a space can leave a combining mark next to a letter.
    return unicodedata.normalize("NFKC", _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower()))


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


class _Pinyin:
    """Toneless pinyin keys, one reading per character (a homophone typo keeps the key)."""

    def __init__(self):
        from pypinyin import lazy_pinyin

        self._lazy = lazy_pinyin
        self._chars: dict[str, str] = {}

    def key(self, text: str) -> str:
        out = []
        for ch in text:
            py = self._chars.get(ch)
            if py is None:
                py = self._chars[ch] = self._lazy(ch)[0] if _is_cjk(ch) else ch
            out.append(py)
        return " ".join(out)


def _grams(s: str) -> set[str]:
    """Character bigrams plus skip-bigrams, so one substituted character still leaves shared keys."""
    return {s[i : i + 2] for i in range(len(s) - 1)} | {_SKIP + s[i] + s[i + 2] for i in range(len(s) - 2)}


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
        self._pinyin_index: dict[str, list[str]] | None = None
        self._py: _Pinyin | None = None
        self.max_len = max(map(len, self.surfaces), default=0)

    @classmethod
    def from_store(cls, store) -> EntityLinker:
        names = [n for n, _ in store.iter_entities()]
        return cls(names, list(store.iter_aliases()), store.fact_counts())

    # --- public -------------------------------------------------------------------------------
    def link(self, text: str, k: int = 5) -> list[Link]:
        """Up to k entities for `text`, best first; [] when nothing is close enough."""
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
            derived = pred == DERIVED
            self._add(found, e, 0.9 if derived else 0.95, "generic" if derived else f"alias:{pred}", text)
        for e, _ in self.by_alias_norm.get(norm, ()):
            self._add(found, e, 0.88, "normalized_alias", text)
        # Text longer than every surface has no pinyin twin, and beyond max_len / FUZZY_MIN no surface can
        # reach FUZZY_MIN: skipping those tiers for long text (a sentence) changes nothing but the time.
        if not found and len(norm) <= self.max_len:
            self._pinyin_match(found, norm, text)
        if not found and len(norm) <= self.max_len / FUZZY_MIN:
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
        ents = [(e, "name") for e in sorted(self.by_norm.get(norm_surface, ()))]
        return ents + list(self.by_alias_norm.get(norm_surface, ()))

    def _pinyin_match(self, found: dict[str, Link], norm: str, text: str) -> None:
        if len(norm) < 2 or not any(_is_cjk(ch) for ch in norm):
            return
        if self._pinyin_index is None:
            self._py = _Pinyin()
            index: dict[str, list[str]] = defaultdict(list)
            for s in sorted(self.surfaces):
                if len(s) >= 2 and any(_is_cjk(ch) for ch in s):
                    index[self._py.key(s)].append(s)
            self._pinyin_index = index
        for s in self._pinyin_index.get(self._py.key(norm), ()):
            for e, _ in self._entities_of(s):
                self._add(found, e, 0.8, "pinyin", text)

    def _fuzzy(self, found: dict[str, Link], norm: str, text: str) -> None:
        if len(norm) < 2:
            return
        if self._grams is None:
            grams: dict[str, list[str]] = defaultdict(list)
            for s in sorted(self.surfaces):
                for g in _grams(s):
                    grams[g].append(s)
            self._grams = grams
        hits: Counter = Counter()
        for g in _grams(norm):
            hits.update(self._grams.get(g, ()))
        candidates = [s for s, _ in sorted(hits.items(), key=lambda x: (-x[1], len(x[0]), x[0]))[:FUZZY_CANDIDATES]]
        scored = process.extract(
            norm, candidates, scorer=Levenshtein.normalized_similarity, score_cutoff=FUZZY_MIN, limit=None
        )
        for s, sim, _ in scored:
            if len(norm) >= 3 and norm in s:  # the text is a truncation of the surface: 肝胆管结石 -> ...结石病
                sim = (1 + sim) / 2
            for e, _ in self._entities_of(s):
                self._add(found, e, round(FUZZY_BASE + FUZZY_SPAN * sim, 4), "fuzzy", text)
