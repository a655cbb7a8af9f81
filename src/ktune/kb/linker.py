"""Entity linking: a surface string -> ranked KB entities, each with a score and the method that found it.

Tiers, tried in order (deterministic; ties broken by containment, the shorter name, the richer entry,
then by name):
  exact (1.0) > alias (0.95, via 别称/通用名/... and the lay-name list lay_names.json: 心梗 -> 心肌梗死)
  > normalized name (0.93: full/half width, case, spaces) > generic name -> products (0.9)
  > normalized alias (0.88) > variant (0.86: the same name up to a 病/症/综合征/感染 suffix, 性, 疼/痛, or how a
  type number is written: 手足口 -> 手足口病, 过敏鼻炎 -> 过敏性鼻炎, 2型糖尿病 -> II型糖尿病)
  > modifier (0.84: a KB name after removing who / how severe / when words around it: 轻度脂肪肝 -> 脂肪肝,
  孕妇贫血 -> 贫血) > pinyin homophone (0.8; exact pinyin, else fuzzy pinyin: 库兴 -> 库欣)
  > fuzzy (0.68-0.8: edit distance over character bigram and skip-bigram candidates, a bonus when the
  text is contained in the surface, e.g. 肝胆管结石 -> 肝胆管结石病).
Variant and modifier links are rules, not guesses: they never cross to a different KB name when the text
itself is one (exact and alias tiers win), and the modifier list holds no word that names a body part or a
disease (上腹痛 is not 腹痛 + modifier). The variant, pinyin and fuzzy indexes are built on first use.
The rules of the variant and modifier tiers (variant keys, modifier and population words): ktune.kb.variants.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from ktune.kb.aliases import DERIVED
from ktune.kb.pinyin import Pinyin, is_cjk
from ktune.kb.variants import POPULATIONS, loose_key, strip_modifiers

LAY_NAMES_PATH = Path(__file__).with_name("lay_names.json")
LAY_NAME = "lay_name"  # alias predicate of the lay-name list

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


def _grams(s: str) -> set[str]:
    """Character bigrams plus skip-bigrams, so one substituted character still leaves shared keys."""
    return {s[i : i + 2] for i in range(len(s) - 1)} | {_SKIP + s[i] + s[i + 2] for i in range(len(s) - 2)}


class EntityLinker:
    def __init__(self, names: list[str], aliases: list[tuple[str, str, str]], richness: dict[str, int],
                 same: list[tuple[str, str]] = ()):
        self.names = set(names)
        self._same = list(same)  # (name, name) pairs stated equal outside the KB's alias rows (the lay-name list)
        self._equivalents: dict[str, list[tuple[str, str]]] | None = None
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
        self._loose: dict[str, list[str]] | None = None
        self._grams: dict[str, list[str]] | None = None
        self._pinyin_index: dict[str, list[str]] | None = None
        self._fuzzy_pinyin_index: dict[str, list[str]] = {}
        self._py: Pinyin | None = None
        self.max_len = max(map(len, self.surfaces), default=0)

    @classmethod
    def from_store(cls, store, lay_names: Path | None = LAY_NAMES_PATH) -> EntityLinker:
        names = [n for n, _ in store.iter_entities()]
        aliases = list(store.iter_aliases())
        same: list[tuple[str, str]] = []
        if lay_names is not None:
            taken = {normalize(s) for s, _, p in aliases if p != DERIVED} | set(map(normalize, names))
            aliases += lay_name_aliases(lay_names, set(names), taken)
            same = lay_name_equivalents(lay_names, set(names))
        return cls(names, aliases, store.fact_counts(), same)

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
        if not found:
            self._variant_match(found, norm, text)
        if not found:
            self._modifier_match(found, norm, text)
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

    def homophone_of(self, text: str, min_len: int = 3) -> str | None:
        """The one KB surface that reads like `text` (at least `min_len` characters, not itself a surface; exact
        pinyin first, else fuzzy pinyin): 鼻豆炎 -> 鼻窦炎, 甲消唑 -> 甲硝唑, 库心 -> 库欣; None when there is none
        or when different entries read alike."""
        norm = normalize(text)
        if len(norm) < min_len or norm in self.surfaces or not all(is_cjk(ch) for ch in norm):
            return None
        self._build_pinyin()
        return self._one_reading(self._read_alike(self._py.key(norm), len(norm)))

    def homophone_mentions(self, text: str, min_len: int = 3) -> list[tuple[int, int, str]]:
        """KB surfaces written in `text` with a homophone typo (高血呀 -> 高血压, 阿莫西林交囊 -> 阿莫西林胶囊; how a
        pinyin input method errs): windows of at least `min_len` characters that are no KB surface themselves but
        read like one, longest first, left to right, no overlaps; (start, end, surface) over normalize(text)."""
        norm = normalize(text)
        if not any(is_cjk(ch) for ch in norm):
            return []
        self._build_pinyin()
        keys = [self._py.key(ch) for ch in norm]
        out, i = [], 0
        while i < len(norm):
            for j in range(min(len(norm), i + self.max_len), i + min_len - 1, -1):
                window = norm[i:j]
                if window in self.surfaces or not is_cjk(window[0]) or not is_cjk(window[-1]):
                    continue
                hit = self._one_reading(self._read_alike(" ".join(keys[i:j]), len(window)))
                if hit is not None:
                    out.append((i, j, hit))
                    i = j
                    break
            else:
                i += 1
        return out

    def variant_mentions(self, text: str, max_len: int = 16) -> list[tuple[int, int, str]]:
        """Windows of normalize(text) that are no KB surface but a variant of one, as the variant tier reads them
        (带状疱疹 of 带状疱疹感染, 牙疼 of 牙痛): every (start, end, window) with CJK at both ends; two characters
        only when a character is rewritten (疼 -> 痛), not for a name that is a suffix-free part of a longer one;
        overlapping ones included (the caller picks)."""
        norm, loose = normalize(text), self._loose_index()
        out = []
        for i in range(len(norm)):
            for j in range(i + 2, min(len(norm), i + max_len) + 1):
                window = norm[i:j]
                if (window not in self.surfaces and is_cjk(window[0]) and is_cjk(window[-1])
                        and len(key := loose_key(window)) >= 2 and (len(window) > 2 or key != window)
                        and any(pred != DERIVED for s in loose.get(key, ()) for _, pred in self._entities_of(s))):
                    out.append((i, j, window))
        return out

    def equivalents(self, entity: str) -> list[tuple[str, str]]:
        """Other KB entries for the same condition or drug as `entity`, richest first, each with how that is known:
        "alias" (one entry's alias or synonym row is the other's name: 老花眼 又称 老视), "variant" (the names differ
        only as the variant tier allows: 帕金森症 / 帕金森病, 偏头疼 / 偏头痛) or "lay_name" (the lay-name list
        maps a name the KB has as its own thin entry onto the clinical one: 脑梗 -> 脑梗死). CMeKG holds such
        duplicates with different facts; a name that merely contains another (肝 / 肝癌) is never one."""
        if self._equivalents is None:
            self._equivalents = self._build_equivalents()
        return self._equivalents.get(entity, [])

    def _build_equivalents(self) -> dict[str, list[tuple[str, str]]]:
        pairs: dict[tuple[str, str], str] = {}

        def add(a: str, b: str, how: str) -> None:
            if a != b:
                pairs.setdefault((a, b), how)
                pairs.setdefault((b, a), how)

        for surface, rows in self.by_alias_norm.items():
            for other in self.by_norm.get(surface, ()):
                for e, pred in rows:
                    if pred not in (DERIVED, LAY_NAME):
                        add(e, other, "alias")
        loose: dict[str, list[str]] = defaultdict(list)
        for n in sorted(self.names):
            if len(key := loose_key(normalize(n))) >= 2:
                loose[key].append(n)
        for group in loose.values():
            for a in group:
                for b in group:
                    add(a, b, "variant")
        for a, b in self._same:
            add(a, b, LAY_NAME)
        out: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for (a, b), how in sorted(pairs.items()):
            out[a].append((b, how))
        for a in out:
            out[a].sort(key=lambda x: (-self.richness.get(x[0], 0), x[0]))
        return dict(out)

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

    def _loose_index(self) -> dict[str, list[str]]:
        """loose_key -> the surfaces with that key, built once and assigned whole."""
        if self._loose is None:
            loose: dict[str, list[str]] = defaultdict(list)
            for s in sorted(self.surfaces):
                if len(key := loose_key(s)) >= 2:
                    loose[key].append(s)
            self._loose = loose
        return self._loose

    def _variant_match(self, found: dict[str, Link], norm: str, text: str) -> None:
        key = loose_key(norm)
        if len(key) < 2:
            return
        for s in self._loose_index().get(key, ()):
            for e, pred in self._entities_of(s):
                if pred != DERIVED:  # a name derived from a drug product is no condition's variant
                    # an entry whose own name is the variant before one that lists it as an alias (复方甘草口服液:
                    # 复方甘草口服溶液 before 复方甘草合剂, whose 通用名 it is)
                    self._add(found, e, 0.86 if pred == "name" else 0.85, "variant", text)

    def _modifier_match(self, found: dict[str, Link], norm: str, text: str) -> None:
        """The KB name left after removing modifier words at either end (one or more of each); a population word
        (宝宝, 孕妇, 老人) leads to that population's own entry when the KB has one (宝宝腹泻 -> 小儿腹泻)."""
        core = strip_modifiers(norm)
        if core == norm or len(core) < 2:
            return
        own = self.population_entry(norm[: norm.find(core)] if core in norm else "", core)
        if own:
            self._add(found, own, 0.85, "modifier", text)
            return
        hits = [(e, 0.84) for e, pred in self._entities_of(core) if pred != DERIVED]
        if not hits:
            hits = [(e, 0.83) for s in self._loose_index().get(loose_key(core), ()) for e, pred in self._entities_of(s)
                    if pred != DERIVED]
        for e, score in hits:
            self._add(found, e, score, "modifier", text)

    def population_entry(self, modifiers: str, core: str) -> str | None:
        """The KB entry for `core` (a name or alias) in the population `modifiers` names, e.g. ("宝宝", "拉肚子") ->
        小儿腹泻 when the KB has it; None when the words name no population or the KB has no such entry."""
        if not modifiers:
            return None
        names = {core} | {e for e, pred in self._entities_of(core) if pred != DERIVED}
        for words, prefixes in POPULATIONS:
            if any(w in modifiers for w in words):
                for name in sorted(names, key=len):
                    for prefix in prefixes:
                        for e in sorted(self.by_norm.get(normalize(prefix + name), ())):
                            return e
        return None

    def _pinyin_match(self, found: dict[str, Link], norm: str, text: str) -> None:
        if len(norm) < 2 or not any(is_cjk(ch) for ch in norm):
            return
        self._build_pinyin()
        for s in self._read_alike(self._py.key(norm)):
            for e, _ in self._entities_of(s):
                self._add(found, e, 0.8, "pinyin", text)

    def _one_reading(self, hits: list[str]) -> str | None:
        """The surface a homophone stands for: the one hit, not counting another name or alias of an entry a hit
        names (荨麻疹 and its lay name 寻麻疹 read alike); None when different entries read alike (no guess)."""
        named = {e for h in hits for e in self.by_norm.get(h, ())}
        if len(hits) > 1 and named:
            hits = [h for h in hits if h in self.by_norm or not {e for e, _ in self._entities_of(h)} <= named]
        return hits[0] if len(hits) == 1 else None

    def _read_alike(self, key: str, length: int | None = None) -> list[str]:
        """The surfaces (of `length` characters, when given) that read as `key`; when none does, those that read
        as it under fuzzy pinyin (Pinyin.fuzzy)."""
        for index, k in ((self._pinyin_index, key), (self._fuzzy_pinyin_index, Pinyin.fuzzy(key))):
            hits = [s for s in index.get(k, ()) if length is None or len(s) == length]
            if hits:
                return hits
        return []

    def _build_pinyin(self) -> None:
        """The pinyin key -> surfaces indexes (exact and fuzzy), built once and assigned whole (threads may race
        to build them)."""
        if self._pinyin_index is None:
            py = Pinyin()
            index: dict[str, list[str]] = defaultdict(list)
            fuzzy: dict[str, list[str]] = defaultdict(list)
            for s in sorted(self.surfaces):
                if len(s) >= 2 and any(is_cjk(ch) for ch in s):
                    index[key := py.key(s)].append(s)
                    fuzzy[Pinyin.fuzzy(key)].append(s)
            self._py, self._fuzzy_pinyin_index, self._pinyin_index = py, fuzzy, index

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




def _lay_names(path: Path) -> dict[str, str]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["names"]


def lay_name_aliases(path: Path, names: set[str], taken: set[str]) -> list[tuple[str, str, str]]:
    """(surface, entity, "lay_name") rows from the lay-name list, for targets the KB has and surfaces it does not."""
    return [(s, e, LAY_NAME) for s, e in sorted(_lay_names(path).items()) if e in names and normalize(s) not in taken]


def lay_name_equivalents(path: Path, names: set[str]) -> list[tuple[str, str]]:
    """(surface, entity) pairs of the lay-name list where the KB has both as entries of their own (脑梗 / 脑梗死)."""
    return [(s, e) for s, e in sorted(_lay_names(path).items()) if e in names and s in names]
