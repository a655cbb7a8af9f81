"""How the claim check reads a sentence: the knowledge as an index of value strings, entity names and predicate
names; a sentence as the spans of those it contains; an answer body as its sentences (ktune.pipeline.claims)."""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from functools import lru_cache

from ktune.data.answers import clean_value

# Link methods that name the same KB entity (a fuzzy guess is not evidence that two names are one entity).
SAME_ENTITY_METHODS = ("exact", "normalized", "generic", "normalized_alias")
SENTENCE_END = "。！？!?\n"
# Single-character values (性味 甘, 传染性 有) count only between these, never inside connective words.
_ONE_CHAR_BEFORE = set("：:、；;，,为是") | {""}
_ONE_CHAR_AFTER = set("、；;，,。等") | {""}


@dataclass(frozen=True)
class Fact:
    entity: str
    predicate: str
    value: str

    def to_json(self) -> dict:
        return {"entity": self.entity, "predicate": self.predicate, "value": self.value}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # value | name | predicate
    text: str


@dataclass
class KnowledgeIndex:
    """The knowledge as the check needs it: value strings -> facts, entity names, predicate names."""

    values: dict[str, list[Fact]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    predicates: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)  # the schema attributes the knowledge's predicates map to
    attribute_of: dict[str, str] = field(default_factory=dict)  # raw predicate -> its schema attribute
    norm_text: str = ""

    def fields_of(self, fact: Fact) -> set[str]:
        """The field names a sentence may state `fact` under: its raw predicate and that predicate's attribute."""
        return {fact.predicate, self.attribute_of.get(fact.predicate, fact.predicate)}


# --- the knowledge ------------------------------------------------------------------------------
def knowledge_facts(knowledge: dict) -> list[Fact]:
    return [Fact(e, p, v) for e, preds in (knowledge or {}).items() for p, vals in preds.items() for v in vals]


def index_knowledge(knowledge: dict, kb) -> KnowledgeIndex:
    from ktune.kb.linker import normalize

    idx = KnowledgeIndex()
    for fact in knowledge_facts(knowledge):
        for form in {fact.value.strip(), clean_value(fact.value)}:
            if form:
                idx.values.setdefault(form, [])
                if fact not in idx.values[form]:
                    idx.values[form].append(fact)
    for entity, preds in (knowledge or {}).items():
        idx.names.add(entity)
        idx.predicates.update(preds)
        if kb is not None:
            idx.names.update(aliases_of(kb, entity))
    mapping = _predicate_attribute(kb.schema if kb is not None else None)
    idx.attribute_of = {p: mapping[p] for p in idx.predicates if p in mapping}
    idx.attributes = set(idx.attribute_of.values())
    idx.predicates.update(idx.attributes)
    idx.norm_text = normalize(json.dumps(knowledge or {}, ensure_ascii=False))
    return idx


def _predicate_attribute(schema) -> dict[str, str]:
    """raw predicate -> attribute, from the KB's schema (the shipped one when no KB is given)."""
    return schema.predicate_attribute() if schema is not None else _shipped_mapping()


@lru_cache(maxsize=1)
def _shipped_mapping() -> dict[str, str]:
    from ktune.kb.schema import Schema

    return Schema.load().predicate_attribute()


_ALIASES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def aliases_of(kb, entity: str) -> list[str]:
    """The KB's aliases of `entity` (别称, 通用名, 商品名, derived generic names), as written in the KB."""
    linker = kb.linker
    reverse = _ALIASES.get(linker)
    if reverse is None:
        reverse = {}
        for surface, targets in linker.by_alias.items():
            for target, _ in targets:
                reverse.setdefault(target, []).append(surface)
        _ALIASES[linker] = reverse
    return reverse.get(entity, [])


def names_entity(kb, text: str, entities) -> bool:
    """True when `text` is a KB name or alias of one of `entities` (never by a fuzzy guess)."""
    if kb is None:
        return text in entities
    return any(link.entity in entities and link.method.split(":")[0] in SAME_ENTITY_METHODS + ("alias",)
               for link in kb.link(text, k=50))


# --- spans --------------------------------------------------------------------------------------
def _find_all(text: str, needle: str):
    start = text.find(needle)
    while start >= 0:
        yield start
        start = text.find(needle, start + 1)


def find_spans(sentence: str, idx: KnowledgeIndex, one_char_anywhere: bool = False, question: str = "") -> list[Span]:
    """Longest-first, non-overlapping: values, entity names (KB names and aliases), predicate names; with
    `question`, also the question's words the sentence repeats (kind "surface", the last resort)."""
    cands: list[tuple[str, str]] = [(v, "value") for v in idx.values]
    cands += [(n, "name") for n in idx.names]
    cands += [(p, "predicate") for p in idx.predicates]
    cands += [(q, "surface") for q in _shared_substrings(sentence, question)]
    taken = [False] * len(sentence)
    out: list[Span] = []
    order = {"value": 0, "name": 1, "predicate": 2, "surface": 3}
    for text, kind in sorted(set(cands), key=lambda c: (c[1] == "surface", -len(c[0]), order[c[1]], c[0])):
        for s in _find_all(sentence, text):
            e = s + len(text)
            if any(taken[s:e]):
                continue
            if kind == "value" and len(text) == 1 and not one_char_anywhere:
                before = sentence[s - 1] if s else ""
                after = sentence[e] if e < len(sentence) else ""
                if before not in _ONE_CHAR_BEFORE or after not in _ONE_CHAR_AFTER:
                    continue
            taken[s:e] = [True] * (e - s)
            out.append(Span(s, e, kind, text))
    return sorted(out, key=lambda sp: sp.start)


def _shared_substrings(sentence: str, question: str, min_len: int = 2) -> list[str]:
    """Maximal substrings (>= min_len) of `sentence` that the question also contains."""
    out, i = [], 0
    while question and i < len(sentence):
        j = i + min_len
        while j <= len(sentence) and sentence[i:j] in question:
            j += 1
        if j - 1 - i >= min_len:
            out.append(sentence[i:j - 1])
            i = j - 1
        else:
            i += 1
    return out


def split_sentences(body: str, knowledge: dict | None = None) -> list[str]:
    """Sentences of an answer body, never cutting inside a knowledge value (values can hold 。)."""
    protected = [False] * len(body)
    for v in sorted({clean_value(f.value) for f in knowledge_facts(knowledge or {})}, key=len, reverse=True):
        if len(v) > 1 and any(ch in v for ch in SENTENCE_END):
            for s in _find_all(body, v):
                protected[s:s + len(v)] = [True] * len(v)
    out, cur = [], ""
    for i, ch in enumerate(body):
        cur += ch
        if ch in SENTENCE_END and not protected[i]:
            if cur.strip():
                out.append(cur.strip())
            cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out

