"""Premise questions ("X可以治疗Y吗", "Y是X的症状吗", "X含有Y吗"): decided by the KB, never by the question.

A premise question states a relation between the queried entity X and a term Y and asks whether it holds.
ktune finds Y (the part of the question the relation pattern puts opposite X), reads X's values for the
attributes the relation means (治疗 -> a drug's 适应症 / a disease's 药物治疗, 副作用 -> 不良反应, ...) and
answers deterministically: the values that match Y, cited, or a plain statement that X's entry does not
list Y followed by what it does list. The model writes nothing here: the question's premise is the one
thing a language model is most likely to repeat as a fact.

Y matches a value when (normalized) they are equal; when the value contains Y as a whole term (Y ends at
a word boundary in the value and is not negated: 结核病 in 各种结核病的初治); when Y is the value plus only
a filler affix (结核 + 病, 糖尿病 + 患者); or when both name the same KB entity (an alias, never a fuzzy
guess). A value that is merely part of Y (感染 in 尿路感染) does not match: the KB then says something more
general than the question, and ktune shows that value instead of affirming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ktune.data.answers import clean_value
from ktune.kb.linker import normalize
from ktune.pipeline.claim_spans import SAME_ENTITY_METHODS, Fact, aliases_of, knowledge_facts

_END = r"(?:吗|(?<![什怎那这多])么|嘛|不|没有)$"
_MODAL = r"(?:可以|可|能够|能|能不能|可不可以|是否可以|是否能|是否|会不会|会|也)?"
_TAKE = r"(?:吃|服用|用|使用|服)"
X = "\u24cd"  # Ⓧ: where the question writes the queried entity (see detect_premise)
# (relation, pattern): tried in order on the question with the entity replaced by Ⓧ; group y is the term.
PATTERNS: tuple[tuple[str, re.Pattern], ...] = tuple((rel, re.compile(p.replace("X", X))) for rel, p in (
    ("adverse", rf"^{_TAKE}?X(?:以后|之后|后)?{_MODAL}(?:有|会有|出现|引起|导致|造成)(?P<y>.+?)(?:的|这种|这个|等)?(?:副作用|不良反应){_END}"),
    ("adverse", rf"^(?P<y>.+?)是{_TAKE}?X的(?:副作用|不良反应){_END}"),
    ("adverse", rf"^X的(?:副作用|不良反应)(?:有|包括|包含)(?P<y>.+?){_END}"),
    ("adverse", rf"^{_TAKE}X(?:以后|之后|后)?{_MODAL}(?:引起|导致|造成|出现|有)?(?P<y>.+?){_END}"),
    ("symptom", rf"^(?P<y>.+?)是X的(?:症状|表现|临床表现|征兆|典型症状|常见症状){_END}"),
    ("symptom", rf"^X的(?:症状|表现|临床表现)(?:有|包括|包含)(?P<y>.+?){_END}"),
    ("symptom", rf"^(?:得了|患了|得|患)?X{_MODAL}(?:有|出现|表现为|伴有)(?P<y>.+?)(?:的|这种|这个|等)?(?:症状|表现){_END}"),
    ("complication", rf"^(?P<y>.+?)是X的并发症{_END}"),
    ("complication", rf"^X的并发症(?:有|包括|包含)(?P<y>.+?){_END}"),
    ("complication", rf"^(?:得了|患了|得|患)?X{_MODAL}(?:并发|合并|继发)(?P<y>.+?){_END}"),
    ("contain", rf"^(?P<y>.+?)是X的(?:主要)?(?:成分|成份|组成){_END}"),
    ("contain", rf"^X的(?:主要)?(?:成分|成份)(?:有|包括|包含|是)(?P<y>.+?){_END}"),
    ("contain", rf"^X(?:里|中|里面)?(?:含有|含|有)(?P<y>.+?)(?:的)?(?:成分|成份){_END}"),
    ("contain", rf"^X(?:里面有|里有|中有|含有|含){_MODAL}(?P<y>.+?){_END}"),
    ("contraindication", rf"^X{_MODAL}(?:禁用于|禁止用于|不能用于|忌用于)(?P<y>.+?){_END}"),
    ("contraindication", rf"^X的禁忌(?:有|包括|包含)(?P<y>.+?){_END}"),
    ("treat", rf"^X{_MODAL}(?:用于治疗|用来治疗|治疗|医治|治好|治|用于|主治)(?P<y>.+?){_END}"),
    ("treat", rf"^(?P<y>.+?){_MODAL}(?:用于治疗|用来治疗|治疗|医治|治好|治|用于|主治)X{_END}"),
    ("treat", rf"^X的适应症(?:有|包括|包含)(?P<y>.+?){_END}"),
    ("treat", rf"^X对(?P<y>.+?)(?:有效|有用|有帮助|管用|有疗效|有作用){_END}"),
    ("treat", rf"^(?P<y>.+?)对X(?:有效|有用|有帮助|管用|有疗效|有作用){_END}"),
    ("treat", r"^X是治(?:疗)?(?P<y>.+?)的(?:药|药物|药品)?(?:吗|么|嘛)?$"),
    ("use", rf"^(?:得了|患了|得|患)?X(?:的人|患者|病人)?{_MODAL}{_TAKE}(?P<y>.+?)(?:治疗|来治疗|治)?{_END}"),
    ("use", rf"^(?:得了|患了|得|患)?(?P<y>.+?){_MODAL}{_TAKE}X(?:治疗|来治疗|治)?{_END}"),
    ("cause", rf"^(?:得了|患了|得|患)X(?:以后|之后|后)?{_MODAL}(?:引起|导致|造成|出现|有|并发)?(?P<y>.+?){_END}"),
    ("cause", rf"^X{_MODAL}(?:引起|导致|造成|诱发|引发)(?P<y>.+?){_END}"),
))

# The attributes a relation is about, by the kind of the queried entity.
RELATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "treat": {"drug": ("适应症",), "herb": ("适应症", "功效"), "formula": ("适应症", "功效"),
              "disease": ("药物治疗", "治疗方案")},
    "use": {"drug": ("适应症", "禁忌", "注意事项"), "herb": ("适应症", "功效"), "formula": ("适应症", "功效"),
            "disease": ("药物治疗", "治疗方案")},
    "adverse": {"drug": ("不良反应",)},
    "symptom": {"disease": ("临床表现",)},
    "complication": {"disease": ("并发症",)},
    "cause": {"disease": ("并发症", "临床表现"), "drug": ("不良反应",)},
    "contain": {"drug": ("成份",), "formula": ("成份",)},
    "contraindication": {"drug": ("禁忌",)},
}
_QUESTION_WORDS = re.compile(r"什么|哪些|哪种|哪个|哪类|啥|多少|怎么|怎样|如何|几")
_MODAL_START = re.compile(r"^(?:还|能|可以|可|会|也|要)")  # a leftover modal: 还能恢复 is no term
_Y_PREFIX = re.compile(r"^(?:这种|这个|那种|一些|各种|有)")
_Y_SUFFIX = re.compile(r"(?:这种病|这些|之类的|之类|的症状|症状|的作用|的效果|的功效|等|的)$")
# What may follow Y inside a value for Y to be a whole term there (Y is the head of a phrase).
# 过 and 功 too: "对Y过敏" names Y as the allergen, "Y功能不全" the organ Y.
_HEAD_AFTER = set("、；;，,。.)）的等及和与或者所时期病症患人禁慎忌引导型过功") | {""}
_NEGATED_BEFORE = set("非无不未除")
# Affixes that add no medical content: 结核病 is 结核, 糖尿病患者 is about 糖尿病.
_FILLER_PREFIX = ("各种", "各型", "")
_FILLER_SUFFIX = ("病", "症", "患者", "病人", "疾病", "的人", "")


@dataclass(frozen=True)
class PremiseQuery:
    """A premise found in a question: the relation, the queried entity and the claimed term Y."""

    relation: str
    entity: str
    term: str
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    fact: Fact
    how: str  # exact | value_contains | affix | same_entity


@dataclass(frozen=True)
class Premise:
    """The verdict: whether the KB's values for the relation list the term, and which values do."""

    relation: str
    entity: str
    term: str
    attributes: tuple[str, ...]
    listed: bool
    matches: tuple[Match, ...] = ()

    def to_json(self) -> dict:
        return {
            "relation": self.relation,
            "entity": self.entity,
            "term": self.term,
            "attributes": list(self.attributes),
            "verdict": "listed" if self.listed else "not_listed",
            "matches": [{**m.fact.to_json(), "how": m.how} for m in self.matches],
        }


# --- finding the premise ------------------------------------------------------------------------
def _strip_question(question: str) -> str:
    q = re.sub(r"[\s，,。.！!？?～~…]+$", "", question.strip())
    return re.sub(r"^(?:(?:请问|请教一下|请教|问一下|想问一下|想问|麻烦问一下|麻烦问下|麻烦|医生|大夫|你好|您好)[，,：:！!]?)+",
                  "", q)


def _clean_term(text: str) -> str:
    t = text.strip(" ，,、：:“”\"'")
    for _ in range(2):
        t = _Y_SUFFIX.sub("", _Y_PREFIX.sub("", t)).strip(" ，,、：:“”\"'")
    return t


def entity_spans(question: str, entity: str, kb, surface: str | None = None) -> list[tuple[int, int]]:
    """Where the question writes `entity`, best first: its KB name before its aliases (a product's generic
    name can also be the ingredient the question asks about: 欧智宁 / 盐酸格拉司琼), longer before shorter,
    then the surface stage 1 generated."""
    own = normalize(entity)
    names = {normalize(a) for a in aliases_of(kb, entity)} | {own}
    if surface:
        names.add(normalize(surface))
    names.discard("")
    found = []
    for i in range(len(question)):
        for j in range(len(question), i, -1):
            if normalize(question[i:j]) in names:
                found.append((i, j))
                break
    return sorted(found, key=lambda sp: (normalize(question[sp[0]:sp[1]]) != own, sp[0] - sp[1], sp[0]))


def detect_premise(question: str, entity: str | None, kb, surface: str | None = None) -> PremiseQuery | None:
    """The premise (relation, entity, term Y, attributes) of a yes/no question about `entity`, or None.

    `entity` is the KB entity the question was resolved to (`surface`: what stage 1 generated for it). The
    question's writing of the entity becomes Ⓧ and the relation patterns read Y off the rest. None for
    questions that ask for a list ("...有哪些"), that do not write the entity, or when the entity's kind has
    no attribute for the relation.
    """
    if not entity or not question:
        return None
    kind = kb.kind(entity)
    if kind is None:
        return None
    text = _strip_question(question)
    for start, end in entity_spans(text, entity, kb, surface):
        marked = text[:start] + X + text[end:]
        if _QUESTION_WORDS.search(marked):  # asks for a list or a description, not yes/no
            return None
        for relation, pattern in PATTERNS:
            attrs = RELATIONS[relation].get(kind)
            m = pattern.match(marked) if attrs else None
            if not m:
                continue
            term = _clean_term(m.group("y"))
            if len(term) < 2 or X in term or _MODAL_START.match(term):
                continue
            return PremiseQuery(relation, entity, term, attrs)
    return None


def find_premise(question: str, entity: str | None, kb, surface: str | None = None) -> PremiseQuery | None:
    """`detect_premise` for the resolved entity; when the relation does not read with it as X (stage 1 took
    the term: "上呼吸道感染是可塞风的不良反应吗" -> 上呼吸道感染), the other KB entities the question names
    (exact names and aliases only), in question order."""
    pq = detect_premise(question, entity, kb, surface)
    if pq is not None or entity is None:
        return pq
    for _, _, mention in kb.linker.find_mentions(question):
        for link in kb.link(mention, k=3):
            if link.entity != entity and link.method.split(":")[0] in SAME_ENTITY_METHODS + ("alias",):
                pq = detect_premise(question, link.entity, kb)
                if pq is not None:
                    return pq
    return None


# --- deciding it --------------------------------------------------------------------------------
def _same_entities(kb, text: str) -> set[str]:
    links = kb.link(text, k=10) if kb is not None else []
    return {lk.entity for lk in links if lk.method.split(":")[0] in SAME_ENTITY_METHODS + ("alias",)}


def match_term(term: str, value: str, kb=None) -> str | None:
    """How `value` lists `term` (exact, value_contains, affix, same_entity), or None when it does not."""
    y, v = normalize(term), normalize(clean_value(value))
    if not y or not v:
        return None
    if y == v:
        return "exact"
    if len(y) >= 2:
        start = v.find(y)
        while start >= 0:
            end = start + len(y)
            before = v[start - 1] if start else ""
            after = v[end] if end < len(v) else ""
            if after in _HEAD_AFTER and before not in _NEGATED_BEFORE:
                return "value_contains"
            start = v.find(y, start + 1)
    if len(v) >= 2 and v in y:
        start = y.find(v)
        head, tail = y[:start], y[start + len(v):]
        if head in _FILLER_PREFIX and tail in _FILLER_SUFFIX:
            return "affix"
    if kb is not None and len(y) >= 2 and len(v) >= 2:
        shared = _same_entities(kb, term) & _same_entities(kb, clean_value(value))
        if shared:
            return "same_entity"
    return None


def decide_premise(pq: PremiseQuery, knowledge: dict, kb=None) -> Premise:
    """Listed when at least one value of `knowledge` matches the term; the matches are the citation."""
    matches = []
    seen: set[tuple[str, str]] = set()
    for fact in knowledge_facts(knowledge):
        how = match_term(pq.term, fact.value, kb)
        if how and (fact.predicate, fact.value) not in seen:
            seen.add((fact.predicate, fact.value))
            matches.append(Match(fact, how))
    return Premise(pq.relation, pq.entity, pq.term, pq.attributes, bool(matches), tuple(matches))


def premise_knowledge(kb, pq: PremiseQuery) -> dict:
    """X's values for every attribute the relation is about ({} when the KB has none)."""
    merged: dict[str, dict[str, list[str]]] = {}
    for attribute in pq.attributes:
        for entity, preds in kb.acquire_knowledge(pq.entity, attribute).items():
            merged.setdefault(entity, {}).update(preds)
    return merged
